"""The metrics endpoint over real HTTP, and consumer lag measured against the real broker."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vigil.bus import TopicSpec, ensure_topics, make_consumer, make_producer
from vigil.config import KafkaSettings
from vigil.metrics import ServiceMetrics, start_http

pytestmark = pytest.mark.integration


def _get(url: str, accept: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def test_scrape_parse_and_probe_over_http(free_port: int) -> None:
    metrics = ServiceMetrics("features")
    server = start_http(metrics, free_port)
    assert server is not None
    try:
        metrics.messages_in.labels("vigil.readings").inc(11)
        metrics.set_quality("false_alarms_per_week", 0.2, "line", "north-1")

        status, content_type, body = _get(f"{server.url}/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body)}
        assert "vigil_messages_in" in families and "process_resident_memory_bytes" in families
        [sample] = [s for s in families["vigil_messages_in"].samples if s.name == "vigil_messages_in_total"]
        assert sample.labels == {"topic": "vigil.readings"} and sample.value == 11
        assert next(s.value for s in families["process_resident_memory_bytes"].samples) > 0

        status, content_type, body = _get(f"{server.url}/metrics", accept="application/openmetrics-text")
        assert status == 200 and content_type.startswith("application/openmetrics-text") and body.endswith("# EOF\n")

        status, _, body = _get(f"{server.url}/healthz")
        assert status == 200 and json.loads(body)["alive"] is True
        status, _, body = _get(f"{server.url}/readyz")
        assert status == 503 and json.loads(body) == {"service": "features", "ready": False, "reason": "starting"}
        metrics.set_ready(True)
        assert _get(f"{server.url}/readyz")[0] == 200
        metrics.set_ready(False, "rebalancing")
        status, _, body = _get(f"{server.url}/readyz")
        assert status == 503 and json.loads(body)["reason"] == "rebalancing"
        assert _get(f"{server.url}/nope")[0] == 404
    finally:
        server.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{server.url}/healthz", timeout=2)


def test_liveness_fails_when_the_loop_stops_turning() -> None:
    metrics = ServiceMetrics("models", process_metrics=False, liveness_timeout_s=2.0)
    with start_http(metrics, 0) as server:  # type: ignore[union-attr]
        assert server.port > 0
        metrics.heartbeat()
        deadline = time.monotonic() + 60
        while _get(f"{server.url}/healthz")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, _, body = _get(f"{server.url}/healthz")
        assert status == 503 and json.loads(body)["alive"] is False
        # The loop turns again: alive again (retried, so a slow request on a loaded machine cannot fail it).
        while time.monotonic() < deadline:
            metrics.heartbeat()
            if _get(f"{server.url}/healthz")[0] == 200:
                break
        else:
            pytest.fail("/healthz did not recover after heartbeats")


def test_disabled_endpoint_returns_none() -> None:
    assert start_http(ServiceMetrics("collect", process_metrics=False), -1) is None


def test_consumer_lag_is_end_offset_minus_position(kafka_settings: KafkaSettings, unique: str) -> None:
    topic = f"t-{unique}.lag"
    ensure_topics(kafka_settings, [TopicSpec(topic, partitions=2)])
    producer = make_producer(kafka_settings)
    for i in range(30):
        producer.send(topic, key=b"k", value=f"{i}".encode(), partition=i % 2)
    producer.flush(timeout=30)
    producer.close()

    metrics = ServiceMetrics("features", process_metrics=False, lag_interval_s=3600)
    consumer = make_consumer(kafka_settings, f"g-{unique}", [topic], max_poll_records=5)
    try:
        deadline = time.monotonic() + 60
        consumed = 0
        while not consumer.assignment() and time.monotonic() < deadline:
            consumed += sum(len(v) for v in consumer.poll(timeout_ms=500).values())
        lags = metrics.update_lag(consumer, force=True, timeout_ms=15000)
        assert lags is not None
        assert set(lags) == {(topic, 0), (topic, 1)}
        positions = {p: consumer.position(tp) for tp in consumer.assignment() for p in [tp.partition]}
        assert sum(lags.values()) == 30 - sum(positions.values())

        while consumed < 30 and time.monotonic() < deadline:
            consumed += sum(len(v) for v in consumer.poll(timeout_ms=500).values())
        lags = metrics.update_lag(consumer, force=True, timeout_ms=15000)
        assert lags == {(topic, 0): 0, (topic, 1): 0}
        group = f"g-{unique}"
        for partition in ("0", "1"):
            value = metrics.registry.get_sample_value(
                "vigil_consumer_lag", {"group": group, "topic": topic, "partition": partition}
            )
            assert value == 0
        assert metrics.update_lag(consumer) is None  # rate-limited: the broker is not asked again so soon

        consumer.unsubscribe()  # a rebalance away from every partition removes their series
        metrics.update_lag(consumer, force=True, timeout_ms=15000)
        assert (
            metrics.registry.get_sample_value("vigil_consumer_lag", {"group": group, "topic": topic, "partition": "0"})
            is None
        )
    finally:
        consumer.close()


def test_probe_is_a_container_healthcheck(free_port: int) -> None:
    from vigil.metrics import main, probe

    metrics = ServiceMetrics("alerts", process_metrics=False)
    with start_http(metrics, free_port) as server:  # type: ignore[union-attr]
        assert probe(f"{server.url}/healthz") is True
        assert probe(f"{server.url}/readyz") is False
        assert main(["probe", f"{server.url}/readyz"]) == 1
        metrics.set_ready(True)
        assert main(["probe", f"{server.url}/readyz"]) == 0
    assert main(["probe", f"{server.url}/readyz"]) == 1  # closed: connection refused
    assert main(["nonsense"]) == 2


def test_scrape_helper_sums_samples_for_a_live_view(free_port: int) -> None:
    from vigil.metrics import scrape

    metrics = ServiceMetrics("features", process_metrics=False)
    metrics.readings.inc(500)
    metrics.consumer_lag.labels("g", "vigil.readings", "0").set(3)
    metrics.consumer_lag.labels("g", "vigil.readings", "1").set(4)
    metrics.consumer_lag.labels("g", "vigil.maintenance", "0").set(1)
    with start_http(metrics, free_port) as server:  # type: ignore[union-attr]
        result = scrape(f"{server.url}/metrics")
    assert result.total("vigil_readings_total") == 500
    assert result.total("vigil_consumer_lag") == 8
    assert result.total("vigil_consumer_lag", topic="vigil.readings") == 7
    assert result.by("vigil_consumer_lag", "topic") == {"vigil.readings": 7, "vigil.maintenance": 1}
    assert result.total("vigil_not_there") == 0
