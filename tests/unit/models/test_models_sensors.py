"""Sensor health: only evidence a healthy or wearing machine cannot produce makes a sensor faulty (stuck, an
impossible jump and back, an impossible jump that stays, no readings); wear, warm-up and speed changes do not."""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

from models.sensors import SensorHealth

SPANS = {"temp": 170.0, "vib": 50.0, "flow": 600.0, "speed": 3600.0}
USUAL = {f"{s}.std": 0.5 for s in SPANS}


def window(values: dict[str, list[float]]) -> dict[str, Any]:
    """A window's features from its raw readings per sensor (as the feature worker aggregates them)."""
    out: dict[str, Any] = {}
    for sensor, xs in values.items():
        mean = sum(xs) / len(xs)
        out[f"{sensor}.mean"] = mean
        out[f"{sensor}.std"] = 0.0 if min(xs) == max(xs) else math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
        out[f"{sensor}.min"], out[f"{sensor}.max"] = min(xs), max(xs)
        out[f"{sensor}.last"], out[f"{sensor}.count"] = xs[-1], float(len(xs))
    return out


def pump(rng: random.Random, temp: float = 60.0, speed: float = 2950.0, n: int = 10) -> dict[str, list[float]]:
    """One window of a running pump: readings with noise around levels that follow the speed."""
    s = speed / 2950.0
    return {
        "temp": [temp + rng.gauss(0, 0.15) for _ in range(n)],
        "vib": [2.2 * s * s + rng.gauss(0, 0.1) for _ in range(n)],
        "flow": [300.0 * s + rng.gauss(0, 2.0) for _ in range(n)],
        "speed": [speed + rng.gauss(0, 5.0) for _ in range(n)],
    }


def health() -> SensorHealth:
    return SensorHealth(spans=SPANS)


def faults_over(h: SensorHealth, windows: list[dict[str, list[float]]], steady: bool = True) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for w in windows:
        out += [(s, kind) for s, kind, _ in h.update(window(w), (), USUAL, steady)]
    return out


# --------------------------------------------------------------------------------------------- not faults


def test_a_bearing_heating_from_wear_to_its_limit_is_not_a_sensor_fault() -> None:
    rng = random.Random(1)
    # 60 -> 110 degC over 24 h of 10-minute windows, accelerating as wear does; the readings rise within each window.
    windows = []
    for k in range(144):
        a, b = 60 + 50 * (k / 144) ** 3, 60 + 50 * ((k + 1) / 144) ** 3
        w = pump(rng)
        w["temp"] = [a + (b - a) * i / 9 + rng.gauss(0, 0.15) for i in range(10)]
        windows.append(w)
    assert faults_over(health(), windows) == []


def test_a_speed_change_moves_several_sensors_at_once_and_is_no_sensor_fault() -> None:
    rng = random.Random(2)
    windows = [pump(rng, speed=1480.0) for _ in range(6)]
    change = pump(rng, speed=2950.0)
    for sensor in ("vib", "flow", "speed"):  # the speed doubles at the last reading of the window
        low = pump(rng, speed=1480.0)[sensor]
        change[sensor] = low[:-1] + change[sensor][-1:]
    windows += [change] + [pump(rng, speed=2950.0) for _ in range(6)]
    assert faults_over(health(), windows) == [], "steady: only the jump rules can judge this change"


def test_a_start_and_a_stop_inside_running_windows_are_no_sensor_faults() -> None:
    rng = random.Random(3)
    start = pump(rng)
    for sensor in ("vib", "flow", "speed"):
        start[sensor] = [0.0, *start[sensor][1:]]
    stop = pump(rng)
    for sensor in ("vib", "flow", "speed"):
        stop[sensor] = [*stop[sensor][:-2], 0.0, 0.0]
    assert faults_over(health(), [start, pump(rng), pump(rng), stop]) == []


def test_warm_up_after_a_speed_step_is_no_step_even_when_fast() -> None:
    rng = random.Random(4)
    windows = [pump(rng, temp=35.0, speed=1480.0) for _ in range(3)]
    windows += [pump(rng, temp=35.0 + 26.0 * (1 - math.exp(-k / 3)), speed=2950.0) for k in range(1, 8)]
    assert faults_over(health(), windows) == []


def test_a_sensor_reporting_once_per_window_is_not_stuck() -> None:
    rng = random.Random(5)
    windows = []
    for _ in range(15):
        w = pump(rng)
        w["temp"] = [60.0 + rng.gauss(0, 0.3)]  # report by exception: one reading, a different one each window
        windows.append(w)
    assert faults_over(health(), windows) == []


def test_a_machine_whose_every_sensor_is_flat_is_a_frozen_source_not_a_stuck_sensor() -> None:
    frozen = {s: [v] * 10 for s, v in (("temp", 60.0), ("vib", 2.2), ("flow", 300.0), ("speed", 2950.0))}
    assert faults_over(health(), [frozen] * 4) == []


def test_a_sensor_that_never_varies_in_its_normal_is_not_stuck() -> None:
    rng = random.Random(6)
    windows = []
    for _ in range(4):
        w = pump(rng)
        w["temp"] = [60.0] * 10
        windows.append(w)
    h = health()
    for w in windows:
        assert h.update(window(w), (), {"temp.std": 0.0}) == []


# --------------------------------------------------------------------------------------------- faults


def test_a_stuck_sensor_while_the_others_change_is_stuck_until_it_moves_again() -> None:
    rng = random.Random(7)
    h = health()
    assert faults_over(h, [pump(rng) for _ in range(3)]) == []
    stuck = []
    for _ in range(5):
        w = pump(rng)
        w["vib"] = [2.1734] * 10
        stuck.append(w)
    assert faults_over(h, stuck) == [("vib", "stuck")], "reported once, when it starts"
    assert h.faulty == {"vib": "stuck"}
    faults_over(h, [pump(rng)])
    assert h.faulty == {}


def test_stuck_needs_enough_readings() -> None:
    rng = random.Random(8)
    h = SensorHealth(spans=SPANS, stuck_windows=2, stuck_samples=10)
    w = pump(rng, n=3)
    w["temp"] = [60.0] * 3
    assert faults_over(h, [w, w, w]) == [], "9 readings"
    assert faults_over(h, [w]) == [("temp", "stuck")], "12 readings"


def test_a_one_reading_spike_and_back_alone_is_a_spike() -> None:
    rng = random.Random(9)
    h = health()
    faults_over(h, [pump(rng) for _ in range(3)])
    w = pump(rng)
    w["temp"][4] += 0.25 * 170  # 42 K in one reading, and back at the next
    assert faults_over(h, [w]) == [("temp", "spike")]
    faults_over(h, [pump(rng)])
    assert h.faulty == {}


def test_a_jump_that_has_not_come_back_at_the_windows_end_is_not_called_a_spike() -> None:
    rng = random.Random(10)
    h = health()
    faults_over(h, [pump(rng) for _ in range(3)])
    w = pump(rng)
    w["temp"][-1] += 0.25 * 170
    assert faults_over(h, [w]) == []


def test_a_jump_inside_a_window_that_stays_is_not_a_spike() -> None:
    rng = random.Random(16)
    h = health()
    faults_over(h, [pump(rng) for _ in range(3)])
    w = pump(rng)
    w["temp"] = w["temp"][:5] + [t + 40.0 for t in w["temp"][5:]]
    assert faults_over(h, [w], steady=False) == [], "half the window out there: a step, judged by the step rule"
    # Without the last reading (a feature worker that does not send it), the window's shape alone says the same.
    features = {k: v for k, v in window(w).items() if not k.endswith(".last")}
    assert h.update(features, (), USUAL, steady=False) == []


def test_an_offset_that_jumps_alone_in_steady_operation_is_a_step_that_lasts_while_it_stays() -> None:
    rng = random.Random(11)
    h = health()
    faults_over(h, [pump(rng) for _ in range(3)])
    assert faults_over(h, [pump(rng, temp=60.0 + 30.0)]) == [("temp", "step")]  # 18 % of the range, alone
    for _ in range(3):
        faults_over(h, [pump(rng, temp=90.0)])
        assert h.faulty == {"temp": "step"}
    faults_over(h, [pump(rng, temp=61.0)])
    assert h.faulty == {}


def test_no_step_across_missing_windows_nor_when_a_stuck_sensor_comes_back() -> None:
    rng = random.Random(17)
    h = health()
    for k in range(3):
        h.update(window(pump(rng, temp=30.0)), (), USUAL, at=600.0 * k)
    # A historian outage of two hours: the pump sped up meanwhile, nothing to compare the next window with.
    assert h.update(window(pump(rng, temp=55.0)), (), USUAL, at=600.0 * 14) == []
    assert h.update(window(pump(rng, temp=55.0)), (), USUAL, at=600.0 * 15) == []
    assert [f[:2] for f in h.update(window(pump(rng, temp=85.0)), (), USUAL, at=600.0 * 16)] == [("temp", "step")]

    stuck = health()
    faults_over(stuck, [pump(rng, temp=60.0)])
    frozen = pump(rng)
    frozen["temp"] = [60.1] * 10  # stuck at its last value while the bearing warms behind it
    assert faults_over(stuck, [frozen, frozen, frozen]) == [("temp", "stuck")]
    faults_over(stuck, [pump(rng, temp=82.0)])
    assert stuck.faulty == {}, "the true value again, 22 K from the stuck one: not a step"


def test_no_step_while_settling_after_a_start_or_a_load_change() -> None:
    rng = random.Random(12)
    h = health()
    faults_over(h, [pump(rng) for _ in range(3)])
    assert faults_over(h, [pump(rng, temp=90.0)], steady=False) == []


def test_a_dropout_while_the_others_report() -> None:
    rng = random.Random(13)
    h = health()
    w = pump(rng)
    del w["flow"]
    assert [(s, k) for s, k, _ in h.update(window(w), ("flow",), USUAL)] == [("flow", "dropout")]


def test_without_ranges_only_stuck_and_dropout_are_judged_and_for_sensors_takes_them_from_specs() -> None:
    rng = random.Random(14)
    h = SensorHealth()
    w = pump(rng)
    w["temp"][4] += 100.0
    assert faults_over(h, [pump(rng), w]) == []

    class Range:
        min, max = -20.0, 150.0

    class Spec:
        range = Range()

    assert SensorHealth.for_sensors({"temp": Spec()}).spans == {"temp": 170.0}


def test_state_pickled_by_the_z_score_checks_still_restores() -> None:
    old = SensorHealth.__new__(SensorHealth)
    old.__setstate__(
        {
            "stuck_windows": 2,
            "dropout_windows": 1,
            "step_z": 12.0,
            "spike_z": 12.0,
            "faulty": {},
            "_stuck": {"temp": 1},
            "_missing": {},
            "_last_z": {"temp": 0.3},
            "_step_from": {},
        }
    )
    restored = pickle.loads(pickle.dumps(old))
    rng = random.Random(15)
    w = pump(rng)
    w["vib"] = [2.0] * 10
    assert faults_over(restored, [w, w]) == [("vib", "stuck")]
    assert not hasattr(restored, "step_z")


def test_a_sensor_flat_at_zero_or_the_bottom_of_its_range_is_a_physical_floor_not_stuck() -> None:
    rng = random.Random(21)
    h = health()
    h.floors = {"flow": 0.0, "vib": 0.5}
    unloaded = []
    for _ in range(4):
        w = pump(rng)
        w["flow"] = [0.0] * 10  # an unloaded compressor, a low-flow cut-off
        unloaded.append(w)
    assert faults_over(h, unloaded) == []
    h = health()
    h.floors = {"flow": 0.0, "vib": 0.5}
    at_floor = []
    for _ in range(4):
        w = pump(rng)
        w["vib"] = [0.5] * 10
        at_floor.append(w)
    assert faults_over(h, at_floor) == []
    # Flat above the floor is still stuck.
    for w in at_floor:
        w["vib"] = [0.9] * 10
    assert faults_over(h, at_floor) == [("vib", "stuck")]


def test_a_health_indicator_stepping_towards_its_limit_is_not_a_fault_but_away_from_it_is() -> None:
    class Limits:
        low, high = None, 95.0

    class Range:
        min, max = -20.0, 150.0

    class Key:
        range, limits, key = Range(), Limits(), True

    specs = {"temp": Key(), "vib": Key(), "flow": Key(), "speed": Key()}
    h = SensorHealth.for_sensors(specs)
    assert h.wear == {"temp": 1, "vib": 1, "flow": 1, "speed": 1}
    rng = random.Random(22)
    faults_over(h, [pump(rng) for _ in range(3)])
    assert faults_over(h, [pump(rng, temp=90.0)]) == []  # +30 K alone, towards the limit: a degrading machine can
    h = SensorHealth.for_sensors(specs)
    faults_over(h, [pump(rng) for _ in range(3)])
    assert faults_over(h, [pump(rng, temp=30.0)]) == [("temp", "step")]  # away from the limit: the sensor
