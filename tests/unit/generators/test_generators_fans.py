"""The held-out fan generator: seeded determinism, its physics (fan laws under a VFD, belt slip, failure thresholds,
repairs and preventive work), the truth matching the plant file, and the exports read by ``vigil backtest``."""

from __future__ import annotations

import csv
import datetime as dt
import json
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backtest.cli import main as backtest_main
from tests.generators import fan_physics as fp
from tests.generators.fans import POINTS, SYDNEY, FanFleet, generate_fleet, write_exports
from vigil.config import load_config

PARAMS = fp.FanParams(healthy_share=0.0, mean_onset_h=6.0, short_life_share=1.0, gaps_per_week=3.0)


@pytest.fixture(scope="module")
def fleet() -> FanFleet:
    return generate_fleet(4, machines=3, days=3, params=PARAMS)


@pytest.fixture(scope="module")
def out(fleet: FanFleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fans")
    write_exports(fleet, folder)
    return folder


@pytest.fixture(scope="module")
def truth(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "truth.json").read_text())
    return data


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def test_same_seed_writes_identical_files(tmp_path: Path) -> None:
    def files(seed: int, name: str) -> dict[str, bytes]:
        folder = tmp_path / name
        write_exports(generate_fleet(seed, machines=2, days=1, params=PARAMS), folder)
        return {f.name: f.read_bytes().replace(str(folder).encode(), b"OUT") for f in sorted(folder.iterdir())}

    assert files(4, "a") == files(4, "b")
    assert files(4, "a")["historian.csv"] != files(5, "c")["historian.csv"]
    # One stream per machine: a third fan does not change the first two.
    two, three = generate_fleet(8, machines=2, days=1), generate_fleet(8, machines=3, days=1)
    for a, b in zip(two.fans, three.fans[:2], strict=True):
        np.testing.assert_array_equal(a.truth["airflow"], b.truth["airflow"])


def test_the_vfd_holds_airflow_as_the_filter_loads_and_a_slack_belt_costs_speed_and_power() -> None:
    n = 600
    setpoint = np.full(n, 0.9)

    def run(pm: dict[int, tuple[str, int]]) -> dict[str, np.ndarray]:
        series, failures, _ = fp.simulate_fan(setpoint, np.zeros(n, dtype=bool), np.full(n, 24.0), pm, 60.0,
                                              np.random.default_rng(1), fp.FanParams(), healthy=True)  # fmt: skip
        assert failures == []
        return series

    s = run({})
    np.testing.assert_allclose(s["airflow"], 0.9 * fp.Q_DESIGN, rtol=1e-9)
    loaded = s["filter_load"] > s["filter_load"][0]
    assert loaded[-1] and s["filter_dp"][-1] > s["filter_dp"][0] and s["power"][-1] > s["power"][0]
    assert s["motor_speed"][-1] > s["motor_speed"][0], "more resistance: the VFD speeds up for the same airflow"
    # A filter change (a 30-min planned stop) resets the loading: same airflow at a lower dP after the restart.
    after = run({300: ("filter_change", 30)})
    assert (after["running"][300:330] == 0).all() and after["filter_load"][330] < s["filter_load"][330]
    assert after["filter_dp"][400] < s["filter_dp"][400]
    # The bearing warms toward room + ~16 K n^1.5 + 2 K (first order, 25-40 min): not wear.
    nf = s["fan_speed"][-1] / fp.FAN_RPM
    assert s["bearing_temp"][-1] == pytest.approx(24.0 + 16.0 * nf**1.5 + 2.0, abs=0.5)
    assert s["bearing_temp"][0] < s["bearing_temp"][30] < s["bearing_temp"][-1]
    ratio = s["fan_speed"] / s["motor_speed"]
    assert ratio[-1] < ratio[0] < fp.RATIO, "the belt slips, more as it stretches"


def test_every_failure_is_on_its_own_threshold_and_repairs_reset_the_fan(fleet: FanFleet) -> None:
    column = {"belt_wear": ("slip", fp.SLIP_FAIL), "bearing_defect": ("vib_envelope", fp.ENVELOPE_FAIL_G),
              "impeller_imbalance": ("vib_1x", fp.VIB_TRIP_MM_S), "filter_clog": ("filter_dp", fp.FILTER_DP_FAIL_PA)}  # fmt: skip
    seen = set()
    for fan in fleet.fans:
        t, life_start = fan.truth, 0
        for f in fan.failures:
            k, (name, limit) = f["step"], column[f["mode"]]
            seen.add(f["mode"])
            assert t[name][k] >= limit and (t[name][life_start:k] < limit).all()
            assert life_start <= f["onset_step"] < k and t["running"][k] == 1
            restart = f["restart_step"]
            assert 4 * 60 <= restart - k - 1 <= 36 * 60
            assert (t["running"][k + 1 : min(restart, len(t["running"]))] == 0).all()
            if restart < len(t["running"]):
                assert t["defect"][restart] == 0.0 and t["filter_load"][restart] < 1e-3  # one step of loading
                assert t["tension"][restart] == pytest.approx(1.0, abs=1e-3)
            life_start = restart
    assert len(seen) >= 3, seen


def test_the_truth_matches_the_plant_file_and_the_measured_series(
    out: Path, fleet: FanFleet, truth: dict[str, Any]
) -> None:
    config = load_config(out / "plant.toml", environ={})
    assert sorted(config.machines_by_id) == sorted(truth["machines"])
    sensors = config.machines_by_id[truth["machines"][0]].sensors
    assert set(sensors) == {sensor for _, sensor, _, _ in POINTS}
    assert sensors["filter_dp"].limits.high == truth["limits"]["filter_dp_high_pa"]
    assert sensors["vib_1x"].limits.high == truth["limits"]["vib_1x_high_mm_s"]
    assert sensors["vib_envelope"].limits.high == truth["limits"]["vib_envelope_high_g"]
    assert config.machine_types["belt_fan"].running_sensor == "motor_speed"
    assert (
        config.windows.size_s == 600 and config.models.horizon_s == 48 * 3600 and config.models.min_lead_s == 4 * 3600
    )
    for fan in fleet.fans:  # every measured value a good row carries is inside the configured range
        for sensor, x in fan.measured.items():
            assert sensors[sensor].range.min <= x.min() and x.max() <= sensors[sensor].range.max * (
                1000 if sensor == "airflow" else 1
            )
    assert truth["failures"] and truth["repairs"] and not truth["healthy"]
    assert {(f["machine"], f["mode"]) for f in truth["failures"]} == {
        (fan.machine_id, f["mode"]) for fan in fleet.fans for f in fan.failures
    }
    assert all(utc(f["onset"]) < utc(f["time"]) for f in truth["failures"])
    assert {p["kind"] for p in truth["preventive"]} <= {"belt_retension", "filter_change"}
    by_id = {fan.machine_id: fan for fan in fleet.fans}
    assert sorted(f["kind"] for f in truth["sensor_faults"]) == ["dropout", "spike", "stuck"]
    for fault in truth["sensor_faults"]:
        x = by_id[fault["machine"]].measured[fault["sensor"]]
        a, b = (utc(fault["start"]) - int(fleet.time[0])) // 60, (utc(fault["end"]) - int(fleet.time[0])) // 60
        if fault["kind"] == "stuck":
            assert np.ptp(x[a:b]) == 0.0 and b - a >= 120
        elif fault["kind"] == "dropout":
            assert (x[a:b] == fp.SPANS[fault["sensor"]][0]).all()
        else:
            steps = [(utc(s) - int(fleet.time[0])) // 60 for s in fault["times"]]
            assert (x[steps] == fp.SPANS[fault["sensor"]][1]).all()


def test_healthy_fans_never_fail_and_the_drift_is_on_a_healthy_fan() -> None:
    fl = generate_fleet(3, machines=4, days=6)
    (drift,) = fl.drift
    (fan,) = [f for f in fl.fans if f.machine_id == drift["machine"]]
    assert fan.healthy and fan.failures == []
    assert all(f.failures == [] for f in fl.fans if f.healthy)


def test_historian_is_a_long_bms_export_in_sydney_time_with_gaps(out: Path, truth: dict[str, Any]) -> None:
    with open(out / "historian.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Timestamp", "Point", "Value", "Units"]
    broken = {b["line"] for b in truth["broken_rows"]["historian.csv"]}
    assert len(broken) == 4
    zone = zoneinfo.ZoneInfo(SYDNEY)
    seen: dict[str, set[int]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if line in broken:
            continue
        ts = int(dt.datetime.strptime(row[0], "%d/%m/%Y %H:%M").replace(tzinfo=zone).timestamp())
        seen.setdefault(row[1].split(".")[0], set()).add(ts)
    assert truth["gaps"]
    for gap in truth["gaps"]:
        for device, times in seen.items():
            if gap["scope"] in ("historian", "RPA-" + device.removeprefix("RPA:")):
                assert times.isdisjoint(range(utc(gap["start"]), utc(gap["end"]), 60))


def test_vigil_backtest_reads_the_exports_refusing_only_the_broken_rows(
    out: Path, truth: dict[str, Any], tmp_path: Path
) -> None:
    assert backtest_main(["--config", str(out / "plant.toml"), "--out", str(tmp_path), "--json"]) == 0
    res = json.loads((tmp_path / "backtest.json").read_text())
    inp = res["input"]
    lines = (out / "historian.csv").read_text(encoding="utf-8").count("\n") - 1
    assert inp["rows"] == lines and inp["readings"] == lines - 4
    assert inp["refused"] == {"bad_timestamp": 1, "wrong_type": 1, "unknown_tag": 1, "unknown_machine": 1}
    assert sorted(r["row"] for r in inp["refusals"]) == sorted(b["line"] for b in truth["broken_rows"]["historian.csv"])
    assert inp["unmapped_columns"] == [] and res["flags"] == {}, "no good reading flagged out of range"
    m = inp["maintenance"]
    with open(out / "workorders.csv", encoding="utf-8", newline="") as f:
        records = list(csv.DictReader(f))
    assert m["ignored"] == sum(r["NotifType"] == "ADM" for r in records)
    assert m["imported"] == len(records) - m["ignored"] - 3
    assert sorted(r["row"] for r in m["refusals"]) == sorted(b["line"] for b in truth["broken_rows"]["workorders.csv"])
    assert len(res["failures"]) == len(truth["failures"])
    assert res["machines"] == len(truth["machines"])
