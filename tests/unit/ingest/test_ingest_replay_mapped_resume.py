"""The mapped replay form (``--source``, several files merged by event time) resumes like the single-file form:
killed (the publisher abandoned without closing, its in-memory batches lost) and restarted three times, the spool
holds every reading of both files and every refused row's dead letter exactly once. Kafka is unreachable here."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.publisher import KafkaPublisher
from ingest.replay import MappedReplayer
from ingest.spool import Spool
from ingest.validation import Validator
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics, VigilConfig
from vigil.config.mapping import FileSource
from vigil.contracts import DeadLetter, ReadingBatch, decode

T0 = datetime(2026, 5, 1, tzinfo=UTC)
MACHINES = ("PMP-001", "PMP-002", "MTR-001")
ROWS = 300
BAD = {41, 177}  # rows whose value is not a number: refused by the mapping, dead letters


def _write(path: Path, offset_s: int) -> Counter[tuple[str, str, datetime]]:
    """A file of the long layout (its rows interleave in time with the other file's), and its good readings."""
    expected: Counter[tuple[str, str, datetime]] = Counter()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["machine", "sensor", "ts", "value"])
        for i in range(ROWS):
            machine = MACHINES[0] if i % 5 < 3 else MACHINES[1 + i % 2]
            ts = T0 + timedelta(seconds=2 * i + offset_s)
            w.writerow([machine, "vibration_rms", ts.isoformat(), "loud" if i in BAD else f"{(i % 40) / 10:.1f}"])
            if i not in BAD:
                expected[(machine, "vibration_rms", ts)] += 1
    return expected


def _publisher(spool: Path) -> KafkaPublisher:
    return KafkaPublisher(
        KafkaSettings(bootstrap_servers="127.0.0.1:9"),  # nothing listens: every batch stays in the spool
        Topics(),
        SpoolSettings(path=spool, retry_interval_s=600),
        PublishSettings(batch_max_samples=7, batch_max_ms=60_000, connect_timeout_s=0.2),
    )


def _kill(publisher: KafkaPublisher) -> None:
    """As kill -9 leaves it: no flush, the batches being filled are gone, the spool holds what was committed."""
    publisher._stop.set()
    publisher._wake.set()
    publisher._wal.close()


def _spooled(path: Path) -> tuple[Counter[tuple[str, str, datetime]], Counter[str]]:
    spool = Spool(SpoolSettings(path=path))
    spool.open()
    try:
        messages = [decode(m.value) for m in spool.peek(1_000_000)]
    finally:
        spool.close()
    readings = Counter(
        (r.machine_id, r.sensor, r.ts) for m in messages if isinstance(m, ReadingBatch) for r in m.readings()
    )
    letters = Counter(f"{m.source_topic}:{m.offset}" for m in messages if isinstance(m, DeadLetter))
    return readings, letters


def _replay(paths: list[Path], spool: Path, config: VigilConfig, limit: int | None) -> MappedReplayer:
    publisher = _publisher(spool)
    publisher.start()
    replayer = MappedReplayer(config, FileSource(name="hist"), publisher, Validator(config), resume=True)
    replayer.run(paths, limit=limit)
    if limit is None:
        publisher.close(timeout_s=1)
    else:
        _kill(publisher)
    return replayer


def test_the_mapped_form_killed_three_times_holds_every_reading_and_dead_letter_once(
    tmp_path: Path, example_config: VigilConfig, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, spool = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "spool.sqlite"
    expected = _write(a, 0) + _write(b, 1)
    caplog.set_level(logging.INFO, logger="ingest.replay")
    starts = [_replay([a, b], spool, example_config, limit).counters["resumed_at_row"] for limit in (150, 200, 90)]
    last = _replay([a, b], spool, example_config, None)
    readings, letters = _spooled(spool)
    assert readings == expected  # nothing lost, nothing twice
    # The mapping numbers a file's lines from 1 with the header: rows 41 and 177 of the data are lines 43 and 179.
    assert letters == Counter({f"file:{p.name}:{row + 2}": 1 for p in (a, b) for row in sorted(BAD)}), letters
    assert starts[0] == 0 and all(s > 0 for s in starts[1:]) and last.counters["resumed_at_row"] > 0
    assert "resuming" in caplog.text
    # A complete replay run again sends nothing; another mapping (or other files) starts from row 0.
    again = _replay([a, b], spool, example_config, None)
    assert again.counters["accepted"] == 0
