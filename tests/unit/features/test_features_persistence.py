"""Hard limits judged sample by sample: stops inside a window, cold samples after a restart, runs across windows,
warm-up after a start or a data gap, and the state surviving a checkpoint."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from features.vector import window_engine
from models.rules import HardLimits, during_warmup
from streaming.windows import WindowEngine
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import FeatureVector, Reading, decode, encode

T0 = 1_790_000_400.0  # a window boundary (600 s windows)
SIZE = 600.0
STEP = 60.0
MACHINE = "ST-1"


def config(warmup_s: float = 900.0, data_gap_s: float = 600.0) -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    plant["machine_types"]["station_pump"] = {
        "running_sensor": "speed",
        "off_below": 100.0,
        "warmup_s": warmup_s,
        "data_gap_s": data_gap_s,
        "sensors": {
            "speed": {"unit": "rpm", "range": {"min": 0, "max": 3600}},
            "flow": {"unit": "m3/h", "range": {"min": 0, "max": 600}, "limits": {"low": 90.0}},
            "temp": {"unit": "degC", "range": {"min": -20, "max": 150}, "limits": {"high": 95.0}},
        },
    }
    line = plant["machines"][0]["line"]
    plant["machines"] = [*plant["machines"], {"id": MACHINE, "type": "station_pump", "line": line}]
    windows = {"size_s": SIZE, "grace_s": 5.0}
    return load_config(environ={}, data={**plant, "windows": windows, "sources": {}})


def samples(t0: float, t1: float, speed: float, flow: float, temp: float) -> list[tuple[str, float, float]]:
    """Every sensor once a minute over ``[t0, t1)`` (seconds from ``T0``)."""
    out = []
    t = t0
    while t < t1:
        out += [("speed", t, speed), ("flow", t, flow), ("temp", t, temp)]
        t += STEP
    return out


def feed(engine: WindowEngine, rows: Iterable[tuple[str, float, float]]) -> list[FeatureVector]:
    out: list[FeatureVector] = []
    for sensor, t, value in rows:
        out += engine.add(
            Reading(machine_id=MACHINE, sensor=sensor, ts=datetime.fromtimestamp(T0 + t, UTC), value=value)
        )
    return out


def by_window(vectors: Iterable[FeatureVector]) -> dict[int, FeatureVector]:
    return {round((v.window_start.timestamp() - T0) / SIZE): v for v in vectors}


def rules(cfg: VigilConfig, persistence_s: float = 120.0) -> HardLimits:
    return HardLimits(cfg.machines_by_id[MACHINE].sensors, persistence_s=persistence_s)


def steady(until: float) -> list[tuple[str, float, float]]:
    """An hour of normal running first: warm-up after the first sample is over."""
    return samples(-3600.0, until, 2950.0, 200.0, 70.0)


def test_a_stop_inside_a_window_is_not_a_low_flow_violation() -> None:
    cfg = config()
    rows = steady(0.0) + samples(0.0, 240.0, 2950.0, 200.0, 70.0) + samples(240.0, 1200.0, 0.0, 0.0, 60.0)
    vectors = by_window(feed(window_engine(cfg), rows))
    mixed = vectors[0].features
    # The window's mean is below the limit (the old rule fired here) but no running sample was.
    assert mixed["flow.mean"] is not None and mixed["flow.mean"] < 90.0
    assert mixed["flow.under_low_s"] == 0.0 and mixed["flow.warmup_under_low_s"] == 0.0
    assert rules(cfg).violations(mixed) == ()
    assert HardLimits(cfg.machines_by_id[MACHINE].sensors, persistence_s=None).violations(mixed) != ()


def test_the_cold_sample_after_a_restart_is_no_violation_and_a_warm_up_crossing_is_reported_as_such() -> None:
    cfg = config(warmup_s=900.0)
    rows = steady(0.0) + samples(0.0, 3000.0, 0.0, 0.0, 30.0)
    # The restart at 3000 s: one low-flow sample, then normal flow; later in the warm-up a low-flow stretch.
    rows += samples(3000.0, 3060.0, 2950.0, 20.0, 30.0) + samples(3060.0, 3300.0, 2950.0, 200.0, 40.0)
    rows += samples(3300.0, 3600.0, 2950.0, 50.0, 50.0) + samples(3600.0, 6000.0, 2950.0, 200.0, 60.0)
    vectors = by_window(feed(window_engine(cfg), rows))
    restart = vectors[5].features  # [3000, 3600)
    assert restart["flow.under_low_s"] == 0.0
    assert restart["flow.warmup_under_low_s"] == 240.0  # 3300 .. 3540
    found = rules(cfg).violations(restart)
    assert found == ("flow below low limit 90 for 240 s during warm-up",) and during_warmup(found)
    # Without the low-flow stretch, the single cold sample alone: nothing, although the window's mean is low.
    rows_single = steady(0.0) + samples(0.0, 3000.0, 0.0, 0.0, 30.0)
    rows_single += samples(3000.0, 3060.0, 2950.0, 20.0, 30.0) + samples(3060.0, 3120.0, 2950.0, 200.0, 40.0)
    rows_single += samples(3120.0, 4800.0, 2950.0, 200.0, 60.0)
    single = by_window(feed(window_engine(config(warmup_s=0.0)), rows_single))[5].features
    assert single["flow.under_low_s"] == 0.0
    assert rules(cfg).violations(single) == ()


def test_a_crossing_that_spans_two_windows_counts_across_them_and_across_a_checkpoint() -> None:
    cfg = config()
    hot = [("temp", t, 97.0) for t in (480.0, 540.0)] + [("temp", t, 97.0) for t in (600.0, 660.0, 720.0)]
    base = [r for r in steady(2400.0) if not (r[0] == "temp" and 480.0 <= r[1] <= 720.0)]
    rows = sorted(base + hot, key=lambda r: r[1])
    first_half = [r for r in rows if r[1] < 610.0]
    engine = window_engine(cfg)
    vectors = feed(engine, first_half)
    # The engine's state as the changelog keeps it, restored into a fresh engine (a worker restart).
    state = engine.snapshot_machine(MACHINE)
    assert state is not None
    restored = window_engine(cfg)
    restored.restore_machine(MACHINE, state)
    vectors += feed(restored, [r for r in rows if r[1] >= 610.0])
    windows = by_window(vectors)
    assert windows[0].features["temp.over_high_s"] == 60.0  # 480 .. 540: below the 120 s persistence
    assert rules(cfg).violations(windows[0].features) == ()
    assert windows[1].features["temp.over_high_s"] == 240.0  # 480 .. 720, counted from the first window
    assert rules(cfg).violations(windows[1].features) == ("temp above high limit 95 for 240 s (mean 78.1)",)
    assert windows[2].features["temp.over_high_s"] == 0.0


def test_data_resuming_after_a_gap_starts_a_warm_up_but_a_slowly_sampled_sensor_does_not() -> None:
    cfg = config(warmup_s=900.0, data_gap_s=600.0)
    # A 30-minute hole in the data, then the bearing is hot for 5 minutes right away.
    rows = steady(1200.0) + samples(3000.0, 3300.0, 2950.0, 200.0, 99.0) + samples(3300.0, 6000.0, 2950.0, 200.0, 70.0)
    after = by_window(feed(window_engine(cfg), rows))[5].features
    assert after["temp.over_high_s"] == 0.0 and after["temp.warmup_over_high_s"] == 240.0
    # Every 15 minutes from the start (slower than data_gap_s): only the first sample is a resume.
    slow = [("speed", t, 2950.0) for t in range(-7200, 9000, 60)]
    slow += [("flow", float(t), 200.0) for t in range(-7200, 9000, 60)]
    slow += [("temp", float(t), 99.0 if t >= 3600 else 70.0) for t in range(-7200, 9000, 900)]
    windows = by_window(feed(window_engine(cfg), sorted(slow, key=lambda r: r[1])))
    assert [windows[k].features["temp.warmup_over_high_s"] for k in (7, 9, 10)] == [0.0, 0.0, 0.0]
    assert windows[10].features["temp.over_high_s"] == 2700.0  # 3600 .. 6300, carried over four windows


def test_a_window_without_samples_of_a_limited_sensor_has_no_measure_and_the_vector_round_trips() -> None:
    cfg = config()
    rows = [r for r in steady(1800.0) if not (r[0] == "temp" and 600.0 <= r[1] < 1200.0)]
    vectors = by_window(feed(window_engine(cfg), rows))
    assert vectors[1].features["temp.over_high_s"] is None and "temp" in vectors[1].missing
    # The contract carries the new features like any other.
    assert decode(encode(vectors[1])) == vectors[1]


def test_hard_limits_fall_back_to_the_mean_for_older_vectors() -> None:
    cfg = config()
    limits = rules(cfg)
    old: dict[str, Any] = {"flow.mean": 80.0, "temp.mean": 70.0}
    assert limits.violations(old) == ("flow.mean 80 < low limit 90",)
    new = {**old, "flow.under_low_s": 119.0, "flow.warmup_under_low_s": 0.0}
    assert limits.violations(new) == ()
    assert limits.violations({**new, "flow.under_low_s": 120.0}) == ("flow below low limit 90 for 120 s (mean 80)",)
    assert limits.sensors_violated({**new, "flow.under_low_s": 120.0}) == ["flow"]


def test_a_start_ramping_up_from_below_a_low_limit_is_no_crossing_but_a_collapse_after_it_is() -> None:
    cfg = config(warmup_s=1800.0)
    rows = steady(0.0) + samples(0.0, 3000.0, 0.0, 0.0, 30.0)
    # The restart at 3000 s: the flow builds from zero and stays below its low limit for 6 minutes (the ramp).
    ramp = [
        (s, 3000.0 + 60.0 * k, v) for k in range(6) for s, v in (("speed", 2950.0), ("flow", 15.0 * k), ("temp", 30.0))
    ]
    rows += ramp + samples(3360.0, 6000.0, 2950.0, 200.0, 50.0)
    restart = by_window(feed(window_engine(cfg), rows))[5]
    assert restart.features["flow.warmup_under_low_s"] == 0.0 and restart.features["flow.under_low_s"] == 0.0
    assert not rules(cfg).violations(restart.features)
    # The feature worker saw the start sample by sample and says when it was.
    assert restart.started_at == datetime.fromtimestamp(T0 + 3000.0, UTC)
    # Within its limit after the ramp, then down again still in the warm-up: that is a crossing during warm-up.
    rows = steady(0.0) + samples(0.0, 3000.0, 0.0, 0.0, 30.0) + ramp + samples(3360.0, 3420.0, 2950.0, 200.0, 50.0)
    rows += samples(3420.0, 3720.0, 2950.0, 40.0, 50.0) + samples(3720.0, 6000.0, 2950.0, 200.0, 50.0)
    collapse = by_window(feed(window_engine(cfg), rows))[5].features
    assert collapse["flow.warmup_under_low_s"] == 120.0  # 3420 .. 3540, the rest is in the next window
