"""The operating point a type is judged at, degradations held at lighter points, and what drift is a finding."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime, timedelta

from models.drift import LevelShift
from models.operating import OperatingNormal, regressors
from models.pipeline import _LOAD_PICK_WINDOWS, FleetModel, MachineMemory, TypeMemory
from models.sensors import SensorHealth
from models.synthetic import WINDOW_S, pump_vector
from vigil.config import VigilConfig
from vigil.contracts import Decision, FeatureVector, MachineState

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def window(k: int) -> datetime:
    return T0 + timedelta(seconds=WINDOW_S * k)


def motor_vector(machine_id: str, k: int, load: float, rng: random.Random) -> FeatureVector:
    """A mains-fed motor: its speed stays at 1470 rpm whatever the load; current and winding follow the load."""
    values = {
        "speed": 1470.0 - 20.0 * load,
        "current": 60.0 + 200.0 * load,
        "winding_temp": 50.0 + 60.0 * load * load,
        "bearing_temp": 40.0 + 10.0 * load,
        "vibration_rms": 1.5,
    }
    features: dict[str, float | None] = {}
    for sensor, mean in values.items():
        m = mean + rng.gauss(0.0, 0.1)
        features[f"{sensor}.mean"] = m
        features[f"{sensor}.std"] = 0.1
        features[f"{sensor}.max"] = m + 0.2
        features[f"{sensor}.slope"] = 0.0
    return FeatureVector(
        machine_id=machine_id,
        machine_type="motor",
        window_start=window(k) - timedelta(seconds=WINDOW_S),
        window_end=window(k),
        features=features,
        state=MachineState.RUNNING,
        count=60,
    )


def make(config: VigilConfig) -> FleetModel:
    return FleetModel(config.models, config.machines_by_id, config.machine_types)


def test_a_type_whose_running_sensor_stays_constant_is_judged_at_the_sensor_that_carries_the_load(
    example_config: VigilConfig,
) -> None:
    model = make(example_config)
    rng = random.Random(3)
    warm = int(example_config.models.warmup_s // WINDOW_S) + 1
    k = 0
    for k in range(warm + _LOAD_PICK_WINDOWS + 5):
        model.process(motor_vector("MTR-001", k, 0.3 + 0.6 * ((k // 6) % 4) / 3, rng))
    kind = model.type_memory("motor")
    assert kind.load_sensor == "current"  # speed moves < 1 % of its range; current the most of the non-key sensors
    memory = model.machine_memory("MTR-001")
    assert memory is not None and memory.load is not None
    assert math.isclose(memory.load, (60.0 + 200.0 * 0.3 + 0.6 * 200.0 * ((k // 6) % 4) / 3) / 400.0, abs_tol=0.01)
    # The normals learnt against the constant speed started again: nothing older than the choice is in them.
    assert kind.normal.n <= 10 and memory.normal.n <= 10


def test_a_type_whose_running_sensor_follows_the_duty_keeps_it(example_config: VigilConfig) -> None:
    model = make(example_config)
    rng = random.Random(1)
    for k in range(int(example_config.models.warmup_s // WINDOW_S) + _LOAD_PICK_WINDOWS + 5):
        model.process(pump_vector("PMP-001", window(k), load=0.6 + 0.4 * ((k // 7) % 5) / 4, rng=rng))
    kind = model.type_memory("pump")
    assert kind.load_sensor == "speed"
    assert kind.normal.n > _LOAD_PICK_WINDOWS  # nothing was reset


def _held_model(example_config: VigilConfig) -> tuple[FleetModel, MachineMemory]:
    model = make(example_config)
    memory = MachineMemory(
        "MTR-001", "motor", None, None, OperatingNormal(), SensorHealth.for_sensors({})
    )  # the hold needs only the margins
    return model, memory


def _fv(k: int) -> FeatureVector:
    return motor_vector("MTR-001", k, 0.5, random.Random(k))


def test_a_degradation_holds_at_lighter_operating_points_until_seen_healthy_at_a_comparable_one(
    example_config: VigilConfig,
) -> None:
    model, memory = _held_model(example_config)
    heavy, light = regressors(0.9, 0.9, 12.0), regressors(0.3, 0.3, 2.0)
    memory.margin["winding_temp.mean"] = 0.3
    assert not model._hold(_fv(1), memory, True, "winding_temp.mean", 0.25, True, heavy)  # the alert itself
    memory.margin["winding_temp.mean"] = 0.02  # the night shift: nothing shows at a third of the load
    assert model._hold(_fv(2), memory, False, None, 0.25, True, light)
    assert model._hold(_fv(3), memory, False, None, 0.25, True, light)
    memory.margin["winding_temp.mean"] = 0.2  # back at full load, still above half the bar: held
    assert model._hold(_fv(4), memory, False, None, 0.25, True, heavy)
    memory.margin["winding_temp.mean"] = 0.05  # below half the bar at full load, but not judged (settling)
    assert model._hold(_fv(5), memory, False, None, 0.25, False, heavy)
    assert not model._hold(_fv(6), memory, False, None, 0.25, True, heavy)  # judged: recovered
    assert memory.held_key is None
    assert not model._hold(_fv(7), memory, False, None, 0.25, True, light)


def test_a_held_degradation_that_never_shows_again_is_let_go(example_config: VigilConfig) -> None:
    model, memory = _held_model(example_config)
    light = regressors(0.3, 0.3, 2.0)
    model._hold(_fv(0), memory, True, "winding_temp.mean", 0.25, True, regressors(0.9, 0.9, 12.0))
    day = int(24 * 3600 // WINDOW_S)
    held = [model._hold(_fv(k), memory, False, None, 0.25, True, light) for k in range(1, day + 2)]
    assert all(held[: day - 1]) and not held[day - 1]  # let go after 24 running hours


def test_memories_of_older_checkpoints_load_with_the_new_fields(example_config: VigilConfig) -> None:
    model = make(example_config)
    rng = random.Random(2)
    for k in range(5):
        model.process(motor_vector("MTR-001", k, 0.5, rng))
    kind, memory = model.type_memory("motor"), model.machine_memory("MTR-001")
    assert memory is not None
    for obj, fields in ((kind, ("load_sensor", "spread")), (memory, ("held_key", "held_load", "held_h"))):
        for name in fields:
            del obj.__dict__[name]  # as pickled before these fields existed
    drift = LevelShift()
    del drift.__dict__["held_h"], drift.__dict__["lasted"]
    kind2, memory2, drift2 = pickle.loads(pickle.dumps((kind, memory, drift)))
    assert isinstance(kind2, TypeMemory) and kind2.load_sensor is None and kind2.spread == {}
    assert memory2.held_key is None and memory2.held_load is None and memory2.held_h == 0.0
    assert drift2.held_h == 0.0 and drift2.lasted is False


def test_a_level_shift_is_recorded_at_once_and_a_finding_only_once_it_lasts(example_config: VigilConfig) -> None:
    model = make(example_config)
    rng = random.Random(5)
    events = []
    for k in range(700):
        wear = 0.0 if k < 250 else 0.25  # a lasting shift of bearing temperature and vibration
        fv = pump_vector("PMP-001", window(k), load=0.8, wear=wear, rng=rng)
        events += [
            (k, e.event) for e in model.process(fv).drift if e.machine_id == "PMP-001" and e.detector != "sensor_fault"
        ]
    warnings = [k for k, e in events if e == "warning"]
    findings = [k for k, e in events if e == "drift"]
    assert warnings and findings
    assert min(findings) - min(warnings) >= 24 * 3600 // WINDOW_S - 1


def test_a_deviation_outside_what_the_model_has_seen_pages_only_once_it_lasts(example_config: VigilConfig) -> None:
    model = make(example_config)
    rng = random.Random(1)
    k = 0
    for k in range(200):
        model.process(pump_vector("PMP-001", window(k), load=0.6 + 0.4 * ((k // 7) % 5) / 4, rng=rng))
    decisions = []
    for j in range(1, 5):  # the bearing 25 K above its normal at a load it knows: far outside its noise
        fv = pump_vector("PMP-001", window(k + j), load=0.8, rng=rng, overrides={"bearing_temp.mean": 88.0})
        p = model.process(fv).prediction
        assert p is not None
        decisions.append((p.decision, any(r.startswith("not alerted yet") for r in p.reasons)))
    # Held back, with the reason, until it has lasted 30 running minutes (the third 10-minute window); then paged.
    assert decisions[:2] == [(Decision.OK, True)] * 2
    assert decisions[2:] == [(Decision.ALERT, False)] * 2


def test_a_single_excursion_that_goes_back_never_pages(example_config: VigilConfig) -> None:
    model = make(example_config)
    rng = random.Random(1)
    k = 0
    for k in range(200):
        model.process(pump_vector("PMP-001", window(k), load=0.6 + 0.4 * ((k // 7) % 5) / 4, rng=rng))
    hot = {"bearing_temp.mean": 88.0}
    for j, overrides in enumerate([hot, hot, None, None, hot, hot, None], start=1):
        p = model.process(pump_vector("PMP-001", window(k + j), load=0.8, rng=rng, overrides=overrides)).prediction
        assert p is not None and p.decision == Decision.OK, (j, p.reasons)


def test_the_spread_is_learnt_per_load_quarter_so_part_load_noise_does_not_read_as_a_deviation() -> None:
    rng = random.Random(5)
    normal = OperatingNormal(ref_windows=50)
    for i in range(800):
        s = 0.1 if i % 2 else 0.9
        noise = 5.0 if s < 0.5 else 0.2  # a ratio over a flow near zero is noisy at part load only
        normal.update({"r.mean": 10.0 + rng.gauss(0, noise)}, regressors(s, s, hour=12))
    part, full = regressors(0.1, 0.1, hour=12), regressors(0.9, 0.9, hour=12)
    # Ten units off at part load is two of its own deviations; at full load the same is far more (a quiet bin is
    # floored at half the whole range's spread, so not fifty).
    assert abs(normal.z({"r.mean": 20.0}, part)["r.mean"]) < 3
    assert abs(normal.z({"r.mean": 20.0}, full)["r.mean"]) > 5
    assert normal.scale("r.mean", part) > 2.5 * normal.scale("r.mean", full)
    # A checkpoint from before the per-load spread restores and falls back to the whole range's spread.
    state = pickle.loads(pickle.dumps(normal)).__dict__
    for key in ("_bvar", "_bcount"):
        state.pop(key)
    old = OperatingNormal.__new__(OperatingNormal)
    old.__setstate__(state)
    assert old.scale("r.mean", part) == old.scale("r.mean")
