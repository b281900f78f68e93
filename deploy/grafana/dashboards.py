"""Generates Vigil's Grafana dashboards (deploy/grafana/dashboards/*.json) from one readable description.

    python deploy/grafana/dashboards.py           # rewrite the JSON files
    python deploy/grafana/dashboards.py --check   # exit 1 if the committed JSON is stale (the tests run this)

InfluxQL panels query the schema in docs/influx-schema.md (vigil/influx.py): measurements ``readings`` (tags
machine, type, site, line, sensor; field value), ``features``, ``predictions`` (p_failure, anomaly_score,
threshold, decision, top_feature), ``contributions`` (tag feature; contribution, value, normal), ``alerts``
(tags kind, alert_id, state; severity, p_failure, summary), ``maintenance`` (tag event), ``drift`` (tags
detector, target, event) and ``model_metrics`` (tags model, metric; value, n). Prometheus panels use the
metric names of vigil/metrics.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
INFLUX = {"type": "influxdb", "uid": "vigil-influxql"}
PROM = {"type": "prometheus", "uid": "vigil-prometheus"}
SEGMENT_FILTER = '"type" =~ /^$type$/ AND "site" =~ /^$site$/ AND "line" =~ /^$line$/'
MACHINE_FILTER = '"machine" =~ /^$machine$/'


def influx(query: str, ref: str = "A", fmt: str = "time_series", alias: str = "") -> dict[str, Any]:
    target: dict[str, Any] = {"refId": ref, "datasource": INFLUX, "query": query, "rawQuery": True, "resultFormat": fmt}
    if alias:
        target["alias"] = alias
    return target


def prom(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": PROM, "expr": expr, "legendFormat": legend}


def panel(
    title: str,
    kind: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    unit: str = "short",
    description: str = "",
    **options: Any,
) -> dict[str, Any]:
    x, y, w, h = grid
    datasource = targets[0]["datasource"]
    body: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options,
    }
    return body


def tag_variable(name: str, measurement: str, key: str, where: str = "") -> dict[str, Any]:
    query = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"' + (f" WHERE {where}" if where else "")
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": INFLUX,
        "query": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["vigil"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "panels": panels,
        "templating": {"list": extra.pop("variables", [])},
        "annotations": {"list": extra.pop("annotations", [])},
        "links": [{"title": "Vigil", "type": "dashboards", "tags": ["vigil"], "asDropdown": True}],
        **extra,
    }


def fleet() -> dict[str, Any]:
    segments = [tag_variable(v, "predictions", v) for v in ("type", "site", "line")]
    return dashboard(
        "vigil-fleet",
        "Vigil / Fleet health",
        "Every machine at a glance: failure probability, open alerts, failures, machines off.",
        [
            panel(
                "Alerts opened",
                "stat",
                [
                    influx(
                        f'SELECT count("p_failure") FROM "alerts" WHERE "state" = \'open\' AND {SEGMENT_FILTER} AND $timeFilter'
                    )
                ],
                (0, 0, 6, 4),
                description="Alert episodes opened in the time range.",
            ),
            panel(
                "Failures recorded",
                "stat",
                [influx('SELECT count("event_id") FROM "maintenance" WHERE "event" = \'failure\' AND $timeFilter')],
                (6, 0, 6, 4),
            ),
            panel(
                "Highest failure probability now",
                "stat",
                [
                    influx(
                        f'SELECT max("p") FROM (SELECT last("p_failure") AS "p" FROM "predictions" WHERE {SEGMENT_FILTER} AND $timeFilter GROUP BY "machine")'
                    )
                ],
                (12, 0, 6, 4),
                unit="percentunit",
            ),
            panel(
                "Drift events",
                "stat",
                [influx(f'SELECT count("value") FROM "drift" WHERE {SEGMENT_FILTER} AND $timeFilter')],
                (18, 0, 6, 4),
            ),
            panel(
                "Machines: latest prediction",
                "table",
                [
                    influx(
                        'SELECT last("p_failure") AS "p_failure", last("anomaly_score") AS "anomaly", '
                        'last("decision") AS "decision", last("decided_by") AS "decided by", '
                        'last("top_feature") AS "top feature" FROM "predictions" '
                        f'WHERE {SEGMENT_FILTER} AND $timeFilter GROUP BY "machine", "type", "site", "line"',
                        fmt="table",
                    )
                ],
                (0, 4, 24, 9),
                description="One row per machine; decided by = model or rule (fail-safe).",
            ),
            panel(
                "Failure probability per machine",
                "timeseries",
                [
                    influx(
                        f'SELECT max("p_failure") FROM "predictions" WHERE {SEGMENT_FILTER} AND $timeFilter '
                        'GROUP BY time($__interval), "machine" fill(none)',
                        alias="$tag_machine",
                    )
                ],
                (0, 13, 24, 8),
                unit="percentunit",
            ),
            panel(
                "Alert transitions",
                "table",
                [
                    influx(
                        'SELECT "severity", "p_failure", "summary", "top_feature", "assignee" FROM "alerts" '
                        f'WHERE {SEGMENT_FILTER} AND $timeFilter GROUP BY "machine", "alert_id", "state"',
                        fmt="table",
                    )
                ],
                (0, 21, 24, 9),
            ),
        ],
        variables=segments,
    )


def machine() -> dict[str, Any]:
    return dashboard(
        "vigil-machine",
        "Vigil / Machine",
        "One machine: its sensors, the model's failure probability and anomaly score, why, alerts and repairs.",
        [
            panel(
                "Sensors",
                "timeseries",
                [
                    influx(
                        f'SELECT mean("value") FROM "readings" WHERE {MACHINE_FILTER} AND $timeFilter '
                        'GROUP BY time($__interval), "sensor" fill(none)',
                        alias="$tag_sensor",
                    )
                ],
                (0, 0, 24, 9),
            ),
            panel(
                "Failure probability and threshold",
                "timeseries",
                [
                    influx(
                        'SELECT max("p_failure") AS "p_failure", last("threshold") AS "threshold" FROM "predictions" '
                        f"WHERE {MACHINE_FILTER} AND $timeFilter GROUP BY time($__interval) fill(none)"
                    )
                ],
                (0, 9, 12, 8),
                unit="percentunit",
            ),
            panel(
                "Anomaly score",
                "timeseries",
                [
                    influx(
                        'SELECT max("anomaly_score") AS "score", last("anomaly_threshold") AS "threshold" '
                        f'FROM "predictions" WHERE {MACHINE_FILTER} AND $timeFilter GROUP BY time($__interval) fill(none)'
                    )
                ],
                (12, 9, 12, 8),
            ),
            panel(
                "Why: top contributions (latest prediction)",
                "bargauge",
                [
                    influx(
                        'SELECT last("contribution") FROM "contributions" '
                        f'WHERE {MACHINE_FILTER} AND $timeFilter GROUP BY "feature"',
                        alias="$tag_feature",
                    )
                ],
                (0, 17, 12, 8),
                displayMode="gradient",
                orientation="horizontal",
                reduceOptions={"calcs": ["lastNotNull"], "values": False},
            ),
            panel(
                "Alerts",
                "table",
                [
                    influx(
                        'SELECT "severity", "p_failure", "summary", "top_feature", "top_value", "top_normal", '
                        f'"actor", "note" FROM "alerts" WHERE {MACHINE_FILTER} AND $timeFilter GROUP BY "alert_id", "state"',
                        fmt="table",
                    )
                ],
                (12, 17, 12, 8),
            ),
            panel(
                "Window features",
                "table",
                [
                    influx(
                        f'SELECT * FROM "features" WHERE {MACHINE_FILTER} AND $timeFilter ORDER BY time DESC LIMIT 50',
                        fmt="table",
                    )
                ],
                (0, 25, 24, 8),
            ),
        ],
        variables=[
            {
                **tag_variable("machine", "readings", "machine"),
                "includeAll": False,
                "multi": False,
                "current": {},
            }
        ],
        annotations=[
            {
                "name": "Alerts opened",
                "datasource": INFLUX,
                "enable": True,
                "iconColor": "red",
                "query": f'SELECT "summary" FROM "alerts" WHERE {MACHINE_FILTER} AND "state" = \'open\' AND $timeFilter',
                "textColumn": "summary",
            },
            {
                "name": "Maintenance",
                "datasource": INFLUX,
                "enable": True,
                "iconColor": "blue",
                "query": f'SELECT "text", "failure_mode" FROM "maintenance" WHERE {MACHINE_FILTER} AND $timeFilter',
                "textColumn": "text",
                "tagsColumn": "failure_mode",
            },
        ],
    )


def quality() -> dict[str, Any]:
    def per(tag: str, y: int) -> dict[str, Any]:
        return panel(
            f"$metric per {tag}",
            "timeseries",
            [
                influx(
                    f'SELECT last("value") FROM "model_metrics" WHERE "metric" = \'$metric\' AND "{tag}" != \'\' '
                    f'AND $timeFilter GROUP BY time($__interval), "{tag}" fill(previous)',
                    alias=f"$tag_{tag}",
                )
            ],
            (0, y, 12, 8),
            description="Prequential (online, delayed-label) quality; a segment served worse stands out here.",
        )

    return dashboard(
        "vigil-model-quality",
        "Vigil / Model quality per segment",
        "Online model quality per machine type, site and line; drift events and their outcome.",
        [
            per("type", 0),
            per("site", 8),
            per("line", 16),
            panel(
                "Latest $metric per segment (services)",
                "bargauge",
                [prom('vigil_model_quality{metric="$metric"}', "{{dimension}}={{segment}}")],
                (12, 0, 12, 8),
                orientation="horizontal",
                reduceOptions={"calcs": ["lastNotNull"], "values": False},
            ),
            panel(
                "Drift events per machine type",
                "timeseries",
                [
                    influx(
                        'SELECT count("value") FROM "drift" WHERE $timeFilter GROUP BY time($__interval), "type" fill(0)',
                        alias="$tag_type",
                    )
                ],
                (12, 8, 12, 8),
                drawStyle="bars",
            ),
            panel(
                "Drift history",
                "table",
                [
                    influx(
                        'SELECT "value", "detail" FROM "drift" WHERE $timeFilter GROUP BY "machine", "type", "detector", "target", "event"',
                        fmt="table",
                    )
                ],
                (12, 16, 12, 8),
            ),
        ],
        variables=[
            {
                "name": "metric",
                "label": "metric",
                "type": "query",
                "datasource": INFLUX,
                "query": 'SHOW TAG VALUES FROM "model_metrics" WITH KEY = "metric"',
                "refresh": 2,
                "includeAll": False,
                "multi": False,
                "current": {},
                "sort": 1,
            }
        ],
    )


def pipeline() -> dict[str, Any]:
    return dashboard(
        "vigil-pipeline",
        "Vigil / Pipeline throughput and lag",
        "Readings/s, Kafka traffic, consumer lag, dead letters, end-to-end latency, CPU and memory per service.",
        [
            panel(
                "Readings/s",
                "timeseries",
                [prom("sum by (service) (rate(vigil_readings_total[1m]))", "{{service}}")],
                (0, 0, 12, 8),
                unit="ops",
            ),
            panel(
                "Consumer lag (records)",
                "timeseries",
                [prom("sum by (group, topic) (vigil_consumer_lag)", "{{group}} {{topic}}")],
                (12, 0, 12, 8),
            ),
            panel(
                "Messages in/s by topic",
                "timeseries",
                [prom("sum by (topic) (rate(vigil_messages_in_total[1m]))", "{{topic}}")],
                (0, 8, 12, 8),
                unit="ops",
            ),
            panel(
                "Messages out/s by topic",
                "timeseries",
                [prom("sum by (topic) (rate(vigil_messages_out_total[1m]))", "{{topic}}")],
                (12, 8, 12, 8),
                unit="ops",
            ),
            panel(
                "Source time to stage (p50, p95)",
                "timeseries",
                [
                    prom(
                        "histogram_quantile(0.5, sum by (le, stage) (rate(vigil_source_latency_seconds_bucket[5m])))",
                        "p50 {{stage}}",
                    ),
                    prom(
                        "histogram_quantile(0.95, sum by (le, stage) (rate(vigil_source_latency_seconds_bucket[5m])))",
                        "p95 {{stage}}",
                        ref="B",
                    ),
                ],
                (0, 16, 12, 8),
                unit="s",
            ),
            panel(
                "Dead letters, errors and drops /s",
                "timeseries",
                [
                    prom("sum by (reason) (rate(vigil_dead_letters_total[5m]))", "dead letter: {{reason}}"),
                    prom(
                        "sum by (service, kind) (rate(vigil_errors_total[5m]))", "error {{service}}: {{kind}}", ref="B"
                    ),
                    prom("sum by (reason) (rate(vigil_dropped_total[5m]))", "dropped: {{reason}}", ref="C"),
                ],
                (12, 16, 12, 8),
                unit="ops",
            ),
            panel(
                "CPU per service",
                "timeseries",
                [prom('sum by (service) (rate(process_cpu_seconds_total{job!="prometheus"}[1m]))', "{{service}}")],
                (0, 24, 8, 8),
                unit="percentunit",
            ),
            panel(
                "Memory per service (RSS)",
                "timeseries",
                [prom('sum by (service) (process_resident_memory_bytes{job!="prometheus"})', "{{service}}")],
                (8, 24, 8, 8),
                unit="bytes",
            ),
            panel(
                "Ready replicas",
                "stat",
                [prom("sum by (service) (vigil_ready)", "{{service}}")],
                (16, 24, 8, 4),
            ),
            panel(
                "Open alerts",
                "stat",
                [prom("sum(vigil_alerts_open)", "open")],
                (16, 28, 8, 4),
            ),
            panel(
                "Readings written to InfluxDB per minute",
                "timeseries",
                [
                    influx(
                        'SELECT count("value") FROM "readings" WHERE $timeFilter GROUP BY time(1m) fill(0)',
                        alias="readings",
                    )
                ],
                (0, 32, 24, 7),
            ),
        ],
    )


DASHBOARDS = {
    "vigil-fleet": fleet,
    "vigil-machine": machine,
    "vigil-model-quality": quality,
    "vigil-pipeline": pipeline,
}


def render() -> dict[str, str]:
    return {f"{name}.json": json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            sys.stderr.write(f"stale dashboards (run python deploy/grafana/dashboards.py): {', '.join(stale)}\n")
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
