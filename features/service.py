"""The feature worker: readings topics -> :class:`~streaming.windows.WindowEngine` -> features topic.

``vigil features --config plant.toml`` runs one worker; start more with the same ``windows.group_id`` and Kafka
splits the partitions of the readings topics between them.

Delivery (exactly once between Kafka topics, :mod:`vigil.transactions`):

1. Records are decoded (:mod:`streaming.decoding`); a malformed one becomes a dead letter with the raw bytes, the
   reason and its topic/partition/offset, and the worker goes on. Late readings are dead-lettered too
   (reason ``late``), and so are readings too far ahead of the wall clock (reason ``clock_skew``); unknown
   machines and sensors are counted and logged.
2. Feature vectors are produced to ``topics.features`` keyed by machine as windows close, inside an open Kafka
   transaction (readers of the features topic read ``read_committed``: they see a vector once its transaction
   commits, i.e. up to ``windows.checkpoint_interval_s`` later).
3. Every ``windows.checkpoint_interval_s`` (and when partitions are revoked, and at shutdown) the worker writes
   the state of each machine that changed to the compacted changelog topic ``<changelog_prefix>features`` (key
   ``<group>/<machine>``, with the offsets that state reflects) and the consumed offsets into the same
   transaction, and commits it: vectors, dead letters, state and offsets become visible together or not at all.
4. On assignment (start, rebalance) the transactional producer takes the id of the assignment (which aborts a
   dead predecessor's open transaction and fences it), then the state of the machines of the assigned partitions
   is restored from the changelog (read_committed): it reflects exactly the committed offsets, so the worker
   recomputes exactly what was not committed and the committed output equals an uninterrupted run's. Records
   before a machine's checkpointed offset are still skipped (a changelog written by the at-least-once worker of
   earlier versions can be ahead of the committed offsets).
5. A transaction that fails to commit is aborted; the worker then forgets all its machines, seeks back to the
   committed offsets and restores from the changelog (nothing of the aborted transaction was ever visible).

A fenced worker (a broker restart aborted its transaction and bumped its id's epoch, or another owner took the
id) goes back to its last commit as after an abort and takes the group's assignment again with a new producer.
Reading topics must be co-partitioned (same partition count, keyed by machine id); the range assignor then
gives one worker a machine's partitions on every topic.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from kafka import ConsumerRebalanceListener

from features.checkpointing import Checkpointing, ServiceStats, _tpk
from features.vector import encode_vector, window_engine
from ingest.validation import FLAG_REASONS
from streaming.changelog import MAX_STATE_BYTES, Changelog
from streaming.decoding import Decoded, ReadingDecoder
from streaming.exceptions import DeliveryError
from streaming.windows import LateReading
from vigil.bus import (
    TopicSpec,
    changelog_topic,
    dead_letter,
    ensure_topics,
    machine_key,
    partition_count,
    send_dead_letter,
)
from vigil.config import VigilConfig, load_config
from vigil.contracts import FeatureVector, encode
from vigil.exceptions import BusError, ConfigError, ContractError
from vigil.kafka_access import require_access
from vigil.transactions import TransactionalProducer, make_read_committed_consumer, transaction_timeout_ms

if TYPE_CHECKING:
    from vigil.metrics import ServiceMetrics

log = logging.getLogger(__name__)

SERVICE = "features"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: FeatureService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self.service.on_revoked(set(revoked), lost=False)

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self.service.on_assigned(set(assigned))

    def on_partitions_lost(self, lost: Iterable[Any]) -> None:
        self.service.on_revoked(set(lost), lost=True)


class FeatureService(Checkpointing):
    """One feature worker. ``setup()`` connects, ``step()`` polls once, ``checkpoint()`` makes progress durable."""

    def __init__(
        self,
        config: VigilConfig,
        *,
        worker_id: str | None = None,
        metrics: ServiceMetrics | None = None,
        poll_timeout_ms: int = 500,
        max_poll_records: int = 2000,
        report_interval_s: float = 30.0,
    ) -> None:
        self.config = config
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = metrics
        self.poll_timeout_ms = poll_timeout_ms
        self.max_poll_records = max_poll_records
        self.report_interval_s = report_interval_s
        self.engine = window_engine(config)
        self.decoder = ReadingDecoder.for_plant(config)
        self.stats = ServiceStats()
        self.changelog = Changelog(config.kafka, changelog_topic(config.topics, SERVICE), config.windows.group_id)
        self._tx: TransactionalProducer | None = None
        self._consumer: Any = None
        self._influx: Any = None
        self._positions: dict[Any, int] = {}
        self._committed: dict[Any, int] = {}
        self._machine_offsets: dict[str, dict[str, int]] = {}
        self._skip: dict[str, dict[str, int]] = {}
        self._dirty: set[str] = set()
        self._lineage: dict[str, list[Any]] = {}
        """Per machine in the changelog: [lineage id of its base, deltas written after it, highest delta key]."""
        self._changelog_partition: dict[str, int] = {}
        """Per machine: the changelog partition its records go to, fixed once known (restored or first written),
        so that its base, deltas and tombstones never spread over two partitions."""
        self._pending_assignment: set[Any] | None = None
        self._emitted_at: float | None = None
        """When the open transaction got its first feature vector (None: it has none)."""
        self._last_report = time.monotonic()
        self._reported_unknown: set[str] = set()
        self._dropped_reported: dict[str, int] = {}
        self._open_gauge: Any = None
        self._bytes_counter: Any = None

    # ------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        """Create missing topics, connect, and subscribe (by list or by pattern) with the rebalance listener."""
        from kafka.coordinator.assignors.range import RangePartitionAssignor

        kafka, topics = self.config.kafka, self.config.topics
        specs = [TopicSpec(topics.features, kafka.partitions), TopicSpec(topics.dead_letter, kafka.partitions)]
        if topics.readings_pattern is None:
            specs += [TopicSpec(t, kafka.partitions) for t in topics.reading_topics()]
        ensure_topics(kafka, specs)
        require_access(
            kafka,
            read=[("topics.readings", t) for t in topics.reading_topics() if topics.readings_pattern is None],
            write=[("topics.features", topics.features), ("topics.dead_letter", topics.dead_letter)],
        )
        # Partitioned like the readings, so that a worker restores only its partitions' machines (a pattern's
        # topics may not exist yet: the configured count then).
        readings = kafka.partitions if topics.readings_pattern is not None else partition_count(kafka, topics.readings)
        self.changelog.ensure(readings)
        # One producer for vectors, dead letters and state: a transaction is one producer's. Started on the first
        # assignment (its transactional id is the assignment's).
        self._tx = TransactionalProducer(
            kafka,
            self.config.windows.group_id,
            SERVICE,
            transaction_timeout_ms=transaction_timeout_ms(self.config.windows.checkpoint_interval_s),
            client_id=f"{kafka.client_id}-{SERVICE}",
            max_request_size=MAX_STATE_BYTES + 64 * 1024,
        )
        if self.metrics is not None:
            self.metrics.watch_wait("kafka transaction commit", self._tx.waiting_s)
        self._consumer = make_read_committed_consumer(
            kafka,
            self.config.windows.group_id,
            client_id=f"{kafka.client_id}-{SERVICE}",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self.max_poll_records,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            session_timeout_ms=int(self.config.windows.session_timeout_s * 1000),
            heartbeat_interval_ms=min(3000, int(self.config.windows.session_timeout_s * 1000 / 3)),
        )
        listener = _Rebalance(self)
        # The reading topics' metadata before the first poll joins the group (as make_consumer does for its own
        # subscriptions): without it the group can form before the client knows their partitions, assign nothing
        # ("No partition metadata"), and wait for the next metadata refresh; a test timed out so in CI.
        for name in topics.reading_topics() if topics.readings_pattern is None else ():
            self._consumer.partitions_for_topic(name)
        if topics.readings_pattern is not None:
            self._consumer.subscribe(pattern=topics.readings_pattern, listener=listener)
        else:
            self._consumer.subscribe(topics=topics.reading_topics(), listener=listener)
        if self.config.windows.write_influx:
            from vigil.influx import InfluxSink, ensure_target

            ensure_target(self.config.influx, wait_s=float("inf"))  # waits out an InfluxDB outage at start-up
            self._influx = InfluxSink(self.config.influx)
            self._influx.setup()
        log.info(
            "feature worker %s: group %s, topics %s, windows %s",
            self.worker_id,
            self.config.windows.group_id,
            topics.readings_pattern or ", ".join(topics.reading_topics()),
            self.config.windows.model_dump(include={"kind", "size_s", "hop_s", "grace_s", "idle_timeout_s"}),
        )

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; checkpoint on the interval, within ``windows.commit_latency_s`` of an emitted
        vector (it is visible downstream only once its transaction commits), and once more at the end."""
        interval = self.config.windows.checkpoint_interval_s
        budget = self.config.windows.commit_latency_s
        last = time.monotonic()
        while not stop.is_set():
            try:
                self.step()
                now = time.monotonic()
                emitted = self._emitted_at
                if now - last >= interval or (emitted is not None and now - emitted >= budget):
                    self.checkpoint()
                    last = time.monotonic()
            except Exception as exc:
                fenced = self._tx.fenced_error(exc) if self._tx is not None else None
                if fenced is None:
                    raise
                self.recover_fenced(fenced)
        self.checkpoint()

    def _poll_timeout(self) -> int:
        """The poll timeout, shorter while emitted vectors wait for their commit (not held past their budget)."""
        if self._emitted_at is None:
            return self.poll_timeout_ms
        left = self._emitted_at + self.config.windows.commit_latency_s - time.monotonic()
        return max(0, min(self.poll_timeout_ms, int(left * 1000)))

    def close(self) -> None:
        if self._tx is not None:
            self._tx.close()  # aborts what a failed run() left open
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
        if self._influx is not None:
            self._influx.close()
        self._report(force=True)

    # ------------------------------------------------------------------ processing
    def step(self) -> int:
        """One poll: decode, window, emit; returns the number of records handled."""
        records = self._consumer.poll(timeout_ms=self._poll_timeout(), max_records=self.max_poll_records)
        if self._pending_assignment is not None:
            assigned, self._pending_assignment = self._pending_assignment, None
            self.restore(assigned)
        handled = 0
        started = time.perf_counter()
        readings_before = self.engine.stats.readings
        if records:
            self.engine.set_clock(time.time())
        owned = self._consumer.assignment() if records else set()
        for tp, messages in records.items():
            if tp not in owned:
                # Fetched before a rebalance took the partition away: its new owner reads these records.
                continue
            tpk = _tpk(tp)
            for msg in messages:
                self._handle(tp, tpk, msg)
            self._positions[tp] = messages[-1].offset + 1
            handled += len(messages)
            if self.metrics is not None:
                self.metrics.messages_in.labels(tp.topic).inc(len(messages))
        self.stats.messages += handled
        if self.metrics is not None:
            self.metrics.readings.inc(self.engine.stats.readings - readings_before)
        for vector in self.engine.tick(time.time()):
            self._dirty.add(vector.machine_id)
            self._emit(vector)
        if self.metrics is not None:
            if handled:
                self.metrics.processing.labels("features_batch").observe(time.perf_counter() - started)
            self.metrics.heartbeat()
            self.metrics.update_lag(self._consumer)
        self._report()
        return handled

    def _handle(self, tp: Any, tpk: str, msg: Any) -> None:
        try:
            decoded = self.decoder.decode_record(msg.value)
        except ContractError as exc:
            self._dead(exc.reason, str(exc), msg.value, tp, msg.offset, msg.key)
            return
        vectors: Sequence[FeatureVector]
        if isinstance(decoded, Decoded):
            machine = decoded.machine_id
            if self._skip and self._replayed(machine, tpk, msg.offset):
                return
            if decoded.refused is not None:  # some readings refused (an unknown sensor), the others used below
                self._dead(*decoded.refused, msg.value, tp, msg.offset, msg.key)
            if decoded.gap is not None:
                self.engine.add_gap(decoded.gap)
                vectors = ()
            elif decoded.columns is not None:
                c = decoded.columns
                vectors = self.engine.add_columns(machine, c.sensors, c.lengths, c.ts, c.values, c.span)
            else:
                vectors = self.engine.add_samples(machine, decoded.samples)
        else:  # one bare reading, the hot path with one reading per record
            machine = decoded[0]
            if self._skip and self._replayed(machine, tpk, msg.offset):
                return
            vectors = self.engine.add_sample(*decoded)
        offsets = self._machine_offsets.get(machine)
        if offsets is not None:
            offsets[tpk] = msg.offset + 1
            self._dirty.add(machine)
        elif machine in self.config.machines_by_id:
            self._machine_offsets[machine] = {tpk: msg.offset + 1}
            self._dirty.add(machine)
        else:
            self._warn_unknown(machine)
        for vector in vectors:
            self._emit(vector)
        if self.engine.late_pending:
            late = self.engine.drain_late()
            if self.config.windows.late_to_dead_letter:
                for reading in late:
                    self._dead_late(reading, tp, msg.offset, msg.key)

    def _replayed(self, machine: str, tpk: str, offset: int) -> bool:
        """Whether the machine's restored state already holds this record (counted as skipped)."""
        skip = self._skip.get(machine)
        if skip is not None and offset < skip.get(tpk, 0):
            self.stats.replay_skipped += 1
            return True
        return False

    def _emit(self, vector: FeatureVector) -> None:
        topic = self.config.topics.features
        assert self._tx is not None
        self._tx.send(
            topic,
            key=machine_key(vector.machine_id),
            value=encode_vector(vector),
            headers=[("worker", self.worker_id.encode())],
        )
        self.stats.vectors += 1
        if self._emitted_at is None:
            self._emitted_at = time.monotonic()
        if self.metrics is not None:
            self.metrics.messages_out.labels(topic).inc()
            # Window end -> handed to the producer (sent within linger_ms): the grace period plus collection delay.
            self.metrics.observe_source_latency("features", vector.window_end)
        if self._influx is not None:
            from vigil.influx import Schema

            self._influx.add(Schema().features(vector))

    def _dead(self, reason: str, error: str, raw: bytes | None, tp: Any, offset: int, key: bytes | None) -> None:
        letter = dead_letter(
            service=SERVICE,
            reason=reason,
            error=error,
            raw=raw,
            source_topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            key=key,
        )
        assert self._tx is not None
        if reason in ("late", "clock_skew"):
            # Late readings can come by the thousand after an outage: counted and reported periodically,
            # not one warning each.
            self._tx.send(self.config.topics.dead_letter, key=key, value=encode(letter))
        else:
            self._tx.begin()
            send_dead_letter(self._tx.producer, self.config.topics, letter)
        self.stats.dead_letters += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels(reason).inc()

    def _dead_late(self, reading: LateReading, tp: Any, offset: int, key: bytes | None) -> None:
        # The contract's last microsecond of 9999 rounds up to an epoch that is no datetime: clamp.
        ts = datetime.fromtimestamp(min(max(reading.ts, -62135596800.0), 253402300799.999), UTC)
        raw = {
            "v": 1,
            "kind": "reading",
            "machine_id": reading.machine_id,
            "sensor": reading.sensor,
            "ts": ts.isoformat(),
            "value": reading.value if reading.value == reading.value else None,
        }
        if reading.reason == "clock_skew":
            now = datetime.fromtimestamp(reading.closed_upto, UTC)
            error = (
                f"event time {ts.isoformat()} is more than {self.config.windows.max_clock_skew_s:g}s ahead of the "
                f"wall clock ({now.isoformat()}); the machine's watermark was not moved"
            )
        else:
            closed = datetime.fromtimestamp(reading.closed_upto, UTC)
            error = f"event time {ts.isoformat()} is behind the machine's closed windows (closed up to {closed.isoformat()})"
        self._dead(reading.reason, error, json.dumps(raw).encode(), tp, offset, key)

    def _warn_unknown(self, machine: str) -> None:
        if machine not in self._reported_unknown and len(self._reported_unknown) < 1000:
            self._reported_unknown.add(machine)
            log.warning("readings of unknown machine %r are counted and ignored (add it to the configuration)", machine)

    # ------------------------------------------------------------------ reporting
    def _open_readings_gauge(self) -> Any:
        assert self.metrics is not None
        if self._open_gauge is None:
            from prometheus_client import Gauge

            self._open_gauge = Gauge(
                "vigil_window_open_readings",
                "Readings held for open windows (memory is ~19 bytes each)",
                registry=self.metrics.registry,
            )
        return self._open_gauge

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < self.report_interval_s:
            return
        self._last_report = now
        e, s = self.engine.stats, self.stats
        log.info(
            "features: %d records, %d readings (%d unusable, %d late, %d clock skew, %d duplicate), %d vectors "
            "(%d closed on wall clock), %d dead letters, %d replayed records skipped, %d checkpoints (%.1f MB of state)",
            s.messages,
            e.readings,
            e.unusable,
            e.late,
            e.clock_skew,
            e.duplicates,
            s.vectors,
            e.wall_clock_windows,
            s.dead_letters,
            s.replay_skipped,
            s.checkpoints,
            s.checkpoint_bytes / 1e6,
        )
        flagged = {r: n for r, n in self.decoder.counters.items() if r in FLAG_REASONS}
        if flagged:
            log.info("readings flagged unusable at the feature stage: %s", _top(Counter(flagged)))
        if e.unknown_machines or e.unknown_sensors:
            log.warning(
                "unknown machines (readings ignored): %s; unknown sensors: %s",
                _top(e.unknown_machines),
                _top(e.unknown_sensors),
            )
        if self.metrics is not None:
            self._open_readings_gauge().set(self.engine.open_readings())
            totals = {
                "unknown_machine": sum(e.unknown_machines.values()),
                "unknown_sensor": sum(e.unknown_sensors.values()),
                "duplicate": e.duplicates,
                "late_unrouted": e.late_unrouted,
            }
            for reason, total in totals.items():
                self.metrics.dropped.labels(reason).inc(total - self._dropped_reported.get(reason, 0))
                self._dropped_reported[reason] = total
            for reason, total in flagged.items():
                key = "flagged/" + reason
                self.metrics.flagged.labels(reason).inc(total - self._dropped_reported.get(key, 0))
                self._dropped_reported[key] = total


def _top(counter: Counter[str], n: int = 5) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counter.most_common(n)) or "none"


def main(argv: list[str]) -> int:
    """``vigil features [--config FILE]``: run one feature worker until SIGINT/SIGTERM."""
    import sys

    from kafka.errors import KafkaError

    from vigil.influx import InfluxError
    from vigil.metrics import ServiceMetrics, add_metrics_arguments, start_http

    parser = argparse.ArgumentParser(
        prog="vigil features",
        description="Event-time windows per machine over the readings topics -> feature vectors.",
    )
    parser.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example plant)")
    add_metrics_arguments(parser, SERVICE)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: checkpointing and stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    metrics = ServiceMetrics(SERVICE)
    server = start_http(metrics, args.metrics_port, args.metrics_host)
    service = FeatureService(config, metrics=metrics)
    try:
        service.setup()
        service.run(stop)
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    except (DeliveryError, InfluxError):
        log.exception("a write was not acknowledged; stopping without committing (a restart replays)")
        return 1
    except (KafkaError, BusError) as exc:
        log.error("Kafka at %s: %s; stopping without committing", config.kafka.bootstrap_servers, exc)
        return 1
    finally:
        try:
            service.close()
        finally:
            if server is not None:
                server.close()
    return 0
