"""``vigil models``: the models stage as a Kafka service.

Consumes feature vectors and maintenance events (one consumer group, manual commits), runs the
:class:`~models.pipeline.FleetModel` on each, produces :class:`~vigil.contracts.Prediction` and
:class:`~vigil.contracts.DriftEvent` messages keyed by machine, and checkpoints everything it learnt to the
compacted changelog topic ``<changelog_prefix>models`` together with the input offsets it reflects.

The order per checkpoint is: produce, flush (every send acknowledged), write the checkpoint (acknowledged), then
commit the same offsets to the group. On start (and when partitions are assigned) the latest checkpoint is
restored and consumption resumes at its offsets, so a restart predicts exactly what an uninterrupted run would.
A checkpoint that is unreadable, or was written for another format, River version or feature schema, is
reported (log, ``vigil_errors_total{kind="checkpoint"}``) and the models are rebuilt by replaying the inputs from
the beginning; predictions for offsets the group had already committed are not produced twice.
Undecodable input goes to the dead-letter topic. The segment audit (prequential quality per machine type, site
and line) is published as ``vigil_model_quality`` metrics and logged, with segments served worse called out.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from models.checkpoint import dumps, feature_schema, loads, read_header
from models.exceptions import CheckpointError
from models.pipeline import FleetModel
from vigil.bus import (
    changelog_topic,
    dead_letter,
    ensure_topics,
    machine_key,
    make_consumer,
    make_producer,
    pipeline_topics,
    send_dead_letter,
)
from vigil.config import VigilConfig, load_config
from vigil.contracts import DriftEvent, FeatureVector, MaintenanceEvent, Prediction, decode, encode
from vigil.exceptions import ContractError

log = logging.getLogger(__name__)

SERVICE = "models"
_SEND_TIMEOUT_S = 60.0


class ChangelogStore:
    """The latest checkpoint of one worker group in the compacted changelog topic (header + chunks)."""

    def __init__(self, config: VigilConfig, key: str) -> None:
        self.config = config
        self.key = key
        self.topic = changelog_topic(config.topics, SERVICE).name

    def write(self, producer: Any, header: bytes, chunks: list[bytes]) -> None:
        """Chunks first, then the header that names them: a torn write leaves a checksum mismatch, not a lie."""
        futures = [
            producer.send(self.topic, key=f"{self.key}/chunk/{i}".encode(), value=chunk)
            for i, chunk in enumerate(chunks)
        ]
        for future in futures:
            future.get(timeout=_SEND_TIMEOUT_S)
        producer.send(self.topic, key=f"{self.key}/header".encode(), value=header).get(timeout=_SEND_TIMEOUT_S)

    def read(self, timeout_s: float = 30.0) -> tuple[bytes | None, list[bytes | None]]:
        """The latest header and its chunks (``None`` for a chunk that is missing)."""
        from kafka import TopicPartition

        consumer = make_consumer(self.config.kafka, None, max_partition_fetch_bytes=8 * 1024 * 1024)
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            latest: dict[bytes, bytes | None] = {}
            deadline = time.monotonic() + timeout_s
            while consumer.position(tp) < end and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        if record.key is not None and record.key.startswith(f"{self.key}/".encode()):
                            latest[record.key] = record.value
        finally:
            consumer.close()
        header = latest.get(f"{self.key}/header".encode())
        if header is None:
            return None, []
        try:
            count = int(read_header(header).get("chunks", 0))
        except (CheckpointError, TypeError, ValueError):
            return header, []
        return header, [latest.get(f"{self.key}/chunk/{i}".encode()) for i in range(count)]


class ModelService:
    """One worker of the models stage."""

    def __init__(
        self, config: VigilConfig, group_id: str = "vigil-models", metrics: Any = None, worker: str = "0"
    ) -> None:
        self.config = config
        self.group_id = group_id
        self.metrics = metrics
        self.worker = worker
        self.model = FleetModel(config.models, config.machines_by_id, config.machine_types)
        self.schema = feature_schema(config)
        # One checkpoint per worker of the group: workers never overwrite each other's state.
        self.store = ChangelogStore(config, group_id if worker == "0" else f"{group_id}.{worker}")
        self.restored = "fresh"
        """``restored`` (from a checkpoint), ``rebuilt`` (checkpoint refused: replay) or ``fresh`` (none)."""
        self.predictions = 0
        self.drift_events = 0
        self._offsets: dict[str, int] = {}
        self._checkpoint_offsets: dict[str, int] = {}
        self._replay_until: dict[str, int] = {}
        self._producer: Any = None
        self._consumer: Any = None
        self._last_checkpoint = time.monotonic()
        self._pending_sends: list[Any] = []
        self._revoked = False

    # ------------------------------------------------------------------ life cycle
    def setup(self) -> None:
        """Create topics, restore the latest checkpoint, connect; safe to call once per process."""
        topics = self.config.topics
        ensure_topics(
            self.config.kafka, [*pipeline_topics(self.config.kafka, topics), changelog_topic(topics, SERVICE)]
        )
        self._producer = make_producer(self.config.kafka, max_request_size=8 * 1024 * 1024)
        self.restore()
        self._consumer = make_consumer(self.config.kafka, self.group_id)
        self._consumer.subscribe(topics=[topics.features, topics.maintenance], listener=_rebalance_listener(self))
        if self.metrics is not None:
            self.metrics.set_ready(True)

    def restore(self) -> None:
        header, chunks = self.store.read()
        if header is None:
            self.restored = "fresh"
            return
        try:
            self.model, offsets = loads(header, chunks, self.schema)
        except CheckpointError as exc:
            log.error("models checkpoint of group %s refused (%s); rebuilding by replay", self.group_id, exc)
            if self.metrics is not None:
                self.metrics.errors.labels("checkpoint").inc()
            self.model = FleetModel(self.config.models, self.config.machines_by_id, self.config.machine_types)
            self.restored = "rebuilt"
            self._replay_until = self._committed_offsets()
            return
        # The configuration is the live one, not the pickled one (plant edits take effect on restart).
        self.model.machines = dict(self.config.machines_by_id)
        self.model.machine_types = dict(self.config.machine_types)
        self._checkpoint_offsets = dict(offsets)
        self._offsets = dict(offsets)
        self.restored = "restored"
        log.info(
            "models restored from checkpoint: %d machine(s), %d pending label(s), offsets %s",
            len(self.model.machine_ids()),
            self.model.pending.count(),
            offsets,
        )

    def on_assigned(self, partitions: list[Any]) -> None:
        """Runs on the client's IO thread: only non-blocking calls (seeks) here."""
        for tp in partitions:
            name = f"{tp.topic}:{tp.partition}"
            if self.restored == "rebuilt":
                self._consumer.seek_to_beginning(tp)
            elif name in self._checkpoint_offsets:
                self._consumer.seek(tp, self._checkpoint_offsets[name])

    def on_revoked(self, partitions: list[Any]) -> None:
        """Runs on the client's IO thread: blocking work (the checkpoint) is left to the loop.

        Revoked partitions leave this worker's offsets: the new owner starts from the group's committed offsets,
        and this worker must never commit (or later seek to) its stale positions for them.
        """
        for tp in partitions:
            name = f"{tp.topic}:{tp.partition}"
            self._offsets.pop(name, None)
            self._checkpoint_offsets.pop(name, None)
        self._revoked = True

    def _committed_offsets(self) -> dict[str, int]:
        """The group's committed offsets (what was already published), read before a replay."""
        from kafka import TopicPartition

        consumer = make_consumer(self.config.kafka, self.group_id)
        out: dict[str, int] = {}
        try:
            for topic in (self.config.topics.features, self.config.topics.maintenance):
                for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                    committed = consumer.committed(TopicPartition(topic, partition))
                    if committed:
                        out[f"{topic}:{partition}"] = int(committed)
        finally:
            consumer.close()
        return out

    def close(self) -> None:
        try:
            if self._consumer is not None and self._offsets:
                self.checkpoint()
        finally:
            if self._consumer is not None:
                self._consumer.close()
            if self._producer is not None:
                self._producer.close(timeout=10)

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        stop: threading.Event | None = None,
        *,
        max_records: int | None = None,
        idle_exit_s: float | None = None,
    ) -> None:
        """Consume until ``stop`` is set, ``max_records`` input records were handled, or nothing came for
        ``idle_exit_s`` seconds; then checkpoint."""
        handled = 0
        last_data = time.monotonic()
        while stop is None or not stop.is_set():
            budget = None if max_records is None else max_records - handled
            if budget is not None and budget <= 0:
                break
            n = self.step(timeout_ms=500, max_records=budget)
            handled += n
            now = time.monotonic()
            if n:
                last_data = now
            elif idle_exit_s is not None and now - last_data >= idle_exit_s:
                break
            due = now - self._last_checkpoint >= self.config.models.checkpoint_interval_s
            if (due or self._revoked) and self._offsets:
                self._revoked = False
                self.checkpoint()
        self.checkpoint()

    def step(self, timeout_ms: int = 500, max_records: int | None = None) -> int:
        """One poll: handle what arrived (at most ``max_records``); returns how many records were handled."""
        batch = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records or 500)
        handled = 0
        for tp, records in batch.items():
            for record in records:
                self._handle(record)
                self._offsets[f"{tp.topic}:{tp.partition}"] = record.offset + 1
                handled += 1
        if self.metrics is not None:
            self.metrics.heartbeat()
            self.metrics.update_lag(self._consumer)
        return handled

    def _handle(self, record: Any) -> None:
        name = f"{record.topic}:{record.partition}"
        replaying = record.offset < self._replay_until.get(name, -1)
        if self.metrics is not None:
            self.metrics.messages_in.labels(record.topic).inc()
        try:
            message = decode(record.value)
        except ContractError as exc:
            if not replaying:
                self._send_dead_letter(record, exc.reason, str(exc))
            return
        if isinstance(message, FeatureVector):
            out = self.model.process(message)
            if not replaying:
                if out.prediction is not None:
                    self._publish_prediction(out.prediction)
                for event in out.drift:
                    self._publish_drift(event)
        elif isinstance(message, MaintenanceEvent):
            drift = self.model.maintenance(message)
            if not replaying:
                for event in drift:
                    self._publish_drift(event)
        elif not replaying:
            self._send_dead_letter(record, "kind", f"unexpected {message.kind!r} on {record.topic}")

    def _publish_prediction(self, prediction: Prediction) -> None:
        topic = self.config.topics.predictions
        self._pending_sends.append(
            self._producer.send(topic, key=machine_key(prediction.machine_id), value=encode(prediction))
        )
        self.predictions += 1
        if self.metrics is not None:
            self.metrics.messages_out.labels(topic).inc()
            self.metrics.observe_source_latency("prediction", prediction.ts)

    def _publish_drift(self, event: DriftEvent) -> None:
        topic = self.config.topics.drift
        key = machine_key(event.machine_id or event.machine_type)
        self._pending_sends.append(self._producer.send(topic, key=key, value=encode(event)))
        self.drift_events += 1
        log.info(
            "drift: %s %s %s %s: %s", event.event, event.machine_type, event.machine_id, event.target, event.detail
        )
        if self.metrics is not None:
            self.metrics.messages_out.labels(topic).inc()
            self.metrics.drift_events.labels(event.detector, event.machine_type).inc()

    def _send_dead_letter(self, record: Any, reason: str, error: str) -> None:
        letter = dead_letter(
            service=SERVICE,
            reason=reason,
            error=error,
            raw=record.value,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
        )
        self._pending_sends.append(send_dead_letter(self._producer, self.config.topics, letter))
        if self.metrics is not None:
            self.metrics.dead_letters.labels(reason).inc()

    # ------------------------------------------------------------------ durability
    def checkpoint(self) -> None:
        """Flush what was produced, write the checkpoint, then commit the offsets it reflects."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        self._producer.flush(timeout=_SEND_TIMEOUT_S)
        for future in self._pending_sends:
            future.get(timeout=_SEND_TIMEOUT_S)  # a failed send fails the checkpoint, and so the commit
        self._pending_sends.clear()
        offsets = dict(self._offsets)
        header, chunks = dumps(self.model, offsets, self.schema)
        self.store.write(self._producer, header, chunks)
        self._checkpoint_offsets = offsets
        self._last_checkpoint = time.monotonic()
        if offsets and self._consumer is not None:
            commit = {}
            for name, offset in offsets.items():
                topic, _, partition = name.rpartition(":")
                commit[TopicPartition(topic, int(partition))] = OffsetAndMetadata(offset, "", -1)
            try:
                self._consumer.commit(commit)
            except Exception as exc:  # a rebalance in between: the checkpoint holds the offsets anyway
                log.warning("models: offset commit failed after checkpoint (%s); state is safe in the changelog", exc)
        self._publish_audit()

    def _publish_audit(self) -> None:
        report = self.model.audit.report()
        if self.metrics is not None:
            for segment, summary in report.items():
                dimension, _, name = segment.partition("=")
                dimension = {"type": "machine_type", "fleet": "all"}.get(dimension, dimension)
                for metric, value in summary.items():
                    if isinstance(value, int | float):
                        self.metrics.set_quality(metric, float(value), dimension, name)
        for finding in self.model.audit.worse_segments():
            log.warning("segment audit: served worse than the fleet: %s", finding)


def _rebalance_listener(service: ModelService) -> Any:
    """kafka-python rebalance listener: restore positions on assignment, checkpoint on revocation."""
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: list[Any]) -> None:
            service.on_revoked(revoked)

        def on_partitions_assigned(self, assigned: list[Any]) -> None:
            service.on_assigned(assigned)

    return Listener()


def _install_signals(stop: threading.Event) -> Callable[[], None]:
    def handler(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def main(argv: list[str]) -> int:
    """``vigil models [--config FILE] [--group NAME]``: run the models stage until SIGINT/SIGTERM."""
    from vigil.metrics import ServiceMetrics, add_metrics_arguments, start_http

    parser = argparse.ArgumentParser(prog="vigil models", description="online failure prediction and drift")
    parser.add_argument("--config", default=None, help="plant configuration (default: $VIGIL_CONFIG, the example)")
    parser.add_argument("--group", default="vigil-models", help="Kafka consumer group (and checkpoint key)")
    parser.add_argument("--worker", default="0", help="stable worker name within the group (its checkpoint key)")
    add_metrics_arguments(parser, SERVICE)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    metrics = ServiceMetrics(SERVICE)
    server = start_http(metrics, args.metrics_port, args.metrics_host)
    service = ModelService(config, args.group, metrics, args.worker)
    stop = threading.Event()
    restore_signals = _install_signals(stop)
    try:
        service.setup()
        log.info(
            "models: %s state; consuming %s and %s", service.restored, config.topics.features, config.topics.maintenance
        )
        service.run(stop)
    finally:
        restore_signals()
        service.close()
        if server is not None:
            server.close()
    return 0
