"""The degradation trend is judged against normal at the current operating point, over steady running time.

A pump on a two-speed duty cycle whose bearing warms with a 45 min time constant after every step up in speed
(a first-order heat balance the per-window regression on the load cannot follow) must not be read as wear;
a residual that keeps rising over several duty cycles must.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from models.pipeline import FleetModel
from models.synthetic import WINDOW_S, pump_values, pump_vector
from vigil.config import VigilConfig
from vigil.contracts import Decision

T0 = datetime(2026, 3, 2, tzinfo=UTC)
TAU_S = 2700.0
PHASE = 12  # windows per duty-cycle phase (2 h)


def make(config: VigilConfig, **models: Any) -> FleetModel:
    return FleetModel(config.models.model_copy(update=models), config.machines_by_id, config.machine_types)


def duty_cycle(model: FleetModel, windows: int, wear_per_h: float = 0.0, wear_from: int = 0) -> list[tuple[int, str]]:
    """Run PMP-001 between two speeds; returns (window, first reason of the alert) of every alerting window."""
    rng = random.Random(3)
    temp: float | None = None
    alerts: list[tuple[int, str]] = []
    decay = math.exp(-WINDOW_S / TAU_S)
    for k in range(windows):
        load = 0.95 if (k // PHASE) % 2 else 0.45
        wear = max(0.0, (k - wear_from) * WINDOW_S / 3600.0 * wear_per_h)
        target = pump_values(load, wear)["bearing_temp"]
        temp = target if temp is None else target + (temp - target) * decay
        t = temp + rng.gauss(0.0, 0.1)
        end = T0 + timedelta(seconds=WINDOW_S * (k + 1))
        fv = pump_vector(
            "PMP-001", end, load=load, rng=rng, overrides={"bearing_temp.mean": t, "bearing_temp.max": t + 0.2}
        )
        out = model.process(fv)
        assert out.prediction is not None
        if out.prediction.decision == Decision.ALERT:
            trend = [r for r in out.prediction.reasons if r.startswith("degradation")]
            alerts.append((k, trend[0] if trend else out.prediction.reasons[-1]))
    return alerts


def test_the_warm_up_after_each_speed_step_is_not_a_trend(example_config: VigilConfig) -> None:
    # A low bar for the trend's level (5 % of the way to the limit), so the warm-up curve (about 3 K above the
    # load's normal at its peak here) would be enough if it were read as a trend.
    alerts = duty_cycle(make(example_config, trend_min_margin=0.05), 6 * 144)
    assert [a for a in alerts if "trend" in a[1]] == []


def test_a_per_window_trend_would_read_the_warm_up_as_wear(example_config: VigilConfig) -> None:
    # The same duty cycle judged as before (no settling after a step, a trend over half an hour of running):
    # the warm-up is a trend, which is what the defaults above prevent.
    model = make(
        example_config,
        trend_min_margin=0.05,
        thermal_tau_s=0.0,
        trend_settle_s=0.0,
        trend_window_h=0.5,
        trend_min_span_h=0.3,
    )
    alerts = duty_cycle(model, 6 * 144)
    assert [a for a in alerts if "trend" in a[1]]


def test_a_residual_rising_over_several_duty_cycles_is_a_trend(example_config: VigilConfig) -> None:
    start = 3 * 144
    # The anomaly score's floor raised out of the way: this is about the trend, which must come first on its own.
    alerts = duty_cycle(make(example_config, deviation_z=50.0), start + 72, wear_per_h=0.05, wear_from=start)
    assert alerts, "wear rising 5 % of the margin per hour for 12 h was not alerted"
    first, reason = alerts[0]
    assert first > start
    assert "degradation trend" in reason and "running hours" in reason
    # Before it reached a quarter of the way (the level alert), over several duty-cycle phases.
    assert (first - start) * WINDOW_S / 3600.0 < 6.0


def test_a_step_inside_a_window_is_not_steady(example_config: VigilConfig) -> None:
    model = make(example_config)
    assert model._stepped("pump", {"speed.min": 1480.0, "speed.max": 2950.0})
    assert not model._stepped("pump", {"speed.min": 2940.0, "speed.max": 2955.0})
    assert not model._stepped("pump", {"speed.mean": 2950.0})


def _cold_start_level_alerts(config: VigilConfig, wear: float, **models: Any) -> list[str]:
    """A second pump judged against the type's normal (cold start) with a constant deviation: its level alerts."""
    model = make(config, **models)
    rng = random.Random(1)
    for k in range(150):  # PMP-001 teaches the type its normal
        load = 0.6 + 0.4 * ((k // 7) % 5) / 4
        model.process(pump_vector("PMP-001", T0 + timedelta(seconds=WINDOW_S * (k + 1)), load=load, rng=rng))
    reasons: list[str] = []
    for k in range(150, 175):
        end = T0 + timedelta(seconds=WINDOW_S * (k + 1))
        p = model.process(pump_vector("PMP-002", end, load=0.8, wear=wear, rng=rng)).prediction
        assert p is not None and p.cold_start
        reasons += [r for r in p.reasons if r.startswith("degradation:")] if p.decision == Decision.ALERT else []
    return reasons


def test_cold_start_needs_a_larger_deviation_from_the_types_normal(example_config: VigilConfig) -> None:
    # About 28 % of the way from the type's normal to the bearing limit: a degradation for a machine judged
    # against its own normal (25 %), not yet for one judged against its type's (x 1.6 = 40 %).
    assert _cold_start_level_alerts(example_config, 0.32, cold_start_margin_factor=1.0)
    assert _cold_start_level_alerts(example_config, 0.32, cold_start_margin_factor=1.6) == []
    bigger = _cold_start_level_alerts(example_config, 0.6, cold_start_margin_factor=1.6)
    assert bigger and "(alerts at 40%)" in bigger[0]
