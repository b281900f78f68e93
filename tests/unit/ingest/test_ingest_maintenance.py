"""The maintenance reader (rows -> events or refusals) and the CMMS file reading around it, without Kafka."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.exceptions import SourceError
from ingest.maintenance import (
    DEFAULT_SOURCE,
    MaintenanceReader,
    ReadResult,
    main,
    optional_keys,
    pick_source,
    read_records,
)
from vigil.config import VigilConfig
from vigil.config.mapping import MaintenanceMapping, MaintenanceSource, TimeSpec
from vigil.config.sources import Sources
from vigil.contracts import MaintenanceKind

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
MACHINES = {"PMP-001", "PMP-002", "MTR-001"}


def read(rows: list[Mapping[str, Any]], mapping: MaintenanceMapping | None = None, **kw: Any) -> ReadResult:
    reader = MaintenanceReader(mapping or MaintenanceMapping(work_order="wo"), MACHINES, source="sap", now=NOW, **kw)
    return reader.read(enumerate(rows, start=2))


def row(**kw: Any) -> dict[str, Any]:
    base = {"machine": "PMP-001", "ts": "2026-05-01T08:00:00Z", "kind": "failure", "wo": None}
    return {**base, **kw}


def refusal(result: ReadResult) -> tuple[int, str, str]:
    assert len(result.refusals) == 1, result.refusals
    r = result.refusals[0]
    return r.row, r.column, r.reason


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("bad", "column", "reason"),
    [
        ({"machine": ""}, "machine", "missing_field"),
        ({"machine": None}, "machine", "missing_field"),
        ({"ts": "  "}, "ts", "missing_field"),
        ({"kind": None}, "kind", "missing_field"),
        ({"machine": "PMP-404"}, "machine", "unknown_machine"),
        ({"ts": "01.05.2026"}, "ts", "bad_timestamp"),
        ({"ts": "1969-12-31T23:59:59Z"}, "ts", "implausible_time"),
        ({"ts": (NOW + timedelta(days=1, seconds=1)).isoformat()}, "ts", "implausible_time"),
        ({"kind": "scrap"}, "kind", "unknown_kind"),
        ({"wo": "W" * 201}, "wo", "oversized"),
    ],
)
def test_each_refusal_names_row_column_and_reason(bad: dict[str, Any], column: str, reason: str) -> None:
    result = read([row(wo="1"), row(**{"wo": "2", **bad})])
    assert refusal(result) == (3, column, reason)
    assert [e.event_id for e in result.events] == ["sap:1"]
    assert result.counters["rows"] == 2


def test_oversized_text_and_missing_field_absent_key() -> None:
    mapping = MaintenanceMapping(text="text", max_text_chars=10)
    result = read([row(text="x" * 10), row(text="x" * 11, ts="2026-05-02T00:00:00Z")], mapping)
    assert refusal(result) == (3, "text", "oversized")
    assert "11 characters" in result.refusals[0].detail and len(result.events) == 1
    # a JSON record without the key at all is the same as an empty cell
    result = read([{"machine": "PMP-001", "kind": "failure"}])
    assert refusal(result) == (2, "ts", "missing_field")


def test_a_day_ahead_is_still_plausible() -> None:
    result = read([row(ts=(NOW + timedelta(days=1)).isoformat())])
    assert not result.refusals and len(result.events) == 1


def test_a_dst_gap_time_is_a_bad_timestamp() -> None:
    mapping = MaintenanceMapping(time=TimeSpec(format="%d.%m.%Y %H:%M", zone="Europe/Berlin"))
    result = read([row(ts="29.03.2026 02:30")], mapping)
    assert refusal(result) == (2, "ts", "bad_timestamp")


def test_refusal_carries_the_row_into_its_dead_letter() -> None:
    result = read([row(machine="PMP-404", wo="77")])
    letter = result.refusals[0].dead_letter("file:export.csv")
    assert letter.service == "ingest.maintenance"
    assert letter.reason == "unknown_machine" and letter.offset == 2 and letter.source_topic == "file:export.csv"
    assert letter.error.startswith("row 2, column machine: machine 'PMP-404'")
    import base64

    assert json.loads(base64.b64decode(letter.raw))["wo"] == "77"


# ---------------------------------------------------------------------------------------------- value maps


def test_kind_codes_case_and_blanks_and_the_machines_rename() -> None:
    mapping = MaintenanceMapping(
        kinds={"ZM01": "failure", "ZM02": "repair", "insp": "inspection", "Cleaning": "ignore"},
        machines={"4711-PUMP": "PMP-002"},
    )
    rows = [
        row(kind=" zm01 ", ts="2026-05-01T00:00:00Z"),
        row(kind="ZM02", ts="2026-05-02T00:00:00Z", machine="4711-PUMP"),
        row(kind="INSP", ts="2026-05-03T00:00:00Z"),
        row(kind="cleaning", ts="2026-05-04T00:00:00Z", machine="HVAC-9"),  # ignored before the machine is judged
        row(kind="breakdown", ts="2026-05-05T00:00:00Z"),  # the defaults are replaced, not merged
    ]
    result = read(rows, mapping)
    assert [(e.machine_id, e.event) for e in result.events] == [
        ("PMP-001", MaintenanceKind.FAILURE),
        ("PMP-002", MaintenanceKind.REPAIR),
        ("PMP-001", MaintenanceKind.INSPECTION),
    ]
    assert result.counters["ignored"] == 1
    assert refusal(result) == (6, "kind", "unknown_kind")


def test_a_rename_to_an_unknown_machine_says_both_names() -> None:
    mapping = MaintenanceMapping(machines={"A-1": "PMP-404"})
    result = read([row(machine="A-1")], mapping)
    assert refusal(result) == (2, "machine", "unknown_machine")
    assert "'PMP-404' (renamed from 'A-1')" in result.refusals[0].detail


def test_fields_are_taken_as_mapped_and_typed_values_become_text() -> None:
    mapping = MaintenanceMapping(
        machine="Asset",
        time=TimeSpec(column="When", format="epoch_ms"),
        kind="Type",
        failure_mode="Cause",
        work_order="Order",
        text="Notes",
    )
    record = {
        "Asset": "MTR-001",
        "When": 1767225600000,
        "Type": "CM",
        "Cause": " winding ",
        "Order": 4711,
        "Notes": "x",
    }
    (event,) = read([record], mapping).events
    assert event.event_id == "sap:4711"
    assert (event.machine_id, event.ts, event.event) == ("MTR-001", datetime(2026, 1, 1, tzinfo=UTC), "failure")
    assert (event.failure_mode, event.text) == ("winding", "x")


# ---------------------------------------------------------------------------------------------- ids and duplicates


def test_digest_ids_are_stable_and_distinguish_kind_and_failure_mode() -> None:
    mapping = MaintenanceMapping(failure_mode="mode")
    rows = [row(mode="bearing"), row(mode="seal"), row(kind="repair"), row(mode="bearing", machine="PMP-002")]
    first, again = read(rows, mapping), read(rows, mapping)
    ids = [e.event_id for e in first.events]
    assert ids == [e.event_id for e in again.events]
    assert len(set(ids)) == 4 and all(len(i) == 40 for i in ids)
    # another reader (another process, another day) gives the same id for the same record
    later = MaintenanceReader(mapping, MACHINES, now=NOW + timedelta(days=30)).read([(9, rows[0])])
    assert later.events[0].event_id == ids[0]


def test_empty_work_order_falls_back_to_the_digest() -> None:
    (event,) = read([row(wo="")]).events
    assert ":" not in event.event_id and len(event.event_id) == 40


def test_duplicates_in_one_file_are_counted_and_the_first_wins() -> None:
    rows = [
        row(wo="A", text="first"),
        row(wo="A", kind="repair", ts="2026-05-03T00:00:00Z"),  # same work order: a duplicate whatever it says
        row(wo="B"),
        row(),  # digest id
        row(),  # the same digest again
    ]
    result = read(rows, MaintenanceMapping(work_order="wo", text="text"))
    assert [e.event_id.split(":")[0] for e in result.events] == ["sap", "sap", result.events[2].event_id]
    assert [e.text for e in result.events if e.event_id == "sap:A"] == ["first"]
    assert result.counters["duplicate"] == 2
    assert result.summary("f.csv", imported=3)["duplicate"] == 2


# ---------------------------------------------------------------------------------------------- repairs, order


def test_failure_repair_s_adds_a_repair_after_each_failure() -> None:
    mapping = MaintenanceMapping(work_order="wo", failure_repair_s=3600)
    rows = [
        row(wo="1", ts="2026-05-01T08:00:00Z"),
        row(wo="2", ts="2026-05-01T08:30:00Z", kind="inspection"),
        row(wo="3", ts="2026-05-02T08:00:00Z"),
        row(wo="1", ts="2026-05-09T08:00:00Z"),  # a duplicate failure makes no second repair
        row(wo="4", ts=(NOW - timedelta(minutes=30)).isoformat()),  # its repair would be in the future
    ]
    result = read(rows, mapping)
    assert [(e.event_id, e.event.value, e.ts.isoformat()) for e in result.events] == [
        ("sap:1", "failure", "2026-05-01T08:00:00+00:00"),
        ("sap:2", "inspection", "2026-05-01T08:30:00+00:00"),
        ("sap:1:repair", "repair", "2026-05-01T09:00:00+00:00"),
        ("sap:3", "failure", "2026-05-02T08:00:00+00:00"),
        ("sap:3:repair", "repair", "2026-05-02T09:00:00+00:00"),
        ("sap:4", "failure", "2026-06-01T11:30:00+00:00"),
    ]
    assert result.counters["repair_assumed"] == 2 and result.counters["repair_not_due"] == 1
    assert result.counters["duplicate"] == 1
    # once due (a later import), the repair is made with the same id
    later = MaintenanceReader(mapping, MACHINES, source="sap", now=NOW + timedelta(hours=1)).read([(6, rows[4])])
    assert [e.event_id for e in later.events] == ["sap:4", "sap:4:repair"]


def test_failure_repair_s_zero_keeps_the_failure_first() -> None:
    result = read([row(wo="1")], MaintenanceMapping(work_order="wo", failure_repair_s=0))
    assert [e.event for e in result.events] == [MaintenanceKind.FAILURE, MaintenanceKind.REPAIR]


def test_events_come_out_in_time_order_across_zones() -> None:
    mapping = MaintenanceMapping(work_order="wo", time=TimeSpec(zone="America/New_York"))
    rows = [
        row(wo="late", ts="2026-05-03T00:00:00"),
        row(wo="utc", ts="2026-05-01T06:00:00Z"),  # 06:00Z is before 02:00 New York (06:00Z)? equal: file order
        row(wo="early", ts="2026-05-01T01:00:00"),  # 05:00Z
        row(wo="same", ts="2026-05-01T02:00:00"),  # 06:00Z, after "utc" in the file
    ]
    result = read(rows, mapping)
    assert [e.event_id for e in result.events] == ["sap:early", "sap:utc", "sap:same", "sap:late"]


# ---------------------------------------------------------------------------------------------- files


def test_csv_with_delimiter_encoding_and_a_multiline_cell(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    text = (
        "Anlage;Zeit;Art;Auftrag;Text\n"
        'PMP-001;15.01.2026 08:00;Störung;100;"Lager\nfestgefressen"\n'
        "PMP-404;16.01.2026 08:00;Störung;101;Prüfung\n"
        "\n"
        "PMP-002;17.01.2026 08:00;Wartung;102;Öl\n"
    )
    path.write_bytes(text.encode("cp1252"))
    source = MaintenanceSource(
        name="sap",
        delimiter=";",
        encoding="cp1252",
        mapping=MaintenanceMapping(
            machine="Anlage",
            time=TimeSpec(column="Zeit", format="%d.%m.%Y %H:%M", zone="Europe/Berlin"),
            kind="Art",
            work_order="Auftrag",
            text="Text",
            kinds={"Störung": "failure", "Wartung": "inspection"},
        ),
    )
    mapping, rows = read_records(path, source)
    result = MaintenanceReader(mapping, MACHINES, source="sap", now=NOW).read(rows)
    assert [(e.event_id, e.text, e.ts.hour) for e in result.events] == [
        ("sap:100", "Lager\nfestgefressen", 7),
        ("sap:102", "Öl", 7),
    ]
    # spreadsheet rows: the header is 1, the two-line cell is one row, the blank line keeps its number
    assert [(r.row, r.reason) for r in result.refusals] == [(3, "unknown_machine")]
    assert result.counters["rows"] == 3


def test_a_missing_mapped_column_fails_before_any_row_naming_column_and_key(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("machine,ts,kind\nPMP-001,2026-01-01T00:00:00Z,failure\n")
    source = MaintenanceSource(name="sap", mapping=MaintenanceMapping(work_order="Order"))
    with pytest.raises(SourceError) as exc:
        read_records(path, source)
    assert "no column 'Order' (mapping.work_order of [[sources.maintenance]] 'sap')" in str(exc.value)
    time_source = MaintenanceSource(name="x", mapping=MaintenanceMapping(time=TimeSpec(column="Date")))
    with pytest.raises(SourceError, match=r"'Date' \(mapping.time.column"):
        read_records(path, time_source)


def test_the_default_mapping_takes_its_optional_columns_when_present(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("\ufeffmachine,ts,kind,text\nPMP-001,2026-01-01T00:00:00Z,failure,seized\n")
    mapping, rows = read_records(path, DEFAULT_SOURCE, optional=optional_keys(DEFAULT_SOURCE))
    assert (mapping.text, mapping.work_order, mapping.failure_mode) == ("text", None, None)
    (event,) = MaintenanceReader(mapping, MACHINES, now=NOW).read(rows).events
    assert event.text == "seized"
    path.write_text("machine,ts\nPMP-001,2026-01-01T00:00:00Z\n")
    with pytest.raises(SourceError, match="no column 'kind'"):
        read_records(path, DEFAULT_SOURCE, optional=optional_keys(DEFAULT_SOURCE))


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "export.parquet"
    table = pa.table(
        {
            "machine": ["PMP-001", "PMP-001", "PMP-002"],
            "ts": pa.array(
                [datetime(2026, 1, 2, 8), datetime(2026, 1, 1, 8), None], type=pa.timestamp("ms")
            ),  # naive: local in the zone
            "kind": ["failure", "repair", "failure"],
            "work_order": pa.array([11, 12, 13], type=pa.int64()),
        }
    )
    pq.write_table(table, path)
    source = MaintenanceSource(
        name="cmms", mapping=MaintenanceMapping(work_order="work_order", time=TimeSpec(zone="Europe/Berlin"))
    )
    mapping, rows = read_records(path, source)
    result = MaintenanceReader(mapping, MACHINES, source="cmms", now=NOW).read(rows)
    assert [(e.event_id, e.ts) for e in result.events] == [
        ("cmms:12", datetime(2026, 1, 1, 7, tzinfo=UTC)),
        ("cmms:11", datetime(2026, 1, 2, 7, tzinfo=UTC)),
    ]
    assert [(r.row, r.column, r.reason) for r in result.refusals] == [(4, "ts", "missing_field")]


def test_unreadable_files_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        read_records(tmp_path / "absent.csv", DEFAULT_SOURCE)
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(SourceError, match="unknown file type"):
        read_records(tmp_path / "x.xlsx", DEFAULT_SOURCE)
    bad = tmp_path / "bad.csv"
    good = b"PMP-001,2026-01-01T00:00:00Z,failure\n" * 20_000  # past the first buffered read
    bad.write_bytes(b"machine,ts,kind\n" + good + b"PMP-001,2026-01-01T00:00:00Z,fail\xffure\n")
    _, rows = read_records(bad, DEFAULT_SOURCE, optional=optional_keys(DEFAULT_SOURCE))
    with pytest.raises(SourceError, match=r"cannot read after row \d+ as utf-8"):
        list(rows)
    bad.write_bytes(b"machine,ts,k\xffind\n")
    with pytest.raises(SourceError, match=r"cannot read .*bad.csv as utf-8 \(the source's encoding\)"):
        read_records(bad, DEFAULT_SOURCE)


# ---------------------------------------------------------------------------------------------- command


def test_pick_source(example_config: VigilConfig) -> None:
    assert pick_source(example_config, None) is DEFAULT_SOURCE
    with pytest.raises(SourceError, match="configured: none"):
        pick_source(example_config, "sap")
    one = example_config.model_copy(update={"sources": Sources(maintenance=[MaintenanceSource(name="sap")])})
    assert pick_source(one, None).name == "sap" and pick_source(one, "sap").name == "sap"
    two = example_config.model_copy(
        update={"sources": Sources(maintenance=[MaintenanceSource(name="sap"), MaintenanceSource(name="maximo")])}
    )
    with pytest.raises(SourceError, match=r"several .* \(sap, maximo\): choose one with --source"):
        pick_source(two, None)
    assert pick_source(two, "maximo").name == "maximo"


def test_dry_run_prints_the_summary_and_needs_no_kafka(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "export.csv"
    lines = ["machine,ts,kind,work_order", "PMP-001,2026-01-01T00:00:00Z,failure,1", "PMP-001,x,failure,2"]
    lines += ["PMP-002,2026-01-02T00:00:00Z,pm,1", "PMP-002,2026-01-02T00:00:00Z,pm,3"]
    path.write_text("\n".join(lines) + "\n")
    again = tmp_path / "again.csv"
    again.write_text(path.read_text())
    env = {"VIGIL_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # nothing listens there; a dry run never connects
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert main([str(path), str(again), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    first, second = (json.loads(line) for line in out.splitlines())
    assert first == {
        "file": str(path),
        "rows": 4,
        "imported": 2,
        "duplicate": 1,
        "ignored": 0,
        "refused": {"bad_timestamp": 1},
        "refusals": [{"row": 3, "column": "ts", "reason": "bad_timestamp", "detail": "'x' is not ISO 8601"}],
        "repairs_assumed": 0,
        "repairs_not_yet_due": 0,
    }
    # the second file repeats the first: every event a duplicate, counted across the files of one run
    assert (second["imported"], second["duplicate"]) == (0, 3)
    assert "export.csv: 4 rows, would import 2 event(s), 1 duplicate, 0 ignored, 1 refused (bad_timestamp 1)" in err


def test_bad_configuration_and_unreadable_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "export.csv"
    path.write_text("machine,ts\nPMP-001,2026-01-01T00:00:00Z\n")
    assert main([str(path), "--dry-run"]) == 2
    assert "no column 'kind' (mapping.kind of [[sources.maintenance]] 'maintenance')" in capsys.readouterr().err
    assert main([str(path), "--dry-run", "--source", "sap"]) == 2
    assert "no [[sources.maintenance]] named 'sap'" in capsys.readouterr().err
    config = tmp_path / "plant.toml"
    config.write_text("plant = 'x'\n")
    assert main([str(path), "--dry-run", "--config", str(config)]) == 2
    assert "invalid" in capsys.readouterr().err
