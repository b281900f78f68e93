"""Exactly once between Kafka topics: a transactional producer per worker and read_committed consumers.

A stage that reads a topic and writes others (feature worker, model service, alert service) writes, per
checkpoint, its outputs, its changelog records and the offsets it consumed in *one* Kafka transaction
(:class:`TransactionalProducer`): either all of them become visible to ``read_committed`` readers
(:func:`make_read_committed_consumer`) or none does. A crash before the commit leaves the committed offsets and the
changelog at the previous checkpoint, and the restarted worker recomputes exactly what the dead one had not
committed; its aborted records are never seen downstream.

The transactional id: ``<group>-<service>-p<lowest assigned partition number>``
(:func:`transactional_id`). Why this one:

* **It fences the zombie at once in the common case.** A worker killed mid-transaction and restarted (or the
  worker that takes its partitions over) gets the same assignment back and so the same id; its
  ``init_transactions`` aborts the dead one's open transaction immediately, instead of read_committed readers
  stalling behind it until ``transaction_timeout_ms`` runs out. An id per process (host and pid) would not.
* **It needs no configuration, and live workers never share it.** Assignments of one group are disjoint, so two
  live workers have two lowest partitions; a constant per-service id (or a per-host one) would let two workers
  started side by side fence each other.
* **Zombies are fenced even when the id changed** (assignments are reshuffled by a rebalance): the consumed
  offsets go into the transaction with the consumer's group metadata (generation and member id, KIP-447), and the
  group coordinator refuses them from a member of an older generation, so the zombie's transaction cannot commit;
  the broker aborts it after ``transaction_timeout_ms``.

The producer therefore follows the assignment: :meth:`TransactionalProducer.assign` after every rebalance keeps it
when the id is unchanged and otherwise replaces it (a worker owning nothing has none). One id per input
partition with a producer each (Kafka Streams' first exactly-once mode) fences as well, but multiplies producers
and transaction commits by the partition count for nothing the generation check does not already give.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from vigil.bus import make_consumer, make_producer
from vigil.config.connections import KafkaSettings
from vigil.exceptions import ProducerFenced, TransactionAborted

log = logging.getLogger(__name__)


def _bounded(producer: Any) -> bool:
    """Whether :meth:`TransactionalProducer._complete` may bound the wait itself (kafka-python's own producer)."""
    from kafka import KafkaProducer

    return isinstance(producer, KafkaProducer)


class _CommitTimeout(Exception):
    """A commit or abort the broker did not answer within ``commit_timeout_s``."""


def transactional_id(group_id: str, service: str, partitions: Iterable[int]) -> str | None:
    """The transactional id of a worker of ``group_id`` owning ``partitions``; None when it owns none.

    >>> transactional_id("vigil-features", "features", {3, 1, 2})
    'vigil-features-features-p1'
    >>> transactional_id("g", "models", []) is None
    True
    """
    lowest = min(partitions, default=None)
    return None if lowest is None else f"{group_id}-{service}-p{lowest}"


def transaction_timeout_ms(checkpoint_interval_s: float) -> int:
    """How long the broker lets a transaction stay open before aborting it: a transaction lives about one checkpoint
    interval, so 60 s, or four intervals when they are longer, up to the broker's default
    ``transaction.max.timeout.ms`` (15 minutes). A dead worker whose id nobody takes over blocks read_committed
    readers of what it wrote for no longer than this.

    >>> transaction_timeout_ms(5.0), transaction_timeout_ms(120.0), transaction_timeout_ms(3600.0)
    (60000, 480000, 900000)
    """
    return int(min(max(60.0, 4 * checkpoint_interval_s), 900.0) * 1000)


def make_read_committed_consumer(
    kafka: KafkaSettings, group_id: str | None, topics: Iterable[str] = (), **overrides: Any
) -> Any:
    """A consumer (manual commits) that sees only committed transactions: aborted records are skipped, and a
    partition is read only up to its last stable offset (the first record of a transaction still open)."""
    return make_consumer(kafka, group_id, topics, **{**overrides, "isolation_level": "read_committed"})


def _fatal(exc: BaseException, producer: Any = None) -> bool:
    """Whether the producer is fenced: the error says so, or (kafka-python 3 wraps a fenced producer's later calls
    in a plain ``KafkaError("... in an error state: ...")``) its transaction manager's last error does."""
    from kafka.errors import InvalidProducerEpochError, ProducerFencedError, TransactionalIdAuthorizationFailedError

    fatal = (ProducerFencedError, InvalidProducerEpochError, TransactionalIdAuthorizationFailedError)
    if isinstance(exc, fatal):
        return True
    manager = getattr(producer, "_transaction_manager", None)
    if isinstance(getattr(manager, "last_error", None), fatal):
        return True
    # A produce answered "invalid epoch" (a fence): kafka-python bumps the epoch (InitProducerId, which the broker
    # then refuses as fenced) and meanwhile refuses every call with IllegalStateError.
    bumping = getattr(manager, "is_bumping_epoch", None)
    from kafka.errors import IllegalStateError

    return isinstance(exc, IllegalStateError) and callable(bumping) and bool(bumping())


class TransactionalProducer:
    """A kafka-python transactional producer that follows the worker's assignment.

    ``send()`` opens a transaction when none is open; ``commit(offsets, group_metadata)`` adds the consumed offsets
    to it and commits; ``abort()`` drops it. A commit that fails raises :class:`~vigil.exceptions.TransactionAborted`
    after aborting (the caller restores its state and seeks back to the committed offsets); a fenced producer
    raises :class:`~vigil.exceptions.ProducerFenced` after dropping it (the caller goes back to its last commit
    too, and :meth:`assign` or :meth:`restart` starts a new producer, whose ``init_transactions`` fences the id's
    other owner in turn: a worker should do that only for partitions the group still gives it).

    Commit and abort wait at most ``commit_timeout_s`` (kafka-python's ``commit_transaction()`` waits without a
    limit: a broker vanishing mid-commit would hold the worker's loop; Kafka's Java client bounds it by
    ``max.block.ms`` since KAFKA-7763). On the timeout the producer is dropped and
    :class:`~vigil.exceptions.TransactionAborted` raised: whether that transaction committed is not known, and the
    next producer's ``init_transactions`` waits until the coordinator completed it, so the caller's rewind (to
    the committed offsets and the changelog) reads the outcome. :meth:`waiting_s` says how long a commit has been
    waiting, for ``/healthz``.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        group_id: str,
        service: str,
        *,
        transaction_timeout_ms: int = 60_000,
        commit_timeout_s: float = 60.0,
        **producer_overrides: Any,
    ) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.service = service
        self.transaction_timeout_ms = transaction_timeout_ms
        self.commit_timeout_s = commit_timeout_s
        self.producer_overrides = producer_overrides
        self.transactional_id: str | None = None
        self.commits = 0
        self.aborts = 0
        self._producer: Any = None
        self._open = False
        self._waiting_since: float | None = None
        self.commit_timeouts = 0

    @property
    def in_transaction(self) -> bool:
        return self._open

    @property
    def producer(self) -> Any:
        """The underlying KafkaProducer (None while the worker owns no partition)."""
        return self._producer

    def assign(self, partitions: Iterable[int]) -> None:
        """Use the transactional id of this assignment: keep the producer when it is unchanged, otherwise abort
        what is open, close it and start (``init_transactions``, which fences the id's previous owner) a new one."""
        wanted = transactional_id(self.group_id, self.service, partitions)
        if wanted == self.transactional_id and (self._producer is not None or wanted is None):
            return
        self.close()
        self.transactional_id = wanted
        if wanted is not None:
            self._start(wanted)

    def _start(self, wanted: str) -> None:
        producer = make_producer(
            self.kafka,
            **{
                **self.producer_overrides,
                "transactional_id": wanted,
                "transaction_timeout_ms": self.transaction_timeout_ms,
            },
        )
        try:
            producer.init_transactions()
        except Exception as exc:
            producer.close(timeout=5)
            if _fatal(exc, producer):
                raise ProducerFenced(f"transactional id {wanted}: {exc}") from exc
            raise
        self._producer = producer
        log.info("transactional producer %s ready", wanted)

    def send(
        self,
        topic: str,
        *,
        key: bytes | None = None,
        value: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        """Send within the open transaction (opening one first); returns the send future."""
        self.begin()
        try:
            return self._producer.send(topic, key=key, value=value, partition=partition, headers=headers)
        except Exception as exc:
            fenced = self.fenced_error(exc)
            if fenced is None:
                raise
            raise fenced from exc

    def fenced_error(self, exc: BaseException) -> ProducerFenced | None:
        """For an error of a call on :attr:`producer`: when it means the producer is fenced, drop the producer
        and return the :class:`~vigil.exceptions.ProducerFenced` to raise; otherwise None."""
        if isinstance(exc, ProducerFenced):
            return exc
        if not _fatal(exc, self._producer):
            return None
        self._open = False
        self._drop()
        fenced = ProducerFenced(f"transactional id {self.transactional_id}: {exc}")
        fenced.__cause__ = exc
        return fenced

    def begin(self) -> None:
        if self._producer is None:
            raise TransactionAborted(f"{self.service}: no transactional producer (no partition assigned)")
        if not self._open:
            self._call(self._producer.begin_transaction)
            self._open = True

    def commit(self, offsets: dict[Any, Any], group_metadata: Any) -> bool:
        """Commit the open transaction with ``offsets`` ({TopicPartition: OffsetAndMetadata}) of the consumer whose
        ``group_metadata()`` is given; returns False when there was nothing to commit."""
        if not offsets and not self._open:
            return False
        self.begin()
        try:
            if offsets:
                self._producer.send_offsets_to_transaction(offsets, group_metadata)
            self._complete(commit=True)
        except _CommitTimeout as exc:
            self._open = False
            self.commit_timeouts += 1
            self._drop()
            raise TransactionAborted(str(exc)) from exc
        except Exception as exc:
            self._failed(exc, "commit")
        self._open = False
        self.commits += 1
        return True

    def abort(self) -> None:
        """Drop the open transaction (nothing of it becomes visible). A producer that cannot abort is replaced
        at the next :meth:`assign` (or :meth:`restart`)."""
        if not self._open:
            return
        self._open = False
        self.aborts += 1
        try:
            self._complete(commit=False)
        except Exception as exc:
            log.warning("abort of transaction %s failed (%s); the producer is replaced", self.transactional_id, exc)
            fenced = _fatal(exc, self._producer)
            self._drop()
            if fenced:
                raise ProducerFenced(f"transactional id {self.transactional_id}: {exc}") from exc

    def waiting_s(self) -> float | None:
        """Seconds the current commit (or abort) has been waiting for the broker; None when none is waiting."""
        since = self._waiting_since
        return None if since is None else time.monotonic() - since

    def _complete(self, *, commit: bool) -> None:
        """``commit_transaction()`` / ``abort_transaction()``, waiting at most ``commit_timeout_s``."""
        producer = self._producer
        manager = getattr(producer, "_transaction_manager", None)
        sender = getattr(producer, "_sender", None)
        begin = getattr(manager, "begin_commit" if commit else "begin_abort", None)
        self._waiting_since = time.monotonic()
        try:
            if begin is None or sender is None or not _bounded(producer):  # its own (unbounded) call
                (producer.commit_transaction if commit else producer.abort_transaction)()
                return
            # What KafkaProducer.commit_transaction() does, with a bounded wait (kafka-python 3.0).
            result = begin()
            sender.wakeup()
            if not result.wait(timeout_ms=int(self.commit_timeout_s * 1000)):
                what = "commit" if commit else "abort"
                raise _CommitTimeout(
                    f"{what} of transaction {self.transactional_id} not acknowledged within {self.commit_timeout_s:g}s"
                )
        finally:
            self._waiting_since = None

    def restart(self) -> None:
        """A new producer for the current id when the old one had to be dropped (after a failed abort)."""
        if self._producer is None and self.transactional_id is not None:
            self._start(self.transactional_id)

    def flush(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=timeout)

    def close(self) -> None:
        """Abort what is open (a clean stop commits first) and close the producer."""
        if self._producer is None:
            return
        with contextlib.suppress(ProducerFenced):
            self.abort()
        if self._producer is not None:
            self._producer.close(timeout=30)
        self._producer = None

    def _drop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # a broken producer's close; it is gone either way
                log.debug("closing a broken transactional producer failed", exc_info=True)

    def _call(self, method: Any) -> None:
        try:
            method()
        except Exception as exc:
            if _fatal(exc, self._producer):
                self._drop()
                raise ProducerFenced(f"transactional id {self.transactional_id}: {exc}") from exc
            raise

    def _failed(self, exc: Exception, what: str) -> None:
        """A failed commit: abort (or drop a fenced producer) and raise."""
        if _fatal(exc, self._producer):
            self._open = False
            self._drop()
            raise ProducerFenced(f"{what} of transaction {self.transactional_id}: {exc}") from exc
        log.warning("%s of transaction %s failed (%s); aborting", what, self.transactional_id, exc)
        self.abort()
        raise TransactionAborted(f"{what} of transaction {self.transactional_id} failed: {exc}") from exc
