"""Line protocol and the InfluxDB schema, without a server (the round trip against one is an integration test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.contracts import (
    Alert,
    Contribution,
    DriftEvent,
    FeatureVector,
    MachineState,
    MaintenanceEvent,
    Prediction,
    ReadingBatch,
    Sample,
)
from vigil.influx import (
    ALERTS,
    CONTRIBUTIONS,
    FEATURES,
    PREDICTIONS,
    MachineTags,
    Point,
    Schema,
    escape_key,
    escape_measurement,
    escape_string_field,
    format_field,
    parse_influxql,
    ts_ns,
)

T = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
SCHEMA = Schema({"PMP-001": MachineTags("pump", "north", "north-1")})


def test_escaping_rules_per_element() -> None:
    assert escape_measurement("my meas,x=1") == r"my\ meas\,x=1"
    assert escape_key("a b,c=d") == r"a\ b\,c\=d"
    assert escape_key("two\nlines") == r"two\ lines"
    assert escape_key("trailing\\") == "trailing_"
    assert escape_string_field('he said "hi" \\o/') == r'"he said \"hi\" \\o/"'


def test_field_types_are_stable() -> None:
    assert format_field(1.0) == "1.0"
    assert format_field(1) == "1i"
    assert format_field(False) == "false"
    assert format_field(1e-7) == "1e-07"
    assert format_field(float("inf")) is None
    assert format_field("x") == '"x"'


def test_point_drops_empty_tags_and_unstorable_fields() -> None:
    p = Point("m", {"a": "1", "b": None, "c": ""}, {"x": None, "y": float("nan"), "z": 2.0}, 5)
    assert p.line() == "m,a=1 z=2.0 5"
    assert Point("m", {"a": "1"}, {"x": None}, 5).line() is None


def test_tags_are_sorted_for_a_canonical_series_key() -> None:
    p = Point("m", {"z": "1", "a": "2"}, {"v": 1.0}, 1)
    assert p.line() == "m,a=2,z=1 v=1.0 1"


def test_timestamps_are_exact_nanoseconds() -> None:
    assert ts_ns(T) == 1795687200123456000
    assert ts_ns(T + timedelta(microseconds=1)) - ts_ns(T) == 1000


def _prediction(**kw: object) -> Prediction:
    base: dict[str, object] = {
        "machine_id": "PMP-001",
        "machine_type": "pump",
        "ts": T,
        "model": "logistic",
        "p_failure": 0.7,
        "contributions": (
            Contribution(feature="bearing_temp.mean", value=97.0, normal=70.0, normal_std=3.0, contribution=1.5),
            Contribution(feature="vibration_rms.max", value=5.0, normal=4.0, contribution=0.2),
        ),
    }
    base.update(kw)
    return Prediction.model_validate(base)


def test_prediction_points_carry_identity_tags_and_contributions() -> None:
    points = SCHEMA.points(_prediction())
    assert [p.measurement for p in points] == [PREDICTIONS, CONTRIBUTIONS, CONTRIBUTIONS]
    pred = points[0]
    assert pred.tags["machine"] == "PMP-001" and pred.tags["site"] == "north" and pred.tags["line"] == "north-1"
    assert pred.tags["model"] == "logistic"
    assert "decision" not in pred.tags, "a decision is a value, not identity: a replay must overwrite it"
    assert pred.fields["top_feature"] == "bearing_temp.mean"
    assert {p.tags["feature"] for p in points[1:]} == {"bearing_temp.mean", "vibration_rms.max"}
    assert all(p.ts_ns == ts_ns(T) for p in points)


def test_features_alert_drift_maintenance_readings() -> None:
    fv = FeatureVector(
        machine_id="PMP-001",
        machine_type="pump",
        window_start=T - timedelta(minutes=10),
        window_end=T,
        features={"bearing_temp.mean": 70.5, "flow.mean": None},
        missing=("flow",),
        state=MachineState.RUNNING,
        count=12,
    )
    (point,) = SCHEMA.points(fv)
    assert point.measurement == FEATURES and point.ts_ns == ts_ns(T)
    line = point.line()
    assert line is not None and "bearing_temp.mean=70.5" in line and "flow.mean" not in line and "count=12i" in line

    alert = Alert(
        alert_id="PMP-001.failure_risk.x",
        machine_id="PMP-001",
        alert_kind="failure_risk",
        state="open",
        severity="warning",
        ts=T,
        opened_at=T,
        summary="risk",
    )
    (a,) = SCHEMA.points(alert)
    assert a.measurement == ALERTS
    assert a.tags["state"] == "open" and a.tags["alert_id"] == "PMP-001.failure_risk.x" and a.tags["type"] == "pump"
    assert a.fields["status"] == "open"

    drift = DriftEvent(ts=T, machine_type="pump", detector="adwin", target="error", event="drift")
    (d,) = SCHEMA.points(drift)
    assert d.tags["event"] == "drift" and d.tags["machine"] is None and d.line() is not None

    m = MaintenanceEvent(machine_id="PMP-001", ts=T, event="failure", failure_mode="bearing")
    (mp,) = SCHEMA.points(m)
    assert mp.tags["event"] == "failure" and mp.tags["site"] == "north"

    batch = ReadingBatch(
        machine_id="PMP-001", samples=[Sample(sensor="flow", ts=T, value=1.0), Sample(sensor="speed", ts=T, value=None)]
    )
    lines = [p.line() for p in SCHEMA.points(batch)]
    assert lines[0] is not None and lines[0].startswith("readings,") and "sensor=flow" in lines[0]
    assert lines[1] is not None and "value=" not in lines[1] and 'quality="good"' in lines[1]


@pytest.mark.parametrize("machine", ["PMP 1", "a,b", "x=y"])
def test_odd_machine_ids_stay_one_tag(machine: str) -> None:
    line = Point("m", {"machine": machine}, {"v": 1.0}, 1).line()
    assert line is not None
    head = line.split(" v=")[0]
    assert head.count(",") - head.count("\\,") == 1


def test_parse_influxql_flattens_series_and_raises_on_errors() -> None:
    rows = parse_influxql(
        {
            "results": [
                {"series": [{"name": "m", "tags": {"t": "a"}, "columns": ["time", "v"], "values": [[1, 2], [3, 4]]}]}
            ]
        }
    )
    assert rows == [
        {"_measurement": "m", "t": "a", "time": 1, "v": 2},
        {"_measurement": "m", "t": "a", "time": 3, "v": 4},
    ]
    from vigil.influx import InfluxError

    with pytest.raises(InfluxError, match="bad"):
        parse_influxql({"results": [{"error": "bad"}]})


def test_column_and_packed_batches_give_the_same_points_as_rows() -> None:
    from ingest.publisher import encode_batch, encode_columns, encode_packed
    from vigil.contracts import Reading, decode

    readings = [
        Reading(machine_id="PMP-001", sensor=s, ts=T + timedelta(seconds=i), value=float(i), unit="u")
        for i in range(3)
        for s in ("flow", "speed")
    ]
    lines = [
        sorted(p.line() or "" for p in SCHEMA.points(decode(encoder("PMP-001", readings, "test"))))
        for encoder in (encode_batch, encode_columns, encode_packed)
    ]
    assert len(lines[0]) == 6 and lines[0] == lines[1] == lines[2]


def test_a_state_decided_by_a_held_value_carries_it() -> None:
    fv = FeatureVector(
        machine_id="PMP-001",
        machine_type="pump",
        window_start=T - timedelta(minutes=10),
        window_end=T,
        features={"speed.mean": None},
        missing=("speed",),
        state=MachineState.OFF,
        state_held=0.0,
        state_held_ts=T - timedelta(hours=2),
    )
    line = SCHEMA.points(fv)[0].line()
    assert line is not None and 'state="off"' in line and "state_held=0.0" in line
    plain = SCHEMA.points(fv.model_copy(update={"state_held": None, "state_held_ts": None}))[0].line()
    assert plain is not None and "state_held" not in plain
