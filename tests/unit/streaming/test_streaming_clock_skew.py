"""Readings from a clock set in the future: refused by the window engine (never moving the watermark), flagged by
the collectors' Validator."""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from features.vector import window_engine
from ingest.validation import Validator
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import Reading

NOW = 1_764_000_000.0  # the wall clock of these tests (2025-11-24), aligned to 60 s
DAY = 86_400.0


def config(windows: dict[str, Any] | None = None, publish: dict[str, Any] | None = None) -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    data = {**plant, "windows": {"size_s": 60, "grace_s": 10, **(windows or {})}}
    if publish is not None:
        data["publish"] = publish
    return load_config(environ={}, data=data)


def flow(engine: Any, t: float, value: float = 1.0) -> list[Any]:
    return engine.add_samples("PMP-001", [("flow", t, value)])


def test_the_default_refuses_a_reading_a_day_ahead_without_moving_the_watermark() -> None:
    engine = window_engine(config())
    engine.set_clock(NOW + 5)
    flow(engine, NOW)
    flow(engine, NOW + 2 * 365 * DAY)  # a controller whose clock says two years from now
    assert engine.stats.clock_skew == 1
    # Later readings are not late: the far-future one did not move the machine's watermark.
    out = flow(engine, NOW + 1) + flow(engine, NOW + 75)
    assert engine.stats.late == 0
    assert [v.count for v in out] == [2]
    (refused,) = engine.drain_late()
    assert refused.reason == "clock_skew" and refused.ts == NOW + 2 * 365 * DAY and refused.closed_upto == NOW + 5
    # Just inside the allowed skew is accepted.
    flow(engine, NOW + 5 + DAY - 1)
    assert engine.stats.clock_skew == 1


def test_the_bulk_path_refuses_the_same_readings() -> None:
    engine = window_engine(config({"max_clock_skew_s": 60}))
    engine.set_clock(NOW)
    ts = np.array([NOW - 1, NOW + 61, NOW + 30, NOW + 3600])
    (first,) = engine.add_columns("PMP-001", ["flow", "speed"], [2, 2], ts, np.array([1.0, 2.0, 3.0, 4.0]))
    assert first.features["flow.last"] == 1.0 and first.count == 1  # the watermark moved to NOW + 30 only
    assert engine.stats.clock_skew == 2 and engine.stats.readings == 4
    assert sorted((r.sensor, r.ts) for r in engine.drain_late()) == [("flow", NOW + 61), ("speed", NOW + 3600)]
    engine.set_clock(NOW + 100)
    (second,) = engine.add_columns("PMP-001", ["flow"], [1], np.array([NOW + 90]), np.array([5.0]))
    assert second.features["speed.last"] == 3.0 and second.count == 1


@pytest.mark.parametrize("clock", [True, False])
def test_inf_disables_the_check_and_without_a_clock_there_is_none(clock: bool) -> None:
    engine = window_engine(config({"max_clock_skew_s": math.inf} if clock else None))
    if clock:
        engine.set_clock(NOW)
    flow(engine, NOW + 365 * DAY)
    assert engine.stats.clock_skew == 0 and engine.drain_late() == []


def test_the_validator_flags_clock_skew_only_when_configured() -> None:
    ts = datetime.fromtimestamp(NOW + 7200, UTC)
    reading = Reading(machine_id="PMP-001", sensor="flow", ts=ts, value=12.0)
    assert Validator(config(), clock=lambda: NOW).check(reading) == reading
    validator = Validator(config(publish={"max_clock_skew_s": 3600}), clock=lambda: NOW)
    checked = validator.check(reading)
    assert checked is not None and checked.flags == ("clock_skew",) and checked.value == 12.0
    assert validator.counters["clock_skew"] == 1
    on_time = reading.model_copy(update={"ts": datetime.fromtimestamp(NOW + 3500, UTC)})
    assert validator.check(on_time) == on_time
    huge = Validator(config(publish={"max_clock_skew_s": 1e15}), clock=lambda: NOW)
    assert huge.check(reading) == reading
