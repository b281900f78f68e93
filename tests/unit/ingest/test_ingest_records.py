"""JSON records read by a ReadingMapping: layouts, dotted paths, tags, renames, quality, and every refusal named by
its field; and the one-model guarantee: the same data as JSON records and as a CSV file give the same readings."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.exceptions import PayloadError
from ingest.records import RecordMapper
from ingest.tabular import TableReader
from vigil.config.mapping import ReadingMapping, TagSpec, TimeSpec
from vigil.contracts import Quality, Reading

MACHINES = {"PMP-001": {"bearing_temp", "flow"}, "PMP-002": {"bearing_temp", "flow"}}
T = datetime(2026, 1, 1, tzinfo=UTC)
MS = int(T.timestamp() * 1000)


def reasons(errors: list[PayloadError]) -> list[tuple[str, str]]:
    """(reason, field) of each refusal; the field is the quoted name the detail starts with."""
    out = []
    for e in errors:
        assert e.detail.startswith("field '"), e.detail
        out.append((e.reason, e.detail.split("'")[1]))
    return out


# ------------------------------------------------------------------------------------------------ long layout


def test_long_record_with_renames_unit_and_quality() -> None:
    mapping = ReadingMapping(
        machine="meta.asset",
        sensor="point",
        value="v",
        unit="u",
        quality="q",
        time=TimeSpec(column="t", format="epoch_ms"),
        machines={"P-1": "PMP-001"},
        sensors={"temp": "bearing_temp"},
    )
    mapper = RecordMapper(mapping, source="kafka:x", machines=MACHINES)
    record = {"meta": {"asset": "P-1"}, "point": "temp", "t": MS, "v": 41.5, "u": "degC", "q": "uncertain"}
    [r], errors = mapper.map(record)
    assert errors == []
    assert (r.machine_id, r.sensor, r.ts, r.value, r.unit, r.quality, r.status_code, r.source) == (
        "PMP-001",
        "bearing_temp",
        T,
        41.5,
        "degC",
        Quality.UNCERTAIN,
        0x40000000,
        "kafka:x",
    )
    [r], _ = mapper.map({**record, "q": 0x80000000, "v": None})
    assert (r.quality, r.value) == (Quality.BAD, None)  # a status code; null is a reading without a value


def test_long_record_with_a_tag_converts_the_unit_and_drops_the_source_unit() -> None:
    mapping = ReadingMapping(
        tag="tag",
        machine=None,
        sensor=None,
        unit="unit",
        tags={
            "101": TagSpec(machine="PMP-001", sensor="bearing_temp", scale=5 / 9, offset=-160 / 9, unit="degF"),
            "FT01": TagSpec(machine="PMP-001", sensor="flow"),
        },
    )
    mapper = RecordMapper(mapping)
    [r], _ = mapper.map({"ts": "2026-01-01T00:00:00Z", "tag": 101, "value": 212, "unit": "degF"})
    assert (r.sensor, round(r.value or 0, 6), r.unit) == ("bearing_temp", 100.0, None)
    [r], _ = mapper.map({"ts": "2026-01-01T00:00:00Z", "tag": "FT01", "value": "12.5", "unit": "m3/h"})
    assert (r.sensor, r.value, r.unit) == ("flow", 12.5, "m3/h")
    readings, errors = mapper.map({"ts": "2026-01-01T00:00:00Z", "tag": "XX99", "value": 1})
    assert readings == [] and reasons(errors) == [("unknown_tag", "tag")]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1}, ("missing_field", "machine")),
        ({"machine": "PMP-001", "sensor": "flow", "value": 1}, ("missing_field", "ts")),
        ({"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z"}, ("missing_field", "value")),
        ({"machine": "PMP-001", "sensor": "flow", "ts": "soon", "value": 1}, ("bad_timestamp", "ts")),
        ({"machine": "PMP-001", "sensor": "flow", "ts": None, "value": 1}, ("bad_timestamp", "ts")),
        (
            {"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": True},
            ("wrong_type", "value"),
        ),
        (
            {"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": "1,5"},
            ("wrong_type", "value"),
        ),
        ({"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": [1]}, ("wrong_type", "value")),
        ({"machine": 7, "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1}, ("wrong_type", "machine")),
        (
            {"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1, "quality": "meh"},
            ("wrong_type", "quality"),
        ),
        (
            {"machine": "PMP-009", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1},
            ("unknown_machine", "sensor"),
        ),
        (
            {"machine": "PMP-001", "sensor": "noise", "ts": "2026-01-01T00:00:00Z", "value": 1},
            ("unknown_sensor", "sensor"),
        ),
    ],
)
def test_every_long_refusal_names_its_field(record: dict[str, Any], expected: tuple[str, str]) -> None:
    mapper = RecordMapper(ReadingMapping(quality="quality"), machines=MACHINES)
    readings, errors = mapper.map(record)
    assert readings == []
    assert reasons(errors) == [expected]


def test_without_machines_unknown_ones_are_left_to_the_validator_and_bad_ids_are_invalid() -> None:
    mapper = RecordMapper(ReadingMapping())
    [r], _ = mapper.map({"machine": "PMP-009", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1})
    assert r.machine_id == "PMP-009"
    _, [error] = mapper.map({"machine": "bad id!", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1})
    assert error.reason == "invalid" and "machine_id" in error.detail


def test_decimal_comma_and_machine_from_the_name() -> None:
    mapping = ReadingMapping(machine=None, machine_from_name=r"plant/(?P<machine>[^/]+)/", decimal=",")
    mapper = RecordMapper(mapping, machines=MACHINES)
    [r], _ = mapper.map({"sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": " 12,5 "}, "plant/PMP-002/x")
    assert (r.machine_id, r.value) == ("PMP-002", 12.5)
    _, errors = mapper.map({"sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1}, "elsewhere")
    assert reasons(errors) == [("missing_field", "machine_from_name")]


# ------------------------------------------------------------------------------------------------ wide layout


def test_wide_record_with_nested_tags_keeps_good_fields_and_refuses_bad_ones() -> None:
    mapping = ReadingMapping(
        layout="wide",
        machine=None,
        sensor=None,
        time=TimeSpec(column="header.time", format="%d.%m.%Y %H:%M", zone="Europe/Berlin"),
        ignore=["header"],
        tags={
            "data.P1.TT": TagSpec(machine="PMP-001", sensor="bearing_temp"),
            "data.P1.FT": TagSpec(machine="PMP-001", sensor="flow"),
            "data.P2.FT": TagSpec(machine="PMP-002", sensor="flow"),
            "data.P2.TT": TagSpec(machine="PMP-002", sensor="bearing_temp"),
        },
    )
    mapper = RecordMapper(mapping, machines=MACHINES)
    record = {
        "header": {"time": "01.01.2026 01:00", "site": "north"},
        "data": {"P1": {"TT": 41.0, "FT": None}, "P2": {"FT": "", "TT": False}, "P3": {"XX": 1}},
        "comment": "x",
    }
    readings, errors = mapper.map(record)
    assert [(r.machine_id, r.sensor, r.ts, r.value) for r in readings] == [("PMP-001", "bearing_temp", T, 41.0)]
    assert reasons(errors) == [("wrong_type", "data.P2.TT")]  # null and "" are no reading, a boolean is refused
    assert mapper.unmapped_fields == {"data.P3.XX", "comment"}
    mapper.map(record)
    assert mapper.counters["unmapped_fields"] == 2  # each once, not per record


def test_wide_record_with_a_machine_field_reads_every_field_as_a_sensor() -> None:
    # A nested field's sensor name is its dotted path, renamed by ``sensors`` like any other.
    mapping = ReadingMapping(
        layout="wide", sensor=None, machine="asset", quality="q", sensors={"values.T": "bearing_temp"}
    )
    mapper = RecordMapper(mapping, machines=MACHINES)
    readings, errors = mapper.map(
        {"ts": "2026-01-01T00:00:00Z", "asset": "PMP-002", "q": "bad", "flow": 3, "values": {"T": 50, "rpm": 1}}
    )
    assert [(r.machine_id, r.sensor, r.value, r.quality) for r in readings] == [
        ("PMP-002", "flow", 3.0, Quality.BAD),
        ("PMP-002", "bearing_temp", 50.0, Quality.BAD),
    ]
    assert reasons(errors) == [("unknown_sensor", "values.rpm")]
    readings, errors = mapper.map({"ts": "2026-01-01T00:00:00Z", "flow": 3})
    assert readings == [] and reasons(errors) == [("missing_field", "asset")]


def test_a_bad_time_refuses_the_whole_wide_record() -> None:
    mapping = ReadingMapping(layout="wide", machine="m", sensor=None)
    readings, errors = RecordMapper(mapping).map({"ts": "29.02.2026", "m": "PMP-001", "flow": 1, "bearing_temp": 2})
    assert readings == [] and reasons(errors) == [("bad_timestamp", "ts")]


def test_payloads_an_array_of_items_and_what_is_not_json() -> None:
    mapper = RecordMapper(ReadingMapping(time=TimeSpec(format="epoch_ms")))
    readings, errors = mapper.map_payload(
        b'[{"machine": "PMP-001", "sensor": "flow", "ts": %d, "value": 1}, "x", {"sensor": "flow"}]' % MS
    )
    assert [r.value for r in readings] == [1.0]
    assert [e.reason for e in errors] == ["not_object", "missing_field"]
    assert [e.reason for e in mapper.map_payload(b"{oops")[1]] == ["json"]
    assert [e.reason for e in mapper.map_payload(b"")[1]] == ["json"]


# ------------------------------------------------------------------------------------------------ one model


def _csv_and_records(path: Path, text: str, delimiter: str, typed: bool) -> list[dict[str, Any]]:
    """The file and the same rows as JSON records: empty cells are null; ``typed`` makes numbers numbers."""
    path.write_text(text)
    rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    records = []
    for row in rows:
        record: dict[str, Any] = {}
        for key, cell in row.items():
            if cell == "":
                record[key] = None  # JSON's empty cell
            elif typed:
                try:
                    record[key] = int(cell)
                except ValueError:
                    try:
                        record[key] = float(cell)
                    except ValueError:
                        record[key] = cell
            else:
                record[key] = cell
        records.append(record)
    return records


def _from_file(reader: TableReader, path: Path) -> tuple[set[tuple[Any, ...]], set[tuple[int, str, str]]]:
    got = set()
    for frame, _ in reader.read(path):
        for machine, sensor, ts, value in zip(frame.machine, frame.sensor, frame.ts, frame.value, strict=True):
            got.add((machine, sensor, round(float(ts), 3), None if math.isnan(value) else round(float(value), 9)))
    return got, {(r.row - 2, r.reason, r.column) for r in reader.refusals}


def _from_records(mapper: RecordMapper, records: list[dict[str, Any]]) -> tuple[set[tuple[Any, ...]], set[Any]]:
    got: set[tuple[Any, ...]] = set()
    refused = set()
    for i, record in enumerate(records):
        readings, errors = mapper.map(record)
        got |= {_key(r) for r in readings}
        refused |= {(i, e.reason, e.detail.split("'")[1]) for e in errors}
    return got, refused


def _key(r: Reading) -> tuple[Any, ...]:
    return (r.machine_id, r.sensor, round(r.ts.timestamp(), 3), None if r.value is None else round(r.value, 9))


WIDE = (
    "Time;P1_T;P1_F;P2_F;P2_T;Note\n"
    "01.03.2026 10:00:00;98,6;12,5;7;;x\n"
    "01.03.2026 10:01:00;;13;abc;40;y\n"
    "bad;99;1;2;3;\n"
    "29.03.2026 02:30:00;1;2;3;4;\n"  # the hour Berlin skips
    "25.10.2026 02:30:00;true;1,5;;5;\n"  # the hour Berlin repeats: the first (summer) one
)
LONG_TAGS = (
    "ts,tag,val,q\n"
    "2026-03-01T10:00:00Z,P1_T,98.6,good\n"
    "2026-03-01T10:00:00,P1_F,12.5,192\n"
    "2026-03-01T10:01:00+01:00,ZZZ,1,\n"
    "2026-03-01T10:02:00Z,P1_F,,bad\n"
    "2026-03-01T10:03:00Z,P1_F,hot,\n"
    "2026-03-01T10:04:00Z,P1_F,3,excellent\n"
    "2026-03-01T10:05:00Z,P2_X,3,\n"
)
LONG_NAMES = (
    "when,asset,point,value\n"
    "1772359200,P-1,temp,40.5\n"
    "1772359260,P-9,flow,1\n"
    "1772359320,P-1,noise,2\n"
    "x,P-1,flow,3\n"
    "1772359380.5,PMP-002,flow,-1e3\n"
)
TAGS = {
    "P1_T": TagSpec(machine="PMP-001", sensor="bearing_temp", scale=5 / 9, offset=-160 / 9),
    "P1_F": TagSpec(machine="PMP-001", sensor="flow"),
    "P2_F": TagSpec(machine="PMP-002", sensor="flow"),
    "P2_T": TagSpec(machine="PMP-002", sensor="bearing_temp"),
    "P2_X": TagSpec(machine="PMP-002", sensor="noise"),
}


@pytest.mark.parametrize("typed", [False, True], ids=["text", "typed"])
@pytest.mark.parametrize(
    ("text", "delimiter", "mapping"),
    [
        (
            WIDE,
            ";",
            ReadingMapping(
                layout="wide",
                machine=None,
                sensor=None,
                decimal=",",
                ignore=["Note"],
                time=TimeSpec(column="Time", format="%d.%m.%Y %H:%M:%S", zone="Europe/Berlin"),
                tags=TAGS,
            ),
        ),
        (
            LONG_TAGS,
            ",",
            ReadingMapping(tag="tag", machine=None, sensor=None, value="val", quality="q", tags=TAGS),
        ),
        (
            LONG_NAMES,
            ",",
            ReadingMapping(
                machine="asset",
                sensor="point",
                time=TimeSpec(column="when", format="epoch_s"),
                machines={"P-1": "PMP-001"},
                sensors={"temp": "bearing_temp"},
            ),
        ),
    ],
    ids=["wide", "long-tags", "long-names"],
)
def test_the_same_data_as_records_and_as_a_file_gives_the_same_readings_and_refusals(
    tmp_path: Path, text: str, delimiter: str, mapping: ReadingMapping, typed: bool
) -> None:
    records = _csv_and_records(tmp_path / "data.csv", text, delimiter, typed)
    from_file, file_refusals = _from_file(TableReader(mapping, MACHINES, delimiter=delimiter), tmp_path / "data.csv")
    from_records, record_refusals = _from_records(RecordMapper(mapping, machines=MACHINES), records)
    assert from_file  # the data has readings and refusals in every case: the comparison is not vacuous
    assert file_refusals
    assert from_records == from_file
    assert record_refusals == file_refusals
