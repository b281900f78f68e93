"""``vigil models``: the models stage as a Kafka service.

Consumes feature vectors and maintenance events (one consumer group, manual commits, the range assignor so a
worker owns partition ``p`` of both co-partitioned topics), runs the :class:`~models.pipeline.FleetModel` on each,
produces :class:`~vigil.contracts.Prediction` and :class:`~vigil.contracts.DriftEvent` messages keyed by machine,
and publishes the segment audit as :class:`~vigil.contracts.SegmentAuditReport` messages.

State follows its partition (:mod:`models.changelog`): each machine's state (normal, smoothing, margins, sensor
health, drift detectors, pending labels, alert episodes, last window) is checkpointed as one record keyed by
machine in the changelog partition with the number of its features partition, with the offsets it reflects; a
marker per partition says up to which offsets all its machines are there. The per-type models are shared by
the machines a worker serves and stay with the worker (one checkpoint per worker; a new worker starts from the
freshest one of its group).

Exactly once between Kafka topics (:mod:`vigil.transactions`; the checkpoints, publishes, rebalances and restores
are :mod:`models.durability`): inputs are read ``read_committed``; predictions,
drift events, forwarded maintenance events, dead letters and audit reports are produced inside a Kafka
transaction, and each checkpoint adds the machines' state, the shared models, the markers and the consumed
offsets to it and commits: all of it becomes visible together, or (a crash, an abort) none of it. Between
checkpoints, outputs are committed within ``models.commit_latency_s`` with the offsets but without the state (a
restart recomputes them from the last checkpoint without publishing them again). A restarted
worker or a new owner therefore restores state that reflects exactly the committed offsets and recomputes, from
there, exactly what the uninterrupted run would have: no prediction is published twice, and none with another
value (the per-type models are checkpointed in the same transaction as the machines, so they are never older
or newer than the machine state they are restored with). A revocation commits the same way (on the client's IO
thread); lost partitions abort. On assignment a worker first takes the transactional id of its assignment
(aborting a dead predecessor's open transaction), reads the changelog partitions of its new partitions to their
end, imports those machines and seeks to the marker's offsets; a record a machine's state already reflects is
skipped (a changelog written by the at-least-once versions before can be ahead of the group's offsets). A failed
commit aborts: the worker reloads its shared models and its partitions from the changelog and goes on from the
committed offsets. A maintenance event on another partition than its machine's is forwarded to its machine's
partition. A checkpoint that is unreadable, or was written for another format, River version, feature schema or
state shape, is reported (log, ``vigil_errors_total{kind="checkpoint"}``) and rebuilt by replaying the partition
from the beginning (its outputs are published again). Undecodable input goes to the dead-letter topic.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from models.changelog import (
    MAX_RECORD_BYTES,
    MachineChangelog,
    SharedStore,
    changelog_topics,
)
from models.checkpoint import feature_schema, loads, read_header
from models.durability import Durability
from models.exceptions import CheckpointError, ModelsError
from models.maintenance_input import MaintenanceRules, check_maintenance
from models.metrics import quality_gauges
from models.pipeline import FleetModel
from vigil.bus import (
    TopicSpec,
    changelog_topic,
    dead_letter,
    ensure_topics,
    machine_key,
    partition_count,
    pipeline_topics,
    send_dead_letter,
)
from vigil.config import VigilConfig, load_config
from vigil.contracts import (
    DriftEvent,
    FeatureVector,
    MaintenanceEvent,
    Prediction,
    SegmentAuditReport,
    decode,
    encode,
    utcnow,
)
from vigil.exceptions import BusError, ContractError
from vigil.kafka_access import require_access
from vigil.transactions import TransactionalProducer, make_read_committed_consumer, transaction_timeout_ms

log = logging.getLogger(__name__)

SERVICE = "models"
MAINTENANCE_REMEMBERED = 16
"""Maintenance events remembered per machine to drop repeats (repeats arrive within minutes, not 16 events later)."""
POLL_RECORDS = 32
"""Records handled per poll: a vector costs the models milliseconds, so a window's burst of vectors is handled in
slices with a chance to commit (``models.commit_latency_s``) between them; the rest stays in the consumer's buffer."""
FORWARDED_HEADER = "vigil-forwarded-from"
"""Header of a maintenance event forwarded to its machine's partition (``topic:partition:offset`` it came from)."""


def _tpk(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class ModelService(Durability):
    """One worker of the models stage."""

    def __init__(
        self, config: VigilConfig, group_id: str = "vigil-models", metrics: Any = None, worker: str = "0"
    ) -> None:
        self.config = config
        self.group_id = group_id
        self.metrics = metrics
        self.worker = worker
        self.model = FleetModel(config.models, config.machines_by_id, config.machine_types)
        self.maintenance_rules = MaintenanceRules.for_plant(config)
        self.schema = feature_schema(config)
        shared_topic, machines_topic = changelog_topics(config.topics.changelog_prefix)
        # One shared-models checkpoint per worker of the group: workers never overwrite each other's.
        self.store = SharedStore(
            config.kafka, shared_topic, group_id, group_id if worker == "0" else f"{group_id}.{worker}"
        )
        self.machine_log = MachineChangelog(config.kafka, machines_topic, group_id)
        self.restored = "fresh"
        """The shared models: ``restored`` (own checkpoint), ``peer`` (another worker's, as a start),
        ``rebuilt`` (checkpoint refused: replay) or ``fresh`` (none)."""
        self.predictions = 0
        self.drift_events = 0
        self.audits = 0
        self.machines_restored = 0
        """Machines whose state was read from the changelog on assignment (over the worker's life)."""
        self.machines_refused = 0
        """Machine checkpoints refused (unreadable or incompatible): those machines were rebuilt by replay."""
        self.skipped = 0
        """Input records a restored machine's state already reflected (delivered again, not processed twice)."""
        self.duplicates = 0
        """Maintenance events already applied to their machine's state (re-sent or re-forwarded): not again."""
        self.forwarded = 0
        """Maintenance events that arrived on another partition than their machine's, forwarded there."""
        self.fenced = 0
        """Times the producer was fenced and the worker went back to its last commit with a new one."""
        self.last_restore_s = 0.0
        self.last_checkpoint_bytes = 0
        self.last_checkpoint_machines = 0
        self._partitions = 0
        self._owned: set[int] = set()
        """Partition numbers whose machines this worker holds (features and maintenance are co-partitioned)."""
        self._positions: dict[str, int] = {}
        """``topic:partition`` -> the next offset to handle; everything below it is in the state."""
        self._partition_of: dict[str, int] = {}
        self._skip: dict[str, dict[str, int]] = {}
        self._last_window: dict[str, datetime] = {}
        self._maintenance: dict[str, list[tuple[str, str]]] = {}
        """Machine -> the latest maintenance events applied to its state, ``(event, ts)``: repeats are dropped."""
        self._dirty: set[str] = set()
        self._replay_until: dict[str, int] = {}
        """``topic:partition`` -> outputs below this offset were committed already: a partition rebuilt from its
        beginning (a refused checkpoint) re-learns them without publishing."""
        self._replaying = False
        """The record being handled is below ``_replay_until``: it produces nothing."""
        self._marks: dict[int, dict[str, int]] = {}
        """Partition -> the input offsets up to which every machine of it is in the changelog (its last marker)."""
        self._rebuild_all = False
        self._reload_shared = False
        """An abort left the shared models ahead of the changelog: reloaded before the next assignment."""
        self._held: set[int] = set()
        """Partitions revoked (and checkpointed) by a rebalance still in progress: kept if assigned back."""
        self._pending_assignment: set[Any] | None = None
        self._generations: tuple[int | None, int | None] = (None, None)
        """The group generation of the last revocation and of the assignment that followed it."""
        self._tx: TransactionalProducer | None = None
        self._consumer: Any = None
        self._last_checkpoint = time.monotonic()
        self._last_audit = time.monotonic()
        self._closing = False
        self._output_since: float | None = None
        """When the open transaction got its first output (None: it has none): committed within
        ``models.commit_latency_s`` of it (:meth:`publish`)."""
        self._visible: list[datetime] = []
        """Window ends of the predictions in the open transaction (their latency is observed when it commits)."""
        self.publishes = 0
        """Transactions committed with outputs and offsets but no state (:meth:`publish`)."""

    # ------------------------------------------------------------------ life cycle
    def setup(self) -> None:
        """Create topics, restore the shared models, connect; safe to call once per process."""
        from kafka.coordinator.assignors.range import RangePartitionAssignor

        kafka, topics = self.config.kafka, self.config.topics
        ensure_topics(
            kafka,
            [*pipeline_topics(kafka, topics), changelog_topic(topics, SERVICE), TopicSpec(topics.audit, 1)],
        )
        require_access(
            kafka,
            read=[("topics.features", topics.features), ("topics.maintenance", topics.maintenance)],
            write=[
                ("topics.predictions", topics.predictions),
                ("topics.drift", topics.drift),
                ("topics.dead_letter", topics.dead_letter),
            ],
        )
        self._partitions = partition_count(kafka, topics.features)
        maintenance = partition_count(kafka, topics.maintenance)
        if maintenance != self._partitions:
            raise ModelsError(
                f"topics {topics.features} ({self._partitions} partitions) and {topics.maintenance} ({maintenance}) "
                "must have the same partition count: a machine's vectors and maintenance events must reach the same "
                "worker"
            )
        self.machine_log.ensure(self._partitions)
        self.store.ensure()
        # One producer for every output and all state: a transaction is one producer's. Started on assignment
        # (its transactional id is the assignment's).
        self._tx = TransactionalProducer(
            kafka,
            self.group_id,
            SERVICE,
            transaction_timeout_ms=transaction_timeout_ms(self.config.models.checkpoint_interval_s),
            max_request_size=MAX_RECORD_BYTES,
        )
        if self.metrics is not None:
            self.metrics.watch_wait("kafka transaction commit", self._tx.waiting_s)
        self.restore_shared()
        # The range assignor gives one worker partition p of both topics (they are co-partitioned by machine).
        session_ms = int(self.config.models.session_timeout_s * 1000)
        self._consumer = make_read_committed_consumer(
            kafka,
            self.group_id,
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=min(3000, session_ms // 3),
        )
        self._consumer.subscribe(topics=[topics.features, topics.maintenance], listener=_rebalance_listener(self))
        _preload_river(self.config.models.classifier)
        if self.metrics is not None:
            self.metrics.set_ready(True)

    def restore_shared(self) -> None:
        """The per-type models: this worker's own checkpoint, else the freshest of another worker of the group
        (a new worker starts from what the group learnt instead of untrained models), else fresh."""
        found = self.store.read()
        own = found.pop(self.store.key, None)
        if own is not None:
            try:
                self._adopt(loads(own[0], own[1], self.schema)[0], "restored")
            except CheckpointError as exc:
                self._refused(f"shared models of worker {self.store.key}", exc)
                self.restored = "rebuilt"
                self._rebuild_all = True
            return
        for key, (header, chunks) in sorted(found.items(), key=lambda kv: _written_at(kv[1][0]), reverse=True):
            try:
                self._adopt(loads(header, chunks, self.schema)[0], "peer")
            except CheckpointError as exc:
                log.warning("models: shared models of worker %s not usable as a start (%s)", key, exc)
                continue
            log.info("models: worker %s starts from the shared models of worker %s", self.store.key, key)
            return
        self.restored = "fresh"

    def _adopt(self, model: FleetModel, how: str) -> None:
        for machine in model.machine_ids():  # a shared checkpoint holds none; machines come with their partitions
            model.drop_machine(machine)
        # The configuration is the live one, not the pickled one (plant edits take effect on restart).
        model.machines = dict(self.config.machines_by_id)
        model.machine_types = dict(self.config.machine_types)
        self.model = model
        self.restored = how
        log.info("models: shared models %s (types: %s)", how, ", ".join(model.type_names()) or "none")

    def _refused(self, what: str, exc: Exception) -> None:
        log.error("models: checkpoint of %s refused (%s); rebuilding by replay", what, exc)
        if self.metrics is not None:
            self.metrics.errors.labels("checkpoint").inc()

    def close(self) -> None:
        try:
            if self._consumer is not None and self._owned:
                self.checkpoint()
        finally:
            # Closing revokes the partitions; what they hold was just checkpointed.
            self._closing = True
            if self._consumer is not None:
                self._consumer.close(autocommit=False)
            if self._tx is not None:
                self._tx.close()  # aborts what a failed checkpoint left open

    # ------------------------------------------------------------------ the loop
    def run(
        self,
        stop: threading.Event | None = None,
        *,
        max_records: int | None = None,
        idle_exit_s: float | None = None,
    ) -> None:
        """Consume until ``stop`` is set, ``max_records`` input records were handled, or nothing came for
        ``idle_exit_s`` seconds while owning partitions (joining the group and restoring is not idleness: on a
        loaded machine it can take longer than the idle time); then checkpoint."""
        handled = 0
        last_data = time.monotonic()
        while stop is None or not stop.is_set():
            budget = None if max_records is None else max_records - handled
            if budget is not None and budget <= 0:
                break
            try:
                n = self.step(timeout_ms=self._poll_timeout_ms(), max_records=budget)
                handled += n
                now = time.monotonic()
                if n or not self._owned:
                    last_data = now
                elif idle_exit_s is not None and now - last_data >= idle_exit_s:
                    break
                if now - self._last_checkpoint >= self.config.models.checkpoint_interval_s and self._owned:
                    self.checkpoint()
                elif self._publish_due(now):
                    self.publish()
            except Exception as exc:
                fenced = self._tx.fenced_error(exc) if self._tx is not None else None
                if fenced is None:
                    raise
                self.recover_fenced(fenced)
        if self._owned:
            self.checkpoint()

    def _poll_timeout_ms(self) -> int:
        """500 ms, or less while outputs wait for their commit (the poll must not hold them past their budget)."""
        if self._output_since is None:
            return 500
        left = self._output_since + self.config.models.commit_latency_s - time.monotonic()
        return max(0, min(500, int(left * 1000)))

    def _publish_due(self, now: float) -> bool:
        since = self._output_since
        return since is not None and bool(self._owned) and now - since >= self.config.models.commit_latency_s

    def step(self, timeout_ms: int = 500, max_records: int | None = None) -> int:
        """One poll: handle what arrived (at most ``max_records``); returns how many records were handled."""
        batch = self._consumer.poll(timeout_ms=timeout_ms, max_records=min(max_records or POLL_RECORDS, POLL_RECORDS))
        if self._pending_assignment is not None:
            assigned, self._pending_assignment = self._pending_assignment, None
            self._assign(assigned)
            # Every assigned partition was sought to the offsets its state reflects: what this poll fetched
            # before that is fetched again from there.
            batch = {}
        handled = 0
        owned = self._consumer.assignment() if batch else set()
        for tp, records in batch.items():
            if tp not in owned or tp.partition not in self._owned:
                continue  # fetched before a rebalance took the partition away: its new owner handles these
            for record in records:
                self._handle(record)
                self._positions[_tpk(tp.topic, tp.partition)] = record.offset + 1
                handled += 1
        if self.metrics is not None:
            self.metrics.heartbeat()
            self.metrics.update_lag(self._consumer)
        if time.monotonic() - self._last_audit >= self.config.models.checkpoint_interval_s:
            self.publish_audit()
        return handled

    def _handle(self, record: Any) -> None:
        name = _tpk(record.topic, record.partition)
        self._replaying = record.offset < self._replay_until.get(name, -1)
        try:
            self._handle_message(record, name)
        finally:
            self._replaying = False

    def _handle_message(self, record: Any, name: str) -> None:
        if self.metrics is not None:
            self.metrics.messages_in.labels(record.topic).inc()
        try:
            message = decode(record.value)
        except ContractError as exc:
            self._send_dead_letter(record, exc.reason, str(exc))
            return
        if record.topic == self.config.topics.maintenance:
            # Labels are checked before use: a wrong one does lasting harm (models/maintenance_input.py).
            machine_id = getattr(message, "machine_id", None)
            newest = self._last_window.get(machine_id) if isinstance(machine_id, str) else None
            refusal = check_maintenance(message, self.maintenance_rules, now=utcnow(), newest=newest)
            if refusal is not None:
                self._send_dead_letter(record, refusal.reason, str(refusal))
                return
        if isinstance(message, MaintenanceEvent):
            home = self._home_partition(message.machine_id, record.partition)
            if home != record.partition and not _forwarded(record):
                # The machine's state lives on (is checkpointed with the offsets of) partition ``home``: handled
                # here it would be applied to a state this worker may not hold, or move that state to the
                # changelog partition of the wrong number. The owner of ``home`` handles it there.
                self._forward(record, home)
                return
        if isinstance(message, FeatureVector | MaintenanceEvent):
            machine = message.machine_id
            skip = self._skip.get(machine)
            if skip is not None and record.offset < skip.get(name, 0):
                self.skipped += 1  # its restored state already reflects this record
                return
            if isinstance(message, MaintenanceEvent) and not self._first_time(message):
                self.duplicates += 1
                return
            self._partition_of[machine] = record.partition
            self._dirty.add(machine)
        if isinstance(message, FeatureVector):
            out = self.model.process(message)
            self._last_window[message.machine_id] = message.window_end
            if out.prediction is not None:
                self._publish_prediction(out.prediction)
            for event in out.drift:
                self._publish_drift(event)
        elif isinstance(message, MaintenanceEvent):
            for event in self.model.maintenance(message):
                self._publish_drift(event)
        else:
            self._send_dead_letter(record, "kind", f"unexpected {message.kind!r} on {record.topic}")

    def _first_time(self, event: MaintenanceEvent) -> bool:
        """Whether ``event`` was not applied to its machine yet (and remember it). A failure or repair cannot
        happen twice at the same instant, so the same one again is a repeat: at-least-once delivery upstream, or
        a forward repeated after the forwarding worker crashed before its checkpoint."""
        seen = self._maintenance.setdefault(event.machine_id, [])
        key = (event.event, event.ts.isoformat())
        if key in seen:
            return False
        seen.append(key)
        del seen[:-MAINTENANCE_REMEMBERED]
        return True

    def _home_partition(self, machine: str, default: int) -> int:
        """The partition whose state holds ``machine``: where its vectors came from, else where the default
        partitioner puts its key (as the features stage produces them)."""
        known = self._partition_of.get(machine)
        if known is not None:
            return known
        if self._partitions <= 0:
            return default
        from kafka.partitioner.default import murmur2

        return int((murmur2(machine_key(machine)) & 0x7FFFFFFF) % self._partitions)

    def _forward(self, record: Any, partition: int) -> None:
        """The maintenance event to the maintenance partition of its machine (once: a forwarded event is handled
        where it arrives). Committed with the next checkpoint, like every output."""
        if self._replaying:  # committed before: forwarded then
            return
        source = f"{record.topic}:{record.partition}:{record.offset}"
        # Maintenance events are rare: each one forwarded is worth a line (the producer partitions unlike features).
        log.warning("models: maintenance event at %s is for a machine of partition %d: forwarded", source, partition)
        self._send(
            record.topic,
            key=record.key,
            value=record.value,
            partition=partition,
            headers=[(FORWARDED_HEADER, source.encode())],
        )
        self.forwarded += 1
        if self.metrics is not None:
            self.metrics.messages_out.labels(record.topic).inc()

    def _publish_prediction(self, prediction: Prediction) -> None:
        if self._replaying:  # committed before: published then
            return
        topic = self.config.topics.predictions
        self._send(
            topic,
            key=machine_key(prediction.machine_id),
            value=encode(prediction),
            headers=[("worker", self.worker.encode())],
        )
        self.predictions += 1
        if self.metrics is not None:
            self.metrics.messages_out.labels(topic).inc()
            self.metrics.observe_source_latency("prediction", prediction.ts)
            self._visible.append(prediction.ts)

    def _publish_drift(self, event: DriftEvent) -> None:
        if self._replaying:  # committed before: published then
            return
        topic = self.config.topics.drift
        key = machine_key(event.machine_id or event.machine_type)
        self._send(topic, key=key, value=encode(event))
        self.drift_events += 1
        log.info(
            "drift: %s %s %s %s: %s", event.event, event.machine_type, event.machine_id, event.target, event.detail
        )
        if self.metrics is not None:
            self.metrics.messages_out.labels(topic).inc()
            self.metrics.drift_events.labels(event.detector, event.machine_type).inc()

    def _send_dead_letter(self, record: Any, reason: str, error: str) -> None:
        if self._replaying:  # committed before: published then
            return
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
        send_dead_letter(self._producer(), self.config.topics, letter)
        if self.metrics is not None:
            self.metrics.dead_letters.labels(reason).inc()

    # ------------------------------------------------------------------ the segment audit
    def publish_audit(self) -> list[SegmentAuditReport]:
        """The prequential segment audit as ``vigil_model_quality`` gauges, warnings for segments served worse,
        and one message per segment on the audit topic (keyed ``<dimension>=<segment>``)."""
        self._last_audit = time.monotonic()
        reports = self.model.audit.messages(self.worker)
        topic = self.config.topics.audit
        for report in reports:
            if self.metrics is not None:
                # The fleet keeps the gauge labels it always had (dimension="all", segment="all").
                dimension = "all" if report.dimension == "fleet" else report.dimension
                for metric, value in quality_gauges(report).items():
                    self.metrics.set_quality(metric, value, dimension, report.segment)
            if report.worse_than_fleet:
                log.warning(
                    "segment audit: %s=%s served worse than the fleet: %s",
                    report.dimension,
                    report.segment,
                    "; ".join(report.findings),
                )
            if self._tx is not None and self._tx.producer is not None:
                key = f"{report.dimension}={report.segment}".encode()
                self._send(topic, key=key, value=encode(report))
                self.audits += 1
                if self.metrics is not None:
                    self.metrics.messages_out.labels(topic).inc()
        return reports


def _preload_river(classifier: str) -> None:
    """Import the River modules the models use now, at start-up: imported on the first vector instead, they held
    the first window's predictions ~3 s (measured on a loaded 2-core machine)."""
    import importlib

    for name in (
        "anomaly",
        "stats",
        "linear_model",
        "optim",
        "drift",
        "metrics",
        *(("forest",) if classifier == "arf" else ()),
    ):
        importlib.import_module(f"river.{name}")


def _forwarded(record: Any) -> bool:
    return any(key == FORWARDED_HEADER for key, _ in record.headers or ())


def _written_at(header: bytes) -> str:
    try:
        return str(read_header(header).get("written_at", ""))
    except CheckpointError:
        return ""


def _rebalance_listener(service: ModelService) -> Any:
    """kafka-python rebalance listener: restore positions on assignment, checkpoint on revocation."""
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: set[Any]) -> None:
            service.on_revoked(revoked)

        def on_partitions_lost(self, lost: set[Any]) -> None:
            service.on_revoked(lost, lost=True)

        def on_partitions_assigned(self, assigned: set[Any]) -> None:
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
    parser.add_argument(
        "--worker", default="0", help="stable worker name within the group (the key of its shared-models checkpoint)"
    )
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
            "models: worker %s, %s shared models; consuming %s and %s",
            args.worker,
            service.restored,
            config.topics.features,
            config.topics.maintenance,
        )
        service.run(stop)
    except (ModelsError, BusError) as exc:  # topics that cannot carry per-machine state: refused at start-up
        log.error("models: %s", exc)
        return 2
    finally:
        restore_signals()
        service.close()
        if server is not None:
            server.close()
    return 0
