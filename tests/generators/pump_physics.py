"""One centrifugal pump's physics, minute by minute: duty cycle, affinity laws, bearing heat balance, wear.

- **Duty cycle**: phases of 1-3 h at one of two speeds (1480 / 2950 rpm), stops of 20 min - 6 h in between.
- **Affinity laws**: flow ~ n, head ~ n^2, shaft power ~ n^3; impeller wear lowers flow and head at a given speed
  and raises the power (lower efficiency); bearing wear adds friction power.
- **Bearing temperature**: a first-order heat balance toward ambient + k (n/n_nom)^2 (1 + bearing wear) with a
  time constant of 30-60 min, so every step up in speed shows a warm-up curve that is not wear.
- **Vibration** (mm/s RMS): a speed-dependent base, plus radial bearing wear (~ n), thrust wear and impeller
  imbalance (~ n^2).
- **Failure modes**: thrust bearing, radial bearing, impeller wear. After a random onset the mode's wear grows
  exponentially with running time; the pump fails when a physical threshold is crossed (bearing temperature,
  vibration, or flow at the running speed), stops for a repair of 4-24 h and restarts with its wear reset.

Everything here is noise-free truth; sensor noise, drift, stuck sensors and gaps are the fleet's business
(:mod:`tests.generators.pumps`).

>>> import numpy as np
>>> d = PumpDesign(q_nom=250.0, h_nom=60.0, p_nom=55.0, k_bearing=35.0, tau_s=2400.0, vib_base=2.2, suction_bar=1.5)
>>> round(hydraulics(d, 0.5, 0.0)[0], 1), round(hydraulics(d, 1.0, 0.0)[0], 1)  # flow ~ speed
(125.0, 250.0)
>>> round(hydraulics(d, 0.5, 0.0)[2] / hydraulics(d, 1.0, 0.0)[2], 3)  # power ~ speed^3
0.125
>>> h = simulate_pump(d, LifePlan(mode="thrust_bearing", onset_h=2.0, life_h=6.0), n_steps=24 * 60, dt_s=60.0,
...                   ambient=np.full(24 * 60, 20.0), rng=np.random.default_rng(1))
>>> [(f.mode, round(f.life_h, 1)) for f in h.failures][:1]
[('thrust_bearing', 19.2)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Mode = Literal["thrust_bearing", "radial_bearing", "impeller_wear"]
MODES: tuple[Mode, ...] = ("thrust_bearing", "radial_bearing", "impeller_wear")
CAUSE_TEXT: dict[str, str] = {
    "thrust_bearing": "Thrust bearing failure",
    "radial_bearing": "Radial bearing failure",
    "impeller_wear": "Impeller wear",
}

N_NOM = 2950.0
"""Nominal (high) speed, rpm; the low speed is 1480 rpm (a 2-pole motor on a VFD, or a pole-changing motor)."""
TEMP_LIMIT_C = 95.0
"""The thrust bearing fails (oil film breaks down) when its temperature reaches this."""
VIB_LIMIT_MM_S = 11.2
"""The radial bearing fails at this vibration (ISO 10816-3 zone D for a rigidly mounted pump of this size)."""
FLOW_LOW_M3_H = 90.0
"""The worn impeller has failed when the pump no longer delivers this flow while running (process minimum)."""
WEAR_START = 0.02
"""A mode's wear at its onset; it grows as exp(rate * effective running hours) from there."""
WEAR_AT_FAILURE = 1.0
"""The wear at which the thresholds are crossed at nominal speed, roughly (used to turn a life into a rate)."""
STOPPED_VIBRATION = 0.05
"""What the vibration transmitter reads on a stopped pump (neighbouring machines, floor)."""


@dataclass(frozen=True)
class PumpDesign:
    """One pump's physical constants (drawn per pump, so no two pumps are identical)."""

    q_nom: float
    """Flow at nominal speed, m3/h."""
    h_nom: float
    """Head at nominal speed, m."""
    p_nom: float
    """Shaft power at nominal speed, kW."""
    k_bearing: float
    """Bearing temperature rise over ambient at nominal speed, K."""
    tau_s: float
    """Bearing thermal time constant, s."""
    vib_base: float
    """Vibration of the healthy pump at nominal speed, mm/s."""
    suction_bar: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> PumpDesign:
        return cls(
            q_nom=250.0 * rng.uniform(0.92, 1.08),
            h_nom=60.0 * rng.uniform(0.95, 1.05),
            p_nom=55.0 * rng.uniform(0.95, 1.05),
            k_bearing=35.0 * rng.uniform(0.9, 1.1),
            tau_s=60.0 * rng.uniform(30.0, 60.0),
            vib_base=2.2 * rng.uniform(0.85, 1.15),
            suction_bar=1.5 * rng.uniform(0.9, 1.1),
        )


def hydraulics(d: PumpDesign, s: float, w_imp: float, w_bearing: float = 0.0) -> tuple[float, float, float]:
    """``(flow m3/h, discharge pressure bar, power kW)`` at relative speed ``s = n / n_nom``."""
    flow = d.q_nom * s * (1.0 - 0.35 * w_imp)
    head = d.h_nom * s * s * (1.0 - 0.25 * w_imp)
    power = d.p_nom * s * s * s * (1.0 + 0.35 * w_imp + 0.05 * w_bearing)
    return flow, d.suction_bar + 0.0981 * head, power


def bearing_target(d: PumpDesign, s: float, ambient: float, w_thrust: float, w_radial: float) -> float:
    """The bearing temperature the heat balance moves toward, degC."""
    return ambient + d.k_bearing * s * s * (1.0 + w_thrust + 0.3 * w_radial)


def vibration(d: PumpDesign, s: float, w_thrust: float, w_radial: float, w_imp: float) -> float:
    """Vibration velocity RMS, mm/s."""
    if s <= 0.0:
        return STOPPED_VIBRATION
    base = d.vib_base * (0.35 + 0.65 * s * s)
    return base + 9.0 * w_radial * s + 0.4 * w_thrust * s + 1.5 * w_imp * s * s


@dataclass(frozen=True)
class DutyCycle:
    speeds_rpm: tuple[float, float] = (1480.0, 2950.0)
    phase_h: tuple[float, float] = (1.0, 3.0)
    stop_probability: float = 0.15
    """After each running phase, the chance of a stop."""
    stop_h: tuple[float, float] = (1 / 3, 6.0)
    """Stop durations, log-uniform."""
    switch_probability: float = 0.75
    """The chance that the next running phase is at the other speed."""


@dataclass(frozen=True)
class LifePlan:
    """How one life (start or restart until failure) goes: no mode means healthy for ever."""

    mode: Mode | None
    onset_h: float = math.inf
    """Hours after the life's start at which wear begins to grow."""
    life_h: float = math.inf
    """Intended effective running hours from onset to failure (the exponential rate is derived from it)."""


@dataclass(frozen=True)
class Failure:
    step: int
    mode: Mode
    onset_step: int
    life_h: float
    """Hours from onset to failure, as it happened."""
    threshold: str
    restart_step: int
    """Step at which the repaired pump runs again (may be beyond the simulated span)."""


@dataclass
class PumpTruth:
    """Noise-free series of one pump, one value per step."""

    speed: np.ndarray
    bearing_temp: np.ndarray
    vibration: np.ndarray
    flow: np.ndarray
    pressure: np.ndarray
    power: np.ndarray
    ambient: np.ndarray
    wear: dict[str, np.ndarray]
    failures: list[Failure] = field(default_factory=list)
    onsets: list[tuple[int, Mode]] = field(default_factory=list)
    """(step, mode) of every onset inside the span, failed or not."""


def _next_phase(
    rng: np.random.Generator, duty: DutyCycle, speed: float, dt_s: float, was_running: bool
) -> tuple[float, int]:
    """The next phase's speed (0 = stop) and length in steps."""
    if was_running and rng.random() < duty.stop_probability:
        lo, hi = duty.stop_h
        hours = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return 0.0, max(1, round(hours * 3600 / dt_s))
    low, high = duty.speeds_rpm
    if speed <= 0.0:
        new = low if rng.random() < 0.5 else high
    elif rng.random() < duty.switch_probability:
        new = high if speed == low else low
    else:
        new = speed
    return new, max(1, round(rng.uniform(*duty.phase_h) * 3600 / dt_s))


def simulate_pump(
    d: PumpDesign,
    first_life: LifePlan,
    n_steps: int,
    dt_s: float,
    ambient: np.ndarray,
    rng: np.random.Generator,
    duty: DutyCycle = DutyCycle(),
    next_life: LifePlanner | None = None,
    repair_h: tuple[float, float] = (4.0, 24.0),
) -> PumpTruth:
    """Step one pump through ``n_steps``; ``next_life`` plans each life after a repair (default: healthy)."""
    out = {name: np.zeros(n_steps) for name in ("speed", "temp", "vib", "flow", "pres", "power")}
    wear_series = {m: np.zeros(n_steps) for m in MODES}
    truth_failures: list[Failure] = []
    onsets: list[tuple[int, Mode]] = []
    dt_h = dt_s / 3600.0
    alpha = 1.0 - math.exp(-dt_s / d.tau_s)

    plan = first_life
    life_start = 0
    wear = dict.fromkeys(MODES, 0.0)
    effective_h = 0.0
    rate = 0.0
    onset_step = -1

    speed, left = _next_phase(rng, duty, 0.0, dt_s, was_running=False)
    repairing = False
    temp = bearing_target(d, speed / N_NOM, float(ambient[0]), 0.0, 0.0)

    for k in range(n_steps):
        if left == 0:
            if repairing:
                repairing = False
                plan = next_life(rng) if next_life is not None else LifePlan(mode=None)
                life_start, wear, effective_h, onset_step = k, dict.fromkeys(MODES, 0.0), 0.0, -1
            speed, left = _next_phase(rng, duty, speed, dt_s, was_running=speed > 0)
        left -= 1
        s = speed / N_NOM
        if plan.mode is not None and onset_step < 0 and (k - life_start) * dt_h >= plan.onset_h:
            onset_step = k
            rate = math.log(WEAR_AT_FAILURE / WEAR_START) / plan.life_h
            wear[plan.mode] = WEAR_START
            onsets.append((k, plan.mode))
        if plan.mode is not None and onset_step >= 0 and s > 0.0:
            effective_h += dt_h * (0.5 + 0.5 * s)  # wear grows faster at high speed
            wear[plan.mode] = WEAR_START * math.exp(rate * effective_h)
        w_t, w_r, w_i = wear["thrust_bearing"], wear["radial_bearing"], wear["impeller_wear"]
        amb = float(ambient[k])
        temp += (bearing_target(d, s, amb, w_t, w_r) - temp) * alpha
        vib = vibration(d, s, w_t, w_r, w_i)
        flow, pres, power = hydraulics(d, s, w_i, w_t + w_r)
        out["speed"][k], out["temp"][k], out["vib"][k] = speed, temp, vib
        out["flow"][k], out["pres"][k], out["power"][k] = flow, pres, power
        for m in MODES:
            wear_series[m][k] = wear[m]
        threshold = _crossed(s, temp, vib, flow)
        if threshold and plan.mode is not None and not repairing:
            repair = max(1, round(rng.uniform(*repair_h) * 3600 / dt_s))
            life = (k - onset_step) * dt_h
            truth_failures.append(Failure(k, plan.mode, onset_step, life, threshold, k + 1 + repair))
            repairing, speed, left = True, 0.0, repair
    return PumpTruth(
        speed=out["speed"],
        bearing_temp=out["temp"],
        vibration=out["vib"],
        flow=out["flow"],
        pressure=out["pres"],
        power=out["power"],
        ambient=np.asarray(ambient, dtype=float),
        wear=wear_series,
        failures=truth_failures,
        onsets=onsets,
    )


def _crossed(s: float, temp: float, vib: float, flow: float) -> str:
    """Which physical threshold a running pump crossed ('' for none)."""
    if s <= 0.0:
        return ""
    if temp >= TEMP_LIMIT_C:
        return f"bearing_temp >= {TEMP_LIMIT_C:g} degC"
    if vib >= VIB_LIMIT_MM_S:
        return f"vibration >= {VIB_LIMIT_MM_S:g} mm/s"
    if flow <= FLOW_LOW_M3_H:
        return f"flow <= {FLOW_LOW_M3_H:g} m3/h"
    return ""


class LifePlanner:
    """Draws each life's plan: healthy, or a mode with an onset and a short (hours) or long (days) life."""

    def __init__(
        self,
        healthy: bool = False,
        mean_onset_h: float = 96.0,
        min_onset_h: float = 12.0,
        short_share: float = 0.4,
        short_life_h: tuple[float, float] = (3.0, 12.0),
        long_life_h: tuple[float, float] = (48.0, 144.0),
        mode_weights: tuple[float, float, float] = (0.35, 0.35, 0.3),
    ) -> None:
        self.healthy = healthy
        self.mean_onset_h = mean_onset_h
        self.min_onset_h = min_onset_h
        self.short_share = short_share
        self.short_life_h = short_life_h
        self.long_life_h = long_life_h
        self.mode_weights = mode_weights

    def __call__(self, rng: np.random.Generator) -> LifePlan:
        if self.healthy:
            return LifePlan(mode=None)
        weights = np.asarray(self.mode_weights, dtype=float)
        mode = MODES[int(rng.choice(len(MODES), p=weights / weights.sum()))]
        onset = self.min_onset_h + rng.exponential(self.mean_onset_h)
        span = self.short_life_h if rng.random() < self.short_share else self.long_life_h
        return LifePlan(mode=mode, onset_h=onset, life_h=rng.uniform(*span))
