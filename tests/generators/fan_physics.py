"""Physics of one belt-driven centrifugal supply fan in an air-handling unit (AHU), stepped at the historian's rate.

Nothing here is shared with the pumps, motors, compressors or Vigil's simulator: the fan is a machine whose
operating point is set by a duct system and a filter bank, whose speed a VFD adjusts to hold an airflow set-point,
and whose motor drives the impeller through a V-belt that slips.

- **Fan laws and the system**: fan pressure ``A n^2 - B Q^2`` (``n`` the fan speed over its design 900 rpm),
  system pressure ``(K_duct + K_filter) Q^2``; at the design point 5 m3/s, 800 Pa (680 Pa duct static, 120 Pa
  across a clean filter). Filter loading ``L`` raises ``K_filter = K_f0 (1 + L)``, so the VFD raises the speed to
  hold the set-point and the motor power rises (air power ``Q dP``, fan efficiency 0.7, belt and motor losses).
  At the VFD's 50 Hz ceiling (1480 rpm motor) the airflow falls instead.
- **Belt**: ``slip = 1.5 % * torque / tension``; the belt stretches (tension falls 2 % per running day) until a
  preventive re-tension restores it; fan speed = motor speed * pulley ratio * (1 - slip), so a slack belt makes the
  VFD run the motor faster for the same airflow and wastes power as belt heat.
- **Bearing** (fan drive-end): a heat balance (first order, 25-40 min running, 60 min stopped) toward the plant
  room + ``16 K n^1.5 (1 + 1.5 d) + 2 K``; ``d`` the outer-race defect size. The envelope band energy at the
  bearing defect frequencies (gE) is ``0.25 n + 9 d n^2``; a defect adds a little 1x vibration too.
- **Imbalance**: ``vib_1x = 0.6 + 7.5 u n^2`` mm/s; dust builds up on the blades (``u`` +0.01 per running day from
  a residual 0.1-0.2), cleaned at the filter-change PM.
- **Failure modes** (onset after 12 h + exponential(mean 96 h) of running in each life; the damage then grows
  exponentially with running time, its rate from a life drawn short 3-12 h (40 %) or long 48-144 h):
  ``belt_wear`` (cord damage multiplies the tension: the belt is thrown when the slip reaches 10 %),
  ``bearing_defect`` (the defect grows from 0.02: fails at an envelope of 10 gE),
  ``impeller_imbalance`` (a deposit or a cracked blade: the vibration switch trips at 11.2 mm/s 1x),
  ``filter_clog`` (condensate carry-over wets the filter: it collapses at 450 Pa differential pressure).
  The realised life depends on the schedule (the damage grows only while the fan runs, faster at high speed for
  imbalance and bearing). After a failure the fan stands for a repair of 4-36 h and restarts as new.
- **Preventive maintenance** (planned stops of 30-60 min): belt re-tension (stretch reset) and filter change with
  blade cleaning (normal loading and dust reset). It does not remove a failure's damage (a cracked blade, a damaged
  belt cord, a wetted filter frame are not what the routine PM looks at).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("belt_wear", "bearing_defect", "impeller_imbalance", "filter_clog")
Q_DESIGN = 5.0
"""m3/s at the design point (5000 L/s)."""
FAN_RPM = 900.0
MOTOR_MAX_RPM = 1480.0
MOTOR_MIN_RPM = 300.0
A_FAN = 1200.0
B_FAN = 16.0
K_DUCT = 27.2
K_FILTER0 = 4.8
ETA_FAN = 0.70
ETA_MOTOR = 0.91
BELT_LOSS = 0.03
SLIP0 = 0.015
RATIO = FAN_RPM / (1200.0 * (1.0 - SLIP0))
"""Pulley ratio: at the design point the motor turns ~1200 rpm, leaving the VFD headroom up to 1480 rpm."""
SHAFT_DESIGN_W = Q_DESIGN * (K_DUCT + K_FILTER0) * Q_DESIGN**2 / ETA_FAN

SLIP_FAIL = 0.10
ENVELOPE_FAIL_G = 10.0
VIB_TRIP_MM_S = 11.2
FILTER_DP_FAIL_PA = 450.0
STRETCH_PER_DAY = 0.02
FILTER_LOAD_PER_DAY = 0.05
DUST_PER_DAY = 0.01


@dataclass(frozen=True)
class FanParams:
    healthy_share: float = 0.3
    """Share of fans that never fail (with 3 or more, at least one is healthy and one is not)."""
    mean_onset_h: float = 96.0
    short_life_share: float = 0.4
    short_life_h: tuple[float, float] = (3.0, 12.0)
    long_life_h: tuple[float, float] = (48.0, 144.0)
    repair_h: tuple[float, float] = (4.0, 36.0)
    stops_per_week: float = 1.0
    """Random stops (fire-alarm tests, power cuts, a tripped VFD): 20 min - 4 h."""
    gaps_per_week: float = 1.0
    """Historian outages (every AHU's rows absent), 1-8 h."""
    comm_losses_per_week: float = 1.0
    """Per AHU: its controller off the BACnet network (its rows absent), 10-90 min."""
    sensor_faults: int = 3
    """Injected transmitter faults (stuck, spike, dropout) across the fleet."""
    drift: bool = True


@dataclass
class Life:
    mode: str | None
    onset_h: float
    """Running hours into the life at which the damage starts."""
    rate: float
    """Exponential growth rate of the damage per running hour."""
    drawn_h: float


def new_life(rng: np.random.Generator, params: FanParams, healthy: bool) -> Life:
    if healthy:
        return Life(None, math.inf, 0.0, 0.0)
    mode = MODES[int(rng.integers(len(MODES)))]
    onset = 12.0 + rng.exponential(params.mean_onset_h)
    span = params.short_life_h if rng.random() < params.short_life_share else params.long_life_h
    life_h = float(rng.uniform(*span))
    # ln(damage at the threshold / damage at onset), near the design point.
    growth = {"belt_wear": math.log(1 / 0.15), "bearing_defect": math.log(1.08 / 0.02),
              "impeller_imbalance": math.log(1.41 / 0.03), "filter_clog": math.log(2.4 / 0.02)}[mode]  # fmt: skip
    return Life(mode, onset, growth / life_h, life_h)


SERIES = ("running", "setpoint", "motor_speed", "fan_speed", "airflow", "filter_dp", "static_pressure", "power",
          "bearing_temp", "vib_1x", "vib_envelope", "slip", "tension", "defect", "unbalance", "filter_load")  # fmt: skip


def simulate_fan(
    setpoint: np.ndarray,
    stops: np.ndarray,
    room: np.ndarray,
    pm: dict[int, tuple[str, int]],
    dt_s: float,
    rng: np.random.Generator,
    params: FanParams,
    healthy: bool,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]], list[dict[str, Any]]]:
    """Step one fan: ``setpoint`` the scheduled airflow share of design (0 = off), ``stops`` random stops,
    ``pm`` step -> (kind, duration in steps) of preventive work. Returns the true series (SI: m3/s, Pa, kW, degC,
    mm/s, gE), the failures and the preventive work done (skipped while the fan is under repair)."""
    n = len(setpoint)
    s = {name: np.zeros(n) for name in SERIES}
    tau_run, tau_stop = rng.uniform(25, 40) * 60, 60 * 60.0
    a_run, a_stop = 1 - math.exp(-dt_s / tau_run), 1 - math.exp(-dt_s / tau_stop)
    u0 = rng.uniform(0.10, 0.20)
    dt_h = dt_s / 3600
    failures: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    life = new_life(rng, params, healthy)
    life_start, life_h, damage_h, onset_run_h = 0, 0.0, 0.0, 0.0
    stretch, load, dust = 1.0, rng.uniform(0.0, 0.4), rng.uniform(0.0, 0.05)
    defect = unbalance_f = load_f = 0.0
    cord = 1.0
    temp = float(room[0])
    down_until = -1
    for k in range(n):
        if k == down_until and failures and failures[-1]["restart_step"] == k:
            life = new_life(rng, params, healthy)
            life_start, life_h, damage_h, onset_run_h = k, 0.0, 0.0, 0.0
            stretch, load, dust, defect, unbalance_f, load_f, cord = 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0
        if k in pm and k >= down_until:
            kind, length = pm[k]
            down_until = k + length
            done.append({"step": k, "kind": kind, "end_step": k + length})
            if kind == "belt_retension":
                stretch = 1.0
            else:
                load, dust = 0.0, 0.0
        running = setpoint[k] > 0 and not stops[k] and k >= down_until
        slip = 0.0
        if running:
            life_h += dt_h
            if life.mode is not None and life_h >= life.onset_h:
                # Damage grows with what drives it: belt load ~ torque, bearing and blade ~ speed, filter ~ airflow.
                share = float(setpoint[k])
                damage_h += dt_h * (share**2 if life.mode == "belt_wear" else share)
                onset_run_h += dt_h
            stretch = max(0.5, stretch * math.exp(-STRETCH_PER_DAY * dt_h / 24))
            load += FILTER_LOAD_PER_DAY * dt_h / 24
            dust += DUST_PER_DAY * dt_h / 24
            if damage_h > 0:
                grown = math.exp(life.rate * damage_h)
                if life.mode == "belt_wear":
                    cord = 1.0 / grown
                elif life.mode == "bearing_defect":
                    defect = 0.02 * grown
                elif life.mode == "impeller_imbalance":
                    unbalance_f = 0.03 * grown
                else:
                    load_f = 0.02 * grown
            k_filter = K_FILTER0 * (1.0 + load + load_f)
            k_total = K_DUCT + k_filter
            q_set = setpoint[k] * Q_DESIGN
            nf = q_set * math.sqrt((B_FAN + k_total) / A_FAN)
            tension = stretch * cord
            torque = (q_set * k_total * q_set**2 / ETA_FAN / SHAFT_DESIGN_W) / max(nf, 1e-6)
            slip = min(0.5, SLIP0 * torque / tension)
            motor = min(MOTOR_MAX_RPM, max(MOTOR_MIN_RPM, nf * FAN_RPM / (RATIO * (1.0 - slip))))
            nf = motor * RATIO * (1.0 - slip) / FAN_RPM
            q = nf * math.sqrt(A_FAN / (B_FAN + k_total))
            unbalance = u0 + dust + unbalance_f
            shaft = q * k_total * q**2 / ETA_FAN * (1.0 + 0.05 * defect) / 1000.0
            power = shaft / (1.0 - slip) / (1.0 - BELT_LOSS) / ETA_MOTOR
            target = float(room[k]) + 16.0 * nf**1.5 * (1.0 + 1.5 * defect) + 2.0
            temp += (target - temp) * a_run
            values = (1.0, setpoint[k], motor, nf * FAN_RPM, q, k_filter * q**2, K_DUCT * q**2, power, temp,
                      0.6 + 7.5 * unbalance * nf**2 + 0.6 * defect * nf, 0.25 * nf + 9.0 * defect * nf**2)  # fmt: skip
        else:
            temp += (float(room[k]) - temp) * a_stop
            values = (0.0, setpoint[k], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, temp, 0.05, 0.02)
        for name, v in zip(SERIES, (*values, slip, stretch * cord, defect, u0 + dust + unbalance_f, load + load_f),
                           strict=True):  # fmt: skip
            s[name][k] = v
        if running and life.mode is not None and damage_h > 0:
            threshold = _crossed(life.mode, s, k)
            if threshold:
                down_until = k + 1 + max(1, round(rng.uniform(*params.repair_h) * 3600 / dt_s))
                failures.append({"step": k, "mode": life.mode, "life_start_step": life_start,
                                 "onset_running_h": round(life.onset_h, 2), "running_h_since_onset": round(onset_run_h, 2),
                                 "drawn_life_h": round(life.drawn_h, 2), "restart_step": down_until,
                                 "threshold": threshold})  # fmt: skip
                life = Life(None, math.inf, 0.0, 0.0)
    for f in failures:
        f["onset_step"] = _onset_step(s["running"], f["life_start_step"], f["onset_running_h"], dt_h)
    return s, failures, done


def _crossed(mode: str, s: dict[str, np.ndarray], k: int) -> str:
    if mode == "belt_wear" and s["slip"][k] >= SLIP_FAIL:
        return f"belt slip >= {SLIP_FAIL:.0%}: belt thrown"
    if mode == "bearing_defect" and s["vib_envelope"][k] >= ENVELOPE_FAIL_G:
        return f"bearing envelope >= {ENVELOPE_FAIL_G:g} gE"
    if mode == "impeller_imbalance" and s["vib_1x"][k] >= VIB_TRIP_MM_S:
        return f"1x vibration >= {VIB_TRIP_MM_S:g} mm/s: vibration switch trip"
    if mode == "filter_clog" and s["filter_dp"][k] >= FILTER_DP_FAIL_PA:
        return f"filter differential pressure >= {FILTER_DP_FAIL_PA:g} Pa: filter bank collapsed"
    return ""


def _onset_step(running: np.ndarray, start: int, onset_h: float, dt_h: float) -> int:
    """The step at which the life's running hours reach ``onset_h``."""
    hours = np.cumsum(running[start:]) * dt_h
    return start + int(np.searchsorted(hours, onset_h - 1e-9))


SPANS = {
    "motor_speed": (0.0, 1800.0),
    "fan_speed": (0.0, 1200.0),
    "airflow": (0.0, 10000.0),
    "filter_dp": (0.0, 1000.0),
    "static_pressure": (0.0, 2000.0),
    "power": (0.0, 15.0),
    "bearing_temp": (-20.0, 150.0),
    "vib_1x": (0.0, 25.0),
    "vib_envelope": (0.0, 20.0),
}
"""Transmitter spans in the exported units (airflow L/s): a broken 4-20 mA loop reads the bottom, a spike the top."""


def instrument(truth: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What the BMS reads, in the exported units (airflow in L/s), with noise; drift and faults come later."""
    n = len(truth["running"])
    run = truth["running"] > 0
    lognormal = np.exp

    def noisy(x: np.ndarray, rel: float, absolute: float) -> np.ndarray:
        return np.asarray(x * (1 + rng.normal(0, rel, n)) + rng.normal(0, absolute, n))

    return {
        "motor_speed": np.where(run, noisy(truth["motor_speed"], 0.003, 0.0), 0.0),
        "fan_speed": np.where(run, noisy(truth["fan_speed"], 0.005, 0.0), 0.0),
        "airflow": np.clip(noisy(truth["airflow"] * 1000.0, 0.02, 15.0), 0.0, None),
        "filter_dp": np.clip(noisy(truth["filter_dp"], 0.0, 3.0), 0.0, None),
        "static_pressure": np.clip(noisy(truth["static_pressure"], 0.0, 8.0), 0.0, None),
        "power": np.where(run, noisy(truth["power"], 0.01, 0.0), 0.0),
        "bearing_temp": truth["bearing_temp"] + rng.normal(0, 0.2, n),
        "vib_1x": truth["vib_1x"] * lognormal(rng.normal(0, 0.06, n)),
        "vib_envelope": truth["vib_envelope"] * lognormal(rng.normal(0, 0.10, n)),
    }


DRIFTS = (
    ("filter_dp", "offset", 3.0, "Pa/day"),
    ("bearing_temp", "offset", 0.5, "K/day"),
    ("airflow", "span", -0.01, "1/day"),
)


def apply_drift(measured: dict[str, np.ndarray], drift: dict[str, Any], dt_s: float) -> None:
    sensor = drift["sensor"]
    n = len(measured[sensor])
    days = np.clip((np.arange(n) - drift["start_step"]) * dt_s / 86400.0, 0.0, None)
    if drift["kind"] == "offset":
        measured[sensor] = measured[sensor] + drift["rate_per_day"] * days
    else:
        measured[sensor] = measured[sensor] * (1.0 + drift["rate_per_day"] * days)


def apply_fault(measured: dict[str, np.ndarray], fault: dict[str, Any]) -> None:
    """A transmitter fault: ``stuck`` at the value it had, ``spike`` to the top of its span on a few samples,
    ``dropout`` to the bottom of its span (a broken loop reads below 4 mA)."""
    x = measured[fault["sensor"]]
    a, b = fault["start_step"], fault["end_step"]
    if fault["kind"] == "stuck":
        x[a:b] = x[a - 1] if a > 0 else x[a]
        fault["value"] = round(float(x[a]), 3)
    elif fault["kind"] == "spike":
        x[fault["steps"]] = SPANS[fault["sensor"]][1]
        fault["value"] = SPANS[fault["sensor"]][1]
    else:
        x[a:b] = SPANS[fault["sensor"]][0]
        fault["value"] = SPANS[fault["sensor"]][0]
