"""The Modbus TCP collector: an async context manager and async iterator of :class:`Reading` and :class:`Gap`.

::

    async with ModbusCollector(source, config) as collector:
        async for event in collector:      # Reading | Gap
            ...

A ``[[sources.modbus]]`` is one device (or gateway) and its register map, in polling groups
(:class:`~vigil.config.ModbusSource`). Each group is polled every ``interval_ms``; its registers of one table
that lie close together (``max_gap_registers``) are read in one request (at most 125 registers or 2000 bits).
Values are decoded by type (``int16/uint16/int32/uint32/float32/float64``, ``bool`` for coils and discrete
inputs) with the configured word and byte order, then ``raw * scale + offset``; the event time is the
collector's clock when the answer arrived (Modbus carries no timestamps).

- An **exception response** (illegal address, device failure, gateway) is a *bad read*: every value of that
  request is published as ``value = None``, quality Bad, flag ``modbus_exception`` and an OPC UA status code of
  the same meaning (:data:`EXCEPTION_STATUS`), and logged once per request and code, naming the registers.
- A **timeout or a lost connection** ends the connection: a fresh client reconnects after waits that grow with
  the outage (:class:`~ingest.backoff.Backoff`), and each machine's first values afterwards are preceded
  by a :class:`Gap` (reason ``connection_lost``) from its last answer to the first one after the reconnect, on
  the collector's clock.

The output queue is bounded (``queue_maxsize``): a slow consumer slows the polling (back-pressure), nothing is
dropped.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ingest.backoff import Backoff
from ingest.collector_core import QueuedCollector
from vigil.config import ModbusGroup, ModbusRegister, ModbusSource, VigilConfig
from vigil.config.sources import MODBUS_WORDS
from vigil.contracts import Gap, Quality, Reading, utcnow

log = logging.getLogger(__name__)

Event = Reading | Gap
Order = Literal["big", "little"]

MAX_REGISTERS = 125
"""Registers one read request may ask for (Modbus application protocol, function codes 3 and 4)."""
MAX_BITS = 2000
"""Coils or discrete inputs one read request may ask for (function codes 1 and 2)."""

EXCEPTION_STATUS = {
    1: 0x803D0000,  # illegal function -> BadNotSupported
    2: 0x803A0000,  # illegal data address -> BadNotReadable
    3: 0x803C0000,  # illegal data value -> BadOutOfRange
    4: 0x808B0000,  # server device failure -> BadDeviceFailure
    10: 0x80310000,  # gateway path unavailable -> BadNoCommunication
    11: 0x80310000,  # gateway target failed to respond -> BadNoCommunication
}
"""Modbus exception code -> the OPC UA StatusCode of the same meaning (``Reading.status_code``)."""
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


def decode(registers: list[int], type_: str, word_order: Order = "big", byte_order: Order = "big") -> float:
    """16-bit registers as one number: ``word_order`` orders the registers, ``byte_order`` the bytes in each.

    >>> decode([0x4148, 0x0000], "float32")            # 12.5, most significant word first (Modbus' usual)
    12.5
    >>> decode([0x0000, 0x4148], "float32", word_order="little")
    12.5
    >>> decode([0x4841, 0x0000], "float32", byte_order="little")
    12.5
    >>> decode([0xFFFF], "int16"), decode([0xFFFF], "uint16"), decode([0xFFFF, 0xFFFE], "int32")
    (-1.0, 65535.0, -2.0)
    >>> decode([0x4009, 0x21FB, 0x5444, 0x2D18], "float64")
    3.141592653589793
    """
    words = list(registers) if word_order == "big" else list(reversed(registers))
    data = b"".join(w.to_bytes(2, "big" if byte_order == "big" else "little") for w in words)
    return float(struct.unpack(">" + _FORMATS[type_], data)[0])


@dataclass(frozen=True)
class Point:
    """One configured value, resolved: where it goes and how to decode it."""

    machine_id: str
    sensor: str
    register: ModbusRegister
    unit: str | None
    word_order: Order
    byte_order: Order

    @property
    def size(self) -> int:
        return MODBUS_WORDS[self.register.type]

    def value(self, raw: list[int] | list[bool]) -> float:
        reg = self.register
        if reg.type == "bool":
            number = float(bool(raw[0]))
        else:
            number = decode([int(w) for w in raw], reg.type, self.word_order, self.byte_order)
        return number * reg.scale + reg.offset


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``start``, and the points in it."""

    table: str
    start: int
    count: int
    points: tuple[Point, ...]

    def describe(self) -> str:
        names = ", ".join(f"{p.machine_id}/{p.sensor}" for p in self.points)
        return f"{self.table} {self.start}..{self.start + self.count - 1} ({names})"


def plan_reads(points: list[Point], max_gap: int) -> list[Block]:
    """Group points into as few read requests as the protocol's limits and ``max_gap`` allow.

    >>> from vigil.config import ModbusRegister as R
    >>> pts = [Point("M", s, R(machine="M", sensor=s, address=a, type=t), None, "big", "big")
    ...        for s, a, t in [("a", 0, "float32"), ("b", 2, "uint16"), ("c", 20, "int16"), ("d", 4, "float64")]]
    >>> [(b.table, b.start, b.count, [p.sensor for p in b.points]) for b in plan_reads(pts, max_gap=8)]
    [('holding', 0, 8, ['a', 'b', 'd']), ('holding', 20, 1, ['c'])]
    """
    blocks: list[Block] = []
    by_table: dict[str, list[Point]] = {}
    for p in points:
        by_table.setdefault(p.register.table, []).append(p)
    for table, pts in by_table.items():
        limit = MAX_BITS if table in ("coil", "discrete") else MAX_REGISTERS
        pts.sort(key=lambda p: (p.register.address, p.sensor))
        current: list[Point] = []
        start = end = 0
        for p in pts:
            a, b = p.register.address, p.register.address + p.size
            if current and a - end <= max_gap and max(end, b) - start <= limit:
                current.append(p)
                end = max(end, b)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            current, start, end = [p], a, b
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


class _Lost(Exception):
    pass


class ModbusCollector(QueuedCollector):
    """Collects one configured Modbus TCP source; see the module docstring.

    ``counters``: ``readings``, ``bad_reads``, ``requests``, ``gaps``, ``connects``, ``connect_failed``, ``lost``,
    ``overrun`` (a poll took longer than its interval).
    """

    kind = "modbus"
    source: ModbusSource

    def __init__(self, source: ModbusSource, config: VigilConfig, queue_maxsize: int = 10_000) -> None:
        super().__init__(source, config, queue_maxsize, "block")
        self._last_answer: dict[str, datetime] = {}
        self._lost: dict[str, datetime] = {}
        self._logged: set[tuple[str, int]] = set()
        self._plans = [(g, plan_reads(self._points(g), source.max_gap_registers)) for g in source.groups]

    def _points(self, group: ModbusGroup) -> list[Point]:
        machines = self.config.machines_by_id
        out = []
        for reg in group.registers:
            unit = reg.unit if reg.unit is not None else machines[reg.machine].sensors[reg.sensor].unit
            word = reg.word_order or self.source.word_order
            byte = reg.byte_order or self.source.byte_order
            out.append(Point(reg.machine, reg.sensor, reg, unit, word, byte))
        return out

    # ------------------------------------------------------------------ one connection
    async def _one_connection(self, backoff: Backoff) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        src = self.source
        # reconnect_delay=0: pymodbus does not reconnect behind our back; a fresh client per connection does.
        client = AsyncModbusTcpClient(
            src.host, port=src.port, timeout=src.timeout_s, retries=src.retries, reconnect_delay=0
        )
        try:
            if not await client.connect():
                self.counters["connect_failed"] += 1
                log.warning("modbus %s: cannot connect to %s:%d", src.name, src.host, src.port)
                return
            self.counters["connects"] += 1
            self.ever_connected = True
            log.info("modbus %s: connected to %s:%d", src.name, src.host, src.port)
            backoff.reset()
            self._connected.set()
            tasks = [asyncio.create_task(self._poll_group(client, g, blocks)) for g, blocks in self._plans]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for t in done:
                exc = t.exception()
                if exc is not None and not isinstance(exc, _Lost):
                    raise exc
        finally:
            self._connected.clear()
            client.close()

    def _mark_lost(self) -> None:
        for machine, last in self._last_answer.items():
            self._lost.setdefault(machine, last)

    # ------------------------------------------------------------------ polling
    async def _poll_group(self, client: Any, group: ModbusGroup, blocks: list[Block]) -> None:
        interval = group.interval_ms / 1000.0
        unit_id = group.unit_id if group.unit_id is not None else self.source.unit_id
        next_at = time.monotonic()
        while True:
            for block in blocks:
                await self._read_block(client, block, unit_id)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:
                self.counters["overrun"] += 1
                next_at = time.monotonic()
                delay = 0.0
            await asyncio.sleep(delay)

    async def _read_block(self, client: Any, block: Block, unit_id: int) -> None:
        from pymodbus.exceptions import ModbusException

        read = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[block.table]
        self.counters["requests"] += 1
        try:
            response = await read(block.start, count=block.count, device_id=unit_id)
        except (ModbusException, OSError, TimeoutError) as exc:
            self.counters["lost"] += 1
            log.warning("modbus %s: reading %s failed: %r; reconnecting", self.source.name, block.describe(), exc)
            self._mark_lost()
            raise _Lost from exc
        now = utcnow()
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            key = (block.describe(), code)
            if key not in self._logged:
                self._logged.add(key)
                log.warning(
                    "modbus %s: unit %d answered %s with exception %d (%s); published as bad values",
                    self.source.name,
                    unit_id,
                    block.describe(),
                    code,
                    EXCEPTION_NAMES.get(code, "unknown"),
                )
            for p in block.points:
                self.counters["bad_reads"] += 1
                self._last_answer[p.machine_id] = now
                await self._emit(
                    Reading(
                        machine_id=p.machine_id,
                        sensor=p.sensor,
                        ts=now,
                        value=None,
                        unit=p.unit,
                        quality=Quality.BAD,
                        status_code=EXCEPTION_STATUS.get(code, 0x80000000),
                        source=self.source.name,
                        flags=("modbus_exception",),
                    )
                )
            return
        raw: list[int] | list[bool] = response.bits if block.table in ("coil", "discrete") else response.registers
        for p in block.points:
            offset = p.register.address - block.start
            value = p.value(raw[offset : offset + p.size])
            self._last_answer[p.machine_id] = now
            await self._emit(
                Reading(
                    machine_id=p.machine_id,
                    sensor=p.sensor,
                    ts=now,
                    value=value,
                    unit=p.unit,
                    source=self.source.name,
                )
            )

    async def _emit(self, reading: Reading) -> None:
        lost = self._lost.pop(reading.machine_id, None)
        if lost is not None:
            self.counters["gaps"] += 1
            gap = Gap(
                machine_id=reading.machine_id,
                start=lost,
                end=max(reading.ts, lost),
                reason="connection_lost",
                source=self.source.name,
            )
            await self._put(gap)
        self.counters["readings"] += 1
        await self._put(reading)


def main(argv: list[str]) -> int:
    """``vigil collect modbus``: poll the configured Modbus TCP devices until interrupted (or ``--duration``)."""
    from ingest.collector_cli import CollectorRun, serve

    def make(run: CollectorRun, source: Any) -> ModbusCollector:
        return ModbusCollector(source, run.config)

    return serve("modbus", argv, main.__doc__, make, quiet=("pymodbus",))
