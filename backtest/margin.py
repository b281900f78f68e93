"""The margin rule's limits: the plant file's hard limits moved in, measured in the pipeline's own window pass.

The margin baseline is the hard-limit rule a plant would configure with its limits moved toward normal by a share
of each sensor's valid range (:func:`margin_config`). It needs the same sample-by-sample persistence the hard-limit
rule gets from :mod:`features.persistence` (how long each sensor stayed beyond a limit, outside warm-up, while the
machine ran), but on the moved limits. Everything else in a feature vector is the same for both limit sets, so
instead of a second window engine (which computed every aggregation twice and cost ~15 % of a backtest),
:class:`MarginBuilder` measures the moved limits on the same window columns the pipeline's builder just
aggregated, keeps that plan's state beside the pipeline's in the engine's per-machine memory (under
:data:`STATE_PREFIX`), and hands the margin features out through :meth:`MarginBuilder.margin_vector`.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping

from features.persistence import HELD, LimitPlan, Segment
from features.vector import BuildResult, FeatureBuilder
from streaming.window_types import ClosedBy, SensorFeatures, WindowColumns
from streaming.windows import WindowEngine
from vigil.config import Limits, SensorOverride, SensorSpec, VigilConfig
from vigil.contracts import FeatureVector

STATE_PREFIX = "@margin"
"""Prefix of the margin plan's keys in the engine's per-machine ``previous`` memory."""


def margin_config(config: VigilConfig, margin_pct: float) -> VigilConfig:
    """The plant file with every hard limit moved toward normal by ``margin_pct`` % of its sensor's valid range.

    The margin rule is the hard-limit rule run on this plant file, with the same persistence, warm-up and
    running-state rules, so the baseline is the rule a plant would actually configure, not a noisier one."""
    machines = []
    resolved = config.machines_by_id
    for m in config.machines:
        sensors = {
            name: SensorOverride(limits=moved_in(spec, margin_pct / 100.0).limits)
            for name, spec in resolved[m.id].sensors.items()
            if spec.limits.low is not None or spec.limits.high is not None
        }
        machines.append(m.model_copy(update={"sensors": {**m.sensors, **sensors}}))
    return config.model_copy(update={"machines": machines})


def moved_in(spec: SensorSpec, share: float) -> SensorSpec:
    """``spec`` with its limits moved toward the middle by ``share`` of its valid range (never crossing)."""
    span = spec.range.max - spec.range.min
    low = spec.limits.low + share * span if spec.limits.low is not None else None
    high = spec.limits.high - share * span if spec.limits.high is not None else None
    if low is not None and high is not None and low >= high:
        low, high = (low + high) / 2 - 1e-9, (low + high) / 2 + 1e-9
    return spec.model_copy(update={"limits": Limits(low=low, high=high)})


class MarginBuilder(FeatureBuilder):
    """The pipeline's :class:`~features.vector.FeatureBuilder` that also measures a second limit set per window.

    Vectors leave the engine exactly as the pipeline builds them; for each one, :meth:`margin_vector` gives the
    same vector with the persistence features measured on ``margin``'s limits."""

    def __init__(self, config: VigilConfig, margin: VigilConfig) -> None:
        super().__init__(config)
        self._margin = FeatureBuilder(margin)
        self._pending: dict[str, deque[dict[str, float | None]]] = defaultdict(deque)

    def build_columns(
        self,
        machine_id: str,
        start: float,
        end: float,
        window: WindowColumns,
        *,
        gap: bool = False,
        closed_by: ClosedBy = "watermark",
        previous: Mapping[str, SensorFeatures] | None = None,
    ) -> BuildResult:
        result = super().build_columns(machine_id, start, end, window, gap=gap, closed_by=closed_by, previous=previous)
        plan = self._plan_of(machine_id)
        features: dict[str, float | None] = {}
        if plan is not None:
            prior = previous or {}
            own = {k[len(STATE_PREFIX) :]: v for k, v in prior.items() if k.startswith(STATE_PREFIX)}
            if HELD in prior:
                own[HELD] = prior[HELD]  # the running state is the pipeline's, held before this window
            latest: dict[str, SensorFeatures] = {}
            segments = _segments(plan, window)
            extremes = {name: (float(v.min()), float(v.max())) for name, (_, v) in segments.items()}
            plan.measure(segments, own, features, latest, extremes)
            result.latest.update({STATE_PREFIX + k: v for k, v in latest.items()})
        self._pending[machine_id].append(features)
        return result

    def _plan_of(self, machine_id: str) -> LimitPlan | None:
        plans = self._margin._plans  # the pipeline builder's own plan cache, on the margin plant file
        if machine_id not in plans:
            machine = self._margin.config.machines_by_id[machine_id]
            self._margin._plan(machine, self._margin.config.machine_types[machine.type])
        return plans[machine_id]

    def margin_vector(self, fv: FeatureVector) -> FeatureVector:
        """``fv`` (the next vector of its machine the engine emitted) with the margin limits' persistence."""
        features = self._pending[fv.machine_id].popleft()
        return fv.model_copy(update={"features": {**fv.features, **features}}) if features else fv


def _segments(plan: LimitPlan, window: WindowColumns) -> dict[str, Segment]:
    """The usable samples of the plan's sensors (and its running sensor) in the window."""
    names = [s for s, _, _ in plan.sensors]
    if plan.running is not None:
        names.append(plan.running)
    bounds = window.bounds
    segments: dict[str, Segment] = {}
    for name in names:
        if name in window.sensors:
            i = window.sensors.index(name)
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            if hi > lo:
                segments[name] = (window.ts[lo:hi], window.values[lo:hi])
    return segments


def margin_engine(config: VigilConfig, margin: VigilConfig) -> tuple[WindowEngine, MarginBuilder]:
    """A backtest window engine (no lateness allowed: input is sorted) building for both limit sets."""
    builder = MarginBuilder(config, margin)
    return WindowEngine(config, builder, max_late=0), builder
