"""docs/your-plant.md is run as written: its blocks marked ``tutorial: run`` (and, against the real Kafka,
``tutorial: run with kafka``) are executed in order, from a copy of the repository root's relevant folders."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vigil.config import KafkaSettings, Topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "your-plant.md"
BLOCK = re.compile(r"<!-- tutorial: (run|run with kafka) -->\n```bash\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(DOC.read_text())]


def test_the_tutorial_has_its_commands() -> None:
    kinds = [k for k, _ in blocks()]
    assert kinds.count("run") >= 2 and "run with kafka" in kinds


@pytest.mark.timeout(600)
def test_the_tutorial_runs_from_two_exports_to_a_scored_backtest_and_into_kafka(
    tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    for name in ("tests", "docs", "config"):
        (tmp_path / name).symlink_to(ROOT / name)
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_TOPICS__")}
    env.update({f"VIGIL_TOPICS__{k.upper()}": str(v) for k, v in topics.model_dump().items() if isinstance(v, str)})
    env.update(
        {
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "VIGIL_SPOOL__PATH": str(tmp_path / "spool" / "ingest.sqlite"),
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(tmp_path),
        }
    )
    outputs = []
    for _kind, script in blocks():
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=500,
        )
        assert done.returncode == 0, f"{script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    report = tmp_path / "my-plant" / "report"
    result = json.loads((report / "backtest.json").read_text())
    assert result["scores"]["vigil"]["failures"] > 0
    assert set(result["scores"]) == {"vigil", "hard_limits", "margin"}
    assert result["input"]["refused"], "the export's broken rows are refused and counted"
    assert (report / "backtest.html").stat().st_size > 10_000
    # The maintenance import, twice: the second publishes nothing new.
    kafka_out = outputs[-1].strip().splitlines()
    first, second = (json.loads(line) for line in kafka_out if line.startswith("{") and '"imported"' in line)
    assert first["imported"] > 0 and second["imported"] == 0 and second["duplicate"] >= first["imported"]
