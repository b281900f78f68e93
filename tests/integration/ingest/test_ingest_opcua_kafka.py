"""OPC UA end to end: the simulator's real asyncua server -> the collector -> the real Kafka readings topic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.opcua.collector import OpcUaCollector
from ingest.opcua.runner import run_sources
from ingest.publisher import KafkaPublisher
from ingest.simulator.fleet import Fleet
from ingest.simulator.server import SERVER_LATENCY, SimulatorServer
from ingest.validation import Validator
from vigil.bus import ensure_topics, pipeline_topics
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics, VigilConfig, load_config
from vigil.contracts import Gap, Quality, Reading, ReadingBatch
from vigil.testing import consume

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 5, 1, tzinfo=UTC)
PATTERNS = [
    {"folder": "0:Objects/2:Plant", "glob": "PMP-*", "machine_type": "pump"},
    {"folder": "0:Objects/2:Plant", "glob": "MTR-*", "machine_type": "motor"},
]


def _config(
    port: int, topics: Topics, kafka: KafkaSettings, extra_machines: bool = False, **source: Any
) -> VigilConfig:
    data = tomllib.loads((ROOT / "config" / "plant.example.toml").read_text())
    if extra_machines:
        # The server's plant has a pump the collector's configuration does not know.
        data["machines"].append({"id": "PMP-999", "type": "pump", "line": "north-1"})
    data["sources"] = {
        "opcua": [
            {
                "name": "sim",
                "endpoint": f"opc.tcp://127.0.0.1:{port}/vigil/",
                "publishing_interval_ms": 100,
                "sampling_interval_ms": 0,
                "queue_size": 50,
                "watchdog_s": 3,
                "reconnect_initial_s": 0.2,
                "reconnect_max_s": 1.0,
                "timeout_s": 5,
                **source,
            }
        ]
    }
    data["kafka"] = kafka.model_dump(mode="json")
    data["topics"] = topics.model_dump(mode="json")
    return load_config(data=data, environ={})


def _readings(messages: list[Any]) -> list[Reading]:
    return [r for m in messages if isinstance(m, ReadingBatch) for r in m.readings()]


async def _collect_while_serving(
    config: VigilConfig, server_config: VigilConfig, port: int, machines: list[str], seconds: float, tmp_path: Path
) -> tuple[dict[str, Any], KafkaPublisher, Validator]:
    fleet = Fleet(server_config, seed=3, start=START, sample_interval_s=10, machines=machines)
    publisher = KafkaPublisher(
        config.kafka, config.topics, SpoolSettings(path=tmp_path / "spool.sqlite"), PublishSettings(batch_max_ms=50)
    )
    validator = Validator(config)
    publisher.start()
    try:
        async with SimulatorServer(fleet, port, speed=100.0) as server:
            serving = asyncio.create_task(server.run())
            stop = asyncio.Event()
            counters = await run_sources(config.sources.opcua, config, publisher, validator, stop, seconds)
            serving.cancel()
    finally:
        publisher.close()
    return counters, publisher, validator


def test_subscription_end_to_end_and_unknown_objects_create_no_machine(
    kafka_settings: KafkaSettings, topics: Topics, free_port: int, tmp_path: Path
) -> None:
    config = _config(free_port, topics, kafka_settings, patterns=PATTERNS, deadband="absolute", deadband_value=0.0)
    server_config = _config(free_port, topics, kafka_settings, extra_machines=True)
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    machines = ["PMP-001", "MTR-001", "CMP-001", "PMP-999"]
    counters, publisher, _ = asyncio.run(
        _collect_while_serving(config, server_config, free_port, machines, 6.0, tmp_path)
    )
    sim = counters["sim"]
    assert sim["connects"] == 1
    assert sim["unknown_machine"] >= 1, sim  # PMP-999 is on the server, not in [[machines]]
    # Everything the collector accepted reached Kafka, including what was queued when it stopped.
    assert publisher.counters.sent == publisher.counters.added == sim["readings"] > 0
    readings = _readings(consume(kafka_settings, [topics.readings], lambda out: len(_readings(out)) >= sim["readings"]))
    assert len(readings) == sim["readings"]
    # CMP-001 is served but no pattern maps compressors; PMP-999 is unknown: neither becomes a machine.
    assert {r.machine_id for r in readings} == {"PMP-001", "MTR-001"}
    by_machine = {m: {r.sensor for r in readings if r.machine_id == m} for m in ("PMP-001", "MTR-001")}
    assert by_machine["PMP-001"] == set(config.machines_by_id["PMP-001"].sensors)
    assert by_machine["MTR-001"] == set(config.machines_by_id["MTR-001"].sensors)
    for r in readings:
        assert r.source == "sim"
        assert r.ts >= START and (r.ts - START).total_seconds() % 10 == 0  # the simulated source timestamp
        assert r.server_ts == r.ts + SERVER_LATENCY
        assert r.unit == config.machines_by_id[r.machine_id].sensors[r.sensor].unit
        assert r.quality is (Quality.BAD if r.status_code else Quality.GOOD)
    keys = [r.key for r in readings]
    assert len(keys) == len(set(keys)), "every (machine, sensor, source ts) once"


def test_polling_by_node_id_and_browse_path_with_server_time(
    kafka_settings: KafkaSettings, topics: Topics, free_port: int, tmp_path: Path
) -> None:
    nodes = [
        {"machine": "PMP-002", "sensor": "flow", "node_id": "ns=2;s=PMP-002.flow"},
        {"machine": "PMP-002", "sensor": "speed", "browse_path": "0:Objects/2:Plant/2:PMP-002/2:speed"},
        {"machine": "PMP-002", "sensor": "pressure", "node_id": "ns=2;s=PMP-002.does-not-exist"},
    ]
    config = _config(
        free_port, topics, kafka_settings, mode="poll", poll_interval_ms=50, event_time="server", nodes=nodes
    )
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    counters, _, _ = asyncio.run(_collect_while_serving(config, config, free_port, ["PMP-002"], 5.0, tmp_path))
    sim = counters["sim"]
    assert sim["readings"] > 10, sim
    readings = _readings(consume(kafka_settings, [topics.readings], lambda out: len(_readings(out)) >= sim["readings"]))
    assert {(r.machine_id, r.sensor) for r in readings} <= {
        ("PMP-002", "flow"),
        ("PMP-002", "speed"),
        ("PMP-002", "pressure"),
    }
    assert {r.sensor for r in readings} == {"flow", "speed"}
    assert all(r.ts == r.server_ts for r in readings), "event_time = server"
    # A NodeId the server does not have is named (BadNodeIdUnknown) and left out, not polled as Bad readings.
    assert sim["unreadable"] == 1, sim


def _simulate(port: int, start: datetime, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "vigil.cli",
        "simulate",
        "--metrics-port",
        "-1",
        "--no-kafka",
        "--port",
        str(port),
        "--speed",
        "100",
        "--machines",
        "PMP-001,MTR-002",
        "--start",
        start.isoformat(),
        "--seed",
        "9",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=dict(os.environ))


def test_server_killed_and_restarted_resumes_and_marks_the_gap(
    kafka_settings: KafkaSettings, topics: Topics, free_port: int, tmp_path: Path
) -> None:
    config = _config(free_port, topics, kafka_settings, patterns=PATTERNS)
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    log = tmp_path / "simulate.log"
    restart_start = START + timedelta(days=1)
    publisher = KafkaPublisher(
        config.kafka, config.topics, SpoolSettings(path=tmp_path / "spool.sqlite"), PublishSettings(batch_max_ms=50)
    )
    validator = Validator(config)
    publisher.start()
    first = _simulate(free_port, START, log)
    second: subprocess.Popen[bytes] | None = None

    async def scenario() -> dict[str, int]:
        nonlocal second
        seen: dict[str, int] = {"before": 0, "after": 0, "gaps": 0}
        async with OpcUaCollector(config.sources.opcua[0], config) as collector:
            deadline = time.monotonic() + 60
            async for event in collector:
                if isinstance(event, Gap):
                    publisher.add_gap(event)
                    seen["gaps"] += 1
                    continue
                checked = validator.check(event)
                assert checked is not None
                publisher.add(checked)
                if event.ts < restart_start:
                    seen["before"] += 1
                    if seen["before"] == 50:
                        first.kill()  # SIGKILL: no goodbye to the client
                        first.wait()
                        await asyncio.sleep(2.0)
                        second = _simulate(free_port, restart_start, log)
                else:
                    seen["after"] += 1
                    if seen["after"] >= 50 and seen["gaps"] >= 2:
                        break
                assert time.monotonic() < deadline, (seen, collector.counters, log.read_text()[-2000:])
            seen["connects"] = collector.counters["connects"]
        return seen

    try:
        seen = asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        publisher.close()
    assert seen["connects"] >= 2 and seen["after"] >= 50, seen
    messages = consume(kafka_settings, [topics.readings], lambda out: sum(isinstance(m, Gap) for m in out) >= 2)
    gaps = [m for m in messages if isinstance(m, Gap)]
    assert {g.machine_id for g in gaps} == {"PMP-001", "MTR-002"}
    for gap in gaps:
        # Judged on the collector's clock (the simulator's event time runs 100x faster and jumps a day).
        assert gap.start < gap.end and gap.reason == "connection_lost", gap
        # Ordered with the data around it: the gap precedes the machine's first reading after the restart.
        after = [
            r
            for i, m in enumerate(messages)
            if isinstance(m, ReadingBatch) and m.machine_id == gap.machine_id and i > messages.index(gap)
            for r in m.readings()
        ]
        assert after and min(r.ts for r in after) >= restart_start


def _wait_for_port(port: int, timeout_s: float) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {timeout_s} s")


def test_vigil_collect_opcua_command(
    kafka_settings: KafkaSettings,
    topics: Topics,
    free_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from ingest.cli import main

    plant = (ROOT / "config" / "plant.example.toml").read_text()
    config_path = tmp_path / "plant.toml"
    config_path.write_text(plant.replace("127.0.0.1:4840/vigil/", f"127.0.0.1:{free_port}/vigil/"))
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("VIGIL_TOPICS__READINGS", topics.readings)
    monkeypatch.setenv("VIGIL_SPOOL__PATH", str(tmp_path / "spool.sqlite"))
    simulator = _simulate(free_port, START, tmp_path / "simulate.log")
    try:
        _wait_for_port(free_port, 60)
        code = main(["opcua", "--config", str(config_path), "--duration", "8", "--metrics-port", "-1"])
    finally:
        simulator.kill()
        simulator.wait()
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    collected = summary["sources"]["simulator"]
    assert collected["readings"] > 0 and summary["publisher"]["sent"] == summary["publisher"]["added"] > 0
    readings = _readings(consume(kafka_settings, [topics.readings], lambda out: len(_readings(out)) >= 10))
    assert {r.machine_id for r in readings} <= {"PMP-001", "MTR-002"}  # the machines the simulator serves
