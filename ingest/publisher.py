"""Kafka publishing shared by every collector: batched per machine, every send checked, spooled when Kafka is away.

``add()`` buffers, the background thread and ``flush()`` write (the sink contract of STYLE.md). Readings of one
machine are batched into one :class:`ReadingBatch` (key = machine id, so a machine's messages stay ordered in one
partition) of at most ``batch_max_samples`` samples, sent at the latest ``batch_max_ms`` after its first reading.
The producer is idempotent with ``acks=all`` and compression (:func:`vigil.bus.make_producer`).

Delivery, in two modes:

* **direct**: messages go to the producer; a callback counts what Kafka acknowledged.
* **spooling**: entered when a send fails (Kafka unreachable, delivery timeout) or the spool still holds
  messages from a previous run. Failed messages and every new one go to the on-disk :class:`Spool`, keyed by the
  publisher's emission sequence, so the spool is in emission order even when failures are reported late. The
  background thread probes Kafka every ``retry_interval_s`` with a fresh producer (a new idempotent producer
  id, so no sequence state of the failed one is reused), replays the spool in order, removes exactly what was
  acknowledged, and switches back to direct once the spool is empty.

Nothing accepted is lost while the process lives: every message is acknowledged, spooled, or counted as dropped
(only at the spool bound, by the configured policy). ``close()`` flushes; what Kafka did not take stays in the
spool and is replayed first by the next run.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from ingest.exceptions import PublishError
from ingest.spool import Spool
from vigil.bus import machine_key, make_producer
from vigil.config.connections import KafkaSettings, Topics
from vigil.config.ingest import PublishSettings, SpoolSettings
from vigil.contracts import DeadLetter, Gap, MaintenanceEvent, Reading, encode, utcnow

if TYPE_CHECKING:
    from vigil.metrics import ServiceMetrics

log = logging.getLogger(__name__)

_DRAIN_CHUNK = 256
MAX_MESSAGE_BYTES = 900_000
"""Largest message the publisher sends: below Kafka's default ``message.max.bytes`` (1 MiB); larger batches split."""


@dataclass
class PublisherCounters:
    """Readings (and messages) by fate. Invariant once drained: ``added == sent + dropped + spool backlog``."""

    added: int = 0
    """Readings accepted by :meth:`KafkaPublisher.add`."""
    sent: int = 0
    """Readings Kafka acknowledged (directly or from the spool)."""
    spooled: int = 0
    """Readings written to the spool (a reading can be spooled once per failed attempt)."""
    replayed: int = 0
    """Readings acknowledged from the spool (part of ``sent``)."""
    dropped: int = 0
    """Readings dropped at the spool bound."""
    messages_sent: int = 0
    messages_by_topic: Counter[str] = field(default_factory=Counter)
    """Kafka messages acknowledged, per topic."""
    bytes_sent: int = 0
    """Encoded value bytes Kafka acknowledged (before compression)."""
    by_reason: Counter[str] = field(default_factory=Counter)
    """Readings spooled or dropped, by reason (``spool:KafkaTimeoutError``, ``drop:spool_full_drop_oldest``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "sent": self.sent,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "dropped": self.dropped,
            "messages_sent": self.messages_sent,
            "messages_by_topic": dict(self.messages_by_topic),
            "bytes_sent": self.bytes_sent,
            "by_reason": dict(self.by_reason),
        }


class KafkaPublisher:
    """Batches readings per machine and delivers them to Kafka, or to the spool while Kafka is unavailable."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        spool: SpoolSettings | None = None,
        publish: PublishSettings | None = None,
        source: str | None = None,
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.spool_settings = spool or SpoolSettings()
        self.publish = publish or PublishSettings()
        self.source = source
        self.counters = PublisherCounters()
        self._spool = Spool(self.spool_settings.model_copy(update={"path": spool_path(self.spool_settings, source)}))
        self._producer: Any = None
        self._spooling = False
        self._started = False
        # add() takes readings from start() until close() begins (checked under the buffer lock).
        self._accepting = False
        self._closed = False
        self._seq: itertools.count[int] = itertools.count(1)
        self._buffers: dict[str, list[Reading]] = {}
        self._first_added: dict[str, float] = {}
        self._buf_lock = threading.Lock()
        # Taken (while still holding the buffer lock) by whoever takes a batch, until it is routed: batches of one
        # machine reach the producer/spool in the order they were taken, whichever thread emits them.
        self._emit_lock = threading.Lock()
        # Held while routing a message (producer or spool) and when switching modes, never by Kafka callbacks.
        self._route_lock = threading.RLock()
        self._count_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._last_failed_connect = float("-inf")
        self._connect_failures = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the spool and connect; when Kafka is unreachable, start in spooling mode (not an error)."""
        if self._started:
            return
        self._spool.open()
        self._seq = itertools.count(self._spool.last_seq() + 1)
        if self._spool.messages:
            self._spooling = True  # the backlog goes first, to keep each machine's order
        else:
            self._producer = self._connect()
            self._spooling = self._producer is None
        self._started = True
        self._accepting = True
        self._thread = threading.Thread(target=self._background, name="vigil-publisher", daemon=True)
        self._thread.start()

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every buffered batch and wait for Kafka's answers (failures end up in the spool)."""
        self._require_started()
        self._emit_all()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        producer = self._producer
        if producer is not None and not self._spooling:
            from kafka.errors import KafkaTimeoutError

            try:
                producer.flush(timeout=timeout_s)
            except KafkaTimeoutError:
                log.warning("flush: Kafka did not answer within %ss; unacknowledged sends continue", timeout_s)
        # While spooling, try Kafka again unless an attempt just failed: a caller flushing often (or from an
        # event loop) must not wait a connect timeout each time; the spool holds the data meanwhile.
        if self._spooling and time.monotonic() - self._last_failed_connect >= self.spool_settings.retry_interval_s:
            self._drain(deadline)

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Flush, stop the background thread and close; whatever Kafka did not take stays in the spool."""
        if not self._started or self._closed:
            return
        with self._buf_lock:
            self._accepting = False  # from here add() refuses, so nothing is left behind in a buffer
        self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._route_lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            # Anything still unacknowledged fails into the spool rather than vanishing.
            _close_producer(producer, timeout_s if timeout_s is not None else 30.0)
        if self._spool.messages:
            log.warning(
                "closing with %d reading(s) in %d message(s) spooled in %s; they are replayed at the next start",
                self._spool.readings,
                self._spool.messages,
                self.spool_settings.path,
            )
        self._spool.close()
        log.info("publisher closed: %s", self.counters.as_dict())

    def __enter__(self) -> KafkaPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def spooling(self) -> bool:
        """True while messages go to the spool instead of Kafka."""
        return self._spooling

    @property
    def spool_path(self) -> Path:
        """This publisher's spool file: ``spool.path`` with the source name added (see :func:`spool_path`)."""
        return self._spool.settings.path

    @property
    def backlog(self) -> int:
        """Readings waiting in the spool."""
        return self._spool.readings

    @property
    def backlog_bytes(self) -> int:
        """Bytes the spool holds (compressed), the quantity ``spool.max_bytes`` bounds."""
        return self._spool.size_bytes

    # ------------------------------------------------------------------ adding
    def add(self, reading: Reading) -> None:
        """Buffer one reading; its machine's batch is sent when full, or by the background thread when old.

        The hot path of every collector, so it does the least it can: one lock, one append, one length check.
        """
        machine = reading.machine_id
        with self._buf_lock:
            if not self._accepting:
                raise PublishError("publisher not started (call start() first) or already closed")
            self.counters.added += 1
            buf = self._buffers.get(machine)
            if buf is None:
                buf = self._buffers[machine] = []
                self._first_added[machine] = time.monotonic()
            buf.append(reading)
            if len(buf) < self.publish.batch_max_samples:
                return
            full = self._take(machine)
            self._emit_lock.acquire()
        try:
            self._emit(machine, full)
        finally:
            self._emit_lock.release()

    def add_gap(self, gap: Gap) -> None:
        """A gap marker on the readings topic, after the machine's buffered readings (so it stays in order)."""
        self._require_started()
        with self._buf_lock:
            pending = self._take(gap.machine_id)
            self._emit_lock.acquire()
        try:
            if pending:
                self._emit(gap.machine_id, pending)
            self._route(self.topics.readings, machine_key(gap.machine_id), encode(gap), 0)
        finally:
            self._emit_lock.release()

    def add_event(self, event: MaintenanceEvent) -> None:
        """A maintenance record (failure, repair) to the maintenance topic."""
        self._require_started()
        self._route(self.topics.maintenance, machine_key(event.machine_id), encode(event), 0)

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """An unusable input, with its raw bytes and the reason, to the dead-letter topic."""
        self._require_started()
        self._route(self.topics.dead_letter, letter.key.encode() if letter.key else None, encode(letter), 0)

    # ------------------------------------------------------------------ batching
    def _take(self, machine: str) -> list[Reading]:
        self._first_added.pop(machine, None)
        return self._buffers.pop(machine, [])

    def _emit_all(self, older_than_ms: float | None = None) -> None:
        now = time.monotonic()
        with self._buf_lock:
            ready = [
                m
                for m, first in self._first_added.items()
                if older_than_ms is None or (now - first) * 1000 >= older_than_ms
            ]
            batches = [(m, self._take(m)) for m in ready]
            self._emit_lock.acquire()
        try:
            for machine, readings in batches:
                if readings:
                    self._emit(machine, readings)
        finally:
            self._emit_lock.release()

    def _emit(self, machine: str, readings: list[Reading]) -> None:
        encoder = _ENCODERS[self.publish.batch_format]
        value = encoder(machine, readings, self.source or readings[0].source)
        if len(value) > MAX_MESSAGE_BYTES and len(readings) > 1:
            # Kafka would refuse it for good (message.max.bytes); two halves, in order, instead.
            half = len(readings) // 2
            self._emit(machine, readings[:half])
            self._emit(machine, readings[half:])
            return
        self._route(self.topics.readings, machine_key(machine), value, len(readings))

    # ------------------------------------------------------------------ delivery
    def _route(self, topic: str, key: bytes | None, value: bytes, readings: int) -> None:
        from kafka.errors import KafkaError

        with self._route_lock:
            if self._closed:
                raise PublishError("publisher is closed")
            seq = next(self._seq)
            producer = self._producer
            if self._spooling or producer is None:
                self._to_spool(seq, topic, key, value, readings, "kafka_unavailable")
                return
            try:
                future = producer.send(topic, key=key, value=value)
            except KafkaError as exc:
                if _permanent(exc):  # raised by send() itself: about this message only
                    self._reject(topic, readings, exc)
                    return
                self._enter_spooling(exc)
                self._to_spool(seq, topic, key, value, readings, type(exc).__name__)
                return
        future.add_callback(self._on_sent, topic, readings, len(value))
        future.add_errback(self._on_failed, seq, topic, key, value, readings)

    def _on_sent(self, topic: str, readings: int, size: int, _metadata: object) -> None:
        with self._count_lock:
            self.counters.sent += readings
            self.counters.messages_sent += 1
            self.counters.messages_by_topic[topic] += 1
            self.counters.bytes_sent += size

    def _on_failed(self, seq: int, topic: str, key: bytes | None, value: bytes, readings: int, exc: Exception) -> None:
        # Runs on the producer's I/O thread; it must not take the route lock (a caller blocked in send() holds it).
        # Even a message Kafka refuses for good is spooled here: kafka-python then fails every pending message
        # with that error, and only the drain can tell the culprit from the others.
        self._enter_spooling(exc)
        self._to_spool(seq, topic, key, value, readings, type(exc).__name__)

    def _reject(self, topic: str, readings: int, exc: BaseException) -> None:
        """Kafka refuses this message for good (too large, invalid topic): retrying would block the spool forever."""
        log.error(
            "Kafka rejected a message to %s for good (%s: %s); %d reading(s) dropped",
            topic,
            type(exc).__name__,
            exc,
            readings,
        )
        with self._count_lock:
            self.counters.dropped += readings
            self.counters.by_reason[f"drop:rejected_{type(exc).__name__}"] += readings

    def _enter_spooling(self, exc: BaseException) -> None:
        if not self._spooling:
            log.warning("Kafka send failed (%s: %s); spooling to %s", type(exc).__name__, exc, self.spool_settings.path)
        self._spooling = True
        self._wake.set()

    def _to_spool(self, seq: int, topic: str, key: bytes | None, value: bytes, readings: int, reason: str) -> None:
        stored, dropped = self._spool.append(seq, topic, key, value, readings)
        with self._count_lock:
            if dropped:
                self.counters.dropped += dropped
                self.counters.by_reason[f"drop:{self.spool_settings.policy}"] += dropped
            if stored:
                self.counters.spooled += readings
                self.counters.by_reason[f"spool:{reason}"] += readings

    # ------------------------------------------------------------------ background: time-based flush and drain
    def _background(self) -> None:
        # Partial batches are sent from here (add() only checks sizes), so a batch waits at most ~1.5x batch_max_ms.
        interval = max(self.publish.batch_max_ms / 2000, 0.01)
        last_probe = 0.0
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._emit_all(older_than_ms=self.publish.batch_max_ms)
                now = time.monotonic()
                if self._spooling and now - last_probe >= self.spool_settings.retry_interval_s:
                    last_probe = now
                    self._drain(None)
            except Exception:
                # The thread must survive anything (a full disk, a broker error) and keep trying.
                log.exception("publisher background step failed; retrying")

    def _drain(self, deadline: float | None) -> None:
        """Replace a failed producer, replay the spool in order, and return to direct mode when it is empty."""
        # One drain at a time (flush() and the background thread both drain): two would send twice.
        with self._drain_lock:
            self._drain_locked(deadline)

    def _drain_locked(self, deadline: float | None) -> None:
        if not self._spooling:
            return
        with self._route_lock:
            old, self._producer = self._producer, None
        if old is not None:
            # Fail everything still queued in the broken producer into the spool (with its original sequence)
            # before replaying, so nothing it held is replayed out of order.
            _close_producer(old, 0)
        producer = self._connect()
        if producer is None:
            return
        while deadline is None or time.monotonic() < deadline:
            chunk = self._spool.peek(_DRAIN_CHUNK)
            if not chunk:
                with self._route_lock:
                    if self._spool.messages == 0 and not self._closed:
                        self._producer = producer
                        self._spooling = False
                        self._connect_failures = 0
                        log.info("Kafka is back; spool drained, publishing directly")
                        return
                if self._closed:
                    # Closing while draining an empty spool: nothing left to replay and nowhere to hand the
                    # producer to; without this the background thread would spin here holding the drain lock.
                    _close_producer(producer, 5.0)
                    return
                continue
            futures = [(m, producer.send(m.topic, key=m.key, value=m.value)) for m in chunk]
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.1)
            try:
                producer.flush(
                    timeout=min(remaining or self.publish.delivery_timeout_s, self.publish.delivery_timeout_s)
                )
            except Exception as exc:
                log.warning("replaying the spool: Kafka did not acknowledge in time (%s)", exc)
            done = [m for m, f in futures if f.succeeded()]
            self._spool.remove(m.seq for m in done)
            with self._count_lock:
                n = sum(m.readings for m in done)
                self.counters.sent += n
                self.counters.replayed += n
                self.counters.messages_sent += len(done)
                self.counters.messages_by_topic.update(m.topic for m in done)
                self.counters.bytes_sent += sum(len(m.value) for m in done)
            if len(done) == len(chunk):
                continue
            _close_producer(producer, 0)
            too_large = [(m, f.exception) for m, f in futures if f.failed() and _permanent(f.exception)]
            if not too_large:
                failed = next(f for _, f in futures if not f.succeeded())
                log.warning("replaying the spool failed (%s); retrying later", failed.exception)
                return
            # kafka-python treats a too-large message as fatal and fails every pending message with the same
            # error, so only the largest one is the culprit; drop it and retry the rest with a new producer.
            culprit, error = max(too_large, key=lambda item: len(item[0].value))
            self._reject(culprit.topic, culprit.readings, error)
            self._spool.remove([culprit.seq])
            producer = self._connect()
            if producer is None:
                return
        _close_producer(producer, 0)

    def _connect(self) -> Any:
        """A new producer, or ``None`` when Kafka does not answer."""
        from kafka.errors import KafkaError

        timeout_ms = int(self.publish.delivery_timeout_s * 1000)
        if self.kafka.compression == "gzip":
            set_gzip_level(self.publish.gzip_level)
        try:
            return make_producer(
                self.kafka,
                delivery_timeout_ms=timeout_ms,
                request_timeout_ms=max(timeout_ms // 3, 1000),
                max_block_ms=max(timeout_ms // 3, 1000),
                bootstrap_timeout_ms=int(self.publish.connect_timeout_s * 1000),
            )
        except KafkaError as exc:
            self._last_failed_connect = time.monotonic()
            self._connect_failures += 1
            # Once, then about every minute of a long outage (the probe runs every retry_interval_s).
            level = logging.WARNING if self._connect_failures % 30 == 1 else logging.DEBUG
            log.log(
                level,
                "Kafka at %s unavailable (%s); spooling (%d reading(s) in the spool, attempt %d)",
                self.kafka.bootstrap_servers,
                exc,
                self._spool.readings,
                self._connect_failures,
            )
            return None

    def _require_started(self) -> None:
        if not self._started:
            raise PublishError("publisher not started (call start() first)")


class IngestMetrics:
    """Mirrors a collector's counters into the standard Prometheus families of :mod:`vigil.metrics`.

    The ingest counters stay plain integers on the hot path; ``update()`` (called every few seconds by a
    collector's ``main``) adds what changed since the last call. Families: ``vigil_readings_total`` (readings
    acknowledged by Kafka), ``vigil_messages_out_total{topic}``, ``vigil_dropped_total{reason}``,
    ``vigil_dead_letters_total{reason}`` (bad payloads/rows), plus ``vigil_ingest_input_total{reason}``
    (validation: flags and rejections), ``vigil_ingest_spooled_readings_total{reason}``,
    ``vigil_ingest_spool_backlog_readings`` and ``vigil_ingest_spooling`` (1 while Kafka is away).
    """

    _NOT_REASONS = frozenset({"received", "accepted", "rows", "rejected"})

    def __init__(self, metrics: ServiceMetrics) -> None:
        from prometheus_client import Counter as PromCounter
        from prometheus_client import Gauge

        self.metrics = metrics
        r = metrics.registry
        self.input = PromCounter(
            "vigil_ingest_input", "Readings flagged or rejected by validation", ["reason"], registry=r
        )
        self.spooled = PromCounter(
            "vigil_ingest_spooled_readings", "Readings written to the spool", ["reason"], registry=r
        )
        self.backlog = Gauge("vigil_ingest_spool_backlog_readings", "Readings waiting in the spool", registry=r)
        self.spooling = Gauge("vigil_ingest_spooling", "1 while Kafka is unavailable and readings spool", registry=r)
        self._seen: dict[tuple[str, str], int] = {}

    def update(
        self,
        publisher: KafkaPublisher,
        validator_counters: Mapping[str, int] | None = None,
        collector_counters: Mapping[str, int] | None = None,
    ) -> None:
        c = publisher.counters
        self._inc(("sent", ""), c.sent, self.metrics.readings.inc)
        for topic, n in list(c.messages_by_topic.items()):
            self._inc(("topic", topic), n, self.metrics.messages_out.labels(topic).inc)
        for reason, n in list(c.by_reason.items()):
            kind, _, detail = reason.partition(":")
            family = self.metrics.dropped if kind == "drop" else self.spooled
            self._inc(("reason", reason), n, family.labels(detail).inc)
        for reason, n in list((validator_counters or {}).items()):
            self._inc(("input", reason), n, self.input.labels(reason).inc)
        for reason, n in list((collector_counters or {}).items()):
            if reason == "internal_error":
                self._inc(("error", reason), n, self.metrics.errors.labels(reason).inc)
            elif reason not in self._NOT_REASONS:
                self._inc(("dead", reason), n, self.metrics.dead_letters.labels(reason).inc)
        self.backlog.set(publisher.backlog)
        self.spooling.set(1 if publisher.spooling else 0)

    def _inc(self, key: tuple[str, str], total: int, inc: Callable[[float], None]) -> None:
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            inc(delta)
            self._seen[key] = total


_SAMPLE_HEADS: dict[tuple[str, str | None, str, int, tuple[str, ...]], str] = {}


def encode_batch(machine_id: str, readings: list[Reading], source: str | None = None) -> bytes:
    """The JSON of a :class:`ReadingBatch` of these readings, exactly as :func:`vigil.contracts.decode` reads it.

    Written by hand because it is the hot path: building ``Sample`` models and serialising them through pydantic
    costs ~15 us per reading, this ~1.5 us. The parts that repeat (sensor, unit, quality, status code, flags)
    are encoded once per combination and cached; a round-trip test against the pydantic contract guards it.
    Readings were validated when built, so timestamps are aware (UTC) and identifiers need no escaping, but
    free text (unit, flags, source) goes through ``json.dumps``. A non-finite value becomes ``null``.

    >>> from datetime import datetime, timezone
    >>> from vigil.contracts import ReadingBatch, decode
    >>> r = Reading(machine_id="PMP-001", sensor="flow", ts=datetime(2026, 1, 1, tzinfo=timezone.utc), value=2.5)
    >>> batch = decode(encode_batch("PMP-001", [r]))
    >>> isinstance(batch, ReadingBatch), list(batch.readings())[0].value
    (True, 2.5)
    """
    heads = _SAMPLE_HEADS
    parts = []
    for r in readings:
        key = (r.sensor, r.unit, r.quality, r.status_code, r.flags)
        head = heads.get(key)
        if head is None:
            if len(heads) > 100_000:  # bounded: a source inventing units must not grow memory forever
                heads.clear()
            head = heads[key] = (
                f'{{"sensor":{json.dumps(r.sensor)},"unit":{json.dumps(r.unit)},"quality":"{r.quality.value}",'
                f'"status_code":{int(r.status_code)},"flags":{json.dumps(list(r.flags))},"ts":"'
            )
        value = r.value
        text = "null" if value is None or not math.isfinite(value) else repr(float(value))
        server = "null" if r.server_ts is None else f'"{r.server_ts.isoformat()}"'
        parts.append(f'{head}{r.ts.isoformat()}","value":{text},"server_ts":{server}}}')
    return (
        f'{{"v":1,"kind":"reading_batch","machine_id":{json.dumps(machine_id)},'
        f'"ingest_ts":"{utcnow().isoformat()}","source":{json.dumps(source)},"samples":[{",".join(parts)}]}}'
    ).encode()


def encode_columns(machine_id: str, readings: list[Reading], source: str | None = None) -> bytes:
    """The JSON of a :class:`~vigil.contracts.ReadingColumns` of these readings (``publish.batch_format =
    "columns"``): one column per sensor and unit, event times as epoch seconds, the optional lists (quality,
    status code, server timestamp, flags) only where a reading differs from the default. A non-finite value
    becomes ``null``.

    >>> from datetime import datetime, timezone
    >>> from vigil.contracts import ReadingColumns, decode
    >>> r = Reading(machine_id="PMP-001", sensor="flow", ts=datetime(2026, 1, 1, tzinfo=timezone.utc), value=2.5)
    >>> message = decode(encode_columns("PMP-001", [r]))
    >>> isinstance(message, ReadingColumns), list(message.readings())[0] == r.model_copy(
    ...     update={"ingest_ts": message.ingest_ts})
    (True, True)
    """
    columns = _columns(readings)
    if columns is None:
        return encode_batch(machine_id, readings, source)
    doc = {
        "v": 1,
        "kind": "reading_columns",
        "machine_id": machine_id,
        "ingest_ts": utcnow().isoformat(),
        "source": source,
        "columns": columns,
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def encode_packed(machine_id: str, readings: list[Reading], source: str | None = None) -> bytes:
    """The packed form of :func:`encode_columns` (``publish.batch_format = "packed"``, see
    :func:`vigil.contracts.pack_columns`): MessagePack with the numbers as float64 binaries, null as NaN.

    >>> from datetime import datetime, timezone
    >>> from vigil.contracts import ReadingColumns, decode
    >>> r = Reading(machine_id="PMP-001", sensor="flow", ts=datetime(2026, 1, 1, tzinfo=timezone.utc), value=2.5)
    >>> message = decode(encode_packed("PMP-001", [r]))
    >>> isinstance(message, ReadingColumns), list(message.readings())[0] == r.model_copy(
    ...     update={"ingest_ts": message.ingest_ts})
    (True, True)
    """
    columns = _columns(readings)
    if columns is None:
        return encode_batch(machine_id, readings, source)
    nan = math.nan
    doc: dict[str, Any] = {
        "v": 1,
        "kind": "reading_columns",
        "machine_id": machine_id,
        "ingest_ts": utcnow().timestamp(),
        "source": source,
        "sensors": [c["sensor"] for c in columns],
        "units": [c["unit"] for c in columns],
        "lengths": [len(c["ts"]) for c in columns],
        "ts": _f8(t for c in columns for t in c["ts"]),
        "value": _f8(nan if v is None else v for c in columns for v in c["value"]),
    }
    if any("server_ts" in c for c in columns):
        doc["server_ts"] = _f8(
            nan if t is None else t for c in columns for t in c.get("server_ts") or [None] * len(c["ts"])
        )
    for name, default in (("quality", "good"), ("status_code", 0), ("flags", [])):
        if any(name in c for c in columns):
            doc[name] = [x for c in columns for x in c.get(name) or [default] * len(c["ts"])]
    try:
        packed: bytes = msgpack.packb(doc, use_bin_type=True)
    except OverflowError:
        # A status code beyond MessagePack's 64-bit integers (valid on a Reading, which holds any int; OPC UA's
        # are 32-bit): the rows carry it.
        return encode_batch(machine_id, readings, source)
    return packed


def _f8(numbers: Iterable[float]) -> bytes:
    return np.fromiter(numbers, dtype="<f8").tobytes()


_EPOCH_MAX = 253402300799.0
"""The columnar forms' last epoch second (9999-12-31T23:59:59Z)."""
_EPOCH_EXACT = 2.0**33
"""Below this (year 2242) float epoch seconds hold every microsecond: beyond it, whether one does is checked."""


def _exact_epochs(epochs: list[float], moments: list[datetime]) -> bool:
    """Whether these epoch seconds (of these datetimes) are valid on the columnar forms and give the datetimes
    back to the microsecond."""
    if not epochs:
        return True
    low, high = min(epochs), max(epochs)
    if low < 0.0 or high > _EPOCH_MAX:
        return False
    return high < _EPOCH_EXACT or all(datetime.fromtimestamp(e, UTC) == m for e, m in zip(epochs, moments, strict=True))


def _columns(readings: list[Reading]) -> list[dict[str, Any]] | None:
    """The readings as columns (one per sensor and unit, the optional lists only where a reading differs from the
    default), or ``None`` when they must go as rows."""
    groups: dict[tuple[str, str | None], list[Reading]] = {}
    for r in readings:
        groups.setdefault((r.sensor, r.unit), []).append(r)
    if len({sensor for sensor, _ in groups}) != len(groups):
        # One sensor in two units: its columns would reorder its readings, and of two with the same timestamp the
        # window engine keeps the first to arrive. Rows keep the order (a unit change is rare).
        return None
    columns = []
    for (sensor, unit), rs in groups.items():
        ts = [r.ts.timestamp() for r in rs]
        servers = [r.server_ts.timestamp() for r in rs if r.server_ts is not None]
        if not _exact_epochs(ts, [r.ts for r in rs]) or not _exact_epochs(
            servers, [r.server_ts for r in rs if r.server_ts is not None]
        ):
            # Epoch seconds on the columnar form hold 1970 .. 9999-12-31T23:59:59 (a clock reset to 1601, OPC UA's
            # zero, is before; a fraction of 9999's last second after): such a batch goes as rows, which hold any
            # valid Reading, rather than as a message the contract refuses or one that moves a timestamp.
            return None
        column: dict[str, Any] = {
            "sensor": sensor,
            "unit": unit,
            "ts": ts,
            "value": [None if r.value is None or not math.isfinite(r.value) else float(r.value) for r in rs],
        }
        if any(r.quality != "good" for r in rs):
            column["quality"] = [r.quality.value for r in rs]
        if any(r.status_code for r in rs):
            column["status_code"] = [int(r.status_code) for r in rs]
        if any(r.server_ts is not None for r in rs):
            column["server_ts"] = [None if r.server_ts is None else r.server_ts.timestamp() for r in rs]
        if any(r.flags for r in rs):
            column["flags"] = [list(r.flags) for r in rs]
        columns.append(column)
    return columns


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


def _permanent(exc: BaseException | None) -> bool:
    """A message too large for Kafka: no retry fixes it. Everything else (timeouts, connections, authorisation, a
    closed producer) is spooled and retried."""
    from kafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

    return isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError)


def set_gzip_level(level: int) -> None:
    """Make kafka-python's record batches use this gzip level (it hard-codes 9, with no setting).

    Process-wide, by replacing the encoder its record builder looks up at call time; idempotent. kafka-python is
    pinned below 4 in pyproject, and a build whose module layout differs is left alone (level 9, just slower).
    """
    try:
        from kafka.record import default_records
    except ImportError:  # pragma: no cover - a different kafka-python layout
        return
    current = getattr(default_records, "gzip_encode", None)
    if current is None or getattr(current, "vigil_level", None) == level:
        return
    original = getattr(current, "vigil_original", current)

    def gzip_encode(payload: bytes, compresslevel: int | None = None) -> bytes:
        return bytes(original(payload, compresslevel or level))

    gzip_encode.vigil_level = level  # type: ignore[attr-defined]
    gzip_encode.vigil_original = original  # type: ignore[attr-defined]
    default_records.gzip_encode = gzip_encode


def _close_producer(producer: Any, timeout_s: float) -> None:
    """Close a producer, failing (into the spool, via the errbacks) whatever it could not deliver in time.

    kafka-python's ``close()`` flushes first and raises when that flush times out, which would leave the I/O
    thread running with our messages; force-closing the sender aborts every incomplete batch, so each pending
    future fails and its errback spools the message.
    """
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=timeout_s)
    except KafkaError:
        sender = producer._sender
        sender.force_close()
        sender.join(timeout=60)
        producer.close(timeout=0)


_ENCODERS: dict[str, Callable[[str, list[Reading], str | None], bytes]] = {
    "rows": encode_batch,
    "columns": encode_columns,
    "packed": encode_packed,
}
