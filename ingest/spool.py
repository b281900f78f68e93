"""The publisher's durable, ordered, bounded write-ahead log of Kafka messages (the "spool").

Every message the publisher emits is appended here, and committed, *before* it is handed to Kafka; it is removed
once Kafka acknowledged it. So whatever Kafka has not acknowledged (in flight, failed, or never sent because
Kafka is away) is on disk and replayed, in emission order, by the next drain or the next process.

Why SQLite and not append-only segment files: a drain can succeed partly (some messages acknowledged, the rest
not), acknowledgements arrive out of order across partitions, and the bound drops the oldest. A table keyed by
the publisher's emission sequence gives ordered reads, exact deletion of what was acknowledged, a cheap
drop-oldest and crash-safe commits (SQLite's write-ahead log, whose frames carry checksums: a torn last commit is
ignored at the next open) without writing a segment format, its compaction and its recovery by hand. A message is
a whole batch of readings, so it is a few hundred commits per second at 100k readings/s.

Values are stored zlib-compressed (level 1, ~0.2 us per reading): reading batches are repetitive JSON, so the
same ``max_bytes`` holds about 15 times more of an outage. ``max_bytes`` bounds the stored (compressed) bytes.

Durability (``spool.fsync``): ``batch`` (default) commits with ``synchronous=FULL``, so each appended batch is
fsynced before it goes to Kafka and survives a power cut; ``os`` commits with ``synchronous=NORMAL``: the batch
is in the operating system's cache before it goes to Kafka, which survives the process being killed (kill -9,
OOM, crash) but not a power cut. Removals never need an fsync: a lost removal replays a message, it loses none.

Reconciliation (why a replay sends nothing twice): the spool also keeps, per Kafka partition, a *mark*: an offset
below which none of this spool's messages is still stored. A message whose acknowledgement was lost (the process
was killed after Kafka wrote it, or the broker answered too late) is found again by reading the partition from its
mark on (:meth:`Spool.marks`); its ``vigil-spool`` header names this spool (:attr:`Spool.spool_id`) and the
sequence, and it is removed instead of being sent again.

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
import re
import secrets
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Mapping
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
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS marks (
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    offset    INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""

Partition = tuple[str, int]
"""A Kafka topic and partition."""


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
        self._id = ""

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Open (creating it) and lock the spool: one process per spool file, or two would replay each other's."""
        path = self.settings.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _exclusive_lock(path.with_name(path.name + ".lock"))
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL" if self.settings.fsync == "batch" else "PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('id', ?)", (secrets.token_hex(8),))
            db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('seq_hwm', '0')")
            self._id = str(db.execute("SELECT value FROM meta WHERE name = 'id'").fetchone()[0])
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

    @property
    def spool_id(self) -> str:
        """A random identity made when the spool file was created; the ``vigil-spool`` header carries it."""
        self._conn()
        return self._id

    def last_seq(self) -> int:
        """The highest sequence number this spool ever held (0 when new), so a restarted publisher continues after
        it: a sequence is never reused, which reconciliation relies on."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT MAX(COALESCE((SELECT MAX(seq) FROM spool), 0), "
                    "(SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'seq_hwm'))"
                )
                .fetchone()
            )
        return int(row[0])

    def topics(self) -> set[str]:
        """The topics of the stored messages."""
        with self._lock:
            return {str(r[0]) for r in self._conn().execute("SELECT DISTINCT topic FROM spool")}

    def position(self) -> str | None:
        """The source position stored with the last message appended with one (``None``: never any)."""
        with self._lock:
            row = self._conn().execute("SELECT value FROM meta WHERE name = 'position'").fetchone()
        return None if row is None else str(row[0])

    def marks(self) -> dict[Partition, int]:
        """Per partition, an offset below which no stored message can have been written by Kafka."""
        with self._lock:
            rows = self._conn().execute("SELECT topic, partition, offset FROM marks").fetchall()
        return {(str(t), int(p)): int(o) for t, p, o in rows}

    # ------------------------------------------------------------------ writing
    def append(
        self, seq: int, topic: str, key: bytes | None, value: bytes, readings: int, position: str | None = None
    ) -> tuple[bool, int]:
        """Store one message; returns whether it was stored and how many readings were dropped for the bound.

        ``position``: the source's position once this message is emitted (opaque text, e.g. a file replay's row),
        stored in the same commit as the message, so a restarted source resumes exactly after what is stored
        (:meth:`position`). With ``drop_newest`` a message that does not fit is refused (``(False, its readings)``); with
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
                if inserted and position is not None:
                    db.execute(
                        "INSERT INTO meta (name, value) VALUES ('position', ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (position,),
                    )
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
        if victims:
            db.execute(
                "UPDATE meta SET value = CAST(MAX(CAST(value AS INTEGER), ?) AS TEXT) WHERE name = 'seq_hwm'",
                (victims[-1][0],),
            )
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

    def remove(self, seqs: Iterable[int], marks: Mapping[Partition, int] | None = None) -> tuple[int, int]:
        """Forget messages Kafka acknowledged and, in the same commit, raise the partitions' marks.

        ``marks``: per partition, the offset after the last of these messages Kafka wrote there (or, after a
        reconciliation, the partition's end): marks only ever rise. Returns how many messages and readings were
        removed (sequences not stored are ignored).
        """
        wanted = list(seqs)
        if not wanted and not marks:
            return 0, 0
        size = readings = count = 0
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                if wanted:
                    db.execute(
                        "UPDATE meta SET value = CAST(MAX(CAST(value AS INTEGER), ?) AS TEXT) WHERE name = 'seq_hwm'",
                        (max(wanted),),
                    )
                db.executemany(
                    "INSERT INTO marks (topic, partition, offset) VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                    "DO UPDATE SET offset = MAX(offset, excluded.offset)",
                    [(t, p, o) for (t, p), o in (marks or {}).items()],
                )
                for i in range(0, len(wanted), 500):  # SQLite bounds the parameters of one statement
                    chunk = wanted[i : i + 500]
                    params = ",".join("?" * len(chunk))
                    s, r, c = db.execute(
                        f"SELECT COALESCE(SUM(size), 0), COALESCE(SUM(readings), 0), COUNT(*) FROM spool WHERE seq IN ({params})",
                        chunk,
                    ).fetchone()
                    db.execute(f"DELETE FROM spool WHERE seq IN ({params})", chunk)
                    size, readings, count = size + int(s), readings + int(r), count + int(c)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise SpoolError(f"cannot update spool {self.settings.path}: {exc}") from exc
            self._bytes -= size
            self._readings -= readings
            self._messages -= count
        return count, readings

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise SpoolError("spool is not open (call open() first)")
        return self._db


def spool_path(settings: SpoolSettings, source: str | None) -> Path:
    """The spool file of one publisher: the source name goes into ``spool.path``'s file name.

    The OPC UA collector, the MQTT collector and the simulator of one host share a configuration, and two
    processes must never share a spool (each would replay, and delete, the other's messages).

    >>> spool_path(SpoolSettings(path=Path("/var/lib/vigil/ingest.sqlite")), "replay:history 2026.csv")
    PosixPath('/var/lib/vigil/ingest.replay_history_2026.csv.sqlite')
    """
    path = settings.path
    if not source:
        return path
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", source).strip("._") or "source"
    return path.with_name(f"{path.stem}.{safe}{path.suffix}")


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
