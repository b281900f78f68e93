"""A fleet of belt-driven AHU supply fans on a Sydney hospital campus, exported as its BMS and its CMMS write them.

The physics is in :mod:`tests.generators.fan_physics` (fan laws against a duct system and a loading filter, a VFD
holding an airflow set-point, a slipping and stretching V-belt, a bearing heat balance and defect envelope, dust
imbalance; four failure modes). This module adds the plant around it: schedules, preventive maintenance, random
stops, outages, instrument drift and transmitter faults, and the exports.

- **Schedules** (local Sydney time): clinical AHUs run 24/7 (06-22 h at 85-100 % of design airflow, nights at
  55-70 %), office AHUs run weekdays 06-19 h only (off at night and at weekends: a cold start every morning), lab
  AHUs run 24/7 at 80-95 % (70 % of that at weekends); the set-point varies +-3 % from day to day.
- **Preventive maintenance** (30-60 min planned stops, weekday mornings): belt re-tension every 7-14 days, filter
  change with blade cleaning every 10-20 days; weekly walk-round inspections (no stop).
- **Instruments**: noise; one slow drift on one healthy fan (filter dP +3 Pa/day, bearing +0.5 K/day or airflow span
  -1 %/day) that is not a failure; a few transmitter faults (``stuck`` 2-8 h, ``spike`` 1-3 samples at the top of
  the span, ``dropout`` 20 min - 3 h at the bottom of the span: a broken 4-20 mA loop), on any fan.
- **Gaps**: historian outages (every AHU's rows absent, about one a week, 1-8 h) and per-AHU BACnet communication
  losses (that AHU's rows absent, about one a week, 10-90 min).

Exports (``python -m tests.generators.fans --out DIR --seed N --machines M --days D``):

- ``historian.csv``: a BMS trend export in the long layout ``Timestamp,Point,Value,Units``, one row per minute and
  point; ``Timestamp`` local Sydney ``01/03/2026 06:05`` (day first, no seconds, no offset, DST); points
  ``RPA:AHU-01.SF_BRG_T`` etc., read by a ``tag_pattern`` (no per-point mapping lines), airflow in L/s converted
  to m3/s by ``conversions``. Broken rows: a 31 February, a ``#N/A`` value, a chiller point no pattern matches and
  an AHU the plant file does not know.
- ``workorders.csv``: a CMMS notification export ``Notification,FunctionalLocation,NotifType,CreatedAt,DamageCode,
  ShortText``; ``CreatedAt`` ISO 8601 with the local offset (``2026-03-03T14:07:00+11:00``); types ``BRKDN``
  (breakdown, at the failure + 1-30 min), ``RTS`` (returned to service), ``PM-BLT`` (belt re-tension),
  ``PM-FLT`` (filter change), ``INSP`` (walk-round), ``ADM`` (to be ignored); damage codes ``BELT``, ``BRG``,
  ``IMP``, ``FILT``. Broken rows: an unknown functional location, a 30 February, a type ``ZZ``.
- ``plant.toml`` (machine type ``belt_fan``, machines ``RPA-AHU-01``...) and ``truth.json`` (UTC).

>>> fleet = generate_fleet(seed=3, machines=3, days=1)
>>> [f.machine_id for f in fleet.fans], [f.schedule for f in fleet.fans], len(fleet.time)
(['RPA-AHU-01', 'RPA-AHU-02', 'RPA-AHU-03'], ['clinical', 'office', 'lab'], 1440)
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.generators import fan_physics as fp
from tests.generators._common import dst_transitions, episodes, parse_start, toml_value, utc_iso, write_json
from tests.generators.fan_physics import FanParams

SYDNEY = "Australia/Sydney"
DAMAGE_CODES = {"belt_wear": "BELT", "bearing_defect": "BRG", "impeller_imbalance": "IMP", "filter_clog": "FILT"}
LINES = (("rpa-clinical", "Clinical building AHUs", "clinical"), ("rpa-offices", "Office tower AHUs", "office"),
         ("rpa-labs", "Research labs AHUs", "lab"))  # fmt: skip
"""(line id, name, schedule); fan i is on line i % 3."""

# (BMS point suffix, sensor, exported unit, decimals)
POINTS: tuple[tuple[str, str, str, int], ...] = (
    ("SF_MTR_SPD", "motor_speed", "rpm", 0),
    ("SF_SPD", "fan_speed", "rpm", 0),
    ("SA_FLOW", "airflow", "L/s", 0),
    ("FLT_DP", "filter_dp", "Pa", 0),
    ("SA_SP", "static_pressure", "Pa", 0),
    ("SF_KW", "power", "kW", 2),
    ("SF_BRG_T", "bearing_temp", "degC", 1),
    ("SF_VIB_1X", "vib_1x", "mm/s", 2),
    ("SF_VIB_ENV", "vib_envelope", "gE", 2),
)
FAULT_SENSORS = ("bearing_temp", "vib_1x", "vib_envelope", "filter_dp", "airflow", "static_pressure")
FAULT_KINDS = ("stuck", "spike", "dropout")


@dataclass
class Fan:
    tag: str
    """BMS device, e.g. ``AHU-01``."""
    machine_id: str
    line: str
    schedule: str
    truth: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]
    failures: list[dict[str, Any]]
    preventive: list[dict[str, Any]]
    healthy: bool
    comm_losses: list[tuple[int, int]] = field(default_factory=list)
    stops: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class FanFleet:
    seed: int
    time: np.ndarray
    interval_s: float
    fans: list[Fan]
    gaps: list[tuple[int, int]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)

    def export_rng(self, purpose: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(1, purpose))))


def _local(time: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(time, dtype="int64"), unit="s", utc=True).tz_convert(SYDNEY)


def plant_room(time: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Plant-room air: 24 degC (late summer), +-4 K daily peaking at 15:00, weather as an hourly AR(1)."""
    local = _local(time)
    hours = np.asarray(local.hour + local.minute / 60.0, dtype=float)
    n_hours = int((time[-1] - time[0]) // 3600) + 2
    weather = np.zeros(n_hours)
    for i in range(1, n_hours):
        weather[i] = 0.97 * weather[i - 1] + rng.normal(0.0, 0.5)
    hour_index = ((time - time[0]) // 3600).astype(int)
    frac = ((time - time[0]) % 3600) / 3600.0
    smooth = weather[hour_index] * (1 - frac) + weather[hour_index + 1] * frac
    return np.asarray(24.0 + 4.0 * np.sin(2 * np.pi * (hours - 9.0) / 24.0) + smooth)


def schedule_setpoint(time: np.ndarray, schedule: str, rng: np.random.Generator) -> np.ndarray:
    """The airflow set-point as a share of design (0 = scheduled off), in local Sydney time."""
    local = _local(time)
    hours = np.asarray(local.hour + local.minute / 60.0, dtype=float)
    weekday = np.asarray(local.day_of_week, dtype=int)
    day_index = np.asarray((local.normalize() - local.normalize()[0]).days, dtype=int)
    daily = 1.0 + rng.normal(0.0, 0.03, int(day_index.max()) + 1)[day_index]
    if schedule == "clinical":
        base = np.where((hours >= 6) & (hours < 22), rng.uniform(0.85, 1.0), rng.uniform(0.55, 0.70))
    elif schedule == "office":
        base = np.where((hours >= 6) & (hours < 19) & (weekday < 5), rng.uniform(0.85, 1.0), 0.0)
    else:
        level = rng.uniform(0.80, 0.95)
        base = np.where(weekday >= 5, 0.7 * level, level)
    return np.asarray(np.clip(base * daily, 0.0, 1.05))


def preventive_plan(time: np.ndarray, interval_s: float, rng: np.random.Generator) -> dict[int, tuple[str, int]]:
    """Step -> (kind, planned stop in steps): belt re-tension every 7-14 days, filter change every 10-20 days,
    on a weekday between 09:00 and 11:00 local."""
    t0, n = int(time[0]), len(time)
    start_day = dt.datetime.fromtimestamp(t0, zoneinfo.ZoneInfo(SYDNEY)).replace(hour=0, minute=0, second=0)
    plan: dict[int, tuple[str, int]] = {}
    for kind, first, every in (("belt_retension", (2, 10), (7, 14)), ("filter_change", (3, 15), (10, 20))):
        day = float(rng.uniform(*first))
        while True:
            date = start_day + dt.timedelta(days=int(day))
            while date.weekday() >= 5:
                date += dt.timedelta(days=1)
            local = date.replace(hour=9, tzinfo=zoneinfo.ZoneInfo(SYDNEY)) + dt.timedelta(
                minutes=int(rng.integers(0, 120))
            )
            step = round((local.timestamp() - t0) / interval_s)
            if step >= n:
                break
            if step >= 0 and all(abs(step - s) > 180 for s in plan):
                plan[step] = (kind, max(1, round(rng.uniform(1800, 3600) / interval_s)))
            day += float(rng.uniform(*every))
    return plan


def generate_fleet(
    seed: int,
    machines: int = 6,
    days: float = 14.0,
    start: str = "2026-03-01",
    interval_s: float = 60.0,
    params: FanParams | None = None,
) -> FanFleet:
    """``machines`` fans for ``days`` from ``start`` (local Sydney date), seeded by ``seed``."""
    params = params or FanParams()
    streams = np.random.default_rng(seed).spawn(machines + 2)
    fleet_rng = streams[0]
    t0 = parse_start(start, SYDNEY)
    n = round(days * 86400 / interval_s)
    time = t0 + np.arange(n, dtype="int64") * int(interval_s)
    room = plant_room(time, fleet_rng)
    healthy = fleet_rng.random(machines) < params.healthy_share
    if machines >= 2 and healthy.all() and params.healthy_share < 1.0:
        healthy[0] = False
    if machines >= 3 and not healthy.any() and params.healthy_share > 0.0:
        healthy[-1] = True
    drift_machine = int(fleet_rng.choice(np.flatnonzero(healthy))) if params.drift and healthy.any() else -1
    fleet = FanFleet(seed, time, interval_s, [])
    for i in range(machines):
        rng = streams[i + 2]
        line, _, schedule = LINES[i % len(LINES)]
        tag = f"AHU-{i + 1:02d}"
        setpoint = schedule_setpoint(time, schedule, rng)
        stops = np.zeros(n, dtype=bool)
        stop_list = episodes(rng, n, interval_s, params.stops_per_week, (1200.0, 4 * 3600.0))
        for a, b in stop_list:
            stops[a:b] = True
        plan = preventive_plan(time, interval_s, rng)
        truth, failures, done = fp.simulate_fan(
            setpoint, stops, room + rng.uniform(-1.0, 1.0), plan, interval_s, rng, params, bool(healthy[i])
        )
        measured = fp.instrument(truth, rng)
        fan = Fan(tag, f"RPA-{tag}", line, schedule, truth, measured, failures, done, bool(healthy[i]))
        fan.stops = stop_list
        fan.comm_losses = episodes(rng, n, interval_s, params.comm_losses_per_week, (600.0, 5400.0))
        if i == drift_machine:
            sensor, kind, rate, unit = fp.DRIFTS[int(rng.integers(len(fp.DRIFTS)))]
            drift = {"machine": fan.machine_id, "sensor": sensor, "kind": kind, "rate_per_day": rate, "unit": unit,
                     "start_step": int(rng.integers(0, max(1, n // 3)))}  # fmt: skip
            fp.apply_drift(measured, drift, interval_s)
            fleet.drift.append(drift)
        fleet.fans.append(fan)
    fleet.gaps = episodes(fleet_rng, n, interval_s, params.gaps_per_week, (3600.0, 8 * 3600.0))
    for j in range(params.sensor_faults if n > 600 else 0):
        fan = fleet.fans[int(fleet_rng.integers(machines))]
        kind = FAULT_KINDS[j % len(FAULT_KINDS)]
        sensor = FAULT_SENSORS[int(fleet_rng.integers(len(FAULT_SENSORS)))]
        length_s = {"stuck": (2 * 3600.0, 8 * 3600.0), "spike": (1800.0, 1800.0), "dropout": (1200.0, 3 * 3600.0)}
        length = max(2, round(fleet_rng.uniform(*length_s[kind]) / interval_s))
        running = np.flatnonzero(fan.truth["running"][n // 10 : max(n // 10 + 1, n - length)] > 0) + n // 10
        a = int(fleet_rng.choice(running)) if len(running) else int(fleet_rng.integers(n // 10, n))
        fault: dict[str, Any] = {"machine": fan.machine_id, "sensor": sensor, "kind": kind, "start_step": a,
                                 "end_step": min(n, a + length)}  # fmt: skip
        if kind == "spike":
            count = int(fleet_rng.integers(1, 4))
            fault["steps"] = sorted(int(s) for s in fleet_rng.choice(np.arange(a, min(n, a + length)), count, False))
            fault["end_step"] = fault["steps"][-1] + 1
        fp.apply_fault(fan.measured, fault)
        fleet.faults.append(fault)
    return fleet


# ---------------------------------------------------------------- exports

HEADER = ["Timestamp", "Point", "Value", "Units"]
BROKEN_HISTORIAN = ("bad_timestamp", "value_text", "unknown_point", "unknown_device")
BROKEN_WORKORDERS = ("unknown_location", "bad_date", "unknown_type")
SITE_PREFIX = "RPA"


def bms_time(time: np.ndarray) -> list[str]:
    return [str(s) for s in _local(time).strftime("%d/%m/%Y %H:%M")]


def write_historian(fleet: FanFleet, path: Path) -> list[dict[str, Any]]:
    """One row per minute and point, absent in outages and comm losses; returns the broken rows (header = line 1)."""
    n = len(fleet.time)
    stamps = bms_time(fleet.time)
    off = np.zeros(n, dtype=bool)
    for a, b in fleet.gaps:
        off[a:b] = True
    per_fan = []
    for fan in fleet.fans:
        lost = off.copy()
        for a, b in fan.comm_losses:
            lost[a:b] = True
        texts = [[f"{v:.{dec}f}" for v in fan.measured[sensor].tolist()] for _, sensor, _, dec in POINTS]
        names = [f"{SITE_PREFIX}:{fan.tag}.{suffix}" for suffix, *_ in POINTS]
        per_fan.append((fan, lost, texts, names))
    rng = fleet.export_rng(0)
    candidates = [(k, j) for k in range(60, n, max(1, n // 200)) for j, cell in enumerate(per_fan) if not cell[1][k]]
    picks = rng.choice(len(candidates), size=min(len(BROKEN_HISTORIAN), len(candidates)), replace=False)
    broken_at = {candidates[int(p)]: kind for p, kind in zip(sorted(picks), BROKEN_HISTORIAN, strict=False)}
    broken: list[dict[str, Any]] = []
    line = 1
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(HEADER) + "\n")
        for k in range(n):
            for j, (_, lost, texts, names) in enumerate(per_fan):
                if lost[k]:
                    continue
                kind = broken_at.get((k, j))
                for p, (*_, unit, _) in enumerate(POINTS):
                    row = [stamps[k], names[p], texts[p][k], unit]
                    line += 1
                    if kind is not None and p == 6:  # the bearing temperature row
                        row, extra = _break_row(row, kind)
                        broken.append({"line": line, "utc": utc_iso(fleet.time[k]), "kind": kind, "point": row[1]})
                        if extra:  # a point of another device, inserted: the real reading is kept
                            f.write(",".join(row) + "\n")
                            row = [stamps[k], names[p], texts[p][k], unit]
                            line += 1
                    f.write(",".join(row) + "\n")
    return broken


def _break_row(row: list[str], kind: str) -> tuple[list[str], bool]:
    if kind == "bad_timestamp":
        return ["31/02/2026 10:00", *row[1:]], False
    if kind == "value_text":
        return [row[0], row[1], "#N/A", row[3]], False
    if kind == "unknown_point":
        return [row[0], f"{SITE_PREFIX}:CH-01.CHW_SUP_T", "6.8", "degC"], True
    return [row[0], f"{SITE_PREFIX}:AHU-99.SF_BRG_T", row[2], row[3]], True


def cmms_time(t: int) -> str:
    """Epoch seconds -> ISO 8601 local Sydney time with its offset, to the minute."""
    return dt.datetime.fromtimestamp(int(t) // 60 * 60, zoneinfo.ZoneInfo(SYDNEY)).isoformat()


def location(fan: Fan) -> str:
    return f"{SITE_PREFIX}-{fan.tag.replace('-', '')}"


def write_workorders(fleet: FanFleet, path: Path) -> list[dict[str, Any]]:
    rng = fleet.export_rng(1)
    t0, t_end, dt_s = int(fleet.time[0]), int(fleet.time[-1]), int(fleet.interval_s)
    entries: list[list[Any]] = []  # location, type, epoch s, damage code, text
    failure_text = {"BELT": "Supply fan belt thrown, fan stopped", "BRG": "Fan bearing noisy, seized on the drive end",
                    "IMP": "Fan tripped on high vibration", "FILT": "Filter bank collapsed, high filter dP alarm"}  # fmt: skip
    repair_text = {"BELT": "Belt set and pulleys replaced, aligned", "BRG": "Both fan bearings replaced",
                   "IMP": "Impeller cleaned and balanced, blade repaired", "FILT": "Filter frames and bags replaced"}  # fmt: skip
    pm_text = {"belt_retension": ("PM-BLT", "Belt tension checked and adjusted"),
               "filter_change": ("PM-FLT", "Bag filters changed, fan blades cleaned")}  # fmt: skip
    for fan in fleet.fans:
        loc = location(fan)
        for f in fan.failures:
            code = DAMAGE_CODES[f["mode"]]
            # Reported to the minute, 1-30 min after the failure, never before it.
            reported = int(fleet.time[f["step"]]) + int(rng.integers(1, 31)) * 60
            entries.append([loc, "BRKDN", reported, code, failure_text[code]])
            restart = t0 + f["restart_step"] * dt_s
            if restart <= t_end:
                entries.append([loc, "RTS", restart, code, repair_text[code]])
        for p in fan.preventive:
            wtype, text = pm_text[p["kind"]]
            entries.append([loc, wtype, t0 + p["step"] * dt_s, "", text])
        t = t0 + int(rng.uniform(1, 7) * 86400) // 60 * 60
        while t <= t_end:
            entries.append([loc, "INSP", t, "", "Weekly walk-round: belts, bearings by ear, filter gauge"])
            t += 7 * 86400
        entries.append([loc, "ADM", t0 + 3600, "", "Asset register update"])
    for kind in BROKEN_WORKORDERS:
        fan = fleet.fans[int(rng.integers(len(fleet.fans)))]
        when = t0 + int(rng.integers(1, max(2, (t_end - t0) // 60))) * 60
        entries.append([location(fan), "INSP", when, "", f"BROKEN:{kind}"])
    entries.sort(key=lambda e: (e[2], e[0], e[1]))
    broken, rows = [], []
    for i, (loc, wtype, t, code, text) in enumerate(entries):
        row = [f"{10052000 + i}", loc, wtype, cmms_time(t), code, text]
        kind = text.removeprefix("BROKEN:")
        if kind in BROKEN_WORKORDERS:
            row[5] = "Weekly walk-round: belts, bearings by ear, filter gauge"
            if kind == "unknown_location":
                row[1] = f"{SITE_PREFIX}-AHU99"
            elif kind == "bad_date":
                row[3] = "2026-02-30T10:00:00+11:00"
            else:
                row[2] = "ZZ"
            broken.append({"line": i + 2, "utc": utc_iso(t), "kind": kind, "notification": row[0]})
        rows.append(row)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["Notification", "FunctionalLocation", "NotifType", "CreatedAt", "DamageCode", "ShortText"])
        writer.writerows(rows)
    return broken


SENSOR_SPECS = {
    "motor_speed": 'unit = "rpm", range = { min = 0, max = 1800 }',
    "fan_speed": 'unit = "rpm", range = { min = 0, max = 1200 }, key = true',
    "airflow": 'unit = "m3/s", range = { min = 0, max = 10 }, key = true',
    "filter_dp": f'unit = "Pa", range = {{ min = 0, max = 1000 }}, limits = {{ high = {fp.FILTER_DP_FAIL_PA:g} }}, key = true',
    "static_pressure": 'unit = "Pa", range = { min = 0, max = 2000 }',
    "power": 'unit = "kW", range = { min = 0, max = 15 }, key = true',
    "bearing_temp": 'unit = "degC", range = { min = -20, max = 150 }, key = true',
    "vib_1x": f'unit = "mm/s", range = {{ min = 0, max = 25 }}, limits = {{ high = {fp.VIB_TRIP_MM_S:g} }}, key = true',
    "vib_envelope": f'unit = "gE", range = {{ min = 0, max = 20 }}, limits = {{ high = {fp.ENVELOPE_FAIL_G:g} }}, key = true',
}  # fmt: skip


def plant_toml(fleet: FanFleet, out: Path) -> str:
    """The plant file a user writes for these exports: one tag pattern for every AHU's points, airflow converted."""
    lines = "".join(f'\n[[lines]]\nid = "{i}"\nsite = "rpa"\nname = "{name}"\n' for i, name, _ in LINES)
    machines = "".join(
        f'\n[[machines]]\nid = "{f.machine_id}"\ntype = "belt_fan"\nline = "{f.line}"\n' for f in fleet.fans
    )
    sensors = "".join(f"{name} = {{ {spec} }}\n" for name, spec in SENSOR_SPECS.items())
    return f"""# Generated by tests.generators.fans (seed {fleet.seed}): belt-driven AHU supply fans on one campus, read from a
# BMS trend export in the long layout ([[sources.file]] "bms", points found by a tag pattern) and a CMMS notification
# export ([[sources.maintenance]] "cmms"). Limits are the physics' failure thresholds.
plant = "Generated HVAC supply-fan fleet (seed {fleet.seed})"

[[sites]]
id = "rpa"
name = "Sydney hospital campus"
{lines}
[machine_types.belt_fan]
description = "Belt-driven centrifugal AHU supply fan, 11 kW motor on a VFD holding an airflow set-point"
running_sensor = "motor_speed"
off_below = 100.0
derived = [{{ name = "drive_ratio", op = "ratio", a = "fan_speed", b = "motor_speed" }}, {{ name = "kw_per_airflow", op = "ratio", a = "power", b = "airflow" }}]
[machine_types.belt_fan.sensors]
{sensors}[machine_types.belt_fan.what_to_check]
fan_speed = ["V-belt tension and wear (slip)", "Pulley grooves and alignment"]
filter_dp = ["Bag filters (loaded, wet or collapsed)", "Condensate carry-over from the cooling coil"]
vib_1x = ["Impeller: dust build-up, a cracked blade", "Impeller balance, hub set screws"]
vib_envelope = ["Fan bearings: outer-race defect, lubrication"]
bearing_temp = ["Fan bearings: lubrication, defect", "Belt over-tensioned"]
{machines}
[[sources.file]]
name = "bms"
path = {toml_value(str(out / "historian.csv"))}
delimiter = ","
[sources.file.mapping]
layout = "long"
time = {{ column = "Timestamp", format = "%d/%m/%Y %H:%M", zone = "{SYDNEY}" }}
tag = "Point"
value = "Value"
tag_pattern = '{SITE_PREFIX}:(?P<machine>AHU-\\d+)\\.(?P<sensor>[A-Z0-9_]+)'
machines = {toml_value({f.tag: f.machine_id for f in fleet.fans})}
sensors = {toml_value({suffix: sensor for suffix, sensor, _, _ in POINTS})}
conversions = {{ airflow = {{ scale = 0.001, unit = "L/s" }} }}

[[sources.maintenance]]
name = "cmms"
path = {toml_value(str(out / "workorders.csv"))}
delimiter = ","
[sources.maintenance.mapping]
machine = "FunctionalLocation"
time = {{ column = "CreatedAt", format = "iso", zone = "{SYDNEY}" }}
kind = "NotifType"
kinds = {{ brkdn = "failure", rts = "repair", pm-blt = "inspection", pm-flt = "inspection", insp = "inspection", adm = "ignore" }}
failure_mode = "DamageCode"
work_order = "Notification"
text = "ShortText"
machines = {toml_value({location(f): f.machine_id for f in fleet.fans})}

[windows]
kind = "tumbling"
size_s = 600
grace_s = 60

[models]
horizon_s = 172800     # 48 h
min_lead_s = 14400     # 4 h
threshold = 0.5
"""


def ground_truth(fleet: FanFleet, broken: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    t, dt_s = fleet.time, int(fleet.interval_s)
    end = int(t[-1]) + dt_s

    def at(step: int) -> str:
        return utc_iso(int(t[0]) + step * dt_s)

    failures, repairs, preventive = [], [], []
    for fan in fleet.fans:
        for f in fan.failures:
            failures.append({"machine": fan.machine_id, "device": fan.tag, "time": at(f["step"]), "mode": f["mode"],
                             "code": DAMAGE_CODES[f["mode"]], "onset": at(f["onset_step"]),
                             "life_h": round((f["step"] - f["onset_step"]) * dt_s / 3600, 2),
                             "running_h_since_onset": f["running_h_since_onset"], "drawn_life_h": f["drawn_life_h"],
                             "threshold": f["threshold"]})  # fmt: skip
            if int(t[0]) + f["restart_step"] * dt_s < end:
                repairs.append({"machine": fan.machine_id, "time": at(f["restart_step"]), "mode": f["mode"]})
        for p in fan.preventive:
            preventive.append({"machine": fan.machine_id, "kind": p["kind"], "start": at(p["step"]),
                               "end": at(min(p["end_step"], len(t)))})  # fmt: skip

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if k not in ("start_step", "end_step", "steps")}
        if "steps" in d:
            out["times"] = [at(s) for s in d["steps"]]
        return out | {"start": at(d["start_step"])} | ({"end": at(d["end_step"])} if "end_step" in d else {})

    return {
        "generator": "tests.generators.fans",
        "seed": fleet.seed,
        "start": utc_iso(t[0]),
        "end": utc_iso(end),
        "interval_s": dt_s,
        "machines": [f.machine_id for f in fleet.fans],
        "schedules": {f.machine_id: f.schedule for f in fleet.fans},
        "healthy": [f.machine_id for f in fleet.fans if f.healthy],
        "limits": {
            "filter_dp_high_pa": fp.FILTER_DP_FAIL_PA,
            "vib_1x_high_mm_s": fp.VIB_TRIP_MM_S,
            "vib_envelope_high_g": fp.ENVELOPE_FAIL_G,
            "belt_slip_fail": fp.SLIP_FAIL,
        },
        "failures": sorted(failures, key=lambda f: (f["time"], f["machine"])),
        "repairs": sorted(repairs, key=lambda r: (r["time"], r["machine"])),
        "preventive": sorted(preventive, key=lambda p: (p["start"], p["machine"])),
        "stops": [{"machine": f.machine_id, "start": at(a), "end": at(b)} for f in fleet.fans for a, b in f.stops],
        "drift": [strip(d) for d in fleet.drift],
        "sensor_faults": [strip(d) for d in fleet.faults],
        "gaps": [{"scope": "historian", "start": at(a), "end": at(b)} for a, b in fleet.gaps]
        + [{"scope": f.machine_id, "start": at(a), "end": at(b)} for f in fleet.fans for a, b in f.comm_losses],
        "dst_transitions": dst_transitions(int(t[0]), end, SYDNEY),
        "broken_rows": broken,
    }


def write_exports(fleet: FanFleet, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    broken = {"historian.csv": write_historian(fleet, out / "historian.csv"),
              "workorders.csv": write_workorders(fleet, out / "workorders.csv")}  # fmt: skip
    (out / "plant.toml").write_text(plant_toml(fleet, out), encoding="utf-8")
    truth = ground_truth(fleet, broken)
    write_json(out / "truth.json", truth)
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.generators.fans", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--machines", type=int, default=6)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--start", default="2026-03-01", help="local Sydney date or date-time")
    parser.add_argument("--interval-s", type=float, default=60.0)
    parser.add_argument("--healthy-share", type=float, default=fp.FanParams.healthy_share)
    args = parser.parse_args(argv)
    params = fp.FanParams(healthy_share=args.healthy_share)
    fleet = generate_fleet(args.seed, args.machines, args.days, args.start, args.interval_s, params)
    truth = write_exports(fleet, args.out)
    print(f"wrote {args.out}: {len(fleet.fans)} fans, {len(fleet.time)} steps, {len(truth['failures'])} failures, {len(truth['repairs'])} repairs, {len(truth['sensor_faults'])} sensor faults")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
