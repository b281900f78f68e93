"""A bounded, durable, ordered on-disk spool for Kafka messages that could not be delivered.

Why SQLite and not append-only segment files: the spool is written only while Kafka is away and drained in
order when it returns, and a drain can succeed partly (some messages acknowledged, the rest not). A table keyed
by the publisher's emission sequence gives ordered reads, exact deletion of what was acknowledged, a cheap
drop-oldest and crash-safe commits (write-ahead log) without writing a segment format, its compaction and its
recovery by hand. The cost, one small transaction per appended message, is only paid during an outage, and a
message is a whole batch of readings, so it is a few hundred commits per second at 100k readings/s.

Values are stored zlib-compressed (level 1, ~0.2 us per reading): reading batches are repetitive JSON, so the
same ``max_bytes`` holds about 15 times more of an outage. ``max_bytes`` bounds the stored (compressed) bytes.

Durability: WAL journal with ``synchronous=NORMAL``, so a committed message survives the collector process
being killed (the case that matters: restart, crash, deploy); a power cut can lose the last commits.

>>> import tempfile, pathlib
>>> from vigil.config import SpoolSettings
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> spool = Spool(SpoolSettings(path=folder / "s.sqlite", max_bytes=1024, policy="drop_newest"))
>>> spool.open()
>>> import os
>>> spool.append(1, "readings", b"m1", os.urandom(600), readings=3)
(True, 0)
>>> spool.append(2, "readings", b"m1", os.urandom(600), readings=4)  # over the bound: refused, 4 readings dropped
(False, 4)
>>> [(m.seq, m.readings) for m in spool.peek(10)]
[(1, 3)]
>>> spool.close()
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ingest.exceptions import SpoolError
from vigil.config.ingest import SpoolSettings

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq      INTEGER PRIMARY KEY,
    topic    TEXT    NOT NULL,
    key      BLOB,
    value    BLOB    NOT NULL,
    readings INTEGER NOT NULL,
    size     INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class SpooledMessage:
    seq: int
    """The publisher's emission order; the spool is replayed in this order."""
    topic: str
    key: bytes | None
    value: bytes
    readings: int
    """How many readings the message carries (0 for gaps, maintenance events and dead letters)."""


@dataclass
class SpoolCounters:
    dropped_messages: int = 0
    dropped_readings: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Spool:
    """Ordered store-and-forward of ``(topic, key, value)`` messages under a byte bound.

    Thread-safe: the publisher's caller thread, the Kafka I/O thread (failed sends) and the drain thread all
    use one spool. ``append`` returns how many readings it dropped to respect the bound (0 normally).
    """

    def __init__(self, settings: SpoolSettings) -> None:
        self.settings = settings
        self.counters = SpoolCounters()
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[str] | None = None
        self._lock = threading.Lock()
        self._bytes = 0
        self._messages = 0
        self._readings = 0

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Open (creating it) and lock the spool: one process per spool file, or two would replay each other's."""
        path = self.settings.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _exclusive_lock(path.with_name(path.name + ".lock"))
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            count, size, readings = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(readings), 0) FROM spool"
            ).fetchone()
        except (sqlite3.Error, OSError) as exc:
            self._unlock()
            raise SpoolError(f"cannot open spool {path}: {exc}") from exc
        self._db = db
        self._messages, self._bytes, self._readings = int(count), int(size), int(readings)
        if count:
            log.info("spool %s holds %d message(s), %d reading(s) from a previous run", path, count, readings)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._unlock()

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    # ------------------------------------------------------------------ state
    @property
    def messages(self) -> int:
        return self._messages

    @property
    def readings(self) -> int:
        return self._readings

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def last_seq(self) -> int:
        """The highest sequence number stored (0 when empty), so a restarted publisher continues after it."""
        with self._lock:
            row = self._conn().execute("SELECT COALESCE(MAX(seq), 0) FROM spool").fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ writing
    def append(self, seq: int, topic: str, key: bytes | None, value: bytes, readings: int) -> tuple[bool, int]:
        """Store one message; returns whether it was stored and how many readings were dropped for the bound.

        With ``drop_newest`` a message that does not fit is refused (``(False, its readings)``); with
        ``drop_oldest`` the oldest messages are deleted until it fits (``(True, their readings)``).
        """
        blob = zlib.compress(value, 1)
        size = len(blob) + (len(key) if key else 0)
        with self._lock:
            db = self._conn()
            if size > self.settings.max_bytes:
                self._count_drop("message_larger_than_spool", 1, readings)
                return False, readings
            dropped = 0
            try:
                db.execute("BEGIN IMMEDIATE")
                if self._bytes + size > self.settings.max_bytes:
                    if self.settings.policy == "drop_newest":
                        db.execute("ROLLBACK")
                        self._count_drop("spool_full_drop_newest", 1, readings)
                        return False, readings
                    dropped = self._drop_oldest(db, self._bytes + size - self.settings.max_bytes)
                # The same message (same sequence) can only be stored once, however often its failure is reported.
                inserted = db.execute(
                    "INSERT OR IGNORE INTO spool (seq, topic, key, value, readings, size) VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, topic, key, blob, readings, size),
                ).rowcount
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise SpoolError(f"cannot write spool {self.settings.path}: {exc}") from exc
            if not inserted:
                return False, dropped
            self._bytes += size
            self._messages += 1
            self._readings += readings
            return True, dropped

    def _drop_oldest(self, db: sqlite3.Connection, need: int) -> int:
        freed = 0
        victims: list[tuple[int, int, int]] = []
        for seq, size, readings in db.execute("SELECT seq, size, readings FROM spool ORDER BY seq"):
            if freed >= need:
                break
            victims.append((seq, size, readings))
            freed += size
        db.executemany("DELETE FROM spool WHERE seq = ?", [(v[0],) for v in victims])
        dropped_readings = sum(v[2] for v in victims)
        self._bytes -= freed
        self._messages -= len(victims)
        self._readings -= dropped_readings
        self._count_drop("spool_full_drop_oldest", len(victims), dropped_readings)
        log.warning(
            "spool %s full (%d bytes): dropped the %d oldest message(s), %d reading(s)",
            self.settings.path,
            self.settings.max_bytes,
            len(victims),
            dropped_readings,
        )
        return dropped_readings

    def _count_drop(self, reason: str, messages: int, readings: int) -> None:
        self.counters.dropped_messages += messages
        self.counters.dropped_readings += readings
        self.counters.by_reason[reason] = self.counters.by_reason.get(reason, 0) + readings

    # ------------------------------------------------------------------ draining
    def peek(self, limit: int) -> list[SpooledMessage]:
        """The oldest ``limit`` messages, in emission order, without removing them."""
        with self._lock:
            rows = (
                self._conn()
                .execute("SELECT seq, topic, key, value, readings FROM spool ORDER BY seq LIMIT ?", (limit,))
                .fetchall()
            )
        return [SpooledMessage(int(r[0]), str(r[1]), r[2], zlib.decompress(r[3]), int(r[4])) for r in rows]

    def remove(self, seqs: Iterable[int]) -> None:
        """Forget messages Kafka acknowledged."""
        wanted = list(seqs)
        if not wanted:
            return
        size = readings = count = 0
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                for i in range(0, len(wanted), 500):  # SQLite bounds the parameters of one statement
                    chunk = wanted[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    s, r, c = db.execute(
                        f"SELECT COALESCE(SUM(size), 0), COALESCE(SUM(readings), 0), COUNT(*) FROM spool WHERE seq IN ({marks})",
                        chunk,
                    ).fetchone()
                    db.execute(f"DELETE FROM spool WHERE seq IN ({marks})", chunk)
                    size, readings, count = size + int(s), readings + int(r), count + int(c)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise SpoolError(f"cannot update spool {self.settings.path}: {exc}") from exc
            self._bytes -= size
            self._readings -= readings
            self._messages -= count

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise SpoolError("spool is not open (call open() first)")
        return self._db


def _exclusive_lock(path: Path) -> IO[str]:
    """An advisory lock held for the spool's lifetime (released by the kernel if the process dies)."""
    import fcntl
    import os

    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise SpoolError(
            f"spool {path.with_suffix('')} is in use by {owner}; give each collector process its own spool.path"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle
