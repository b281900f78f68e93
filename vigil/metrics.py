"""Prometheus metrics, liveness and readiness for every Vigil service, in a few lines per service.

Adopting it in a service's ``main()``::

    parser = argparse.ArgumentParser(prog="vigil features")
    add_metrics_arguments(parser, "features")           # --metrics-port / --metrics-host (env defaults)
    args = parser.parse_args(argv)
    metrics = ServiceMetrics("features")
    server = start_http(metrics, args.metrics_port, args.metrics_host)   # None when disabled
    ...
    metrics.set_ready(True)                              # after partitions are assigned and state restored
    for batch in ...:
        metrics.messages_in.labels(topic).inc(len(batch))
        metrics.readings.inc(n_readings)
        metrics.observe_source_latency("prediction", prediction.source_ts)
        metrics.update_lag(consumer)                     # rate-limited; call it from the consumer's own thread
        metrics.heartbeat()                              # only matters when liveness_timeout_s is set
    server.close()

The HTTP server answers ``GET /metrics`` (Prometheus text format, or OpenMetrics when asked for), ``GET /healthz``
(liveness: 200 while the process serves and, when ``liveness_timeout_s`` is set, its loop has called
``heartbeat()`` recently; 503 otherwise) and ``GET /readyz`` (readiness: 503 until ``set_ready(True)``).

Metric names (every service registers all of them, so dashboards and alert rules never miss a series):

============================================  =========  ==================================  =====================
name                                          type       labels                              what
============================================  =========  ==================================  =====================
``vigil_service_info``                        gauge      service, version                    always 1
``vigil_ready``                               gauge      (none)                              1 when ready
``vigil_readings_total``                      counter    (none)                              sensor readings handled
``vigil_messages_in_total``                   counter    topic                               Kafka records consumed
``vigil_messages_out_total``                  counter    topic                               Kafka records produced
``vigil_dead_letters_total``                  counter    reason                              records dead-lettered
``vigil_errors_total``                        counter    kind                                handled errors
``vigil_dropped_total``                       counter    reason                              data dropped on purpose
``vigil_source_latency_seconds``              histogram  stage (prediction|alert|notification)  source time -> stage
                                                         (prediction_visible: window close -> its commit)
``vigil_processing_seconds``                  histogram  step                                wall time of one step
``vigil_consumer_lag``                        gauge      group, topic, partition             end offset - position
``vigil_model_quality``                       gauge      metric, dimension, segment          prequential quality
``vigil_drift_events_total``                  counter    detector, machine_type              drift detections
``vigil_alerts_open``                         gauge      (none)                              open alert episodes
``vigil_alerts_total``                        counter    event (opened|escalated|resolved)   alert lifecycle events
``vigil_notifications_total``                 counter    receiver, outcome                   notifications sent
``process_cpu_seconds_total``,                                                              prometheus-client's
``process_resident_memory_bytes``, ...                                                      process collector
============================================  =========  ==================================  =====================

``vigil_model_quality`` carries one sample per quality metric (``recall``, ``precision``, ``false_alarms_per_week``,
``lead_time_median_s``, ``roc_auc``, ...) and segment: ``dimension`` is ``all``, ``machine_type``, ``site``, ``line``
or ``machine`` and ``segment`` its value, so a segment that is served worse shows up beside the others.

Services that need more create them on ``metrics.registry``. Reading the metrics back (the demo's live view):
``scrape(url).total("vigil_readings_total")``, ``scrape(url).by("vigil_consumer_lag", "topic")``. Container
healthchecks: ``python -m vigil.metrics probe http://127.0.0.1:9464/readyz`` (exit 0 when it answers 200). Default ports: 9464 + N per service
(:data:`DEFAULT_PORTS`); ``--metrics-port 0`` takes a free port (logged), a negative port disables the endpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger(__name__)

DEFAULT_PORTS: dict[str, int] = {
    "simulate": 9464,
    "collect": 9465,
    "features": 9466,
    "models": 9467,
    "alerts": 9468,
    "demo": 9469,
}
"""Metrics port per service; distinct so the whole pipeline can run on one host without clashes."""

# Latency budgets are a second (fail-safe alert, prediction after its window's close), so the buckets resolve
# 10 ms to 60 s in steps of at most ~1.5x (a quantile interpolated inside one is within that factor); source time
# -> prediction also includes the window itself (size + grace, 11 min with the example plant), so they go on to
# two hours. Exact percentiles come from per-record timestamps (bench/bench_e2e.py), not from these buckets.
LATENCY_BUCKETS = (
    0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30,
    45, 60, 120, 300, 600, 900, 1800, 3600, 7200,
)  # fmt: skip
PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LATENCY_STAGES = ("prediction", "prediction_visible", "alert", "notification")


def _version() -> str:
    try:
        return metadata.version("vigil")
    except metadata.PackageNotFoundError:
        return "unknown"


class ServiceMetrics:
    """The standard metric families of one service, on their own registry, plus its health state.

    >>> m = ServiceMetrics("doc")
    >>> m.messages_in.labels("vigil.readings").inc(3)
    >>> m.registry.get_sample_value("vigil_messages_in_total", {"topic": "vigil.readings"})
    3.0
    >>> m.ready
    False
    """

    def __init__(
        self,
        service: str,
        *,
        registry: CollectorRegistry | None = None,
        process_metrics: bool = True,
        liveness_timeout_s: float | None = None,
        lag_interval_s: float = 5.0,
    ) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        self.liveness_timeout_s = liveness_timeout_s
        self.lag_interval_s = lag_interval_s
        self._ready = False
        self._not_ready_reason = "starting"
        self._last_heartbeat = time.monotonic()
        self._last_lag_update = float("-inf")
        self._lag_failures = 0
        self._down: dict[str, str] = {}
        self._waits: dict[str, Callable[[], float | None]] = {}
        self._lock = threading.Lock()
        r = self.registry

        self.info = Gauge(
            "vigil_service_info", "Vigil service and version (always 1)", ["service", "version"], registry=r
        )
        self.info.labels(service, _version()).set(1)
        self.ready_gauge = Gauge("vigil_ready", "1 when the service reports itself ready", registry=r)
        self.readings = Counter("vigil_readings", "Sensor readings handled", registry=r)
        self.messages_in = Counter("vigil_messages_in", "Kafka records consumed", ["topic"], registry=r)
        self.messages_out = Counter("vigil_messages_out", "Kafka records produced", ["topic"], registry=r)
        self.dead_letters = Counter(
            "vigil_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.errors = Counter("vigil_errors", "Errors handled (and survived) by the service", ["kind"], registry=r)
        self.dropped = Counter(
            "vigil_dropped", "Data dropped on purpose (full spool, late data)", ["reason"], registry=r
        )
        self.flagged = Counter(
            "vigil_readings_flagged",
            "Readings kept but made unusable by this stage's validation (out_of_range, not_finite)",
            ["reason"],
            registry=r,
        )
        self.source_latency = Histogram(
            "vigil_source_latency_seconds",
            "Source timestamp to the stage's output (prediction, alert, notification)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.processing = Histogram(
            "vigil_processing_seconds",
            "Wall time of one processing step",
            ["step"],
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "vigil_consumer_lag", "Records behind the end of the partition", ["group", "topic", "partition"], registry=r
        )
        self.model_quality = Gauge(
            "vigil_model_quality",
            "Prequential model quality per segment (dimension: all, machine_type, site, line, machine)",
            ["metric", "dimension", "segment"],
            registry=r,
        )
        self.drift_events = Counter("vigil_drift_events", "Drift detections", ["detector", "machine_type"], registry=r)
        self.alerts_open = Gauge("vigil_alerts_open", "Open alert episodes", registry=r)
        self.alerts = Counter("vigil_alerts", "Alert lifecycle events", ["event"], registry=r)
        self.notifications = Counter(
            "vigil_notifications", "Notifications sent, by receiver and outcome", ["receiver", "outcome"], registry=r
        )
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.ready_gauge.set(0)

    # ------------------------------------------------------------------ health
    @property
    def ready(self) -> bool:
        return self.readiness()[0]

    def set_ready(self, ready: bool, reason: str = "") -> None:
        """Flip readiness; ``reason`` is shown by ``/readyz`` while not ready (e.g. ``"restoring state"``)."""
        with self._lock:
            self._ready = ready
            self._not_ready_reason = "" if ready else (reason or "not ready")
        self._update_gauge()

    def dependency_down(self, name: str, reason: str) -> None:
        """A dependency (``kafka``, ``influxdb``) does not answer: not ready until :meth:`dependency_up`.

        Independent of :meth:`set_ready`: a service that is set up stays set up, and is ready again once every
        dependency it reported down answers again.

        >>> m = ServiceMetrics("doc")
        >>> m.set_ready(True)
        >>> m.dependency_down("kafka", "broker unreachable")
        >>> m.readiness()
        (False, {'service': 'doc', 'ready': False, 'reason': 'kafka: broker unreachable'})
        >>> m.dependency_up("kafka")
        >>> m.readiness()[0]
        True
        """
        with self._lock:
            self._down[name] = reason
        self._update_gauge()

    def dependency_up(self, name: str) -> None:
        with self._lock:
            self._down.pop(name, None)
        self._update_gauge()

    def _update_gauge(self) -> None:
        self.ready_gauge.set(1 if self.readiness()[0] else 0)

    def heartbeat(self) -> None:
        """Tell the liveness probe the main loop is turning (only checked when ``liveness_timeout_s`` is set)."""
        self._last_heartbeat = time.monotonic()

    def watch_wait(self, name: str, waiting_s: Callable[[], float | None]) -> None:
        """Report in ``/healthz`` how long the loop has been waiting in a call (``waiting_s()``: seconds, or None
        when it is not waiting), e.g. a Kafka transaction commit waiting for the broker; a wait longer than
        ``liveness_timeout_s`` (when set) makes the service not alive.

        >>> m = ServiceMetrics("doc", liveness_timeout_s=60.0)
        >>> m.watch_wait("transaction commit", lambda: 75.0)
        >>> alive, details = m.health()
        >>> alive, details["waiting_s"]
        (False, {'transaction commit': 75.0})
        """
        self._waits[name] = waiting_s

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Liveness: ``(alive, details)``."""
        age = time.monotonic() - self._last_heartbeat
        alive = self.liveness_timeout_s is None or age <= self.liveness_timeout_s
        details: dict[str, Any] = {"service": self.service, "alive": alive, "heartbeat_age_s": round(age, 3)}
        waits = {name: round(w, 3) for name, fn in sorted(self._waits.items()) if (w := fn()) is not None}
        if waits:
            details["waiting_s"] = waits
            if self.liveness_timeout_s is not None and max(waits.values()) > self.liveness_timeout_s:
                details["alive"] = alive = False
        return alive, details

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            ready, reason = self._ready, self._not_ready_reason
            if ready and self._down:
                ready, reason = False, "; ".join(f"{k}: {v}" for k, v in sorted(self._down.items()))
        details: dict[str, Any] = {"service": self.service, "ready": ready}
        if not ready:
            details["reason"] = reason
        return ready, details

    # ------------------------------------------------------------------ helpers
    def observe_source_latency(self, stage: str, source_ts: datetime, now: datetime | None = None) -> float:
        """Record the time from a reading's source timestamp to ``stage``; returns the seconds observed."""
        seconds = max(0.0, ((now or datetime.now(UTC)) - source_ts).total_seconds())
        self.source_latency.labels(stage).observe(seconds)
        return seconds

    def set_quality(self, metric: str, value: float, dimension: str = "all", segment: str = "all") -> None:
        """One model-quality gauge, e.g. ``set_quality("recall", 0.9, "machine_type", "pump")``."""
        self.model_quality.labels(metric, dimension, segment).set(value)

    def update_lag(
        self, consumer: Any, *, force: bool = False, timeout_ms: int = 2000
    ) -> dict[tuple[str, int], int] | None:
        """Set ``vigil_consumer_lag`` from a kafka-python consumer: end offsets minus positions.

        kafka-python consumers are not thread-safe, so call this from the thread that polls. It asks the broker
        at most every ``lag_interval_s`` (returns ``None`` when it skipped); partitions no longer assigned are
        removed from the gauge so a rebalance does not leave stale series behind.

        A broker that does not answer never raises out of here: the failure is logged once per outage, counted
        (``vigil_errors_total{kind="consumer_lag"}``), the service reports itself not ready (``kafka``) and the
        next attempts back off (up to a minute apart) until the broker answers again.
        """
        now = time.monotonic()
        interval = min(60.0, self.lag_interval_s * 2 ** min(self._lag_failures, 6))
        if not force and now - self._last_lag_update < interval:
            return None
        self._last_lag_update = now
        group = str(getattr(consumer, "config", {}).get("group_id") or "")
        try:
            lags = consumer_lag(consumer, timeout_ms=timeout_ms)
        except Exception as exc:  # any client error (timeouts, resets, no coordinator): weather, not a crash
            self.errors.labels("consumer_lag").inc()
            if self._lag_failures == 0:
                log.warning("consumer lag unavailable (%s: %s); not ready until Kafka answers", type(exc).__name__, exc)
            self._lag_failures += 1
            self.dependency_down("kafka", f"consumer lag unavailable ({type(exc).__name__})")
            return None
        if self._lag_failures:
            log.info("consumer lag available again after %d failed attempt(s)", self._lag_failures)
            self._lag_failures = 0
            self.dependency_up("kafka")
        current = {(group, topic, str(partition)) for topic, partition in lags}
        for labels in _label_sets(self.consumer_lag):
            if labels[0] == group and labels not in current:
                self.consumer_lag.remove(*labels)
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(group, topic, str(partition)).set(lag)
        return lags


def _label_sets(metric: Gauge) -> list[tuple[str, ...]]:
    # prometheus-client has no public way to list a family's children; collect() is the public one.
    found: list[tuple[str, ...]] = []
    for family in metric.collect():
        for sample in family.samples:
            found.append(tuple(sample.labels[name] for name in ("group", "topic", "partition")))
    return found


def consumer_lag(consumer: Any, timeout_ms: int = 2000) -> dict[tuple[str, int], int]:
    """``{(topic, partition): end offset - position}`` for the partitions assigned to a kafka-python consumer.

    Partitions whose position is not known yet (no fetch and no committed offset) are left out.
    """
    assigned = list(consumer.assignment() or ())
    if not assigned:
        return {}
    ends = consumer.end_offsets(assigned, timeout_ms=timeout_ms)
    lags: dict[tuple[str, int], int] = {}
    for tp in assigned:
        position = consumer.position(tp, timeout_ms=timeout_ms)
        end = ends.get(tp)
        if position is None or end is None:
            continue
        lags[(tp.topic, tp.partition)] = max(0, int(end) - int(position))
    return lags


# ---------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    server: _MetricsHTTPServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        metrics = self.server.metrics
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(metrics.registry), content_type)
        elif path in ("/healthz", "/livez"):
            ok, details = metrics.health()
            self._send_json(200 if ok else 503, details)
        elif path == "/readyz":
            ok, details = metrics.readiness()
            self._send_json(200 if ok else 503, details)
        else:
            self._send_json(404, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

    def _send_json(self, status: int, body: Mapping[str, Any]) -> None:
        self._send(status, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes hit these endpoints every few seconds; access lines would drown the service's own log.
        log.debug("metrics http: %s", format % args)


class _MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        super().__init__(address, _Handler)


@dataclass
class MetricsServer:
    """A running metrics/health endpoint; ``close()`` stops it."""

    host: str
    port: int
    _httpd: _MetricsHTTPServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_http(metrics: ServiceMetrics, port: int, host: str = "127.0.0.1") -> MetricsServer | None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread.

    ``port=0`` binds a free port (see ``server.port``); a negative port disables the endpoint (returns ``None``).
    """
    if port < 0:
        log.info("metrics endpoint disabled for %s", metrics.service)
        return None
    httpd = _MetricsHTTPServer((host, port), metrics)
    bound = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, name=f"metrics-http-{metrics.service}", daemon=True)
    thread.start()
    server = MetricsServer(host, bound, httpd, thread)
    # One line a script can parse for the port actually bound (port 0 picks a free one): /metrics, /healthz, /readyz.
    log.info("listening on %s (metrics)", server.url)
    return server


def add_metrics_arguments(
    parser: argparse.ArgumentParser, service: str, environ: Mapping[str, str] | None = None
) -> None:
    """Add ``--metrics-port`` and ``--metrics-host``; defaults come from ``VIGIL_METRICS_PORT``/``_HOST``.

    For entry points only (``environ`` defaults to the process environment); library code gets plain values.
    """
    env = os.environ if environ is None else environ
    default_port = int(env.get("VIGIL_METRICS_PORT", DEFAULT_PORTS.get(service, 9464)))
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=default_port,
        help=f"Prometheus /metrics, /healthz, /readyz port (default {default_port}; 0 = any free port, <0 = off)",
    )
    parser.add_argument(
        "--metrics-host",
        default=env.get("VIGIL_METRICS_HOST", "127.0.0.1"),
        help="address the metrics endpoint binds (0.0.0.0 in containers)",
    )


def probe(url: str, timeout_s: float = 3.0) -> bool:
    """True when ``url`` answers 200 (a container healthcheck: ``python -m vigil.metrics probe URL``)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class Scrape:
    """One scrape of a ``/metrics`` endpoint, for terminal views and tests (``scrape(url).total(...)``)."""

    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples named ``name`` whose labels include ``labels`` (0.0 when there are none)."""
        wanted = set(labels.items())
        return sum(value for n, lbls, value in self.samples if n == name and wanted <= set(lbls))

    def by(self, name: str, label: str) -> dict[str, float]:
        """``{label value: summed sample value}``, e.g. ``by("vigil_consumer_lag", "topic")``."""
        out: dict[str, float] = {}
        for n, lbls, value in self.samples:
            key = dict(lbls).get(label)
            if n == name and key is not None:
                out[key] = out.get(key, 0.0) + value
        return out


def scrape(url: str, timeout_s: float = 3.0) -> Scrape:
    """Fetch and parse a Prometheus text exposition (raises ``OSError`` when the endpoint is unreachable)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        text = resp.read().decode()
    return Scrape(
        tuple(
            (sample.name, tuple(sorted(sample.labels.items())), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        )
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m vigil.metrics probe URL``: exit 0 when the endpoint is healthy/ready, 1 otherwise."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "probe":
        sys.stderr.write("usage: python -m vigil.metrics probe http://127.0.0.1:9464/readyz\n")
        return 2
    return 0 if probe(args[1]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
