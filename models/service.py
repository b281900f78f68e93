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

Exactly once between Kafka topics (:mod:`vigil.transactions`): inputs are read ``read_committed``; predictions,
drift events, forwarded maintenance events, dead letters and audit reports are produced inside a Kafka
transaction, and each checkpoint adds the machines' state, the shared models, the markers and the consumed
offsets to it and commits: all of it becomes visible together, or (a crash, an abort) none of it. A restarted
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
from datetime import datetime, timedelta
from typing import Any

from models.changelog import (
    MARKER,
    MAX_RECORD_BYTES,
    MachineChangelog,
    Marker,
    PartitionLog,
    SharedStore,
    changelog_topics,
    decode_marker,
    encode_marker,
)
from models.checkpoint import dump_machine, dumps_shared, feature_schema, load_machine, loads, read_header
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
from vigil.exceptions import BusError, ContractError, ProducerFenced, TransactionAborted
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

    # ------------------------------------------------------------------ rebalances
    def on_revoked(self, partitions: set[Any], *, lost: bool = False) -> None:
        """Rebalance listener, run on kafka-python's IO thread (the whole group waits for it): commit what was
        handled (outputs, state, offsets: one transaction), so the next owner goes on from here. Lost partitions
        (the group moved on without this worker) abort what is open and are dropped: another worker may already
        own them, and goes on from the last commit."""
        parts = {tp.partition for tp in partitions} & self._owned
        if lost:
            if self._tx is not None:
                self._tx.abort()
            self._rewind()
            return
        if not self._closing and parts:
            try:
                self._commit(self._owned)
            except Exception:
                # Aborted: the next owner goes on from the last commit; nothing of this transaction was visible.
                log.exception("models: commit on revocation of partitions %s failed", sorted(parts))
                self._rewind()
                return
        self._owned -= parts
        self._held |= parts
        self._generations = (self._generation_id(), None)

    def on_assigned(self, partitions: set[Any]) -> None:
        # Restoring reads a topic: not on the consumer's IO thread; step() does it before it handles any record.
        self._pending_assignment = set(partitions)
        self._generations = (self._generations[0], self._generation_id())

    def _membership_lost(self) -> bool:
        generation = getattr(getattr(self._consumer, "_coordinator", None), "_generation", None)
        is_lost = getattr(generation, "is_lost", None)
        return bool(is_lost()) if callable(is_lost) else False

    def _generation_id(self) -> int | None:
        """The consumer's current group generation (``None`` when unknown: then nothing is kept over a
        rebalance, which is always safe)."""
        generation = getattr(getattr(self._consumer, "_coordinator", None), "_generation", None)
        found = getattr(generation, "generation_id", None)
        return found if isinstance(found, int) and found >= 0 else None

    def _rewind(self) -> None:
        """After an abort: forget every partition and reload the shared models (they learnt from the aborted
        records too); the next assignment restores from the changelog, at the committed offsets."""
        self._forget(self._owned | self._held)
        self._reload_shared = True
        self._output_since = None  # the aborted transaction's outputs were never visible
        self._visible.clear()

    def _forget(self, parts: set[int]) -> None:
        for machine, partition in list(self._partition_of.items()):
            if partition in parts:
                self.model.drop_machine(machine)
                del self._partition_of[machine]
                self._skip.pop(machine, None)
                self._last_window.pop(machine, None)
                self._maintenance.pop(machine, None)
                self._dirty.discard(machine)
        for topic in self._topics():
            for p in parts:
                self._positions.pop(_tpk(topic, p), None)
                self._replay_until.pop(_tpk(topic, p), None)
        for p in parts:
            self._marks.pop(p, None)
        self._owned -= parts
        self._held -= parts

    def _topics(self) -> tuple[str, str]:
        return self.config.topics.features, self.config.topics.maintenance

    def _assign(self, assigned: set[Any]) -> None:
        """Take over the assigned partitions: keep the ones this worker just checkpointed and got back (unless
        another worker moved their offsets meanwhile), restore the others from the changelog, seek every one to
        the offsets its state reflects."""
        from kafka import TopicPartition

        parts = {tp.partition for tp in assigned}
        # First the producer of this assignment: its init_transactions aborts a dead owner's open transaction, so
        # the changelog reads below are not cut short at that transaction's start (read_committed).
        assert self._tx is not None
        self._tx.assign(parts)
        if self._reload_shared:
            self._reload_shared = False
            self._forget(self._owned | self._held)
            self.restore_shared()
        self._forget(self._held - parts)
        committed = {tp: self._consumer.committed(tp) for tp in assigned}
        revoked_in, assigned_in = self._generations
        # A partition comes back unchanged only if no generation passed in between (this worker was not dropped
        # from the group meanwhile, so nobody else owned it: a revocation no longer commits, so the committed
        # offsets alone would not show another owner's work) and nobody committed past this worker's position.
        consecutive = revoked_in is not None and assigned_in == revoked_in + 1
        keep = {
            p
            for p in (self._held & parts if consecutive else set())
            if all(
                (committed.get(TopicPartition(t, p)) or 0) <= self._positions.get(_tpk(t, p), 0) for t in self._topics()
            )
        }
        self._forget(self._held - keep)
        self._held.clear()
        started = time.monotonic()
        new = parts - keep
        logs = self.machine_log.read(new)
        restored = 0
        for p in sorted(new):
            refused, marker = self._restore_partition(p, logs[p])
            restored += len(logs[p].machines) - refused
            mark: dict[str, int] = {}
            for topic in self._topics():
                tp = TopicPartition(topic, p)
                name = _tpk(topic, p)
                # Outputs below here were committed (by a replay's marker: further than its state).
                done = max(int(committed.get(tp) or 0), marker.offsets.get(name, 0), marker.published.get(name, 0))
                if self._rebuild_all or refused:
                    self._consumer.seek_to_beginning(tp)
                    self._positions.pop(name, None)
                    start = 0
                elif name in marker.offsets:
                    start = marker.offsets[name]
                    self._seek(tp, start)
                elif committed.get(tp) is not None:
                    start = int(committed[tp])
                    self._seek(tp, start)
                else:
                    self._consumer.seek_to_beginning(tp)
                    start = 0
                mark[name] = start
                if done > start:  # re-learnt, not published again
                    self._replay_until[name] = done
            self._marks[p] = mark
        for p in keep:
            for topic in self._topics():
                position = self._positions.get(_tpk(topic, p))
                if position is not None:
                    self._seek(TopicPartition(topic, p), position)
        self._owned = parts
        self._rebuild_all = False
        self.last_restore_s = time.monotonic() - started
        log.info(
            "models: assigned partitions %s (kept %s); restored %d machine(s) in %.2fs",
            sorted(parts),
            sorted(keep),
            restored,
            self.last_restore_s,
        )

    def _seek(self, tp: Any, offset: int) -> None:
        self._consumer.seek(tp, offset)
        self._positions[_tpk(tp.topic, tp.partition)] = offset

    def _restore_partition(self, partition: int, stored: PartitionLog) -> tuple[int, Marker]:
        """Import the machines of one changelog partition; returns how many were refused and the marker."""
        marker = Marker()
        if stored.marker is not None:
            try:
                marker = decode_marker(stored.marker)
            except CheckpointError as exc:
                self._refused(f"partition {partition} marker", exc)
        if self._rebuild_all:
            return 0, marker
        refused = 0
        for machine, value in sorted(stored.machines.items()):
            try:
                checkpoint = load_machine(value, self.schema, machine)
                self.model.import_machine(machine, checkpoint.state)
            except Exception as exc:  # whatever a bad record does, it is a refusal: rebuilt by replay
                self.model.drop_machine(machine)
                self._refused(f"machine {machine}", exc)
                refused += 1
                continue
            self._partition_of[machine] = partition
            self._skip[machine] = checkpoint.offsets
            if checkpoint.last_window is not None:
                self._last_window[machine] = checkpoint.last_window
            self._maintenance[machine] = list(checkpoint.maintenance)
        self.machines_restored += len(stored.machines) - refused
        self.machines_refused += refused
        return refused, marker

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

    # ------------------------------------------------------------------ durability
    def _producer(self) -> Any:
        """The transactional producer, inside an open transaction."""
        assert self._tx is not None
        self._tx.begin()
        if self._output_since is None:
            self._output_since = time.monotonic()
        return self._tx.producer

    def _send(self, topic: str, **kwargs: Any) -> None:
        """An output into the open transaction (committed within ``models.commit_latency_s``)."""
        assert self._tx is not None
        self._tx.send(topic, **kwargs)
        if self._output_since is None:
            self._output_since = time.monotonic()

    def publish(self) -> None:
        """Make the outputs visible now: commit the open transaction with the consumed offsets and a marker per
        partition that keeps its state offsets (the last checkpoint's) and moves its published offsets here; no
        machine state, no shared models (those stay on ``models.checkpoint_interval_s``).

        Exactly once holds because the models are deterministic: a restart restores the state of the last
        checkpoint, resumes at the marker's state offsets and recomputes from there, publishing nothing below
        the committed offsets (``_replay_until``, the path a refused checkpoint's rebuild takes), so what it
        publishes after them is what this worker would have. Costs one small transaction (a marker per
        partition), not the state of every machine handled."""
        try:
            self._commit(self._owned, with_state=False)
        except TransactionAborted as exc:
            log.warning("models: %s; going back to the last commit", exc)
            self._rewind()
            self._pending_assignment = set(self._consumer.assignment())

    def checkpoint(self, partitions: set[int] | None = None) -> None:
        """Commit what was handled: outputs, the state of each machine handled since the last checkpoint, the
        shared models, a marker per partition with the offsets its machines reflect, and those offsets, in one
        transaction. An abort (a failed commit) goes back to the last commit (:meth:`_rewind`). Not for rebalance
        callbacks (see :meth:`on_revoked`)."""
        try:
            self._commit(self._owned if partitions is None else partitions & self._owned)
        except TransactionAborted as exc:
            log.warning("models: %s; going back to the last commit", exc)
            self._rewind()
            self._pending_assignment = set(self._consumer.assignment())

    def recover_fenced(self, exc: ProducerFenced) -> None:
        """The producer was fenced (a broker restart aborted the open transaction and bumped the id's epoch, or
        another worker took the id): go back to the last commit as after an abort; the next step takes the
        assignment the group gives after its poll and a new producer for it (``init_transactions``)."""
        self.fenced += 1
        log.warning("models: %s; going back to the last commit with a new transactional producer", exc)
        if self.metrics is not None:
            self.metrics.errors.labels("producer_fenced").inc()
        self._rewind()
        self._pending_assignment = set(self._consumer.assignment())

    def _commit(self, parts: set[int], *, with_state: bool = True) -> None:
        assert self._tx is not None
        if self._membership_lost():
            # Dropped from the group (the next poll reports the partitions lost): another worker may own them
            # already; the commit would be refused (an old generation), so the transaction is aborted now.
            log.warning("models: not a group member any more; checkpoint of partitions %s skipped", sorted(parts))
            self._tx.abort()
            self._output_since = None
            self._visible.clear()
            return
        if not with_state:
            key = self.machine_log.key(MARKER)
            for part in sorted(parts):
                if part in self._marks:  # the state offsets stay; the published ones move to here
                    marker = encode_marker(self._marks[part], self.worker, self._published(part))
                    self.machine_log.send(self._producer(), part, key, marker)
            self._tx.commit(self._offsets_of(parts), self._consumer.group_metadata())
            self.publishes += 1
            self._committed_outputs()
            return
        written: list[str] = []
        size = 0
        for machine in sorted(self._dirty):
            p = self._partition_of.get(machine)
            state = self.model.export_machine(machine) if p in parts else None
            if p is None or state is None:
                continue
            offsets = self._partition_offsets(p)
            value = dump_machine(
                machine,
                state,
                offsets,
                self.schema,
                self._last_window.get(machine),
                self._maintenance.get(machine, ()),
            )
            self.machine_log.send(self._producer(), p, self.machine_log.key(machine), value)
            written.append(machine)
            size += len(value)
        header, chunks = dumps_shared(self.model, self.schema)
        self.store.write(self._producer(), header, chunks)
        key = self.machine_log.key(MARKER)
        marks = {p: self._partition_offsets(p) for p in sorted(parts)}
        for p, mark in marks.items():
            self.machine_log.send(self._producer(), p, key, encode_marker(mark, self.worker, self._published(p)))
        self._tx.commit(self._offsets_of(parts), self._consumer.group_metadata())
        self._marks.update(marks)
        self._dirty.difference_update(written)
        self.last_checkpoint_bytes, self.last_checkpoint_machines = size, len(written)
        self._last_checkpoint = time.monotonic()
        self._committed_outputs()

    def _offsets_of(self, parts: set[int]) -> dict[Any, Any]:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        return {
            TopicPartition(topic, p): OffsetAndMetadata(self._positions[_tpk(topic, p)], "", -1)
            for p in parts
            for topic in self._topics()
            if _tpk(topic, p) in self._positions
        }

    def _committed_outputs(self) -> None:
        """The open transaction's outputs are visible now: observe window close -> visible per prediction."""
        self._output_since = None
        if self.metrics is not None and self._visible:
            now = utcnow()
            grace = timedelta(seconds=self.config.windows.grace_s)
            for window_end in self._visible:
                self.metrics.observe_source_latency("prediction_visible", window_end + grace, now)
        self._visible.clear()

    def _published(self, partition: int) -> dict[str, int]:
        """How far outputs of ``partition`` were committed: its positions, or further while a replay is below what
        an earlier owner committed."""
        out = self._partition_offsets(partition)
        for topic in self._topics():
            name = _tpk(topic, partition)
            if name in self._replay_until:
                out[name] = max(out.get(name, 0), self._replay_until[name])
        return out

    def _partition_offsets(self, partition: int) -> dict[str, int]:
        """The next offset to handle per input topic of ``partition`` (where it was sought to, for a topic that
        nothing was read from yet: leaving it out would let a later owner fall back to a commit that is ahead)."""
        start = self._marks.get(partition, {})
        out = {}
        for topic in self._topics():
            name = _tpk(topic, partition)
            if name in self._positions:
                out[name] = self._positions[name]
            elif name in start:
                out[name] = start[name]
        return out

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
