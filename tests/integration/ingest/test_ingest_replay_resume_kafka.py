"""``vigil collect replay`` killed with SIGKILL mid-replay three times and restarted: the readings topic of the
real Kafka holds every reading of the file exactly once (the replay resumes from the position its spool
committed with its batches)."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vigil.bus import ensure_topics, pipeline_topics
from vigil.config import KafkaSettings, Topics
from vigil.contracts import DeadLetter, ReadingBatch
from vigil.testing import consume, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 5, 1, tzinfo=UTC)
ROWS = 6000
BAD_ROWS = (1234, 4321)


def _stored_row(spool: Path) -> int:
    """The row the replay would resume at, read from its spool (0 while it has none)."""
    if not spool.exists():
        return 0
    import json

    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT value FROM meta WHERE name = 'position'").fetchone()
    except sqlite3.OperationalError:  # the tables are not created yet
        return 0
    finally:
        db.close()
    return 0 if row is None else int(json.loads(row[0])["row"])


def test_kill_9_three_times_every_reading_once_on_the_topic(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    path = tmp_path / "history.csv"
    expected: Counter[tuple[str, str, datetime]] = Counter()
    machines = ("PMP-001", "PMP-002", "MTR-001", "CMP-002")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["machine", "sensor", "ts", "value"])
        for i in range(ROWS):
            machine = machines[(i * 7) % 11 % 4]  # uneven interleaving: batches fill at different rows
            ts = T0 + timedelta(seconds=i)
            w.writerow([machine, "vibration_rms", repr(ts.timestamp()), "oops" if i in BAD_ROWS else str(i % 40 / 10)])
            if i not in BAD_ROWS:
                expected[(machine, "vibration_rms", ts)] += 1
    spool = tmp_path / "spool.sqlite"
    env = {
        **os.environ,
        "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIGIL_TOPICS__READINGS": topics.readings,
        "VIGIL_TOPICS__DEAD_LETTER": topics.dead_letter,
        "VIGIL_SPOOL__PATH": str(spool),
    }
    env.pop("VIGIL_CONFIG", None)
    argv = [sys.executable, "-m", "vigil.cli", "collect", "replay", str(path), "--speed", "1500"]
    spool_file = spool.with_name(f"spool.replay_{path.name}.sqlite")
    logs: list[str] = []
    # Killed once its spool has passed each of these rows (progress, not time, decides the moment).
    for n, target in enumerate((1000, 2500, 4000)):
        log_path = tmp_path / f"run{n}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(
                lambda p=proc, t=target: _stored_row(spool_file) >= t or p.poll() is not None, 120, f"row {target}"
            )
            assert proc.poll() is None, "the replay ended before it could be killed"
            time.sleep(0.05)  # kill between two batches' commits, whatever the row
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        logs.append(log_path.read_text(errors="replace"))
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=300, check=False)
    logs.append(done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace"))
    assert done.returncode == 0, logs[-1]
    # Each restart said where it resumed, beyond the row its predecessor was killed after.
    for run, target in zip(logs[1:], (1000, 2500, 4000), strict=True):
        assert f"resuming {path} at row " in run
        resumed = int(run.split(f"resuming {path} at row ")[1].split()[0])
        assert resumed >= target

    def readings(out: list[Any]) -> list[Any]:
        return [r for m in out if isinstance(m, ReadingBatch) for r in m.readings()]

    messages = consume(
        kafka_settings,
        [topics.readings, topics.dead_letter],
        lambda out: len(readings(out)) >= len(expected),
        timeout_s=120,
        settle_s=3,
    )
    got = Counter((r.machine_id, r.sensor, r.ts) for r in readings(messages))
    assert got - expected == Counter(), "duplicated or foreign readings"
    assert expected - got == Counter(), "lost readings"
    letters = sorted(m.offset for m in messages if isinstance(m, DeadLetter))
    assert letters == list(BAD_ROWS)
