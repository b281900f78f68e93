"""Synthetic feature vectors of pumps (the example plant's ``pump`` type), for unit tests and the benchmark.

The real offline evaluation uses the simulator and the window engine (:mod:`models.evaluate`); this is the
small, fast, exactly controllable stand-in: load-dependent healthy values, Gaussian noise, and a ``wear`` knob
that moves bearing temperature and vibration towards their hard limits.

>>> from datetime import UTC, datetime
>>> fv = pump_vector("PMP-001", datetime(2026, 1, 1, tzinfo=UTC), load=1.0, wear=0.0, rng=None)
>>> round(fv.features["bearing_temp.mean"], 1), fv.state.value
(60.0, 'running')
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from vigil.contracts import FeatureVector, MachineState

WINDOW_S = 600.0
_NOISE = {"speed": 1.0, "flow": 2.0, "pressure": 0.03, "motor_current": 0.5, "bearing_temp": 0.1, "vibration_rms": 0.02}


def pump_values(load: float, wear: float) -> dict[str, float]:
    s = load
    return {
        "speed": 2960.0 * s,
        "flow": 430.0 * s,
        "pressure": 0.4 + 9.0 * s * s,
        "motor_current": 22.0 + 108.0 * s**3,
        "bearing_temp": 33.0 + 27.0 * s + wear * 35.0,
        "vibration_rms": 0.5 + 1.9 * s * s + wear * 8.8,
    }


def pump_vector(
    machine_id: str,
    window_end: datetime,
    *,
    load: float = 0.8,
    wear: float = 0.0,
    rng: random.Random | None,
    state: MachineState = MachineState.RUNNING,
    gap: bool = False,
    bad_quality_share: float = 0.0,
    overrides: dict[str, float | None] | None = None,
    line: str = "north-1",
    site: str = "north",
) -> FeatureVector:
    """One pump window; ``rng=None`` gives noise-free values."""
    values = pump_values(load, wear) if state == MachineState.RUNNING else pump_values(0.0, 0.0)
    features: dict[str, float | None] = {}
    for sensor, mean in values.items():
        noise = _NOISE[sensor]
        m = mean + (rng.gauss(0.0, noise) if rng else 0.0)
        std = noise * (1.0 + (0.1 * rng.random() if rng else 0.0))
        features[f"{sensor}.mean"] = m
        features[f"{sensor}.std"] = std
        features[f"{sensor}.max"] = m + 2 * std
        features[f"{sensor}.slope"] = rng.gauss(0.0, noise / 600) if rng else 0.0
    flow = features["flow.mean"] or 1.0
    features["pressure_per_flow"] = (features["pressure.mean"] or 0.0) / flow if flow else None
    features.update(overrides or {})
    return FeatureVector(
        machine_id=machine_id,
        machine_type="pump",
        site=site,
        line=line,
        window_start=window_end - timedelta(seconds=WINDOW_S),
        window_end=window_end,
        features=features,
        state=state,
        gap=gap,
        bad_quality_share=bad_quality_share,
        count=60,
    )


def pump_fleet(machines: int, start: datetime, windows: int, seed: int = 0) -> Iterator[FeatureVector]:
    """``windows`` healthy windows of ``machines`` pumps, interleaved in event-time order."""
    rng = random.Random(seed)
    loads = {f"PMP-{i:05d}": 0.6 + 0.4 * rng.random() for i in range(machines)}
    for k in range(windows):
        end = start + timedelta(seconds=WINDOW_S * (k + 1))
        for machine_id in loads:
            if rng.random() < 0.02:
                loads[machine_id] = 0.6 + 0.4 * rng.random()
            yield pump_vector(machine_id, end, load=loads[machine_id], rng=rng)
