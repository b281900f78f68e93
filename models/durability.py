"""The models service's durability: one Kafka transaction per checkpoint or publish, restore on assignment, rewind
on abort (see :mod:`models.service`, "Exactly once").

:class:`Durability` is the part of :class:`models.service.ModelService` that makes progress durable and moves state
with its partitions: a checkpoint writes each changed machine's state, the shared per-type models, a marker per
partition and the consumed offsets in one transaction; a publish (within ``models.commit_latency_s`` of an output)
commits the outputs and offsets with markers that keep the last checkpoint's state offsets, so a restart restores
that checkpoint and recomputes up to the committed offsets without publishing (:attr:`_replay_until`); an
assignment restores its partitions' machines from the changelog and seeks to what their state reflects.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from models.changelog import MARKER, MachineChangelog, Marker, PartitionLog, SharedStore, decode_marker, encode_marker
from models.checkpoint import dump_machine, dumps_shared, load_machine
from models.exceptions import CheckpointError
from models.pipeline import FleetModel
from vigil.config import VigilConfig
from vigil.contracts import utcnow
from vigil.exceptions import ProducerFenced, TransactionAborted
from vigil.transactions import TransactionalProducer

log = logging.getLogger("models.service")


def _tpk(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class Durability:
    """Checkpoints, publishes, rebalances and restores of a models worker (mixed into
    :class:`models.service.ModelService`, which sets these attributes)."""

    config: VigilConfig
    model: FleetModel
    schema: Any
    worker: str
    metrics: Any
    machine_log: MachineChangelog
    store: SharedStore
    machines_restored: int
    machines_refused: int
    fenced: int
    publishes: int
    last_restore_s: float
    last_checkpoint_bytes: int
    last_checkpoint_machines: int
    _tx: TransactionalProducer | None
    _consumer: Any
    _owned: set[int]
    _held: set[int]
    _positions: dict[str, int]
    _partition_of: dict[str, int]
    _skip: dict[str, dict[str, int]]
    _last_window: dict[str, datetime]
    _maintenance: dict[str, list[tuple[str, str]]]
    _dirty: set[str]
    _replay_until: dict[str, int]
    _marks: dict[int, dict[str, int]]
    _rebuild_all: bool
    _reload_shared: bool
    _pending_assignment: set[Any] | None
    _generations: tuple[int | None, int | None]
    _last_checkpoint: float
    _closing: bool
    _output_since: float | None
    _visible: list[datetime]

    def restore_shared(self) -> None:
        raise NotImplementedError

    def _refused(self, what: str, exc: Exception) -> None:
        raise NotImplementedError

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
