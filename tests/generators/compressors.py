"""A fleet of oil-injected screw air compressors on two US sites, exported as a plant's historian and CMMS write it.

Physics (different from the pumps', the motors' and the built-in simulator's on purpose: a pneumatic load/unload
control loop, a thermostat-regulated oil circuit, and three failure modes none of which is a bearing temperature
ramp):

- **Air demand**: each compressor feeds one production line; the line's demand (a fraction of the compressor's
  rated free air delivery, 450 scfm) follows shifts in local Chicago time (06-22 h: 0.45-0.80, nights 0.15-0.35,
  weekends 60 % of that) with a minute-scale AR(1); flow through the line's orifices grows with absolute pressure.
  Lines stop (0.5-6 h, about two a week), some sites stop their line over the weekend (Saturday 14:00 - Monday
  05:00), and power dips trip the compressor alone for 5-20 min (about one a week) while the line keeps drawing.
- **Load/unload control** (15 s sub-steps): the compressor loads at 100 psig and unloads at 110 psig; the receiver
  pressure integrates delivery minus demand (8-16 s per psi at rated flow), so a cycle lasts a few minutes and is
  sampled by the 1-minute historian as a flickering loaded state, current and flow. Unloaded it draws 28 % of its
  75 kW; loaded 88-100 % depending on pressure; current ``I_fl sqrt(0.3^2 + (0.954 P/P_rated)^2)``, 118 A.
- **Oil circuit**: the oil's target is ``max(thermostat 76.7 degC, ambient + 40 K (P/P_rated)(1 + 2.5 fouling))``
  while running (time constant 5-8 min), ambient when stopped (40-60 min); the discharge is the oil plus 12 K of
  compression rise when loaded (plus 15 K times the leak, hot air recirculating). A thermostat hides early fouling
  until the cooler can no longer hold the setpoint. Oil pressure = sump (discharge + 6 psi loaded, 32 psi
  unloaded) minus the filter (5 psi + 0.15 psi per running day) and the cooler (4 psi (1 + 3 fouling)).
- **Failure modes** (after an onset 12 h + exponential(mean 96 h) after each start of a life; lives short 4-14 h,
  40 %, or long 48-168 h of running):
  ``cooler_fouling`` (fouling grows exponentially with running hours; trips at discharge >= 110 degC = 230 degF),
  ``valve_leak`` (inlet valve / blow-down leak: the delivered share ``1 - leak`` falls exponentially, so the loaded
  fraction and specific power rise; fails when the receiver stays below 90 psig for 10 min after having reached the
  load setpoint since the start), ``gear_crack`` (a tooth crack grows by Paris' law, ``a = a0 / sqrt(1 - tau/T)``,
  ``tau`` the running hours weighted by torque; gearbox kurtosis shows bursts that grow more frequent and taller
  with the crack, RMS vibration rises a little; the tooth breaks at ``a = 1`` and the vibration trips at 0.45 in/s).
  Repairs take 8-48 h; the compressor restarts as new (cooler cleaned, valve rebuilt, gear set replaced, new filter).
- **Instruments**: noise; one transmitter on one healthy compressor drifts (discharge temperature +1 degF/day, oil
  pressure -0.8 psi/day, or flow span -1.2 %/day) from a day in the first third of the span: not a failure.
- **Gaps**: per-site historian outages (the site's rows absent, about one a week, 1-10 h) and per-compressor
  communication losses (cells empty, ``Run State`` empty, about one a week, 10-120 min).

Exports (``python -m tests.generators.compressors --out DIR --seed N --machines M --days D``):

- ``historian.csv``: tab-separated, wide with an asset column: one row per minute and compressor,
  ``Date Time`` in local Chicago time written ``3/1/2026 6:05:00 AM`` (no leading zeros, no offset, DST), ``Site``,
  ``Unit`` (``C301``...), ``Run State`` (LOADED/UNLOADED/STOPPED, text), then ``Disch Temp (F)``,
  ``Disch Press (psig)``, ``Oil Press (psig)``, ``Motor Amps``, ``Flow (scfm)``, ``Gbx Vib (in/s)``, ``Gbx Kurt``.
  US units throughout; a few broken rows.
- ``workorders.csv``: a Maximo-like export ``WONUM,ASSETNUM,SITEID,WORKTYPE,PROBLEMCODE,REPORTDATE,DESCRIPTION``;
  asset numbers ``100301``...; ``REPORTDATE`` local Chicago ``03-MAR-2026 14:07``; work types ``UNPL`` (unplanned
  breakdown), ``RTS`` (returned to service), ``PM``, ``OILS`` (oil sample), ``PROJ`` (to be ignored); problem codes
  ``CLR-FOUL``, ``VLV-LEAK``, ``GBX-TOOTH``.
- ``plant.toml`` (machine type ``screw_compressor`` in the plant's own units, machines ``JOL-C301``...) and
  ``truth.json`` (UTC).

>>> fleet = generate_fleet(seed=3, machines=3, days=1)
>>> [c.machine_id for c in fleet.compressors], len(fleet.time)
(['JOL-C301', 'JOL-C302', 'MKE-C303'], 1440)
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.generators._common import dst_transitions, episodes, parse_start, toml_key, toml_value, utc_iso, write_json

CHICAGO = "America/Chicago"
MODES = ("cooler_fouling", "valve_leak", "gear_crack")
PROBLEM_CODES = {"cooler_fouling": "CLR-FOUL", "valve_leak": "VLV-LEAK", "gear_crack": "GBX-TOOTH"}
Q_RATED_SCFM = 450.0
P_RATED_KW = 75.0
I_FULL_LOAD = 118.0
P_LOAD_PSIG = 100.0
P_UNLOAD_PSIG = 110.0
P_ATM = 14.7
UNLOADED_POWER = 0.28
THERMOSTAT_C = 76.7
"""The oil thermostat (170 degF): below it the cooler is bypassed."""
DT_COOL_K = 40.0
COMPRESSION_RISE_K = 12.0
DISCHARGE_TRIP_C = 110.0
"""High discharge temperature shutdown (230 degF)."""
LOW_PRESSURE_PSIG = 90.0
LOW_PRESSURE_MIN = 10
"""The unit cannot hold the line: below 90 psig for 10 min (after having reached the load setpoint)."""
VIB_TRIP_IN_S = 0.45
VIB_BROKEN_IN_S = 0.62
"""The vibration switch's trip, and the RMS a broken tooth gives."""
CRACK_A0 = 0.1
SUBSTEP_S = 15.0

SITES = (("joliet", "Joliet body and paint", "JOL"), ("milwaukee", "Milwaukee machining", "MKE"))
"""(site id, name, prefix of machine ids and the CMMS's SITEID)."""
LINES = (("joliet-body", "joliet", "Body shop air"), ("joliet-paint", "joliet", "Paint shop air"),
         ("milwaukee-machining", "milwaukee", "Machining air"))  # fmt: skip
SITE_ROOM_C = {"joliet": 26.0, "milwaukee": 22.0}
"""Compressor room air at each site (mean; daily swing and weather added)."""

# (historian column, sensor, unit, decimals)
COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("Disch Temp (F)", "discharge_temp", "degF", 1),
    ("Disch Press (psig)", "discharge_pressure", "psig", 1),
    ("Oil Press (psig)", "oil_pressure", "psig", 1),
    ("Motor Amps", "current", "A", 1),
    ("Flow (scfm)", "flow", "scfm", 0),
    ("Gbx Vib (in/s)", "vibration", "in/s", 4),
    ("Gbx Kurt", "kurtosis", "", 2),
)
RUN_STATES = ("STOPPED", "UNLOADED", "LOADED")


def c_to_f(c: Any) -> Any:
    return c * 9.0 / 5.0 + 32.0


@dataclass(frozen=True)
class CompressorParams:
    healthy_share: float = 0.3
    """Share of compressors that never fail (with 3 or more, at least one is healthy and one is not)."""
    mean_onset_h: float = 96.0
    short_life_share: float = 0.4
    short_life_h: tuple[float, float] = (4.0, 14.0)
    long_life_h: tuple[float, float] = (48.0, 168.0)
    repair_h: tuple[float, float] = (8.0, 48.0)
    weekend_off_share: float = 0.5
    """Share of lines that stop from Saturday 14:00 to Monday 05:00 (local)."""
    line_stops_per_week: float = 2.0
    dips_per_week: float = 1.0
    gaps_per_week: float = 1.0
    """Per site: historian outages, 1-10 h (rows absent)."""
    comm_losses_per_week: float = 1.0
    """Per compressor: cells empty for 10-120 min."""
    drift: bool = True


@dataclass
class Compressor:
    tag: str
    """Historian unit, e.g. ``C301``."""
    asset: str
    """CMMS asset number, e.g. ``100301``."""
    machine_id: str
    site: str
    line: str
    truth: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]
    failures: list[dict[str, Any]]
    healthy: bool
    comm_losses: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class CompressorFleet:
    seed: int
    time: np.ndarray
    interval_s: float
    compressors: list[Compressor]
    site_gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)
    dips: list[dict[str, Any]] = field(default_factory=list)

    def export_rng(self, purpose: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(1, purpose))))


def _local(time: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(time, dtype="int64"), unit="s", utc=True).tz_convert(CHICAGO)


def room_temperature(time: np.ndarray, rng: np.random.Generator, mean_c: float) -> np.ndarray:
    """Compressor room air: the site's mean, +-4 K daily (peak 15:00 local), weather as an hourly AR(1)."""
    local = _local(time)
    hours = np.asarray(local.hour + local.minute / 60.0, dtype=float)
    n_hours = int((time[-1] - time[0]) // 3600) + 2
    weather = np.zeros(n_hours)
    for i in range(1, n_hours):
        weather[i] = 0.97 * weather[i - 1] + rng.normal(0.0, 0.5)
    hour_index = ((time - time[0]) // 3600).astype(int)
    frac = ((time - time[0]) % 3600) / 3600.0
    smooth = weather[hour_index] * (1 - frac) + weather[hour_index + 1] * frac
    return np.asarray(mean_c + 4.0 * np.sin(2 * np.pi * (hours - 9.0) / 24.0) + smooth)


def line_demand(
    time: np.ndarray, rng: np.random.Generator, weekend_off: bool, stops_per_week: float
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The line's air demand as a fraction of rated delivery at 100 psig; 0 while the line is stopped."""
    local = _local(time)
    hours = np.asarray(local.hour + local.minute / 60.0, dtype=float)
    weekdays = np.asarray(local.day_of_week, dtype=int)
    day = (hours >= 6) & (hours < 22)
    base = np.where(day, rng.uniform(0.45, 0.80), rng.uniform(0.15, 0.35))
    base = np.where(weekdays >= 5, base * 0.6, base)
    noise = np.zeros(len(time))
    for k in range(1, len(time)):
        noise[k] = 0.95 * noise[k - 1] + rng.normal(0.0, 0.02)
    demand = np.clip(base + noise, 0.08, 0.92)
    stops: list[tuple[int, int]] = []
    if weekend_off:
        off = ((weekdays == 5) & (hours >= 14)) | (weekdays == 6) | ((weekdays == 0) & (hours < 5))
        demand[off] = 0.0
    dt_s = float(time[1] - time[0]) if len(time) > 1 else 60.0
    for a, b in episodes(rng, len(time), dt_s, stops_per_week, (1800.0, 6 * 3600.0)):
        demand[a:b] = 0.0
        stops.append((a, b))
    return np.asarray(demand), stops


@dataclass
class _Life:
    mode: str | None
    onset: int
    rate: float
    """Per running hour: the exponential rate (fouling, leak) or 1/T (crack)."""


def simulate_compressor(
    demand: np.ndarray,
    dips: np.ndarray,
    room: np.ndarray,
    dt_s: float,
    rng: np.random.Generator,
    params: CompressorParams,
    healthy: bool,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Step one compressor (``dips``: steps where a power dip holds it off); noise-free series in SI-ish units
    (degC, psig, scfm, A, in/s) and its failures (step, mode, onset step, restart step, threshold)."""
    n = len(demand)
    names = ("running", "loaded", "loaded_fraction", "pressure", "discharge_temp", "oil_pressure", "power", "current",
             "flow", "vibration", "kurtosis", "fouling", "leak", "crack", "filter_dp")  # fmt: skip
    series = {name: np.zeros(n) for name in names}
    capacity_s = rng.uniform(8.0, 16.0)
    tau_run, tau_stop = rng.uniform(5, 8) * 60, rng.uniform(40, 60) * 60
    vib0 = rng.uniform(0.07, 0.11)
    subs = max(1, round(dt_s / SUBSTEP_S))
    h = dt_s / subs
    a_run, a_stop, a_rise = 1 - math.exp(-h / tau_run), 1 - math.exp(-h / tau_stop), 1 - math.exp(-h / 60.0)
    dt_h = dt_s / 3600
    failures: list[dict[str, Any]] = []

    def new_life(start: int) -> _Life:
        if healthy:
            return _Life(None, n, 0.0)
        mode = MODES[int(rng.integers(len(MODES)))]
        onset = start + round((12.0 + rng.exponential(params.mean_onset_h)) * 3600 / dt_s)
        span = params.short_life_h if rng.random() < params.short_life_share else params.long_life_h
        life_h = rng.uniform(*span)
        if mode == "cooler_fouling":
            return _Life(mode, onset, math.log(0.5 / 0.02) / life_h)
        if mode == "valve_leak":
            return _Life(mode, onset, math.log(0.3 / 0.02) / life_h)
        return _Life(mode, onset, 1.0 / life_h)

    life = new_life(0)
    worn_h = 0.0
    fouling = leak = crack = 0.0
    pressure, oil, rise, loaded = rng.uniform(60, 100), float(room[0]), 0.0, 1
    filter_dp, armed, low_count, was_running = 5.0, False, 0, False
    repair_until = -1
    for k in range(n):
        if k == repair_until:
            life = new_life(k)
            worn_h, fouling, leak, crack, filter_dp = 0.0, 0.0, 0.0, 0.0, 5.0
        line_on = demand[k] > 0.0
        running = line_on and k >= repair_until and not dips[k]
        if running and not was_running:
            loaded, armed, low_count = 1, False, 0
        d = float(demand[k]) if line_on else 0.01  # a stopped line still leaks
        amb = float(room[k])
        loaded_s = 0.0
        power = 0.0
        for _ in range(subs):
            if running:
                if pressure >= P_UNLOAD_PSIG:
                    loaded = 0
                elif pressure <= P_LOAD_PSIG:
                    loaded = 1
            else:
                loaded = 0
            delivered = (1.0 - leak) * loaded if running else 0.0
            drawn = d * (pressure + P_ATM) / (P_LOAD_PSIG + P_ATM)
            pressure = max(0.0, pressure + (delivered - drawn) * h / capacity_s)
            if running:
                share = (
                    loaded * (0.88 + 0.12 * (pressure + P_ATM) / (P_UNLOAD_PSIG + P_ATM))
                    + (1 - loaded) * UNLOADED_POWER
                )
                power = P_RATED_KW * share
                target = max(THERMOSTAT_C, amb + DT_COOL_K * share * (1.0 + 2.5 * fouling))
                oil += (target - oil) * a_run
                rise += ((COMPRESSION_RISE_K + 15.0 * leak) * loaded - rise) * a_rise
            else:
                power = 0.0
                oil += (amb - oil) * a_stop
                rise += (0.0 - rise) * a_rise
            loaded_s += loaded * h
        if running and pressure >= P_LOAD_PSIG:
            armed = True
        lf = loaded_s / dt_s
        if running:
            filter_dp += 0.15 * dt_h / 24.0
        if life.mode is not None and k >= life.onset and running:
            worn_h += dt_h * ((0.3 + 0.7 * lf) if life.mode == "gear_crack" else 1.0)
            if life.mode == "cooler_fouling":
                fouling = min(3.0, 0.02 * math.exp(life.rate * worn_h))
            elif life.mode == "valve_leak":
                leak = min(1.0, 0.02 * math.exp(life.rate * worn_h))
            else:
                crack = CRACK_A0 / math.sqrt(max(1e-9, 1.0 - life.rate * worn_h))
        discharge = oil + rise
        sump = (pressure + 6.0 if loaded else 32.0) if running else 0.0
        oil_p = max(0.0, sump - filter_dp - 4.0 * (1.0 + 3.0 * fouling)) if running else 0.0
        current = I_FULL_LOAD * math.sqrt(0.3**2 + (0.954 * power / P_RATED_KW) ** 2) if running else 0.0
        flow = Q_RATED_SCFM * (1.0 - leak) * loaded if running else 0.0
        c = min(crack, 1.0)
        vib = vib0 * (0.55 + 0.45 * loaded) + 0.1 * c**2 if running else 0.003
        kurt = 3.0 + 1.5 * c**2
        if running and c > 0 and rng.random() < min(0.9, 1.5 * c**2) * (1.0 if loaded else 0.3):
            kurt = 3.0 + 60.0 * c**3 * rng.uniform(0.5, 1.5)
        threshold = ""
        if running and life.mode is not None and k >= repair_until:
            low_count = low_count + 1 if armed and pressure < LOW_PRESSURE_PSIG else 0
            if discharge >= DISCHARGE_TRIP_C:
                threshold = f"discharge temperature >= {DISCHARGE_TRIP_C:g} degC"
            elif low_count >= LOW_PRESSURE_MIN:
                threshold = f"pressure < {LOW_PRESSURE_PSIG:g} psig for {LOW_PRESSURE_MIN} min"
            elif crack >= 1.0:
                threshold = f"tooth broken: vibration {VIB_BROKEN_IN_S:g} in/s >= {VIB_TRIP_IN_S:g} in/s"
                vib = VIB_BROKEN_IN_S
        for name, value in (("running", float(running)), ("loaded", float(loaded)), ("loaded_fraction", lf),
                            ("pressure", pressure), ("discharge_temp", discharge), ("oil_pressure", oil_p),
                            ("power", power), ("current", current), ("flow", flow), ("vibration", vib),
                            ("kurtosis", kurt), ("fouling", fouling), ("leak", leak), ("crack", crack),
                            ("filter_dp", filter_dp)):  # fmt: skip
            series[name][k] = value
        was_running = running
        if threshold and life.mode is not None:
            repair_until = k + 1 + max(1, round(rng.uniform(*params.repair_h) * 3600 / dt_s))
            failures.append({"step": k, "mode": life.mode, "onset_step": life.onset, "restart_step": repair_until,
                             "threshold": threshold, "worn_h": round(worn_h, 2)})  # fmt: skip
            was_running = False
    return series, failures


def instrument(
    truth: dict[str, np.ndarray], rng: np.random.Generator, drift: dict[str, Any] | None, dt_s: float
) -> dict[str, np.ndarray]:
    """What the transmitters report, in the plant's units (degF, psig, A, scfm, in/s)."""
    n = len(truth["pressure"])
    running = truth["running"] > 0
    out = {
        "discharge_temp": c_to_f(truth["discharge_temp"]) + rng.normal(0, 0.3, n),
        "discharge_pressure": np.clip(truth["pressure"] + rng.normal(0, 0.3, n), 0.0, None),
        "oil_pressure": np.clip(truth["oil_pressure"] + rng.normal(0, 0.4, n), 0.0, None),
        "current": np.where(running, truth["current"] * (1 + rng.normal(0, 0.01, n)), 0.0),
        "flow": np.where(truth["flow"] > 0, truth["flow"] * (1 + rng.normal(0, 0.015, n)) + rng.normal(0, 2, n), 0.0),
        "vibration": truth["vibration"] * np.exp(rng.normal(0, 0.07, n)),
        "kurtosis": np.where(running, truth["kurtosis"] * (1 + rng.normal(0, 0.04, n)), 3.0 + rng.normal(0, 0.1, n)),
    }
    if drift is not None:
        days = np.clip((np.arange(n) - drift["start_step"]) * dt_s / 86400.0, 0.0, None)
        sensor = drift["sensor"]
        if drift["kind"] == "offset":
            out[sensor] = out[sensor] + drift["rate_per_day"] * days
        else:
            out[sensor] = out[sensor] * (1.0 + drift["rate_per_day"] * days)
    return out


DRIFTS = (
    ("discharge_temp", "offset", 1.0, "degF/day"),
    ("oil_pressure", "offset", -0.8, "psi/day"),
    ("flow", "span", -0.012, "1/day"),
)


def generate_fleet(
    seed: int,
    machines: int = 6,
    days: float = 14.0,
    start: str = "2026-03-01",
    interval_s: float = 60.0,
    params: CompressorParams = CompressorParams(),
) -> CompressorFleet:
    """``machines`` compressors for ``days`` from ``start`` (local Chicago date), seeded by ``seed``."""
    streams = np.random.default_rng(seed).spawn(machines + 2)
    fleet_rng = streams[0]
    t0 = parse_start(start, CHICAGO)
    n = round(days * 86400 / interval_s)
    time = t0 + np.arange(n, dtype="int64") * int(interval_s)
    rooms = {site: room_temperature(time, fleet_rng, mean) for site, mean in SITE_ROOM_C.items()}
    healthy = fleet_rng.random(machines) < params.healthy_share
    if machines >= 2 and healthy.all() and params.healthy_share < 1.0:
        healthy[0] = False
    if machines >= 3 and not healthy.any() and params.healthy_share > 0.0:
        healthy[-1] = True
    drift_machine = int(fleet_rng.choice(np.flatnonzero(healthy))) if params.drift and healthy.any() else -1
    weekend_off = {line: bool(fleet_rng.random() < params.weekend_off_share) for line, _, _ in LINES}
    fleet = CompressorFleet(seed, time, interval_s, [])
    for i in range(machines):
        rng = streams[i + 2]
        line, site, _ = LINES[i % len(LINES)]
        prefix = next(p for s, _, p in SITES if s == site)
        demand, _ = line_demand(time, rng, weekend_off[line], params.line_stops_per_week)
        dips = np.zeros(n, dtype=bool)
        for a, b in episodes(rng, n, interval_s, params.dips_per_week, (300.0, 1200.0)):
            if demand[a] > 0:
                dips[a:b] = True
                fleet.dips.append({"machine": f"{prefix}-C{301 + i}", "start_step": a, "end_step": b})
        room = rooms[site] + rng.uniform(-1.0, 1.0)
        truth, failures = simulate_compressor(demand, dips, room, interval_s, rng, params, bool(healthy[i]))
        drift = None
        if i == drift_machine:
            sensor, kind, rate, unit = DRIFTS[int(rng.integers(len(DRIFTS)))]
            drift = {"sensor": sensor, "kind": kind, "rate_per_day": rate, "unit": unit,
                     "start_step": int(rng.integers(0, max(1, n // 3)))}  # fmt: skip
        tag = f"C{301 + i}"
        comp = Compressor(tag, f"100{301 + i}", f"{prefix}-{tag}", site, line, truth,
                          instrument(truth, rng, drift, interval_s), failures, bool(healthy[i]))  # fmt: skip
        comp.comm_losses = episodes(rng, n, interval_s, params.comm_losses_per_week, (600.0, 7200.0))
        if drift is not None:
            fleet.drift.append({"machine": comp.machine_id, **drift})
        fleet.compressors.append(comp)
    fleet.site_gaps = {
        site: episodes(fleet_rng, n, interval_s, params.gaps_per_week, (3600.0, 10 * 3600.0)) for site, _, _ in SITES
    }
    return fleet


# ---------------------------------------------------------------- exports

HEADER = ["Date Time", "Site", "Unit", "Run State", *(c for c, *_ in COLUMNS)]
BROKEN_HISTORIAN = ("bad_timestamp", "unknown_unit", "value_text", "short_row")
BROKEN_WORKORDERS = ("unknown_asset", "bad_date", "unknown_type")


def us_local_strings(time: np.ndarray) -> list[str]:
    """Epoch seconds -> ``3/1/2026 6:05:00 AM`` in Chicago local time (no leading zeros, as a US historian writes)."""
    local = _local(time)
    out = []
    for mo, d, y, hh, mi, s in zip(local.month, local.day, local.year, local.hour, local.minute, local.second,
                                   strict=True):  # fmt: skip
        h12 = hh % 12 or 12
        out.append(f"{mo}/{d}/{y} {h12}:{mi:02d}:{s:02d} {'AM' if hh < 12 else 'PM'}")
    return out


def write_historian(fleet: CompressorFleet, path: Path) -> list[dict[str, Any]]:
    """One row per minute and compressor, tab-separated; returns the broken rows (header = line 1)."""
    n = len(fleet.time)
    stamps = us_local_strings(fleet.time)
    site_off = {site: np.zeros(n, dtype=bool) for site, _, _ in SITES}
    for site, gaps in fleet.site_gaps.items():
        for a, b in gaps:
            site_off[site][a:b] = True
    cells = []
    for c in fleet.compressors:
        lost = np.zeros(n, dtype=bool)
        for a, b in c.comm_losses:
            lost[a:b] = True
        state = (c.truth["running"] + c.truth["loaded"]).astype(int)
        texts = [[f"{v:.{dec}f}" for v in c.measured[sensor].tolist()] for _, sensor, _, dec in COLUMNS]
        cells.append((c, lost, state, texts))
    rng = fleet.export_rng(0)
    candidates = [(k, j) for k in range(60, n, max(1, n // 200)) for j, cell in enumerate(cells)
                  if not site_off[cell[0].site][k] and not cell[1][k]]  # fmt: skip
    picks = rng.choice(len(candidates), size=min(len(BROKEN_HISTORIAN), len(candidates)), replace=False)
    broken_at = {candidates[int(p)]: kind for p, kind in zip(sorted(picks), BROKEN_HISTORIAN, strict=False)}
    broken: list[dict[str, Any]] = []
    line = 1
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(HEADER) + "\n")
        for k in range(n):
            for j, (c, lost, state, texts) in enumerate(cells):
                if site_off[c.site][k]:
                    continue
                if lost[k]:
                    row = [stamps[k], c.site.upper(), c.tag, "", *([""] * len(COLUMNS))]
                else:
                    row = [stamps[k], c.site.upper(), c.tag, RUN_STATES[state[k]], *(t[k] for t in texts)]
                kind = broken_at.get((k, j))
                line += 1
                if kind is not None:
                    row = _break_row(row, kind)
                    broken.append({"line": line, "utc": utc_iso(fleet.time[k]), "kind": kind, "unit": c.tag})
                f.write("\t".join(row) + "\n")
    return broken


def _break_row(row: list[str], kind: str) -> list[str]:
    if kind == "bad_timestamp":
        return ["13/32/2026 25:61:00 PM", *row[1:]]
    if kind == "unknown_unit":
        return [row[0], row[1], "C999", *row[3:]]
    if kind == "value_text":
        return [*row[:4], "I/O Timeout", *row[5:]]
    return row[:-2]  # the last two cells (vibration, kurtosis) lost: read as empty, nothing to refuse


def cmms_time(t: int) -> str:
    local = _local(np.array([t]))[0]
    return f"{local.day:02d}-{local.strftime('%b').upper()}-{local.year} {local.hour:02d}:{local.minute:02d}"


def write_workorders(fleet: CompressorFleet, path: Path) -> list[dict[str, Any]]:
    rng = fleet.export_rng(1)
    t0, t_end, dt_s = int(fleet.time[0]), int(fleet.time[-1]), int(fleet.interval_s)
    entries: list[list[Any]] = []  # asset, site, type, epoch s, code, description
    failure_text = {"CLR-FOUL": "Unit shut down on high discharge temp 230F", "VLV-LEAK": "Unit cannot hold header pressure, running loaded",
                    "GBX-TOOTH": "Loud bang from gearbox, unit tripped on vibration"}  # fmt: skip
    repair_text = {"CLR-FOUL": "Oil cooler cleaned, oil and filter changed", "VLV-LEAK": "Inlet valve and blow-down valve rebuilt",
                   "GBX-TOOTH": "Gear set replaced, bearings checked"}  # fmt: skip
    for c in fleet.compressors:
        site = next(p for s, _, p in SITES if s == c.site)
        for f in c.failures:
            code = PROBLEM_CODES[f["mode"]]
            # Written to the minute: the report time is the trip's minute plus 1-30 min, never before the trip.
            entries.append([c.asset, site, "UNPL", int(fleet.time[f["step"]]) + int(rng.integers(1, 31)) * 60, code,
                            failure_text[code]])  # fmt: skip
            restart = t0 + f["restart_step"] * dt_s
            if restart <= t_end:
                entries.append([c.asset, site, "RTS", restart, code, repair_text[code]])
        t = t0 + int(rng.uniform(1, 7) * 86400) // 60 * 60
        while t <= t_end:
            entries.append([c.asset, site, "PM", t, "", "Quarterly PM: check belts, drain, separator dP"])
            if rng.random() < 0.5:
                entries.append([c.asset, site, "OILS", t + 1800, "", "Oil sample sent to lab"])
            t += int(rng.uniform(6, 10) * 86400) // 60 * 60
        entries.append([c.asset, site, "PROJ", t0 + 7200, "", "Asset tagging project"])
    for kind in BROKEN_WORKORDERS:
        c = fleet.compressors[int(rng.integers(len(fleet.compressors)))]
        entries.append([c.asset, "JOL" if c.site == "joliet" else "MKE", "PM", t0 + int(rng.integers(1, max(2, (t_end - t0) // 60))) * 60,
                        "", f"BROKEN:{kind}"])  # fmt: skip
    entries.sort(key=lambda e: (e[3], e[0]))
    broken, rows = [], []
    for i, (asset, site, wtype, t, code, text) in enumerate(entries):
        row = [f"WO{48100 + i}", asset, site, wtype, code, cmms_time(t), text]
        kind = text.removeprefix("BROKEN:")
        if kind in BROKEN_WORKORDERS:
            row[6] = "Quarterly PM: check belts, drain, separator dP"
            if kind == "unknown_asset":
                row[1] = "100999"
            elif kind == "bad_date":
                row[5] = "31-FEB-2026 10:00"
            else:
                row[3] = "XX"
            broken.append({"line": i + 2, "utc": utc_iso(t), "kind": kind, "wo": row[0]})
        rows.append(row)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["WONUM", "ASSETNUM", "SITEID", "WORKTYPE", "PROBLEMCODE", "REPORTDATE", "DESCRIPTION"])
        writer.writerows(rows)
    return broken


def plant_toml(fleet: CompressorFleet, out: Path) -> str:
    """The plant file a user writes for these exports (units as the plant has them: Vigil needs no conversion)."""
    sites = "".join(f'\n[[sites]]\nid = "{s}"\nname = "{name}"\n' for s, name, _ in SITES)
    lines = "".join(f'\n[[lines]]\nid = "{i}"\nsite = "{s}"\nname = "{name}"\n' for i, s, name in LINES)
    machines = "".join(
        f'\n[[machines]]\nid = "{c.machine_id}"\ntype = "screw_compressor"\nline = "{c.line}"\n'
        for c in fleet.compressors
    )
    sensors = "".join(f"{toml_key(column)} = {toml_value(sensor)}\n" for column, sensor, _, _ in COLUMNS)
    return f"""# Generated by tests.generators.compressors (seed {fleet.seed}): screw compressors on two sites, read from a
# tab-separated historian export with an asset column ([[sources.file]] "historian") and a Maximo-like work-order
# export ([[sources.maintenance]] "maximo"). Sensors are kept in the plant's own units (degF, psig, in/s, scfm).
plant = "Generated compressed-air fleet (seed {fleet.seed})"
{sites}{lines}
[machine_types.screw_compressor]
description = "Oil-injected rotary screw compressor, 75 kW, 450 scfm, load/unload control 100/110 psig, geared"
running_sensor = "current"
off_below = 10.0
derived = [{{ name = "amps_per_scfm", op = "ratio", a = "current", b = "flow" }}]
[machine_types.screw_compressor.sensors]
discharge_temp = {{ unit = "degF", range = {{ min = -40, max = 350 }}, limits = {{ high = {c_to_f(DISCHARGE_TRIP_C):g} }}, key = true }}
discharge_pressure = {{ unit = "psig", range = {{ min = 0, max = 150 }}, limits = {{ low = {LOW_PRESSURE_PSIG:g} }}, key = true }}
oil_pressure = {{ unit = "psig", range = {{ min = 0, max = 150 }} }}
current = {{ unit = "A", range = {{ min = 0, max = 300 }} }}
flow = {{ unit = "scfm", range = {{ min = 0, max = 600 }}, key = true }}
vibration = {{ unit = "in/s", range = {{ min = 0, max = 2 }}, limits = {{ high = {VIB_TRIP_IN_S:g} }}, key = true }}
kurtosis = {{ unit = "1", range = {{ min = 0, max = 100 }}, key = true }}
[machine_types.screw_compressor.what_to_check]
discharge_temp = ["Oil cooler fins and fan (fouling)", "Thermostatic valve", "Oil level and oil condition"]
discharge_pressure = ["Inlet valve and blow-down valve (leaking)", "Minimum pressure / check valve", "Demand on the line"]
flow = ["Inlet valve (not opening fully)", "Inlet filter"]
vibration = ["Gearbox: gear teeth and bearings", "Coupling alignment"]
kurtosis = ["Gearbox: a cracked or pitted gear tooth (impacts once per revolution)"]
{machines}
[[sources.file]]
name = "historian"
path = {toml_value(str(out / "historian.csv"))}
delimiter = "\\t"
[sources.file.mapping]
layout = "wide"
time = {{ column = "Date Time", format = "%m/%d/%Y %I:%M:%S %p", zone = "{CHICAGO}" }}
machine = "Unit"
machines = {toml_value({c.tag: c.machine_id for c in fleet.compressors})}
ignore = ["Site", "Run State"]
[sources.file.mapping.sensors]
{sensors}
[[sources.maintenance]]
name = "maximo"
path = {toml_value(str(out / "workorders.csv"))}
delimiter = ","
[sources.maintenance.mapping]
machine = "ASSETNUM"
time = {{ column = "REPORTDATE", format = "%d-%b-%Y %H:%M", zone = "{CHICAGO}" }}
kind = "WORKTYPE"
kinds = {{ unpl = "failure", rts = "repair", pm = "inspection", oils = "inspection", proj = "ignore" }}
failure_mode = "PROBLEMCODE"
work_order = "WONUM"
text = "DESCRIPTION"
machines = {toml_value({c.asset: c.machine_id for c in fleet.compressors})}

[windows]
kind = "tumbling"
size_s = 600
grace_s = 60

[models]
horizon_s = 172800     # 48 h
min_lead_s = 14400     # 4 h
threshold = 0.5
"""


def ground_truth(fleet: CompressorFleet, broken: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    t, dt_s = fleet.time, int(fleet.interval_s)
    end = int(t[-1]) + dt_s

    def at(step: int) -> str:
        return utc_iso(int(t[0]) + step * dt_s)

    failures, repairs = [], []
    for c in fleet.compressors:
        for f in c.failures:
            failures.append({"machine": c.machine_id, "unit": c.tag, "asset": c.asset, "time": at(f["step"]),
                             "mode": f["mode"], "code": PROBLEM_CODES[f["mode"]], "onset": at(f["onset_step"]),
                             "running_h_since_onset": f["worn_h"], "threshold": f["threshold"]})  # fmt: skip
            if int(t[0]) + f["restart_step"] * dt_s < end:
                repairs.append({"machine": c.machine_id, "time": at(f["restart_step"]), "mode": f["mode"]})
    return {
        "generator": "tests.generators.compressors",
        "seed": fleet.seed,
        "start": utc_iso(t[0]),
        "end": utc_iso(end),
        "interval_s": dt_s,
        "machines": [c.machine_id for c in fleet.compressors],
        "healthy": [c.machine_id for c in fleet.compressors if c.healthy],
        "limits": {
            "discharge_temp_high_degF": c_to_f(DISCHARGE_TRIP_C),
            "discharge_pressure_low_psig": LOW_PRESSURE_PSIG,
            "vibration_high_in_s": VIB_TRIP_IN_S,
        },
        "failures": sorted(failures, key=lambda f: (f["time"], f["machine"])),
        "repairs": sorted(repairs, key=lambda r: (r["time"], r["machine"])),
        "drift": [
            {k: v for k, v in d.items() if k != "start_step"} | {"start": at(d["start_step"])} for d in fleet.drift
        ],
        "power_dips": [
            {"machine": d["machine"], "start": at(d["start_step"]), "end": at(d["end_step"])} for d in fleet.dips
        ],
        "gaps": [
            {"scope": site, "start": at(a), "end": at(b)} for site, gaps in fleet.site_gaps.items() for a, b in gaps
        ]
        + [{"scope": c.machine_id, "start": at(a), "end": at(b)} for c in fleet.compressors for a, b in c.comm_losses],
        "dst_transitions": dst_transitions(int(t[0]), end, CHICAGO),
        "broken_rows": broken,
    }


def write_exports(fleet: CompressorFleet, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    broken = {"historian.csv": write_historian(fleet, out / "historian.csv"),
              "workorders.csv": write_workorders(fleet, out / "workorders.csv")}  # fmt: skip
    (out / "plant.toml").write_text(plant_toml(fleet, out), encoding="utf-8")
    truth = ground_truth(fleet, broken)
    write_json(out / "truth.json", truth)
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.generators.compressors", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--machines", type=int, default=6)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--start", default="2026-03-01", help="local Chicago date or date-time")
    parser.add_argument("--interval-s", type=float, default=60.0)
    parser.add_argument("--healthy-share", type=float, default=CompressorParams.healthy_share)
    args = parser.parse_args(argv)
    params = CompressorParams(healthy_share=args.healthy_share)
    fleet = generate_fleet(args.seed, args.machines, args.days, args.start, args.interval_s, params)
    truth = write_exports(fleet, args.out)
    print(f"wrote {args.out}: {len(fleet.compressors)} compressors, {len(fleet.time)} steps, {len(truth['failures'])} failures, {len(truth['repairs'])} repairs")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
