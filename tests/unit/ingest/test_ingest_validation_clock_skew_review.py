"""The Validator's clock_skew flag: exactly at the limit is fine, beyond it is flagged, and the once-a-second
cache of the horizon never flags a reading that is within the limit on the clock now."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import pytest

from ingest.validation import Validator
from vigil.config import EXAMPLE_CONFIG, load_config
from vigil.contracts import Reading

T0 = 1_764_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _validator(skew: float, clock: Clock) -> Validator:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    config = load_config(environ={}, data={**plant, "publish": {"max_clock_skew_s": skew}})
    return Validator(config, clock=clock)


def _reading(t: float) -> Reading:
    return Reading(machine_id="PMP-001", sensor="flow", ts=datetime.fromtimestamp(t, UTC), value=10.0, unit="m3/h")


def _flags(v: Validator, t: float) -> tuple[str, ...]:
    checked = v.check(_reading(t))
    assert checked is not None
    return checked.flags


@pytest.mark.parametrize("skew", [0.0, 0.5, 60.0])
def test_a_reading_within_the_limit_on_the_clock_now_is_not_flagged(skew: float) -> None:
    clock = Clock(T0)
    v = _validator(skew, clock)
    assert _flags(v, T0 + skew) == ()  # exactly at the limit
    assert "clock_skew" in _flags(v, T0 + skew + 0.001)
    for step in (0.25, 0.5, 0.9):  # the clock moves on inside the cache's second
        clock.now = T0 + step
        assert _flags(v, T0 + step + skew) == (), step
    assert v.counters["clock_skew"] == 1


def test_infinite_skew_never_flags() -> None:
    v = _validator(float("inf"), Clock(T0))
    assert _flags(v, 253402300799.0) == ()
