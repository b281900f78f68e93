"""What the Machine, Fleet, Episode and Quality pages read from InfluxDB (InfluxQL over the v1 API, see
docs/influx-schema.md) and from the alert store.

Each function answers one page in a few queries, each bounded by a time window and, where it can be, by the
``machine`` or ``alert_id`` tag (an index lookup in InfluxDB). Times go to the browser as UTC seconds.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from alerts.query import _quote
from alerts.render import sensor_of
from vigil.config import VigilConfig
from vigil.influx import ALERTS, CONTRIBUTIONS, DRIFT, FEATURES, MAINTENANCE, MODEL_METRICS, PREDICTIONS, InfluxSink

T = TypeVar("T")
TOP_SENSORS = 3
QUALITY_METRICS = ("recall", "precision", "false_alarms_per_week", "lead_time_median_s", "roc_auc")


def _s(ns: Any) -> float:
    return int(ns) / 1e9


def _where(machine: str, start: datetime, end: datetime) -> str:
    return f"\"machine\" = {_quote(machine)} AND time >= '{start.isoformat()}' AND time < '{end.isoformat()}'"


def _field(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


@dataclass
class TTLCache:
    """Answers kept for ``ttl_s`` (the Fleet and Quality pages: one InfluxDB round per period, not per viewer)."""

    ttl_s: float = 10.0
    _items: dict[Any, tuple[float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: Any, make: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            value: T = hit[1]
            return value
        value = make()
        with self._lock:
            self._items[key] = (now, value)
        return value


def latest_prediction(sink: InfluxSink, machine: str) -> dict[str, Any] | None:
    rows = sink.query(
        'SELECT "p_failure", "anomaly_score", "decision", "decided_by", "cold_start", "model_version", "model" '
        f'FROM "{PREDICTIONS}" WHERE "machine" = {_quote(machine)} ORDER BY time DESC LIMIT 1'
    )
    return rows[0] if rows else None


def machine_page(sink: InfluxSink, config: VigilConfig, machine: str, days: float, now: datetime) -> dict[str, Any]:
    """Risk, anomaly score, top sensors (with their hard limits), episodes and maintenance over ``days`` up to the
    machine's latest prediction (or now): one time axis."""
    resolved = config.machines_by_id[machine]
    last = latest_prediction(sink, machine)
    end = datetime.fromtimestamp(_s(last["time"]), UTC) + timedelta(seconds=1) if last else now
    start = end - timedelta(days=days)
    where = _where(machine, start, end)
    preds = sink.query(
        f'SELECT "p_failure", "anomaly_score", "anomaly_threshold", "threshold" FROM "{PREDICTIONS}" WHERE {where}'
    )
    top = sink.query(f'SELECT max("contribution") AS c FROM "{CONTRIBUTIONS}" WHERE {where} GROUP BY "feature"')
    features = [r["feature"] for r in sorted(top, key=lambda r: -(r.get("c") or 0.0)) if r.get("feature")]
    features = [f for f in features if sensor_of(f) in resolved.sensors][:TOP_SENSORS]
    if not features:  # no contributions yet (cold start): the type's key sensors, else its first ones
        keys = [s for s, spec in resolved.sensors.items() if spec.key] or list(resolved.sensors)
        features = [f"{s}.mean" for s in keys[:TOP_SENSORS]]
    rows = sink.query(f'SELECT {", ".join(_field(f) for f in features)} FROM "{FEATURES}" WHERE {where}')
    sensors = []
    for f in features:
        spec = resolved.sensors[sensor_of(f)]
        points = [(_s(r["time"]), r.get(f)) for r in rows if r.get(f) is not None]
        sensors.append(
            {
                "feature": f,
                "unit": spec.unit,
                "low": spec.limits.low,
                "high": spec.limits.high,
                "t": [p[0] for p in points],
                "v": [p[1] for p in points],
            }
        )
    wide = _where(machine, start, max(end, now + timedelta(minutes=1)))
    transitions = sink.query(
        f'SELECT "alert_id", "kind", "status", "seq", "severity", "opened_at_ns" FROM "{ALERTS}" WHERE {wide}'
    )
    episodes: dict[str, dict[str, Any]] = {}
    for r in sorted(transitions, key=lambda r: int(r.get("seq") or 0)):
        ep = episodes.setdefault(
            r["alert_id"],
            {"alert_id": r["alert_id"], "kind": r.get("kind"), "start": _s(r.get("opened_at_ns") or r["time"])},
        )
        ep.update(state=r.get("status"), severity=r.get("severity"))
        if r.get("status") == "resolved":
            ep["end"] = _s(r["time"])
    maintenance = sink.query(f'SELECT "event_kind", "failure_mode", "text" FROM "{MAINTENANCE}" WHERE {wide}')
    state = sink.query(f'SELECT last("state") AS state FROM "{FEATURES}" WHERE "machine" = {_quote(machine)}')
    return {
        "machine": machine,
        "start": start.timestamp(),
        "end": end.timestamp(),
        "risk": {
            "t": [_s(r["time"]) for r in preds],
            "p_failure": [r.get("p_failure") for r in preds],
            "anomaly_score": [r.get("anomaly_score") for r in preds],
            "anomaly_threshold": [r.get("anomaly_threshold") for r in preds],
            "threshold": [r.get("threshold") for r in preds],
        },
        "sensors": sensors,
        "episodes": list(episodes.values()),
        "maintenance": [
            {"t": _s(r["time"]), "kind": r.get("event_kind"), "text": r.get("text") or r.get("failure_mode") or ""}
            for r in maintenance
        ],
        "state": state[0].get("state") if state else None,
        "latest": last,
    }


def fleet(sink: InfluxSink) -> dict[str, dict[str, Any]]:
    """Every machine's latest probability, decision and operating state (two grouped selector queries)."""
    out: dict[str, dict[str, Any]] = {}
    for r in sink.query(
        f'SELECT last("p_failure") AS p_failure, last("decision") AS decision FROM "{PREDICTIONS}" GROUP BY "machine"'
    ):
        out.setdefault(r["machine"], {}).update(p_failure=r.get("p_failure"), decision=r.get("decision"))
    for r in sink.query(f'SELECT last("state") AS state FROM "{FEATURES}" GROUP BY "machine"'):
        out.setdefault(r["machine"], {})["state"] = r.get("state")
    return out


def episode_history(sink: InfluxSink, alert_id: str) -> list[dict[str, Any]]:
    """Every recorded transition of an episode, in order (``seq``)."""
    rows = sink.query(f'SELECT * FROM "{ALERTS}" WHERE "alert_id" = {_quote(alert_id)}')
    return sorted(rows, key=lambda r: int(r.get("seq") or 0))


def quality(sink: InfluxSink, now: datetime, days: float = 30.0) -> dict[str, Any]:
    """The segment audit (latest value of each quality metric per segment) and the drift events."""
    since = f"time > '{(now - timedelta(days=days)).isoformat()}'"
    segments: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sink.query(
        f'SELECT last("value") AS value, last("n") AS n FROM "{MODEL_METRICS}" WHERE {since} '
        'GROUP BY "metric", "type", "site", "line", "machine"'
    ):
        dimension, segment = "all", "all"
        for key in ("machine", "line", "site", "type"):
            if r.get(key):
                dimension, segment = key, str(r[key])
                break
        row = segments.setdefault((dimension, segment), {"dimension": dimension, "segment": segment})
        row[str(r.get("metric"))] = r.get("value")
        row["n"] = max(int(r.get("n") or 0), int(row.get("n") or 0))
    drift = sink.query(
        f'SELECT "event_kind", "detail", "value" FROM "{DRIFT}" WHERE {since} '
        'GROUP BY "type", "machine", "detector", "target"'
    )
    drift.sort(key=lambda r: -int(r["time"]))
    order = {"all": 0, "type": 1, "site": 2, "line": 3, "machine": 4}
    return {
        "segments": sorted(segments.values(), key=lambda r: (order.get(r["dimension"], 9), r["segment"])),
        "drift": [{**r, "t": _s(r["time"])} for r in drift[:200]],
    }


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def scrub(text: str | None) -> str:
    """A delivery error as a page may show it: addresses (which can carry a webhook's secret) left out."""
    return _URL.sub("<address>", text or "")[:300]
