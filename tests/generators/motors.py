"""A fleet of induction motors under production load profiles, exported as a long historian file and a CMMS dump.

Physics (different from the pumps' on purpose: load profiles instead of speed steps, heat from I^2R losses,
insulation ageing instead of a temperature threshold):

- **Load**: a shift pattern (day shifts near full load, nights lighter, weekends often off) with minute-scale
  fluctuations (an AR(1)) and random stops; speed follows with the slip, ``n = 1500 (1 - 0.02 load)``.
- **Current**: magnetising plus load component, ``I = I_fl sqrt(0.35^2 + (0.94 load)^2)``.
- **Winding temperature**: first order (20-40 min) toward ambient + 80 K (I/I_fl)^2 (1 + cooling fault) + 5 K.
- **Winding insulation failure**: a cooling fault (clogged fan cowl, broken fan) grows exponentially after onset;
  the insulation ages with the 10-kelvin rule, life used per hour = 1 / (15 h * 2^((155 - T)/10)) (a compressed
  time scale), and the winding fails when the used life reaches 1 (often above 155 degC, sometimes below it).
  The fault at most doubles the thermal resistance.
- **Bearing outer-race defect**: the envelope amplitude at the defect frequency (BPFO, in g) grows exponentially
  after onset; it adds to the overall vibration (mm/s) and warms the bearing; the bearing fails at 7.1 mm/s.
- Repairs 6-36 h, then the motor restarts healthy (the insulation's used life too: a rewind).

Exports (``python -m tests.generators.motors --out DIR --seed N --machines M --days D``):

- ``historian.csv``: long layout ``Time,Tag,Value,Quality``; ``Time`` UTC ISO 8601 with offset
  (``2026-03-01T00:00:00+00:00``), tags ``M201.TW`` (winding degC), ``M201.TB`` (bearing degC), ``M201.VIB``
  (mm/s), ``M201.BPFO`` (g), ``M201.I`` (A), ``M201.LOAD`` (%), ``M201.N`` (rpm); ``Quality`` Good/Bad/Uncertain
  (a lost PLC writes ``Bad`` with value 0); outages are missing rows; a few broken rows.
- ``workorders.csv``: ``equipment_id,wo_number,wo_type,failure_date,failure_code,notes``; ``failure_date`` is
  epoch milliseconds for every row (despite its name), ``wo_type`` BRKD (breakdown), RPR (repair done),
  INSP (inspection), ADMIN (ignore).
- ``plant.toml`` (machine type ``motor``, machines ``MTR-M201``...) and ``truth.json``.

>>> fleet = generate_fleet(seed=2, machines=1, days=2)  # a Sunday (this motor rests) and a Monday
>>> fleet.motors[0].machine_id, round(float(fleet.motors[0].truth["speed"].max()))
('MTR-M201', 1487)
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.generators._common import (
    BERLIN,
    ambient_temperature,
    dst_transitions,
    episodes,
    local_hours,
    local_weekdays,
    parse_start,
    toml_key,
    toml_value,
    utc_iso,
    write_json,
)

MODES = ("winding_insulation", "bearing_outer_race")
FAILURE_CODES = {"winding_insulation": "WIND-INS", "bearing_outer_race": "BRG-OR"}
N_SYNC = 1500.0
I_FULL_LOAD = 160.0
WINDING_LIMIT_C = 155.0
"""Insulation class F: the hard limit, and the reference of the ageing rule (life halves every 10 K above it)."""
LIFE_AT_LIMIT_H = 15.0
"""Insulation life at 155 degC on this compressed time scale (real windings last years)."""
VIB_LIMIT_MM_S = 7.1
"""The bearing has failed at this overall vibration (ISO 10816-3 zone D, class of a medium motor)."""
WEAR_START = 0.02
COOLING_FAULT_MAX = 1.0
"""A fully blocked air path doubles the winding's thermal resistance; it cannot get worse than that."""

# (tag suffix, sensor, unit, decimals)
TAGS: tuple[tuple[str, str, str, int], ...] = (
    ("TW", "winding_temp", "degC", 2),
    ("TB", "bearing_temp", "degC", 2),
    ("VIB", "vibration", "mm/s", 3),
    ("BPFO", "defect_amp", "g", 4),
    ("I", "current", "A", 1),
    ("LOAD", "load", "%", 1),
    ("N", "speed", "rpm", 1),
)


@dataclass(frozen=True)
class MotorParams:
    healthy_share: float = 0.3
    mean_onset_h: float = 96.0
    short_life_share: float = 0.4
    short_life_h: tuple[float, float] = (4.0, 12.0)
    long_life_h: tuple[float, float] = (48.0, 120.0)
    repair_h: tuple[float, float] = (6.0, 36.0)
    weekend_off_share: float = 0.5
    """Share of motors that stop from Saturday 22:00 to Monday 06:00."""
    stops_per_week: float = 2.0
    gaps_per_week: float = 1.0
    bad_quality_per_week: float = 1.0


@dataclass
class Motor:
    tag: str
    machine_id: str
    truth: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]
    quality: np.ndarray
    """0 good, 1 uncertain, 2 bad, per step (all tags of the motor)."""
    failures: list[dict[str, Any]]
    healthy: bool


@dataclass
class MotorFleet:
    seed: int
    time: np.ndarray
    interval_s: float
    motors: list[Motor]
    site_gaps: list[tuple[int, int]] = field(default_factory=list)
    bad_quality: list[tuple[str, int, int]] = field(default_factory=list)

    def export_rng(self, purpose: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(1, purpose))))


def load_profile(time: np.ndarray, rng: np.random.Generator, weekend_off: bool, stops_per_week: float) -> np.ndarray:
    """Load fraction per step, 0 when stopped: shifts, weekends, minute-scale fluctuation, random stops."""
    hours, weekdays = local_hours(time, BERLIN), local_weekdays(time, BERLIN)
    day_shift = (hours >= 6) & (hours < 22)
    base = np.where(day_shift, rng.uniform(0.75, 0.95), rng.uniform(0.4, 0.55))
    base = np.where(weekdays >= 5, base * 0.6, base)
    noise = np.zeros(len(time))
    for k in range(1, len(time)):
        noise[k] = 0.93 * noise[k - 1] + rng.normal(0.0, 0.02)
    load = np.clip(base + noise, 0.2, 1.1)
    if weekend_off:
        off = ((weekdays == 5) & (hours >= 22)) | (weekdays == 6) | ((weekdays == 0) & (hours < 6))
        load[off] = 0.0
    dt_s = float(time[1] - time[0]) if len(time) > 1 else 60.0
    for a, b in episodes(rng, len(time), dt_s, stops_per_week, (1800.0, 4 * 3600.0)):
        load[a:b] = 0.0
    return np.asarray(load)


def simulate_motor(
    load: np.ndarray, ambient: np.ndarray, dt_s: float, rng: np.random.Generator, params: MotorParams, healthy: bool
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Step one motor; returns the noise-free series and its failures (step, mode, onset step, restart step)."""
    n = len(load)
    series = {name: np.zeros(n) for name in ("winding_temp", "bearing_temp", "vibration", "defect_amp", "current", "load", "speed", "insulation_used")}  # fmt: skip
    tau_w, tau_b = rng.uniform(20, 40) * 60, rng.uniform(40, 70) * 60
    a_w, a_b = 1 - math.exp(-dt_s / tau_w), 1 - math.exp(-dt_s / tau_b)
    vib0 = rng.uniform(0.9, 1.4)
    dt_h = dt_s / 3600
    failures: list[dict[str, Any]] = []

    def new_life(start: int) -> tuple[str | None, int, float]:
        if healthy:
            return None, n, 0.0
        mode = MODES[int(rng.integers(2))]
        onset = start + round((12.0 + rng.exponential(params.mean_onset_h)) * 3600 / dt_s)
        span = params.short_life_h if rng.random() < params.short_life_share else params.long_life_h
        return mode, onset, math.log(1.0 / WEAR_START) / rng.uniform(*span)

    mode, onset, rate = new_life(0)
    fault, used, run_h = 0.0, rng.uniform(0.0, 0.2), 0.0
    t_w = t_b = float(ambient[0]) + 20.0
    repair_until = -1
    for k in range(n):
        if k == repair_until:
            mode, onset, rate = new_life(k)
            fault, used, run_h = 0.0, 0.0, 0.0
        lf = 0.0 if k < repair_until else float(load[k])
        running = lf > 0.0
        if mode is not None and k >= onset and running:
            run_h += dt_h
            fault = WEAR_START * math.exp(rate * run_h)
        cooling = min(fault, COOLING_FAULT_MAX) if mode == "winding_insulation" else 0.0
        defect = fault if mode == "bearing_outer_race" else 0.0
        current = I_FULL_LOAD * math.sqrt(0.35**2 + (0.94 * lf) ** 2) if running else 0.0
        amb = float(ambient[k])
        heat = 80.0 * (current / I_FULL_LOAD) ** 2 * (1.0 + cooling) + 5.0 if running else 0.0
        t_w += (amb + heat - t_w) * a_w
        t_b += (amb + (22.0 + 18.0 * defect if running else 0.0) - t_b) * a_b
        used += dt_h / (LIFE_AT_LIMIT_H * 2.0 ** ((WINDING_LIMIT_C - t_w) / 10.0))
        vib = vib0 * (0.6 + 0.4 * lf) + 3.0 * defect if running else 0.05
        amp = 0.02 + defect if running else 0.0
        speed = N_SYNC * (1.0 - 0.02 * lf) if running else 0.0
        for name, value in (("winding_temp", t_w), ("bearing_temp", t_b), ("vibration", vib), ("defect_amp", amp),
                            ("current", current), ("load", 100.0 * lf), ("speed", speed), ("insulation_used", used)):  # fmt: skip
            series[name][k] = value
        threshold = ""
        if running and used >= 1.0:
            threshold = "insulation life used >= 1"
        elif running and vib >= VIB_LIMIT_MM_S:
            threshold = f"vibration >= {VIB_LIMIT_MM_S:g} mm/s"
        if threshold and mode is not None and k >= repair_until:
            repair_until = k + 1 + max(1, round(rng.uniform(*params.repair_h) * 3600 / dt_s))
            failures.append({"step": k, "mode": mode, "onset_step": onset, "restart_step": repair_until, "threshold": threshold})  # fmt: skip
    return series, failures


def instrument(truth: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(truth["load"])
    running = truth["speed"] > 0
    return {
        "winding_temp": truth["winding_temp"] + rng.normal(0, 0.3, n),
        "bearing_temp": truth["bearing_temp"] + rng.normal(0, 0.2, n),
        "vibration": truth["vibration"] * np.exp(rng.normal(0, 0.08, n)),
        "defect_amp": np.abs(truth["defect_amp"] * np.exp(rng.normal(0, 0.15, n)) + rng.normal(0, 0.003, n)),
        "current": np.where(running, truth["current"] * (1 + rng.normal(0, 0.01, n)), 0.0),
        "load": np.clip(truth["load"] + rng.normal(0, 0.5, n) * running, 0.0, None),
        "speed": np.where(running, truth["speed"] + rng.normal(0, 0.5, n), 0.0),
    }


def generate_fleet(
    seed: int,
    machines: int = 4,
    days: float = 14.0,
    start: str = "2026-03-01",
    interval_s: float = 60.0,
    params: MotorParams = MotorParams(),
) -> MotorFleet:
    """``machines`` motors for ``days`` from ``start`` (local Berlin date), seeded with ``np.random.default_rng(seed)``."""
    streams = np.random.default_rng(seed).spawn(machines + 2)
    fleet_rng = streams[0]
    t0 = parse_start(start, BERLIN)
    n = round(days * 86400 / interval_s)
    time = t0 + np.arange(n, dtype="int64") * int(interval_s)
    ambient = ambient_temperature(time, fleet_rng)
    healthy = fleet_rng.random(machines) < params.healthy_share
    if machines >= 2 and healthy.all() and params.healthy_share < 1.0:
        healthy[0] = False
    motors = []
    for i in range(machines):
        rng = streams[i + 2]
        weekend_off = bool(rng.random() < params.weekend_off_share)
        load = load_profile(time, rng, weekend_off, params.stops_per_week)
        truth, failures = simulate_motor(load, ambient + rng.uniform(-1, 1), interval_s, rng, params, bool(healthy[i]))
        tag = f"M{201 + i}"
        motors.append(Motor(tag, f"MTR-{tag}", truth, instrument(truth, rng), np.zeros(n, dtype=int), failures, bool(healthy[i])))  # fmt: skip
    fleet = MotorFleet(seed, time, interval_s, motors)
    fleet.site_gaps = episodes(fleet_rng, n, interval_s, params.gaps_per_week, (3600.0, 12 * 3600.0))
    for m in motors:
        for a, b in episodes(fleet_rng, n, interval_s, params.bad_quality_per_week, (600.0, 5400.0)):
            m.quality[a:b] = 2
            fleet.bad_quality.append((m.machine_id, a, b))
        m.quality[(fleet_rng.random(n) < 0.001) & (m.quality == 0)] = 1
    return fleet


# ---------------------------------------------------------------- exports

QUALITY_WORDS = ("Good", "Uncertain", "Bad")
BROKEN_HISTORIAN = ("bad_timestamp", "unknown_tag", "value_text")
BROKEN_WORKORDERS = ("unknown_equipment", "bad_date", "unknown_type")


def write_historian(fleet: MotorFleet, path: Path) -> list[dict[str, Any]]:
    """Long layout, one row per step and tag, UTC ISO 8601 times; returns the broken rows (header = line 1)."""
    keep = np.ones(len(fleet.time), dtype=bool)
    for a, b in fleet.site_gaps:
        keep[a:b] = False
    steps = np.flatnonzero(keep)
    stamps = [utc_iso(t).replace("Z", "+00:00") for t in fleet.time[steps].tolist()]
    columns = []
    for m in fleet.motors:
        for suffix, sensor, _, decimals in TAGS:
            values = np.where(m.quality[steps] == 2, 0.0, m.measured[sensor][steps])
            texts = [f"{v:.{decimals}f}" for v in values.tolist()]
            columns.append((f"{m.tag}.{suffix}", texts, [QUALITY_WORDS[q] for q in m.quality[steps].tolist()]))
    rng = fleet.export_rng(0)
    n_rows = len(steps) * len(columns)
    picks = sorted(int(i) for i in rng.choice(np.arange(50, n_rows), size=len(BROKEN_HISTORIAN), replace=False))
    broken_at = dict(zip(picks, BROKEN_HISTORIAN, strict=True))
    broken = []
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("Time,Tag,Value,Quality\n")
        row = 0
        for i, stamp in enumerate(stamps):
            for tag, texts, qualities in columns:
                cells = [stamp, tag, texts[i], qualities[i]]
                kind = broken_at.get(row)
                if kind is not None:
                    cells = _break_long_row(cells, kind)
                    broken.append({"line": row + 2, "utc": utc_iso(fleet.time[steps[i]]), "kind": kind, "tag": tag})
                f.write(",".join(cells) + "\n")
                row += 1
    return broken


def _break_long_row(cells: list[str], kind: str) -> list[str]:
    if kind == "bad_timestamp":
        return ["2026-02-30T25:00:00+00:00", *cells[1:]]
    if kind == "unknown_tag":
        return [cells[0], "M299.TW", *cells[2:]]
    return [cells[0], cells[1], "ERR", cells[3]]


def write_workorders(fleet: MotorFleet, path: Path) -> list[dict[str, Any]]:
    rng = fleet.export_rng(1)
    t_end = int(fleet.time[-1])
    entries: list[list[Any]] = []  # equipment, type, epoch ms, code, notes
    for m in fleet.motors:
        for f in m.failures:
            t_fail = int(fleet.time[f["step"]]) + int(rng.integers(0, 16)) * 60
            code = FAILURE_CODES[f["mode"]]
            note = (
                "Motor tripped on earth fault, winding burnt"
                if code == "WIND-INS"
                else "Motor bearing seized, loud grinding"
            )
            entries.append([m.tag, "BRKD", t_fail * 1000, code, note])
            restart = int(fleet.time[0]) + f["restart_step"] * int(fleet.interval_s)
            if restart <= t_end:
                done = (
                    "Stator rewound, fan cowl cleaned"
                    if code == "WIND-INS"
                    else "Both bearings replaced, grease refilled"
                )
                entries.append([m.tag, "RPR", restart * 1000, code, done])
        t = int(fleet.time[0]) + int(rng.uniform(1, 10) * 86400)
        while t <= t_end:
            entries.append([m.tag, "INSP", t * 1000, "", "Thermography and vibration route"])
            t += int(rng.uniform(8, 12) * 86400)
        entries.append([m.tag, "ADMIN", int(fleet.time[0]) * 1000 + 3_600_000, "", "Asset data updated"])
    for kind in BROKEN_WORKORDERS:
        m = fleet.motors[int(rng.integers(len(fleet.motors)))]
        entries.append(
            [m.tag, "INSP", int(fleet.time[int(rng.integers(len(fleet.time)))]) * 1000, "", f"BROKEN:{kind}"]
        )
    entries.sort(key=lambda e: (e[2], e[0]))
    broken = []
    rows = []
    for i, (equipment, wo_type, t_ms, code, notes) in enumerate(entries):
        row = [equipment, f"{2026000 + i:07d}", wo_type, str(t_ms), code, notes]
        kind = notes.removeprefix("BROKEN:")
        if kind in BROKEN_WORKORDERS:
            row[5] = "Thermography and vibration route"
            if kind == "unknown_equipment":
                row[0] = "M999"
            elif kind == "bad_date":
                row[3] = "not a date"
            else:
                row[2] = "XYZ"
            broken.append({"line": i + 2, "utc": utc_iso(t_ms // 1000), "kind": kind, "wo": row[1]})
        rows.append(row)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["equipment_id", "wo_number", "wo_type", "failure_date", "failure_code", "notes"])
        writer.writerows(rows)
    return broken


def plant_toml(fleet: MotorFleet, out: Path) -> str:
    machines = "".join(
        f'\n[[machines]]\nid = "{m.machine_id}"\ntype = "motor"\nline = "berlin-drives"\n' for m in fleet.motors
    )
    tags = {f"{m.tag}.{suffix}": {"machine": m.machine_id, "sensor": sensor, "unit": unit} for m in fleet.motors for suffix, sensor, unit, _ in TAGS}  # fmt: skip
    tag_lines = "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in tags.items())
    return f"""# Generated by tests.generators.motors (seed {fleet.seed}): a motor line read from a long historian export
# ([[sources.file]] "historian") and a CMMS dump ([[sources.maintenance]] "cmms").
plant = "Generated motor line (seed {fleet.seed})"

[[sites]]
id = "berlin"
name = "Berlin works"

[[lines]]
id = "berlin-drives"
site = "berlin"
name = "Conveyor and fan drives"

[machine_types.motor]
description = "Induction motor, 4-pole, 50 Hz, under a production load profile"
running_sensor = "speed"
off_below = 100.0
[machine_types.motor.sensors]
winding_temp = {{ unit = "degC", range = {{ min = -20, max = 220 }}, limits = {{ high = {WINDING_LIMIT_C} }}, key = true }}
bearing_temp = {{ unit = "degC", range = {{ min = -20, max = 150 }}, key = true }}
vibration = {{ unit = "mm/s", range = {{ min = 0, max = 50 }}, limits = {{ high = {VIB_LIMIT_MM_S} }}, key = true }}
defect_amp = {{ unit = "g", range = {{ min = 0, max = 20 }}, key = true }}
current = {{ unit = "A", range = {{ min = 0, max = 400 }} }}
load = {{ unit = "%", range = {{ min = 0, max = 150 }} }}
speed = {{ unit = "rpm", range = {{ min = 0, max = 1600 }} }}
[machine_types.motor.what_to_check]
winding_temp = ["Fan and fan cowl (clogged air path)", "Insulation resistance (megger)"]
vibration = ["Bearing condition (envelope spectrum at BPFO)", "Lubrication"]
defect_amp = ["Outer race of the drive-end bearing"]
{machines}
[[sources.file]]
name = "historian"
path = {toml_value(str(out / "historian.csv"))}
delimiter = ","
[sources.file.mapping]
layout = "long"
time = {{ column = "Time", format = "iso", zone = "UTC" }}
tag = "Tag"
value = "Value"
quality = "Quality"
[sources.file.mapping.tags]
{tag_lines}
[[sources.maintenance]]
name = "cmms"
path = {toml_value(str(out / "workorders.csv"))}
delimiter = ","
[sources.maintenance.mapping]
machine = "equipment_id"
time = {{ column = "failure_date", format = "epoch_ms", zone = "UTC" }}
kind = "wo_type"
kinds = {{ brkd = "failure", rpr = "repair", insp = "inspection", admin = "ignore" }}
failure_mode = "failure_code"
work_order = "wo_number"
text = "notes"
machines = {toml_value({m.tag: m.machine_id for m in fleet.motors})}

[windows]
kind = "tumbling"
size_s = 600
grace_s = 60

[models]
horizon_s = 172800     # 48 h
min_lead_s = 14400     # 4 h
threshold = 0.5
"""


def ground_truth(fleet: MotorFleet, broken: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    t, dt_s = fleet.time, int(fleet.interval_s)
    end = int(t[-1]) + dt_s
    failures, repairs = [], []
    for m in fleet.motors:
        for f in m.failures:
            failures.append({"machine": m.machine_id, "tag": m.tag, "time": utc_iso(t[f["step"]]), "mode": f["mode"],
                             "code": FAILURE_CODES[f["mode"]], "onset": utc_iso(t[f["onset_step"]]),
                             "threshold": f["threshold"]})  # fmt: skip
            restart = int(t[0]) + f["restart_step"] * dt_s
            if restart < end:
                repairs.append({"machine": m.machine_id, "time": utc_iso(restart), "mode": f["mode"]})
    return {
        "generator": "tests.generators.motors",
        "seed": fleet.seed,
        "start": utc_iso(t[0]),
        "end": utc_iso(end),
        "interval_s": dt_s,
        "machines": [m.machine_id for m in fleet.motors],
        "healthy": [m.machine_id for m in fleet.motors if m.healthy],
        "limits": {"winding_temp_high_degC": WINDING_LIMIT_C, "vibration_high_mm_s": VIB_LIMIT_MM_S},
        "failures": sorted(failures, key=lambda f: (f["time"], f["machine"])),
        "repairs": sorted(repairs, key=lambda r: (r["time"], r["machine"])),
        "gaps": [
            {"scope": "historian", "start": utc_iso(t[a]), "end": utc_iso(int(t[a]) + (b - a) * dt_s)}
            for a, b in fleet.site_gaps
        ],
        "bad_quality": [
            {"machine": m, "start": utc_iso(t[a]), "end": utc_iso(int(t[a]) + (b - a) * dt_s)}
            for m, a, b in fleet.bad_quality
        ],
        "dst_transitions": dst_transitions(int(t[0]), end, BERLIN),
        "broken_rows": broken,
    }


def write_exports(fleet: MotorFleet, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    broken = {"historian.csv": write_historian(fleet, out / "historian.csv"),
              "workorders.csv": write_workorders(fleet, out / "workorders.csv")}  # fmt: skip
    (out / "plant.toml").write_text(plant_toml(fleet, out), encoding="utf-8")
    truth = ground_truth(fleet, broken)
    write_json(out / "truth.json", truth)
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.generators.motors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--start", default="2026-03-01", help="local Berlin date or date-time")
    parser.add_argument("--interval-s", type=float, default=60.0)
    parser.add_argument("--healthy-share", type=float, default=MotorParams.healthy_share)
    args = parser.parse_args(argv)
    fleet = generate_fleet(
        args.seed, args.machines, args.days, args.start, args.interval_s, MotorParams(healthy_share=args.healthy_share)
    )
    truth = write_exports(fleet, args.out)
    print(f"wrote {args.out}: {len(fleet.motors)} motors, {len(fleet.time)} steps, {len(truth['failures'])} failures, {len(truth['repairs'])} repairs")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
