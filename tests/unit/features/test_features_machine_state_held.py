"""The machine state of report-by-exception machines: the running sensor's last value is held across windows."""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest

from features.vector import HELD, encode_vector, window_engine
from models.pipeline import FleetModel
from streaming.changelog import decode_checkpoint, encode_checkpoint
from streaming.windows import WindowEngine
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import Decision, FeatureVector, MachineState, Quality, Reading, decode
from vigil.exceptions import ConfigError

T0 = 1_790_000_040.0  # a window boundary (60 s windows)
SIZE = 60.0


def config(**windows: Any) -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    return load_config(environ={}, data={**plant, "windows": {"size_s": SIZE, "grace_s": 5, **windows}})


def reading(sensor: str, t: float, value: float | None, machine: str = "PMP-001", **kw: Any) -> Reading:
    return Reading(machine_id=machine, sensor=sensor, ts=datetime.fromtimestamp(T0 + t, UTC), value=value, **kw)


def run_pump(engine: WindowEngine, stop_at: int, windows: int, restart_at: int | None = None) -> list[FeatureVector]:
    """A pump reporting by exception: speed 1500 once, 0 once when it stops (window ``stop_at``), 1480 when it
    starts again; its bearing temperature (a changing value) every 10 s throughout."""
    out: list[FeatureVector] = []
    for k in range(windows):
        base = k * SIZE
        if k == 0:
            out += engine.add(reading("speed", base + 1, 1500.0))
        if k == stop_at:
            out += engine.add(reading("speed", base + 20, 0.0))
        if restart_at is not None and k == restart_at:
            out += engine.add(reading("speed", base + 30, 1480.0))
        for s in range(0, 60, 10):
            out += engine.add(reading("bearing_temp", base + s + 2, 40.0 + k + s / 100))
    return out


def by_window(vectors: list[FeatureVector]) -> dict[int, FeatureVector]:
    return {round((v.window_start.timestamp() - T0) / SIZE): v for v in vectors}


def test_a_stopped_machine_is_off_in_every_later_window_with_the_speed_still_missing() -> None:
    vectors = by_window(run_pump(window_engine(config()), stop_at=2, windows=8))
    assert vectors[0].state == MachineState.RUNNING and vectors[0].state_held is None
    # Speed 1500 sent once, then nothing while it stays put: held, running.
    assert vectors[1].state == MachineState.RUNNING and vectors[1].state_held == 1500.0
    # The stop window has its own speed reading (0): decided by it.
    assert vectors[2].state == MachineState.OFF and vectors[2].state_held is None
    for k in range(3, 7):
        v = vectors[k]
        assert v.state == MachineState.OFF, k
        assert v.state_held == 0.0 and v.state_held_ts == datetime.fromtimestamp(T0 + 2 * SIZE + 20, UTC)
        # Missing stays explicit: no speed feature is made up from the held value.
        assert "speed" in v.missing and "speed" not in v.imputed
        assert all(v.features[f"speed.{agg}"] is None for agg in ("mean", "last", "max", "std"))
        assert v.features["speed.count"] == 0.0


def test_a_restart_is_running_again_and_holds_the_new_speed() -> None:
    vectors = by_window(run_pump(window_engine(config()), stop_at=1, windows=8, restart_at=4))
    assert [vectors[k].state for k in (2, 3)] == [MachineState.OFF, MachineState.OFF]
    assert vectors[4].state == MachineState.RUNNING and vectors[4].state_held is None
    assert vectors[4].features["speed.mean"] == 1480.0
    # Running at an unchanged speed: held, running, with the load the model should assume.
    assert vectors[5].state == MachineState.RUNNING and vectors[5].state_held == 1480.0
    assert "speed" in vectors[5].missing


def test_a_held_value_older_than_the_limit_is_stale_not_a_guess() -> None:
    vectors = by_window(run_pump(window_engine(config(max_state_hold_s=150)), stop_at=0, windows=6))
    # Held from t=20: windows ending at 120 and 180 are within 150 s (160 s is not).
    assert vectors[1].state == MachineState.OFF
    assert vectors[2].state == MachineState.STALE and vectors[2].closed_by == "watermark"
    assert vectors[2].state_held == 0.0  # says why: the value it would have used, and when it was reported
    assert all(vectors[k].state == MachineState.STALE for k in (3, 4))


def test_held_for_ever_with_an_infinite_limit_and_a_bad_limit_is_refused_naming_the_key() -> None:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    cfg = load_config(environ={"VIGIL_WINDOWS__MAX_STATE_HOLD_S": "inf"}, data=plant)
    assert math.isinf(cfg.windows.max_state_hold_s)
    assert load_config(environ={}, data=plant).windows.max_state_hold_s == 86_400.0
    engine = window_engine(config(max_state_hold_s=math.inf))
    engine.add(reading("speed", 1, 0.0))
    out = [v for d in range(1, 4) for v in engine.add(reading("bearing_temp", d * 86_400.0, 40.0))]
    assert [v.state for v in out] == [MachineState.OFF] * 3
    with pytest.raises(ConfigError, match=r"windows\.max_state_hold_s"):
        config(max_state_hold_s=0)


def test_before_any_running_reading_the_machine_is_running_as_before() -> None:
    engine = window_engine(config())
    engine.add(reading("bearing_temp", 1, 40.0))
    (v,) = engine.add(reading("bearing_temp", 70, 40.0))
    assert v.state == MachineState.RUNNING and v.state_held is None and "speed" in v.missing
    assert HELD not in (engine.machine_state("PMP-001") or {})["previous"]


def test_the_held_value_survives_machine_state_and_the_changelog_record() -> None:
    cfg = config()
    first = window_engine(cfg)
    before = by_window(run_pump(first, stop_at=1, windows=3))  # closes windows 0 and 1
    assert before[1].state == MachineState.OFF and before[1].state_held is None
    state = first.machine_state("PMP-001", raw=True)
    assert state is not None and state["previous"][HELD] == {"value": 0.0, "ts": T0 + SIZE + 20}
    # Through the changelog's record format and a fresh engine (a restart, or the partition on another worker).
    restored = window_engine(cfg)
    restored.load_machine_state("PMP-001", decode_checkpoint("PMP-001", encode_checkpoint({}, state)).machine)
    again = window_engine(cfg)
    snapshot = first.snapshot_machine("PMP-001")
    assert snapshot is not None
    again.restore_machine("PMP-001", snapshot)
    for engine in (restored, again):
        out: list[FeatureVector] = []
        for t in range(3 * 60 + 2, 6 * 60, 10):
            out += engine.add(reading("bearing_temp", t, 41.0))
        states = [v.state for v in out]
        # The open window 2 (continued from the state), then 3 and 4.
        assert states == [MachineState.OFF] * 3, states
        assert all(v.state_held == 0.0 for v in out)


def test_an_uninterrupted_run_equals_one_restored_mid_stop() -> None:
    cfg = config()
    whole = run_pump(window_engine(cfg), stop_at=1, windows=6)
    first = window_engine(cfg)
    out = []
    for k in range(6):
        base = k * SIZE
        if k == 3:  # restart mid-stream from the machine's state
            state = first.machine_state("PMP-001")
            assert state is not None
            first = window_engine(cfg)
            first.load_machine_state("PMP-001", state)
        if k == 0:
            out += first.add(reading("speed", base + 1, 1500.0))
        if k == 1:
            out += first.add(reading("speed", base + 20, 0.0))
        for s in range(0, 60, 10):
            out += first.add(reading("bearing_temp", base + s + 2, 40.0 + k + s / 100))
    assert out == whole


def test_unusable_running_readings_neither_decide_nor_replace_the_held_value() -> None:
    engine = window_engine(config())
    out = engine.add(reading("speed", 1, 0.0))
    out += engine.add(reading("speed", 70, 999.0, quality=Quality.BAD))
    out += engine.add(reading("bearing_temp", 130, 40.0))
    out += engine.add(reading("bearing_temp", 190, 40.0))
    first, bad, after = out
    assert first.state == MachineState.OFF and first.state_held is None
    assert bad.state == MachineState.OFF and bad.state_held == 0.0 and bad.features["speed.bad_share"] == 1.0
    assert after.state == MachineState.OFF and after.state_held == 0.0


def test_with_impute_last_the_state_comes_from_the_held_value_not_the_imputed_mean() -> None:
    engine = window_engine(config(impute="last"))
    engine.add(reading("speed", 1, 1500.0))
    engine.add(reading("speed", 40, 0.0))
    (stop,) = engine.add(reading("bearing_temp", 70, 40.0))
    assert stop.state == MachineState.RUNNING  # its own mean, 750
    (v,) = engine.add(reading("bearing_temp", 130, 40.0))
    # The imputed speed mean is the stop window's 750, but the speed last read 0.
    assert "speed" in v.imputed and v.features["speed.mean"] == 750.0
    assert v.state == MachineState.OFF and v.state_held == 0.0


def test_hopping_windows_hold_the_newest_reading() -> None:
    engine = window_engine(config(kind="hopping", hop_s=30))
    out = run_pump(engine, stop_at=1, windows=5)
    silent = [v for v in out if v.window_start.timestamp() >= T0 + 2 * SIZE]
    assert silent and all(v.state == MachineState.OFF and v.state_held == 0.0 for v in silent)


def test_a_wall_clock_window_stays_stale() -> None:
    engine = window_engine(config(idle_timeout_s=30, max_clock_skew_s=float("inf")))
    engine.tick(1000.0)
    engine.add(reading("speed", 1, 0.0))
    (off,) = engine.add(reading("bearing_temp", 70, 40.0))
    assert off.state == MachineState.OFF
    (stale,) = engine.tick(1100.0)
    assert stale.closed_by == "wall_clock" and stale.state == MachineState.STALE and stale.state_held is None


def test_the_vector_round_trips_with_the_held_fields() -> None:
    vectors = by_window(run_pump(window_engine(config()), stop_at=0, windows=3))
    v = vectors[1]
    assert v.state_held == 0.0 and v.state_held_ts is not None
    assert decode(encode_vector(v)) == v


def test_the_models_agree_and_decide_off_once_per_window() -> None:
    cfg = config()
    model = FleetModel(cfg.models, cfg.machines_by_id, cfg.machine_types)
    vectors = by_window(run_pump(window_engine(cfg), stop_at=1, windows=7, restart_at=5))
    decisions = {}
    for k in sorted(vectors):
        p = model.process(vectors[k]).prediction
        assert p is not None
        decisions[k] = p
    for k in (2, 3, 4):
        assert decisions[k].decision == Decision.OFF and decisions[k].decided_by == "none"
        # Off once, with the worker's held reading as the why (no second, model-side inference).
        reasons = decisions[k].reasons
        assert reasons[0] == "machine off" and len(reasons) == 2
        assert reasons[1].startswith("speed sent nothing since it read 0 at ")
    assert decisions[5].decision != Decision.OFF
