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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.anomaly import AdaptiveThreshold, make_detector
from models.base import AnomalyDetector
from models.drift import ManagedClassifier
from models.labels import PendingLabels, Resolved
from models.metrics import SegmentAudit
from models.normal import Normal
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

_HEALTHY_SHARE = 0.75
"""A window updates the machine's reference of normal only if its anomaly score is below this share of the
threshold: the reference follows slow, harmless change without swallowing a degradation."""


@dataclass
class MachineMemory:
    machine_id: str
    machine_type: str
    site: str | None
    line: str | None
    normal: Normal
    health: SensorHealth
    smooth: dict[str, float] = field(default_factory=dict)
    running_since: datetime | None = None
    windows: int = 0
    feature_drift: dict[str, Any] = field(default_factory=dict)


@dataclass
class TypeMemory:
    classifier: ManagedClassifier
    detector: AnomalyDetector
    threshold: AdaptiveThreshold
    normal: Normal


@dataclass(frozen=True)
class ModelOutput:
    prediction: Prediction | None
    drift: list[DriftEvent]


def sensor_of(feature: str) -> str:
    return feature.split(".", 1)[0]


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
            config.horizon_s, config.negative_sample_rate, config.max_pending_per_machine, keep_above=_HEALTHY_SHARE / 2
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
                normal=Normal(cfg.cold_start_windows),
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
                Normal(self.config.cold_start_windows),
                SensorHealth(),
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
            rules = self._rules[machine_id] = HardLimits(sensors)
        return rules

    def select(self, features: Mapping[str, float | None]) -> dict[str, float]:
        """The model inputs of a vector: the configured aggregations of every sensor, plus derived features."""
        aggs = self.config.aggregations
        out: dict[str, float] = {}
        for key, value in features.items():
            if value is None or not math.isfinite(value):
                continue
            sensor, _, agg = key.partition(".")
            if not agg or agg in aggs or (agg == "value" and "." not in sensor):
                out[key] = float(value)
        return out

    # ------------------------------------------------------------------ the verbs
    def process(self, fv: FeatureVector) -> ModelOutput:
        """Predict for one window, then learn what it can teach."""
        cfg = self.config
        machine = self._machine(fv)
        kind = self._type(fv.machine_type)
        ts = fv.window_end
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
        if fv.state == MachineState.OFF:
            machine.running_since = None
            machine.smooth.clear()
            return ModelOutput(
                Prediction(**common, decision=Decision.OFF, decided_by="none", reasons=("machine off",)), drift
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
        if machine.running_since is None:
            machine.running_since = fv.window_start
        warmup = (ts - machine.running_since).total_seconds() < cfg.warmup_s
        x = self.select(fv.features)
        for sensor, fault, detail in machine.health.update(x, fv.missing, machine.normal):
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
        x_ok = {k: v for k, v in x.items() if sensor_of(k) not in machine.health.faulty}
        cold_start = not machine.normal.ready
        reference = kind.normal if cold_start else machine.normal
        z = reference.z(x_ok)
        alpha = cfg.smoothing
        for key, value in z.items():
            previous = machine.smooth.get(key)
            machine.smooth[key] = value if previous is None else alpha * value + (1 - alpha) * previous
        smooth = {k: machine.smooth[k] for k in z}
        score = kind.detector.score_one(smooth)
        threshold = kind.threshold.value
        has_reference = reference.ready
        anomalous = has_reference and not warmup and score >= threshold
        p = kind.classifier.predict_proba_one(smooth)
        outside = sorted((k for k, v in smooth.items() if abs(v) > cfg.out_of_range_z), key=lambda k: -abs(smooth[k]))
        trained = kind.classifier.n_positive >= cfg.min_positive_labels
        confident = abs(p - 0.5) >= cfg.min_confidence
        classifier_decides = trained and confident and not outside and not warmup

        reasons: list[str] = []
        if cold_start:
            reasons.append(f"cold start: using the {fv.machine_type} type's normal ({machine.normal.n} own windows)")
        if warmup:
            reasons.append("warm-up after start: anomalies are not alerted")
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
        model_alert = classifier_decides and p >= cfg.threshold
        if violations:
            decision, decided_by = Decision.ALERT, "rule"
            reasons.extend(f"hard limit: {v}" for v in violations)
        elif model_alert:
            decision, decided_by = Decision.ALERT, "model"
            reasons.append(f"P(failure within {cfg.horizon_s / 3600:g} h) = {p:.2f} >= {cfg.threshold:g}")
        elif anomalous:
            decision, decided_by = Decision.ALERT, "anomaly"
            reasons.append(f"anomaly score {score:.2f} >= threshold {threshold:.2f}")
        elif classifier_decides:
            decision, decided_by = Decision.OK, "model"
        elif has_reference and not warmup:
            decision, decided_by = Decision.OK, "anomaly"
        else:
            decision, decided_by = Decision.OK, "rule"
        explained = kind.classifier.explain_one(smooth) if decided_by == "model" else kind.detector.explain_one(smooth)
        contributions = self._contributions(explained, x, reference)
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
        usable = not fv.gap and fv.bad_quality_share <= cfg.max_bad_quality_share and not warmup
        if usable:
            drift += self._train(fv, machine, kind, x_ok, smooth, relative, risk, has_reference, violations)
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
        if machine is not None and event.event in ("failure", "repair"):
            machine.smooth.clear()
            machine.health.reset()
            machine.running_since = None
        return drift

    # ------------------------------------------------------------------ learning
    def _train(
        self,
        fv: FeatureVector,
        machine: MachineMemory,
        kind: TypeMemory,
        x: dict[str, float],
        smooth: dict[str, float],
        relative: float,
        risk: float,
        has_reference: bool,
        violations: tuple[str, ...],
    ) -> list[DriftEvent]:
        healthy = not violations and (not machine.normal.ready or relative < _HEALTHY_SHARE)
        if healthy:
            machine.normal.update(x)
            kind.normal.update(x)
        machine.windows += 1
        if has_reference:
            kind.threshold.update(kind.detector.score_one(smooth))
            kind.detector.learn_one(smooth)
        drift = self._learn(self.pending.add(fv.machine_id, fv.window_end, smooth, risk))
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
            self.audit.label(machine.machine_type, machine.site, machine.line, r.score, r.positive)
            for event, detail, value in kind.classifier.drain():
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
        from river import drift as river_drift

        types = self.machine_types.get(fv.machine_type)
        keys = [f"{s}.mean" for s, spec in types.sensors.items() if spec.key] if types else []
        out: list[DriftEvent] = []
        for key in keys:
            value = smooth.get(key)
            if value is None:
                continue
            detector = machine.feature_drift.get(key)
            if detector is None:
                ph: Any = river_drift.PageHinkley
                detector = machine.feature_drift[key] = ph(min_instances=30, delta=0.5, threshold=50.0)
            detector.update(value)
            if detector.drift_detected:
                out.append(
                    DriftEvent(
                        ts=fv.window_end,
                        machine_type=fv.machine_type,
                        machine_id=fv.machine_id,
                        detector="page_hinkley",
                        target=key,
                        event="drift",
                        detail=f"{key} moved from this machine's normal (z={value:+.1f})",
                        value=value,
                    )
                )
        return out

    # ------------------------------------------------------------------ explanations
    def _contributions(
        self, explained: dict[str, float], x: dict[str, float], reference: Normal
    ) -> tuple[Contribution, ...]:
        top = sorted(explained.items(), key=lambda kv: -abs(kv[1]))[: self.config.top_contributions]
        out = []
        for key, share in top:
            mean, std = reference.mean(key), reference.std(key)
            out.append(
                Contribution(
                    feature=key,
                    value=x.get(key),
                    normal=mean if math.isfinite(mean) else None,
                    normal_std=std if math.isfinite(std) else None,
                    contribution=share,
                )
            )
        return tuple(out)

    # ------------------------------------------------------------------ introspection
    def machine_ids(self) -> list[str]:
        return list(self._machines)

    def type_names(self) -> list[str]:
        return list(self._types)

    def type_memory(self, name: str) -> TypeMemory:
        return self._type(name)

    def machine_memory(self, machine_id: str) -> MachineMemory | None:
        return self._machines.get(machine_id)
