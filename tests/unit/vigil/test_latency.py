"""The latency recorder times each record from its event (window close, or a reading's source time) to the stage's
output (the record's Kafka timestamp) and to its arrival; percentiles are the observed values at their rank."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.config import KafkaSettings
from vigil.contracts import Alert, AlertState, FeatureVector, Prediction, Severity, encode
from vigil.latency import LatencyRecorder, percentiles

END = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
GRACE_S = 1.0


def _recorder() -> LatencyRecorder:
    return LatencyRecorder(KafkaSettings(), ["unused"], GRACE_S)


def _ms(ts: datetime, plus_s: float) -> int:
    return round((ts.timestamp() + plus_s) * 1000)


def test_a_prediction_is_timed_from_its_window_close_to_its_output_and_its_arrival() -> None:
    rec = _recorder()
    prediction = Prediction(machine_id="PMP-001", machine_type="pump", ts=END, model="m")
    # Produced 0.3 s after the close (end + grace), received 0.5 s after it.
    rec.observe(encode(prediction), _ms(END, GRACE_S + 0.3), END.timestamp() + GRACE_S + 0.5)
    assert rec.samples["prediction_out"] == [pytest.approx(0.3, abs=1e-3)]
    assert rec.samples["prediction_visible"] == [pytest.approx(0.5, abs=1e-6)]


def test_a_feature_vector_is_timed_from_its_window_close() -> None:
    rec = _recorder()
    vector = FeatureVector(
        machine_id="PMP-001", machine_type="pump", window_start=END - timedelta(seconds=5), window_end=END, features={}
    )
    rec.observe(encode(vector), _ms(END, GRACE_S + 0.1), END.timestamp() + GRACE_S + 0.2)
    assert rec.samples["features_out"] == [pytest.approx(0.1, abs=1e-3)]
    assert rec.samples["features_visible"] == [pytest.approx(0.2, abs=1e-6)]


def _alert(kind: str, state: AlertState) -> Alert:
    return Alert(
        alert_id="a1",
        machine_id="PMP-001",
        alert_kind=kind,
        state=state,
        severity=Severity.CRITICAL,
        ts=END,
        opened_at=END,
        summary="s",
    )


def test_a_per_reading_alert_is_timed_from_the_reading_without_the_grace() -> None:
    rec = _recorder()
    rec.observe(encode(_alert("fail_safe", AlertState.OPEN)), _ms(END, 0.2), END.timestamp() + 0.4)
    rec.observe(encode(_alert("hard_limit", AlertState.OPEN)), _ms(END, 1.5), END.timestamp() + 1.7)
    assert rec.samples["fail_safe_alert_visible"] == [pytest.approx(0.4, abs=1e-6)]
    assert rec.samples["alert_visible"] == [pytest.approx(0.7, abs=1e-6)]


def test_a_planners_acknowledgement_and_undecodable_records_are_not_timed() -> None:
    rec = _recorder()
    rec.observe(encode(_alert("hard_limit", AlertState.ACKNOWLEDGED)), _ms(END, 9), END.timestamp() + 9)
    rec.observe(b"not json", 0, 0.0)
    assert rec.samples == {}
    assert (rec.records, rec.undecodable) == (2, 1)


def test_percentiles_are_observed_values_at_their_nearest_rank() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100
    assert percentiles(samples) == {"n": 100, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert percentiles([3.0]) == {"n": 1, "p50": 3.0, "p90": 3.0, "p99": 3.0, "max": 3.0}


def test_a_reading_batch_tells_how_far_the_source_clock_is_behind_its_collection() -> None:
    from vigil.contracts import ReadingBatch, Sample

    rec = _recorder()
    batch = ReadingBatch(
        machine_id="PMP-001",
        samples=[Sample(sensor="t", ts=END, value=1.0), Sample(sensor="t", ts=END + timedelta(seconds=1), value=2.0)],
        ingest_ts=END + timedelta(seconds=13),
    )
    rec.observe(encode(batch), 0, 0.0)
    assert rec.source_behind == [pytest.approx(12.0)]
    assert rec.summary()["source_behind_collection"]["p50"] == pytest.approx(12.0)
