"""The independent motor generator: determinism, I^2R heating, insulation ageing, failures, the long export."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.generators import motors
from tests.generators.motors import (
    I_FULL_LOAD,
    VIB_LIMIT_MM_S,
    WINDING_LIMIT_C,
    MotorFleet,
    MotorParams,
    generate_fleet,
    simulate_motor,
    write_exports,
)
from vigil.config import load_config

PARAMS = MotorParams(healthy_share=0.0, mean_onset_h=12.0, short_life_share=1.0, gaps_per_week=3.0)


@pytest.fixture(scope="module")
def fleet() -> MotorFleet:
    return generate_fleet(2, machines=3, days=5, params=PARAMS)  # both modes fail, 3 outages


@pytest.fixture(scope="module")
def out(fleet: MotorFleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("motors")
    write_exports(fleet, folder)
    return folder


@pytest.fixture(scope="module")
def truth(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "truth.json").read_text())
    return data


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def run(load: float, hours: float = 8.0, healthy: bool = True, seed: int = 1) -> dict[str, np.ndarray]:
    n = round(hours * 60)
    series, _ = simulate_motor(
        np.full(n, load), np.full(n, 20.0), 60.0, np.random.default_rng(seed), MotorParams(), healthy
    )
    return series


def test_same_seed_writes_identical_files(tmp_path: Path) -> None:
    def files(seed: int, name: str) -> dict[str, bytes]:
        folder = tmp_path / name
        write_exports(generate_fleet(seed, machines=2, days=1, params=PARAMS), folder)
        return {f.name: f.read_bytes().replace(str(folder).encode(), b"OUT") for f in sorted(folder.iterdir())}

    assert files(4, "a") == files(4, "b")
    assert files(4, "a")["historian.csv"] != files(5, "c")["historian.csv"]


def test_winding_heats_with_the_square_of_the_current_and_ages_faster_when_hot() -> None:
    full, half = run(1.0), run(0.5)
    for s, load in ((full, 1.0), (half, 0.5)):
        current = I_FULL_LOAD * np.sqrt(0.35**2 + (0.94 * load) ** 2)
        assert s["current"][-1] == pytest.approx(current)
        # After 8 h (> 10 time constants) the winding sits at ambient + 80 K (I/I_fl)^2 + 5 K.
        assert s["winding_temp"][-1] == pytest.approx(20.0 + 80.0 * (current / I_FULL_LOAD) ** 2 + 5.0, abs=0.1)
    hot, cool = full["winding_temp"][-1], half["winding_temp"][-1]
    rate_hot = full["insulation_used"][-1] - full["insulation_used"][-61]
    rate_cool = half["insulation_used"][-1] - half["insulation_used"][-61]
    assert rate_hot / rate_cool == pytest.approx(2 ** ((hot - cool) / 10), rel=0.02)  # the 10-kelvin rule
    assert full["speed"][-1] == pytest.approx(1470.0) and half["speed"][-1] == pytest.approx(1485.0)


def test_failures_cross_their_thresholds_and_repairs_reset_the_motor(fleet: MotorFleet) -> None:
    seen = set()
    for m in fleet.motors:
        t = m.truth
        for f in m.failures:
            k = f["step"]
            seen.add(f["mode"])
            if f["mode"] == "winding_insulation":
                assert t["insulation_used"][k] >= 1.0 > t["insulation_used"][k - 1]
            else:
                assert t["vibration"][k] >= VIB_LIMIT_MM_S
                after_onset = np.arange(f["onset_step"], k)
                running = after_onset[t["speed"][after_onset] > 0]
                assert t["defect_amp"][running[-1]] > 10 * t["defect_amp"][running[0]]  # the BPFO amplitude grew
            restart = f["restart_step"]
            assert 6 * 60 <= restart - k - 1 <= 36 * 60
            assert (t["speed"][k + 1 : min(restart, len(t["speed"]))] == 0).all()
            if restart < len(t["speed"]):
                assert t["insulation_used"][restart] < 0.01
    assert seen == {"winding_insulation", "bearing_outer_race"}


def test_historian_is_long_utc_iso_with_quality_and_the_broken_rows(
    out: Path, fleet: MotorFleet, truth: dict[str, Any]
) -> None:
    with open(out / "historian.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Time", "Tag", "Value", "Quality"]
    broken = {b["line"]: b for b in truth["broken_rows"]["historian.csv"]}
    assert sorted(b["kind"] for b in broken.values()) == ["bad_timestamp", "unknown_tag", "value_text"]
    tags = {f"{m.tag}.{suffix}" for m in fleet.motors for suffix, *_ in motors.TAGS}
    qualities = set()
    for line, row in enumerate(rows[1:], start=2):
        if line in broken:
            kind = broken[line]["kind"]
            if kind == "bad_timestamp":
                with pytest.raises(ValueError):
                    dt.datetime.fromisoformat(row[0])
            elif kind == "unknown_tag":
                assert row[1] not in tags
            else:
                assert row[2] == "ERR"
            continue
        assert row[0].endswith("+00:00") and dt.datetime.fromisoformat(row[0]).utcoffset() == dt.timedelta(0)
        assert row[1] in tags
        float(row[2])
        qualities.add(row[3])
        if row[3] == "Bad":
            assert row[2].strip("0.") == ""
    assert qualities == {"Good", "Bad", "Uncertain"}
    written = {utc(r[0]) for i, r in enumerate(rows[1:], start=2) if i not in broken}
    for g in truth["gaps"]:
        assert written.isdisjoint(range(utc(g["start"]), utc(g["end"]), 60))
    assert truth["gaps"]


def test_workorders_have_breakdowns_repairs_and_the_broken_rows(out: Path, truth: dict[str, Any]) -> None:
    with open(out / "workorders.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["equipment_id", "wo_number", "wo_type", "failure_date", "failure_code", "notes"]
    broken = {b["line"]: b["kind"] for b in truth["broken_rows"]["workorders.csv"]}
    assert sorted(broken.values()) == ["bad_date", "unknown_equipment", "unknown_type"]
    good = [r for i, r in enumerate(rows, start=2) if i not in broken]
    for f in truth["failures"]:
        hits = [r for r in good if r["equipment_id"] == f["tag"] and r["wo_type"] == "BRKD" and r["failure_code"] == f["code"]
                and 0 <= int(r["failure_date"]) / 1000 - utc(f["time"]) <= 15 * 60]  # fmt: skip
        assert len(hits) == 1
    assert sorted(int(r["failure_date"]) // 1000 for r in good if r["wo_type"] == "RPR") == sorted(
        utc(r["time"]) for r in truth["repairs"]
    )
    by_line = {i: r for i, r in enumerate(rows, start=2)}
    kinds = {k: by_line[line] for line, k in broken.items()}
    assert kinds["unknown_equipment"]["equipment_id"] == "M999"
    assert kinds["unknown_type"]["wo_type"] == "XYZ"
    assert not kinds["bad_date"]["failure_date"].isdigit()


def test_plant_toml_passes_vigil_config_check(out: Path, fleet: MotorFleet) -> None:
    config = load_config(out / "plant.toml", environ={})
    assert [m.id for m in config.machines] == [m.machine_id for m in fleet.motors]
    motor = config.machine_types["motor"]
    assert motor.sensors["winding_temp"].limits.high == WINDING_LIMIT_C
    assert motor.sensors["vibration"].limits.high == VIB_LIMIT_MM_S
    (historian,) = config.sources.file
    assert historian.mapping.layout == "long" and historian.mapping.quality == "Quality"
    assert len(historian.mapping.tags) == 7 * len(fleet.motors)
    (cmms,) = config.sources.maintenance
    assert cmms.mapping.time.format == "epoch_ms"
    assert set(cmms.mapping.kinds) == {"brkd", "rpr", "insp", "admin"}
