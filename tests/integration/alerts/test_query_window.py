"""``vigil query``'s default window is the recorded data's span, however long ago: a plant recorded in March 2025
is answered in full today (the window used to be the last 90 days, which said "no failures")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts import query
from vigil.contracts import Alert, MaintenanceEvent, Prediction
from vigil.influx import InfluxSink, MachineTags, Schema

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 3, tzinfo=UTC)
LAST_PREDICTION = datetime(2025, 3, 20, 23, tzinfo=UTC)
CAUGHT_AT = datetime(2025, 3, 11, 12, tzinfo=UTC)
# After the last prediction (the machine stopped reporting when it broke): only the maintenance span has it.
MISSED_AT = datetime(2025, 3, 25, 8, tzinfo=UTC)


@pytest.fixture
def march_2025(influx: Any) -> Any:
    machines = {m: MachineTags("pump", "north", "north-1") for m in ("PMP-001", "PMP-002")}
    schema = Schema(machines)
    sink = InfluxSink(influx.settings())
    t = START
    while t <= LAST_PREDICTION:
        for machine in machines:
            p = 0.8 if machine == "PMP-001" and CAUGHT_AT - timedelta(hours=30) <= t < CAUGHT_AT else 0.1
            sink.add_all(
                schema.points(Prediction(machine_id=machine, machine_type="pump", ts=t, model="m", p_failure=p))
            )
        t += timedelta(hours=1)
    opened = CAUGHT_AT - timedelta(hours=29)
    for seq, (state, ts) in enumerate((("open", opened), ("resolved", CAUGHT_AT + timedelta(hours=2))), start=1):
        alert = Alert(
            alert_id=f"PMP-001.failure_risk.{opened:%Y%m%dT%H%M%SZ}",
            machine_id="PMP-001",
            machine_type="pump",
            alert_kind="failure_risk",
            state=state,
            severity="warning",
            ts=ts,
            opened_at=opened,
            summary="bearing",
            seq=seq,
        )
        sink.add_all(schema.points(alert))
    for machine, ts in (("PMP-001", CAUGHT_AT), ("PMP-002", MISSED_AT)):
        sink.add_all(
            schema.points(MaintenanceEvent(machine_id=machine, ts=ts, event="failure", failure_mode="bearing"))
        )
    sink.flush()
    return influx


def _run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, influx: Any, *args: str) -> Any:
    monkeypatch.setenv("VIGIL_INFLUX__URL", influx.url)
    monkeypatch.setenv("VIGIL_INFLUX__API", "v1")
    assert query.main([*args, "--database", influx.database, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_default_window_is_the_span_of_predictions_and_maintenance(march_2025: Any) -> None:
    sink = InfluxSink(march_2025.settings())
    assert query.data_span(sink) == (START, MISSED_AT)
    now = datetime(2026, 12, 7, tzinfo=UTC)
    w = query.window(sink, None, None, now)
    assert (w.start, w.end) == (START, MISSED_AT + timedelta(microseconds=1))
    assert query.window(sink, None, None, now, until_now=True).end == now, "listing questions run on to now"
    assert query.window(sink, 7, None, now).start == MISSED_AT + timedelta(microseconds=1) - timedelta(days=7)


def test_vigil_query_failures_finds_last_years_failures_without_a_range(
    march_2025: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = _run(capsys, monkeypatch, march_2025, "failures")
    verdicts = sorted((r["machine"], r["failure_at"], r["verdict"]) for r in answer["failures"])
    assert verdicts == [
        ("PMP-001", CAUGHT_AT.isoformat(), "caught"),
        ("PMP-002", MISSED_AT.isoformat(), "missed"),
    ]
    assert answer["summary"]["failures"] == 2 and answer["summary"]["caught"] == 1


def test_vigil_query_machine_sees_last_years_history(
    march_2025: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _run(capsys, monkeypatch, march_2025, "machine", "PMP-001")
    assert [r.get("status") or r.get("event_kind") for r in rows] == ["open", "failure", "resolved"]


def test_an_empty_database_answers_no_failures(
    influx: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert query.data_span(InfluxSink(influx.settings())) is None
    answer = _run(capsys, monkeypatch, influx, "failures")
    assert answer["failures"] == [] and answer["summary"]["failures"] == 0
