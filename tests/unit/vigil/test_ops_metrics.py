"""The standard metric families: registered, named as documented, parsable in the exposition format."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vigil.metrics import DEFAULT_PORTS, ServiceMetrics, add_metrics_arguments

DOCUMENTED = {
    "vigil_service_info": "gauge",
    "vigil_ready": "gauge",
    "vigil_readings": "counter",
    "vigil_messages_in": "counter",
    "vigil_messages_out": "counter",
    "vigil_dead_letters": "counter",
    "vigil_errors": "counter",
    "vigil_dropped": "counter",
    "vigil_source_latency_seconds": "histogram",
    "vigil_processing_seconds": "histogram",
    "vigil_consumer_lag": "gauge",
    "vigil_model_quality": "gauge",
    "vigil_drift_events": "counter",
    "vigil_alerts_open": "gauge",
    "vigil_alerts": "counter",
    "vigil_notifications": "counter",
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
}


def _families(metrics: ServiceMetrics) -> dict[str, object]:
    text = generate_latest(metrics.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_every_documented_family_is_exposed_with_its_type() -> None:
    families = _families(ServiceMetrics("features"))
    for name, kind in DOCUMENTED.items():
        assert name in families, name
        assert families[name].type == kind, name  # type: ignore[attr-defined]


def test_module_docstring_names_every_vigil_family() -> None:
    import vigil.metrics

    doc = vigil.metrics.__doc__ or ""
    for name, kind in DOCUMENTED.items():
        if name.startswith("vigil_"):
            exposed = f"{name}_total" if kind == "counter" else name
            assert f"``{exposed}``" in doc, exposed


def test_samples_round_trip_through_the_text_format() -> None:
    m = ServiceMetrics("models", process_metrics=False)
    m.readings.inc(120)
    m.messages_in.labels("vigil.features").inc(7)
    m.messages_out.labels("vigil.predictions").inc(5)
    m.dead_letters.labels("schema").inc()
    m.drift_events.labels("adwin", "pump").inc(2)
    m.set_quality("recall", 0.75, "machine_type", "pump")
    m.set_quality("recall", 0.5, "site", "south")
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert m.observe_source_latency("prediction", now - timedelta(seconds=42), now=now) == 42.0
    assert m.observe_source_latency("alert", now + timedelta(seconds=5), now=now) == 0.0  # clock skew clamps

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in f.samples
    }
    assert samples[("vigil_readings_total", ())] == 120
    assert samples[("vigil_messages_in_total", (("topic", "vigil.features"),))] == 7
    assert samples[("vigil_messages_out_total", (("topic", "vigil.predictions"),))] == 5
    assert samples[("vigil_dead_letters_total", (("reason", "schema"),))] == 1
    assert samples[("vigil_drift_events_total", (("detector", "adwin"), ("machine_type", "pump")))] == 2
    key = (("dimension", "machine_type"), ("metric", "recall"), ("segment", "pump"))
    assert samples[("vigil_model_quality", key)] == 0.75
    assert samples[("vigil_source_latency_seconds_count", (("stage", "prediction"),))] == 1
    assert samples[("vigil_source_latency_seconds_sum", (("stage", "prediction"),))] == 42
    assert samples[("vigil_source_latency_seconds_bucket", (("le", "60.0"), ("stage", "prediction")))] == 1
    assert samples[("vigil_source_latency_seconds_bucket", (("le", "30.0"), ("stage", "prediction")))] == 0
    info = [k for k in samples if k[0] == "vigil_service_info"]
    assert info and dict(info[0][1])["service"] == "models"


def test_readiness_and_liveness_state() -> None:
    m = ServiceMetrics("alerts", process_metrics=False, liveness_timeout_s=3600)
    ready, details = m.readiness()
    assert not ready and details["reason"] == "starting"
    assert m.registry.get_sample_value("vigil_ready") == 0
    m.set_ready(True)
    assert m.readiness() == (True, {"service": "alerts", "ready": True})
    assert m.registry.get_sample_value("vigil_ready") == 1
    m.set_ready(False, "rebalancing")
    assert m.readiness()[1]["reason"] == "rebalancing"
    assert m.health()[0] is True

    stuck = ServiceMetrics("alerts", process_metrics=False, liveness_timeout_s=0.0)
    stuck._last_heartbeat -= 10  # as if the loop had not turned for 10 s
    assert stuck.health()[0] is False
    stuck.heartbeat()
    never = ServiceMetrics("alerts", process_metrics=False)  # no timeout: alive while it serves
    never._last_heartbeat -= 10_000
    assert never.health()[0] is True


def test_two_services_in_one_process_do_not_share_series() -> None:
    a, b = ServiceMetrics("features", process_metrics=False), ServiceMetrics("models", process_metrics=False)
    a.readings.inc(3)
    assert a.registry.get_sample_value("vigil_readings_total") == 3
    assert b.registry.get_sample_value("vigil_readings_total") == 0


def test_metrics_arguments_take_defaults_from_the_environment() -> None:
    parser = argparse.ArgumentParser()
    add_metrics_arguments(parser, "features", environ={})
    args = parser.parse_args([])
    assert (args.metrics_port, args.metrics_host) == (DEFAULT_PORTS["features"], "127.0.0.1")
    parser = argparse.ArgumentParser()
    add_metrics_arguments(parser, "features", environ={"VIGIL_METRICS_PORT": "9999", "VIGIL_METRICS_HOST": "0.0.0.0"})
    args = parser.parse_args([])
    assert (args.metrics_port, args.metrics_host) == (9999, "0.0.0.0")
    assert parser.parse_args(["--metrics-port", "-1"]).metrics_port == -1
    assert len(set(DEFAULT_PORTS.values())) == len(DEFAULT_PORTS)
