"""A fleet of centrifugal pumps on one Berlin site, written the way a real plant's systems export it.

The physics is in :mod:`tests.generators.pump_physics`; this module adds what the instruments and the historian
do (sensor noise, a slow drift that is not a failure, a stuck sensor, data gaps) and writes four files::

    python -m tests.generators.pumps --out DIR --seed 7 --machines 6 --days 14 [--start 2026-03-01] [--parquet]

- ``historian.csv``: a wide export, ``;``-delimited, one row per minute, ``Timestamp`` in local Berlin time as
  ``%d.%m.%Y %H:%M:%S``, one column per tag (``P101_TT_BRG`` in degF, ``P101_VT_BRG`` mm/s, ``P101_FT`` m3/h,
  ``P101_PT_DIS`` bar, ``P101_ST`` rpm, ``P101_JT`` kW); gaps are missing rows or empty cells; a few rows are broken.
- ``workorders.csv``: the CMMS export (``Asset``, ``Reported`` as ``%m/%d/%Y %I:%M %p`` Berlin time, ``Type``,
  ``Cause``, ``WO``, ``Description``), with a few broken rows.
- ``plant.toml``: the Vigil configuration that reads both files.
- ``truth.json``: failures, repairs, drift, stuck sensor, gaps and broken rows, in UTC.

>>> fleet = generate_fleet(seed=3, machines=2, days=1)
>>> [h.machine_id for h in fleet.pumps], len(fleet.time)
(['PMP-P101', 'PMP-P102'], 1440)
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

from tests.generators._common import (
    BERLIN,
    ambient_temperature,
    dst_transitions,
    episodes,
    local_strings,
    parse_start,
    toml_key,
    toml_value,
    utc_iso,
    write_json,
)
from tests.generators.pump_physics import (
    CAUSE_TEXT,
    FLOW_LOW_M3_H,
    TEMP_LIMIT_C,
    VIB_LIMIT_MM_S,
    DutyCycle,
    LifePlanner,
    PumpDesign,
    PumpTruth,
    simulate_pump,
)

DEFAULT_START = "2026-03-01"
"""Local Berlin midnight; 14 days from here end before the last Sunday of March (DST)."""
SENSOR_UNITS = {
    "bearing_temp": "degC",
    "vibration": "mm/s",
    "flow": "m3/h",
    "pressure": "bar",
    "speed": "rpm",
    "power": "kW",
}
"""Vigil's units (the stuck value and drift in truth.json are in these; the historian writes bearing_temp in degF)."""
HISTORIAN_TIME_FORMAT = "%d.%m.%Y %H:%M:%S"
CMMS_TIME_FORMAT = "%m/%d/%Y %I:%M %p"
DEGF_SCALE = 5.0 / 9.0
DEGF_OFFSET = -32.0 * 5.0 / 9.0

# (tag suffix, sensor, unit written by the historian, decimals)
TAGS: tuple[tuple[str, str, str, int], ...] = (
    ("TT_BRG", "bearing_temp", "degF", 2),
    ("VT_BRG", "vibration", "mm/s", 3),
    ("FT", "flow", "m3/h", 1),
    ("PT_DIS", "pressure", "bar", 3),
    ("ST", "speed", "rpm", 0),
    ("JT", "power", "kW", 2),
)


@dataclass(frozen=True)
class FleetParams:
    """Everything a fleet's randomness is drawn from besides the seed (the CLI's defaults)."""

    duty: DutyCycle = field(default_factory=DutyCycle)
    healthy_share: float = 0.3
    """Share of pumps that never fail (below 1, at least one of two or more pumps is not healthy)."""
    mean_onset_h: float = 96.0
    short_life_share: float = 0.4
    short_life_h: tuple[float, float] = (3.0, 12.0)
    long_life_h: tuple[float, float] = (48.0, 144.0)
    repair_h: tuple[float, float] = (4.0, 24.0)
    gaps_per_week: float = 1.0
    """Historian outages (no rows at all), 1-12 h each."""
    gap_h: tuple[float, float] = (1.0, 12.0)
    dropouts_per_week: float = 1.0
    """Per pump: its cells are empty (communication to its PLC lost) for 10-90 min."""
    dropout_min: tuple[float, float] = (10.0, 90.0)
    drift: bool = True
    stuck: bool = True


@dataclass
class Pump:
    """One pump: its truth and what its instruments reported (NaN = nothing recorded)."""

    tag: str
    """Historian prefix, e.g. ``P101``."""
    machine_id: str
    design: PumpDesign
    truth: PumpTruth
    measured: dict[str, np.ndarray]
    healthy: bool


@dataclass
class Fleet:
    seed: int
    time: np.ndarray
    """Epoch seconds (UTC) of every step."""
    interval_s: float
    pumps: list[Pump]
    site_gaps: list[tuple[int, int]]
    """Step ranges for which the historian has no rows."""
    dropouts: list[tuple[str, int, int]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    stuck: list[dict[str, Any]] = field(default_factory=list)

    def export_rng(self, purpose: int) -> np.random.Generator:
        """A fresh stream for one export file (child 1 of the seed, grandchild ``purpose``): writing twice is identical."""
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(1, purpose))))


def instrument(truth: PumpTruth, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What the transmitters report: the truth with noise (in degC; the historian converts to degF on export)."""
    n = len(truth.speed)
    running = truth.speed > 0
    speed = np.where(running, np.round(truth.speed * (1 + rng.normal(0, 0.002, n))), 0.0)
    vib = truth.vibration * np.exp(rng.normal(0, 0.06, n)) + np.abs(rng.normal(0, 0.02, n))
    flow = np.clip(truth.flow * (1 + rng.normal(0, 0.01, n)) + rng.normal(0, 0.5, n), 0.0, None)
    power = np.where(running, truth.power * (1 + rng.normal(0, 0.01, n)), 0.0)
    return {
        "bearing_temp": truth.bearing_temp + rng.normal(0, 0.15, n),
        "vibration": vib,
        "flow": flow,
        "pressure": truth.pressure + rng.normal(0, 0.03, n),
        "speed": speed,
        "power": np.clip(power, 0.0, None),
    }


def generate_fleet(
    seed: int,
    machines: int = 6,
    days: float = 14.0,
    start: str = DEFAULT_START,
    interval_s: float = 60.0,
    params: FleetParams = FleetParams(),
) -> Fleet:
    """Simulate ``machines`` pumps for ``days`` from ``start`` (local Berlin time) with ``np.random.default_rng(seed)``.

    Pump *i* draws from its own spawned stream, so adding pumps does not change the others' physics.
    """
    root = np.random.default_rng(seed)
    streams = root.spawn(machines + 2)
    fleet_rng = streams[0]  # streams[1] is the exporters' (Fleet.export_rng)
    t0 = parse_start(start, BERLIN)
    n = round(days * 86400 / interval_s)
    time = t0 + np.arange(n, dtype="int64") * int(interval_s)
    ambient = ambient_temperature(time, fleet_rng)
    healthy = fleet_rng.random(machines) < params.healthy_share
    if machines >= 2 and healthy.all() and params.healthy_share < 1.0:
        healthy[int(fleet_rng.integers(machines))] = False
    pumps: list[Pump] = []
    for i in range(machines):
        rng = streams[i + 2]
        design = PumpDesign.draw(rng)
        planner = LifePlanner(
            healthy=bool(healthy[i]),
            mean_onset_h=params.mean_onset_h,
            short_share=params.short_life_share,
            short_life_h=params.short_life_h,
            long_life_h=params.long_life_h,
        )
        room = ambient + rng.uniform(-1.0, 1.0)
        truth = simulate_pump(
            design, planner(rng), n, interval_s, room, rng, params.duty, next_life=planner, repair_h=params.repair_h
        )
        tag = f"P{101 + i}"
        pumps.append(Pump(tag, f"PMP-{tag}", design, truth, instrument(truth, rng), bool(healthy[i])))
    fleet = Fleet(seed, time, interval_s, pumps, [])
    fleet.site_gaps = episodes(
        fleet_rng, n, interval_s, params.gaps_per_week, (params.gap_h[0] * 3600, params.gap_h[1] * 3600)
    )
    for p in pumps:
        for a, b in episodes(
            fleet_rng, n, interval_s, params.dropouts_per_week, (params.dropout_min[0] * 60, params.dropout_min[1] * 60)
        ):
            for values in p.measured.values():
                values[a:b] = np.nan
            fleet.dropouts.append((p.machine_id, a, b))
    if params.drift:
        fleet.drift.append(_add_drift(fleet, fleet_rng))
    if params.stuck:
        fleet.stuck.append(_add_stuck(fleet, fleet_rng))
    return fleet


def _add_drift(fleet: Fleet, rng: np.random.Generator) -> dict[str, Any]:
    """A slow calibration drift on one pump's sensor, from a random moment in the first half of the span on."""
    pump = fleet.pumps[int(rng.integers(len(fleet.pumps)))]
    sensor, kind, rate, unit = [
        ("bearing_temp", "offset", 0.6, "degC/day"),
        ("pressure", "offset", 0.05, "bar/day"),
        ("flow", "span", -0.012, "fraction/day"),
    ][int(rng.integers(3))]
    n = len(fleet.time)
    start = int(rng.integers(0, max(1, n // 2)))
    elapsed_d = np.clip((np.arange(n) - start) * fleet.interval_s / 86400.0, 0.0, None)
    values = pump.measured[sensor]
    if kind == "offset":
        values += rate * elapsed_d
    else:
        values *= 1.0 + rate * elapsed_d
    return {
        "machine": pump.machine_id,
        "sensor": sensor,
        "start": utc_iso(fleet.time[start]),
        "kind": kind,
        "rate_per_day": rate,
        "unit": unit,
    }


def _add_stuck(fleet: Fleet, rng: np.random.Generator) -> dict[str, Any]:
    """One sensor repeats its last value for 2-8 h (a frozen transmitter or a historian interpolation bug)."""
    pump = fleet.pumps[int(rng.integers(len(fleet.pumps)))]
    sensor = ("bearing_temp", "vibration", "flow", "pressure")[int(rng.integers(4))]
    n = len(fleet.time)
    length = min(n - 1, round(rng.uniform(2.0, 8.0) * 3600 / fleet.interval_s))
    start = int(rng.integers(0, max(1, n - length)))
    values = pump.measured[sensor]
    values[start : start + length] = values[start]
    return {
        "machine": pump.machine_id,
        "sensor": sensor,
        "start": utc_iso(fleet.time[start]),
        "end": utc_iso(fleet.time[start] + length * fleet.interval_s),
        "value": float(values[start]),
        "unit": SENSOR_UNITS[sensor],
    }


# ---------------------------------------------------------------- exports


def write_exports(fleet: Fleet, out: Path, parquet: bool = False) -> dict[str, Any]:
    """Write historian.csv (and .parquet), workorders.csv, plant.toml and truth.json into ``out``; return the truth."""
    out.mkdir(parents=True, exist_ok=True)
    broken_hist = write_historian(fleet, out / "historian.csv", out / "historian.parquet" if parquet else None)
    broken_wo = write_workorders(fleet, out / "workorders.csv")
    write_plant_toml(fleet, out / "plant.toml", out)
    truth = ground_truth(fleet, {"historian.csv": broken_hist, "workorders.csv": broken_wo})
    write_json(out / "truth.json", truth)
    return truth


def historian_frame(fleet: Fleet) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """The rows the historian has (step indices), the header and each column's cells as text."""
    keep = np.ones(len(fleet.time), dtype=bool)
    for a, b in fleet.site_gaps:
        keep[a:b] = False
    steps = np.flatnonzero(keep)
    header = ["Timestamp"]
    columns: list[list[str]] = [local_strings(fleet.time[steps], BERLIN, HISTORIAN_TIME_FORMAT)]
    for p in fleet.pumps:
        for suffix, sensor, unit, decimals in TAGS:
            values = p.measured[sensor][steps]
            if unit == "degF":
                values = values * 9.0 / 5.0 + 32.0
            header.append(f"{p.tag}_{suffix}")
            columns.append(["" if math.isnan(v) else f"{v:.{decimals}f}" for v in values.tolist()])
    return steps, header, columns


def write_historian(fleet: Fleet, path: Path, parquet: Path | None = None) -> list[dict[str, Any]]:
    """The wide ``;`` export with a handful of broken rows; returns them (line numbers count the header as 1)."""
    steps, header, columns = historian_frame(fleet)
    rows = [list(r) for r in zip(*columns, strict=True)]
    rng = fleet.export_rng(0)
    picks = rng.choice(np.arange(10, len(rows)), size=min(5, max(0, len(rows) - 10)), replace=False)
    kinds = ("bad_timestamp", "bad_timestamp", "value_text", "value_text", "missing_cell")
    broken: list[dict[str, Any]] = []
    for row_index, kind in zip(sorted(int(i) for i in picks), kinds, strict=False):
        row = rows[row_index]
        entry: dict[str, Any] = {"line": row_index + 2, "utc": utc_iso(fleet.time[steps[row_index]]), "kind": kind}
        if kind == "bad_timestamp":
            row[0] = (
                "##.##.#### ##:##:##" if len([b for b in broken if b["kind"] == kind]) == 0 else "30.02.2026 12:00:00"
            )
            entry["text"] = row[0]
        elif kind == "value_text":
            column = int(rng.integers(1, len(header)))
            row[column] = "#VALUE!"
            entry["column"] = header[column]
        else:
            entry["column"] = header[-1]
            del row[-1]
        broken.append(entry)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(";".join(header) + "\n")
        f.writelines(";".join(r) + "\n" for r in rows)
    if parquet is not None:
        _write_parquet(header, rows, parquet)
    return broken


def _write_parquet(header: list[str], rows: list[list[str]], path: Path) -> None:
    """The same rows with typed columns: ``Timestamp`` stays text (same format), values float64 (text -> null)."""
    padded = [r + [""] * (len(header) - len(r)) for r in rows]
    frame = pd.DataFrame(padded, columns=header)
    for column in header[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame.to_parquet(path, index=False)


def write_workorders(fleet: Fleet, path: Path) -> list[dict[str, Any]]:
    """The CMMS export: CM/EM at each failure, REP at each restart, weekly PM, two CAL, and three broken PM rows."""
    rng = fleet.export_rng(1)
    t_end = int(fleet.time[-1])
    entries: list[tuple[int, str, str, str, str]] = []  # (utc, asset, type, cause, description)
    for p in fleet.pumps:
        asset = f"PUMP {p.tag}"
        for f in p.truth.failures:
            t_fail = int(fleet.time[f.step])
            reported = t_fail + int(rng.integers(0, 31)) * 60
            kind = "EM" if rng.random() < 0.3 else "CM"
            entries.append((reported, asset, kind, CAUSE_TEXT[f.mode], _failure_text(p.tag, f.mode, rng)))
            restart = t_fail + (f.restart_step - f.step) * int(fleet.interval_s)
            if restart <= t_end:
                entries.append((restart, asset, "REP", CAUSE_TEXT[f.mode], _repair_text(f.mode)))
        t = int(fleet.time[0]) + int(rng.uniform(0.5, 7.0) * 1440) * 60  # the CMMS keeps minutes
        while t <= t_end:
            entries.append((t, asset, "PM", "", "Weekly route: vibration check, grease top-up, seal leakage check"))
            t += int(rng.uniform(6.0, 8.0) * 1440) * 60
    for _ in range(2):
        p = fleet.pumps[int(rng.integers(len(fleet.pumps)))]
        t = int(fleet.time[int(rng.integers(len(fleet.time)))])
        entries.append(
            (t, f"PUMP {p.tag}", "CAL", "", f"Calibration of pressure transmitter {p.tag}_PT_DIS, as found/as left OK")
        )
    for kind in BROKEN_WORKORDERS:  # three extra inspections, broken once numbered
        p = fleet.pumps[int(rng.integers(len(fleet.pumps)))]
        entries.append(
            (int(fleet.time[int(rng.integers(len(fleet.time)))]), f"PUMP {p.tag}", "PM", "", f"BROKEN:{kind}")
        )
    entries.sort(key=lambda e: (e[0], e[1]))
    reported = local_strings(np.array([e[0] for e in entries], dtype="int64"), BERLIN, CMMS_TIME_FORMAT)
    wo = 4_100_000 + np.arange(len(entries)) * 3 + rng.integers(0, 3, len(entries))
    rows = [[e[1], rep, e[2], e[3], str(int(w)), e[4]] for e, rep, w in zip(entries, reported, wo, strict=True)]
    broken = _break_workorders(rows, entries)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["Asset", "Reported", "Type", "Cause", "WO", "Description"])
        writer.writerows(rows)
    return broken


BROKEN_WORKORDERS = ("unknown_asset", "bad_date", "oversized_text")


def _break_workorders(rows: list[list[str]], entries: list[tuple[int, str, str, str, str]]) -> list[dict[str, Any]]:
    """Break the three extra inspection rows (Description ``BROKEN:<kind>``); failures and repairs stay intact."""
    broken = []
    for i, row in enumerate(rows):
        kind = row[5].removeprefix("BROKEN:")
        if kind not in BROKEN_WORKORDERS:
            continue
        row[5] = "Weekly route: vibration check, grease top-up, seal leakage check"
        if kind == "unknown_asset":
            row[0] = "PUMP P999"
        elif kind == "bad_date":
            row[1] = "31.13.2026 25:00"
        else:
            row[5] = ("Inspection report follows. " + "Bearing noise nominal; " * 500)[:10_000]
        broken.append({"line": i + 2, "utc": utc_iso(entries[i][0]), "kind": kind, "wo": row[4]})
    return broken


def _failure_text(tag: str, mode: str, rng: np.random.Generator) -> str:
    texts = {
        "thrust_bearing": [
            f'Pump {tag} tripped on high bearing temperature (DE/thrust side), "smell of hot oil"',
            f"{tag} stopped by operator, thrust bearing housing too hot to touch, oil discoloured",
        ],
        "radial_bearing": [
            f"{tag} loud noise and heavy vibration at NDE bearing, pump stopped",
            f"Vibration trip on {tag}; radial bearing rumbling, metal particles in oil",
        ],
        "impeller_wear": [
            f"{tag} cannot hold process flow, discharge pressure low, cavitation noise",
            f"Low flow alarm on {tag}; impeller suspected worn, pump taken out of service",
        ],
    }[mode]
    return texts[int(rng.integers(len(texts)))]


def _repair_text(mode: str) -> str:
    return {
        "thrust_bearing": "Thrust bearing replaced, oil changed, alignment checked; pump returned to service",
        "radial_bearing": "Radial bearing replaced, shaft checked for run-out; pump returned to service",
        "impeller_wear": "Impeller and wear rings replaced; performance test OK, pump returned to service",
    }[mode]


def plant_toml(fleet: Fleet, out: Path) -> str:
    """The Vigil configuration for this fleet (paths as ``out`` was given)."""
    machines = "".join(
        f'\n[[machines]]\nid = "{p.machine_id}"\ntype = "pump"\nline = "berlin-cw"\n' for p in fleet.pumps
    )
    tags = {}
    for p in fleet.pumps:
        for suffix, sensor, unit, _ in TAGS:
            spec: dict[str, Any] = {"machine": p.machine_id, "sensor": sensor}
            if unit == "degF":
                spec |= {"scale": DEGF_SCALE, "offset": DEGF_OFFSET}
            tags[f"{p.tag}_{suffix}"] = spec | {"unit": unit}
    tag_lines = "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in tags.items())
    assets = {f"PUMP {p.tag}": p.machine_id for p in fleet.pumps}
    return f"""# Generated by tests.generators.pumps (seed {fleet.seed}): a pump station whose historian and CMMS exports
# are read by [[sources.file]] "historian" and [[sources.maintenance]] "cmms". Hard limits are the simulated
# failure thresholds.
plant = "Generated pump station (seed {fleet.seed})"

[[sites]]
id = "berlin"
name = "Berlin pump station"

[[lines]]
id = "berlin-cw"
site = "berlin"
name = "Cooling water pumps"

[machine_types.pump]
description = "Centrifugal pump, two-speed duty (1480/2950 rpm)"
running_sensor = "speed"
off_below = 100.0
[machine_types.pump.sensors]
bearing_temp = {{ unit = "degC", range = {{ min = -20, max = 150 }}, limits = {{ high = {TEMP_LIMIT_C} }}, key = true }}
vibration = {{ unit = "mm/s", range = {{ min = 0, max = 50 }}, limits = {{ high = {VIB_LIMIT_MM_S} }}, key = true }}
flow = {{ unit = "m3/h", range = {{ min = 0, max = 600 }}, limits = {{ low = {FLOW_LOW_M3_H} }}, key = true }}
pressure = {{ unit = "bar", range = {{ min = 0, max = 25 }} }}
speed = {{ unit = "rpm", range = {{ min = 0, max = 3600 }} }}
power = {{ unit = "kW", range = {{ min = 0, max = 200 }} }}
[machine_types.pump.what_to_check]
bearing_temp = ["Thrust bearing: oil level and condition", "Bearing housing temperature by hand-held probe"]
vibration = ["Radial bearing noise and play", "Coupling alignment", "Impeller balance"]
flow = ["Impeller and wear rings", "Suction strainer", "Discharge valve position"]
{machines}
# ---------------------------------------------------------------- the historian export (wide, local time, degF)
[[sources.file]]
name = "historian"
path = {toml_value(str(out / "historian.csv"))}
delimiter = ";"
[sources.file.mapping]
layout = "wide"
time = {toml_value({"column": "Timestamp", "format": HISTORIAN_TIME_FORMAT, "zone": BERLIN})}
[sources.file.mapping.tags]
{tag_lines}
# ---------------------------------------------------------------- the maintenance system (CMMS) export
[[sources.maintenance]]
name = "cmms"
path = {toml_value(str(out / "workorders.csv"))}
delimiter = ","
[sources.maintenance.mapping]
machine = "Asset"
time = {toml_value({"column": "Reported", "format": CMMS_TIME_FORMAT, "zone": BERLIN})}
kind = "Type"
kinds = {toml_value({"cm": "failure", "em": "failure", "rep": "repair", "pm": "inspection", "cal": "ignore"})}
failure_mode = "Cause"
work_order = "WO"
text = "Description"
machines = {toml_value(assets)}

[windows]
kind = "tumbling"
size_s = 600
grace_s = 60

[models]
horizon_s = 172800     # 48 h
min_lead_s = 14400     # 4 h
threshold = 0.5
"""


def write_plant_toml(fleet: Fleet, path: Path, out: Path) -> None:
    path.write_text(plant_toml(fleet, out), encoding="utf-8")


def ground_truth(fleet: Fleet, broken: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Everything a scorer needs, times in UTC."""
    t, dt_s = fleet.time, int(fleet.interval_s)
    end = int(t[-1]) + dt_s
    failures, repairs, open_onsets = [], [], []
    for p in fleet.pumps:
        failed_onsets = set()
        for f in p.truth.failures:
            failed_onsets.add(f.onset_step)
            failures.append(
                {
                    "machine": p.machine_id,
                    "tag": p.tag,
                    "time": utc_iso(t[f.step]),
                    "mode": f.mode,
                    "cause": CAUSE_TEXT[f.mode],
                    "onset": utc_iso(t[f.onset_step]),
                    "life_h": round(f.life_h, 2),
                    "threshold": f.threshold,
                }
            )
            restart = int(t[f.step]) + (f.restart_step - f.step) * dt_s
            if restart < end:
                repairs.append({"machine": p.machine_id, "time": utc_iso(restart), "mode": f.mode})
        for step, mode in p.truth.onsets:
            if step not in failed_onsets:
                open_onsets.append({"machine": p.machine_id, "onset": utc_iso(t[step]), "mode": mode})
    failures.sort(key=lambda f: (f["time"], f["machine"]))
    repairs.sort(key=lambda r: (r["time"], r["machine"]))
    return {
        "generator": "tests.generators.pumps",
        "seed": fleet.seed,
        "zone": BERLIN,
        "start": utc_iso(t[0]),
        "end": utc_iso(end),
        "interval_s": dt_s,
        "machines": [p.machine_id for p in fleet.pumps],
        "healthy": [p.machine_id for p in fleet.pumps if p.healthy],
        "limits": {
            "bearing_temp_high_degC": TEMP_LIMIT_C,
            "vibration_high_mm_s": VIB_LIMIT_MM_S,
            "flow_low_m3_h": FLOW_LOW_M3_H,
        },
        "failures": failures,
        "repairs": repairs,
        "onsets_without_failure": open_onsets,
        "drift": fleet.drift,
        "stuck": fleet.stuck,
        "gaps": [
            {"scope": "historian", "start": utc_iso(t[a]), "end": utc_iso(int(t[a]) + (b - a) * dt_s)}
            for a, b in fleet.site_gaps
        ]
        + [
            {"scope": m, "start": utc_iso(t[a]), "end": utc_iso(int(t[a]) + (b - a) * dt_s)}
            for m, a, b in fleet.dropouts
        ],
        "dst_transitions": dst_transitions(int(t[0]), end, BERLIN),
        "broken_rows": broken,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.generators.pumps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--machines", type=int, default=6)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--start", default=DEFAULT_START, help="local Berlin date or date-time (default %(default)s)")
    parser.add_argument("--interval-s", type=float, default=60.0)
    parser.add_argument("--healthy-share", type=float, default=FleetParams.healthy_share)
    parser.add_argument("--parquet", action="store_true", help="also write historian.parquet")
    args = parser.parse_args(argv)
    params = FleetParams(healthy_share=args.healthy_share)
    fleet = generate_fleet(args.seed, args.machines, args.days, args.start, args.interval_s, params)
    truth = write_exports(fleet, args.out, parquet=args.parquet)
    print(
        f"wrote {args.out}: {len(fleet.pumps)} pumps, {len(fleet.time)} steps, {len(truth['failures'])} failures, "
        f"{len(truth['repairs'])} repairs, {len(truth['gaps'])} gaps, {len(truth['dst_transitions'])} DST change(s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
