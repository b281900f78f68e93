"""Historian exports read by a mapping: layouts, time zones, units, and every refusal with its row and column."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingest.exceptions import PayloadError, SourceError
from ingest.tabular import TableReader, parse_times
from ingest.timeparse import parse_time
from vigil.config.mapping import ReadingMapping, TagSpec, TimeSpec

MACHINES = {"PMP-001": {"bearing_temp", "flow"}, "PMP-002": {"bearing_temp", "flow"}}


def _read(path: Path, mapping: ReadingMapping, **kw: object) -> tuple[list[tuple[str, str, float, float]], TableReader]:
    reader = TableReader(mapping, MACHINES, **kw)  # type: ignore[arg-type]
    out = []
    for frame, _ in reader.read(path):
        out += list(zip(frame.machine, frame.sensor, frame.ts.tolist(), frame.value.tolist(), strict=True))
    return out, reader


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()


def test_a_wide_export_in_local_time_with_tags_and_unit_conversion(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text(
        "Timestamp;T1;F1;F2;Comment\n"
        "01.07.2026 10:00:00;212;10,5;;ok\n"  # summer: Berlin is UTC+2
        "01.07.2026 10:01:00;32;11;20;\n"
    )
    mapping = ReadingMapping(
        layout="wide",
        machine=None,
        sensor=None,
        decimal=",",
        ignore=["Comment"],
        time=TimeSpec(column="Timestamp", format="%d.%m.%Y %H:%M:%S", zone="Europe/Berlin"),
        tags={
            "T1": TagSpec(machine="PMP-001", sensor="bearing_temp", scale=5 / 9, offset=-160 / 9, unit="degF"),
            "F1": TagSpec(machine="PMP-001", sensor="flow"),
            "F2": TagSpec(machine="PMP-002", sensor="flow"),
        },
    )
    rows, reader = _read(tmp_path / "h.csv", mapping, delimiter=";")
    t0 = _epoch("2026-07-01T08:00:00+00:00")
    got = sorted((m, s, t - t0, round(v, 6)) for m, s, t, v in rows)
    # The empty F2 cell of the first row is no reading, not a zero.
    assert got == [
        ("PMP-001", "bearing_temp", 0.0, 100.0),
        ("PMP-001", "bearing_temp", 60.0, 0.0),
        ("PMP-001", "flow", 0.0, 10.5),
        ("PMP-001", "flow", 60.0, 11.0),
        ("PMP-002", "flow", 60.0, 20.0),
    ]
    assert reader.refusals == []


def test_a_long_export_with_renamed_machines_and_sensors_and_quality(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text(
        "machine_id,signal,time,reading,q\n"
        "pump 1,TEMP,2026-01-01T00:00:00Z,40,Good\n"
        "pump 1,TEMP,2026-01-01T01:00:00+01:00,41,Bad\n"
        "pump 2,FLOW,1767225600,,\n"
    )
    mapping = ReadingMapping(
        machine="machine_id",
        sensor="signal",
        value="reading",
        quality="q",
        time=TimeSpec(column="time"),
        machines={"pump 1": "PMP-001", "pump 2": "PMP-002"},
        sensors={"TEMP": "bearing_temp", "FLOW": "flow"},
    )
    reader = TableReader(mapping, MACHINES)
    frames = [f for f, _ in reader.read(tmp_path / "l.csv")]
    frame = frames[0]
    assert frame.machine.tolist() == ["PMP-001", "PMP-001"]
    assert frame.ts.tolist() == [1767225600.0, 1767225600.0]
    assert frame.status.tolist() == [0, 0x80000000]
    # An epoch number where ISO 8601 was configured is refused with its row and column.
    assert [(r.row, r.column, r.reason) for r in reader.refusals] == [(4, "time", "bad_timestamp")]


def test_every_bad_cell_is_refused_with_row_column_and_reason_and_good_cells_of_the_row_are_kept(
    tmp_path: Path,
) -> None:
    (tmp_path / "b.csv").write_text(
        "ts,machine,sensor,value\n"
        "2026-01-01T00:00:00Z,PMP-001,flow,1\n"
        "not a time,PMP-001,flow,2\n"
        "2026-01-01T00:02:00Z,PMP-009,flow,3\n"
        "2026-01-01T00:03:00Z,PMP-001,speed,4\n"
        "2026-01-01T00:04:00Z,PMP-001,flow,#VALUE!\n"
        "2026-01-01T00:05:00Z,PMP-001,flow,true\n"
        "2026-01-01T00:06:00Z,PMP-001,flow,6,extra\n"
        "2026-01-01T00:07:00Z,,flow,7\n"
        "2026-01-01T00:08:00Z,PMP-001,flow,8\n"
    )
    rows, reader = _read(tmp_path / "b.csv", ReadingMapping(), chunk_rows=3)
    assert [v for *_, v in rows] == [1.0, 8.0]
    assert sorted((r.row, r.column, r.reason) for r in reader.refusals) == [
        (3, "ts", "bad_timestamp"),
        (4, "sensor", "unknown_machine"),
        (5, "sensor", "unknown_sensor"),
        (6, "value", "wrong_type"),
        (7, "value", "wrong_type"),
        (8, "", "malformed_row"),
        (9, "machine", "missing_field"),
    ]
    assert reader.counters["readings"] == 2


def test_a_long_export_by_tag_refuses_unknown_tags(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("Time,Tag,Value\n2026-01-01T00:00:00Z,P1.T,50\n2026-01-01T00:00:00Z,P9.T,51\n")
    mapping = ReadingMapping(
        tag="Tag", value="Value", time=TimeSpec(column="Time"), tags={"P1.T": TagSpec(machine="PMP-001", sensor="flow")}
    )
    rows, reader = _read(tmp_path / "t.csv", mapping)
    assert [(m, s, v) for m, s, _, v in rows] == [("PMP-001", "flow", 50.0)]
    assert [(r.row, r.column, r.reason) for r in reader.refusals] == [(3, "Tag", "unknown_tag")]


def test_one_file_per_machine_takes_the_machine_from_the_file_name_and_parquet_reads_like_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"time": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:01"]), "flow": [1.5, 2.5], "bearing_temp": [40, 41]}
    )
    frame.to_parquet(tmp_path / "export_PMP-002.parquet")
    frame.astype(str).to_csv(tmp_path / "export_PMP-002.csv", index=False)
    mapping = ReadingMapping(
        layout="wide", machine=None, machine_from_name=r"export_(?P<machine>[A-Z]+-\d+)", time=TimeSpec(column="time")
    )
    got = [sorted(_read(tmp_path / f"export_PMP-002.{ext}", mapping)[0]) for ext in ("parquet", "csv")]
    assert got[0] == got[1]
    assert got[0][0] == ("PMP-002", "bearing_temp", 1767225600.0, 40.0)


def test_a_missing_mapped_column_fails_at_once_naming_the_column_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("when,machine,sensor,value\n")
    with pytest.raises(SourceError, match=r"'ts' \(mapping key time.column\)"):
        _read(tmp_path / "m.csv", ReadingMapping())


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        (
            TimeSpec(format="%d.%m.%Y %H:%M", zone="Europe/Berlin"),
            ["29.03.2026 02:30", "25.10.2026 02:30", "01.01.2026 00:00", "x"],
        ),
        (
            TimeSpec(format="iso", zone="America/Chicago"),
            ["2026-03-08T02:30:00", "2026-11-01T01:30:00", "2026-01-01T00:00:00Z", "2026-05-01T12:00:00+05:30"],
        ),
        (TimeSpec(format="epoch_ms"), ["1767225600000", "1767225600500", "abc", ""]),
    ],
)
def test_the_vectorised_time_parser_agrees_with_the_per_value_one(spec: TimeSpec, values: list[str]) -> None:
    """The file path (vectorised) and the record path (MQTT, HTTP, CMMS rows) read a time the same way."""
    vectorised, bad = parse_times(pd.Series(values, dtype=object), spec)
    for text, ts, refused in zip(values, vectorised.tolist(), bad.tolist(), strict=True):
        try:
            expected: float | None = parse_time(text, spec).timestamp()
        except PayloadError:
            expected = None
        if expected is None:
            assert refused, text
        else:
            assert not refused and math.isclose(ts, expected), (text, ts, expected)


def test_numbers_with_a_decimal_comma_and_spelled_nan(tmp_path: Path) -> None:
    (tmp_path / "n.csv").write_text(
        "ts;machine;sensor;value\n2026-01-01T00:00:00Z;PMP-001;flow;1,25\n2026-01-01T00:01:00Z;PMP-001;flow;NaN\n"
    )
    rows, reader = _read(tmp_path / "n.csv", ReadingMapping(decimal=","), delimiter=";")
    assert rows[0][3] == 1.25 and np.isnan(rows[1][3])
    assert reader.refusals == []


def test_a_tag_pattern_maps_every_pump_of_an_export_without_a_line_per_tag(tmp_path: Path) -> None:
    """A wide export and a long one by tag read the same with one pattern, renames and a unit conversion."""
    from ingest.records import RecordMapper
    from vigil.config.mapping import Conversion

    (tmp_path / "w.csv").write_text("Time,P001_TT,P002_TT,P002_FT,P009_TT\n2026-01-01T00:00:00Z,212,32,5,1\n")
    common = {
        "tag_pattern": r"(?P<machine>P\d+)_(?P<sensor>TT|FT)",
        "machines": {"P001": "PMP-001", "P002": "PMP-002"},
        "sensors": {"TT": "bearing_temp", "FT": "flow"},
        "conversions": {"bearing_temp": Conversion(scale=5 / 9, offset=-160 / 9, unit="degF")},
        "time": TimeSpec(column="Time"),
    }
    wide = ReadingMapping(layout="wide", machine=None, sensor=None, **common)  # type: ignore[arg-type]
    rows, reader = _read(tmp_path / "w.csv", wide)
    got = sorted((m, s, round(v, 6)) for m, s, _, v in rows)
    assert got == [("PMP-001", "bearing_temp", 100.0), ("PMP-002", "bearing_temp", 0.0), ("PMP-002", "flow", 5.0)]
    # P009 matches the pattern but is no configured machine: refused with its column, not silently dropped.
    assert [(r.column, r.reason) for r in reader.refusals] == [("P009_TT", "unknown_machine")]
    long = ReadingMapping(tag="Tag", value="Value", **common)  # type: ignore[arg-type]
    mapper = RecordMapper(long, "t")
    readings, errors = mapper.map({"Time": "2026-01-01T00:00:00Z", "Tag": "P001_TT", "Value": 212})
    assert [(r.machine_id, r.sensor, round(r.value or 0, 6)) for r in readings] == [("PMP-001", "bearing_temp", 100.0)]
    assert not errors
