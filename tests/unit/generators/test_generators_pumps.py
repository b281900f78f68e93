"""The independent pump generator: seeded determinism, the physics it promises, and the export formats."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.generators import pumps
from tests.generators.pump_physics import (
    FLOW_LOW_M3_H,
    MODES,
    N_NOM,
    TEMP_LIMIT_C,
    VIB_LIMIT_MM_S,
    LifePlan,
    PumpDesign,
    bearing_target,
    simulate_pump,
)
from tests.generators.pumps import Fleet, FleetParams, generate_fleet, write_exports
from vigil.config import load_config

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
# Failing pumps, short onsets and frequent outages, so that four pumps over four days show every feature.
PARAMS = FleetParams(healthy_share=0.0, mean_onset_h=12.0, gaps_per_week=3.0, dropouts_per_week=3.0)
SEED = 5


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(SEED, machines=4, days=4, params=PARAMS)


@pytest.fixture(scope="module")
def out(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pumps")
    write_exports(fleet, folder, parquet=True)
    return folder


@pytest.fixture(scope="module")
def truth(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "truth.json").read_text())
    return data


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def design() -> PumpDesign:
    return PumpDesign(q_nom=250.0, h_nom=60.0, p_nom=55.0, k_bearing=35.0, tau_s=2400.0, vib_base=2.2, suction_bar=1.5)


# ---------------------------------------------------------------- determinism


def test_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    def files(seed: int, name: str) -> dict[str, bytes]:
        folder = tmp_path / name
        write_exports(generate_fleet(seed, machines=2, days=1, params=PARAMS), folder, parquet=False)
        # plant.toml names the files by the folder it was written to; everything else must match byte for byte.
        return {f.name: f.read_bytes().replace(str(folder).encode(), b"OUT") for f in sorted(folder.iterdir())}

    first, again, other = files(11, "a"), files(11, "b"), files(12, "c")
    assert set(first) == {"historian.csv", "workorders.csv", "plant.toml", "truth.json"}
    assert first == again
    assert first["historian.csv"] != other["historian.csv"]


def test_writing_the_same_fleet_twice_gives_the_same_files(tmp_path: Path) -> None:
    fleet = generate_fleet(2, machines=2, days=1, params=PARAMS)
    for name in ("a", "b"):
        pumps.write_historian(fleet, tmp_path / f"{name}.csv")
        pumps.write_workorders(fleet, tmp_path / f"{name}-wo.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a-wo.csv").read_bytes() == (tmp_path / "b-wo.csv").read_bytes()


def test_a_pump_does_not_change_when_pumps_are_added() -> None:
    small, large = generate_fleet(4, machines=2, days=1), generate_fleet(4, machines=3, days=1)
    for a, b in zip(small.pumps, large.pumps[:2], strict=True):
        np.testing.assert_array_equal(a.truth.bearing_temp, b.truth.bearing_temp)
        np.testing.assert_array_equal(a.truth.speed, b.truth.speed)


# ---------------------------------------------------------------- physics


def test_a_step_up_in_speed_shows_a_first_order_warm_up_that_is_not_wear(fleet: Fleet) -> None:
    steps_checked = 0
    for p in fleet.pumps:
        t, tau_steps = p.truth, round(p.design.tau_s / fleet.interval_s)
        ups = np.flatnonzero((t.speed[1:] == N_NOM) & (t.speed[:-1] == 1480.0)) + 1
        for k in ups:
            end = k + tau_steps
            if end >= len(t.speed) or (t.speed[k:end] != N_NOM).any() or any(t.wear[m][end] > 0 for m in MODES):
                continue
            before = t.bearing_temp[k - 1]
            target = bearing_target(p.design, 1.0, float(t.ambient[end]), 0.0, 0.0)
            assert target - before > 15.0  # the step raises the equilibrium by (1 - 0.25) k ~ 26 K
            assert np.all(np.diff(t.bearing_temp[k:end]) > -0.05)  # rising (ambient moves a little)
            # After one time constant, 1 - 1/e of the way (ambient drifts a few tenths of a kelvin meanwhile).
            covered = (t.bearing_temp[end] - before) / (target - before)
            assert 0.55 < covered < 0.72
            steps_checked += 1
    assert steps_checked >= 3


@pytest.mark.parametrize(
    ("mode", "sensor", "crossed"),
    [
        ("thrust_bearing", "bearing_temp", lambda v: v >= TEMP_LIMIT_C),
        ("radial_bearing", "vibration", lambda v: v >= VIB_LIMIT_MM_S),
        ("impeller_wear", "flow", lambda v: v <= FLOW_LOW_M3_H),
    ],
)
def test_each_mode_fails_when_its_physical_threshold_is_crossed(mode: Any, sensor: str, crossed: Any) -> None:
    n = 4 * 1440
    h = simulate_pump(
        design(), LifePlan(mode=mode, onset_h=2.0, life_h=8.0), n, 60.0, np.full(n, 18.0), np.random.default_rng(2)
    )
    assert h.failures, "an 8 h life must end within 4 days"
    f = h.failures[0]
    series = {"bearing_temp": h.bearing_temp, "vibration": h.vibration, "flow": h.flow}[sensor]
    assert f.threshold.startswith(sensor)
    assert crossed(series[f.step])
    running_before = (h.speed[: f.step] > 0) & (np.arange(f.step) >= f.onset_step)
    assert not any(crossed(v) for v in series[: f.step][running_before])  # the first crossing, not a later one
    assert h.wear[mode][f.step] > h.wear[mode][f.onset_step] > 0
    # Flow and pressure fall / temperature and vibration rise at a given speed as the wear grows.
    same_speed = np.flatnonzero((h.speed == h.speed[f.step]) & (np.arange(n) <= f.step))
    early, late = same_speed[0], same_speed[-1]
    if sensor == "flow":
        assert h.flow[late] < h.flow[early] and h.power[late] > h.power[early]
    else:
        assert series[late] > series[early]


def test_a_failure_stops_the_pump_for_the_repair_and_the_restart_resets_the_wear(fleet: Fleet) -> None:
    checked = 0
    for p in fleet.pumps:
        for f in p.truth.failures:
            repair_h = (f.restart_step - f.step - 1) * fleet.interval_s / 3600
            assert 4.0 <= repair_h <= 24.0 + 1 / 60
            stop_end = min(f.restart_step, len(fleet.time))
            assert (p.truth.speed[f.step + 1 : stop_end] == 0).all()
            if f.restart_step < len(fleet.time):
                assert all(p.truth.wear[m][f.restart_step] == 0.0 for m in MODES)
                assert p.truth.speed[f.restart_step] > 0
                checked += 1
    assert checked >= 1


def test_healthy_pumps_never_fail_and_stay_inside_the_limits() -> None:
    fleet = generate_fleet(9, machines=3, days=3, params=FleetParams(healthy_share=1.0))
    for p in fleet.pumps:
        running = p.truth.speed > 0
        assert p.healthy and not p.truth.failures
        assert p.truth.bearing_temp.max() < TEMP_LIMIT_C - 20
        assert p.truth.vibration.max() < VIB_LIMIT_MM_S / 3
        assert p.truth.flow[running].min() > FLOW_LOW_M3_H * 1.1


def test_the_drift_and_the_stuck_sensor_are_in_the_measurements_not_the_physics(fleet: Fleet) -> None:
    (drift,), (stuck,) = fleet.drift, fleet.stuck
    pump = next(p for p in fleet.pumps if p.machine_id == drift["machine"])
    sensor = drift["sensor"]
    measured, physical = pump.measured[sensor], getattr(pump.truth, sensor)
    start = int(np.searchsorted(fleet.time, utc(drift["start"])))
    days = (np.arange(len(fleet.time)) - start) * fleet.interval_s / 86400
    usable = np.isfinite(measured) & (physical > 50 if sensor == "flow" else True)
    if stuck["machine"] == pump.machine_id and stuck["sensor"] == sensor:
        usable &= (fleet.time < utc(stuck["start"])) | (fleet.time >= utc(stuck["end"]))
    last = np.flatnonzero(usable)[-120:]
    before = np.flatnonzero(usable[:start])

    def residual(i: np.ndarray) -> np.ndarray:
        return np.asarray(measured[i] / physical[i] - 1 if drift["kind"] == "span" else measured[i] - physical[i])

    assert days[last].mean() > 1.5
    assert residual(last).mean() == pytest.approx(drift["rate_per_day"] * days[last].mean(), rel=0.25)
    if len(before) > 60:
        assert abs(residual(before).mean()) < abs(drift["rate_per_day"]) / 4
    pump = next(p for p in fleet.pumps if p.machine_id == stuck["machine"])
    inside = (fleet.time >= utc(stuck["start"])) & (fleet.time < utc(stuck["end"]))
    values = pump.measured[stuck["sensor"]][inside]
    values = values[np.isfinite(values)]
    assert len(values) > 60 and (values == stuck["value"]).all()
    outside = pump.measured[stuck["sensor"]][~inside][:2000]
    assert np.nanmax(outside) > np.nanmin(outside)


# ---------------------------------------------------------------- historian.csv


def read_lines(path: Path) -> list[list[str]]:
    return [line.rstrip("\n").split(";") for line in path.read_text(encoding="utf-8").splitlines(keepends=True)]


def test_historian_is_wide_semicolon_local_time_with_documented_tags(
    out: Path, fleet: Fleet, truth: dict[str, Any]
) -> None:
    lines = read_lines(out / "historian.csv")
    header = lines[0]
    assert header[0] == "Timestamp"
    assert header[1:7] == ["P101_TT_BRG", "P101_VT_BRG", "P101_FT", "P101_PT_DIS", "P101_ST", "P101_JT"]
    assert len(header) == 1 + 6 * len(fleet.pumps)
    broken = {b["line"] for b in truth["broken_rows"]["historian.csv"]}
    times = [
        dt.datetime.strptime(row[0], "%d.%m.%Y %H:%M:%S").replace(tzinfo=BERLIN).timestamp()
        for i, row in enumerate(lines[1:], start=2)
        if i not in broken
    ]
    assert np.all(np.diff(times) > 0) and set(np.diff(times).tolist()) >= {60.0}
    # Bearing temperature is written in degF: back in degC it is the instrument's reading.
    row = next(i for i in range(1, 100) if lines[i][1])
    step = int(np.searchsorted(fleet.time, times[row - 1]))
    assert (float(lines[row][1]) - 32) * 5 / 9 == pytest.approx(fleet.pumps[0].measured["bearing_temp"][step], abs=0.01)


def test_historian_gaps_are_missing_rows_and_empty_cells(out: Path, fleet: Fleet, truth: dict[str, Any]) -> None:
    lines = read_lines(out / "historian.csv")
    written = {r[0] for r in lines[1:]}
    site_gaps = [g for g in truth["gaps"] if g["scope"] == "historian"]
    dropouts = [g for g in truth["gaps"] if g["scope"].startswith("PMP-")]
    assert site_gaps and dropouts
    for g in site_gaps:
        inside = pumps.local_strings(
            np.arange(utc(g["start"]), utc(g["end"]), 60), "Europe/Berlin", pumps.HISTORIAN_TIME_FORMAT
        )
        assert written.isdisjoint(inside)
    by_time = {r[0]: r for r in lines[1:]}
    g = dropouts[0]
    column = 1 + 6 * [p.machine_id for p in fleet.pumps].index(g["scope"])
    inside = pumps.local_strings(np.array([utc(g["start"])]), "Europe/Berlin", pumps.HISTORIAN_TIME_FORMAT)[0]
    if inside in by_time:  # unless a site gap swallowed it
        assert by_time[inside][column : column + 6] == [""] * 6


def test_historian_has_the_documented_broken_rows(out: Path, truth: dict[str, Any]) -> None:
    lines = read_lines(out / "historian.csv")
    broken = truth["broken_rows"]["historian.csv"]
    assert sorted(b["kind"] for b in broken) == [
        "bad_timestamp",
        "bad_timestamp",
        "missing_cell",
        "value_text",
        "value_text",
    ]
    for b in broken:
        row = lines[b["line"] - 1]
        if b["kind"] == "bad_timestamp":
            assert row[0] == b["text"]
            with pytest.raises(ValueError):
                dt.datetime.strptime(row[0], "%d.%m.%Y %H:%M:%S")
        elif b["kind"] == "value_text":
            assert row[lines[0].index(b["column"])] == "#VALUE!"
        else:
            assert len(row) == len(lines[0]) - 1
    clean = [row for i, row in enumerate(lines[1:], start=2) if i not in {b["line"] for b in broken}]
    assert all(len(row) == len(lines[0]) and "#VALUE!" not in row for row in clean)


def test_historian_parquet_holds_the_same_rows_typed(out: Path) -> None:
    frame = pd.read_parquet(out / "historian.parquet")
    lines = read_lines(out / "historian.csv")
    assert list(frame.columns) == lines[0]
    assert len(frame) == len(lines) - 1
    assert frame["Timestamp"].tolist() == [row[0] for row in lines[1:]]
    assert frame["P101_ST"].dtype == np.float64


def test_a_span_over_the_autumn_dst_change_repeats_the_local_hour(tmp_path: Path) -> None:
    fleet = generate_fleet(
        1, machines=1, days=1, start="2026-10-24T12:00", params=FleetParams(gaps_per_week=0.0, dropouts_per_week=0.0)
    )
    pumps.write_historian(fleet, tmp_path / "h.csv")
    stamps = [row[0] for row in read_lines(tmp_path / "h.csv")[1:]]
    assert stamps.count("25.10.2026 02:30:00") == 2
    assert stamps.count("25.10.2026 03:30:00") == 1
    spring = generate_fleet(1, machines=1, days=1, start="2026-03-28T12:00", params=FleetParams(gaps_per_week=0.0))
    pumps.write_historian(spring, tmp_path / "s.csv")
    assert not [row for row in read_lines(tmp_path / "s.csv")[1:] if row[0].startswith("29.03.2026 02:")]


# ---------------------------------------------------------------- workorders.csv


def read_workorders(out: Path) -> list[dict[str, str]]:
    with open(out / "workorders.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def local_cmms(text: str) -> int:
    return int(dt.datetime.strptime(text, "%m/%d/%Y %I:%M %p").replace(tzinfo=BERLIN).timestamp())


def test_every_failure_has_a_corrective_work_order_and_every_repair_a_rep_row(out: Path, truth: dict[str, Any]) -> None:
    rows = read_workorders(out)
    assert list(rows[0]) == ["Asset", "Reported", "Type", "Cause", "WO", "Description"]
    assert truth["failures"] and truth["repairs"]
    for f in truth["failures"]:
        matches = [
            r for r in rows
            if r["Asset"] == f"PUMP {f['tag']}" and r["Type"] in ("CM", "EM") and r["Cause"] == f["cause"]
            and 0 <= local_cmms(r["Reported"]) - utc(f["time"]) <= 30 * 60
        ]  # fmt: skip
        assert len(matches) == 1, f
    reps = [r for r in rows if r["Type"] == "REP"]
    assert len(reps) == len(truth["repairs"])
    for r, rep in zip(sorted(reps, key=lambda r: local_cmms(r["Reported"])), truth["repairs"], strict=True):
        assert local_cmms(r["Reported"]) == utc(rep["time"])
    assert {r["Type"] for r in rows} == {"CM", "EM", "REP", "PM", "CAL"} - (
        {"EM"} if len(truth["failures"]) < 3 else set()
    )
    assert len({r["WO"] for r in rows}) == len(rows)


def test_workorders_have_the_documented_broken_rows(out: Path, truth: dict[str, Any]) -> None:
    rows = read_workorders(out)
    broken = {b["kind"]: b for b in truth["broken_rows"]["workorders.csv"]}
    assert set(broken) == {"unknown_asset", "bad_date", "oversized_text"}
    by_line = {i: r for i, r in enumerate(rows, start=2)}
    assert by_line[broken["unknown_asset"]["line"]]["Asset"] == "PUMP P999"
    with pytest.raises(ValueError):
        local_cmms(by_line[broken["bad_date"]["line"]]["Reported"])
    assert len(by_line[broken["oversized_text"]["line"]]["Description"]) == 10_000
    assert all(by_line[b["line"]]["WO"] == b["wo"] for b in broken.values())


# ---------------------------------------------------------------- plant.toml


def test_plant_toml_passes_vigil_config_check_and_maps_every_column(out: Path, fleet: Fleet) -> None:
    config = load_config(out / "plant.toml", environ={})
    assert [m.id for m in config.machines] == ["PMP-P101", "PMP-P102", "PMP-P103", "PMP-P104"]
    pump = config.machine_types["pump"]
    assert pump.running_sensor == "speed" and pump.off_below == 100.0
    assert pump.sensors["bearing_temp"].limits.high == TEMP_LIMIT_C
    assert pump.sensors["vibration"].limits.high == VIB_LIMIT_MM_S
    assert pump.sensors["flow"].limits.low == FLOW_LOW_M3_H
    (historian,) = config.sources.file
    assert historian.delimiter == ";" and historian.mapping.layout == "wide"
    assert set(historian.mapping.tags) == set(read_lines(out / "historian.csv")[0][1:])
    tt = historian.mapping.tags["P101_TT_BRG"]
    assert 212.0 * tt.scale + tt.offset == pytest.approx(100.0)
    (cmms,) = config.sources.maintenance
    codes = {r["Type"].lower() for r in read_workorders(out)}
    assert codes <= set(cmms.mapping.kinds)
    assert cmms.mapping.machines == {f"PUMP {p.tag}": p.machine_id for p in fleet.pumps}
    assert (config.windows.size_s, config.windows.grace_s) == (600, 60)


def test_the_cli_writes_the_four_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pumps.main(["--out", str(tmp_path), "--seed", "3", "--machines", "2", "--days", "1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["historian.csv", "plant.toml", "truth.json", "workorders.csv"]
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert (truth["seed"], truth["machines"], truth["start"]) == (3, ["PMP-P101", "PMP-P102"], "2026-02-28T23:00:00Z")
    assert truth["dst_transitions"] == [] and math.isclose(truth["interval_s"], 60)
    assert "wrote" in capsys.readouterr().out
