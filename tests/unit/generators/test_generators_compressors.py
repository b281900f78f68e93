"""The held-out compressor generator: load/unload control, the thermostat-regulated oil circuit, its three failure
modes on their own thresholds, restarts, gaps, a drift that is not a failure, the foreign exports read by Vigil."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.maintenance import read_file
from ingest.tabular import TableReader
from tests.generators import compressors
from tests.generators.compressors import (
    CRACK_A0,
    DISCHARGE_TRIP_C,
    LOW_PRESSURE_MIN,
    LOW_PRESSURE_PSIG,
    P_LOAD_PSIG,
    P_UNLOAD_PSIG,
    THERMOSTAT_C,
    VIB_TRIP_IN_S,
    CompressorFleet,
    CompressorParams,
    c_to_f,
    generate_fleet,
    simulate_compressor,
    write_exports,
)
from vigil.config import load_config

PARAMS = CompressorParams(healthy_share=0.0, mean_onset_h=12.0, short_life_share=1.0, gaps_per_week=3.0)


@pytest.fixture(scope="module")
def fleet() -> CompressorFleet:
    return generate_fleet(2, machines=3, days=5, params=PARAMS)  # all three modes fail, 6 failures, 4 restarts


@pytest.fixture(scope="module")
def out(fleet: CompressorFleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("compressors")
    write_exports(fleet, folder)
    return folder


@pytest.fixture(scope="module")
def truth(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "truth.json").read_text())
    return data


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def run(demand: float, hours: float = 6.0, room: float = 20.0, seed: int = 1) -> dict[str, np.ndarray]:
    """A healthy compressor on a line of constant demand."""
    n = round(hours * 60)
    series, failures = simulate_compressor(
        np.full(n, demand), np.zeros(n, dtype=bool), np.full(n, room), 60.0, np.random.default_rng(seed),
        CompressorParams(), healthy=True,
    )  # fmt: skip
    assert failures == []
    return series


def test_same_seed_writes_identical_files(tmp_path: Path) -> None:
    def files(seed: int, name: str) -> dict[str, bytes]:
        folder = tmp_path / name
        write_exports(generate_fleet(seed, machines=3, days=1, params=PARAMS), folder)
        return {f.name: f.read_bytes().replace(str(folder).encode(), b"OUT") for f in sorted(folder.iterdir())}

    assert files(4, "a") == files(4, "b")
    assert files(4, "a")["historian.csv"] != files(5, "c")["historian.csv"]


def test_load_unload_cycles_hold_the_pressure_band_and_load_follows_demand() -> None:
    low, high = run(0.3), run(0.7)
    for s, demand in ((low, 0.3), (high, 0.7)):
        settled = slice(60, None)
        p = s["pressure"][settled]
        assert p.min() > P_LOAD_PSIG - 2.0 and p.max() < P_UNLOAD_PSIG + 2.0
        toggles_per_h = np.abs(np.diff(s["loaded"][settled])).sum() / (len(p) / 60)
        assert toggles_per_h >= 4, "a cycle of minutes: the 1-minute samples see loaded and unloaded"
        # Delivery (rated, healthy) matches the demand drawn at the band's mean pressure.
        drawn = demand * (p.mean() + 14.7) / (P_LOAD_PSIG + 14.7)
        assert s["loaded_fraction"][settled].mean() == pytest.approx(drawn, abs=0.03)
        loaded = s["loaded"][settled] > 0
        assert s["current"][settled][loaded].min() > 1.5 * s["current"][settled][~loaded].max()
        assert (s["flow"][settled][~loaded] == 0).all()


def test_the_thermostat_holds_the_oil_until_the_cooler_cannot() -> None:
    s = run(0.7, room=20.0)
    unloaded = (s["loaded"] == 0) & (np.arange(len(s["loaded"])) > 120)
    # Clean cooler, 20 degC room: the oil sits at the thermostat; loaded adds the compression rise (<= 12 K).
    assert s["discharge_temp"][unloaded].min() >= THERMOSTAT_C - 0.01
    assert s["discharge_temp"][120:].max() <= THERMOSTAT_C + 12.01
    cold = run(0.7, room=20.0)["discharge_temp"][:3]
    assert cold[0] < 50.0, "a start from cold warms up from the room"


def test_every_failure_is_on_its_own_threshold_and_repairs_reset_the_machine(fleet: CompressorFleet) -> None:
    seen = set()
    for c in fleet.compressors:
        t = c.truth
        life_start = 0
        for f in c.failures:
            k, mode = f["step"], f["mode"]
            seen.add(mode)
            life = np.arange(max(life_start, f["onset_step"]), k)
            running = life[t["running"][life] > 0]
            if mode == "cooler_fouling":
                assert t["discharge_temp"][k] >= DISCHARGE_TRIP_C
                assert (t["discharge_temp"][life_start:k] < DISCHARGE_TRIP_C).all()
                assert t["fouling"][k] > 10 * t["fouling"][running[0]]
            elif mode == "valve_leak":
                assert (t["pressure"][k - LOW_PRESSURE_MIN + 1 : k + 1] < LOW_PRESSURE_PSIG).all()
                assert t["leak"][k] > 10 * t["leak"][running[0]]
                # The leak shows as a longer loaded share and less air per amp before the failure.
                early, late = running[: len(running) // 4], running[-len(running) // 4 :]
                assert t["loaded_fraction"][late].mean() > t["loaded_fraction"][early].mean()
            else:
                assert t["vibration"][k] >= VIB_TRIP_IN_S
                assert (t["vibration"][life_start:k] < VIB_TRIP_IN_S).all()
                assert t["crack"][k] >= 1.0 > t["crack"][k - 1] >= CRACK_A0
                bursts = t["kurtosis"][running] > 6.0
                quarter = max(1, len(running) // 4)
                assert bursts[-quarter:].sum() > bursts[:quarter].sum(), "kurtosis bursts grow with the crack"
                assert (t["kurtosis"][life_start : f["onset_step"]] < 6.0).all()
            restart = f["restart_step"]
            assert 8 * 60 <= restart - k - 1 <= 48 * 60
            assert (t["running"][k + 1 : min(restart, len(t["running"]))] == 0).all()
            if restart < len(t["running"]):
                assert t["fouling"][restart] == t["leak"][restart] == t["crack"][restart] == 0.0
            life_start = restart
    assert seen == {"cooler_fouling", "valve_leak", "gear_crack"}


def test_healthy_machines_never_fail_and_the_drifting_sensor_drifts_while_healthy() -> None:
    fl = generate_fleet(3, machines=4, days=6)
    (drift,) = fl.drift
    (c,) = [c for c in fl.compressors if c.machine_id == drift["machine"]]
    assert c.healthy and c.failures == []
    sensor, n = drift["sensor"], len(fl.time)
    true = {"discharge_temp": c_to_f(c.truth["discharge_temp"]), "oil_pressure": c.truth["oil_pressure"],
            "flow": c.truth["flow"]}[sensor]  # fmt: skip
    err = c.measured[sensor] - true
    days = (np.arange(n) - drift["start_step"]) / 1440
    after = (days > 1) & (c.truth["running"] > 0) & (true > 0)
    if drift["kind"] == "offset":
        slope = np.polyfit(days[after], err[after], 1)[0]
    else:
        slope = np.polyfit(days[after], err[after] / true[after], 1)[0]
    assert slope == pytest.approx(drift["rate_per_day"], rel=0.1)
    before = np.arange(n) < drift["start_step"]
    if before.sum() > 60:
        assert abs(np.median(err[before & (true > 0)])) < 0.5 * abs(drift["rate_per_day"]) + 0.05


def test_historian_is_tab_separated_us_local_time_with_gaps_and_the_broken_rows(
    out: Path, fleet: CompressorFleet, truth: dict[str, Any]
) -> None:
    with open(out / "historian.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == compressors.HEADER
    broken = {b["line"]: b["kind"] for b in truth["broken_rows"]["historian.csv"]}
    assert sorted(broken.values()) == ["bad_timestamp", "short_row", "unknown_unit", "value_text"]
    assert all(re.fullmatch(r"[1-9]\d?/[1-9]\d?/2026 [1-9]\d?:\d\d:00 [AP]M", r[0]) for r in rows[1:50])
    units = {c.tag for c in fleet.compressors}
    seen: dict[str, set[int]] = {u: set() for u in units}
    empty = 0
    for line, row in enumerate(rows[1:], start=2):
        if line in broken:
            continue
        assert row[2] in units and row[3] in ("LOADED", "UNLOADED", "STOPPED", "")
        ts = int(
            dt.datetime.strptime(row[0], "%m/%d/%Y %I:%M:%S %p")
            .replace(tzinfo=zoneinfo.ZoneInfo(compressors.CHICAGO))
            .timestamp()
        )
        seen[row[2]].add(ts)
        empty += row[3] == ""
    site_of = {c.tag: c.site for c in fleet.compressors}
    gaps = [g for g in truth["gaps"] if g["scope"] in ("joliet", "milwaukee")]
    assert gaps and empty > 0
    for g in gaps:
        for unit, times in seen.items():
            if site_of[unit] == g["scope"]:
                assert times.isdisjoint(range(utc(g["start"]), utc(g["end"]), 60))


def test_workorders_are_maximo_like_with_the_true_failures_and_repairs(out: Path, truth: dict[str, Any]) -> None:
    with open(out / "workorders.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["WONUM", "ASSETNUM", "SITEID", "WORKTYPE", "PROBLEMCODE", "REPORTDATE", "DESCRIPTION"]
    broken = {b["line"] for b in truth["broken_rows"]["workorders.csv"]}
    good = [r for i, r in enumerate(rows, start=2) if i not in broken]
    assert {r["WORKTYPE"] for r in good} == {"UNPL", "RTS", "PM", "OILS", "PROJ"}
    assert len([r for r in good if r["WORKTYPE"] == "UNPL"]) == len(truth["failures"])
    assert {r["PROBLEMCODE"] for r in good if r["WORKTYPE"] == "UNPL"} == {"CLR-FOUL", "VLV-LEAK", "GBX-TOOTH"}


def read_historian(config: Any) -> tuple[dict[str, np.ndarray], set[tuple[int, str]]]:
    (source,) = config.sources.file
    sensors = {machine: set(m.sensors) for machine, m in config.machines_by_id.items()}
    reader = TableReader(source.mapping, sensors, delimiter=source.delimiter)
    parts: dict[str, list[np.ndarray]] = {"machine": [], "sensor": [], "ts": [], "value": []}
    for frame, _ in reader.read(Path(source.path)):
        for key, values in parts.items():
            values.append(np.asarray(getattr(frame, key)))
    return {k: np.concatenate(v) for k, v in parts.items()}, {(r.row, r.reason) for r in reader.refusals}


REASONS = {"bad_timestamp": "bad_timestamp", "value_text": "wrong_type", "unknown_unit": "unknown_machine",
           "unknown_asset": "unknown_machine", "bad_date": "bad_timestamp", "unknown_type": "unknown_kind"}  # fmt: skip


def test_vigil_reads_the_exports_with_the_generated_plant_file(
    out: Path, fleet: CompressorFleet, truth: dict[str, Any]
) -> None:
    config = load_config(out / "plant.toml", environ={})
    kind = config.machine_types["screw_compressor"]
    assert kind.sensors["discharge_temp"].limits.high == pytest.approx(c_to_f(DISCHARGE_TRIP_C))
    assert kind.sensors["discharge_pressure"].limits.low == LOW_PRESSURE_PSIG
    assert kind.sensors["vibration"].limits.high == VIB_TRIP_IN_S
    assert {m.site for m in config.machines_by_id.values()} == {"joliet", "milwaukee"}

    readings, refused = read_historian(config)
    expected = {(b["line"], REASONS[b["kind"]]) for b in truth["broken_rows"]["historian.csv"] if b["kind"] in REASONS}
    assert refused == expected
    assert set(np.unique(readings["ts"]).tolist()) <= set(fleet.time.astype(float).tolist())
    for c in fleet.compressors:  # the plant's degF arrive at the true UTC minute, to the written decimal
        pick = (readings["machine"] == c.machine_id) & (readings["sensor"] == "discharge_temp")
        steps = np.searchsorted(fleet.time, readings["ts"][pick])
        np.testing.assert_allclose(readings["value"][pick], c.measured["discharge_temp"][steps], atol=0.051)

    (cmms,) = config.sources.maintenance
    result = read_file(Path(cmms.path), cmms, set(config.machines_by_id))
    expected_cmms = {(b["line"], REASONS[b["kind"]]) for b in truth["broken_rows"]["workorders.csv"]}
    assert {(r.row, r.reason) for r in result.refusals} == expected_cmms
    failures = sorted((e.machine_id, e.ts.timestamp()) for e in result.events if e.event.value == "failure")
    true_failures = sorted((f["machine"], utc(f["time"])) for f in truth["failures"])
    assert [m for m, _ in failures] == [m for m, _ in true_failures]
    assert all(60 <= ts - t <= 30 * 60 for (_, ts), (_, t) in zip(failures, true_failures, strict=True))
    repairs = sorted((e.machine_id, e.ts.timestamp()) for e in result.events if e.event.value == "repair")
    assert repairs == sorted((r["machine"], utc(r["time"])) for r in truth["repairs"]) and repairs


def test_a_span_over_the_spring_dst_change_reads_back_at_the_true_utc_times(tmp_path: Path) -> None:
    fleet = generate_fleet(5, machines=1, days=1, start="2026-03-07T12:00", params=CompressorParams(gaps_per_week=0))
    truth = write_exports(fleet, tmp_path)
    assert [d["kind"] for d in truth["dst_transitions"]] == ["spring_forward"]
    readings, _ = read_historian(load_config(tmp_path / "plant.toml", environ={}))
    times = np.unique(readings["ts"])
    lost = sum(b - a for c in fleet.compressors for a, b in c.comm_losses)
    broken = len(truth["broken_rows"]["historian.csv"])
    assert len(times) >= len(fleet.time) - lost - broken
    assert set(times.tolist()) <= set(fleet.time.astype(float).tolist())
