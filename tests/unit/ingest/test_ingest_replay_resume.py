"""A file replay resumes from the position the spool committed with its batches: killed (the publisher abandoned
without closing, its in-memory batches lost) and restarted several times, the spool ends up holding every reading
and every dead letter of the file exactly once. Kafka is unreachable here, so everything stays in the spool."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.publisher import KafkaPublisher
from ingest.replay import Replayer
from ingest.spool import Spool
from ingest.validation import Validator
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics, VigilConfig
from vigil.contracts import DeadLetter, ReadingBatch, decode

T0 = datetime(2026, 5, 1, tzinfo=UTC)
MACHINES = ("PMP-001", "PMP-002", "MTR-001")
ROWS = 400
BAD = {57: "loud", 131: "loud", 290: "loud"}  # rows whose value is not a number: dead letters


def _write(path: Path, rows: int = ROWS) -> Counter[tuple[str, str, datetime]]:
    """The file, and the readings it should give (key: machine, sensor, ts)."""
    expected: Counter[tuple[str, str, datetime]] = Counter()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["machine", "sensor", "ts", "value", "unit"])
        for i in range(rows):
            # Uneven interleaving, so machines' batches fill (and are written ahead) at different rows.
            machine = MACHINES[0] if i % 5 < 3 else MACHINES[1 + i % 2]
            ts = T0 + timedelta(seconds=i)
            w.writerow([machine, "vibration_rms", ts.isoformat(), BAD.get(i, f"{(i % 40) / 10:.1f}"), "mm/s"])
            if i not in BAD:
                expected[(machine, "vibration_rms", ts)] += 1
    return expected


def _publisher(spool: Path) -> KafkaPublisher:
    return KafkaPublisher(
        KafkaSettings(bootstrap_servers="127.0.0.1:9"),  # nothing listens: every batch stays in the spool
        Topics(),
        SpoolSettings(path=spool, retry_interval_s=600),
        # Batches leave when full only (never on the timer), so a kill always finds some in memory.
        PublishSettings(batch_max_samples=7, batch_max_ms=60_000, connect_timeout_s=0.2),
    )


def _kill(publisher: KafkaPublisher) -> None:
    """As kill -9 leaves it: no flush, the batches being filled are gone, the spool holds what was committed."""
    publisher._stop.set()
    publisher._wake.set()
    publisher._wal.close()


def _spooled(path: Path) -> tuple[Counter[tuple[str, str, datetime]], list[int]]:
    spool = Spool(SpoolSettings(path=path))
    spool.open()
    try:
        messages = [decode(m.value) for m in spool.peek(1_000_000)]
    finally:
        spool.close()
    readings = Counter(
        (r.machine_id, r.sensor, r.ts) for m in messages if isinstance(m, ReadingBatch) for r in m.readings()
    )
    letters = sorted(m.offset for m in messages if isinstance(m, DeadLetter) and m.offset is not None)
    return readings, letters


def _replay(path: Path, spool: Path, config: VigilConfig, limit: int | None, resume: bool = True) -> Replayer:
    publisher = _publisher(spool)
    publisher.start()
    replayer = Replayer(path, publisher, Validator(config), resume=resume)
    replayer.run(limit=limit)
    if limit is None:
        publisher.close(timeout_s=1)
    else:
        _kill(publisher)
    return replayer


def test_killed_three_times_the_spool_holds_every_reading_and_dead_letter_once(
    tmp_path: Path, example_config: VigilConfig, caplog: pytest.LogCaptureFixture
) -> None:
    path, spool = tmp_path / "history.csv", tmp_path / "spool.sqlite"
    expected = _write(path)
    caplog.set_level(logging.INFO, logger="ingest.replay")
    starts = []
    for limit in (90, 120, 75, None):
        starts.append(_replay(path, spool, example_config, limit).counters["resumed_at_row"])
    readings, letters = _spooled(spool)
    assert readings == expected  # nothing lost, nothing twice
    assert letters == sorted(BAD)
    # Each restart resumed past the first row and behind the row it was killed at (its lost batches re-read).
    assert starts[0] == 0
    assert all(s > 0 for s in starts[1:])
    assert starts[1] <= 90 and starts[2] <= starts[1] + 120
    assert f"resuming {path} at row {starts[1]}" in caplog.text


def test_after_a_complete_replay_a_restart_sends_nothing_and_from_start_everything_again(
    tmp_path: Path, example_config: VigilConfig
) -> None:
    path, spool = tmp_path / "history.csv", tmp_path / "spool.sqlite"
    expected = _write(path)
    _replay(path, spool, example_config, None)
    again = _replay(path, spool, example_config, None)
    assert again.counters["accepted"] == 0
    assert _spooled(spool)[0] == expected
    _replay(path, spool, example_config, None, resume=False)  # --from-start
    assert _spooled(spool)[0] == expected + expected


def test_a_different_input_starts_from_its_first_row(tmp_path: Path, example_config: VigilConfig) -> None:
    path, spool = tmp_path / "history.csv", tmp_path / "spool.sqlite"
    _write(path)
    _replay(path, spool, example_config, 150)
    expected = _write(path, rows=ROWS - 1)  # rewritten: another size and content, same path
    replayer = _replay(path, spool, example_config, None)
    assert replayer.counters["resumed_at_row"] == 0
    assert replayer.counters["accepted"] == sum(expected.values())
