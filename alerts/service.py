"""``vigil alerts``: predictions, drift, features and maintenance in; InfluxDB, the alerts topic and notifications out.

One loop, one batch at a time::

    poll (read_committed) -> decode (bad messages -> dead letters) -> lifecycle -> transitions + notifications
         -> the input's InfluxDB points flushed (acknowledged; idempotent, so a replay rewrites the same points)
         -> sqlite, one transaction: lifecycle state, outbox notifications, the batch's Kafka records
            (transitions, dead letters), its alert points for InfluxDB and its input offsets   <- the batch is decided
         -> Kafka, one transaction: the recorded records + the offsets (send_offsets_to_transaction)
         -> the recorded alert points written to InfluxDB (acknowledged)
         -> the outbox thread delivers the notifications (marked delivered only after the receiver answered 2xx)

A batch is decided once, in sqlite, and after that only *published*: a crash before the sqlite commit leaves no
trace anywhere (the Kafka transaction of the batch was never begun, its alert points never written, its
notifications never queued) and the input is consumed again; a crash after it re-publishes the recorded
transitions, with the sequence numbers they were recorded with, when the service starts again. Whether Kafka
already committed a recorded batch is read from the group's committed offsets, whose metadata names the last
batch committed with them. So the alerts topic (read with read_committed), InfluxDB and the notifications hold
each transition exactly once (InfluxDB: the same point rewritten is the same point; notifications: at least once
with a stable idempotency key, see docs/alerts.md).

If InfluxDB or Kafka does not acknowledge, nothing after it happens: the batch stays pending, the consumer's
partitions are paused (it keeps polling, so it stays in its group), ``/readyz`` answers 503 naming what is down,
and the same step is retried with backoff until it succeeds. The HTTP API (acknowledge, assign, silence, line
down) hands commands to this loop, so the lifecycle is only ever touched by one thread; while a batch is held,
commands wait for it.

The lifecycle is global to a deployment (it lives in one sqlite file), so run one alerts service per plant.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from queue import Empty, Queue
from typing import Any

from alerts.digest import Digester, is_finding
from alerts.exceptions import AlertsError
from alerts.lifecycle import Lifecycle, PlantInfo, Transition
from alerts.ordering import Held, InputOrder
from alerts.outbox import Outbox
from alerts.receivers import Sender, build_senders
from alerts.render import Notification
from alerts.store import AlertStore, Batch, Offsets, OutRecord, notification_id
from alerts.web.view import View
from vigil.bus import (
    dead_letter,
    ensure_topics,
    machine_key,
    make_consumer,
    make_producer,
    pipeline_topics,
)
from vigil.config import VigilConfig, load_config
from vigil.contracts import (
    Alert,
    DriftEvent,
    FeatureVector,
    MaintenanceEvent,
    Prediction,
    decode,
    encode,
)
from vigil.exceptions import ConfigError, ContractError, ProducerFenced, TransactionAborted, VigilError
from vigil.influx import InfluxError, InfluxSink, RejectedLine, Schema, dead_letter_rejected, ensure_target
from vigil.kafka_access import require_access
from vigil.metrics import ServiceMetrics, add_metrics_arguments
from vigil.transactions import TransactionalProducer

log = logging.getLogger(__name__)

SERVICE = "alerts"
BATCH_MARK = "vigil-alerts batch "
"""Metadata of the offsets committed in a batch's Kafka transaction: ``BATCH_MARK + str(batch)``."""
Command = Callable[[Lifecycle, float], tuple[Any, list[Transition]]]


@dataclass
class _Pending:
    """Everything derived from the records polled since the last commit, not yet acknowledged downstream."""

    alerts: list[Alert] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    offsets: dict[Any, int] = field(default_factory=dict)
    futures: list[tuple[Future[Any], Any]] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    findings: list[Alert] = field(default_factory=list)
    """Informational transitions for the digest, recorded with the lifecycle state."""
    recorded: bool = False
    record: dict[str, Any] | None = None
    """What the sqlite transaction writes, computed once (a retry after a failed commit writes the same)."""
    """The batch is in sqlite: from here on it is only published, never recomputed."""
    notifications: int = 0

    def empty(self) -> bool:
        return not (self.alerts or self.transitions or self.offsets or self.futures or self.dead_letters)


@dataclass
class ServiceStats:
    records: int = 0
    dead_letters: int = 0
    transitions: int = 0
    notifications: int = 0
    blocked_s: float = 0.0
    commits: int = 0


class AlertService:
    def __init__(
        self,
        config: VigilConfig,
        *,
        group_id: str = "vigil-alerts",
        senders: dict[str, Sender] | None = None,
        clock: Callable[[], float] = time.time,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.config = config
        self.group_id = group_id
        self.clock = clock
        self.senders = senders
        self.stats = ServiceStats()
        self.metrics = metrics or ServiceMetrics(SERVICE, process_metrics=False)
        plant = PlantInfo.from_config(config)
        self.lifecycle = Lifecycle(config.alerts, plant)
        self.schema = Schema(dict(plant.machines))
        self.store = AlertStore(config.alerts.outbox_path)
        self.order = InputOrder(config.alerts.input_wait_s)
        self.digest = Digester.for_alerts(config.alerts.digest, [r.name for r in config.alerts.receivers])
        self.commands: Queue[tuple[Command, Future[Any]]] = Queue()
        self.blocked = False
        self._pending = _Pending()
        self._backoff = 0.0
        self._blocked_at = 0.0
        self._retry_at = 0.0
        self._consumer: Any = None
        self._producer: Any = None
        self._txn: TransactionalProducer | None = None
        self._outcome_unknown = False
        """A batch's commit timed out: whether Kafka committed it is read back before publishing again."""
        self._offsets: Offsets = {}
        self.stop = threading.Event()
        self.sink: InfluxSink | None = None
        self._alert_sink: InfluxSink | None = None
        self.outbox: Outbox | None = None
        self.http: Any = None
        self.view = View()
        """What the console's pages show: rebuilt after each commit (the lifecycle itself is this loop's own)."""

    # ------------------------------------------------------------------------------------------- start/stop

    def setup(self, *, http: bool = True) -> None:
        c = self.config
        self.store.open()
        tracks, flags = self.store.load()
        self.lifecycle.restore(tracks, flags)
        self.order.load(*self.store.load_held())
        log.info("restored %d alert track(s), %d open episode(s)", len(tracks), len(self.lifecycle.open_episodes()))
        # Outages at start-up are waited out (until stopped); a missing database is created, a missing bucket or
        # retention policy stops here, named.
        ensure_topics(c.kafka, pipeline_topics(c.kafka, c.topics), stop=self.stop)
        require_access(
            c.kafka,
            read=[("topics.predictions", c.topics.predictions), ("topics.drift", c.topics.drift)],
            write=[("topics.alerts", c.topics.alerts), ("topics.dead_letter", c.topics.dead_letter)],
        )
        ensure_target(c.influx, wait_s=math.inf, stop=self.stop)
        # The plain idempotent producer is for what is not part of a batch: POST /maintenance and the dead letters
        # of alert points InfluxDB refused. A batch's records go through the transactional producer (_txn).
        self._producer = make_producer(c.kafka)
        self.sink = InfluxSink(c.influx, on_rejected=self._input_rejected)
        self._alert_sink = InfluxSink(c.influx, on_rejected=dead_letter_rejected(self._producer, c.topics, SERVICE))
        self._consumer = make_consumer(
            c.kafka,
            self.group_id,
            [c.topics.predictions, c.topics.drift, c.topics.features, c.topics.maintenance],
            max_poll_records=1000,
            isolation_level="read_committed",
            session_timeout_ms=int(c.alerts.kafka_session_timeout_s * 1000),
            heartbeat_interval_ms=min(3000, int(c.alerts.kafka_session_timeout_s * 1000 / 3)),
        )
        self.metrics.watch_wait(
            "kafka transaction commit", lambda: self._txn.waiting_s() if self._txn is not None else None
        )
        self._recover()
        self.outbox = Outbox(
            self.store,
            self.senders if self.senders is not None else build_senders(c.alerts),
            retry_initial_s=c.alerts.retry_initial_s,
            retry_max_s=c.alerts.retry_max_s,
            observe=lambda receiver, outcome: self.metrics.notifications.labels(receiver, outcome).inc(),
        )
        self.outbox.start()
        if http:
            from alerts.http import start_api

            self.http = start_api(self, c.alerts.http_host, c.alerts.http_port)
        self.metrics.alerts_open.set(len(self.lifecycle.open_episodes()))
        self.view = View.build(self.lifecycle, self.clock())
        self.metrics.set_ready(True)

    @property
    def ack_url(self) -> str:
        a = self.config.alerts
        if a.public_url:
            return a.public_url
        port = self.http.server_port if self.http is not None else a.http_port
        return f"http://{a.http_host}:{port}"

    @property
    def producer(self) -> Any:
        """The service's Kafka producer (thread-safe; the HTTP API's ``POST /maintenance`` publishes with it)."""
        return self._producer

    def close(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None
        if self.outbox is not None:
            self.outbox.stop()
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
        self._drop_txn()
        if self._producer is not None:
            self._producer.flush(timeout=30)
            self._producer.close(timeout=30)
        if self.sink is not None:
            self.sink.close()
        if self._alert_sink is not None:
            self._alert_sink.close()
        self.store.close()

    def committed(self) -> dict[str, int]:
        """This group's committed offsets per topic (summed over the assigned partitions), as Kafka sees them."""
        out: dict[str, int] = {}
        for tp in self._consumer.assignment():
            out[tp.topic] = out.get(tp.topic, 0) + (self._consumer.committed(tp) or 0)
        return out

    # ------------------------------------------------------------------------------------------- commands

    def submit(self, command: Command) -> Future[Any]:
        """Run a command on the loop's thread; the future resolves after its transitions are committed."""
        future: Future[Any] = Future()
        self.commands.put((command, future))
        return future

    def _run_commands(self, now: float) -> None:
        while True:
            try:
                command, future = self.commands.get_nowait()
            except Empty:
                return
            try:
                result, transitions = command(self.lifecycle, now)
            except Exception as exc:
                future.set_exception(exc)
                continue
            self._add(transitions)
            self._pending.futures.append((future, result))

    # ------------------------------------------------------------------------------------------- the loop

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_once(1.0)

    def run_once(self, timeout_s: float = 1.0) -> None:
        self.metrics.heartbeat()
        now = self.clock()
        if self._pending.record is None:
            self._run_commands(now)  # a batch whose record is built is final: commands join the next one
        self._send_digest(now)
        if self.blocked:
            # Keep the group membership alive while paused. Partitions assigned by a rebalance during the outage
            # are not paused, so a poll can return records: rewind to them and pause, never drop them.
            returned = self._consumer.poll(timeout_ms=int(min(timeout_s, 0.5) * 1000))
            for tp, batch in returned.items():
                if batch:
                    self._consumer.seek(tp, batch[0].offset)
                    self._consumer.pause(tp)
            if self.clock() < self._retry_at:
                return
        else:
            records = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
            for tp, batch in records.items():
                self.metrics.messages_in.labels(tp.topic).inc(len(batch))
                for record in batch:
                    self._handle(record, now)
                    self._pending.offsets[tp] = record.offset + 1
            for held in self.order.release(now):
                self._observe(held.message, now)
            self._add(self.lifecycle.tick(now))
            self.metrics.update_lag(self._consumer)
            due = self.sink is not None and (self.sink.due() or len(self.sink) >= self.config.influx.batch_size)
            due = due or bool(self.store.influx_pending(1))
            if self._pending.empty() and not due:
                return
        self._commit()

    def _send_digest(self, now: float) -> None:
        """At a period boundary (wall clock), queue the period's digest; sqlite only, so also while blocked."""
        if self.digest is None:
            return
        try:
            queued = self.digest.run(self.store, now, lambda: self.ack_url)
        except AlertsError as exc:
            self.metrics.errors.labels("digest").inc()
            log.warning("digest not queued (%s); retried on the next loop", exc)
            return
        if queued and self.outbox is not None:
            self.stats.notifications += queued
            self.outbox.wake()

    def _handle(self, record: Any, now: float) -> None:
        self.stats.records += 1
        try:
            message = decode(record.value)
        except ContractError as exc:
            self._dead_letter(record, exc.reason, str(exc))
            return
        assert self.sink is not None
        if not isinstance(message, Prediction | FeatureVector | DriftEvent | MaintenanceEvent):
            self._dead_letter(record, "kind", f"the alerts service does not consume {message.kind!r} messages")
            return
        self.sink.add_all(self.schema.points(message))
        # Decided in event-time order per machine (alerts/ordering.py); held records are recorded with the batch.
        self.order.add(Held(record.topic, record.partition, record.offset, record.value, message), now)

    def _observe(self, message: Any, now: float) -> None:
        if isinstance(message, Prediction):
            self._add(self.lifecycle.observe(message, now))
        elif isinstance(message, FeatureVector):
            self._add(self.lifecycle.observe_features(message, now))
        elif isinstance(message, DriftEvent):
            self._add(self.lifecycle.observe_drift(message, now))
        elif isinstance(message, MaintenanceEvent):
            self._add(self.lifecycle.observe_maintenance(message, now))

    def _dead_letter(self, record: Any, reason: str, error: str) -> None:
        self.stats.dead_letters += 1
        self.metrics.dead_letters.labels(reason).inc()
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
        # Recorded with the batch and published in its Kafka transaction: once, whatever crashes.
        self._pending.dead_letters.append(self._dead_letter_record(letter))

    def _dead_letter_record(self, letter: Any) -> OutRecord:
        if self.stats.dead_letters == 1 or self.stats.dead_letters % 1000 == 0:
            log.warning("dead letter #%d: %s (%s)", self.stats.dead_letters, letter.reason, letter.error[:200])
        return OutRecord(self.config.topics.dead_letter, (letter.key or "").encode() or None, encode(letter))

    def _input_rejected(self, rejected: list[RejectedLine]) -> None:
        """InfluxDB refused lines derived from the input: dead letters of the batch being decided."""
        for r in rejected:
            self.stats.dead_letters += 1
            self.metrics.dead_letters.labels("influx_rejected").inc()
            letter = dead_letter(
                service=SERVICE,
                reason="influx_rejected",
                error=r.reason,
                raw=r.line.encode(),
                key=r.line.split(" ", 1)[0].encode(),
            )
            self._pending.dead_letters.append(self._dead_letter_record(letter))

    def _add(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        for t in transitions:
            self._pending.alerts.append(t.alert)  # its InfluxDB point is recorded with the batch
        self._pending.transitions += transitions
        if self.digest is not None:
            self._pending.findings += [t.alert for t in transitions if is_finding(t.alert)]
        self.stats.transitions += len(transitions)
        events = {"open": "opened", "escalated": "escalated", "resolved": "resolved"}
        for t in transitions:
            event = events.get(t.alert.state.value)
            if event:
                self.metrics.alerts.labels(event).inc()

    def _notifications(self) -> list[Notification]:
        groups: dict[tuple[str, str], list[Alert]] = {}
        group_by = self.config.alerts.group_by
        for t in self._pending.transitions:
            a = t.alert
            group = {"machine": a.machine_id, "line": a.line, "site": a.site}[group_by] or a.machine_id
            for receiver in t.receivers:
                groups.setdefault((receiver, group), []).append(a)
        return [
            Notification(notification_id(r, alerts), r, g, tuple(alerts), self.ack_url)
            for (r, g), alerts in groups.items()
        ]

    def _commit(self) -> None:
        """Decide the batch (sqlite), publish it (Kafka transaction), write its alert points; any failure leaves the
        rest pending and pauses consumption until a retry gets through."""
        p = self._pending
        assert self.sink is not None
        started = time.monotonic()
        try:
            if not p.recorded:
                self.sink.flush()  # the input's own points; InfluxDB refusals become dead letters of this batch
                self._record(p)
            self._publish()
            self._write_alert_points()
        except ProducerFenced as exc:
            raise AlertsError(
                f"another alerts service of group {self.group_id!r} took over (transactional id fenced: {exc}); "
                "run one alerts service per deployment"
            ) from exc
        except Exception as exc:  # anything unacknowledged (InfluxDB, Kafka, sqlite) holds the rest of the batch
            self._block(exc)
            return
        for future, result in p.futures:
            future.set_result(result)
        self.stats.notifications += p.notifications
        self.metrics.processing.labels("commit").observe(time.monotonic() - started)
        self.metrics.messages_out.labels(self.config.topics.alerts).inc(len(p.alerts))
        self.metrics.alerts_open.set(len(self.lifecycle.open_episodes()))
        wall = datetime.fromtimestamp(self.clock(), UTC)
        for a in p.alerts:
            if a.state.value == "open":
                self.metrics.observe_source_latency("alert", a.ts, wall)
        self._pending = _Pending()
        if p.transitions or p.futures:  # what the console shows changed (a command may change no episode)
            self.view = View.build(self.lifecycle, self.clock())
        self.stats.commits += 1
        if self.blocked:
            log.info("downstream acknowledged again after %.0fs; resuming consumption", self.clock() - self._blocked_at)
            self.stats.blocked_s += self.clock() - self._blocked_at
            self._consumer.resume(*self._consumer.assignment())
            self.blocked = False
            self._backoff = 0.0
        for name in ("influxdb", "kafka-writes", "store"):
            self.metrics.dependency_up(name)
        if p.notifications and self.outbox is not None:
            self.outbox.wake()

    def _record(self, p: _Pending) -> None:
        """The one sqlite transaction that decides the batch."""
        offsets = {(tp.topic, tp.partition): off for tp, off in p.offsets.items()}
        records = [
            OutRecord(self.config.topics.alerts, machine_key(a.machine_id), encode(a)) for a in p.alerts
        ] + p.dead_letters
        lines = [line for a in p.alerts for point in self.schema.points(a) if (line := point.line()) is not None]
        if records and not offsets:
            # Commands and wall-clock transitions consumed nothing; their transaction still commits offsets
            # (unchanged) so that a restart can tell whether it committed.
            offsets = dict(self._offsets) or self._positions()
            if not offsets:
                raise AlertsError("no partition assigned yet: the batch waits for the group's assignment")
        if p.record is None:
            p.record = {
                "tracks": self.lifecycle.export_dirty(),
                "flags": self.lifecycle.export_flags() if self.lifecycle.dirty_flags else None,
                "notifications": self._notifications(),
                "now": self.clock(),
                "findings": p.findings,
                "records": records,
                "influx_lines": lines,
                "offsets": offsets,
                "held": self.order.take_changes(),
            }
        p.notifications = self.store.commit(**p.record)
        p.recorded = True

    def _positions(self) -> Offsets:
        out: Offsets = {}
        for tp in self._consumer.assignment():
            out[(tp.topic, tp.partition)] = int(self._consumer.position(tp, timeout_ms=10_000))
        return out

    # ------------------------------------------------------------------------------------------- publishing

    def _txn_producer(self) -> TransactionalProducer:
        if self._txn is None:
            self._txn = TransactionalProducer(self.config.kafka, self.group_id, SERVICE)
        # One alerts service owns every partition of its group (the lifecycle is global), so its transactional id
        # is partition 0's whatever the assignment: a restarted instance fences the dead one (init_transactions
        # aborts what it left open) before the first poll. A dropped producer is started again here.
        self._txn.assign([0])
        return self._txn

    def _drop_txn(self) -> None:
        if self._txn is not None:
            try:
                self._txn.close()
            except Exception as exc:  # closing a producer whose broker is gone
                log.debug("closing the transactional producer: %s", exc)
            self._txn = None

    def _publish(self) -> None:
        """Every recorded, unpublished batch, oldest first, each in one Kafka transaction with its offsets."""
        if self._outcome_unknown:
            self._recover()  # a commit that timed out may have committed: never publish a batch twice
            self._outcome_unknown = False
        for batch in self.store.unpublished():
            self._publish_batch(batch)
            self.store.published(batch.batch)

    def _publish_batch(self, batch: Batch) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        txn = self._txn_producer()
        mark = f"{BATCH_MARK}{batch.batch}"
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, mark, -1) for (t, p), o in batch.offsets.items()}
        # The commit waits at most the producer's commit_timeout_s (/healthz shows the wait), /readyz says so after 5 s.
        watch = threading.Timer(
            5.0, self.metrics.dependency_down, ("kafka-writes", "a transaction commit is waiting for the broker")
        )
        watch.daemon = True
        watch.start()
        timeouts = txn.commit_timeouts
        try:
            for r in batch.records:
                txn.send(r.topic, key=r.key, value=r.value)
            txn.commit(offsets, self._consumer.group_metadata())
        except (ProducerFenced, TransactionAborted):
            # Aborted already (or fenced: this instance must stop); a commit that timed out has an unknown outcome.
            self._outcome_unknown = self._outcome_unknown or txn.commit_timeouts != timeouts
            raise
        except Exception:
            txn.abort()  # a failed send: nothing of the batch becomes visible; published again on the next try
            raise
        finally:
            watch.cancel()
        self._offsets.update(batch.offsets)

    def _recover(self) -> None:
        """Batches recorded before a crash: publish those Kafka has not committed (the group's committed offsets
        carry the number of the last batch committed with them)."""
        pending = self.store.unpublished()
        if not pending:
            return
        from kafka.structs import TopicPartition

        self._txn_producer()  # aborts a transaction the crashed instance left open, before offsets are read
        committed: dict[tuple[str, int], int] = {}
        for tp in {tp for b in pending for tp in b.offsets}:
            meta = self._consumer.committed(TopicPartition(*tp), metadata=True)
            text = str(getattr(meta, "metadata", "") or "")
            if text.startswith(BATCH_MARK):
                committed[tp] = int(text.removeprefix(BATCH_MARK))
        republished = 0
        for b in pending:
            if any(committed.get(tp, 0) >= b.batch for tp in b.offsets):
                self.store.published(b.batch)
                continue
            self._publish_batch(b)
            self.store.published(b.batch)
            republished += 1
        log.info(
            "%d batch(es) recorded before the restart: %d already in Kafka, %d published now",
            len(pending),
            len(pending) - republished,
            republished,
        )

    def _write_alert_points(self) -> None:
        assert self._alert_sink is not None
        while rows := self.store.influx_pending():
            self._alert_sink.add_all(line for _, line in rows)
            self._alert_sink.flush()
            self.store.influx_written(rows[-1][0])

    def _block(self, exc: BaseException) -> None:
        self.metrics.errors.labels("commit_held").inc()
        what = (
            "influxdb" if isinstance(exc, InfluxError) else "store" if isinstance(exc, AlertsError) else "kafka-writes"
        )
        self.metrics.dependency_down(what, f"{type(exc).__name__}: {str(exc)[:200]}")
        if not self.blocked:
            self.blocked = True
            self._blocked_at = self.clock()
            self._consumer.pause(*self._consumer.assignment())
        self._backoff = min(max(self._backoff * 2, 0.5), 15.0)
        self._retry_at = self.clock() + self._backoff
        log.warning(
            "commit held (%s: %s); offsets not committed, retry in %.1fs", type(exc).__name__, exc, self._backoff
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vigil alerts", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example plant)")
    parser.add_argument("--group", default="vigil-alerts", help="Kafka consumer group")
    add_metrics_arguments(parser, SERVICE)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 2
    metrics = ServiceMetrics(SERVICE, liveness_timeout_s=120.0)
    from alerts.http import start_metrics

    try:
        server = start_metrics(metrics, args.metrics_port, args.metrics_host)
    except AlertsError as exc:
        print(f"vigil alerts: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    service = AlertService(config, group_id=args.group, metrics=metrics)
    stop = service.stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        service.setup()
        log.info("alerts service running; acknowledge API at %s", service.ack_url)
        service.run(stop)
    except (AlertsError, VigilError) as exc:
        print(f"vigil alerts: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        service.close()
        if server is not None:
            server.close()
    return 0
