"""The pure core of the models stage: feature vectors and maintenance events in, predictions and drift out.

One :class:`FleetModel` holds everything a worker learns: per machine type a shared failure classifier (with
drift detection and promote-if-better retraining), an anomaly detector and its adaptive threshold, and a pooled
reference of normal for cold starts; per machine its own reference of normal (the per-machine normalisation),
its smoothed deviations, its sensor health and feature-drift detectors; and the vectors waiting for their
delayed labels. It does no I/O, so the service, the offline evaluation and the tests drive the same code, and
pickling it is the checkpoint.

Per window the order is fixed: rules first (always), then sensor health, then the models, then learning from
whatever this window may teach (never from warm-up, gap or bad-quality windows, never from faulty sensors).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from models.anomaly import AdaptiveThreshold, make_detector
from models.base import AnomalyDetector
from models.drift import LevelShift, ManagedClassifier
from models.labels import PendingLabels, Resolved
from models.metrics import SegmentAudit
from models.operating import OperatingNormal, regressors
from models.rules import HardLimits
from models.sensors import SensorHealth
from vigil.config import MachineType, ModelConfig, ResolvedMachine
from vigil.contracts import (
    Contribution,
    Decision,
    DriftEvent,
    FeatureVector,
    MachineState,
    MaintenanceEvent,
    Prediction,
)

log = logging.getLogger(__name__)

TREND = ":trend"
_SLOW = 0.05
"""Weight of the newest window in the slow average of log-deviations (about 20 windows)."""
_RATE_SMOOTHING = 0.1
"""Weight of the newest window in the smoothed rate at which a sensor approaches its limit."""
_LOAD_STEP = 0.05
"""A change of load (share of the running sensor's range) between windows that starts a settling period."""
_SETTLE_S = 3600.0
"""How long sensors take to settle after a load step (thermal lag), for the sensor-step check."""
_KEEP_RISK = 0.35
"""A window with at least this risk is always kept for its delayed label (likely a future positive)."""
_DRIFT_LASTS_H = 24.0
"""A feature's level shift becomes a digest finding once it has lasted this many running hours (until then it is
recorded as a ``warning`` drift event, in InfluxDB only)."""
_COMPARABLE_LOAD = 0.05
"""An operating point within this share of the range below the one where a degradation showed is comparable."""
_HOLD_MAX_H = 24.0
"""A held degradation that did not show again for this many running hours is let go."""
_EXCURSION_S = 1800.0
"""Running time a level or score alert judged outside what the model has seen must last before it pages."""
_LOAD_PICK_WINDOWS = 100
"""Running windows of a type (after warm-up) watched before its operating-point sensor is chosen."""
_FIXED_SPREAD = 0.02
"""A running sensor whose window means spread less than this share of its range does not show the operating point
(an induction motor's speed moves 2 % from no load to full load): another sensor must carry the load."""
_LOAD_SPREAD = 0.05
"""The least spread (share of the range) of the sensor chosen instead."""


@dataclass
class MachineMemory:
    machine_id: str
    machine_type: str
    site: str | None
    line: str | None
    normal: OperatingNormal
    health: SensorHealth
    smooth: dict[str, float] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    """A slower average of the log-deviations: the fast minus the slow one is the trend."""
    margin: dict[str, float] = field(default_factory=dict)
    """Smoothed share of the way from normal to each hard limit."""
    margin_rate: dict[str, float] = field(default_factory=dict)
    """Smoothed change of that share per hour."""
    margin_ts: datetime | None = None
    load: float | None = None
    """The previous window's load (for the thermal lag regressor)."""
    running_since: datetime | None = None
    windows: int = 0
    running_last: float | None = None
    """The last value the type's running sensor reported (held while it sends nothing, see ``_state``)."""
    load_prev: float | None = None
    """The previous running window's load (kept across windows without one, unlike ``load``)."""
    settled_at: datetime | None = None
    """After a load step, sensors settle until then (no step checks: each follows at its own pace)."""
    last_window_end: datetime | None = None
    """The newest window processed: an older or equal one is a re-emitted duplicate (see ``process``)."""
    feature_drift: dict[str, Any] = field(default_factory=dict)
    trend_points: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    """Per limited key sensor, (steady running hours, share of the way to the limit) of the recent steady windows:
    the trend is the slope of the operating-point residual over running time, across duty cycles and stops."""
    trend_level: dict[str, float] = field(default_factory=dict)
    """The trend line's share of the way to the limit at the newest steady window."""
    run_h: float = 0.0
    load_lag: float | None = None
    """The load filtered with the type's thermal time constant (``thermal_tau_s``): the thermal operating point."""
    load_lag_ts: datetime | None = None
    """Steady running hours counted so far (the time axis of ``trend_points``)."""
    trend_ref: str | None = None
    """Which normal the points were measured against (``own`` / ``type``): a switch restarts the trend."""
    trend_settled_at: datetime | None = None
    """After a start or a step of the running sensor, the trend neither learns nor alerts until then (warm-up)."""
    held_key: str | None = None
    """The sensor of the last degradation (level) alert, held while the machine runs at lighter operating points."""
    held_load: float | None = None
    """The (thermal) operating point at which that degradation showed."""
    held_h: float = 0.0
    """Running hours since the held degradation last showed."""
    excursion_s: float = 0.0
    """Running time of consecutive windows whose level or score alert was judged outside what the model has seen."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Checkpoints written before the operating-point trend have none of its fields.
        state.setdefault("trend_points", {})
        state.setdefault("run_h", 0.0)
        state.setdefault("load_lag", None)
        state.setdefault("load_lag_ts", None)
        state.setdefault("trend_level", {})
        state.setdefault("trend_ref", None)
        state.setdefault("trend_settled_at", None)
        state.setdefault("held_key", None)
        state.setdefault("held_load", None)
        state.setdefault("held_h", 0.0)
        state.setdefault("excursion_s", 0.0)
        self.__dict__.update(state)


@dataclass
class TypeMemory:
    classifier: ManagedClassifier
    detector: AnomalyDetector
    threshold: AdaptiveThreshold
    normal: OperatingNormal
    load_sensor: str | None = None
    """The sensor whose window mean is the operating point: the running sensor unless it stays nearly constant
    while running (see ``FleetModel._pick_load``); None until chosen (the running sensor meanwhile)."""
    spread: dict[str, list[float]] = field(default_factory=dict)
    """Per candidate sensor, Welford's [n, mean, m2] of its window mean as a share of its range, while choosing."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Checkpoints written before the operating-point sensor was chosen: the running sensor, chosen again.
        state.setdefault("load_sensor", None)
        state.setdefault("spread", {})
        self.__dict__.update(state)


@dataclass(frozen=True)
class ModelOutput:
    prediction: Prediction | None
    drift: list[DriftEvent]


def sensor_of(feature: str) -> str:
    return feature.split(".", 1)[0]


def _slope(points: deque[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares slope of ``(t, y)`` points and the fitted ``y`` at the newest ``t`` (None when flat in t).

    >>> _slope(deque([(0.0, 0.1), (1.0, 0.2), (2.0, 0.3)]))
    (0.1, 0.3)
    """
    n = len(points)
    if n < 3:
        return None
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    stt = sum((t - mt) ** 2 for t, _ in points)
    if stt <= 0:
        return None
    rate = sum((t - mt) * (y - my) for t, y in points) / stt
    return round(rate, 12), round(my + rate * (points[-1][0] - mt), 12)


class FleetModel:
    """Everything the models stage learns, for every machine a worker sees."""

    def __init__(
        self,
        config: ModelConfig,
        machines: Mapping[str, ResolvedMachine] | None = None,
        machine_types: Mapping[str, MachineType] | None = None,
    ) -> None:
        self.config = config
        self.machines = dict(machines or {})
        self.machine_types = dict(machine_types or {})
        self.pending = PendingLabels(
            config.horizon_s, config.negative_sample_rate, config.max_pending_per_machine, keep_above=_KEEP_RISK
        )
        self.audit = SegmentAudit(config.threshold, config.horizon_s, config.min_lead_s)
        self._machines: dict[str, MachineMemory] = {}
        self._types: dict[str, TypeMemory] = {}
        self._rules: dict[str, HardLimits] = {}

    # ------------------------------------------------------------------ pickling (the checkpoint)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_rules"] = {}  # derived from the configuration; rebuilt on use
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # ------------------------------------------------------------------ state lookup
    def _type(self, name: str) -> TypeMemory:
        memory = self._types.get(name)
        if memory is None:
            cfg = self.config
            floor = cfg.deviation_z if cfg.anomaly_detector == "deviation" else 0.0
            memory = self._types[name] = TypeMemory(
                classifier=ManagedClassifier(cfg.classifier, cfg.drift_detector, cfg.retrain_min_labels, cfg.seed),
                detector=make_detector(cfg.anomaly_detector, cfg.seed),
                threshold=AdaptiveThreshold(cfg.anomaly_quantile, floor),
                normal=OperatingNormal(cfg.cold_start_windows, cfg.normal_forget),
            )
        return memory

    def _machine(self, fv: FeatureVector) -> MachineMemory:
        memory = self._machines.get(fv.machine_id)
        if memory is None:
            memory = self._machines[fv.machine_id] = MachineMemory(
                fv.machine_id,
                fv.machine_type,
                fv.site,
                fv.line,
                OperatingNormal(self.config.cold_start_windows, self.config.normal_forget),
                SensorHealth.for_sensors(self.rules(fv.machine_id, fv.machine_type).sensors),
            )
        return memory

    def rules(self, machine_id: str, machine_type: str) -> HardLimits:
        rules = self._rules.get(machine_id)
        if rules is None:
            resolved = self.machines.get(machine_id)
            if resolved is not None:
                sensors = resolved.sensors
            elif machine_type in self.machine_types:
                sensors = self.machine_types[machine_type].sensors
            else:
                sensors = {}
            rules = self._rules[machine_id] = HardLimits(sensors, persistence_s=self.config.limit_persistence_s)
        return rules

    _HEALTH_AGGS = ("mean", "std", "max")

    def select(self, features: Mapping[str, float | None]) -> dict[str, float]:
        """What the reference of normal learns: the configured aggregations of every sensor, derived features,
        and the mean, std and max the sensor-health checks need."""
        aggs = set(self.config.aggregations).union(self._HEALTH_AGGS)
        out: dict[str, float] = {}
        for key, value in features.items():
            if value is None or not math.isfinite(value):
                continue
            _, _, agg = key.partition(".")
            if not agg or agg in aggs:
                out[key] = float(value)
        return out

    def inputs(self, z: Mapping[str, float]) -> dict[str, float]:
        """The model inputs among the standardised features: configured aggregations and derived features."""
        aggs = self.config.aggregations
        return {k: v for k, v in z.items() if "." not in k or k.partition(".")[2] in aggs}

    def load(self, machine_type: str, features: Mapping[str, float | None], sensor: str | None = None) -> float | None:
        """The operating point: the window mean of ``sensor`` (default: the running sensor) relative to its range."""
        spec = self.machine_types.get(machine_type)
        name = sensor or (spec.running_sensor if spec is not None else None)
        if spec is None or name is None or name not in spec.sensors:
            return None
        value = features.get(f"{name}.mean")
        top = spec.sensors[name].range.max
        if value is None or not math.isfinite(value) or top <= 0:
            return None
        return value / top

    def orient(self, machine_type: str, z: Mapping[str, float]) -> dict[str, float]:
        """Deviations that matter for failure: for a sensor with only a high limit, a level (mean, max) below
        normal is not a symptom (a machine cooling down is not failing), and likewise for a low limit."""
        spec = self.machine_types.get(machine_type)
        if spec is None:
            return dict(z)
        out: dict[str, float] = {}
        for key, value in z.items():
            sensor, _, agg = key.partition(".")
            limits = spec.sensors[sensor].limits if sensor in spec.sensors and agg in ("mean", "max") else None
            if limits is not None and limits.high is not None and limits.low is None:
                value = max(value, 0.0)
            elif limits is not None and limits.low is not None and limits.high is None:
                value = min(value, 0.0)
            out[key] = value
        return out

    # ------------------------------------------------------------------ the verbs
    def process(self, fv: FeatureVector) -> ModelOutput:
        """Predict for one window, then learn what it can teach."""
        cfg = self.config
        machine = self._machine(fv)
        ts = fv.window_end
        if machine.last_window_end is not None and ts <= machine.last_window_end:
            # The feature worker re-emits the windows it closed since its last checkpoint after a crash: predicting
            # them again would publish a second verdict, learning them again would count their labels twice.
            log.debug("%s: window ending %s already processed (newest %s)", fv.machine_id, ts, machine.last_window_end)
            return ModelOutput(None, [])
        previous_end, machine.last_window_end = machine.last_window_end, ts
        kind = self._type(fv.machine_type)
        drift = self._learn(self.pending.advance(fv.machine_id, ts))
        common: dict[str, Any] = dict(
            machine_id=fv.machine_id,
            machine_type=fv.machine_type,
            site=fv.site,
            line=fv.line,
            ts=ts,
            window_start=fv.window_start,
            model=f"{fv.machine_type}/{cfg.classifier}+{cfg.anomaly_detector}",
            model_version=kind.classifier.version,
            threshold=cfg.threshold,
            horizon_s=cfg.horizon_s,
        )
        state, inferred = self._state(fv, machine)
        state_held = self._running_sensor(fv.machine_type) in fv.missing and machine.running_last is not None
        if state == MachineState.OFF:
            self._lag(machine, 0.0, ts)
            machine.running_since = None
            machine.excursion_s = 0.0
            machine.smooth.clear()
            machine.slow.clear()
            machine.margin.clear()
            machine.margin_rate.clear()
            machine.margin_ts = None
            return ModelOutput(
                Prediction(**common, decision=Decision.OFF, decided_by="none", reasons=("machine off", *inferred)),
                drift,
            )
        raw = {k: v for k, v in fv.features.items() if v is not None and math.isfinite(v)}
        violations = self.rules(fv.machine_id, fv.machine_type).violations(raw)
        if fv.state == MachineState.STALE:
            stale = ("stale: no readings in the window", *(f"hard limit: {v}" for v in violations))
            verdict = Decision.ALERT if violations else Decision.OK
            return ModelOutput(
                Prediction(**common, decision=verdict, decided_by="rule", reasons=stale, rule_violations=violations),
                drift,
            )
        machine.running_since = self._running_since(fv, machine, previous_end)
        warmup = (ts - machine.running_since).total_seconds() < cfg.warmup_s
        x = self.select(fv.features)
        if kind.load_sensor is None and not warmup and not fv.gap:
            self._pick_load(fv, kind)
        load = self.load(fv.machine_type, fv.features, kind.load_sensor)
        if load is None and state_held:
            # Running with its running sensor silent: a report-by-exception source sends no unchanged value, so
            # the load is still the last one reported (judging the window at load 0 makes every sensor deviate).
            running_name = self._running_sensor(fv.machine_type)
            if kind.load_sensor in (None, running_name):
                load = self.load(fv.machine_type, {f"{running_name}.mean": machine.running_last})
            else:
                load = machine.load_prev
        hour = ts.hour + ts.minute / 60.0
        lag = self._lag(machine, load, ts) if cfg.thermal_tau_s > 0 else machine.load
        r = regressors(load, lag, hour)
        machine.load = load
        cold_start = not machine.normal.ready
        unseen_load = not cold_start and not machine.normal.covers(r)
        reference = kind.normal if cold_start or unseen_load else machine.normal
        z_all = reference.z(x, r)
        usual_std = {k: reference.mean(k) for k in x if k.endswith(".std")}
        stepped = self._stepped(fv.machine_type, fv.features)
        if load is not None and machine.load_prev is not None and abs(load - machine.load_prev) > _LOAD_STEP:
            machine.settled_at = ts + timedelta(seconds=_SETTLE_S)
            stepped = True
        if stepped:
            machine.trend_settled_at = ts + timedelta(seconds=cfg.trend_settle_s)
        machine.load_prev = load
        steady = not warmup and (machine.settled_at is None or ts >= machine.settled_at)
        # The trend learns only from windows at a settled operating point: not in warm-up after a start, not in the
        # window of a speed step or while the sensors settle after one, not right after a gap in the data.
        trend_steady = (
            not warmup
            and not stepped
            and not fv.gap
            and (machine.trend_settled_at is None or ts >= machine.trend_settled_at)
        )
        for sensor, fault, detail in machine.health.update(fv.features, fv.missing, usual_std, steady, ts.timestamp()):
            drift.append(
                DriftEvent(
                    ts=ts,
                    machine_type=fv.machine_type,
                    machine_id=fv.machine_id,
                    detector="sensor_fault",
                    target=sensor,
                    event="sensor_fault",
                    detail=f"{fault}: {detail}",
                )
            )
        faulty = machine.health.faulty
        x_ok = {k: v for k, v in x.items() if sensor_of(k) not in faulty}
        z = self.inputs({k: v for k, v in z_all.items() if sensor_of(k) not in faulty})
        # A faulty running sensor (stuck, dropped out) hides the load: every deviation would be measured at a
        # wrong operating point, so nothing is judged or learnt from it until the sensor is back.
        running = self._running_sensor(fv.machine_type)
        blind = running is not None and running in faulty
        alpha = cfg.smoothing
        if not blind:
            for key, value in z.items():
                previous = machine.smooth.get(key)
                machine.smooth[key] = value if previous is None else alpha * value + (1 - alpha) * previous
        smooth = {k: machine.smooth.get(k, v) for k, v in z.items()}
        oriented = self.orient(fv.machine_type, smooth)
        score = kind.detector.score_one(oriented)
        threshold = kind.threshold.value
        has_reference = reference.ready and reference.covers(r) and not blind
        anomalous = has_reference and not warmup and score >= threshold
        margin, margin_key, eta_h, eta_key = (
            (0.0, None, math.inf, None)
            if blind
            else self._margin(
                fv, machine, x_ok, reference, r, trend_steady, "type" if reference is kind.normal else "own"
            )
        )
        # In cold start a machine is judged against its type's normal, which is coarser than its own (machines of a
        # type differ): a deviation from it needs to be larger before it is a degradation.
        margin_bar = cfg.margin_alert * (cfg.cold_start_margin_factor if cold_start else 1.0)
        worn = has_reference and not warmup and margin >= margin_bar
        outside = sorted((k for k, v in smooth.items() if abs(v) > cfg.out_of_range_z), key=lambda k: -abs(smooth[k]))
        # Judged where the model has not been (an operating point this machine's normal does not cover, or inputs
        # far outside anything seen), a level or score alone is not evidence enough for the pager until it persists;
        # a trend, a hard limit or a degradation already held decide without waiting.
        excursion = False
        if (worn or anomalous) and (unseen_load or outside):
            if unseen_load or any(abs(v) > cfg.out_of_range_z for v in z.values()):
                machine.excursion_s += max((fv.window_end - fv.window_start).total_seconds(), 0.0)
            else:
                # This window is back within what was seen; only the smoothing still carries the excursion: it
                # did not last, and what lasts is counted again from the next window outside.
                machine.excursion_s = 0.0
            if machine.excursion_s < _EXCURSION_S and machine.held_key is None:
                excursion, worn, anomalous = True, False, False
        else:
            machine.excursion_s = 0.0
        held = not blind and self._hold(fv, machine, worn, margin_key, margin_bar, steady and has_reference, r)
        # Fast wear alerts earlier: a limit that the current trend reaches soon, from a visible start.
        # A trend is judged only at a settled operating point, and in cold start (the type's normal, coarser than
        # the machine's own) only once the sensor is further on its way.
        trend_margin = cfg.trend_min_margin * (cfg.cold_start_trend_factor if cold_start else 1.0)
        rising = (
            has_reference
            and trend_steady
            and eta_key is not None
            and eta_h <= cfg.trend_alert_h
            and machine.trend_level.get(eta_key, 0.0) >= trend_margin
        )
        features = self._classifier_inputs(machine, oriented)
        p = kind.classifier.predict_proba_one(features)
        trained = kind.classifier.n_positive >= cfg.min_positive_labels
        confident = abs(p - 0.5) >= cfg.min_confidence
        classifier_decides = trained and confident and not outside and not warmup and not blind

        reasons: list[str] = []
        if blind:
            reasons.append(
                f"operating point unknown: the running sensor {running} is faulty ({faulty[running or '']}): "
                "only the hard limits decide"
            )
        elif cold_start and not has_reference:
            # Nothing to compare with yet (the type's pooled normal is still being learnt, or has not seen this
            # load): the prediction says it is learning rather than implying a verdict.
            reasons.append(
                f"learning: no normal for this machine yet ({machine.normal.n}/{cfg.cold_start_windows} own "
                f"windows, the {fv.machine_type} type's not ready at this load): only the hard limits decide"
            )
        elif cold_start:
            reasons.append(f"cold start: using the {fv.machine_type} type's normal ({machine.normal.n} own windows)")
        if warmup:
            reasons.append("warm-up after start: anomalies are not alerted")
        if excursion:
            reasons.append(
                f"not alerted yet: a deviation judged outside what the model has seen alerts once it lasts "
                f"{_EXCURSION_S / 60:g} running minutes (at once with a trend or a hard limit)"
            )
        if unseen_load:
            reasons.append(
                f"operating point (load {float(r[1]):.2f}) not seen by this machine's normal yet: "
                f"using the {fv.machine_type} type's normal"
            )
        if machine.health.faulty:
            faults = ", ".join(f"{s} ({k})" for s, k in sorted(machine.health.faulty.items()))
            reasons.append(f"sensor fault, left out: {faults}")
        if not trained:
            reasons.append(
                f"classifier not trusted yet ({kind.classifier.n_positive}/{cfg.min_positive_labels} failure labels)"
            )
        elif outside:
            reasons.append(f"input outside the range the model has seen: {', '.join(outside[:3])}")
        elif not confident:
            reasons.append(f"low confidence (p={p:.2f})")
        # The classifier alerts only with physical evidence beside it: labels say "a failure followed within the
        # horizon", which includes windows where nothing was visible yet, so p alone over-alerts.
        evidence = margin >= cfg.classifier_min_margin * cfg.margin_alert
        model_alert = classifier_decides and p >= cfg.threshold and evidence
        if violations:
            decision, decided_by = Decision.ALERT, "rule"
            reasons.extend(f"hard limit: {v}" for v in violations)
        elif model_alert:
            decision, decided_by = Decision.ALERT, "model"
            reasons.append(f"P(failure within {cfg.horizon_s / 3600:g} h) = {p:.2f} >= {cfg.threshold:g}")
        elif worn:
            decision, decided_by = Decision.ALERT, "anomaly"
            reasons.append(
                f"degradation: {margin_key} is {margin:.0%} of the way from its normal to its hard limit "
                f"(alerts at {margin_bar:.0%})"
            )
        elif rising:
            decision, decided_by = Decision.ALERT, "anomaly"
            share = machine.trend_level.get(eta_key or "", 0.0)
            reasons.append(
                f"degradation trend: {eta_key} is {share:.0%} of the way to its hard limit at this operating point "
                f"and rising {machine.margin_rate.get(eta_key or '', 0.0):.1%} per running hour (over the last "
                f"{self._trend_span(machine, eta_key or ''):.1f} running hours): the limit in about {eta_h:.0f} h"
            )
        elif held:
            decision, decided_by = Decision.ALERT, "anomaly"
            reasons.append(
                f"degradation held: {machine.held_key} was {margin_bar:.0%} of the way to its hard limit at load "
                f"{machine.held_load or 0.0:.2f}; at this lighter operating point (load {self._point(machine, r):.2f}) "
                f"it cannot show, so it holds until seen below {margin_bar / 2:.0%} at a comparable load"
            )
        elif anomalous:
            decision, decided_by = Decision.ALERT, "anomaly"
            reasons.append(f"anomaly score {score:.2f} >= threshold {threshold:.2f}")
        elif classifier_decides:
            decision, decided_by = Decision.OK, "model"
        elif has_reference and not warmup:
            decision, decided_by = Decision.OK, "anomaly"
        else:
            decision, decided_by = Decision.OK, "rule"
        if warmup:
            # What a warm-up deviates is not carried into the first judged window by the smoothing: a pressure
            # still building in the warm-up's last window would otherwise read as degradation right after it.
            machine.smooth.clear()
            machine.margin.clear()
        explained = (
            self._per_feature(kind.classifier.explain_one(features))
            if decided_by == "model"
            else kind.detector.explain_one(oriented)
        )
        contributions = self._contributions(explained, x, reference, r)
        prediction = Prediction(
            **common,
            p_failure=p if trained else None,
            anomaly_score=score if has_reference else None,
            anomaly_threshold=threshold if has_reference else None,
            decision=decision,
            decided_by=decided_by,
            reasons=tuple(reasons),
            cold_start=cold_start,
            contributions=contributions,
            rule_violations=violations,
        )
        relative = score / threshold if has_reference and threshold > 0 else 0.0
        # One risk in [0, 1] whose 0.5 is the alert line, for the prequential metrics and the label buffer.
        risk = 1.0 if violations else max(p if classifier_decides else 0.0, min(1.0, relative / 2))
        usable = not fv.gap and fv.bad_quality_share <= cfg.max_bad_quality_share and not warmup and not blind
        if usable:
            drift += self._train(
                fv, machine, kind, x_ok, r, smooth, features, score, relative, risk, has_reference, violations
            )
        self.audit.prediction(prediction)
        return ModelOutput(prediction, drift)

    def maintenance(self, event: MaintenanceEvent) -> list[DriftEvent]:
        """A failure labels the pending vectors before it; a repair resets the machine."""
        machine = self._machines.get(event.machine_id)
        drift: list[DriftEvent] = []
        if event.event == "failure":
            drift = self._learn(self.pending.failure(event.machine_id, event.ts))
            if machine is not None:
                self.audit.failure(machine.machine_id, machine.machine_type, machine.site, machine.line, event.ts)
        elif event.event == "repair":
            dropped = self.pending.repair(event.machine_id)
            log.debug("repair of %s: %d pending vectors dropped", event.machine_id, dropped)
        if machine is not None and event.event == "repair" and self.config.rereference_on_repair:
            # A repaired machine is a known-healthy machine: learn its normal afresh (the type's normal covers the
            # meantime), instead of keeping one that may have been learnt while it was already wearing.
            machine.normal = OperatingNormal(self.config.cold_start_windows, self.config.normal_forget)
        if machine is not None and event.event in ("failure", "repair"):
            machine.smooth.clear()
            machine.slow.clear()
            machine.margin.clear()
            machine.margin_rate.clear()
            machine.margin_ts = None
            machine.trend_points.clear()
            machine.health.reset()
            machine.running_since = None
            machine.held_key, machine.held_load, machine.held_h = None, None, 0.0
        return drift

    def _running_sensor(self, machine_type: str) -> str | None:
        spec = self.machine_types.get(machine_type)
        return spec.running_sensor if spec is not None else None

    def _state(self, fv: FeatureVector, machine: MachineMemory) -> tuple[MachineState, tuple[str, ...]]:
        """The machine's state, holding the running sensor's last value while it reports nothing.

        Report-by-exception sources (OPC UA subscriptions, MQTT on change) send a value only when it changes: a
        stopped machine's speed reads 0 once and then nothing, so its windows have no running-sensor reading and
        the feature worker cannot see that it is off. A stopped machine judged as running with its speed
        "dropped out" looks faulty and, when it starts again, its warm-up looks like degradation.
        """
        spec = self.machine_types.get(fv.machine_type)
        if spec is None or spec.running_sensor is None:
            return fv.state, ()
        name = spec.running_sensor
        seen = fv.features.get(f"{name}.last")
        if seen is None:
            seen = fv.features.get(f"{name}.mean")
        if seen is not None and math.isfinite(seen) and name not in fv.imputed:
            machine.running_last = seen
            return fv.state, ()
        if fv.state == MachineState.OFF and fv.state_held is not None:
            # The feature worker decided from the value it holds (report by exception): say so, as for our own.
            when = f" at {fv.state_held_ts:%Y-%m-%d %H:%M} UTC" if fv.state_held_ts is not None else ""
            return fv.state, (
                f"{name} sent nothing since it read {fv.state_held:g}{when} (below {spec.off_below:g}): off until "
                "it changes",
            )
        held = machine.running_last
        if fv.state == MachineState.RUNNING and held is not None and held < spec.off_below:
            return MachineState.OFF, (
                f"{name} sent nothing since it read {held:g} (below {spec.off_below:g}): off until it changes",
            )
        return fv.state, ()

    # ------------------------------------------------------------------ learning
    def _train(
        self,
        fv: FeatureVector,
        machine: MachineMemory,
        kind: TypeMemory,
        x: dict[str, float],
        r: Any,
        smooth: dict[str, float],
        features: dict[str, float],
        score: float,
        relative: float,
        risk: float,
        has_reference: bool,
        violations: tuple[str, ...],
    ) -> list[DriftEvent]:
        # At a load the machine's normal has not seen, health is judged against the type's normal (the score
        # above already is), so the machine learns its new operating points instead of refusing them forever.
        healthy = not violations and (not machine.normal.ready or score < self.config.healthy_z)
        if healthy:
            machine.normal.update(x, r)
            # A machine in cold start learns its own normal from every window, but its type learns only from
            # windows that look healthy against it: a new machine already worn must not teach the type its wear
            # (nor widen the type's spread until the wear no longer stands out).
            if not has_reference or score < self.config.healthy_z:
                kind.normal.update(x, r)
        machine.windows += 1
        if has_reference:
            kind.detector.learn_one(self.orient(fv.machine_type, smooth))
        anomaly = score if has_reference else math.nan
        drift = self._learn(self.pending.add(fv.machine_id, fv.window_end, features, risk, anomaly))
        if has_reference:  # deviations at an operating point no normal covers are no drift (a new point is normal)
            drift += self._feature_drift(fv, machine, smooth)
        return drift

    def _learn(self, resolved: list[Resolved]) -> list[DriftEvent]:
        drift: list[DriftEvent] = []
        for r in resolved:
            machine = self._machines.get(r.machine_id)
            if machine is None:
                continue
            kind = self._type(machine.machine_type)
            weight = r.weight * (self.config.positive_weight if r.positive else 1.0)
            kind.classifier.learn_one(r.x, r.positive, weight)
            if not r.positive and math.isfinite(r.anomaly):
                # The threshold learns only from windows known to be healthy (no failure followed within the
                # horizon), so a fleet that is wearing out does not raise its own alarm bar.
                kind.threshold.update(r.anomaly)
            self.audit.label(machine.machine_type, machine.site, machine.line, r.score, r.positive)
            for event, detail, value in kind.classifier.drain():
                if event == "drift":
                    # A change of the type's model error is the model's business (it retrains; the outcome follows
                    # as promoted / kept / rolled_back), not a finding about any machine: recorded, not digested.
                    event, detail = "warning", f"model error drift, retraining: {detail}"
                drift.append(
                    DriftEvent(
                        ts=r.ts,
                        machine_type=machine.machine_type,
                        detector=self.config.drift_detector,
                        target="error",
                        event=event,
                        detail=detail,
                        value=value,
                    )
                )
        return drift

    def _feature_drift(self, fv: FeatureVector, machine: MachineMemory, smooth: dict[str, float]) -> list[DriftEvent]:
        types = self.machine_types.get(fv.machine_type)
        keys = [f"{s}.mean" for s, spec in types.sensors.items() if spec.key] if types else []
        hours = min(max((fv.window_end - fv.window_start).total_seconds() / 3600.0, 0.0), 1.0)
        out: list[DriftEvent] = []
        for key in keys:
            value = smooth.get(key)
            if value is None:
                continue
            detector = machine.feature_drift.get(key)
            if detector is None:
                detector = machine.feature_drift[key] = LevelShift()
            detector.update(value)
            name = getattr(detector, "name", "page_hinkley")  # older checkpoints: Page-Hinkley
            if detector.drift_detected:
                # Recorded (InfluxDB), not a finding yet: a shift that goes back within a day was a passing one.
                out.append(
                    DriftEvent(
                        ts=fv.window_end,
                        machine_type=fv.machine_type,
                        machine_id=fv.machine_id,
                        detector=name,
                        target=key,
                        event="warning",
                        detail=f"{key} moved from this machine's normal (z={value:+.1f}); a finding if it lasts "
                        f"{_DRIFT_LASTS_H:g} running hours",
                        value=value,
                    )
                )
            lasts = getattr(detector, "lasts", None)
            if lasts is not None and lasts(hours, _DRIFT_LASTS_H):
                out.append(
                    DriftEvent(
                        ts=fv.window_end,
                        machine_type=fv.machine_type,
                        machine_id=fv.machine_id,
                        detector=name,
                        target=key,
                        event="drift",
                        detail=f"{key} moved from this machine's normal (z={value:+.1f}) and stayed there for "
                        f"{_DRIFT_LASTS_H:g} running hours",
                        value=value,
                    )
                )
        return out

    def _pick_load(self, fv: FeatureVector, kind: TypeMemory) -> None:
        """Choose the type's operating-point sensor from its first ``_LOAD_PICK_WINDOWS`` running windows.

        The running sensor tells running from stopped; it is also the operating point when it moves with the
        duty (a pump's speed steps). A sensor that stays nearly constant while running (a mains-fed motor's speed)
        does not: every sensor that follows the load would then deviate from a normal that cannot see the load,
        and a heavy shift reads as degradation. Then the operating point is the non-key sensor that spreads most
        (key sensors are the health indicators, which wear moves). Chosen once per type; when the choice is not
        the running sensor, the type's and its machines' normals (learnt against the wrong point) start again.
        """
        spec = self.machine_types.get(fv.machine_type)
        if spec is None or spec.running_sensor is None or spec.running_sensor not in spec.sensors:
            kind.load_sensor = spec.running_sensor if spec is not None else None
            return
        for name, sensor in spec.sensors.items():
            if sensor.key and name != spec.running_sensor:
                continue
            value = fv.features.get(f"{name}.mean")
            span = sensor.range.max - sensor.range.min
            if value is None or not math.isfinite(value) or span <= 0:
                continue
            acc = kind.spread.setdefault(name, [0.0, 0.0, 0.0])
            share = (value - sensor.range.min) / span
            acc[0] += 1
            delta = share - acc[1]
            acc[1] += delta / acc[0]
            acc[2] += delta * (share - acc[1])
        running = kind.spread.get(spec.running_sensor)
        if running is None or running[0] < _LOAD_PICK_WINDOWS:
            return
        spreads = {k: math.sqrt(v[2] / (v[0] - 1)) for k, v in kind.spread.items() if v[0] >= _LOAD_PICK_WINDOWS}
        choice = spec.running_sensor
        if spreads.get(spec.running_sensor, 0.0) < _FIXED_SPREAD:
            best = max(spreads, key=lambda k: spreads[k])
            if spreads[best] >= _LOAD_SPREAD:
                choice = best
        kind.load_sensor = choice
        kind.spread = {}
        if choice == spec.running_sensor:
            return
        log.info(
            "%s: %s stays within %.1f %% of its range while running; the operating point is %s",
            fv.machine_type,
            spec.running_sensor,
            100 * spreads.get(spec.running_sensor, 0.0),
            choice,
        )
        cfg = self.config
        kind.normal = OperatingNormal(cfg.cold_start_windows, cfg.normal_forget)
        for machine in self._machines.values():
            if machine.machine_type != fv.machine_type:
                continue
            machine.normal = OperatingNormal(cfg.cold_start_windows, cfg.normal_forget)
            machine.load = machine.load_prev = machine.load_lag = machine.load_lag_ts = None
            machine.smooth.clear()
            machine.slow.clear()
            machine.margin.clear()
            machine.margin_rate.clear()
            machine.trend_points.clear()
            machine.trend_level.clear()

    def _running_since(self, fv: FeatureVector, machine: MachineMemory, previous_end: datetime | None) -> datetime:
        """Since when the machine has run, for its warm-up: its first running window; a start the feature worker
        saw inside a window (a stop shorter than a window, and the restart); or a window after a silence longer
        than the type's ``data_gap_s`` and two windows (data resuming after a gap: what the machine did meanwhile
        is unknown, so it is judged as a start)."""
        since = machine.running_since
        if since is None:
            since = fv.window_start
        if fv.started_at is not None and fv.started_at > since:
            since = fv.started_at
        if previous_end is not None:
            spec = self.machine_types.get(fv.machine_type)
            length = (fv.window_end - fv.window_start).total_seconds()
            silence = max(2 * length, spec.data_gap_s if spec is not None else 0.0)
            if (fv.window_start - previous_end).total_seconds() > silence and fv.window_start > since:
                since = fv.window_start
        return since

    @staticmethod
    def _point(machine: MachineMemory, r: Any) -> float:
        """The thermal operating point of this window: the lagged load (the load itself without a lag)."""
        return float(r[3])

    def _hold(
        self,
        fv: FeatureVector,
        machine: MachineMemory,
        worn: bool,
        key: str | None,
        bar: float,
        judged: bool,
        r: Any,
    ) -> bool:
        """Whether a degradation seen earlier still holds although this window does not show it.

        Most wear shows in proportion to the load (a blocked air path adds heat in proportion to the losses): a
        motor whose winding runs 30 % of the way to its limit on the day shift is within its noise on the night
        shift, and judging that as recovered opens one episode per day for one problem. So a level alert holds
        until the sensor is seen back below half the alert bar at an operating point at least as heavy as the
        one where it showed (the same judgement as the trend: at the same operating point), or for
        ``_HOLD_MAX_H`` running hours in which it never showed again."""
        point = self._point(machine, r)
        if worn and key is not None:
            if machine.held_key != key or machine.held_load is None or point > machine.held_load:
                machine.held_load = point
            machine.held_key, machine.held_h = key, 0.0
            return False
        if machine.held_key is None or machine.held_load is None:
            return False
        machine.held_h += min(max((fv.window_end - fv.window_start).total_seconds() / 3600.0, 0.0), 1.0)
        comparable = point >= machine.held_load - _COMPARABLE_LOAD
        recovered = judged and comparable and machine.margin.get(machine.held_key, 0.0) < bar / 2
        if recovered or machine.held_h >= _HOLD_MAX_H:
            machine.held_key, machine.held_load, machine.held_h = None, None, 0.0
            return False
        return True

    def _lag(self, machine: MachineMemory, load: float | None, ts: datetime) -> float | None:
        """The load seen through a first-order lag of ``thermal_tau_s`` (a stopped machine cools towards 0): the
        regressor that lets the normal follow a bearing warming up after a start or a speed step, which the
        previous window's load alone cannot (a time constant of 30-60 min spans 3-6 windows)."""
        if load is None or not math.isfinite(load):
            return machine.load_lag
        last, machine.load_lag_ts = machine.load_lag_ts, ts
        if machine.load_lag is None or last is None:
            machine.load_lag = load
        else:
            dt = max((ts - last).total_seconds(), 0.0)
            machine.load_lag = load + (machine.load_lag - load) * math.exp(-dt / self.config.thermal_tau_s)
        return machine.load_lag

    def _stepped(self, machine_type: str, features: Mapping[str, float | None]) -> bool:
        """Whether the running sensor moved by more than a load step within this window (a start, a stop or a
        speed change inside it: its mean is a mix of two operating points and its sensors are not settled)."""
        spec = self.machine_types.get(machine_type)
        if spec is None or spec.running_sensor is None:
            return False
        lo, hi = features.get(f"{spec.running_sensor}.min"), features.get(f"{spec.running_sensor}.max")
        top = spec.sensors[spec.running_sensor].range.max
        if lo is None or hi is None or not math.isfinite(lo) or not math.isfinite(hi) or top <= 0:
            return False
        return (hi - lo) / top > _LOAD_STEP

    @staticmethod
    def _trend_span(machine: MachineMemory, key: str) -> float:
        points = machine.trend_points.get(key)
        return points[-1][0] - points[0][0] if points else 0.0

    def _margin(
        self,
        fv: FeatureVector,
        machine: MachineMemory,
        x: dict[str, float],
        reference: OperatingNormal,
        r: Any,
        steady: bool = True,
        ref_tag: str = "own",
    ) -> tuple[float, str | None, float, str | None]:
        """How far each limited sensor has moved from its normal (at this operating point) towards its hard
        limit, as a share of the margin, and how fast. Deviations are measured in what matters to the machine
        (the margin to the limit), not in noise, so a noisy sensor does not alert early and a quiet one does not
        alert on its noise. Returns the largest share and its feature, and the shortest projected time (hours)
        to the limit at the current rate and its feature.

        The rate is the least-squares slope of the share over the last ``trend_window_h`` hours of *steady
        running time* (windows at a settled operating point only, across duty cycles and stops), so the warm-up
        after a start or a speed step, which a per-window regression on the load cannot follow, is not a trend:
        over several duty cycles its rises and falls cancel, while wear keeps rising. It needs
        ``trend_min_span_h`` hours of such running time before it projects anything."""
        cfg = self.config
        worst, worst_key = 0.0, None
        soonest, soonest_key = math.inf, None
        alpha = cfg.smoothing
        machine.margin_ts = fv.window_end
        if machine.trend_ref != ref_tag:
            machine.trend_points.clear()
            machine.trend_ref = ref_tag
        if steady:
            length = (fv.window_end - fv.window_start).total_seconds() / 3600.0
            machine.run_h += min(max(length, 0.0), 1.0)
        spec = self.machine_types.get(fv.machine_type)
        # Trends only of the key sensors (``key = true``): load-following ones (currents) swing too much.
        key_sensors = {name for name, sensor in spec.sensors.items() if sensor.key} if spec else set()
        for key, low, high in self.rules(fv.machine_id, fv.machine_type).limits():
            value = x.get(key)
            expected = reference.expected(key, r)
            if value is None or not math.isfinite(expected):
                continue
            share = 0.0
            if high is not None and high > expected:
                share = max(share, (value - expected) / (high - expected))
            if low is not None and low < expected:
                share = max(share, (expected - value) / (expected - low))
            raw = share
            previous = machine.margin.get(key)
            share = share if previous is None else alpha * share + (1 - alpha) * previous
            machine.margin[key] = share
            if share > worst:
                worst, worst_key = share, key
            if sensor_of(key) not in key_sensors:
                continue
            points = machine.trend_points.get(key)
            if points is None:
                points = machine.trend_points[key] = deque()
            if steady:
                points.append((machine.run_h, raw))
                while points and points[0][0] < machine.run_h - cfg.trend_window_h:
                    points.popleft()
            fit = _slope(points) if points and points[-1][0] - points[0][0] >= cfg.trend_min_span_h else None
            if fit is None:
                machine.margin_rate.pop(key, None)
                machine.trend_level.pop(key, None)
                continue
            rate, now = fit
            machine.margin_rate[key] = rate
            level = machine.trend_level[key] = max(now, 0.0)  # the trend's level, not the unsettled window's
            if rate > 0 and level > 0:
                eta = (1.0 - level) / rate
                if eta < soonest:
                    soonest, soonest_key = eta, key
        return worst, worst_key, soonest, soonest_key

    @staticmethod
    def _classifier_inputs(machine: MachineMemory, oriented: dict[str, float]) -> dict[str, float]:
        """Log-compressed deviations and their trend: how far from normal, and how fast it is moving away.

        Wear grows faster as it advances, so level and trend together say how close a failure is, which is
        what the classifier has to learn; the log keeps a 100-sigma deviation from dominating the weights.
        """
        out: dict[str, float] = {}
        for key, value in oriented.items():
            level = math.copysign(math.log1p(abs(value)), value)
            slow = machine.slow.get(key)
            slow = level if slow is None else slow + _SLOW * (level - slow)
            machine.slow[key] = slow
            out[key] = level
            out[f"{key}{TREND}"] = level - slow
        return out

    @staticmethod
    def _per_feature(explained: dict[str, float]) -> dict[str, float]:
        """Level and trend shares of one feature, added up (a planner asks about bearing_temp, not its trend)."""
        out: dict[str, float] = {}
        for key, share in explained.items():
            base = key.removesuffix(TREND)
            out[base] = out.get(base, 0.0) + share
        return out

    # ------------------------------------------------------------------ explanations
    def _contributions(
        self, explained: dict[str, float], x: dict[str, float], reference: OperatingNormal, r: Any
    ) -> tuple[Contribution, ...]:
        top = sorted(explained.items(), key=lambda kv: -abs(kv[1]))[: self.config.top_contributions]
        out = []
        for key, share in top:
            # Normal is what this machine shows at this load and time of day, not its all-time average.
            expected, scale = reference.expected(key, r), reference.scale(key, r)
            out.append(
                Contribution(
                    feature=key,
                    value=x.get(key),
                    normal=expected if math.isfinite(expected) else None,
                    normal_std=scale if math.isfinite(scale) else None,
                    contribution=share,
                )
            )
        return tuple(out)

    # ------------------------------------------------------------------ one machine's state (follows its partition)
    def export_machine(self, machine_id: str) -> dict[str, Any] | None:
        """Everything held for one machine (not the per-type models): its memory, pending labels and audit
        share, for a per-machine checkpoint that another worker can import when the machine's partition moves."""
        memory = self._machines.get(machine_id)
        if memory is None:
            return None
        pending, failures = self.pending.export_machine(machine_id)
        return {
            "memory": memory,
            "pending": pending,
            "failures": failures,
            "audit": self.audit.export_machine(machine_id),
        }

    def import_machine(self, machine_id: str, state: Mapping[str, Any]) -> None:
        """Take over one machine's state exported by :meth:`export_machine` (replaces what was held)."""
        self._machines[machine_id] = state["memory"]
        self.pending.import_machine(machine_id, state["pending"], state["failures"])
        self.audit.import_machine(machine_id, state["audit"])
        self._rules.pop(machine_id, None)

    def drop_machine(self, machine_id: str) -> None:
        """Forget one machine (its partition moved to another worker)."""
        self._machines.pop(machine_id, None)
        self._rules.pop(machine_id, None)
        self.pending.drop_machine(machine_id)
        self.audit.drop_machine(machine_id)

    # ------------------------------------------------------------------ introspection
    def machine_ids(self) -> list[str]:
        return list(self._machines)

    def type_names(self) -> list[str]:
        return list(self._types)

    def type_memory(self, name: str) -> TypeMemory:
        return self._type(name)

    def machine_memory(self, machine_id: str) -> MachineMemory | None:
        return self._machines.get(machine_id)
