"""Modbus TCP against a real pymodbus server on a free port: decoding, bad reads, reconnect, and Kafka end to end."""

from __future__ import annotations

import asyncio
import json
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from ingest.modbus import ModbusCollector
from tests.integration.ingest._modbus_server import ModbusServer, serving_in_thread
from vigil.config import KafkaSettings, Topics, VigilConfig, load_config
from vigil.contracts import Gap, Quality, Reading, ReadingBatch
from vigil.testing import consume

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DT = AsyncModbusTcpClient.DATATYPE

# (machine, sensor, register config, value written by the test, expected reading)
REGISTERS: list[tuple[dict[str, Any], float]] = [
    ({"machine": "PMP-001", "sensor": "flow", "address": 0, "type": "float32"}, 412.75),
    ({"machine": "PMP-001", "sensor": "pressure", "address": 2, "type": "float32", "word_order": "little"}, 6.5),
    ({"machine": "PMP-001", "sensor": "speed", "address": 4, "type": "uint16"}, 2950.0),
    ({"machine": "PMP-001", "sensor": "bearing_temp", "address": 5, "type": "int16", "scale": 0.1}, 61.2),
    (
        {"machine": "PMP-001", "sensor": "motor_current", "address": 6, "type": "float64", "byte_order": "little"},
        88.125,
    ),
    (
        {
            "machine": "PMP-001",
            "sensor": "vibration_rms",
            "address": 10,
            "type": "int32",
            "scale": 0.001,
            "offset": 1.0,
        },
        3.5,
    ),
]


async def _write(port: int) -> None:
    """Encode the test values with pymodbus' own converter (not the collector's decoder) and write them."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    for reg, value in REGISTERS:
        raw = (value - reg.get("offset", 0.0)) / reg.get("scale", 1.0)
        kind = {
            "float32": DT.FLOAT32,
            "float64": DT.FLOAT64,
            "uint16": DT.UINT16,
            "int16": DT.INT16,
            "int32": DT.INT32,
        }[reg["type"]]
        number: float = raw if kind in (DT.FLOAT32, DT.FLOAT64) else round(raw)
        words = AsyncModbusTcpClient.convert_to_registers(number, kind, word_order=reg.get("word_order", "big"))
        if reg.get("byte_order") == "little":
            words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
        await client.write_registers(reg["address"], words, device_id=1)
    await client.write_coil(3, True, device_id=1)
    client.close()


def _config(port: int, **source: Any) -> VigilConfig:
    data = tomllib.loads((ROOT / "config" / "plant.example.toml").read_text())
    data["sources"] = {
        "modbus": [
            {
                "name": "plc",
                "host": "127.0.0.1",
                "port": port,
                "timeout_s": 1.0,
                "reconnect_initial_s": 0.2,
                "groups": [
                    {"name": "fast", "interval_ms": 100, "registers": [reg for reg, _ in REGISTERS]},
                    {
                        "name": "slow",
                        "interval_ms": 250,
                        "registers": [
                            {"machine": "MTR-001", "sensor": "speed", "table": "input", "address": 42},
                            {"machine": "MTR-001", "sensor": "current", "table": "coil", "address": 3, "type": "bool"},
                            {
                                "machine": "MTR-001",
                                "sensor": "bearing_temp",
                                "table": "discrete",
                                "address": 1,
                                "type": "bool",
                            },
                            # Past the server's 200 holding registers: an illegal data address, every poll.
                            {"machine": "MTR-001", "sensor": "winding_temp", "address": 500, "type": "float32"},
                        ],
                    },
                ],
                **source,
            }
        ]
    }
    return load_config(data=data, environ={})


def test_register_map_is_decoded_and_bad_reads_are_flagged(free_port: int, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(free_port)

    async def scenario() -> tuple[list[Reading | Gap], dict[str, int]]:
        async with ModbusServer(free_port):
            await _write(free_port)
            events: list[Reading | Gap] = []
            async with ModbusCollector(config.sources.modbus[0], config) as collector:
                async for event in collector:
                    events.append(event)
                    if sum(1 for e in events if isinstance(e, Reading) and e.sensor == "winding_temp") >= 3:
                        break
                return events, dict(collector.counters)

    events, counters = asyncio.run(asyncio.wait_for(scenario(), 60))
    readings = [e for e in events if isinstance(e, Reading)]
    latest = {(r.machine_id, r.sensor): r for r in readings}
    for reg, value in REGISTERS:
        r = latest[(reg["machine"], reg["sensor"])]
        assert r.value == pytest.approx(value, rel=1e-6), (reg, r.value)
        assert r.quality is Quality.GOOD and r.source == "plc"
        assert r.unit == config.machines_by_id[reg["machine"]].sensors[reg["sensor"]].unit
    assert latest[("MTR-001", "speed")].value == 42.0  # input register 42 holds 42
    assert latest[("MTR-001", "current")].value == 1.0  # the coil the test set
    assert latest[("MTR-001", "bearing_temp")].value == 1.0  # discrete inputs are all on
    bad = [r for r in readings if r.sensor == "winding_temp"]
    assert all(
        r.value is None
        and r.quality is Quality.BAD
        and r.flags == ("modbus_exception",)
        and r.status_code == 0x803A0000
        for r in bad
    )
    assert counters["bad_reads"] == len(bad) and counters["connects"] == 1
    warnings = [m for m in caplog.messages if "exception 2 (illegal data address)" in m]
    assert len(warnings) == 1 and "MTR-001/winding_temp" in warnings[0] and "holding 500..501" in warnings[0]
    # The fast group's six values come in one request (addresses 0..11), not six.
    assert counters["requests"] < len(readings)


def test_device_restart_reconnects_and_marks_the_gap(free_port: int) -> None:
    config = _config(free_port)

    async def scenario() -> tuple[list[Reading | Gap], dict[str, int]]:
        server = ModbusServer(free_port)
        await server.start()
        await _write(free_port)
        events: list[Reading | Gap] = []
        restarted = False
        try:
            async with ModbusCollector(config.sources.modbus[0], config) as collector:
                async for event in collector:
                    events.append(event)
                    good = [e for e in events if isinstance(e, Reading) and e.quality is Quality.GOOD]
                    if not restarted and len(good) >= 30:
                        await server.stop()
                        await asyncio.sleep(2.0)
                        await server.start()
                        await _write(free_port)
                        restarted = True
                    if restarted and sum(isinstance(e, Gap) for e in events) >= 2 and len(good) >= 90:
                        break
                return events, dict(collector.counters)
        finally:
            await server.stop()

    events, counters = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert counters["connects"] >= 2 and counters["lost"] >= 1, counters
    gaps = [e for e in events if isinstance(e, Gap)]
    assert {g.machine_id for g in gaps} == {"PMP-001", "MTR-001"} and len(gaps) == 2
    for gap in gaps:
        assert gap.reason == "connection_lost" and gap.end - gap.start >= timedelta(seconds=1.5)
        before = [e for e in events[: events.index(gap)] if isinstance(e, Reading) and e.machine_id == gap.machine_id]
        after = [
            e for e in events[events.index(gap) + 1 :] if isinstance(e, Reading) and e.machine_id == gap.machine_id
        ]
        assert before and after and max(r.ts for r in before) <= gap.start < gap.end <= min(r.ts for r in after)


def test_vigil_collect_modbus_to_kafka(
    kafka_settings: KafkaSettings,
    topics: Topics,
    free_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ingest.cli import main

    plant = (ROOT / "config" / "plant.example.toml").read_text()
    plant += f"""
[[sources.modbus]]
name = "plc"
host = "127.0.0.1"
port = {free_port}

[[sources.modbus.groups]]
interval_ms = 100

[[sources.modbus.groups.registers]]
machine = "PMP-002"
sensor = "speed"
table = "input"
address = 17
scale = 100.0
"""
    config_path = tmp_path / "plant.toml"
    config_path.write_text(plant)
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("VIGIL_TOPICS__READINGS", topics.readings)
    monkeypatch.setenv("VIGIL_SPOOL__PATH", str(tmp_path / "spool.sqlite"))

    # The command runs in this (main) thread, as from a shell; the device in a thread of its own.
    with serving_in_thread(free_port):
        code = main(["modbus", "--config", str(config_path), "--duration", "3", "--metrics-port", "-1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    plc = summary["sources"]["plc"]
    assert plc["readings"] > 5 and summary["publisher"]["sent"] == summary["publisher"]["added"] == plc["readings"]
    messages = consume(kafka_settings, [topics.readings], lambda out: sum(isinstance(m, ReadingBatch) for m in out) > 0)
    readings = [r for m in messages if isinstance(m, ReadingBatch) for r in m.readings()]
    assert readings and {(r.machine_id, r.sensor, r.value, r.unit) for r in readings} == {
        ("PMP-002", "speed", 1700.0, "rpm")
    }
    assert {r.source for r in readings} == {"modbus"}  # the publisher names the batch by collector kind
