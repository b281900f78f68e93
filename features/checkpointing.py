"""The feature worker's durability: one Kafka transaction per checkpoint, restore on assignment, rewind on abort.

:class:`Checkpointing` is the part of :class:`features.service.FeatureService` that makes progress durable (see
that module's docstring, "Delivery"): each changed machine's state goes to the changelog (a base or a delta,
:mod:`streaming.changelog`) inside the open transaction, with the consumed offsets, and the transaction commits;
an assignment restores its machines from the changelog after the producer took the assignment's transactional id;
an abort forgets everything since the last commit and restores.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kafka import OffsetAndMetadata

from streaming.changelog import MAX_DELTAS, Changelog, encode_checkpoint
from vigil.config import VigilConfig
from vigil.exceptions import ConfigError, ProducerFenced, TransactionAborted
from vigil.transactions import TransactionalProducer

if TYPE_CHECKING:
    from streaming.windows import WindowEngine
    from vigil.metrics import ServiceMetrics

log = logging.getLogger(__name__)


@dataclass
class ServiceStats:
    messages: int = 0
    vectors: int = 0
    dead_letters: int = 0
    replay_skipped: int = 0
    """Records already reflected in a restored machine's state (redelivered after a crash)."""
    checkpoints: int = 0
    checkpoint_records: int = 0
    """Machine state records written to the changelog (one per changed machine per checkpoint)."""
    checkpoint_bytes: int = 0
    """Their bytes: a changed machine's new readings (a delta) or its whole open windows (a base)."""
    commits: int = 0
    """Transactions committed (outputs, state and offsets together)."""
    commit_failures: int = 0
    """Transactions aborted (the worker went back to its last commit)."""
    restored_machines: int = 0
    fenced: int = 0
    """Times the producer was fenced and the worker went back to its last commit with a new one."""


def _tpk(tp: Any) -> str:
    return f"{tp.topic}:{tp.partition}"


def _readings_partition(offsets: dict[str, int]) -> int:
    """The readings partition of a machine from its offsets (``topic:partition`` keys; the reading topics are
    co-partitioned, so every key names the same number). 0 for a machine without any."""
    return min((int(key.rpartition(":")[2]) for key in offsets), default=0)


class Checkpointing:
    """Durability of a feature worker (mixed into :class:`features.service.FeatureService`, which sets these)."""

    config: VigilConfig
    engine: WindowEngine
    changelog: Changelog
    stats: ServiceStats
    metrics: ServiceMetrics | None
    _tx: TransactionalProducer | None
    _consumer: Any
    _influx: Any
    _positions: dict[Any, int]
    _committed: dict[Any, int]
    _machine_offsets: dict[str, dict[str, int]]
    _skip: dict[str, dict[str, int]]
    _dirty: set[str]
    _lineage: dict[str, list[Any]]
    _changelog_partition: dict[str, int]
    _pending_assignment: set[Any] | None
    _emitted_at: float | None
    _bytes_counter: Any

    def _write_state(self) -> None:
        """The state of every changed machine (with its offsets) into the open transaction."""
        if self._influx is not None:
            self._influx.flush()
        if not self._dirty:
            return
        assert self._tx is not None
        started = time.perf_counter()
        records = written = 0
        topic = self.changelog.topic.name
        for machine in sorted(self._dirty):
            lineage = self._lineage.get(machine)
            # A base when the machine has none in the changelog yet, or its chain of deltas is long enough (a
            # restore reads them all); the engine itself answers with a base whenever readings left the buffers.
            full = lineage is None or lineage[1] >= MAX_DELTAS
            got = self.engine.checkpoint_state(machine, full=full)
            if got is None:
                continue
            state, is_delta = got
            offsets = self._machine_offsets.get(machine, {})
            partition = self._changelog_partition.setdefault(
                machine, self.changelog.partition(_readings_partition(offsets))
            )
            sends: list[tuple[bytes, bytes | None]] = []
            if is_delta:
                assert lineage is not None  # without one a base was asked for
                lineage[1] += 1
                lineage[2] = max(lineage[2], lineage[1])
                value = encode_checkpoint(offsets, state, lineage=lineage[0], delta=lineage[1])
                sends.append((self.changelog.key(machine, lineage[1]), value))
            else:
                new = uuid.uuid4().hex[:16]
                value = encode_checkpoint(offsets, state, lineage=new, delta=0)
                sends.append((self.changelog.key(machine), value))
                # The deltas of the previous base, after the new base (a crash in between leaves deltas of another
                # lineage, which restoring ignores and the next base removes).
                highest = lineage[2] if lineage is not None else 0
                sends += [(self.changelog.key(machine, k), None) for k in range(1, highest + 1)]
                self._lineage[machine] = [new, 0, 0]
            for key, payload in sends:
                self._tx.send(topic, key=key, value=payload, partition=partition)
                records += 1
                written += len(payload or b"")
        self._dirty.clear()
        self.stats.checkpoints += 1
        self.stats.checkpoint_records += records
        self.stats.checkpoint_bytes += written
        if self.metrics is not None:
            # What durability costs, for sizing the changelog and choosing windows.checkpoint_interval_s: every
            # checkpoint writes each changed machine's new readings (or, after a window closed, its whole state).
            self.metrics.processing.labels("features_checkpoint").observe(time.perf_counter() - started)
            self.metrics.messages_out.labels(self.changelog.topic.name).inc(records)
            self._checkpoint_bytes_counter().inc(written)

    def _offsets_to_commit(self, only: set[Any] | None = None) -> dict[Any, Any]:
        return {
            tp: OffsetAndMetadata(pos, "", -1)
            for tp, pos in self._positions.items()
            if (only is None or tp in only) and self._committed.get(tp) != pos
        }

    def checkpoint(self) -> None:
        """Commit outputs, state and offsets in one transaction (main thread only); on failure go back to the last
        commit (:meth:`rewind`)."""
        try:
            self._commit()
        except TransactionAborted as exc:
            self.stats.commit_failures += 1
            log.warning("features: %s; going back to the last committed checkpoint", exc)
            self.rewind()

    def _commit(self) -> None:
        assert self._tx is not None
        self._write_state()
        offsets = self._offsets_to_commit()
        if self._tx.commit(offsets, self._consumer.group_metadata()):
            self.stats.commits += 1
            self._committed.update({tp: o.offset for tp, o in offsets.items()})
        self._emitted_at = None

    def recover_fenced(self, exc: ProducerFenced) -> None:
        """The producer was fenced (a broker restart that aborted the transaction and bumped the id's epoch, or
        another worker took the id): go back to the last commit like an abort, and let the next step take the
        assignment the group gives after its poll, with a new producer (``init_transactions``) for it. A worker
        the group dropped learns so in that poll and restores nothing it does not own; one that still owns its
        partitions goes on from the last commit, so the output is the same as if nothing had happened."""
        self.stats.fenced += 1
        log.warning("features: %s; going back to the last commit with a new transactional producer", exc)
        if self.metrics is not None:
            self.metrics.errors.labels("producer_fenced").inc()
        self.rewind(restart=False)

    def rewind(self, *, restart: bool = True) -> None:
        """Forget every machine and everything handled since the last commit, seek back to the committed offsets
        and restore from the changelog at the next step (the aborted transaction's outputs were never visible).
        ``restart``: a producer dropped by a failed abort is started again now (otherwise by the restore)."""
        assigned = set(self._consumer.assignment())
        self._forget(assigned)
        for machine in self.engine.machines:
            self.engine.drop_machine(machine)
        self._machine_offsets.clear()
        self._lineage.clear()
        self._changelog_partition.clear()
        self._skip.clear()
        self._dirty.clear()
        self._emitted_at = None  # the aborted transaction's vectors were never visible
        for tp in assigned:
            committed = self._consumer.committed(tp)
            if committed is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)
        assert self._tx is not None
        if restart:
            self._tx.restart()
        self._pending_assignment = assigned

    def on_revoked(self, revoked: set[Any], *, lost: bool) -> None:
        """Rebalance listener (runs inside ``poll()``): commit what we own (abort when the partitions were lost:
        the group moved on without us), then forget the partitions."""
        assert self._tx is not None
        try:
            if lost:
                self._tx.abort()
            else:
                self._commit()
        except (TransactionAborted, ProducerFenced) as exc:
            self.stats.commit_failures += 1
            log.warning("features: %s on revocation; the next owner replays from the last commit", exc)
        self._emitted_at = None  # committed or aborted: nothing open
        self._forget(revoked)
        if revoked:
            log.info("partitions %s %s", sorted(_tpk(tp) for tp in revoked), "lost" if lost else "revoked")

    def _forget(self, revoked: set[Any]) -> None:
        gone = {_tpk(tp) for tp in revoked}
        for machine, offsets in list(self._machine_offsets.items()):
            if set(offsets) & gone:
                self.engine.drop_machine(machine)
                del self._machine_offsets[machine]
                self._lineage.pop(machine, None)
                self._changelog_partition.pop(machine, None)
                self._skip.pop(machine, None)
                self._dirty.discard(machine)
        for tp in revoked:
            self._positions.pop(tp, None)
            self._committed.pop(tp, None)

    def on_assigned(self, assigned: set[Any]) -> None:
        # Restoring reads a topic; that must not run on the consumer's I/O thread, so step() does it before it
        # handles any record of the new assignment.
        self._pending_assignment = assigned

    def _check_co_partitioned(self) -> None:
        """Refuse reading topics with different partition counts: the range assignor would then give one machine's
        partitions of two topics to two workers, each windowing part of its sensors and overwriting the other's
        checkpoint. (A data engineer adding a topic that someone else created is the way this happens.)"""
        topics = self.config.topics
        subscribed = sorted(self._consumer.subscription() or ())
        counts = {t: len(self._consumer.partitions_for_topic(t) or ()) for t in subscribed}
        if len(set(counts.values())) > 1:
            key = "topics.readings_pattern" if topics.readings_pattern is not None else "topics.extra_readings"
            listed = ", ".join(f"{t}: {n}" for t, n in counts.items())
            reason = (
                f"the reading topics must have the same number of partitions (they are keyed by machine, and one "
                f"worker must own all of a machine's readings); found {listed}: repartition the odd topic or publish "
                "its readings to a topic with the common count"
            )
            raise ConfigError([(key, reason)], source="topic layout")

    def restore(self, assigned: set[Any]) -> None:
        """Load the checkpointed state of every machine of the assigned partitions."""
        self._check_co_partitioned()
        # First the producer of this assignment: its init_transactions aborts a dead owner's open transaction, so
        # the changelog read below is not cut short at that transaction's start (read_committed).
        assert self._tx is not None
        self._tx.assign(tp.partition for tp in assigned)
        owned = {_tpk(tp) for tp in assigned}
        started = time.monotonic()
        restored = merged = 0
        partitions = {self.changelog.partition(tp.partition) for tp in assigned}
        for machine, checkpoint in self.changelog.read(partitions).items():
            if not set(checkpoint.offsets) & owned:
                continue
            if machine in self._machine_offsets:
                self._skip[machine] = dict(self._machine_offsets[machine])
                continue
            self.engine.load_machine_state(machine, checkpoint.machine)
            if checkpoint.lineage is not None:
                self._lineage[machine] = [checkpoint.lineage, checkpoint.delta, checkpoint.highest_delta]
            else:  # written before incremental checkpoints: the next checkpoint is a base
                self._lineage.pop(machine, None)
            self._machine_offsets[machine] = dict(checkpoint.offsets)
            self._skip[machine] = dict(checkpoint.offsets)
            # Where its records are: computed from the offsets they were written with.
            self._changelog_partition[machine] = self.changelog.partition(_readings_partition(checkpoint.offsets))
            restored += 1
            merged += checkpoint.delta
        self.stats.restored_machines += restored
        log.info(
            "assigned %s; restored window state of %d machine(s) (bases with %d delta records) in %.1fs "
            "from %d record(s) of changelog partition(s) %s",
            sorted(owned),
            restored,
            merged,
            time.monotonic() - started,
            self.changelog.records_read,
            sorted(partitions),
        )
        if self.metrics is not None:
            self.metrics.set_ready(True)

    def _checkpoint_bytes_counter(self) -> Any:
        assert self.metrics is not None
        if self._bytes_counter is None:
            from prometheus_client import Counter

            self._bytes_counter = Counter(
                "vigil_checkpoint_bytes",
                "Bytes of window state written to the changelog (deltas of new readings, and bases after windows close)",
                registry=self.metrics.registry,
            )
        return self._bytes_counter
