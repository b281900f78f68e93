"""The backtest: a plant's history through the same window engine, models and alert lifecycle the services run.

Readings (columns from :mod:`ingest.tabular`, or any source of :class:`~ingest.tabular.Frame`\\ s) are sorted by
event time and fed to :func:`features.vector.window_engine` one window-length slice at a time; every feature
vector goes to :class:`~models.pipeline.FleetModel` (predict, then learn what it can) and, with the prediction and
any drift event, to :class:`~alerts.lifecycle.Lifecycle` exactly as the alerts service hands them over. A
maintenance record is delivered once the readings have moved a window and its grace past it, so that the windows
it labels were predicted first, as in a live plant where the record is written after the failure.

Two rule baselines run beside it on the same vectors, through lifecycles of their own: the plant file's hard
limits, and the same limits moved in by a margin (a share of each sensor's valid range). All three are scored by
:func:`vigil.outcomes.score` (same-life matching, operating time, right-censoring at the end of the data).

Input validation is the collectors' (:class:`ingest.validation.Validator`) in vectorised form: values outside the
valid range, not finite, or of bad (or, unless ``windows.accept_uncertain``, uncertain) quality reach the engine as
unusable, as they do through Kafka.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts.episodes import PlantInfo, Transition
from alerts.lifecycle import Lifecycle
from backtest.margin import margin_config as margin_config
from backtest.margin import margin_engine
from ingest.replay import label_due
from ingest.tabular import Frame
from models.pipeline import FleetModel
from models.rules import HardLimits
from vigil.config import VigilConfig
from vigil.contracts import (
    AlertState,
    Decision,
    FeatureVector,
    MachineState,
    MaintenanceEvent,
    MaintenanceKind,
    Prediction,
)
from vigil.outcomes import Episode, Failure, Outcome, Repair, confirmable, lives, score

log = logging.getLogger(__name__)

PAGED_KINDS = ("failure_risk", "hard_limit", "anomaly")
"""Episode kinds a planner is paged for; ``drift``, ``sensor_fault`` and ``startup_limit`` (a limit crossed only during
warm-up) are informational."""
METHODS = ("vigil", "hard_limits", "margin")
LABELS = {
    "vigil": "Vigil (every episode a planner is paged for)",
    "hard_limits": "Rule: the plant file's hard limits",
    "margin": "Rule: limits moved in by {margin:g} % of the valid range",
}
_BAD, _UNCERTAIN = 0x80000000, 0x40000000


@dataclass
class Tracked:
    """One alert episode as the backtest saw it (reopening within the cooldown keeps the same one)."""

    alert_id: str
    machine_id: str
    kind: str
    opened_at: datetime
    closed_at: datetime | None = None
    severity: str = ""
    summary: str = ""
    paged: bool = True


@dataclass
class Settings:
    margin_pct: float = 5.0
    """Margin rule: each hard limit moved toward normal by this share of the sensor's valid range."""
    burn_in_days: float = 0.0
    """Days at the start whose episodes are not counted as false alarms (the models learn normals meanwhile)."""
    timeline_points: int = 600


@dataclass
class _Method:
    """One method's lifecycle and the episodes it opened."""

    lifecycle: Lifecycle
    episodes: dict[str, Tracked] = field(default_factory=dict)

    def take(self, transitions: Iterable[Transition]) -> None:
        for tr in transitions:
            a = tr.alert
            ep = self.episodes.get(a.alert_id)
            if ep is None:
                ep = self.episodes[a.alert_id] = Tracked(a.alert_id, a.machine_id, a.alert_kind, a.opened_at)
                ep.paged = a.state == AlertState.OPEN
            if a.state == AlertState.RESOLVED:
                ep.closed_at = a.ts
            elif a.state == AlertState.OPEN:
                ep.closed_at = None  # reopened within the cooldown: the same episode goes on
                ep.paged = True
            if a.summary:
                ep.summary = a.summary
            ep.severity = a.severity.value


@dataclass
class Backtest:
    """What a backtest run saw and decided; :func:`result` turns it into the report's dict."""

    config: VigilConfig
    settings: Settings
    methods: dict[str, _Method]
    failures: list[Failure] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    maintenance: list[MaintenanceEvent] = field(default_factory=list)
    operating_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    operating_hours: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    """Per machine, running seconds per hour of event time (epoch hour): where the healthy time is."""
    start: float = math.inf
    end: float = -math.inf
    readings: int = 0
    windows: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    decided_by: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    series: dict[str, list[tuple[float, dict[str, float | None], float | None, float | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    """Per machine: (window end, sensor means, p_failure, anomaly score / threshold)."""
    predictions: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    """Per machine: (window end, p_failure) for the calibration."""
    seconds: float = 0.0
    segments: dict[str, Any] = field(default_factory=dict)


def run(
    config: VigilConfig,
    frames: Iterable[Frame],
    maintenance: Iterable[MaintenanceEvent],
    settings: Settings | None = None,
) -> Backtest:
    """Replays the readings and maintenance records through the pipeline's stages; see the module documentation."""
    started = time.monotonic()
    settings = settings or Settings()
    plant = PlantInfo.from_config(config)
    methods = {name: _Method(Lifecycle(config.alerts, plant)) for name in METHODS}
    bt = Backtest(config, settings, methods)
    codes, ts, values = _sorted_columns(config, frames, bt)
    model = FleetModel(config.models, config.machines_by_id, config.machine_types)
    margin = margin_config(config, settings.margin_pct)
    rules = _Rules(config, margin)
    # One window pass feeds Vigil and both rules: the builder measures the margin limits on the same samples.
    engine, builder = margin_engine(config, margin)

    def on_vector(fv: FeatureVector) -> None:
        _vector(bt, model, rules, fv)
        _rule(bt, rules, "margin", builder.margin_vector(fv))

    engines: list[tuple[Any, Callable[[FeatureVector], None]]] = [(engine, on_vector)]
    events = sorted(maintenance, key=lambda e: (e.ts, e.event != MaintenanceKind.FAILURE))
    bt.maintenance = list(events)
    due = [(label_due(e, config.windows), i, e) for i, e in enumerate(events)]
    heapq.heapify(due)
    machine_ids, sensor_names = _names(config)
    step = config.windows.size_s
    n = len(ts)
    i = 0
    while i < n:
        t0 = ts[i]
        while due and due[0][0] <= t0:
            _maintenance(bt, model, heapq.heappop(due)[2])
        j = int(np.searchsorted(ts, t0 + step, side="left"))
        _feed(engines, codes[i:j], ts[i:j], values[i:j], machine_ids, sensor_names)
        i = j
    for engine, handle in engines:
        for fv in engine.flush():
            handle(fv)
    while due:
        _maintenance(bt, model, heapq.heappop(due)[2])
    bt.segments = model.audit.report()
    bt.seconds = time.monotonic() - started
    return bt


# --------------------------------------------------------------------------------------------- input


def _names(config: VigilConfig) -> tuple[list[str], list[str]]:
    machine_ids = sorted(config.machines_by_id)
    sensors = sorted({s for m in config.machines_by_id.values() for s in m.sensors})
    return machine_ids, sensors


def _sorted_columns(
    config: VigilConfig, frames: Iterable[Frame], bt: Backtest
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Every reading as (machine*S + sensor code, time, usable value or NaN), in time order.

    The whole history is held as three numeric columns (~24 bytes a reading), so that files in any order (one
    per machine, tags one after the other) reach the engine in event-time order."""
    machine_ids, sensor_names = _names(config)
    m_index = {m: k for k, m in enumerate(machine_ids)}
    s_index = {s: k for k, s in enumerate(sensor_names)}
    width = len(sensor_names)
    bounds = np.full((len(machine_ids) * width, 2), np.nan)
    for m in config.machines_by_id.values():
        for s, spec in m.sensors.items():
            bounds[m_index[m.id] * width + s_index[s]] = (spec.range.min, spec.range.max)
    reject_uncertain = not config.windows.accept_uncertain
    parts: list[tuple[Any, ...]] = []
    for frame in frames:
        if not len(frame):
            continue
        mc = np.fromiter((m_index[m] for m in frame.machine), dtype=np.int64, count=len(frame))
        sc = np.fromiter((s_index[s] for s in frame.sensor), dtype=np.int64, count=len(frame))
        code = mc * width + sc
        value = frame.value.astype(np.float64, copy=True)
        severity = frame.status.astype(np.uint32) & np.uint32(0xC0000000)
        bad = severity == np.uint32(_BAD)
        uncertain = severity == np.uint32(_UNCERTAIN)
        not_finite = ~np.isfinite(value) & ~np.isnan(value)
        lo, hi = bounds[code, 0], bounds[code, 1]
        out_of_range = np.isfinite(value) & ((value < lo) | (value > hi))
        bt.flags.update(
            {
                "bad_quality": int(bad.sum()),
                "uncertain_quality": int(uncertain.sum()),
                "not_finite": int(not_finite.sum()),
                "out_of_range": int(out_of_range.sum()),
                "no_value": int(np.isnan(frame.value).sum()),
            }
        )
        unusable = bad | not_finite | out_of_range | (uncertain if reject_uncertain else False)
        value[unusable] = np.nan
        parts.append((code, frame.ts.astype(np.float64), value))
    bt.flags = Counter({k: v for k, v in bt.flags.items() if v})
    if not parts:
        empty = np.empty(0)
        return empty.astype(np.int64), empty, empty
    codes = np.concatenate([p[0] for p in parts])
    ts = np.concatenate([p[1] for p in parts])
    values = np.concatenate([p[2] for p in parts])
    order = np.argsort(ts, kind="stable")
    bt.readings = len(ts)
    bt.start, bt.end = float(ts[order[0]]), float(ts[order[-1]])
    return codes[order], ts[order], values[order]


def _feed(
    engines: list[tuple[Any, Callable[[FeatureVector], None]]],
    codes: npt.NDArray[np.int64],
    ts: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    machine_ids: list[str],
    sensor_names: list[str],
) -> None:
    """One slice of readings: per machine one columnar message (runs of one sensor each), as a collector batches."""
    width = len(sensor_names)
    order = np.argsort(codes, kind="stable")
    codes, ts, values = codes[order], ts[order], values[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(codes)]))
    k = 0
    while k < len(starts):
        machine = int(codes[starts[k]]) // width
        sensors: list[str] = []
        lengths: list[int] = []
        first = starts[k]
        while k < len(starts) and int(codes[starts[k]]) // width == machine:
            sensors.append(sensor_names[int(codes[starts[k]]) % width])
            lengths.append(int(ends[k] - starts[k]))
            last = ends[k]
            k += 1
        for engine, handle in engines:
            for fv in engine.add_columns(machine_ids[machine], sensors, lengths, ts[first:last], values[first:last]):
                handle(fv)


# --------------------------------------------------------------------------------------------- the stages


def _vector(bt: Backtest, model: FleetModel, rules: _Rules, fv: FeatureVector) -> None:
    now = fv.window_end.timestamp()
    bt.windows += 1
    if fv.state == MachineState.RUNNING:
        length = (fv.window_end - fv.window_start).total_seconds()
        bt.operating_s[fv.machine_id] += length
        bt.operating_hours[fv.machine_id][int(now // 3600)] += int(length)
    vigil = bt.methods["vigil"]
    vigil.take(vigil.lifecycle.observe_features(fv, now))
    out = model.process(fv)
    for event in out.drift:
        bt.drift[event.event] += 1
        vigil.take(vigil.lifecycle.observe_drift(event, now))
    p = out.prediction
    ratio: float | None = None
    if p is not None:
        bt.decided_by[f"{p.decision}/{p.decided_by}"] += 1
        vigil.take(vigil.lifecycle.observe(p, now))
        if p.anomaly_score is not None and p.anomaly_threshold:
            ratio = p.anomaly_score / p.anomaly_threshold
        if p.p_failure is not None and p.decision != Decision.OFF:
            bt.predictions[fv.machine_id].append((now, p.p_failure))
    means = {k.removesuffix(".mean"): v for k, v in fv.features.items() if k.endswith(".mean")}
    bt.series[fv.machine_id].append((now, means, p.p_failure if p is not None else None, ratio))
    _rule(bt, rules, "hard_limits", fv)


def _rule(bt: Backtest, rules: _Rules, name: str, fv: FeatureVector) -> None:
    now = fv.window_end.timestamp()
    method = bt.methods[name]
    method.take(method.lifecycle.observe_features(fv, now))
    method.take(method.lifecycle.observe(rules.predict(name, fv), now))


def _maintenance(bt: Backtest, model: FleetModel, event: MaintenanceEvent) -> None:
    now = event.ts.timestamp()
    for drift in model.maintenance(event):
        bt.drift[drift.event] += 1
        bt.methods["vigil"].take(bt.methods["vigil"].lifecycle.observe_drift(drift, now))
    for method in bt.methods.values():
        method.take(method.lifecycle.observe_maintenance(event, now))
    if event.event == MaintenanceKind.FAILURE:
        bt.failures.append(Failure(event.machine_id, event.ts, event.failure_mode))
    elif event.event == MaintenanceKind.REPAIR:
        bt.repairs.append(Repair(event.machine_id, event.ts))


class _Rules:
    """The two rule baselines as predictions the lifecycle understands (``decided_by = "rule"``)."""

    def __init__(self, config: VigilConfig, margin: VigilConfig) -> None:
        self.config = config
        self.limits: dict[str, dict[str, HardLimits]] = {}
        persistence = config.models.limit_persistence_s
        moved = margin.machines_by_id
        for m in config.machines_by_id.values():
            self.limits[m.id] = {
                "hard_limits": HardLimits(m.sensors, persistence_s=persistence),
                "margin": HardLimits(moved[m.id].sensors, persistence_s=persistence),
            }

    def predict(self, method: str, fv: FeatureVector) -> Prediction:
        off = fv.state == MachineState.OFF
        violations = () if off else self.limits[fv.machine_id][method].violations(fv.features)
        return Prediction.model_construct(
            machine_id=fv.machine_id,
            machine_type=fv.machine_type,
            site=fv.site,
            line=fv.line,
            ts=fv.window_end,
            window_start=fv.window_start,
            model=method,
            model_version=0,
            p_failure=None,
            anomaly_score=None,
            anomaly_threshold=None,
            threshold=0.5,
            horizon_s=None,
            decision=Decision.OFF if off else (Decision.ALERT if violations else Decision.OK),
            decided_by="rule",
            reasons=(),
            cold_start=False,
            contributions=(),
            rule_violations=violations,
        )


# --------------------------------------------------------------------------------------------- scoring


def outcome(bt: Backtest, method: str) -> tuple[Outcome, list[Tracked], list[Tracked]]:
    """One method's score: paged episodes matched to failures; returns the outcome, paged and informational."""
    episodes = list(bt.methods[method].episodes.values())
    end = datetime.fromtimestamp(bt.end, UTC) if math.isfinite(bt.end) else datetime.now(UTC)
    paged = [e for e in episodes if e.kind in PAGED_KINDS and e.paged]
    informational = [e for e in episodes if e.kind not in PAGED_KINDS]
    scored_from = datetime.fromtimestamp(bt.start, UTC) + timedelta(days=bt.settings.burn_in_days)
    as_outcome = [
        Episode(e.machine_id, e.opened_at, e.kind, e.closed_at if e.closed_at is not None else end, e.alert_id)
        for e in paged
    ]
    horizon_s = bt.config.models.horizon_s
    known, _ = confirmable(as_outcome, bt.failures, end=end, horizon_s=horizon_s)
    # Right-censoring as in `vigil evaluate`: the false-alarm rate is divided by the operating time before the
    # last horizon (only then can an episode be known to be false).
    cutoff = bt.end - horizon_s
    operating = sum(bt.operating_s.values()) * max(0.0, min(1.0, (cutoff - bt.start) / max(bt.end - bt.start, 1.0)))
    burn_in = bt.settings.burn_in_days * 86400.0
    if burn_in > 0:
        operating *= max(0.0, 1.0 - burn_in / max(cutoff - bt.start, 1.0))
    result = score(
        bt.failures,
        known,
        min_lead_s=bt.config.models.min_lead_s,
        horizon_s=horizon_s,
        machines=len(bt.config.machines),
        span_s=0.0,
        repairs=bt.repairs,
        operating_s=operating,
    )
    if burn_in > 0:
        result.false_episodes = [e for e in result.false_episodes if e.opened_at >= scored_from]
        result.false_alarms = len(result.false_episodes)
    return result, paged, informational


def calibration(bt: Backtest, bins: int = 10) -> list[dict[str, float | int | None]]:
    """Reliability: per bin of p_failure, the share of predictions followed by a failure within the horizon (same
    life). Predictions of the last horizon are left out (their outcome is not known)."""
    horizon_s = bt.config.models.horizon_s
    fails: dict[str, list[float]] = defaultdict(list)
    for f in bt.failures:
        fails[f.machine_id].append(f.ts.timestamp())
    repairs: dict[str, list[float]] = defaultdict(list)
    for r in bt.repairs:
        repairs[r.machine_id].append(r.ts.timestamp())
    n = np.zeros(bins, dtype=np.int64)
    p_sum = np.zeros(bins)
    hits = np.zeros(bins)
    for machine, series in bt.predictions.items():
        f_ts = np.array(sorted(fails.get(machine, [])))
        for t, p in series:
            if t > bt.end - horizon_s:
                continue
            k = min(int(p * bins), bins - 1)
            n[k] += 1
            p_sum[k] += p
            nxt = f_ts[np.searchsorted(f_ts, t, side="left")] if len(f_ts) and t <= f_ts[-1] else math.inf
            hits[k] += 1.0 if nxt - t <= horizon_s else 0.0
    return [
        {
            "bin_low": k / bins,
            "bin_high": (k + 1) / bins,
            "n": int(n[k]),
            "mean_p": float(p_sum[k] / n[k]) if n[k] else None,
            "observed": float(hits[k] / n[k]) if n[k] else None,
        }
        for k in range(bins)
    ]


def healthy(bt: Backtest, informational: list[Tracked]) -> tuple[int, float]:
    """Informational episodes opened while their machine was healthy, and the healthy operating machine-months.

    Healthy: not within the horizon before one of the machine's failures, nor between a failure and the repair
    after it. The digest bar (at most one entry per healthy machine-month) is judged on this time: an
    informational finding on a wearing machine is a symptom, not noise."""
    horizon_h = int(bt.config.models.horizon_s // 3600)
    sick: dict[str, set[int]] = defaultdict(set)
    repairs: dict[str, list[float]] = defaultdict(list)
    for r in bt.repairs:
        repairs[r.machine_id].append(r.ts.timestamp())
    for f in bt.failures:
        t = f.ts.timestamp()
        after = [x for x in repairs.get(f.machine_id, []) if x >= t]
        end = min(after) if after else bt.end
        sick[f.machine_id].update(range(int(t // 3600) - horizon_h, int(end // 3600) + 1))
    seconds = sum(s for m, hours in bt.operating_hours.items() for h, s in hours.items() if h not in sick[m])
    found = sum(1 for e in informational if int(e.opened_at.timestamp() // 3600) not in sick[e.machine_id])
    return found, seconds / (30 * 86400.0)


def scores(bt: Backtest) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        o, paged, informational = outcome(bt, method)
        found, months = healthy(bt, informational)
        by_kind = Counter(e.kind for e in paged) + Counter(e.kind for e in informational)
        out[method] = {
            "label": LABELS[method].format(margin=bt.settings.margin_pct),
            "failures": o.failures,
            "caught": o.caught,
            "late": o.late,
            "missed": o.missed,
            "recall": o.recall,
            "lead_time_median_h": o.lead_time_median_h,
            "lead_time_p10_h": o.lead_time_p10_h,
            "paged_episodes": len(paged),
            "false_alarms": o.false_alarms,
            "false_alarms_per_operating_machine_month": o.false_alarms_per_machine_month,
            "informational_episodes": len(informational),
            "informational_on_healthy_machines": found,
            "healthy_operating_machine_months": round(months, 3),
            "informational_per_healthy_machine_month": found / months if months > 0 else None,
            "episodes_by_kind": dict(sorted(by_kind.items())),
        }
    return out


def life_lengths(bt: Backtest) -> dict[str, Any]:
    """How long the lives the labels show lasted (from the previous repair, or failure, to the failure; a machine's
    first failure has no known start and is left out), against the configured horizon.

    A horizon longer than most lives labels a whole life positive, the healthy first hours after a repair included,
    and scores a warning raised in the previous life's last hours as a catch of nothing: the check says so and
    proposes the median life as the horizon (at least twice ``min_lead_s``)."""
    began = lives(bt.failures, bt.repairs)
    hours = sorted((f.ts.timestamp() - began[id(f)]) / 3600.0 for f in bt.failures if math.isfinite(began[id(f)]))
    horizon_h = bt.config.models.horizon_s / 3600.0
    out: dict[str, Any] = {"n": len(hours), "horizon_h": horizon_h}
    if not hours:
        out["check"] = "no life with a known start (a failure after a repair or an earlier failure) in the data"
        return out
    median = float(np.median(hours))
    out.update(
        p10_h=round(float(np.percentile(hours, 10)), 1),
        median_h=round(median, 1),
        p90_h=round(float(np.percentile(hours, 90)), 1),
    )
    if median < horizon_h:
        proposed = max(median, 2 * bt.config.models.min_lead_s / 3600.0)
        out["proposed_horizon_h"] = round(proposed, 1)
        out["check"] = (
            f"half of the lives are shorter than the {horizon_h:g} h horizon (median {median:.1f} h): "
            f"consider [models] horizon_s = {round(proposed * 3600)}"
        )
    else:
        out["check"] = f"the {horizon_h:g} h horizon is within most lives (median {median:.1f} h)"
    return out


def operating_machine_months(bt: Backtest) -> float:
    return sum(bt.operating_s.values()) / (30 * 86400.0)


def iso(ts: float | datetime | None) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def timelines(bt: Backtest) -> list[dict[str, Any]]:
    """One timeline per failure: key sensors, risk, episodes and maintenance from the previous repair (at most two
    horizons before) to a few hours after."""
    outcomes = {m: outcome(bt, m)[0] for m in METHODS}
    verdicts = {m: {(v.failure.machine_id, v.failure.ts): v for v in o.verdicts} for m, o in outcomes.items()}
    out: list[dict[str, Any]] = []
    horizon_s = bt.config.models.horizon_s
    for f in sorted(bt.failures, key=lambda f: f.ts):
        t = f.ts.timestamp()
        begin = t - 2 * horizon_s
        previous = [r.ts.timestamp() for r in bt.repairs if r.machine_id == f.machine_id and r.ts < f.ts]
        if previous:
            begin = max(begin, max(previous) - 6 * 3600.0)
        stop = t + 6 * 3600.0
        series = [s for s in bt.series.get(f.machine_id, []) if begin <= s[0] <= stop]
        stride = max(1, math.ceil(len(series) / bt.settings.timeline_points))
        series = series[::stride]
        machine = bt.config.machines_by_id.get(f.machine_id)
        sensors: dict[str, Any] = {}
        if machine is not None:
            for name, spec in sorted(machine.sensors.items()):
                sensors[name] = {
                    "unit": spec.unit,
                    "limit_low": spec.limits.low,
                    "limit_high": spec.limits.high,
                    "points": [[iso(s[0]), _clean(s[1].get(name))] for s in series],
                }
        episodes = [
            e
            for m in ("vigil",)
            for e in bt.methods[m].episodes.values()
            if e.machine_id == f.machine_id
            and e.opened_at.timestamp() <= stop
            and (e.closed_at is None or e.closed_at.timestamp() >= begin)
        ]
        out.append(
            {
                "machine": f.machine_id,
                "ts": iso(f.ts),
                "failure_mode": f.failure_mode,
                "verdicts": {
                    m: {
                        "verdict": verdicts[m][(f.machine_id, f.ts)].verdict,
                        "lead_time_h": _clean(verdicts[m][(f.machine_id, f.ts)].lead_time_h),
                    }
                    for m in METHODS
                },
                "timeline": {
                    "start": iso(begin),
                    "end": iso(stop),
                    "sensors": sensors,
                    "risk": [[iso(s[0]), _clean(s[2]), _clean(s[3])] for s in series],
                    "episodes": [
                        {
                            "alert_id": e.alert_id,
                            "kind": e.kind,
                            "opened": iso(e.opened_at),
                            "closed": iso(e.closed_at),
                            "severity": e.severity,
                            "summary": e.summary,
                            "paged": e.paged and e.kind in PAGED_KINDS,
                        }
                        for e in sorted(episodes, key=lambda e: e.opened_at)
                    ],
                    "maintenance": [
                        {"ts": iso(e.ts), "event": e.event.value, "text": e.text}
                        for e in bt.maintenance
                        if e.machine_id == f.machine_id and begin <= e.ts.timestamp() <= stop
                    ],
                },
            }
        )
    return out


def result(bt: Backtest, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole result as plain JSON-able data (the report's input)."""
    o, _, _ = outcome(bt, "vigil")
    start = bt.start if math.isfinite(bt.start) else None
    end = bt.end if math.isfinite(bt.end) else None
    return {
        "plant": bt.config.plant,
        "generated_at": iso(datetime.now(UTC)),
        "span": {
            "start": iso(start),
            "end": iso(end),
            "days": round((bt.end - bt.start) / 86400.0, 2) if start is not None and end is not None else 0.0,
        },
        "machines": len({f for f in bt.operating_s} | set(bt.series)),
        "operating_machine_months": round(operating_machine_months(bt), 3),
        "readings": bt.readings,
        "windows": bt.windows,
        "seconds": round(bt.seconds, 1),
        "settings": {
            "horizon_h": bt.config.models.horizon_s / 3600.0,
            "min_lead_h": bt.config.models.min_lead_s / 3600.0,
            "window_s": bt.config.windows.size_s,
            "margin_pct": bt.settings.margin_pct,
            "burn_in_days": bt.settings.burn_in_days,
        },
        "flags": dict(bt.flags),
        "decided_by": dict(sorted(bt.decided_by.items())),
        "drift_events": dict(sorted(bt.drift.items())),
        "scores": scores(bt),
        "failures": timelines(bt),
        "false_alarms": [
            {
                "machine": e.machine_id,
                "kind": e.kind,
                "opened": iso(e.opened_at),
                "closed": iso(e.closed_at),
                "summary": bt.methods["vigil"].episodes[e.alert_id].summary if e.alert_id else "",
            }
            for e in o.false_episodes
        ],
        "calibration": calibration(bt),
        "lives": life_lengths(bt),
        "segments": bt.segments,
        **(dict(extra) if extra else {}),
    }
