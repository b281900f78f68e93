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
from concurrent.futures import ThreadPoolExecutor
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
        'SELECT "p_failure", "anomaly_score", "decision", "decided_by", "cold_start", "model_version", "reasons", "model" '
        f'FROM "{PREDICTIONS}" WHERE "machine" = {_quote(machine)} ORDER BY time DESC LIMIT 1'
    )
    return rows[0] if rows else None


RAW_POINTS = 1500
"""Beyond this many 10-minute windows (~10 days) the Machine page's series are aggregated into as many buckets
(max per bucket: a peak of risk or a sensor's excursion towards its limit stays visible)."""


def _bucket_s(start: datetime, end: datetime) -> int | None:
    """The aggregation bucket for a window, or None to read raw points.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> _bucket_s(t, t + timedelta(days=7)) is None, _bucket_s(t, t + timedelta(days=30))
    (True, 1800)
    """
    span = (end - start).total_seconds()
    if span / 600 <= RAW_POINTS:
        return None
    return int(-(-span // RAW_POINTS // 600) * 600)


def _select(fields: list[str], bucket: int | None, last: tuple[str, ...] = ()) -> str:
    if bucket is None:
        return ", ".join(_field(f) for f in fields)
    return ", ".join(f"{'last' if f in last else 'max'}({_field(f)}) AS {_field(f)}" for f in fields)


def _grouped(bucket: int | None) -> str:
    return "" if bucket is None else f" GROUP BY time({bucket}s) fill(none)"


def machine_page(sink: InfluxSink, config: VigilConfig, machine: str, days: float, now: datetime) -> dict[str, Any]:
    """Risk, anomaly score, top sensors (with their hard limits), episodes and maintenance over ``days`` up to the
    machine's latest prediction (or now): one time axis. Independent queries run side by side."""
    resolved = config.machines_by_id[machine]
    with ThreadPoolExecutor(4, thread_name_prefix="vigil-console-query") as pool:
        state_q = pool.submit(
            sink.query, f'SELECT last("state") AS state FROM "{FEATURES}" WHERE "machine" = {_quote(machine)}'
        )
        last = latest_prediction(sink, machine)
        end = datetime.fromtimestamp(_s(last["time"]), UTC) + timedelta(seconds=1) if last else now
        start = end - timedelta(days=days)
        where = _where(machine, start, end)
        wide = _where(machine, start, max(end, now + timedelta(minutes=1)))
        bucket = _bucket_s(start, end)
        risk_fields = ["p_failure", "anomaly_score", "anomaly_threshold", "threshold"]
        preds_q = pool.submit(
            sink.query,
            f'SELECT {_select(risk_fields, bucket, ("anomaly_threshold", "threshold"))} FROM "{PREDICTIONS}" '
            f"WHERE {where}{_grouped(bucket)}",
        )
        transitions_q = pool.submit(
            sink.query,
            f'SELECT "alert_id", "kind", "status", "seq", "severity", "opened_at_ns" FROM "{ALERTS}" WHERE {wide}',
        )
        maintenance_q = pool.submit(
            sink.query, f'SELECT "event_kind", "failure_mode", "text" FROM "{MAINTENANCE}" WHERE {wide}'
        )
        top = sink.query(f'SELECT max("contribution") AS c FROM "{CONTRIBUTIONS}" WHERE {where} GROUP BY "feature"')
        features = [r["feature"] for r in sorted(top, key=lambda r: -(r.get("c") or 0.0)) if r.get("feature")]
        features = [f for f in features if sensor_of(f) in resolved.sensors][:TOP_SENSORS]
        if not features:  # no contributions yet (cold start): the type's key sensors, else its first ones
            keys = [s for s, spec in resolved.sensors.items() if spec.key] or list(resolved.sensors)
            features = [f"{s}.mean" for s in keys[:TOP_SENSORS]]
        rows = sink.query(f'SELECT {_select(features, bucket)} FROM "{FEATURES}" WHERE {where}{_grouped(bucket)}')
        preds, transitions, maintenance, state = (
            preds_q.result(),
            transitions_q.result(),
            maintenance_q.result(),
            state_q.result(),
        )
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
    episodes: dict[str, dict[str, Any]] = {}
    for r in sorted(transitions, key=lambda r: int(r.get("seq") or 0)):
        ep = episodes.setdefault(
            r["alert_id"],
            {"alert_id": r["alert_id"], "kind": r.get("kind"), "start": _s(r.get("opened_at_ns") or r["time"])},
        )
        ep.update(state=r.get("status"), severity=r.get("severity"))
        if r.get("status") == "resolved":
            ep["end"] = _s(r["time"])
    return {
        "machine": machine,
        "start": start.timestamp(),
        "end": end.timestamp(),
        "bucket_s": bucket,
        "risk": {"t": [_s(r["time"]) for r in preds], **{f: [r.get(f) for r in preds] for f in risk_fields}},
        "sensors": sensors,
        "episodes": list(episodes.values()),
        "maintenance": [
            {"t": _s(r["time"]), "kind": r.get("event_kind"), "text": r.get("text") or r.get("failure_mode") or ""}
            for r in maintenance
        ],
        "state": _state(state[0].get("state") if state else None, last),
        "latest": last,
    }


def _state(state: str | None, last: dict[str, Any] | None) -> str | None:
    """The feature worker's state, with warm-up (after a start) told apart as the model service reports it.

    >>> _state("running", {"reasons": "warm-up after start: anomalies are not alerted"}), _state("off", None)
    ('warm-up', 'off')
    """
    if state == "running" and last is not None and "warm-up" in str(last.get("reasons") or ""):
        return "warm-up"
    return state


FRESH_S = 2 * 86400.0
"""The Fleet page reads each machine's latest prediction from this far back (a bounded query, ~10x cheaper than
over all time); machines silent for longer are looked up over all time, at most every ``STALE_TTL_S``."""
STALE_TTL_S = 300.0


class Fleet:
    """Every machine's latest probability and operating state."""

    def __init__(self) -> None:
        self._stale = TTLCache(ttl_s=STALE_TTL_S)

    def __call__(self, sink: InfluxSink, machines: list[str], now: datetime) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        since = f"time > '{(now - timedelta(seconds=FRESH_S)).isoformat()}'"
        for r in sink.query(
            f'SELECT last("p_failure") AS p_failure FROM "{PREDICTIONS}" WHERE {since} GROUP BY "machine"'
        ):
            out.setdefault(r["machine"], {})["p_failure"] = r.get("p_failure")
        for r in sink.query(f'SELECT last("state") AS state FROM "{FEATURES}" WHERE {since} GROUP BY "machine"'):
            out.setdefault(r["machine"], {})["state"] = r.get("state")
        if any(m not in out or "state" not in out[m] for m in machines):
            for m, older in self._stale.get("all", lambda: _latest_all(sink)).items():
                row = out.setdefault(m, {})
                for key, value in older.items():
                    row.setdefault(key, value)
        return out


def _latest_all(sink: InfluxSink) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in sink.query(f'SELECT last("p_failure") AS p_failure FROM "{PREDICTIONS}" GROUP BY "machine"'):
        out.setdefault(r["machine"], {})["p_failure"] = r.get("p_failure")
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
