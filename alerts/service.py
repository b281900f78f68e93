"""``vigil alerts``: predictions, drift, features and maintenance in; InfluxDB, the alerts topic and notifications out.

One loop, one batch at a time::

    poll -> decode (bad messages -> dead-letter topic) -> lifecycle -> points + Alert messages + notifications
         -> InfluxDB flush (acknowledged) -> Alert messages sent (acknowledged)
         -> lifecycle state + outbox committed to sqlite (one transaction) -> Kafka offsets committed

If InfluxDB (or Kafka) does not acknowledge, nothing after it happens: the batch stays in memory, the consumer's
partitions are paused (it keeps polling, so it stays in its group), and the same step is retried with backoff
until it succeeds. Offsets therefore advance only after the write is acknowledged. The outbox thread delivers
what was committed; the HTTP API (acknowledge, assign, silence, line down) hands commands to this loop, so the
lifecycle is only ever touched by one thread.

The lifecycle is global to a deployment (it lives in one sqlite file), so run one alerts service per plant.
"""

from __future__ import annotations

import argparse
import logging
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
from alerts.outbox import Outbox
from alerts.receivers import Sender, build_senders
from alerts.render import Notification
from alerts.store import AlertStore, notification_id
from vigil.bus import (
    dead_letter,
    ensure_topics,
    machine_key,
    make_consumer,
    make_producer,
    pipeline_topics,
    send_dead_letter,
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
from vigil.exceptions import ConfigError, ContractError, VigilError
from vigil.influx import InfluxSink, Schema, dead_letter_rejected, ensure_target
from vigil.metrics import ServiceMetrics, add_metrics_arguments, start_http

log = logging.getLogger(__name__)

SERVICE = "alerts"
Command = Callable[[Lifecycle, float], tuple[Any, list[Transition]]]


@dataclass
class _Pending:
    """Everything derived from the records polled since the last commit, not yet acknowledged downstream."""

    alerts: list[Alert] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    offsets: dict[Any, int] = field(default_factory=dict)
    futures: list[tuple[Future[Any], Any]] = field(default_factory=list)
    alerts_sent: int = 0
    findings: list[Alert] = field(default_factory=list)
    """Informational transitions for the digest, recorded with the lifecycle state."""

    def empty(self) -> bool:
        return not (self.alerts or self.transitions or self.offsets or self.futures)


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
        self.digest = Digester.for_alerts(config.alerts.digest, [r.name for r in config.alerts.receivers])
        self.commands: Queue[tuple[Command, Future[Any]]] = Queue()
        self.blocked = False
        self._pending = _Pending()
        self._backoff = 0.0
        self._blocked_at = 0.0
        self._retry_at = 0.0
        self._consumer: Any = None
        self._producer: Any = None
        self.sink: InfluxSink | None = None
        self.outbox: Outbox | None = None
        self.http: Any = None

    # ------------------------------------------------------------------------------------------- start/stop

    def setup(self, *, http: bool = True) -> None:
        c = self.config
        self.store.open()
        tracks, flags = self.store.load()
        self.lifecycle.restore(tracks, flags)
        log.info("restored %d alert track(s), %d open episode(s)", len(tracks), len(self.lifecycle.open_episodes()))
        ensure_topics(c.kafka, pipeline_topics(c.kafka, c.topics))
        self._producer = make_producer(c.kafka)
        ensure_target(c.influx)  # creates a missing v1 database; a missing bucket or policy stops here, named
        self.sink = InfluxSink(c.influx, on_rejected=dead_letter_rejected(self._producer, c.topics, SERVICE))
        self.sink.setup()
        self._consumer = make_consumer(
            c.kafka,
            self.group_id,
            [c.topics.predictions, c.topics.drift, c.topics.features, c.topics.maintenance],
            max_poll_records=1000,
        )
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
        if self._producer is not None:
            self._producer.flush(timeout=30)
            self._producer.close(timeout=30)
        if self.sink is not None:
            self.sink.close()
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
        self._run_commands(now)
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
            self._add(self.lifecycle.tick(now))
            self.metrics.update_lag(self._consumer)
            due = self.sink is not None and (self.sink.due() or len(self.sink) >= self.config.influx.batch_size)
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
        self.sink.add_all(self.schema.points(message))
        if isinstance(message, Prediction):
            self._add(self.lifecycle.observe(message, now))
        elif isinstance(message, FeatureVector):
            self._add(self.lifecycle.observe_features(message, now))
        elif isinstance(message, DriftEvent):
            self._add(self.lifecycle.observe_drift(message, now))
        elif isinstance(message, MaintenanceEvent):
            self._add(self.lifecycle.observe_maintenance(message, now))
        else:
            self._dead_letter(record, "kind", f"the alerts service does not consume {message.kind!r} messages")

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
        # Sent now, acknowledged by the producer flush in _commit before offsets move.
        send_dead_letter(self._producer, self.config.topics, letter)

    def _add(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        assert self.sink is not None
        for t in transitions:
            self.sink.add_all(self.schema.points(t.alert))
            self._pending.alerts.append(t.alert)
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
        """Acknowledged writes in order; any failure leaves the batch pending and pauses consumption."""
        p = self._pending
        assert self.sink is not None
        started = time.monotonic()
        try:
            self.sink.flush()
            futures = [
                self._producer.send(self.config.topics.alerts, key=machine_key(a.machine_id), value=encode(a))
                for a in p.alerts[p.alerts_sent :]
            ]
            # Also acknowledges the dead letters sent while handling the batch.
            self._producer.flush(timeout=60)
            for f in futures:
                f.get(timeout=60)
            p.alerts_sent = len(p.alerts)
            notifications = self._notifications()
            flags = self.lifecycle.export_flags() if self.lifecycle.dirty_flags else None
            self.stats.notifications += self.store.commit(
                self.lifecycle.export_dirty(), flags, notifications, self.clock(), p.findings
            )
            if p.offsets:
                from kafka.structs import OffsetAndMetadata

                self._consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in p.offsets.items()})
        except Exception as exc:  # anything unacknowledged (InfluxWriteError, Kafka, sqlite) holds the offsets
            self._block(exc)
            return
        for future, result in p.futures:
            future.set_result(result)
        self.metrics.processing.labels("commit").observe(time.monotonic() - started)
        self.metrics.messages_out.labels(self.config.topics.alerts).inc(len(p.alerts))
        self.metrics.alerts_open.set(len(self.lifecycle.open_episodes()))
        wall = datetime.fromtimestamp(self.clock(), UTC)
        for a in p.alerts:
            if a.state.value == "open":
                self.metrics.observe_source_latency("alert", a.ts, wall)
        self._pending = _Pending()
        self.stats.commits += 1
        if self.blocked:
            log.info("downstream acknowledged again after %.0fs; resuming consumption", self.clock() - self._blocked_at)
            self.stats.blocked_s += self.clock() - self._blocked_at
            self._consumer.resume(*self._consumer.assignment())
            self.blocked = False
            self._backoff = 0.0
        if notifications and self.outbox is not None:
            self.outbox.wake()

    def _block(self, exc: BaseException) -> None:
        self.metrics.errors.labels("commit_held").inc()
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
    server = start_http(metrics, args.metrics_port, args.metrics_host)
    service = AlertService(config, group_id=args.group, metrics=metrics)
    stop = threading.Event()
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
