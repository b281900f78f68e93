"""``vigil simulate`` is deterministic for a seed: same samples (digest) and same maintenance events in Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vigil.config import KafkaSettings, Topics
from vigil.contracts import MaintenanceEvent, MaintenanceKind, decode_as
from vigil.testing import consume

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _simulate(seed: int, port: int, topic: str, kafka: KafkaSettings, tmp_path: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        {
            "VIGIL_TOPICS__MAINTENANCE": topic,
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "VIGIL_SPOOL__PATH": str(tmp_path / f"spool-{topic}.sqlite"),
        }
    )
    cmd = [
        sys.executable,
        "-m",
        "vigil.cli",
        "simulate",
        "--metrics-port",
        "-1",
        "--seed",
        str(seed),
        "--port",
        str(port),
        "--speed",
        "1000000",
        "--duration",
        "2d",
        "--interval",
        "60",
        "--failure-rate",
        "10",
        "--machines",
        "PMP-001,MTR-001,CMP-001",
        "--start",
        "2026-07-01T00:00:00Z",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return summary


def _event(record: Any) -> MaintenanceEvent:
    event = decode_as(record.value, MaintenanceEvent)
    assert record.key.decode() == event.machine_id
    return event


def _events(kafka: KafkaSettings, topic: str, count: int) -> list[MaintenanceEvent]:
    return consume(kafka, [topic], lambda got: len(got) >= count, _event, timeout_s=60)


def test_same_seed_same_run_different_seed_different_run(
    kafka_settings: KafkaSettings, topics: Topics, free_port: int, unique: str, tmp_path: Path
) -> None:
    a = _simulate(5, free_port, f"{topics.maintenance}-a", kafka_settings, tmp_path)
    b = _simulate(5, free_port, f"{topics.maintenance}-b", kafka_settings, tmp_path)
    c = _simulate(6, free_port, f"{topics.maintenance}-c", kafka_settings, tmp_path)
    assert a["readings"] == b["readings"] > 2 * 1440 * 10
    assert a["digest"] == b["digest"]
    assert a["events"] == b["events"]
    assert c["digest"] != a["digest"]
    n = sum(a["events"].values())
    assert n >= 1, a
    assert a["publisher"]["messages_by_topic"] == {f"{topics.maintenance}-a": n}
    events_a = _events(kafka_settings, f"{topics.maintenance}-a", n)
    events_b = _events(kafka_settings, f"{topics.maintenance}-b", n)
    assert len(events_a) == n
    assert sorted(e.model_dump_json() for e in events_a) == sorted(e.model_dump_json() for e in events_b)
    failures = [e for e in events_a if e.event is MaintenanceKind.FAILURE]
    assert failures and all(e.failure_mode for e in failures)
