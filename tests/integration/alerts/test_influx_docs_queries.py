"""Every InfluxQL statement in docs/influx-schema.md runs against a real InfluxDB, on data written by the schema,
and the open-alerts query gives the documented answer."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vigil.contracts import Alert, DriftEvent, FeatureVector, MaintenanceEvent, Prediction
from vigil.influx import InfluxSink, MachineTags, Schema, parse_influxql

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[3] / "docs" / "influx-schema.md"
NOW = datetime.now(UTC).replace(microsecond=0)


def statements() -> list[str]:
    return re.findall(r"```influxql\n(.*?)\n```", DOC.read_text(), flags=re.S)


def alert(alert_id: str, state: str, seq: int, ts: datetime, kind: str = "failure_risk") -> Alert:
    return Alert(
        alert_id=alert_id,
        machine_id=alert_id.split(".")[0],
        alert_kind=kind,
        state=state,
        severity="warning",
        ts=ts,
        opened_at=NOW - timedelta(hours=10),
        summary="x",
        seq=seq,
    )


@pytest.fixture
def populated(influx: Any) -> Any:
    schema = Schema(
        {"PMP-001": MachineTags("pump", "north", "north-1"), "MTR-001": MachineTags("motor", "north", "north-1")}
    )
    sink = InfluxSink(influx.settings())
    t = NOW - timedelta(hours=10)
    messages: list[Any] = [
        FeatureVector(
            machine_id="PMP-001",
            machine_type="pump",
            window_start=t - timedelta(minutes=10),
            window_end=t,
            features={"bearing_temp.mean": 80.0},
        ),
        Prediction(machine_id="PMP-001", machine_type="pump", ts=t, model="m", p_failure=0.7, anomaly_score=0.3),
        # Acknowledged at wall-clock time after the (event-time) resolve: the highest seq wins, not the latest time.
        alert("PMP-001.failure_risk.a", "open", 1, t),
        alert("PMP-001.failure_risk.a", "resolved", 2, t + timedelta(hours=1)),
        alert("PMP-001.failure_risk.a", "acknowledged", 3, t + timedelta(hours=2)),
        alert("PMP-001.failure_risk.a", "resolved", 4, t + timedelta(hours=1, seconds=1)),
        alert("MTR-001.failure_risk.b", "open", 1, t),
        alert("MTR-001.failure_risk.b", "acknowledged", 2, t + timedelta(minutes=5)),
        MaintenanceEvent(machine_id="PMP-001", ts=t + timedelta(hours=6), event="failure", failure_mode="bearing"),
        DriftEvent(ts=t, machine_type="pump", detector="adwin", target="error", event="drift", value=0.1),
    ]
    for m in messages:
        sink.add_all(schema.points(m))
    sink.add(schema.metric("recall", 0.75, t, model="m", machine_type="pump"))
    sink.flush()
    return influx


def test_influx_docs_have_the_queries() -> None:
    assert len(statements()) >= 10


@pytest.mark.parametrize("statement", statements())
def test_influx_documented_query_runs(populated: Any, statement: str) -> None:
    result = populated.query(statement)
    rows = parse_influxql(result)  # raises on an InfluxQL error
    assert isinstance(rows, list)


def test_influx_documented_open_alerts_answer(populated: Any) -> None:
    (open_query,) = [s for s in statements() if 'top("seq", 1)' in s]
    rows = parse_influxql(populated.query(open_query))
    assert [(r["alert_id"], r["status"]) for r in rows] == [("MTR-001.failure_risk.b", "acknowledged")]


@pytest.mark.parametrize(
    ("question", "expect"),
    [
        (["open-alerts"], "MTR-001.failure_risk.b"),
        (["machine", "PMP-001"], "failure"),
        (["failures"], "failures 1: caught 1, missed 0"),
        (["false-alarms"], "false_alarms_per_machine_month"),
    ],
)
def test_influx_vigil_query_command(
    populated: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    question: list[str],
    expect: str,
) -> None:
    from alerts import query

    monkeypatch.setenv("VIGIL_INFLUX__URL", populated.url)
    # Options before or after the question, as `vigil demo` prints them.
    assert query.main(["--days", "30", *question, "--database", populated.database]) == 0
    out = capsys.readouterr().out
    assert expect in out, out
    assert query.main([*question, "--database", populated.database, "--json"]) == 0, "default window: the data's span"
    json.loads(capsys.readouterr().out)
