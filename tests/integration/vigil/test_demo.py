"""`vigil demo --fast`: the whole pipeline on the simulated fleet, end to end, against the real services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vigil.config import KafkaSettings

pytestmark = pytest.mark.integration


def test_fast_demo_alerts_before_failures_without_dead_letters(
    kafka_settings: KafkaSettings, influx_url: str, tmp_path: Path, unique: str
) -> None:
    summary_file = tmp_path / "summary.json"
    env = {
        **os.environ,
        "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIGIL_INFLUX__URL": influx_url,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "demo",
            "--fast",
            "--days",
            "3",
            "--no-live",
            "--exit",
            # Every stage's lag is 0 by then (transitions commit with their offsets): 15 s more proves nothing here.
            "--drain-s",
            "3",
            "--run-id",
            f"test-{unique}",
            "--state-dir",
            str(tmp_path / "state"),
            "--summary-json",
            str(summary_file),
            "--timeout-s",
            "600",
        ],
        capture_output=True,
        text=True,
        timeout=720,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    outcome = summary["outcome"]
    # Data flowed through every stage.
    assert summary["readings"] > 100_000
    assert summary["predictions"] > 1_000
    assert summary["alert_transitions"].get("open", 0) >= 1
    # The fleet failed, and the pipeline alerted ahead of (some of) the failures: at least the minimum lead time.
    assert outcome["failures"] >= 3
    assert outcome["caught"] >= 1
    assert outcome["lead_time_median_h"] >= 4.0
    # Nothing was undecodable or dead-lettered along the way.
    assert summary["dead_letters"] == {}
    # The plain summary a person reads says the same.
    assert f"failures {outcome['failures']}: caught {outcome['caught']}" in result.stdout
    assert "Where the data is" in result.stdout
