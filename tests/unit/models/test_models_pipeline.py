"""The pure models core: fail-safes, cold start, explanations, what never trains, sensor faults."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.pipeline import FleetModel
from models.synthetic import WINDOW_S, pump_vector
from vigil.config import VigilConfig
from vigil.contracts import Decision, MachineState, MaintenanceEvent

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def window(k: int) -> datetime:
    return T0 + timedelta(seconds=WINDOW_S * k)


def make(config: VigilConfig, **models: Any) -> FleetModel:
    return FleetModel(config.models.model_copy(update=models), config.machines_by_id, config.machine_types)


def healthy(model: FleetModel, machine: str, windows: int, start: int = 0, seed: int = 1) -> int:
    rng = random.Random(seed)
    for k in range(start, start + windows):
        model.process(pump_vector(machine, window(k), load=0.6 + 0.4 * ((k // 7) % 5) / 4, rng=rng))
    return start + windows


@pytest.fixture
def trained(example_config: VigilConfig) -> FleetModel:
    model = make(example_config)
    healthy(model, "PMP-001", 150)
    return model


def test_machine_off_is_a_decision_not_a_prediction(example_config: VigilConfig) -> None:
    model = make(example_config)
    p = model.process(pump_vector("PMP-001", window(1), rng=None, state=MachineState.OFF)).prediction
    assert p is not None
    assert p.decision == Decision.OFF and p.decided_by == "none" and "machine off" in p.reasons


def test_hard_limits_always_decide_even_in_cold_start_and_warm_up(example_config: VigilConfig) -> None:
    model = make(example_config)
    p = model.process(pump_vector("PMP-001", window(1), rng=None, overrides={"bearing_temp.mean": 97.0})).prediction
    assert p is not None and p.cold_start
    assert p.decision == Decision.ALERT and p.decided_by == "rule"
    assert p.rule_violations == ("bearing_temp.mean 97 > high limit 95",)
    assert any("hard limit" in r for r in p.reasons)


def test_per_machine_limit_overrides_apply(example_config: VigilConfig) -> None:
    model = make(example_config)
    p = model.process(pump_vector("PMP-004", window(1), rng=None, overrides={"bearing_temp.mean": 97.0})).prediction
    assert p is not None and p.rule_violations == ()  # PMP-004's limit is 105


def test_cold_start_uses_the_type_normal_and_says_so(trained: FleetModel) -> None:
    first = trained.process(pump_vector("PMP-002", window(200), rng=random.Random(5))).prediction
    assert first is not None and first.cold_start
    assert any(r.startswith("cold start: using the pump type's normal") for r in first.reasons)
    k = healthy(trained, "PMP-002", 80, start=201)
    later = trained.process(pump_vector("PMP-002", window(k), rng=random.Random(6))).prediction
    assert later is not None and not later.cold_start and later.decision == Decision.OK
    assert later.anomaly_score is not None and later.decided_by == "anomaly"


def test_degradation_alerts_with_contributions_next_to_normal(trained: FleetModel) -> None:
    rng = random.Random(3)
    outputs = [
        trained.process(pump_vector("PMP-001", window(150 + i), load=0.8, wear=0.5, rng=rng)).prediction
        for i in range(6)
    ]
    p = outputs[-1]
    assert p is not None and p.decision == Decision.ALERT and p.decided_by == "anomaly"
    assert any("of the way from its normal to its hard limit" in r for r in p.reasons)
    top = p.contributions[0]
    assert top.feature in ("bearing_temp.mean", "vibration_rms.mean")
    assert top.value is not None and top.normal is not None and top.normal_std is not None
    assert top.value > top.normal + 5 * top.normal_std
    if top.feature == "bearing_temp.mean":
        assert top.normal == pytest.approx(33 + 27 * 0.8, abs=1.5)


def test_every_running_prediction_carries_contributions(trained: FleetModel) -> None:
    p = trained.process(pump_vector("PMP-001", window(151), rng=random.Random(9))).prediction
    assert p is not None and p.decision == Decision.OK and len(p.contributions) == 5


def test_gap_bad_quality_and_warm_up_windows_never_train(trained: FleetModel) -> None:
    machine = trained.machine_memory("PMP-001")
    assert machine is not None
    before = (machine.normal.n, machine.windows, trained.pending.count("PMP-001"))
    rng = random.Random(4)
    trained.process(pump_vector("PMP-001", window(151), rng=rng, gap=True))
    trained.process(pump_vector("PMP-001", window(152), rng=rng, bad_quality_share=0.5))
    assert (machine.normal.n, machine.windows, trained.pending.count("PMP-001")) == before
    trained.process(pump_vector("PMP-001", window(153), rng=rng, state=MachineState.OFF))
    p = trained.process(pump_vector("PMP-001", window(154), rng=rng)).prediction
    assert p is not None and any(r.startswith("warm-up after start") for r in p.reasons)
    assert machine.windows == before[1]


def test_a_restart_inside_a_window_or_data_after_a_gap_starts_a_warm_up(trained: FleetModel) -> None:
    rng = random.Random(4)
    warm = "warm-up after start: anomalies are not alerted"
    steady = trained.process(pump_vector("PMP-001", window(151), rng=rng)).prediction
    assert steady is not None and warm not in steady.reasons
    # A stop shorter than a window: no window was off, but the feature worker saw the restart sample by sample.
    restarted = pump_vector("PMP-001", window(152), rng=rng).model_copy(update={"started_at": window(152)})
    p = trained.process(restarted).prediction
    assert p is not None and warm in p.reasons
    k = healthy(trained, "PMP-001", 20, start=153)
    assert warm not in (trained.process(pump_vector("PMP-001", window(k), rng=rng)).prediction or steady).reasons
    # Three hours without any window, then data again: what the machine did meanwhile is unknown.
    resumed = trained.process(pump_vector("PMP-001", window(k + 19), rng=rng)).prediction
    assert resumed is not None and warm in resumed.reasons


def test_a_stuck_sensor_is_a_sensor_fault_not_degradation(trained: FleetModel) -> None:
    rng = random.Random(8)
    # Stuck: the same value in every reading of every window, while the other sensors keep changing.
    frozen: dict[str, float | None] = {"bearing_temp.mean": 54.6, "bearing_temp.max": 54.6, "bearing_temp.std": 0.0}
    events = []
    for i in range(3):
        out = trained.process(pump_vector("PMP-001", window(151 + i), load=0.8, rng=rng, overrides=frozen))
        events += out.drift
    faults = [e for e in events if e.event == "sensor_fault"]
    assert len(faults) == 1 and faults[0].target == "bearing_temp" and faults[0].detail.startswith("stuck")
    assert out.prediction is not None and out.prediction.decision == Decision.OK
    assert any("sensor fault, left out: bearing_temp (stuck)" in r for r in out.prediction.reasons)
    assert all(not c.feature.startswith("bearing_temp") for c in out.prediction.contributions)


def test_a_dropout_is_reported_once(trained: FleetModel) -> None:
    rng = random.Random(2)
    events = []
    for i in range(3):
        fv = pump_vector("PMP-001", window(151 + i), rng=rng, overrides={"flow.mean": None, "flow.std": None})
        events += trained.process(fv.model_copy(update={"missing": ("flow",)})).drift
    assert [(e.target, e.event) for e in events if e.event == "sensor_fault"] == [("flow", "sensor_fault")]


def test_out_of_range_inputs_take_the_decision_away_from_the_classifier(example_config: VigilConfig) -> None:
    model = make(example_config, min_positive_labels=1, horizon_s=6 * 3600.0)
    k = healthy(model, "PMP-001", 150)
    rng = random.Random(1)
    for i in range(30):
        model.process(pump_vector("PMP-001", window(k + i), load=0.8, wear=0.01 * i, rng=rng))
    model.maintenance(MaintenanceEvent(machine_id="PMP-001", ts=window(k + 30), event="failure"))
    assert model.type_memory("pump").classifier.n_positive >= 1
    model.maintenance(MaintenanceEvent(machine_id="PMP-001", ts=window(k + 40), event="repair"))
    healthy(model, "PMP-001", 20, start=k + 41)
    p = model.process(pump_vector("PMP-001", window(k + 61), load=0.8, wear=0.9, rng=rng)).prediction
    assert p is not None and p.p_failure is not None
    assert any(r.startswith("input outside the range the model has seen") for r in p.reasons)
    assert p.decided_by in ("rule", "anomaly")
    # A deviation outside what the model has seen pages once it lasts 30 running minutes, not from one window.
    for j in (62, 63):
        p = model.process(pump_vector("PMP-001", window(k + j), load=0.8, wear=0.9, rng=rng)).prediction
    assert p is not None and p.decided_by in ("rule", "anomaly")
    assert p.decision == Decision.ALERT


def test_delayed_labels_reach_the_type_classifier(example_config: VigilConfig) -> None:
    model = make(example_config, horizon_s=3 * 3600.0, negative_sample_rate=1.0)
    k = healthy(model, "PMP-001", 100)
    classifier = model.type_memory("pump").classifier
    negatives_before = classifier.n_negative
    assert negatives_before > 0  # windows older than the horizon resolved as negatives
    model.maintenance(MaintenanceEvent(machine_id="PMP-001", ts=window(k), event="failure"))
    assert classifier.n_positive == 3 * 3600 / WINDOW_S  # the last 3 h of windows


def test_unknown_machine_types_and_odd_features_never_crash(example_config: VigilConfig) -> None:
    from vigil.contracts import FeatureVector

    model = make(example_config)
    rng = random.Random(0)
    for k in range(80):
        features: dict[str, float | None] = {"temp.mean": 50 + rng.gauss(0, 1), "temp.std": 1.0, "odd": None}
        if k % 7 == 0:
            features["new_sensor.mean"] = float("nan")
        fv = FeatureVector(
            machine_id="TRB-001",
            machine_type="turbine",
            window_start=window(k),
            window_end=window(k + 1),
            features=features,
        )
        p = model.process(fv).prediction
        assert p is not None and p.decision in (Decision.OK, Decision.ALERT)
    assert p.rule_violations == () and not p.cold_start


def _silent(vector: Any, sensor: str) -> Any:
    """The window as a report-by-exception source leaves it: the sensor sent nothing (unchanged value)."""
    features = {k: (None if k.startswith(f"{sensor}.") else v) for k, v in vector.features.items()}
    return vector.model_copy(update={"features": features, "missing": (sensor,)})


def test_a_silent_running_sensor_holds_its_last_value(trained: FleetModel) -> None:
    stopped = trained.process(pump_vector("PMP-001", window(150), rng=None, state=MachineState.OFF)).prediction
    assert stopped is not None and stopped.decision == Decision.OFF
    # Speed read 0 and then nothing (the feature worker saw no running-sensor reading, so it said "running").
    silent = _silent(pump_vector("PMP-001", window(151), load=0.0, rng=None), "speed")
    p = trained.process(silent).prediction
    assert p is not None and p.decision == Decision.OFF and p.decided_by == "none"
    assert any("speed sent nothing since it read 0" in r for r in p.reasons)
    # The feature worker holding the value itself says off, and why: the reason still names the held reading.
    held_at = window(150)
    decided = silent.model_copy(
        update={
            "state": MachineState.OFF,
            "state_held": 0.0,
            "state_held_ts": held_at,
            "window_start": window(151),
            "window_end": window(152),
        }
    )
    q = trained.process(decided).prediction
    assert q is not None and q.decision == Decision.OFF
    assert any(f"speed sent nothing since it read 0 at {held_at:%Y-%m-%d %H:%M} UTC" in r for r in q.reasons)
    # It starts again: a fresh start, so its warm-up is not judged as degradation.
    started = trained.process(pump_vector("PMP-001", window(153), rng=random.Random(2))).prediction
    assert started is not None and started.decision != Decision.OFF
    assert "warm-up after start: anomalies are not alerted" in started.reasons


def test_a_running_sensor_dropping_out_while_running_is_not_off(trained: FleetModel) -> None:
    p = trained.process(_silent(pump_vector("PMP-001", window(150), rng=random.Random(4)), "speed")).prediction
    assert p is not None and p.decision != Decision.OFF
    assert any("speed (dropout)" in r for r in p.reasons)


def test_a_window_already_processed_is_neither_predicted_nor_learnt(trained: FleetModel) -> None:
    rng = random.Random(9)
    first = trained.process(pump_vector("PMP-001", window(150), rng=rng))
    assert first.prediction is not None
    memory = trained.machine_memory("PMP-001")
    assert memory is not None
    before = (memory.windows, memory.normal.n, trained.pending.count(), dict(memory.smooth))
    # The feature worker re-emits windows closed since its last checkpoint after a crash: same or older ends.
    for k in (150, 149, 120):
        again = trained.process(pump_vector("PMP-001", window(k), wear=0.9, rng=rng))
        assert again.prediction is None and again.drift == []
    assert (memory.windows, memory.normal.n, trained.pending.count(), dict(memory.smooth)) == before
    # Other machines and newer windows are unaffected.
    assert trained.process(pump_vector("PMP-002", window(120), rng=rng)).prediction is not None
    later = trained.process(pump_vector("PMP-001", window(151), rng=rng))
    assert later.prediction is not None and memory.windows == before[0] + 1


def test_a_silent_running_sensor_keeps_the_last_load_while_running(trained: FleetModel) -> None:
    rng = random.Random(12)
    k = 150
    for k in range(150, 160):
        trained.process(pump_vector("PMP-001", window(k), load=0.8, rng=rng))
    # The speed stays put, so a report-by-exception source sends nothing: judged at the last load, not at 0.
    for k in range(160, 175):
        p = trained.process(_silent(pump_vector("PMP-001", window(k), load=0.8, rng=rng), "speed")).prediction
        assert p is not None and p.decision == Decision.OK, p.reasons
    back = trained.process(pump_vector("PMP-001", window(175), load=0.8, rng=rng)).prediction
    assert back is not None and back.decision == Decision.OK, back.reasons


def test_a_fresh_plant_says_it_is_learning_and_lets_the_rules_decide(example_config: VigilConfig) -> None:
    model = make(example_config)
    rng = random.Random(21)
    for k in range(12):  # past the warm-up, before any normal exists
        p = model.process(pump_vector("PMP-001", window(k), load=0.8, wear=0.6, rng=rng)).prediction
    assert p is not None and p.cold_start and p.decision == Decision.OK and p.decided_by == "rule"
    assert any(r.startswith("learning: no normal for this machine yet (") for r in p.reasons), p.reasons


def test_a_faulty_running_sensor_hides_the_operating_point(trained: FleetModel) -> None:
    rng = random.Random(14)
    trained.process(pump_vector("PMP-001", window(150), load=0.8, rng=rng))
    memory = trained.machine_memory("PMP-001")
    assert memory is not None
    learnt = memory.normal.n
    # Speed stuck at its 0.8-load value while the pump runs at full load: judged at 0.8, everything would deviate.
    for k in range(151, 160):
        vector = pump_vector("PMP-001", window(k), load=1.0, rng=rng)
        stuck = dict(vector.features, **{"speed.mean": 2368.0, "speed.std": 0.0, "speed.max": 2368.0})
        p = trained.process(vector.model_copy(update={"features": stuck})).prediction
    assert p is not None and p.decision == Decision.OK and p.decided_by == "rule"
    assert (
        "operating point unknown: the running sensor speed is faulty (stuck): only the hard limits decide" in p.reasons
    )
    assert memory.normal.n == learnt  # nothing learnt at an unknown operating point
