"""The OPC UA collector: an async context manager and async iterator of :class:`Reading` and :class:`Gap`.

::

    async with OpcUaCollector(source, config) as collector:
        async for event in collector:      # Reading | Gap
            ...

Behind the iterator a supervisor task owns the connection:

- a **new asyncua client per connection attempt** (no state of a broken session is reused), configured by
  :func:`~ingest.opcua.security.apply_security`; a refused secure connection raises
  :class:`~ingest.exceptions.OpcUaSecurityError` out of the iterator and is not retried;
- failed attempts are retried with exponential **backoff with jitter** (``reconnect_initial_s`` ..
  ``reconnect_max_s``), reset after a connection that worked;
- on every connection the nodes, browse paths and patterns are resolved again and the **subscription is
  re-created** (data change, per-node sampling interval, ``queue_size``, ``discard_oldest``, absolute/percent
  deadband via ``DataChangeFilter``), or the variables are **polled** (``mode = "poll"``);
- a **watchdog** treats a subscription without any publish response (data or keep-alive) for ``watchdog_s``
  as lost; a lost connection or a silent subscription ends the connection;
- after a loss, the first reading of each machine is preceded by a :class:`Gap` from that machine's last
  reading before the loss to this one (event time), so downstream knows data is missing rather than zero.

The output queue is bounded (``queue_maxsize``) with an explicit ``overflow`` policy: ``block`` (back-pressure
into asyncua's own bounded subscription queue) or ``drop_oldest`` (counted as ``dropped_overflow``).
Values that are not numbers are counted (``wrong_type``) and delivered as ``None`` with the flag; repeated
samples (same source timestamp, e.g. after a re-subscribe or an unchanged poll) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from ingest.exceptions import OpcUaError, OpcUaSecurityError
from ingest.opcua.backoff import Backoff
from ingest.opcua.mapping import Binding, Resolver
from ingest.opcua.security import apply_security
from vigil.config import OpcUaSource, VigilConfig
from vigil.contracts import Gap, Quality, Reading, utcnow

log = logging.getLogger(__name__)

Event = Reading | Gap

_SECURITY_CODES = {
    getattr(StatusCodes, name)
    for name in (
        "BadIdentityTokenRejected",
        "BadIdentityTokenInvalid",
        "BadUserAccessDenied",
        "BadCertificateUntrusted",
        "BadCertificateTimeInvalid",
        "BadCertificateInvalid",
        "BadCertificateUriInvalid",
        "BadSecurityChecksFailed",
        "BadSecurityPolicyRejected",
        "BadSecurityModeRejected",
    )
}
_RETRYABLE = (OSError, TimeoutError, ConnectionError, UaError, OpcUaError)


class _Lost(Exception):
    """The connection ended; ``reason`` goes into the Gap."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def to_reading(binding: Binding, dv: ua.DataValue, source: str, event_time: Literal["source", "server"]) -> Reading:
    """One OPC UA DataValue as a Reading: status code -> quality, both timestamps kept, ``event_time`` picks ts."""
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    raw = dv.Value.Value if dv.Value is not None else None
    flags: tuple[str, ...] = ()
    value: float | None
    if raw is None or isinstance(raw, bool):
        value = None if raw is None else float(raw)
    elif isinstance(raw, int | float):
        value = float(raw)
    else:
        value, flags = None, ("wrong_type",)
    source_ts, server_ts = dv.SourceTimestamp, dv.ServerTimestamp
    first, second = (source_ts, server_ts) if event_time == "source" else (server_ts, source_ts)
    ts: datetime | None = first or second
    if ts is None:
        ts, flags = utcnow(), (*flags, "no_timestamp")
    return Reading(
        machine_id=binding.machine_id,
        sensor=binding.sensor,
        ts=ts,
        value=value,
        unit=binding.unit,
        quality=Quality.from_status_code(code),
        status_code=code,
        server_ts=server_ts,
        source=source,
        flags=flags,
    )


class OpcUaCollector:
    """Collects one configured OPC UA source; see the module docstring."""

    def __init__(
        self,
        source: OpcUaSource,
        config: VigilConfig,
    ) -> None:
        self.source = source
        self.config = config
        self.queue_maxsize = source.queue_maxsize
        self.overflow = source.overflow
        self.counters: Counter[str] = Counter()
        """``readings``, ``gaps``, ``connects``, ``connect_failed``, ``lost:<reason>``, ``duplicate``,
        ``wrong_type``, ``dropped_overflow``, ``subscribe_failed`` and the resolver's rejection reasons."""
        self.bindings: list[Binding] = []
        self._queue: asyncio.Queue[Event | BaseException | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_ts: dict[tuple[str, str], datetime] = {}
        self._machine_last: dict[str, datetime] = {}
        self._lost: dict[str, tuple[datetime, str]] = {}
        self._connected = asyncio.Event()

    # ------------------------------------------------------------------ context manager / iterator
    async def __aenter__(self) -> OpcUaCollector:
        self._queue = asyncio.Queue(maxsize=self.queue_maxsize)
        self._task = asyncio.create_task(self._supervise(), name=f"opcua:{self.source.name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Python 3.11's wait_for (used inside asyncua) can swallow a cancellation that races with a result,
        # so cancel until the supervisor has really stopped.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def __aiter__(self) -> OpcUaCollector:
        return self

    async def __anext__(self) -> Event:
        if self._queue is None:
            raise OpcUaError("use the collector inside `async with`")
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
        """Wait until the first subscription or poll is running (tests, start-up checks)."""
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    # ------------------------------------------------------------------ supervision
    async def _supervise(self) -> None:
        backoff = Backoff(self.source.reconnect_initial_s, self.source.reconnect_max_s)
        try:
            while True:
                reason = await self._one_connection(backoff)
                if reason is not None:
                    self.counters[f"lost:{reason}"] += 1
                    self._mark_lost(reason)
                delay = backoff.next()
                log.info("opcua %s: reconnecting in %.1f s (attempt %d)", self.source.name, delay, backoff.attempt)
                await asyncio.sleep(delay)
        except OpcUaSecurityError as exc:
            log.error("opcua %s: %s", self.source.name, exc)
            await self._put_control(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must surface in the consumer, not die silently in a task
            log.exception("opcua %s: collector failed", self.source.name)
            await self._put_control(exc)

    async def _one_connection(self, backoff: Backoff) -> str | None:
        """Connect, resolve, collect until the connection is lost; the loss reason (None: never connected)."""
        client = Client(self.source.endpoint, timeout=self.source.timeout_s)
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        # asyncua's own stale-subscription watchdog re-creates a silent subscription in place, dropping what
        # arrives meanwhile without a trace; ours reconnects with a fresh client and marks the gap instead.
        client._stale_check_margin = math.inf
        try:
            try:
                await apply_security(client, self.source.endpoint, self.source.security, self.source.timeout_s)
                await asyncio.wait_for(client.connect(), self.source.timeout_s * 2)
            except UaStatusCodeError as exc:
                if exc.code in _SECURITY_CODES:
                    raise OpcUaSecurityError(
                        f"{self.source.endpoint} refused the session: {ua.StatusCode(exc.code).name}"
                    ) from exc
                raise
            except _RETRYABLE as exc:
                if isinstance(exc, OpcUaSecurityError):
                    raise
                self.counters["connect_failed"] += 1
                log.warning("opcua %s: cannot connect to %s: %r", self.source.name, self.source.endpoint, exc)
                return None
            self.counters["connects"] += 1
            log.info("opcua %s: connected to %s (%s)", self.source.name, self.source.endpoint, self.source.mode)
            try:
                self.bindings = await Resolver(self.source, self.config, self.counters).resolve(client)
                if not self.bindings:
                    log.warning("opcua %s: no configured variable found on the server", self.source.name)
                backoff.reset()
                if self.source.mode == "subscribe":
                    await self._subscribe(client, lost)
                else:
                    await self._poll(client, lost)
            except _Lost as exc:
                log.warning("opcua %s: %s", self.source.name, exc.reason.replace("_", " "))
                return exc.reason
            except _RETRYABLE as exc:
                if isinstance(exc, OpcUaSecurityError):
                    raise
                log.warning("opcua %s: connection lost: %r", self.source.name, exc)
                return "connection_lost"
            return "connection_lost"
        finally:
            self._connected.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)

    # ------------------------------------------------------------------ subscription and polling
    async def _subscribe(self, client: Any, lost: asyncio.Event) -> None:
        source = self.source
        publishing_ms = source.publishing_interval_ms
        keepalive = max(1, int(source.watchdog_s * 1000 / publishing_ms / 3))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=publishing_ms,
            RequestedLifetimeCount=max(3 * keepalive, 300),
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        sub = await client.create_subscription(
            params, handler=None, queue_maxsize=max(self.queue_maxsize, 1000), overflow=OverflowPolicy.DROP_OLDEST
        )
        handles: dict[int, Binding] = {}
        by_node = {b.nodeid: b for b in self.bindings}
        requests = []
        for i, binding in enumerate(self.bindings):
            handles[1000 + i] = binding
            requests.append(self._monitored_item(1000 + i, binding))
        if requests:
            for binding, result in zip(self.bindings, await sub.create_monitored_items(requests), strict=True):
                if isinstance(result, ua.StatusCode):
                    self.counters["subscribe_failed"] += 1
                    log.warning(
                        "opcua %s: cannot monitor %s/%s: %s", source.name, binding.machine_id, binding.sensor, result
                    )
        self._connected.set()
        started = time.monotonic()
        while True:
            if lost.is_set():
                raise _Lost("connection_lost")
            event = await sub.next_event(timeout=min(1.0, source.watchdog_s))
            if event is None:
                last = sub.last_publish_at if sub.last_publish_at is not None else started
                if time.monotonic() - last > source.watchdog_s:
                    raise _Lost("subscription_silent")
                continue
            if isinstance(event, DataChangeEvent):
                bound = handles.get(event.data.monitored_item.ClientHandle) or by_node.get(event.node.nodeid)
                if bound is not None:
                    await self._emit(to_reading(bound, event.data.monitored_item.Value, source.name, source.event_time))
            elif isinstance(event, StatusChangeEvent) and not event.notification.Status.is_good():
                raise _Lost("subscription_status")

    def _monitored_item(self, handle: int, binding: Binding) -> ua.MonitoredItemCreateRequest:
        params = ua.MonitoringParameters()
        params.ClientHandle = handle
        params.SamplingInterval = binding.sampling_interval_ms
        params.QueueSize = self.source.queue_size
        params.DiscardOldest = self.source.discard_oldest
        if binding.deadband is not None:
            kind, value = binding.deadband
            params.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValueTimestamp,
                DeadbandType=ua.DeadbandType.Absolute if kind == "absolute" else ua.DeadbandType.Percent,
                DeadbandValue=value,
            )
        item = ua.MonitoredItemCreateRequest()
        item.ItemToMonitor = ua.ReadValueId(NodeId=binding.nodeid, AttributeId=AttributeIds.Value)
        item.MonitoringMode = ua.MonitoringMode.Reporting
        item.RequestedParameters = params
        return item

    async def _poll(self, client: Any, lost: asyncio.Event) -> None:
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=b.nodeid, AttributeId=AttributeIds.Value) for b in self.bindings]
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.MaxAge = 0
        self._connected.set()
        interval = self.source.poll_interval_ms / 1000.0
        while True:
            if lost.is_set():
                raise _Lost("connection_lost")
            started = time.monotonic()
            if params.NodesToRead:
                values = await asyncio.wait_for(client.uaclient.read(params), self.source.timeout_s)
                for binding, dv in zip(self.bindings, values, strict=True):
                    await self._emit(to_reading(binding, dv, self.source.name, self.source.event_time))
            await asyncio.sleep(max(interval - (time.monotonic() - started), 0.0))

    # ------------------------------------------------------------------ output
    async def _emit(self, reading: Reading) -> None:
        key = (reading.machine_id, reading.sensor)
        if self._last_ts.get(key) == reading.ts:
            self.counters["duplicate"] += 1
            return
        if "wrong_type" in reading.flags:
            self.counters["wrong_type"] += 1
        if reading.value is not None and not math.isfinite(reading.value):
            self.counters["not_finite"] += 1
        self._last_ts[key] = reading.ts
        lost = self._lost.pop(reading.machine_id, None)
        if lost is not None and reading.ts > lost[0]:
            self.counters["gaps"] += 1
            await self._put(
                Gap(
                    machine_id=reading.machine_id,
                    start=lost[0],
                    end=reading.ts,
                    reason=lost[1],
                    source=self.source.name,
                )
            )
        previous = self._machine_last.get(reading.machine_id)
        if previous is None or reading.ts > previous:
            self._machine_last[reading.machine_id] = reading.ts
        self.counters["readings"] += 1
        await self._put(reading)

    def _mark_lost(self, reason: str) -> None:
        for machine, last in self._machine_last.items():
            self._lost.setdefault(machine, (last, reason))

    async def _put(self, event: Event) -> None:
        assert self._queue is not None
        if self.overflow == "block":
            await self._queue.put(event)
            return
        while self._queue.full():
            self._queue.get_nowait()
            self.counters["dropped_overflow"] += 1
        self._queue.put_nowait(event)

    async def _put_control(self, item: BaseException | None) -> None:
        assert self._queue is not None
        while self._queue.full():  # an error must reach the consumer even when data is backed up
            self._queue.get_nowait()
            self.counters["dropped_overflow"] += 1
        self._queue.put_nowait(item)
