"""``vigil collect maintenance`` against the real Kafka: a CMMS export with good and bad rows through ``main()``;
the events on the maintenance topic in time order keyed by machine, the refusals on the dead-letter topic; an
import of the same export publishes nothing new; a grown export publishes only its new rows."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ingest.maintenance import main
from tests.conftest import ROOT
from vigil.config import KafkaSettings, Topics
from vigil.contracts import DeadLetter, MaintenanceEvent, decode
from vigil.testing import consume, raw

pytestmark = pytest.mark.integration

PLANT = """
[[sources.maintenance]]
name = "sap"
delimiter = ";"

[sources.maintenance.mapping]
machine = "Equipment"
kind = "Type"
work_order = "Order"
failure_mode = "Damage"
text = "Text"
max_text_chars = 50
failure_repair_s = 7200

[sources.maintenance.mapping.time]
column = "Date"
format = "%d.%m.%Y %H:%M"
zone = "Europe/Berlin"

[sources.maintenance.mapping.kinds]
M1 = "failure"
M2 = "repair"
M3 = "inspection"
M9 = "ignore"

[sources.maintenance.mapping.machines]
"10004711" = "PMP-001"
"""

HEADER = "Order;Equipment;Date;Type;Damage;Text"
ROWS = [
    "4003;10004711;03.03.2026 14:00;M2;;new bearing",  # row 2
    "4001;PMP-002;01.03.2026 09:30;m1 ;seal;leaking",  # row 3: the earliest
    "4002;10004711;02.03.2026 23:15;M1;bearing;noise",  # row 4
    "4004;MTR-001;05.03.2026 08:00;M3;;",  # row 5
    "4005;MTR-999;05.03.2026 08:00;M3;;",  # row 6: unknown_machine
    "4006;MTR-001;29.03.2026 02:30;M3;;",  # row 7: bad_timestamp (the hour Berlin skips)
    "4007;MTR-001;05.03.2026 09:00;ZZ;;",  # row 8: unknown_kind
    "4008;MTR-001;05.03.2026 10:00;M3;;" + "x" * 51,  # row 9: oversized
    "4009;HVAC-1;05.03.2026 11:00;M9;;cleaning",  # row 10: ignored
    "4002;10004711;02.03.2026 23:15;M1;bearing;noise",  # row 11: duplicate work order
    "4010;MTR-001;05.03.1969 10:00;M3;;",  # row 12: implausible_time
]
EVENTS = ["sap:4001", "sap:4001:repair", "sap:4002", "sap:4002:repair", "sap:4003", "sap:4004"]
REFUSED = {
    6: ("Equipment", "unknown_machine"),
    7: ("Date", "bad_timestamp"),
    8: ("Type", "unknown_kind"),
    9: ("Text", "oversized"),
    12: ("Date", "implausible_time"),
}


def _import(path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main([str(path), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    summary: dict[str, Any] = json.loads(out)
    return summary


def _read(kafka: KafkaSettings, topics: Topics, events: int, letters: int) -> tuple[list[Any], list[DeadLetter]]:
    """The maintenance records (kafka-python's, to see keys and partitions) and the dead letters, once at least
    ``events`` and ``letters`` arrived, read 3 s longer so that any extra one would be seen too."""

    def counts(out: list[Any]) -> tuple[int, int]:
        return sum(r.topic == topics.maintenance for r in out), sum(r.topic == topics.dead_letter for r in out)

    records = consume(
        kafka,
        [topics.maintenance, topics.dead_letter],
        lambda out: counts(out)[0] >= events and counts(out)[1] >= letters,
        map=raw,
        settle_s=3,
    )
    return (
        [r for r in records if r.topic == topics.maintenance],
        [decode(r.value) for r in records if r.topic == topics.dead_letter],
    )


def test_import_publishes_in_time_order_dead_letters_refusals_and_is_idempotent(
    kafka_settings: KafkaSettings,
    topics: Topics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "plant.toml"
    config.write_text((ROOT / "config" / "plant.example.toml").read_text() + PLANT)
    export = tmp_path / "export.csv"
    export.write_text("\n".join([HEADER, *ROWS]) + "\n")
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("VIGIL_TOPICS__MAINTENANCE", topics.maintenance)
    monkeypatch.setenv("VIGIL_TOPICS__DEAD_LETTER", topics.dead_letter)

    summary = _import(export, config, capsys)
    assert {k: summary[k] for k in ("rows", "imported", "duplicate", "ignored", "repairs_assumed")} == {
        "rows": 11,
        "imported": 6,
        "duplicate": 1,
        "ignored": 1,
        "repairs_assumed": 2,
    }
    assert summary["refused"] == {reason: 1 for _, reason in REFUSED.values()}
    assert {r["row"]: (r["column"], r["reason"]) for r in summary["refusals"]} == REFUSED

    records, letters = _read(kafka_settings, topics, len(EVENTS), len(REFUSED))
    events = [decode(r.value) for r in records]
    assert all(isinstance(e, MaintenanceEvent) for e in events)
    assert sorted(e.event_id for e in events) == EVENTS
    by_id = {e.event_id: e for e in events}
    failure = by_id["sap:4002"]
    assert (failure.machine_id, failure.event.value, failure.failure_mode, failure.text) == (
        "PMP-001",
        "failure",
        "bearing",
        "noise",
    )
    assert failure.ts.isoformat() == "2026-03-02T22:15:00+00:00"  # 23:15 in Berlin, winter time
    assert (by_id["sap:4002:repair"].ts - failure.ts).total_seconds() == 7200
    # keyed by machine; within each partition (the order a consumer sees) in time order
    assert all(r.key == decode(r.value).machine_id.encode() for r in records)
    per_partition: dict[int, list[Any]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_partition[r.partition].append(decode(r.value).ts)
    assert all(ts == sorted(ts) for ts in per_partition.values())
    # the whole export went out in time order: offsets of one machine follow its event times
    pmp1 = [e.event_id for e in sorted(events, key=lambda e: e.ts) if e.machine_id == "PMP-001"]
    assert pmp1 == ["sap:4002", "sap:4002:repair", "sap:4003"]

    assert {(d.offset, d.reason) for d in letters} == {(row, reason) for row, (_, reason) in REFUSED.items()}
    for d in letters:
        column = REFUSED[d.offset or 0][0]
        assert d.service == "ingest.maintenance" and d.source_topic == "file:export.csv"
        assert d.error.startswith(f"row {d.offset}, column {column}: ")
        assert json.loads(base64.b64decode(d.raw))["Order"] == ROWS[(d.offset or 0) - 2].split(";")[0]

    # the same export again: nothing new on the maintenance topic, every event a duplicate
    again = _import(export, config, capsys)
    assert (again["imported"], again["duplicate"], again["rows"]) == (0, len(EVENTS) + 1, 11)
    records, letters = _read(kafka_settings, topics, len(EVENTS), 2 * len(REFUSED))
    assert sorted(decode(r.value).event_id for r in records) == EVENTS
    # each import reports its refusals: the same rows once more (see docs/ingest-publishing.md)
    assert len(letters) == 2 * len(REFUSED)

    # the export grew by one row: only that row is published
    export.write_text("\n".join([HEADER, *ROWS, "4011;MTR-001;06.03.2026 08:00;M3;;oil"]) + "\n")
    grown = _import(export, config, capsys)
    assert (grown["imported"], grown["duplicate"]) == (1, len(EVENTS) + 1)
    records, _ = _read(kafka_settings, topics, len(EVENTS) + 1, 3 * len(REFUSED))
    assert sorted(decode(r.value).event_id for r in records) == sorted([*EVENTS, "sap:4011"])
