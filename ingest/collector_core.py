"""One collector shape for every protocol: what a protocol module implements, and what it gets for free.

A live collector is one configured source that turns a protocol into :class:`Reading` and :class:`Gap` events.
Everything around that is the same for OPC UA, Modbus, Sparkplug B and MQTT, and lives here or in
:mod:`ingest.collector_cli` (which :func:`~ingest.collector_cli.serve` runs as ``vigil collect <kind>``):

- :class:`Delivery`: the one way out: readings through the :class:`~ingest.validation.Validator` into the
  :class:`~ingest.publisher.KafkaPublisher` (write-ahead spool, batching, Kafka), gaps and dead letters straight
  to it;
- :class:`QueuedCollector`: the base of a protocol whose client is ``asyncio`` (OPC UA, Modbus): an async context
  manager and async iterator of events over a bounded queue with an explicit overflow policy, fed by a
  supervisor task that reconnects with :class:`~ingest.backoff.Backoff`; a protocol writes
  ``_one_connection()`` (connect, collect until the connection is lost) and calls ``_put()``;
- :class:`PahoCollector`: the base of a protocol over MQTT (paho's own network thread calls back): connect,
  subscribe again after every reconnect, never die of one message; a protocol writes ``topics()`` and
  ``handle(topic, payload)`` and hands its events to ``self.delivery``;
- both have ``counters`` (mirrored to Prometheus as ``vigil_ingest_<kind>_total{source, counter}`` by
  :class:`~ingest.ingest_metrics.SourceMetrics`, printed in the run's summary), ``ever_connected`` (a run that
  never connected exits 1) and ``run(delivery, stop)``, which :func:`collect_all` runs for every source.

Adding a protocol is one module (a subclass and its mapping to readings) and one line in
:data:`ingest.cli.COLLECTORS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self

from ingest.backoff import Backoff
from ingest.exceptions import SourceError
from vigil.config.security import certificate_refusal
from vigil.contracts import Gap, Reading

if TYPE_CHECKING:
    from ingest.publisher import KafkaPublisher
    from ingest.validation import Validator
    from vigil.config.connections import MqttSettings

log = logging.getLogger(__name__)

Event = Reading | Gap
Overflow = Literal["block", "drop_oldest"]


class Delivery:
    """Where every collector's events go: readings validated, then to the publisher; gaps and dead letters as is.

    ``__call__`` returns whether the event was handed on (a reading the validator rejects is counted there).
    """

    def __init__(self, publisher: KafkaPublisher, validator: Validator) -> None:
        self.publisher = publisher
        self.validator = validator

    def __call__(self, event: Event) -> bool:
        if isinstance(event, Gap):
            self.publisher.add_gap(event)
            return True
        checked = self.validator.check(event)
        if checked is None:
            return False
        self.publisher.add(checked)
        return True

    def dead_letter(self, letter: Any) -> None:
        self.publisher.add_dead_letter(letter)


class Collector(Protocol):
    """What :func:`collect_all` and :func:`~ingest.collector_cli.serve` need of a collector."""

    kind: ClassVar[str]
    counts_dead_letters: ClassVar[bool]
    counters: Counter[str]
    ever_connected: bool

    @property
    def name(self) -> str: ...

    async def run(self, delivery: Delivery, stop: asyncio.Event) -> None: ...


async def collect_all(
    collectors: Sequence[Collector], delivery: Delivery, stop: asyncio.Event, duration_s: float | None = None
) -> dict[str, Counter[str]]:
    """Run every collector until ``stop`` (or ``duration_s``); the first failure stops the others, which still
    deliver what they had accepted, and is raised. Returns each collector's counters by name."""
    if duration_s is not None:
        asyncio.get_running_loop().call_later(duration_s, stop.set)
    tasks = [asyncio.create_task(c.run(delivery, stop), name=f"{c.kind}:{c.name}") for c in collectors]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return {c.name: c.counters for c in collectors}


class QueuedCollector(ABC):
    """An asyncio protocol collector: ``async with`` it, then ``async for event in it`` (Reading | Gap).

    A supervisor task calls :meth:`_one_connection` (connect, collect until the connection is lost) again and
    again, waiting :class:`Backoff` between attempts; an exception of a ``fatal`` type (or any unexpected one,
    a bug) ends it and is raised out of the iterator, never swallowed in a task. The queue is bounded
    (``queue_maxsize``): ``overflow = "block"`` slows the protocol down (back-pressure), ``"drop_oldest"`` drops
    and counts ``dropped_overflow``.
    """

    kind: ClassVar[str] = "collector"
    counts_dead_letters: ClassVar[bool] = False
    fatal: ClassVar[tuple[type[Exception], ...]] = ()
    """Failures not worth a retry (a refused certificate): logged as an error and raised to the consumer."""

    def __init__(self, source: Any, config: Any, queue_maxsize: int = 10_000, overflow: Overflow = "block") -> None:
        self.source = source
        self.config = config
        self.queue_maxsize = queue_maxsize
        self.overflow = overflow
        self.counters: Counter[str] = Counter()
        self.ever_connected = False
        self._queue: asyncio.Queue[Event | BaseException | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def name(self) -> str:
        return str(self.source.name)

    # ------------------------------------------------------------------ context manager / iterator
    async def __aenter__(self) -> Self:
        self._queue = asyncio.Queue(maxsize=self.queue_maxsize)
        self._task = asyncio.create_task(self._supervise(), name=f"{self.kind}:{self.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Python 3.11's wait_for (used inside client libraries) can swallow a cancellation that races with a
        # result, so cancel until the supervisor has really stopped.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._queue is None:
            raise SourceError(f"use the {self.kind} collector inside `async with`")
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def drain(self) -> list[Event]:
        """Take every event still queued, without waiting (after the collector stopped, so none is lost)."""
        out: list[Event] = []
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, Reading | Gap):
                out.append(item)
        return out

    async def wait_connected(self, timeout_s: float) -> None:
        """Wait until the first connection collects (tests, start-up checks)."""
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def run(self, delivery: Delivery, stop: asyncio.Event) -> None:
        """Deliver every event until ``stop``; what was accepted before the stop is delivered too."""

        async def pump() -> None:
            async for event in self:
                delivery(event)

        async with self:
            task = asyncio.create_task(pump())
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        for event in self.drain():
            delivery(event)
        if task.done() and not task.cancelled() and (failure := task.exception()) is not None:
            raise failure

    # ------------------------------------------------------------------ supervision
    async def _supervise(self) -> None:
        backoff = Backoff(self.source.reconnect_initial_s, self.source.reconnect_max_s)
        try:
            while True:
                await self._one_connection(backoff)
                delay = backoff.next()
                log.info("%s %s: reconnecting in %.1f s (attempt %d)", self.kind, self.name, delay, backoff.attempt)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except self.fatal as exc:
            log.error("%s %s: %s", self.kind, self.name, exc)
            self._put_control(exc)
        except Exception as exc:  # a bug must surface in the consumer, not die silently in a task
            log.exception("%s %s: collector failed", self.kind, self.name)
            self._put_control(exc)

    @abstractmethod
    async def _one_connection(self, backoff: Backoff) -> object:
        """Connect, collect until the connection is lost (``backoff.reset()`` once it works), then return."""

    # ------------------------------------------------------------------ output
    async def _put(self, event: Event) -> None:
        assert self._queue is not None
        if self.overflow == "block":
            await self._queue.put(event)
            return
        while self._queue.full():
            self._queue.get_nowait()
            self.counters["dropped_overflow"] += 1
        self._queue.put_nowait(event)

    def _put_control(self, item: BaseException | None) -> None:
        assert self._queue is not None
        while self._queue.full():  # an error must reach the consumer even when data is backed up
            self._queue.get_nowait()
            self.counters["dropped_overflow"] += 1
        self._queue.put_nowait(item)


class PahoCollector(ABC):
    """A protocol over the ``[mqtt]`` broker: paho's network thread calls :meth:`handle` per message.

    Subscribes to :meth:`topics` on every (re)connect (paho reconnects within 1-30 s); a failing message is
    counted as ``internal_error`` and logged with its stack, and never stops paho's loop. :meth:`connection_lost`
    is called (on paho's thread) when the broker connection breaks.
    """

    kind: ClassVar[str] = "mqtt"
    counts_dead_letters: ClassVar[bool] = False

    def __init__(
        self, broker: MqttSettings, source: Any, delivery: Delivery | None = None, client_id: str | None = None
    ) -> None:
        self.broker = broker
        self.source = source
        self.delivery = delivery
        self.client_id = client_id or f"vigil-{self.kind}-{source.name}-{uuid.uuid4().hex[:8]}"
        self.counters: Counter[str] = Counter()
        self.ever_connected = False
        self._client: Any = None
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.refusal: str | None = None
        """Why the broker refused the login (then retrying with the same settings is futile)."""

    @property
    def name(self) -> str:
        return str(self.source.name)

    @abstractmethod
    def topics(self) -> list[str]:
        """The topic filters to subscribe to."""

    @abstractmethod
    def handle(self, topic: str, payload: bytes) -> None:
        """One message: map it and hand its events to ``self.delivery``."""

    def connection_lost(self) -> None:  # noqa: B027 (a hook: not every protocol needs it)
        """The broker connection broke (paho reconnects): what the protocol must remember of that."""

    def prepare(self, client: Any) -> None:  # noqa: B027 (a hook)
        """Before the first connect (a will message, say)."""

    def connected(self, client: Any) -> None:  # noqa: B027 (a hook)
        """After every (re)connect, once the subscriptions are requested (an online message, say)."""

    def stopping(self, client: Any) -> None:  # noqa: B027 (a hook)
        """Before a clean disconnect (an offline message, say)."""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect and subscribe (again after every reconnect); raises :class:`SourceError` when unreachable."""
        from ingest.mqtt import make_client

        client = make_client(self.broker, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.prepare(client)
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            refusal = certificate_refusal("mqtt", exc)
            if refusal is not None:
                raise SourceError(refusal) from exc
            raise SourceError(f"MQTT broker {self.broker.host}:{self.broker.port} unreachable: {exc}") from exc
        self._client = client
        client.loop_start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait until the broker acknowledged the subscriptions (after a reconnect too); raises
        :class:`SourceError` naming ``mqtt.username``/``mqtt.password`` when the broker refused the login."""
        deadline = time.monotonic() + timeout_s
        while not self._subscribed.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if self.refusal is not None:
                raise SourceError(self.refusal)
            if time.monotonic() >= deadline:
                return False
        return True

    @property
    def subscribed(self) -> bool:
        """False from a lost connection until the broker acknowledged the new subscriptions."""
        return self._subscribed.is_set()

    def stop(self) -> None:
        if self._client is not None:
            try:
                self.stopping(self._client)
            finally:
                self._client.disconnect()
                self._client.loop_stop()
                self._client = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def run(self, delivery: Delivery, stop: asyncio.Event) -> None:
        """Collect into ``delivery`` from paho's thread until ``stop``; a refused login ends it (SourceError)."""
        self.delivery = delivery
        await asyncio.to_thread(self.start)
        try:
            while not stop.is_set():
                if self.refusal is not None:  # the same settings would be refused again: say so and stop
                    raise SourceError(self.refusal)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            await asyncio.to_thread(self.stop)

    # ------------------------------------------------------------------ paho callbacks (its network thread)
    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            if str(reason_code) in ("Bad user name or password", "Not authorized"):
                self.refusal = (
                    f"mqtt.username/mqtt.password: MQTT broker {self.broker.host}:{self.broker.port} refused the "
                    f"login of {self.broker.username!r} ({reason_code})"
                )
                log.error("%s", self.refusal)
            else:
                log.error(
                    "%s %s: MQTT %s refused the connection: %s", self.kind, self.name, self.broker.host, reason_code
                )
            return
        self.ever_connected = True
        self.counters["connects"] += 1
        client.subscribe([(topic, self.source.qos) for topic in self.topics()])
        self.connected(client)

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: int, reason_codes: Any, _props: Any) -> None:
        # Only the broker's SUBACK means messages will flow; anything published before it is not ours.
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("%s %s: subscription refused (%s)", self.kind, self.name, ", ".join(refused))
            return
        log.info("%s %s: subscribed to %s", self.kind, self.name, ", ".join(self.topics()))
        self._subscribed.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self._subscribed.clear()
        self.connection_lost()
        if reason_code.is_failure:
            log.warning("%s %s: broker connection lost (%s); paho reconnects", self.kind, self.name, reason_code)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            self.handle(message.topic, message.payload)
        except Exception:  # a collector never dies of one message; counted and logged with its stack
            with self._lock:
                self.counters["internal_error"] += 1
            log.exception("%s %s: message on %s could not be handled", self.kind, self.name, message.topic)
