"""Kafka publishing shared by every collector: batched per machine, written ahead to the spool, every send checked.

``add()`` buffers, the background thread and ``flush()`` write (the sink contract of STYLE.md). Readings of one
machine are batched into one :class:`ReadingBatch` (key = machine id, so a machine's messages stay ordered in one
partition) of at most ``batch_max_samples`` samples, emitted at the latest ``batch_max_ms`` after its first
reading. The producer is idempotent with ``acks=all`` and compression (:func:`ingest.kafka_io.new_producer`).

**Write-ahead.** Every emitted message gets the next emission sequence and is appended to the on-disk
:class:`~ingest.spool.Spool` (committed, fsynced per ``spool.fsync``) *before* it is handed to Kafka; it carries
a ``vigil-spool: <spool id>:<seq>`` header, and it is removed from the spool once Kafka acknowledged it (the
background thread applies acknowledgements every tick, with the partitions' new marks). So ``kill -9`` loses at
most the readings not yet emitted: the batches being filled, at most ``batch_max_ms`` of data.

Delivery, in two modes:

* **direct**: messages go to the producer right after their append; a callback counts what Kafka acknowledged.
* **spooling**: the mode at start and whenever a send fails (Kafka unreachable, delivery timeout). Messages are
  only appended. The background thread tries Kafka at once and then every ``retry_interval_s`` with a fresh
  producer (a new idempotent producer id), first *reconciles* (reads each partition from the spool's mark to its
  end and removes the spooled messages Kafka already holds: sent before a kill, or acknowledged too late), then
  replays the rest in emission order, removes exactly what was acknowledged, and switches to direct once the
  spool is empty. Start-up therefore never waits for Kafka.

The write-ahead bookkeeping (sequence, spool, acknowledgements, reconciliation) is :mod:`ingest.write_ahead`; the
Kafka helpers :mod:`ingest.kafka_io`; the message forms :mod:`ingest.encoding`; the metrics
:mod:`ingest.ingest_metrics`. This module is the delivery state machine around them.

**Source position.** A file-like source (the replay) can hand :meth:`KafkaPublisher.track_position` a function
``(stream, messages' readings) -> position``; the publisher calls it for every message routed with a ``stream``
(a machine's batch, a source's dead letter) and stores what it returns in the same spool commit as the message
(:meth:`stored_position`), so a restarted source resumes exactly after what the spool holds.

Nothing accepted is lost while the process lives: every message is acknowledged, in the spool, or counted as
dropped (only at the spool bound, by the configured policy). ``close()`` flushes; what Kafka did not take stays in
the spool and is replayed first by the next run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.encoding import ENCODERS, MAX_MESSAGE_BYTES, encode_batch, encode_columns, encode_packed
from ingest.exceptions import PublishError
from ingest.ingest_metrics import IngestMetrics
from ingest.kafka_io import close_producer, new_producer, permanent, set_gzip_level
from ingest.spool import spool_path
from ingest.write_ahead import WriteAhead
from vigil.bus import TopicSpec, ensure_topics, machine_key
from vigil.config.connections import KafkaSettings, Topics
from vigil.config.ingest import PublishSettings, SpoolSettings
from vigil.contracts import DeadLetter, Gap, MaintenanceEvent, Reading, encode

__all__ = [
    "MAX_MESSAGE_BYTES",
    "IngestMetrics",
    "KafkaPublisher",
    "PublisherCounters",
    "encode_batch",
    "encode_columns",
    "encode_packed",
    "set_gzip_level",
    "spool_path",
]

log = logging.getLogger(__name__)

_DRAIN_CHUNK = 256
_OUTBOX_MAX = 1000
"""Messages written ahead but not yet handed to the producer, at most; beyond, the publisher spools."""


@dataclass(frozen=True)
class _Outgoing:
    """A message written ahead to the spool, on its way to the producer."""

    epoch: int
    seq: int
    topic: str
    key: bytes | None
    value: bytes
    readings: int
    stored: bool
    """Whether the spool holds it (the bound can refuse one)."""


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
    reconciled: int = 0
    """Spooled readings found already on Kafka at a reconciliation (sent before a kill, or acknowledged late):
    removed from the spool instead of being sent twice (not part of ``sent``)."""
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
            "reconciled": self.reconciled,
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
        ensure: Sequence[TopicSpec] = (),
    ) -> None:
        self.kafka = kafka
        self.topics = topics
        self.ensure = tuple(ensure)
        """Topics to create (when missing) once Kafka answers, before the first send: never before collecting."""
        self.spool_settings = spool or SpoolSettings()
        self.publish = publish or PublishSettings()
        self.source = source
        self.counters = PublisherCounters()
        self._wal = WriteAhead(self.spool_settings.model_copy(update={"path": spool_path(self.spool_settings, source)}))
        self._spool = self._wal.spool
        self._producer: Any = None
        self._spooling = False
        self._started = False
        # add() takes readings from start() until close() begins (checked under the buffer lock).
        self._accepting = False
        self._closed = False
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
        self._ensured = not self.ensure
        self._last_failed_connect = float("-inf")
        self._connect_failures = 0
        # Messages written ahead, for the sender thread to hand to Kafka (a flush() puts an Event to wait on).
        self._outbox: queue.SimpleQueue[_Outgoing | threading.Event | None] = queue.SimpleQueue()
        # Raised each time the drain returns to direct mode: what was queued before is in the spool and replayed.
        self._epoch = 0
        # Held by the sender around one send and by the drain to take the producer away.
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._position: Callable[[str, int], str | None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the spool and start in spooling mode; never waits for Kafka (the background thread connects)."""
        if self._started:
            return
        self._wal.open()
        # Always through the spool first: a backlog goes before new messages (each machine's order), and an
        # unreachable Kafka must not delay collecting. The background thread tries Kafka at once.
        self._spooling = True
        self._started = True
        self._accepting = True
        # Three threads, so that nothing Kafka does (a connect timeout, a blocked send) delays writing batches
        # ahead: the ticker emits partial batches and applies acknowledgements, the sender hands written-ahead
        # messages to the producer, the drainer probes Kafka, reconciles and replays.
        for name, target in (("tick", self._tick), ("send", self._send_loop), ("drain", self._drain_loop)):
            thread = threading.Thread(target=target, name=f"vigil-publisher-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every buffered batch and wait for Kafka's answers (failures end up in the spool)."""
        self._require_started()
        self._emit_all()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if not self._spooling:
            handed = threading.Event()  # the sender reaches it once everything queued before is with the producer
            self._outbox.put(handed)
            handed.wait(timeout_s)
        producer = self._producer
        if producer is not None and not self._spooling:
            from kafka.errors import KafkaTimeoutError

            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.1)
            try:
                producer.flush(timeout=remaining)
            except KafkaTimeoutError:
                log.warning("flush: Kafka did not answer within %ss; unacknowledged sends continue", timeout_s)
            self._apply_acks()
        # While spooling, try Kafka again unless an attempt just failed: a caller flushing often (or from an
        # event loop) must not wait a connect timeout each time; the spool holds the data meanwhile.
        if self._spooling and not self._failed_recently():
            self._drain(deadline, unless_failed_recently=True)

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Flush, stop the background thread and close; whatever Kafka did not take stays in the spool."""
        if not self._started or self._closed:
            return
        with self._buf_lock:
            self._accepting = False  # from here add() refuses, so nothing is left behind in a buffer
        self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=60)
        with self._route_lock, self._send_lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            # Anything still unacknowledged fails and stays in the spool rather than vanishing.
            close_producer(producer, timeout_s if timeout_s is not None else 30.0)
        self._apply_acks()
        if self._spool.messages:
            log.warning(
                "closing with %d reading(s) in %d message(s) spooled in %s; they are replayed at the next start",
                self._spool.readings,
                self._spool.messages,
                self.spool_path,
            )
        self._wal.close()
        log.info("publisher closed: %s", self.counters.as_dict())

    def __enter__(self) -> KafkaPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def track_position(self, position: Callable[[str, int], str | None]) -> None:
        """Store a source position with every message routed with a ``stream`` (see the module docstring).

        ``position(stream, readings)`` is called under the routing lock, once per message and in emission order,
        just before the message is written ahead; its answer is committed with the message."""
        self._position = position

    def stored_position(self) -> str | None:
        """The source position committed with the last tracked message (after :meth:`start`; ``None``: none)."""
        return self._spool.position()

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
        """Readings in the spool: waiting for Kafka, or sent and not yet acknowledged."""
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

    def add_dead_letter(self, letter: DeadLetter, stream: str | None = None) -> None:
        """An unusable input, with its raw bytes and the reason, to the dead-letter topic (``stream``: the
        source-position stream it counts for, see :meth:`track_position`)."""
        self._require_started()
        self._route(self.topics.dead_letter, letter.key.encode() if letter.key else None, encode(letter), 0, stream)

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
        encoder = ENCODERS[self.publish.batch_format]
        value = encoder(machine, readings, self.source or readings[0].source)
        if len(value) > MAX_MESSAGE_BYTES and len(readings) > 1:
            # Kafka would refuse it for good (message.max.bytes); two halves, in order, instead.
            half = len(readings) // 2
            self._emit(machine, readings[:half])
            self._emit(machine, readings[half:])
            return
        self._route(self.topics.readings, machine_key(machine), value, len(readings), machine)

    # ------------------------------------------------------------------ delivery
    def _route(self, topic: str, key: bytes | None, value: bytes, readings: int, stream: str | None = None) -> None:
        """Append the message to the spool (write-ahead), then queue it for the sender unless spooling."""
        with self._route_lock:
            if self._closed:
                raise PublishError("publisher is closed")
            position = None
            if self._position is not None and stream is not None:
                position = self._position(stream, readings)
            seq, stored, dropped = self._wal.append(topic, key, value, readings, position)
            self._count_spool(0, dropped, "")
            if self._spooling or self._producer is None:
                if stored:
                    self._count_spool(readings, 0, "kafka_unavailable")
                return
            if self._outbox.qsize() >= _OUTBOX_MAX:
                # Kafka takes messages slower than they come (the sender is blocked in send()): rather than
                # growing memory, spool; the drain replaces the producer and replays from disk.
                self._enter_spooling(PublishError(f"{_OUTBOX_MAX} messages waiting for the producer"))
                if stored:
                    self._count_spool(readings, 0, "kafka_slow")
                return
            self._outbox.put(_Outgoing(self._epoch, seq, topic, key, value, readings, stored))

    def _send_loop(self) -> None:
        """The sender thread: hands written-ahead messages to the producer, in emission order."""
        while True:
            item = self._outbox.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._send(item)
            except Exception:
                # The message is in the spool: the next drain replays it. The thread lives on.
                log.exception("handing a message to Kafka failed")
                self._enter_spooling(PublishError("send failed"))

    def _send(self, m: _Outgoing) -> None:
        from kafka.errors import KafkaError

        with self._send_lock:
            producer = self._producer
            if self._spooling or producer is None or m.epoch != self._epoch:
                # In the spool already; the drain replays it in order.
                if m.stored:
                    self._count_spool(m.readings, 0, "kafka_unavailable")
                return
            try:
                future = producer.send(m.topic, key=m.key, value=m.value, headers=self._wal.headers(m.seq))
            except KafkaError as exc:
                if permanent(exc):  # raised by send() itself: about this message only
                    self._spool.remove([m.seq])
                    self._reject(m.topic, m.readings, exc)
                    return
                self._enter_spooling(exc)
                if m.stored:
                    self._count_spool(m.readings, 0, type(exc).__name__)
                return
        future.add_callback(self._on_sent, m.seq, m.topic, m.readings, len(m.value))
        future.add_errback(self._on_failed, m.seq, m.topic, m.key, m.value, m.readings)

    def _on_sent(self, seq: int, topic: str, readings: int, size: int, metadata: Any) -> None:
        self._wal.acknowledged(seq, metadata.topic, metadata.partition, metadata.offset)
        with self._count_lock:
            self.counters.sent += readings
            self.counters.messages_sent += 1
            self.counters.messages_by_topic[topic] += 1
            self.counters.bytes_sent += size

    def _on_failed(self, seq: int, topic: str, key: bytes | None, value: bytes, readings: int, exc: Exception) -> None:
        # Runs on the producer's I/O thread; it must not take the send lock (the sender, blocked in send(), holds it).
        # The message is normally in the spool already (written ahead); appending again is a no-op then, and
        # stores it if the bound had refused it. Even a message Kafka refuses for good stays: kafka-python then
        # fails every pending message with that error, and only the drain can tell the culprit from the others.
        self._enter_spooling(exc)
        stored, dropped = self._spool.append(seq, topic, key, value, readings)
        self._count_spool(readings if stored or not dropped else 0, dropped, type(exc).__name__)

    def _apply_acks(self) -> None:
        """Remove what Kafka acknowledged from the spool, raising the partitions' marks in the same commit."""
        self._wal.apply_acks()

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
            log.warning("Kafka send failed (%s: %s); spooling to %s", type(exc).__name__, exc, self.spool_path)
        self._spooling = True
        self._wake.set()

    def _count_spool(self, spooled: int, dropped: int, reason: str) -> None:
        if not spooled and not dropped:
            return
        with self._count_lock:
            if dropped:
                self.counters.dropped += dropped
                self.counters.by_reason[f"drop:{self.spool_settings.policy}"] += dropped
            if spooled:
                self.counters.spooled += spooled
                self.counters.by_reason[f"spool:{reason}"] += spooled

    # ------------------------------------------------------------------ background: time-based flush and drain
    def _tick(self) -> None:
        """The ticker thread: emits partial batches and applies acknowledgements; it never waits for Kafka."""
        # Ticking every quarter window and emitting what would pass batch_max_ms before the next tick, no batch
        # stays in memory (where kill -9 loses it) longer than batch_max_ms, scheduling delays aside.
        interval = max(self.publish.batch_max_ms / 4000, 0.005)
        older_than_ms = max(self.publish.batch_max_ms - interval * 1000, 0.0)
        while not self._stop.wait(interval):
            try:
                self._emit_all(older_than_ms=older_than_ms)
                self._apply_acks()
            except Exception:
                # The thread must survive anything (a full disk) and keep trying.
                log.exception("publisher tick failed; retrying")

    def _drain_loop(self) -> None:
        """The drainer thread: while spooling, tries Kafka at once and then every ``retry_interval_s``."""
        last_probe = float("-inf")
        while not self._stop.is_set():
            try:
                if self._spooling and time.monotonic() - last_probe >= self.spool_settings.retry_interval_s:
                    last_probe = time.monotonic()
                    self._drain(None)
            except Exception:
                log.exception("publisher drain failed; retrying")
            self._wake.wait(self.spool_settings.retry_interval_s)
            self._wake.clear()

    def _failed_recently(self) -> bool:
        return time.monotonic() - self._last_failed_connect < self.spool_settings.retry_interval_s

    def _drain(self, deadline: float | None, unless_failed_recently: bool = False) -> None:
        """Replace a failed producer, replay the spool in order, and return to direct mode when it is empty."""
        # One drain at a time (flush() and the drainer thread both drain): two would send twice.
        with self._drain_lock:
            # flush() waited for the drainer's attempt: when it just failed, do not wait a connect timeout again.
            if unless_failed_recently and self._failed_recently():
                return
            self._drain_locked(deadline)

    def _drain_locked(self, deadline: float | None) -> None:
        if not self._spooling:
            return
        with self._route_lock, self._send_lock:
            old, self._producer = self._producer, None
        if old is not None:
            # Stop the broken producer (what it still held fails; it is in the spool already) and forget what it
            # had acknowledged, before replaying, so nothing it held is replayed out of order or twice.
            close_producer(old, 0)
        self._apply_acks()
        producer = self._connect()
        if producer is None:
            return
        if not self._reconcile():
            close_producer(producer, 0)
            return
        while (deadline is None or time.monotonic() < deadline) and not self._stop.is_set():
            chunk = self._spool.peek(_DRAIN_CHUNK)
            if not chunk:
                with self._route_lock, self._send_lock:
                    if self._spool.messages == 0 and not self._closed:
                        self._epoch += 1
                        self._producer = producer
                        self._spooling = False
                        self._connect_failures = 0
                        log.info("Kafka is back; spool drained, publishing directly")
                        return
                if self._closed:
                    # Closing while draining an empty spool: nothing left to replay and nowhere to hand the
                    # producer to; without this the background thread would spin here holding the drain lock.
                    close_producer(producer, 5.0)
                    return
                continue
            futures = [
                (m, producer.send(m.topic, key=m.key, value=m.value, headers=self._wal.headers(m.seq))) for m in chunk
            ]
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.1)
            try:
                producer.flush(
                    timeout=min(remaining or self.publish.delivery_timeout_s, self.publish.delivery_timeout_s)
                )
            except Exception as exc:
                log.warning("replaying the spool: Kafka did not acknowledge in time (%s)", exc)
            done = [m for m, f in futures if f.succeeded()]
            self._wal.remove_written(
                (m.seq, f.value.topic, f.value.partition, f.value.offset) for m, f in futures if f.succeeded()
            )
            with self._count_lock:
                n = sum(m.readings for m in done)
                self.counters.sent += n
                self.counters.replayed += n
                self.counters.messages_sent += len(done)
                self.counters.messages_by_topic.update(m.topic for m in done)
                self.counters.bytes_sent += sum(len(m.value) for m in done)
            if len(done) == len(chunk):
                continue
            close_producer(producer, 0)
            too_large = [(m, f.exception) for m, f in futures if f.failed() and permanent(f.exception)]
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
        close_producer(producer, 0)

    def _reconcile(self) -> bool:
        """Remove the spooled messages Kafka already holds and mark every partition's end (before any send of a
        new producer); False when Kafka did not answer (the drain retries later)."""
        topics = (self.topics.readings, self.topics.maintenance, self.topics.dead_letter)
        try:
            if not self._ensured:
                ensure_topics(self.kafka, self.ensure)
                self._ensured = True
            removed, readings = self._wal.reconcile(self.kafka, topics, self.publish.delivery_timeout_s)
        except Exception as exc:  # Kafka went away again (any client error): retried at the next probe
            self._last_failed_connect = time.monotonic()
            log.warning("could not reconcile the spool with Kafka (%s); retrying later", exc)
            return False
        if removed:
            log.warning(
                "%d spooled message(s) (%d reading(s)) were already on Kafka (sent before a restart or acknowledged "
                "late): removed, not sent again",
                removed,
                readings,
            )
            with self._count_lock:
                self.counters.reconciled += readings
        return True

    def _connect(self) -> Any:
        """A new producer, or ``None`` when Kafka does not answer."""
        from kafka.errors import KafkaError

        try:
            return new_producer(self.kafka, self.publish)
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
