"""The v2 transport (influxdb-client: token, org, bucket; Flux) against a real server that speaks the v2 API.

Here that is InfluxDB 1.8 (``vigil services up influxdb-v2api``), which serves ``/api/v2/write`` and
``/api/v2/query`` (Flux) beside the v1 API, and no buckets API: a bucket is ``database/retention_policy``.
InfluxDB 2.7 itself is exercised by ``test_influx_v2.py`` where a Docker engine runs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vigil.contracts import Alert, DriftEvent, MaintenanceEvent, Prediction
from vigil.influx import InfluxError, InfluxSink, MachineTags, Schema, V2Transport, parse_influxql, ts_ns

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[3] / "docs" / "influx-schema.md"
T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def flux_examples() -> list[str]:
    return re.findall(r"```flux\n(.*?)\n```", DOC.read_text(), flags=re.S)


def test_influx_v2api_writes_replays_and_isolates_a_refused_line(influx_v2api: Any) -> None:
    settings = influx_v2api.settings_v2()
    transport = V2Transport(settings)
    letters: list[Any] = []
    sink = InfluxSink(settings, transport=transport, on_rejected=letters.append)
    sink.setup()  # no buckets API on 1.8: the database behind the bucket is checked instead
    schema = Schema()
    for i in range(50):
        p = Prediction(machine_id="PMP-001", machine_type="pump", ts=T0.replace(minute=i), model="m", p_failure=i / 100)
        sink.add_all(schema.points(p))
    assert sink.flush().written > 0
    # A replay of the first prediction (same source timestamp) and a line of the wrong field type.
    sink.add_all(schema.points(Prediction(machine_id="PMP-001", machine_type="pump", ts=T0, model="m", p_failure=0.5)))
    sink.add(f'predictions,machine=PMP-001,model=m,type=pump p_failure="text" {ts_ns(T0) + 1}')
    result = sink.flush()
    assert len(result.rejected) == 1 and "type conflict" in result.rejected[0].reason
    assert len(letters) == 1

    flux = (
        f'from(bucket: "{settings.bucket}") |> range(start: 2026-11-20T00:00:00Z, stop: 2026-11-21T00:00:00Z) '
        '|> filter(fn: (r) => r._measurement == "predictions" and r._field == "p_failure") |> count()'
    )
    assert sum(int(r["_value"]) for r in transport.query_flux(flux)) == 50, "the replay overwrote, no duplicate"
    rows = parse_influxql(
        influx_v2api.query('SELECT "p_failure" FROM "predictions" WHERE time = \'2026-11-20T06:00:00Z\'')
    )
    assert [r["p_failure"] for r in rows] == [0.5]
    transport.close()


def test_influx_v2api_refuses_a_bucket_whose_database_is_missing(influx_v2api: Any) -> None:
    settings = influx_v2api.settings_v2().model_copy(update={"bucket": "no_such_database/autogen"})
    with pytest.raises(InfluxError, match=r"influx\.bucket") as caught:
        InfluxSink(settings, transport=V2Transport(settings)).setup()
    assert "vigil:unused" not in str(caught.value), "the token never appears in an error"


@pytest.fixture
def populated_v2(influx_v2api: Any) -> Any:
    settings = influx_v2api.settings_v2()
    now = datetime.now(UTC).replace(microsecond=0)
    t = now - timedelta(hours=10)
    schema = Schema({"PMP-001": MachineTags("pump", "north", "north-1")})
    sink = InfluxSink(settings, transport=V2Transport(settings))

    def alert(state: str, seq: int, ts: datetime) -> Alert:
        return Alert(
            alert_id="PMP-001.failure_risk.a",
            machine_id="PMP-001",
            alert_kind="failure_risk",
            state=state,
            severity="warning",
            ts=ts,
            opened_at=t,
            summary="bearing warming",
            seq=seq,
        )

    for m in (
        alert("open", 1, t),
        alert("acknowledged", 2, t + timedelta(minutes=5)),
        MaintenanceEvent(machine_id="PMP-001", ts=t + timedelta(hours=6), event="failure", failure_mode="bearing"),
        DriftEvent(ts=t, machine_type="pump", detector="adwin", target="error", event="drift", value=0.1),
    ):
        sink.add_all(schema.points(m))
    sink.flush()
    return settings


def test_influx_docs_have_flux_examples() -> None:
    assert len(flux_examples()) >= 4


@pytest.mark.parametrize("flux", flux_examples())
def test_influx_documented_flux_runs(populated_v2: Any, flux: str) -> None:
    transport = V2Transport(populated_v2)
    try:
        records = transport.query_flux(flux.replace('bucket: "vigil"', f'bucket: "{populated_v2.bucket}"'))
    finally:
        transport.close()
    assert records, "each documented question has an answer on this data"
