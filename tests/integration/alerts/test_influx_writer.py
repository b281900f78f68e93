"""The InfluxDB writer against a real InfluxDB (v1 HTTP API) and, for dead letters, a real Kafka."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vigil.bus import TopicSpec, ensure_topics, make_consumer, make_producer
from vigil.config import KafkaSettings, Topics
from vigil.config.connections import InfluxSettings
from vigil.contracts import (
    Alert,
    Contribution,
    DeadLetter,
    DriftEvent,
    FeatureVector,
    MaintenanceEvent,
    Prediction,
    ReadingBatch,
    Sample,
    decode_as,
)
from vigil.influx import (
    InfluxError,
    InfluxSink,
    MachineTags,
    Point,
    Schema,
    dead_letter_rejected,
    ts_ns,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
SCHEMA = Schema({"PMP-001": MachineTags("pump", "north", "north-1")})


def rows(influx: Any, q: str) -> list[dict[str, Any]]:
    from vigil.influx import parse_influxql

    return parse_influxql(influx.query(q))


def count(influx: Any, measurement: str, field: str) -> int:
    r = rows(influx, f'SELECT count("{field}") FROM "{measurement}"')
    return int(r[0]["count"]) if r else 0


def prediction(i: int, p: float = 0.4, decision: str = "ok") -> Prediction:
    return Prediction(
        machine_id="PMP-001",
        machine_type="pump",
        site="north",
        line="north-1",
        ts=T0 + timedelta(minutes=10 * i),
        model="logistic",
        model_version=3,
        p_failure=p,
        anomaly_score=0.2,
        anomaly_threshold=1.0,
        horizon_s=172800.0,
        decision=decision,
        reasons=("cold start: using type model",),
        contributions=(
            Contribution(feature="bearing_temp.mean", value=80.5, normal=70.0, normal_std=2.0, contribution=1.2),
        ),
    )


def test_influx_schema_round_trip(influx: Any) -> None:
    sink = InfluxSink(influx.settings())
    sink.setup()
    fv = FeatureVector(
        machine_id="PMP-001",
        machine_type="pump",
        window_start=T0,
        window_end=T0 + timedelta(minutes=10),
        features={"bearing_temp.mean": 71.25, "flow.mean": None},
        missing=("flow",),
        count=40,
    )
    alert = Alert(
        alert_id="PMP-001.failure_risk.20261120T060000Z",
        machine_id="PMP-001",
        alert_kind="failure_risk",
        state="open",
        severity="critical",
        ts=T0,
        opened_at=T0,
        p_failure=0.91,
        summary='Failure risk 91% "soon"\nsecond line \\ backslash',
        contributions=prediction(0).contributions,
    )
    messages = [
        fv,
        prediction(0),
        alert,
        DriftEvent(ts=T0, machine_type="pump", detector="adwin", target="error", event="drift", value=0.12),
        MaintenanceEvent(
            event_id="ev-1", machine_id="PMP-001", ts=T0, event="failure", failure_mode="bearing", text="seized"
        ),
        ReadingBatch(machine_id="PMP-001", samples=[Sample(sensor="flow", ts=T0, value=12.5, unit="m3/h")]),
    ]
    for m in messages:
        sink.add_all(SCHEMA.points(m))
    sink.add(SCHEMA.metric("recall", 0.8, T0, model="logistic", machine_type="pump", n=25))
    # Escaping: a measurement and tag values full of separators come back intact.
    sink.add(Point("odd measure,ment", {"tag key": "a b,c=d", "path": "x\\y"}, {"field key": 'q"uote'}, ts_ns(T0)))
    result = sink.flush()
    assert result.rejected == [] and result.written == 9 and len(sink) == 0

    (f,) = rows(influx, 'SELECT * FROM "features"')
    assert f["bearing_temp.mean"] == 71.25 and f["count"] == 40 and f["missing"] == "flow" and f["machine"] == "PMP-001"
    assert f["time"] == ts_ns(T0 + timedelta(minutes=10)) and f["site"] == "north" and f["type"] == "pump"
    (p,) = rows(influx, 'SELECT * FROM "predictions"')
    assert p["p_failure"] == 0.4 and p["model"] == "logistic" and p["model_version"] == 3 and p["decision"] == "ok"
    assert p["reasons"] == "cold start: using type model" and p["line"] == "north-1"
    (c,) = rows(influx, 'SELECT * FROM "contributions"')
    assert c["feature"] == "bearing_temp.mean" and c["value"] == 80.5 and c["normal"] == 70.0 and c["rank"] == 1
    (a,) = rows(influx, 'SELECT * FROM "alerts"')
    assert a["summary"] == alert.summary and a["state"] == "open" and a["status"] == "open" and a["site"] == "north"
    assert a["opened_at_ns"] == ts_ns(T0) and a["top_feature"] == "bearing_temp.mean"
    (d,) = rows(influx, 'SELECT * FROM "drift"')
    assert d["detector"] == "adwin" and d["event"] == "drift" and d["value"] == 0.12
    (mt,) = rows(influx, 'SELECT * FROM "maintenance"')
    assert mt["event"] == "failure" and mt["failure_mode"] == "bearing" and mt["event_id"] == "ev-1"
    (r,) = rows(influx, 'SELECT * FROM "readings"')
    assert r["sensor"] == "flow" and r["value"] == 12.5 and r["quality"] == "good"
    (mm,) = rows(influx, 'SELECT * FROM "model_metrics"')
    assert mm["metric"] == "recall" and mm["value"] == 0.8 and mm["n"] == 25
    (o,) = rows(influx, 'SELECT * FROM "odd measure,ment"')
    assert o["tag key"] == "a b,c=d" and o["path"] == "x\\y" and o["field key"] == 'q"uote'


def test_influx_replay_writes_no_duplicates(influx: Any) -> None:
    first = InfluxSink(influx.settings().model_copy(update={"batch_size": 37}))
    for i in range(120):
        first.add_all(SCHEMA.points(prediction(i)))
    first.flush()
    # A replay (a new process reading the topic again), with a later model's different verdict for some windows.
    replay = InfluxSink(influx.settings())
    for i in range(120):
        replay.add_all(SCHEMA.points(prediction(i, p=0.9, decision="alert") if i < 10 else prediction(i)))
    replay.flush()
    assert count(influx, "predictions", "p_failure") == 120
    assert count(influx, "contributions", "value") == 120
    alerts = rows(influx, 'SELECT count("decision") FROM "predictions" WHERE "decision" = \'alert\'')
    assert int(alerts[0]["count"]) == 10, "the replayed values overwrote the old ones"


def test_influx_batches_are_bounded(influx: Any) -> None:
    sink = InfluxSink(influx.settings().model_copy(update={"batch_size": 100}))
    for i in range(1050):
        sink.add(Point("bulk", {"machine": "PMP-001"}, {"v": float(i)}, ts_ns(T0) + i))
    assert sink.due()
    result = sink.flush()
    assert result.written == 1050 and sink.stats.requests == 11
    assert count(influx, "bulk", "v") == 1050


def test_influx_flush_is_due_after_the_interval(influx: Any) -> None:
    sink = InfluxSink(influx.settings().model_copy(update={"flush_interval_s": 0.2}))
    assert not sink.due()
    sink.add(Point("m", {}, {"v": 1.0}, 1))
    deadline = time.monotonic() + 10
    while not sink.due() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.due()


def _dead_letters(kafka: KafkaSettings, topics: Topics, expected: int) -> list[DeadLetter]:
    consumer = make_consumer(kafka, None, [topics.dead_letter])
    out: list[DeadLetter] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out += [decode_as(r.value, DeadLetter) for r in batch]
    finally:
        consumer.close()
    return out


def test_influx_field_type_conflict_goes_to_dead_letter_and_the_rest_lands(
    influx: Any, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    ensure_topics(kafka_settings, [TopicSpec(topics.dead_letter, 1)])
    producer = make_producer(kafka_settings)
    try:
        sink = InfluxSink(influx.settings(), on_rejected=dead_letter_rejected(producer, topics, "alerts-test"))
        sink.add(Point("predictions", {"machine": "PMP-001"}, {"p_failure": 0.5}, ts_ns(T0)))
        sink.flush()
        # 200 good lines with one string where a float lives, in the middle of the batch.
        bad = f'predictions,machine=PMP-002 p_failure="high" {ts_ns(T0)}'
        for i in range(200):
            if i == 117:
                sink.add(bad)
            sink.add(Point("predictions", {"machine": "PMP-003"}, {"p_failure": i / 1000}, ts_ns(T0) + i))
        # Inside one batch, a brand-new measurement with two types for one field (1.x refuses the whole batch).
        sink.add(Point("fresh", {"m": "a"}, {"v": 1.0}, 1))
        sink.add(Point("fresh", {"m": "b"}, {"v": "one"}, 2))
        result = sink.flush()
    finally:
        producer.close()
    assert len(result.rejected) == 2
    assert bad in [r.line for r in result.rejected]
    assert any("field type conflict" in r.reason for r in result.rejected)
    assert count(influx, "predictions", "p_failure") == 201
    assert count(influx, "fresh", "v") == 1

    letters = _dead_letters(kafka_settings, topics, 2)
    assert len(letters) == 2
    by_line = {base64.b64decode(d.raw).decode(): d for d in letters}
    assert bad in by_line
    letter = by_line[bad]
    assert (
        letter.reason == "influx_rejected" and "field type conflict" in letter.error and letter.service == "alerts-test"
    )


def test_influx_setup_names_a_missing_database(influx_url: str) -> None:
    sink = InfluxSink(InfluxSettings(url=influx_url, database="no_such_db_here"))
    with pytest.raises(InfluxError, match=r"influx\.database"):
        sink.setup()
    unreachable = InfluxSink(InfluxSettings(url="http://127.0.0.1:1", timeout_s=2))
    with pytest.raises(InfluxError, match=r"influx\.url"):
        unreachable.setup()
