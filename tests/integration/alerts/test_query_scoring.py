"""``vigil query`` scores as ``vigil backtest`` does (real InfluxDB): an alert raised before a repair never counts
for the next life's failure, an early warning still open at its failure is a catch however early, and false
alarms are divided by the machines' operating time read from their predictions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts import query
from vigil.contracts import Alert, MaintenanceEvent, Prediction
from vigil.influx import InfluxSink, MachineTags, Schema

pytestmark = pytest.mark.integration

T = datetime(2025, 6, 2, tzinfo=UTC)
H = timedelta(hours=1)


def _alert(machine: str, opened: datetime, states: list[tuple[str, datetime]]) -> list[Alert]:
    return [
        Alert(
            alert_id=f"{machine}.failure_risk.{opened:%Y%m%dT%H%M%SZ}",
            machine_id=machine,
            machine_type="pump",
            alert_kind="failure_risk",
            state=state,
            severity="warning",
            ts=ts,
            opened_at=opened,
            summary="bearing",
            seq=seq,
        )
        for seq, (state, ts) in enumerate(states, start=1)
    ]


@pytest.fixture
def plant(influx: Any) -> Any:
    machines = {m: MachineTags("pump", "north", "north-1") for m in ("PMP-001", "PMP-002")}
    schema = Schema(machines)
    sink = InfluxSink(influx.settings())
    t = T
    while t <= T + 200 * H:
        for machine in machines:
            # PMP-002 is off half of the time: its off windows are not operating time.
            off = machine == "PMP-002" and (t - T) // H % 2 == 1
            p = Prediction(
                machine_id=machine,
                machine_type="pump",
                ts=t,
                model="m",
                p_failure=0.1,
                decision="off" if off else "ok",
            )
            sink.add_all(schema.points(p))
        t += timedelta(minutes=10)
    messages: list[Any] = [
        # PMP-001: warned at T, failed at T+5h, repaired at T+6h, failed again at T+18h with no new warning.
        *_alert("PMP-001", T, [("open", T), ("resolved", T + 6 * H)]),
        MaintenanceEvent(machine_id="PMP-001", ts=T + 5 * H, event="failure"),
        MaintenanceEvent(machine_id="PMP-001", ts=T + 6 * H, event="repair"),
        MaintenanceEvent(machine_id="PMP-001", ts=T + 18 * H, event="failure"),
        # PMP-002: an early warning opened 100 h before its failure and still open then.
        *_alert("PMP-002", T + 10 * H, [("open", T + 10 * H)]),
        MaintenanceEvent(machine_id="PMP-002", ts=T + 110 * H, event="failure"),
    ]
    for m in messages:
        sink.add_all(schema.points(m))
    sink.flush()
    return influx


def _ask(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, influx: Any, *args: str) -> Any:
    monkeypatch.setenv("VIGIL_INFLUX__URL", influx.url)
    monkeypatch.setenv("VIGIL_INFLUX__API", "v1")
    assert query.main([*args, "--database", influx.database, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_failures_are_credited_in_the_same_life_and_open_warnings_are_catches(
    plant: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = _ask(capsys, monkeypatch, plant, "failures")
    verdicts = [(r["machine"], r["verdict"], r["lead_time_h"]) for r in answer["failures"]]
    assert verdicts == [("PMP-001", "caught", 5.0), ("PMP-001", "missed", None), ("PMP-002", "caught", 100.0)]


def test_false_alarms_are_per_operating_machine_month(
    plant: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (pumps,) = [r for r in _ask(capsys, monkeypatch, plant, "false-alarms") if r["type"] == "pump"]
    assert pumps["operating_time"] is True
    # 2 x 1,201 predictions 10 min apart, PMP-002 off in every other hour: 1,201 + 600 operating windows of the
    # example plant's 600 s (not the 2 x 1,201 of calendar time).
    assert pumps["machine_months"] == pytest.approx(1801 * 600 / (30 * 86400), abs=0.001)
    assert pumps["false_alarms"] == 0
