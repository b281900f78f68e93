"""File replay without Kafka: reading CSV/Parquet columns and turning rows into readings, with reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.exceptions import PayloadError, SourceError
from ingest.replay import Replayer, read_rows
from ingest.validation import Validator
from vigil.config import VigilConfig
from vigil.contracts import Quality, Reading

T = datetime(2026, 1, 1, tzinfo=UTC)


class _Collect:
    """Stands in for the publisher: a replay only calls add() and add_dead_letter()."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.letters: list[Any] = []

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)

    def add_dead_letter(self, letter: Any) -> None:
        self.letters.append(letter)


def test_csv_columns_are_read_as_text_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text(
        "value,ts,sensor,machine,extra\n1.5,2026-01-01T00:00:00Z,flow,PMP-001,x\noops,1767225600,flow,PMP-001,y\n"
    )
    [chunk] = list(read_rows(path))
    assert chunk["value"] == ["1.5", "oops"]
    assert chunk["ts"] == ["2026-01-01T00:00:00Z", "1767225600"]
    assert "extra" not in chunk


def test_missing_required_columns_and_unknown_suffixes_are_source_errors(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("machine,sensor,value\nPMP-001,flow,1\n")
    with pytest.raises(SourceError, match="missing column"):
        list(read_rows(tmp_path / "h.csv"))
    (tmp_path / "h.json").write_text("{}")
    with pytest.raises(SourceError, match="unknown file type"):
        list(read_rows(tmp_path / "h.json"))


def test_parquet_timestamps_become_utc(tmp_path: Path, example_config: VigilConfig) -> None:
    path = tmp_path / "h.parquet"
    table = pa.table(
        {
            "machine": ["PMP-001"],
            "sensor": ["flow"],
            "ts": pa.array([T], type=pa.timestamp("ns", tz="UTC")),
            "value": [1.0],
            "quality": ["uncertain"],
        }
    )
    pq.write_table(table, path)
    sink = _Collect()
    replayer = Replayer(path, sink, Validator(example_config))  # type: ignore[arg-type]
    [row] = zip(*(next(read_rows(path))[c] for c in ("machine", "sensor", "ts", "value", "quality")), strict=True)
    reading = replayer.to_reading(row[0], row[1], row[2], row[3], None, row[4])
    assert reading.ts == T
    assert reading.quality is Quality.UNCERTAIN


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (("", "flow", "2026-01-01T00:00:00Z", "1"), "missing_field"),
        (("PMP-001", "flow", "new year", "1"), "bad_timestamp"),
        (("PMP-001", "flow", "2026-01-01T00:00:00Z", "one"), "wrong_type"),
        (("PMP 001", "flow", "2026-01-01T00:00:00Z", "1"), "invalid"),
    ],
)
def test_bad_rows_have_a_reason(tmp_path: Path, example_config: VigilConfig, row: tuple[str, ...], reason: str) -> None:
    replayer = Replayer(tmp_path / "x.csv", _Collect(), Validator(example_config))  # type: ignore[arg-type]
    with pytest.raises(PayloadError) as info:
        replayer.to_reading(*row)
    assert info.value.reason == reason


def test_epoch_units_and_naive_iso(tmp_path: Path, example_config: VigilConfig) -> None:
    seconds = Replayer(tmp_path / "x.csv", _Collect(), Validator(example_config))  # type: ignore[arg-type]
    millis = Replayer(tmp_path / "x.csv", _Collect(), Validator(example_config), epoch_unit="ms")  # type: ignore[arg-type]
    assert seconds.to_reading("PMP-001", "flow", "1767225600", "1").ts == T
    assert millis.to_reading("PMP-001", "flow", "1767225600000", "1").ts == T
    assert seconds.to_reading("PMP-001", "flow", "2026-01-01T00:00:00", "1").ts == T
    assert seconds.to_reading("PMP-001", "flow", "2026-01-01T00:00:00", "").value is None


def test_a_replay_counts_every_row(tmp_path: Path, example_config: VigilConfig) -> None:
    path = tmp_path / "h.csv"
    path.write_text(
        "machine,sensor,ts,value,unit\n"
        "PMP-001,flow,2026-01-01T00:00:00Z,10,m3/h\n"
        "PMP-001,flow,2026-01-01T00:00:01Z,9999,m3/h\n"
        "PMP-001,flow,bad,1,m3/h\n"
        "PMP-404,flow,2026-01-01T00:00:02Z,1,m3/h\n"
    )
    sink = _Collect()
    counters = Replayer(path, sink, Validator(example_config)).run()  # type: ignore[arg-type]
    assert dict(counters) == {"rows": 4, "accepted": 2, "bad_timestamp": 1, "rejected": 1}
    assert [r.flags for r in sink.readings] == [(), ("out_of_range",)]
    assert [letter.reason for letter in sink.letters] == ["bad_timestamp"]
    assert Replayer(path, sink, Validator(example_config)).run(limit=2)["rows"] == 2  # type: ignore[arg-type]
