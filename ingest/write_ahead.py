"""The publisher's write-ahead handoff: a message is on disk, with its sequence, before Kafka may see it.

:class:`WriteAhead` owns the spool and the emission sequence. ``append()`` stores a message and gives its sequence
(the publisher sends it with :meth:`WriteAhead.headers`); ``acknowledged()`` notes what Kafka confirmed (called on
the producer's I/O thread, so it only appends to a list); ``apply_acks()`` deletes those messages and raises the
partitions' marks in one commit; ``reconcile()`` deletes the stored messages Kafka already holds. The Kafka side
(producers, sends, replay) stays in :mod:`ingest.publisher` and :mod:`ingest.kafka_io`.

>>> import tempfile, pathlib
>>> from vigil.config import SpoolSettings
>>> wal = WriteAhead(SpoolSettings(path=pathlib.Path(tempfile.mkdtemp()) / "s.sqlite"))
>>> wal.open()
>>> seq, stored, dropped = wal.append("readings", b"PMP-001", b"batch", readings=3)
>>> (seq, stored, dropped, wal.spool.readings)
(1, True, 0, 3)
>>> wal.acknowledged(seq, "readings", 0, 41)
>>> wal.apply_acks()
>>> (wal.spool.readings, wal.spool.marks())
(0, {('readings', 0): 42})
>>> wal.close()
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable

from ingest.kafka_io import find_sent, spool_header
from ingest.spool import Partition, Spool
from vigil.config.connections import KafkaSettings
from vigil.config.ingest import SpoolSettings


class WriteAhead:
    """The spool plus the emission sequence and the acknowledgements not yet applied."""

    def __init__(self, settings: SpoolSettings) -> None:
        self.spool = Spool(settings)
        self._seq: itertools.count[int] = itertools.count(1)
        self._acked: list[tuple[int, str, int, int]] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open the spool; sequences continue after the highest it ever held (never reused)."""
        self.spool.open()
        self._seq = itertools.count(self.spool.last_seq() + 1)

    def close(self) -> None:
        self.spool.close()

    def append(
        self, topic: str, key: bytes | None, value: bytes, readings: int, position: str | None = None
    ) -> tuple[int, bool, int]:
        """Store a message under the next sequence (committed, fsynced per ``spool.fsync``): ``(seq, stored,
        readings dropped for the bound)``. Callers serialise appends, so sequences are in emission order.
        ``position``: the source position once this message is emitted, in the same commit (see
        :meth:`Spool.position`)."""
        seq = next(self._seq)
        stored, dropped = self.spool.append(seq, topic, key, value, readings, position)
        return seq, stored, dropped

    def headers(self, seq: int) -> list[tuple[str, bytes]]:
        """The Kafka headers naming this message (``vigil-spool: <spool id>:<seq>``)."""
        return spool_header(self.spool.spool_id, seq)

    def acknowledged(self, seq: int, topic: str, partition: int, offset: int) -> None:
        """Kafka wrote message ``seq`` at this offset (cheap: any thread, the producer's I/O thread included)."""
        with self._lock:
            self._acked.append((seq, topic, partition, offset))

    def apply_acks(self) -> None:
        """Delete the acknowledged messages and raise their partitions' marks, in one commit."""
        with self._lock:
            acked, self._acked = self._acked, []
        if acked:
            self.remove_written((seq, topic, partition, offset) for seq, topic, partition, offset in acked)

    def remove_written(self, written: Iterable[tuple[int, str, int, int]]) -> None:
        """Delete messages Kafka wrote, given as ``(seq, topic, partition, offset)``, raising the marks."""
        seqs: list[int] = []
        marks: dict[Partition, int] = {}
        for seq, topic, partition, offset in written:
            seqs.append(seq)
            marks[(topic, partition)] = max(marks.get((topic, partition), 0), offset + 1)
        self.spool.remove(seqs, marks)

    def reconcile(self, kafka: KafkaSettings, topics: Iterable[str], timeout_s: float) -> tuple[int, int]:
        """Delete the stored messages Kafka already holds and mark every partition's end; ``(messages,
        readings)`` deleted. Only while nothing of this spool is in flight (before a new producer sends).
        Raises :class:`~ingest.exceptions.PublishError` when Kafka does not answer."""
        self.apply_acks()
        found, ends = find_sent(
            kafka, set(topics) | self.spool.topics(), self.spool.marks(), self.spool.spool_id, timeout_s
        )
        return self.spool.remove(found, ends)
