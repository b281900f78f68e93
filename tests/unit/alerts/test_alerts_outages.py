"""Outages are weather, not crashes (issue 15): the lag metric, topic creation and the InfluxDB start-up check ride
out a dependency that does not answer; a mistake retrying cannot fix still stops at once. No services needed."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from kafka.errors import InvalidReplicationFactorError, KafkaTimeoutError
from kafka.structs import TopicPartition

import vigil.bus
import vigil.influx
from vigil.bus import TopicSpec, ensure_topics
from vigil.config import InfluxSettings, KafkaSettings
from vigil.exceptions import BusError
from vigil.influx import InfluxError, InfluxUnavailable, ensure_target
from vigil.metrics import ServiceMetrics


class _Consumer:
    """A kafka-python consumer's lag surface; ``failing`` makes the broker 'go away'."""

    config = {"group_id": "g"}

    def __init__(self) -> None:
        self.failing = True

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 0)}

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int = 0) -> dict[TopicPartition, int]:
        if self.failing:
            raise KafkaTimeoutError("Failed to get offsets by timestamps in 2.0 secs")
        return {p: 10 for p in partitions}

    def position(self, tp: TopicPartition, timeout_ms: int = 0) -> int:
        if self.failing:
            raise ConnectionResetError(104, "Connection reset by peer")
        return 4


def test_update_lag_fails_quietly_and_readiness_follows_the_broker(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServiceMetrics("doc", process_metrics=False)
    metrics.set_ready(True)
    consumer = _Consumer()
    with caplog.at_level(logging.WARNING, logger="vigil.metrics"):
        for _ in range(3):
            assert metrics.update_lag(consumer, force=True) is None
    assert metrics.registry.get_sample_value("vigil_errors_total", {"kind": "consumer_lag"}) == 3.0
    assert len([r for r in caplog.records if "consumer lag unavailable" in r.getMessage()]) == 1, "logged once"
    ready, details = metrics.readiness()
    assert not ready and details["reason"].startswith("kafka: consumer lag unavailable (KafkaTimeoutError)")
    assert metrics.registry.get_sample_value("vigil_ready") == 0.0

    consumer.failing = False
    assert metrics.update_lag(consumer, force=True) == {("t", 0): 6}
    assert metrics.readiness()[0] and metrics.registry.get_sample_value("vigil_ready") == 1.0


def test_update_lag_backs_off_while_the_broker_is_away() -> None:
    metrics = ServiceMetrics("doc", process_metrics=False, lag_interval_s=5.0)
    consumer = _Consumer()
    assert metrics.update_lag(consumer) is None
    errors = metrics.registry.get_sample_value("vigil_errors_total", {"kind": "consumer_lag"})
    assert metrics.update_lag(consumer) is None  # within the (doubled) interval: not asked again
    assert metrics.registry.get_sample_value("vigil_errors_total", {"kind": "consumer_lag"}) == errors == 1.0


def test_a_service_not_set_up_stays_unready_when_kafka_returns() -> None:
    metrics = ServiceMetrics("doc", process_metrics=False)
    metrics.dependency_down("kafka", "x")
    metrics.dependency_up("kafka")
    assert metrics.readiness() == (False, {"service": "doc", "ready": False, "reason": "starting"})


def _flaky(failures: int, error: Exception, result: Any) -> Any:
    calls = {"n": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error
        return result

    call.calls = calls  # type: ignore[attr-defined]
    return call


def test_ensure_topics_retries_an_unreachable_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    create = _flaky(3, KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1"), ["t"])
    monkeypatch.setattr(vigil.bus, "_create_missing_topics", create)
    assert ensure_topics(KafkaSettings(), [TopicSpec("t", 1)], initial_backoff_s=0.001) == ["t"]
    assert create.calls["n"] == 4


def test_ensure_topics_stops_when_told_and_refuses_what_retrying_cannot_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vigil.bus, "_create_missing_topics", _flaky(99, KafkaTimeoutError("down"), []))
    stop = threading.Event()
    stop.set()
    with pytest.raises(BusError, match="stopped while waiting"):
        ensure_topics(KafkaSettings(), [TopicSpec("t", 1)], stop=stop)
    with pytest.raises(BusError, match=r"kafka.bootstrap_servers: .* unreachable"):
        ensure_topics(KafkaSettings(), [TopicSpec("t", 1)], max_wait_s=0.0)
    monkeypatch.setattr(vigil.bus, "_create_missing_topics", _flaky(99, InvalidReplicationFactorError("rf 3"), []))
    with pytest.raises(BusError, match="InvalidReplicationFactorError"):
        ensure_topics(KafkaSettings(), [TopicSpec("t", 1)])


def test_ensure_target_waits_for_an_influxdb_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    check = _flaky(2, InfluxUnavailable("influx.url: InfluxDB at http://x does not answer"), "exists")
    monkeypatch.setattr(vigil.influx, "_ensure_database", check)
    slept: list[float] = []
    assert ensure_target(InfluxSettings(), wait_s=float("inf"), sleep=slept.append) == "exists"
    assert slept == [0.5, 1.0]


def test_ensure_target_names_a_mistake_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = _flaky(99, InfluxError("influx.retention_policy: retention policy 'x' does not exist"), "")
    monkeypatch.setattr(vigil.influx, "_ensure_database", missing)
    with pytest.raises(InfluxError, match="retention_policy"):
        ensure_target(InfluxSettings(), wait_s=float("inf"), sleep=lambda s: None)
    assert missing.calls["n"] == 1
    monkeypatch.setattr(vigil.influx, "_ensure_database", _flaky(99, InfluxUnavailable("down"), ""))
    with pytest.raises(InfluxUnavailable):
        ensure_target(InfluxSettings())  # wait_s=0: the first answer is final
