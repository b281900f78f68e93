"""Sensor health: steps are offsets of one sensor in steady operation, not settling or wear."""

from __future__ import annotations

import pickle

from models.sensors import SensorHealth

STD = {"a.std": 0.5, "b.std": 0.5}


def feed(health: SensorHealth, a: float, b: float = 0.0, steady: bool = True) -> list[tuple[str, str, str]]:
    return health.update({"a.mean": a, "b.mean": b}, {"a.mean": a, "b.mean": b}, (), STD, steady)


def test_a_jump_of_one_sensor_alone_is_a_step_that_lasts_while_the_offset_stays() -> None:
    health = SensorHealth()
    feed(health, 0.0)
    assert [f[:2] for f in feed(health, 20.0)] == [("a", "step")]
    for _ in range(5):
        feed(health, 21.0)
        assert health.faulty == {"a": "step"}
    feed(health, 1.0)
    assert health.faulty == {}


def test_no_step_while_settling_after_a_start_or_a_load_change() -> None:
    health = SensorHealth()
    feed(health, 0.0, steady=False)
    assert feed(health, 20.0, steady=False) == [] and health.faulty == {}


def test_a_level_that_keeps_moving_away_is_the_machine_not_an_offset() -> None:
    health = SensorHealth()
    feed(health, 0.0)
    feed(health, 15.0)
    assert health.faulty == {"a": "step"}
    feed(health, 25.0)
    assert health.faulty == {"a": "step"}
    feed(health, 35.0)  # more than twice the jump: wear, judged by the models again
    assert health.faulty == {}


def test_state_pickled_before_step_sizes_were_kept_still_restores() -> None:
    health = SensorHealth()
    feed(health, 0.0)
    feed(health, 20.0)
    state = dict(health.__dict__)
    del state["_step_size"], state["_steady"]
    old = SensorHealth.__new__(SensorHealth)
    old.__setstate__(state)
    restored = pickle.loads(pickle.dumps(old))
    feed(restored, 21.0)
    assert restored.faulty == {"a": "step"}
