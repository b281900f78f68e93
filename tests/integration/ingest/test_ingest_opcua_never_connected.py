"""``vigil collect opcua --duration`` against a server that is not there exits non-zero, with its summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vigil.config import KafkaSettings, Topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_a_run_that_never_connected_exits_1_with_its_summary(
    kafka_settings: KafkaSettings,
    topics: Topics,
    free_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ingest.cli import main

    plant = (ROOT / "config" / "plant.example.toml").read_text()
    config_path = tmp_path / "plant.toml"
    config_path.write_text(plant.replace("127.0.0.1:4840/vigil/", f"127.0.0.1:{free_port}/vigil/"))
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("VIGIL_TOPICS__READINGS", topics.readings)
    monkeypatch.setenv("VIGIL_SPOOL__PATH", str(tmp_path / "spool.sqlite"))
    code = main(["opcua", "--config", str(config_path), "--duration", "3", "--metrics-port", "-1"])
    out, err = capsys.readouterr()
    assert code == 1
    summary = json.loads(out.strip().splitlines()[-1])
    collected = summary["sources"]["simulator"]
    assert collected.get("connects", 0) == 0 and collected["connect_failed"] >= 2, collected
    assert "never connected: simulator" in err
