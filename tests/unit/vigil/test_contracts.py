"""Message contracts: round trips, typed errors with reasons, schema version on the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.contracts import (
    MESSAGE_KINDS,
    Alert,
    AlertState,
    Contribution,
    DeadLetter,
    DriftEvent,
    FeatureVector,
    Gap,
    MaintenanceEvent,
    MaintenanceKind,
    Prediction,
    Quality,
    Reading,
    ReadingBatch,
    ReadingColumns,
    Sample,
    SegmentAuditReport,
    SensorColumn,
    Severity,
    decode,
    decode_as,
    encode,
)
from vigil.exceptions import ContractError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def one_of_each() -> list[object]:
    contribution = Contribution(feature="bearing_temp.mean", value=81.0, normal=62.0, normal_std=3.0, contribution=1.7)
    return [
        Reading(machine_id="PMP-001", sensor="flow", ts=T0, value=120.5, unit="m3/h", status_code=0),
        ReadingBatch(
            machine_id="PMP-001",
            samples=[
                Sample(sensor="flow", ts=T0, value=1.0),
                Sample(sensor="speed", ts=T0, value=None, quality=Quality.BAD, status_code=0x80000000),
            ],
        ),
        ReadingColumns(
            machine_id="PMP-001",
            columns=[
                SensorColumn(sensor="flow", ts=[T0.timestamp(), T0.timestamp() + 1.5], value=[1.0, None]),
                SensorColumn(sensor="speed", unit="rpm", ts=[T0.timestamp()], value=[3.0], quality=[Quality.BAD]),
            ],
        ),
        Gap(machine_id="PMP-001", start=T0, end=T0 + timedelta(minutes=5), reason="reconnect"),
        MaintenanceEvent(machine_id="PMP-001", ts=T0, event=MaintenanceKind.FAILURE, failure_mode="bearing"),
        FeatureVector(
            machine_id="PMP-001",
            machine_type="pump",
            window_start=T0,
            window_end=T0 + timedelta(minutes=10),
            features={"flow.mean": 1.0, "speed.mean": None},
            missing=("speed",),
        ),
        Prediction(
            machine_id="PMP-001",
            machine_type="pump",
            ts=T0,
            model="pump-logreg",
            p_failure=0.7,
            contributions=(contribution,),
        ),
        Alert(
            alert_id="a1",
            machine_id="PMP-001",
            alert_kind="failure_risk",
            state=AlertState.OPEN,
            severity=Severity.WARNING,
            ts=T0,
            opened_at=T0,
            summary="bearing wear likely",
            contributions=(contribution,),
        ),
        DriftEvent(ts=T0, machine_type="pump", detector="adwin", target="error", event="drift"),
        DeadLetter(service="features", reason="json", error="bad", raw="AAEC"),
        SegmentAuditReport(ts=T0, dimension="machine_type", segment="pump", recall=0.9, findings=("recall 0.6",)),
    ]


@pytest.mark.parametrize("message", one_of_each(), ids=lambda m: type(m).__name__)
def test_every_contract_round_trips_through_json(message: object) -> None:
    payload = encode(message)  # type: ignore[arg-type]
    body = json.loads(payload)
    assert body["v"] == 1
    assert body["kind"] in MESSAGE_KINDS
    assert decode(payload) == message


def test_every_contract_is_covered_by_the_round_trip() -> None:
    assert {type(m) for m in one_of_each()} == set(MESSAGE_KINDS.values())


@pytest.mark.parametrize(
    ("payload", "reason", "fragment"),
    [
        (b"{not json", "json", "JSON"),
        (b"[1, 2]", "json", "not a JSON object"),
        (b'{"v": 1, "kind": "no_such_kind"}', "kind", "no_such_kind"),
        (b'{"v": 1}', "kind", "kind"),
        (
            b'{"v": 2, "kind": "reading", "machine_id": "m", "sensor": "s", "ts": "2026-01-01T00:00:00Z", "value": 1}',
            "version",
            "v1",
        ),
        (
            b'{"v": 1, "kind": "reading", "machine_id": "m", "sensor": "s", "ts": "2026-01-01T00:00:00", "value": 1}',
            "schema",
            "timezone",
        ),
        (
            b'{"v": 1, "kind": "reading", "machine_id": "m", "sensor": "s", "ts": "2026-01-01T00:00:00Z", "value": "hot"}',
            "schema",
            "value",
        ),
        (b'{"v": 1, "kind": "reading_batch", "machine_id": "m", "samples": []}', "schema", "samples"),
        (
            b'{"v": 1, "kind": "reading", "machine_id": "bad id!", "sensor": "s", "ts": "2026-01-01T00:00:00Z", "value": 1}',
            "schema",
            "machine_id",
        ),
        (
            b'{"v": 1, "kind": "reading", "machine_id": "m", "sensor": "s", "ts": "2026-01-01T00:00:00Z", "value": 1, "extra": 1}',
            "schema",
            "extra",
        ),
    ],
)
def test_invalid_payloads_raise_one_typed_error_with_the_reason(payload: bytes, reason: str, fragment: str) -> None:
    with pytest.raises(ContractError) as info:
        decode(payload)
    assert info.value.reason == reason
    assert fragment.lower() in str(info.value).lower()


def test_decode_as_refuses_another_kind() -> None:
    payload = encode(Gap(machine_id="m", start=T0, end=T0, reason="x"))
    with pytest.raises(ContractError, match="expected 'reading'"):
        decode_as(payload, Reading)
    assert decode_as(payload, Gap).reason == "x"


def test_timestamps_are_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    r = Reading(machine_id="m", sensor="s", ts=datetime(2026, 1, 1, 13, 0, tzinfo=cet), value=1.0)
    assert r.ts == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert r.ts.utcoffset() == timedelta(0)


def test_batch_expands_to_readings_of_its_machine() -> None:
    batch = one_of_each()[1]
    assert isinstance(batch, ReadingBatch)
    readings = list(batch.readings())
    assert [(r.machine_id, r.sensor, r.quality) for r in readings] == [
        ("PMP-001", "flow", Quality.GOOD),
        ("PMP-001", "speed", Quality.BAD),
    ]
    assert readings[0].key == ("PMP-001", "flow", T0)


@given(
    value=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    seconds=st.integers(min_value=0, max_value=10**9),
    micros=st.integers(min_value=0, max_value=999_999),
)
def test_reading_round_trip_preserves_value_and_microsecond_timestamp(
    value: float | None, seconds: int, micros: int
) -> None:
    ts = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micros)
    r = Reading(machine_id="m-1", sensor="s_1", ts=ts, value=value)
    back = decode_as(encode(r), Reading)
    assert back.ts == ts
    assert back.value == value


def test_quality_from_status_code_severity_bits() -> None:
    assert Quality.from_status_code(0x00000000) is Quality.GOOD
    assert Quality.from_status_code(0x408F0000) is Quality.UNCERTAIN
    assert Quality.from_status_code(0x80340000) is Quality.BAD  # BadNodeIdUnknown
    assert Quality.from_status_code(0xC0000000) is Quality.BAD
