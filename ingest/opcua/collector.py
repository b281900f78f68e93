"""The OPC UA collector: an async context manager and async iterator of :class:`Reading` and :class:`Gap`.

::

    async with OpcUaCollector(source, config) as collector:
        async for event in collector:      # Reading | Gap
            ...

Behind the iterator a supervisor task owns the connection:

- a **new asyncua client per connection attempt** (no state of a broken session is reused), configured by
  :func:`~ingest.opcua.security.apply_security`; a refused secure connection raises
  :class:`~ingest.exceptions.OpcUaSecurityError` out of the iterator and is not retried;
- failed attempts are retried after waits that grow with the **length of the outage** (10 %, jittered, within
  ``reconnect_initial_s`` .. ``reconnect_max_s``; :mod:`ingest.backoff`): the first attempts come within a
  second, a server back after 20 s is found within ~2 s;
- on every connection the nodes, browse paths and patterns are resolved again and the **subscription is
  re-created** (data change, per-node sampling interval, ``queue_size``, ``discard_oldest``, absolute/percent
  deadband via ``DataChangeFilter``), or the variables are **polled** (``mode = "poll"``);
- a dead connection is detected within ``watchdog_s``: asyncua probes the server every ``watchdog_s / 2``
  (fires the connection-lost callback), and a subscription without any publish response (data or keep-alive)
  for ``watchdog_s`` is lost too; either ends the connection;
- on a reconnect, what was missed is **backfilled**: for every node whose AccessLevel allows HistoryRead the raw
  history from its last value to now is read and published in order, flagged ``backfilled`` (before any new
  live value, which is then skipped where the history already had it); for every other node a :class:`Gap`
  with reason ``connection_lost``, from the last value received to the reconnect on the **collector's clock**
  (a server's clock may be wrong or replaying), is published before its first new value; a server that restarted
  meanwhile (ServerStatus.StartTime changed) has no history before its start: a Gap up to it, then the backfill;
- a node that cannot be monitored or read is logged with its NodeId and status code name (``BadNodeIdUnknown``)
  and left out, not polled as one Bad reading after another.

The output queue is bounded (``queue_maxsize``) with an explicit ``overflow`` policy: ``block`` (back-pressure
into asyncua's own bounded subscription queue, 100,000 events, whose drops of the oldest are counted as
``dropped_overflow`` too) or ``drop_oldest`` (counted as ``dropped_overflow``).
Values that are not numbers are counted (``wrong_type``) and delivered as ``None`` with the flag; repeated
samples (same source timestamp, e.g. after a re-subscribe or an unchanged poll) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from ingest.backoff import Backoff
from ingest.collector_core import QueuedCollector
from ingest.exceptions import OpcUaError, OpcUaSecurityError
from ingest.opcua.mapping import Binding, Resolver, status_name
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
_UNREADABLE = {
    getattr(StatusCodes, name)
    for name in (
        "BadNodeIdUnknown",
        "BadNodeIdInvalid",
        "BadAttributeIdInvalid",
        "BadNotReadable",
        "BadUserAccessDenied",
        "BadNotSupported",
        "BadIndexRangeInvalid",
    )
}
"""Read results that say the address is wrong, not that the value is bad: the node is named and left out."""
_HISTORY_READ = 1 << 2
"""The AccessLevel bit of a node whose history can be read."""


class _Lost(Exception):
    """The connection ended; ``reason`` (how it was noticed) is counted as ``lost:<reason>``."""

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


class OpcUaCollector(QueuedCollector):
    """Collects one configured OPC UA source; see the module docstring.

    ``counters``: ``readings``, ``gaps``, ``backfilled``, ``connects``, ``connect_failed``, ``lost:<reason>``,
    ``duplicate``, ``wrong_type``, ``dropped_overflow``, ``subscribe_failed``, ``unreadable``, ``pattern_empty``
    and the resolver's rejection reasons.
    """

    kind = "opcua"
    fatal = (OpcUaSecurityError,)
    source: OpcUaSource

    def __init__(self, source: OpcUaSource, config: VigilConfig) -> None:
        super().__init__(source, config, source.queue_maxsize, source.overflow)
        self.bindings: list[Binding] = []
        self._last_ts: dict[tuple[str, str], datetime] = {}
        self._received: dict[tuple[str, str], datetime] = {}
        """Collector clock when each (machine, sensor) last delivered a value."""
        self._lost_at: datetime | None = None
        self._backfilled: dict[tuple[str, str], datetime] = {}
        self._server_started: datetime | None = None

    # ------------------------------------------------------------------ one connection
    async def _one_connection(self, backoff: Backoff) -> str | None:
        """Connect, resolve, collect until the connection is lost; how it was lost (None: never connected)."""
        # asyncua's supervisor probes the server every watchdog_intervall, waiting as long for the answer.
        client = Client(
            self.source.endpoint, timeout=self.source.timeout_s, watchdog_intervall=max(self.source.watchdog_s / 2, 0.2)
        )
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
            self.ever_connected = True
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
                reason = exc.reason
                log.warning("opcua %s: %s", self.source.name, reason.replace("_", " "))
            except _RETRYABLE as exc:
                if isinstance(exc, OpcUaSecurityError):
                    raise
                log.warning("opcua %s: connection lost: %r", self.source.name, exc)
                reason = "connection_lost"
            else:
                reason = "connection_lost"
            # Counted and timed when noticed, not after the goodbye below (which a dead peer never answers).
            self.counters[f"lost:{reason}"] += 1
            self._lost_at = self._lost_at or utcnow()
            self._connected.clear()
            with contextlib.suppress(Exception):
                client.disconnect_socket()
            return reason
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
        # Live values wait in asyncua's queue while a backfill runs; sized so that a long one loses none.
        sub = await client.create_subscription(
            params, handler=None, queue_maxsize=max(self.queue_maxsize, 100_000), overflow=OverflowPolicy.DROP_OLDEST
        )
        self._count_drops(sub)
        handles: dict[int, Binding] = {}
        by_node = {b.nodeid: b for b in self.bindings}
        requests = []
        for i, binding in enumerate(self.bindings):
            handles[1000 + i] = binding
            requests.append(self._monitored_item(1000 + i, binding))
        if requests:
            failed = set()
            for binding, result in zip(self.bindings, await sub.create_monitored_items(requests), strict=True):
                if isinstance(result, ua.StatusCode):
                    self.counters["subscribe_failed"] += 1
                    failed.add(binding)
                    log.warning(
                        "opcua %s: cannot monitor %s/%s (node %s): %s",
                        source.name,
                        binding.machine_id,
                        binding.sensor,
                        binding.address or binding.nodeid.to_string(),
                        result.name,
                    )
            self.bindings = [b for b in self.bindings if b not in failed]
        await self._recover(client)
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
                # asyncua reports a lost transport as BadShutdown after firing the connection-lost callback.
                raise _Lost("connection_lost" if lost.is_set() else f"status_{event.notification.Status.name}")

    def _count_drops(self, sub: Any) -> None:
        """asyncua drops the oldest event of a full subscription queue without a trace (a consumer slower than
        the server for long): count each as ``dropped_overflow`` and say so once per connection."""
        drop = getattr(sub, "_handle_overflow", None)
        if drop is None:  # another asyncua: nothing to count
            return
        warned = False

        def counted(event: Any) -> None:
            nonlocal warned
            self.counters["dropped_overflow"] += 1
            if not warned:
                warned = True
                log.warning(
                    "opcua %s: values arrive faster than they are published; asyncua's subscription queue is "
                    "full and drops the oldest (counted as dropped_overflow)",
                    self.source.name,
                )
            drop(event)

        sub._handle_overflow = counted

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

    def _read_params(self) -> ua.ReadParameters:
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=b.nodeid, AttributeId=AttributeIds.Value) for b in self.bindings]
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.MaxAge = 0
        return params

    async def _poll(self, client: Any, lost: asyncio.Event) -> None:
        timeout = min(self.source.timeout_s, self.source.watchdog_s)
        first: list[ua.DataValue] = []
        if self.bindings:
            first = await asyncio.wait_for(client.uaclient.read(self._read_params()), timeout)
            readable = []
            for binding, dv in zip(self.bindings, first, strict=True):
                code = dv.StatusCode.value if dv.StatusCode is not None else 0
                if code in _UNREADABLE:
                    self.counters["unreadable"] += 1
                    log.warning(
                        "opcua %s: cannot read %s/%s (node %s): %s; not polled",
                        self.source.name,
                        binding.machine_id,
                        binding.sensor,
                        binding.address or binding.nodeid.to_string(),
                        ua.StatusCode(ua.UInt32(code)).name,
                    )
                else:
                    readable.append(binding)
            self.bindings = readable
        params = self._read_params()
        await self._recover(client)
        self._connected.set()
        interval = self.source.poll_interval_ms / 1000.0
        while True:
            if lost.is_set():
                raise _Lost("connection_lost")
            started = time.monotonic()
            if params.NodesToRead:
                values = await asyncio.wait_for(client.uaclient.read(params), timeout)
                for binding, dv in zip(self.bindings, values, strict=True):
                    await self._emit(to_reading(binding, dv, self.source.name, self.source.event_time))
            await asyncio.sleep(max(interval - (time.monotonic() - started), 0.0))

    # ------------------------------------------------------------------ after a reconnect: backfill or Gap
    async def _recover(self, client: Any) -> None:
        """Backfill what each node missed while the connection was down (HistoryRead), else publish its Gap.

        A server that restarted meanwhile (a newer ServerStatus.StartTime) has no history from before its start:
        its historized nodes get a Gap up to that start, then the backfill from it.
        """
        restarted_at = await self._server_restart(client)
        lost_at, self._lost_at = self._lost_at, None
        self._backfilled.clear()
        if lost_at is None:
            return
        now = utcnow()
        historized = await self._historized(client) if self.source.backfill else set()
        known = [b for b in self.bindings if (b.machine_id, b.sensor) in self._last_ts]  # others: nothing known
        with_history = [b for b in known if b.nodeid in historized]
        if restarted_at is not None:
            await self._gaps(
                [b for b in with_history if self._received[(b.machine_id, b.sensor)] < restarted_at],
                lost_at,
                restarted_at,
            )
        missing = [b for b in known if b.nodeid not in historized]
        for binding in with_history:
            key = (binding.machine_id, binding.sensor)
            if not await self._backfill(client, binding, self._last_ts[key], now):
                missing.append(binding)
        await self._gaps(missing, lost_at, now)

    async def _gaps(self, bindings: list[Binding], lost_at: datetime, end: datetime) -> None:
        """A Gap (collector's clock) per machine whose every node is in ``bindings``, else per sensor."""
        by_machine: dict[str, list[Binding]] = {}
        for b in bindings:
            by_machine.setdefault(b.machine_id, []).append(b)
        for machine, group in by_machine.items():
            start = min(min(self._received[(b.machine_id, b.sensor)] for b in group), lost_at)
            whole = {b.sensor for b in group} >= {b.sensor for b in self.bindings if b.machine_id == machine}
            for sensor in [None] if whole else [b.sensor for b in group]:
                self.counters["gaps"] += 1
                await self._put(
                    Gap(
                        machine_id=machine,
                        sensor=sensor,
                        start=start,
                        end=max(end, start),
                        reason="connection_lost",
                        source=self.source.name,
                    )
                )

    async def _server_restart(self, client: Any) -> datetime | None:
        """The server's start time when it differs from the one of the previous connection (it restarted)."""
        try:
            started = await asyncio.wait_for(
                client.get_node(ua.NodeId(ua.Int32(ObjectIds.Server_ServerStatus_StartTime))).read_value(),
                self.source.timeout_s,
            )
        except (*_RETRYABLE, TimeoutError) as exc:
            log.info("opcua %s: cannot read the server's start time: %r", self.source.name, exc)
            return None
        if not isinstance(started, datetime):
            return None
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        previous, self._server_started = self._server_started, started
        return started if previous is not None and started != previous else None

    async def _historized(self, client: Any) -> set[ua.NodeId]:
        """The bound nodes whose AccessLevel allows HistoryRead."""
        if not self.bindings:
            return set()
        params = ua.ReadParameters()
        params.NodesToRead = [
            ua.ReadValueId(NodeId=b.nodeid, AttributeId=AttributeIds.AccessLevel) for b in self.bindings
        ]
        try:
            values = await asyncio.wait_for(client.uaclient.read(params), self.source.timeout_s)
        except (*_RETRYABLE, TimeoutError) as exc:
            log.warning("opcua %s: cannot read access levels for backfill: %r", self.source.name, exc)
            return set()
        out = set()
        for binding, dv in zip(self.bindings, values, strict=True):
            level = dv.Value.Value if dv.Value is not None else None
            if isinstance(level, int) and level & _HISTORY_READ:
                out.add(binding.nodeid)
        return out

    async def _backfill(self, client: Any, binding: Binding, since: datetime, until: datetime) -> bool:
        """Publish the node's history after ``since`` (its last value) up to ``until``; False if unreadable."""
        if until - since > timedelta(seconds=self.source.backfill_max_s):
            return False  # an outage longer than backfill_max_s stays a Gap
        node = client.get_node(binding.nodeid)
        try:
            history = await asyncio.wait_for(
                node.read_raw_history(since, until, numvalues=0, return_bounds=False), self.source.timeout_s * 3
            )
        except (*_RETRYABLE, TimeoutError) as exc:
            log.warning(
                "opcua %s: HistoryRead of %s/%s failed (%s); marking a gap",
                self.source.name,
                binding.machine_id,
                binding.sensor,
                status_name(exc),
            )
            return False
        key = (binding.machine_id, binding.sensor)
        readings = [to_reading(binding, dv, self.source.name, self.source.event_time) for dv in history]
        for reading in sorted((r for r in readings if r.ts > since), key=lambda r: r.ts):
            await self._emit(reading.model_copy(update={"flags": (*reading.flags, "backfilled")}))
            self.counters["backfilled"] += 1
            self._backfilled[key] = reading.ts
        return True

    # ------------------------------------------------------------------ output
    async def _emit(self, reading: Reading) -> None:
        key = (reading.machine_id, reading.sensor)
        if self._last_ts.get(key) == reading.ts:
            self.counters["duplicate"] += 1
            return
        backfilled = self._backfilled.get(key)
        if backfilled is not None and reading.ts <= backfilled and "backfilled" not in reading.flags:
            self.counters["duplicate"] += 1  # a live value the history already delivered
            return
        if "wrong_type" in reading.flags:
            self.counters["wrong_type"] += 1
        if reading.value is not None and not math.isfinite(reading.value):
            self.counters["not_finite"] += 1
        self._last_ts[key] = reading.ts
        self._received[key] = utcnow()
        self.counters["readings"] += 1
        await self._put(reading)
