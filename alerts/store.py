"""Durable state in one sqlite file: the lifecycle (episodes, silences, inhibitions), the notification outbox and
the digest's findings (informational transitions waiting for their period's digest, see :mod:`alerts.digest`).

Also the *output log*: every Kafka record (transitions, dead letters) and InfluxDB line a batch produced, with
the input offsets it consumed. One sqlite transaction records all of it, so after a crash either a batch's new
episode states, notifications, Kafka records, InfluxDB lines and offsets all exist, or none does (and the input is
consumed again from the offsets Kafka holds). A recorded batch is then *published*, never recomputed: its records
and offsets go to Kafka in one Kafka transaction (:meth:`AlertStore.unpublished` / :meth:`AlertStore.published`),
its InfluxDB lines are written until acknowledged, its notifications are delivered from the outbox. A restart
therefore re-sends exactly the transitions it recorded, with the sequence numbers it recorded.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.digest import DigestNotification, Period
from alerts.exceptions import StoreError
from alerts.ordering import Changes
from alerts.render import Notification
from vigil.contracts import Alert

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flags (key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    receiver TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_at REAL,
    dead INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (receiver, delivered_at, dead, seq);
CREATE TABLE IF NOT EXISTS findings (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    recorded REAL NOT NULL,
    digest_end REAL,
    UNIQUE (alert_id, seq)
);
CREATE INDEX IF NOT EXISTS findings_unsent ON findings (digest_end, recorded);
CREATE TABLE IF NOT EXISTS batches (batch INTEGER PRIMARY KEY, offsets TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kafka_out (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    batch INTEGER NOT NULL,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kafka_out_batch ON kafka_out (batch, n);
CREATE TABLE IF NOT EXISTS influx_out (n INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS held (key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS horizons (machine TEXT PRIMARY KEY, data TEXT NOT NULL);
"""

Offsets = dict[tuple[str, int], int]
"""``{(topic, partition): next offset to consume}``."""


@dataclass(frozen=True)
class OutRecord:
    """One Kafka record a batch produced (a transition, a dead letter)."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Batch:
    """A recorded batch waiting to be published in one Kafka transaction with its input offsets."""

    batch: int
    offsets: Offsets
    records: tuple[OutRecord, ...]


def notification_id(receiver: str, alerts: Iterable[Alert]) -> str:
    """The delivery's idempotency key, from the receiver and each transition's episode and sequence number.

    A transition is ``(alert_id, seq)``: numbered once by the lifecycle and recorded before anything is sent, so
    a redelivery after a crash carries the same key and a receiver can drop it.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2026, 12, 7, tzinfo=timezone.utc)
    >>> a = Alert(alert_id="PMP-001.failure_risk.20261207T000000Z", machine_id="PMP-001", alert_kind="failure_risk",
    ...           state="resolved", severity="warning", ts=t, opened_at=t, summary="", seq=3)
    >>> notification_id("planners", [a]) == notification_id("planners", [a.model_copy(update={"note": "x"})])
    True
    >>> notification_id("planners", [a]) == notification_id("planners", [a.model_copy(update={"seq": 4})])
    False
    """
    h = hashlib.sha256(receiver.encode())
    for a in alerts:
        h.update(f"|{a.alert_id}|{a.seq}|{a.state.value}".encode())
    return "msg_" + h.hexdigest()[:32]


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    notification: Notification
    attempts: int


def _dump(n: Notification) -> str:
    data: dict[str, Any] = {
        "id": n.id,
        "receiver": n.receiver,
        "group": n.group,
        "ack_url": n.ack_url,
        "alerts": [a.model_dump(mode="json") for a in n.alerts],
    }
    if isinstance(n, DigestNotification) and n.period is not None:
        data["digest"] = n.period.as_json()
    return json.dumps(data)


def _load(payload: str) -> Notification:
    d = json.loads(payload)
    alerts = tuple(Alert.model_validate(a) for a in d["alerts"])
    if "digest" in d:
        period = Period.from_json(d["digest"])
        return DigestNotification(d["id"], d["receiver"], d["group"], alerts, d["ack_url"], period=period)
    return Notification(id=d["id"], receiver=d["receiver"], group=d["group"], alerts=alerts, ack_url=d["ack_url"])


class AlertStore:
    """One connection guarded by a lock (the service loop, the outbox thread and the HTTP API share it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"alerts.outbox_path: cannot open {self.path}: {exc}") from exc
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the alert store is not open (call open() first)")
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def load(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
        with self._lock:
            tracks = {k: json.loads(v) for k, v in self.db.execute("SELECT key, data FROM tracks")}
            row = self.db.execute("SELECT data FROM flags WHERE key = 'lifecycle'").fetchone()
        return tracks, (json.loads(row[0]) if row else None)

    def load_held(self) -> tuple[list[str], dict[str, list[str | None]]]:
        """The input records held by the last recorded batch and the machines' horizons (:mod:`alerts.ordering`)."""
        with self._lock:
            held = [str(r[0]) for r in self.db.execute("SELECT data FROM held ORDER BY key")]
            horizons = {str(m): json.loads(d) for m, d in self.db.execute("SELECT machine, data FROM horizons")}
        return held, horizons

    def commit(
        self,
        tracks: Mapping[str, Mapping[str, Any]],
        flags: Mapping[str, Any] | None,
        notifications: Iterable[Notification],
        now: float,
        findings: Iterable[Alert] = (),
        *,
        records: Iterable[OutRecord] = (),
        influx_lines: Iterable[str] = (),
        offsets: Offsets | None = None,
        held: Changes | None = None,
    ) -> int:
        """Save changed lifecycle state, enqueue notifications, record the digest's findings and the batch's output
        log (Kafka ``records`` with the input ``offsets``, ``influx_lines``) atomically; returns how many
        notifications were new. A finding already recorded (same alert id and transition) is ignored. A batch to
        publish is recorded when there are records or offsets. ``held``: the input records the batch consumed but
        did not release yet, and those it released (:mod:`alerts.ordering`)."""
        added = 0
        records = list(records)
        with self._lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                if records or offsets:
                    row = db.execute("SELECT data FROM flags WHERE key = 'batch'").fetchone()
                    batch = (int(json.loads(row[0])) if row else 0) + 1
                    db.execute("INSERT OR REPLACE INTO flags (key, data) VALUES ('batch', ?)", (json.dumps(batch),))
                    db.execute(
                        "INSERT INTO batches (batch, offsets, created) VALUES (?, ?, ?)",
                        (batch, json.dumps([[t, p, o] for (t, p), o in sorted((offsets or {}).items())]), now),
                    )
                    db.executemany(
                        "INSERT INTO kafka_out (batch, topic, key, value) VALUES (?, ?, ?, ?)",
                        [(batch, r.topic, r.key, r.value) for r in records],
                    )
                db.executemany("INSERT INTO influx_out (line) VALUES (?)", [(line,) for line in influx_lines])
                if held is not None:
                    db.executemany("DELETE FROM held WHERE key = ?", [(k,) for k in sorted(held.removed)])
                    db.executemany("INSERT OR REPLACE INTO held (key, data) VALUES (?, ?)", sorted(held.added.items()))
                    db.executemany(
                        "INSERT OR REPLACE INTO horizons (machine, data) VALUES (?, ?)",
                        [(m, json.dumps(t)) for m, t in sorted(held.horizons.items())],
                    )
                db.executemany(
                    "INSERT OR IGNORE INTO findings (alert_id, seq, payload, recorded) VALUES (?, ?, ?, ?)",
                    [(a.alert_id, a.seq, a.model_dump_json(), now) for a in findings],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO tracks (key, data) VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in tracks.items()],
                )
                if flags is not None:
                    db.execute("INSERT OR REPLACE INTO flags (key, data) VALUES ('lifecycle', ?)", (json.dumps(flags),))
                for n in notifications:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO outbox (id, receiver, payload, created) VALUES (?, ?, ?, ?)",
                        (n.id, n.receiver, _dump(n), now),
                    )
                    added += cur.rowcount
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"cannot write {self.path}: {exc}") from exc
        return added

    def unpublished(self) -> list[Batch]:
        """Recorded batches not yet published to Kafka, oldest first."""
        with self._lock:
            rows = self.db.execute("SELECT batch, offsets FROM batches ORDER BY batch").fetchall()
            out = []
            for batch, offsets in rows:
                records = self.db.execute(
                    "SELECT topic, key, value FROM kafka_out WHERE batch = ? ORDER BY n", (batch,)
                ).fetchall()
                out.append(
                    Batch(
                        int(batch),
                        {(str(t), int(p)): int(o) for t, p, o in json.loads(offsets)},
                        tuple(OutRecord(str(t), k, v) for t, k, v in records),
                    )
                )
        return out

    def published(self, batch: int) -> None:
        """Kafka committed the batch's transaction: forget its records."""
        with self._lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM kafka_out WHERE batch = ?", (batch,))
                db.execute("DELETE FROM batches WHERE batch = ?", (batch,))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"cannot write {self.path}: {exc}") from exc

    def influx_pending(self, limit: int = 5000) -> list[tuple[int, str]]:
        """Recorded InfluxDB lines not yet acknowledged, oldest first: ``(n, line)``."""
        with self._lock:
            rows = self.db.execute("SELECT n, line FROM influx_out ORDER BY n LIMIT ?", (limit,)).fetchall()
        return [(int(n), str(line)) for n, line in rows]

    def influx_written(self, up_to: int) -> None:
        """InfluxDB acknowledged every recorded line up to ``n = up_to``."""
        with self._lock:
            self.db.execute("DELETE FROM influx_out WHERE n <= ?", (up_to,))

    def digest_sent_until(self) -> float | None:
        """The end (UTC seconds) of the last digest period sent; ``None`` for a store that never ran a digest."""
        with self._lock:
            row = self.db.execute("SELECT data FROM flags WHERE key = 'digest'").fetchone()
        return float(json.loads(row[0])["sent_until"]) if row else None

    def unsent_findings(self) -> list[Alert]:
        """Findings no digest has carried yet, in the order recorded."""
        with self._lock:
            rows = self.db.execute("SELECT payload FROM findings WHERE digest_end IS NULL ORDER BY n").fetchall()
        return [Alert.model_validate_json(r[0]) for r in rows]

    def close_digest(
        self,
        end: float,
        notifications: Callable[[list[Alert]], Iterable[Notification]],
        now: float,
        keep_s: float,
    ) -> int:
        """One period's digest, atomically: the findings recorded before ``end`` and not sent yet are handed to
        ``notifications``, what it returns is queued in the outbox, the findings are marked as sent and the
        period is recorded as sent (so a restart does not send it again). Findings sent more than ``keep_s``
        ago are deleted. Returns how many notifications were new."""
        added = 0
        with self._lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                rows = db.execute(
                    "SELECT payload FROM findings WHERE digest_end IS NULL AND recorded < ? ORDER BY n", (end,)
                ).fetchall()
                for n in notifications([Alert.model_validate_json(r[0]) for r in rows]):
                    cur = db.execute(
                        "INSERT OR IGNORE INTO outbox (id, receiver, payload, created) VALUES (?, ?, ?, ?)",
                        (n.id, n.receiver, _dump(n), now),
                    )
                    added += cur.rowcount
                db.execute("UPDATE findings SET digest_end = ? WHERE digest_end IS NULL AND recorded < ?", (end, end))
                db.execute("DELETE FROM findings WHERE digest_end IS NOT NULL AND digest_end < ?", (now - keep_s,))
                db.execute(
                    "INSERT OR REPLACE INTO flags (key, data) VALUES ('digest', ?)", (json.dumps({"sent_until": end}),)
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"cannot write {self.path}: {exc}") from exc
            except BaseException:
                db.execute("ROLLBACK")  # building the digest failed: nothing is marked as sent
                raise
        return added

    def pending(self, receiver: str, limit: int = 100) -> list[OutboxEntry]:
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, payload, attempts FROM outbox WHERE receiver = ? AND delivered_at IS NULL AND dead = 0 "
                "ORDER BY seq LIMIT ?",
                (receiver, limit),
            ).fetchall()
        return [OutboxEntry(seq, _load(payload), attempts) for seq, payload, attempts in rows]

    def receivers_pending(self) -> list[str]:
        with self._lock:
            rows = self.db.execute(
                "SELECT DISTINCT receiver FROM outbox WHERE delivered_at IS NULL AND dead = 0"
            ).fetchall()
        return [r[0] for r in rows]

    def mark_delivered(self, seq: int, now: float) -> None:
        with self._lock:
            self.db.execute("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1 WHERE seq = ?", (now, seq))

    def mark_failed(self, seq: int, error: str, *, dead: bool) -> None:
        with self._lock:
            self.db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, dead = ? WHERE seq = ?",
                (error[:1000], int(dead), seq),
            )

    def notifications_for(self, alert_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The outbox entries that carried a transition of this episode (the Episode page), oldest first."""
        needle = json.dumps({"alert_id": alert_id})[1:-1]  # '"alert_id": "..."' as _dump writes it
        with self._lock:
            rows = self.db.execute(
                "SELECT receiver, created, delivered_at, attempts, dead, last_error, payload FROM outbox "
                "WHERE instr(payload, ?) > 0 ORDER BY seq LIMIT ?",
                (needle, limit),
            ).fetchall()
        out = []
        for receiver, created, delivered_at, attempts, dead, last_error, payload in rows:
            alerts = json.loads(payload)["alerts"]
            states = [a["state"] for a in alerts if a["alert_id"] == alert_id]
            out.append(
                {
                    "receiver": receiver,
                    "created": created,
                    "delivered_at": delivered_at,
                    "attempts": attempts,
                    "dead": bool(dead),
                    "last_error": last_error,
                    "states": states,
                    "digest": "digest" in json.loads(payload),
                }
            )
        return out

    def stats(self) -> dict[str, int]:
        with self._lock:
            pending, delivered, dead = self.db.execute(
                "SELECT COALESCE(SUM(delivered_at IS NULL AND dead = 0), 0), COALESCE(SUM(delivered_at IS NOT NULL), 0),"
                " COALESCE(SUM(dead), 0) FROM outbox"
            ).fetchone()
        return {"pending": int(pending), "delivered": int(delivered), "dead": int(dead)}
