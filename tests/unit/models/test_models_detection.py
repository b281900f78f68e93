"""Detection delay on known change points: what is due comes, and in time; what is not due stays quiet."""

from __future__ import annotations

import json

import pytest

from models.detection import main, run_scenario
from vigil.config import VigilConfig


@pytest.mark.parametrize(("scenario", "within_h"), [("step", 1.0), ("ramp", 24.0)])
def test_wear_is_alerted_after_the_change_and_in_time(
    scenario: str, within_h: float, example_config: VigilConfig
) -> None:
    r = run_scenario(scenario, seed=3, machines=2, healthy_h=36.0, after_h=36.0, config=example_config)
    assert r.detected == [True, True]
    assert all(0.0 <= d <= within_h for d in r.delays_h), r.delays_h
    assert r.alerts_before == 0


def test_a_stuck_sensor_is_a_sensor_fault_not_an_alert(example_config: VigilConfig) -> None:
    r = run_scenario("stuck", seed=3, machines=2, healthy_h=36.0, after_h=24.0, config=example_config)
    assert r.expected == "sensor_fault" and r.detected == [True, True]
    assert r.alerts_unwanted == 0


def test_a_new_operating_point_is_not_an_alert(example_config: VigilConfig) -> None:
    r = run_scenario("load", seed=3, machines=2, healthy_h=36.0, after_h=24.0, config=example_config)
    assert r.detected == [True, True] and r.alerts_unwanted == 0


def test_unknown_scenario_is_refused(example_config: VigilConfig) -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        run_scenario("meteor", config=example_config)


def test_command_prints_one_row_per_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", "1", "--machines", "1", "--scenario", "step", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["scenario"] == "step" and row["runs"] == 1 and row["detected_share"] == 1.0
