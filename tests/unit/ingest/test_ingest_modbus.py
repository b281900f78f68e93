"""Modbus pieces that need no device: decoding by type and order, request planning, the register map's checks."""

from __future__ import annotations

import asyncio
import struct
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ingest.modbus import MAX_REGISTERS, ModbusCollector, Point, decode, plan_reads
from vigil.config import ModbusRegister, load_config
from vigil.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("type_", "fmt", "value"),
    [
        ("int16", ">h", -1234),
        ("uint16", ">H", 60000),
        ("int32", ">i", -70000),
        ("uint32", ">I", 4_000_000_000),
        ("float32", ">f", -12.5),
        ("float64", ">d", 1e300),
    ],
)
@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("byte_order", ["big", "little"])
def test_decode_every_type_and_order(type_: str, fmt: str, value: float, word_order: Any, byte_order: Any) -> None:
    data = struct.pack(fmt, value)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    assert decode(words, type_, word_order, byte_order) == value


def _point(sensor: str, address: int, type_: Any = "uint16", table: Any = "holding") -> Point:
    reg = ModbusRegister(machine="M", sensor=sensor, address=address, type=type_, table=table)
    return Point("M", sensor, reg, None, "big", "big")


def test_plan_respects_the_request_limit_and_tables() -> None:
    points = [_point(f"s{i}", i * 2, "float32") for i in range(100)]  # 200 registers, contiguous
    points.append(_point("c", 0, "bool", "coil"))
    blocks = plan_reads(points, max_gap=8)
    assert [b.count for b in blocks if b.table == "holding"] == [MAX_REGISTERS - 1, 200 - MAX_REGISTERS + 1]
    assert sum(len(b.points) for b in blocks) == 101
    assert [(b.table, b.start, b.count) for b in blocks if b.table == "coil"] == [("coil", 0, 1)]
    far = plan_reads([_point("a", 0), _point("b", 100)], max_gap=8)
    assert [(b.start, b.count) for b in far] == [(0, 1), (100, 1)]


def _plant(registers: list[dict[str, Any]]) -> dict[str, Any]:
    data = tomllib.loads((ROOT / "config" / "plant.example.toml").read_text())
    data["sources"] = {"modbus": [{"name": "plc", "host": "h", "groups": [{"registers": registers}]}]}
    return data


def test_register_map_problems_name_the_key() -> None:
    cases = [
        (
            {"machine": "PMP-001", "sensor": "flow", "address": 0, "table": "coil", "type": "float32"},
            r"registers\[0\]: .*type must be bool",
        ),
        (
            {"machine": "PMP-001", "sensor": "flow", "address": 65534, "type": "float64"},
            r"registers\[0\]: .*runs past register 65535",
        ),
        ({"machine": "PMP-999", "sensor": "flow", "address": 0}, r"registers\[0\]\.machine: unknown machine 'PMP-999'"),
        (
            {"machine": "PMP-001", "sensor": "colour", "address": 0},
            r"registers\[0\]\.sensor: machine 'PMP-001' has no sensor",
        ),
        ({"machine": "PMP-001", "sensor": "flow", "address": 0, "type": "float16"}, r"registers\[0\]\.type"),
    ]
    for register, message in cases:
        with pytest.raises(ConfigError, match=r"sources\.modbus\[0\]\.groups\[0\]\." + message):
            load_config(data=_plant([register]), environ={})
    ok = load_config(
        data=_plant([{"machine": "PMP-001", "sensor": "flow", "address": 7, "type": "float32"}]), environ={}
    )
    assert ok.sources.modbus[0].groups[0].registers[0].word_order is None  # the source's order applies


class _SwallowingClient:
    """A Modbus client that answers its first read at once and then swallows the cancellation of a read, as
    Python 3.11's ``asyncio.wait_for`` (which pymodbus awaits every answer through) does when the cancellation
    lands as the answer arrives: the read returns its answer instead of raising."""

    reads = 0
    swallowed = 0
    waiting: asyncio.Event
    """Set once a read waits for its answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def connect(self) -> bool:
        return True

    def close(self) -> None:
        pass

    async def read_holding_registers(self, address: int, count: int, device_id: int) -> Any:
        _SwallowingClient.reads += 1
        if _SwallowingClient.reads > 1:
            _SwallowingClient.waiting.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if _SwallowingClient.swallowed:
                    raise
                _SwallowingClient.swallowed += 1
        return SimpleNamespace(registers=[0] * count, isError=lambda: False)

    read_input_registers = read_coils = read_discrete_inputs = read_holding_registers


def test_the_collector_stops_when_a_read_swallows_its_cancellation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop used to hang: the poll task ran on after its swallowed cancellation and blocked for ever on the full
    queue that nobody read any more (``bench/bench_modbus.py --smoke`` hung in about half of its runs)."""
    import pymodbus.client

    monkeypatch.setattr(pymodbus.client, "AsyncModbusTcpClient", _SwallowingClient)
    config = load_config(
        data=_plant([{"machine": "PMP-001", "sensor": "flow", "address": 2 * i, "type": "float32"} for i in range(4)]),
        environ={},
    )

    async def collect() -> None:
        # The first answer's 4 values fill the queue; the stop comes while the second read waits for its answer.
        async with ModbusCollector(config.sources.modbus[0], config, queue_maxsize=4) as collector:
            await collector.wait_connected(5)
            await _SwallowingClient.waiting.wait()

    async def stopped() -> bool:
        _SwallowingClient.waiting = asyncio.Event()
        task = asyncio.create_task(collect())
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:  # hung: free the run (the collector's own stop swallows a cancellation, so not wait_for)
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        return bool(done)

    assert asyncio.run(stopped()), "the collector did not stop"
    assert _SwallowingClient.swallowed == 1, "the cancellation did land in the read, and was swallowed"
