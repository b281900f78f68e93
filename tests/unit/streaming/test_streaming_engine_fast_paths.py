"""The window engine's fast paths give what the per-reading path gives.

Messages are buffered as they come and joined once per window; a window whose sensors' event times rise strictly
is grouped with one stable sort and no de-duplication, anything else (out-of-order or duplicate readings) falls back
to the general sort. Reading the state (``machine_state``) regroups the buffer by
sensor. None of it may change a vector, a counter or a refusal."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.vector import window_engine
from streaming.windows import WindowEngine
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import FeatureVector

PLANT = tomllib.loads(EXAMPLE_CONFIG.read_text())
T0 = 1_764_000_000.0
PUMP = ["flow", "pressure", "speed", "bearing_temp"]
Sample = tuple[str, float, float]


def _config(**windows: Any) -> VigilConfig:
    return load_config(environ={}, data={**PLANT, "windows": {"size_s": 60, "grace_s": 10, **windows}})


def _columns(samples: list[Sample]) -> tuple[list[str], list[int], Any, Any]:
    by_sensor: dict[str, list[Sample]] = {}
    for s in samples:
        by_sensor.setdefault(s[0], []).append(s)
    ts = [t for rows in by_sensor.values() for _, t, _ in rows]
    values = [v for rows in by_sensor.values() for _, _, v in rows]
    return list(by_sensor), [len(r) for r in by_sensor.values()], np.array(ts), np.array(values)


def _stats(engine: WindowEngine) -> tuple[Any, ...]:
    s = engine.stats
    return (s.readings, s.unusable, s.late, s.clock_skew, s.duplicates, s.windows, s.wall_clock_windows,
            dict(s.unknown_sensors))  # fmt: skip


def _regular(seconds: range, sensors: list[str], step: float = 1.0) -> list[Sample]:
    """Every sensor at ``1/step`` Hz over ``seconds``, grouped by sensor as a collector's columns message."""
    return [(s, T0 + i * step + 0.001 * k, 50.0 + k + (i % 7) * 0.1) for k, s in enumerate(sensors) for i in seconds]


class _Counting:
    """Counts calls of the engine's general (sorting) window path."""

    def __init__(self, engine: WindowEngine) -> None:
        self.calls = 0
        self.inner = engine._window
        engine._window = self  # type: ignore[method-assign,assignment]

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.inner(*args)


def _both(messages: list[list[Sample]], machine: str = "PMP-001", **windows: Any) -> tuple[Any, ...]:
    cfg = _config(**windows)
    reference, bulk = window_engine(cfg), window_engine(cfg)
    general = _Counting(bulk)
    expected: list[FeatureVector] = []
    got: list[FeatureVector] = []
    for samples in messages:
        expected += reference.add_samples(machine, samples)
        got += bulk.add_columns(machine, *_columns(samples))
    expected += reference.flush()
    got += bulk.flush()
    assert got == expected
    assert _stats(bulk) == _stats(reference)
    return got, bulk.stats, general.calls


@pytest.mark.parametrize(("windows", "count"), [({}, 4), ({"kind": "hopping", "size_s": 60, "hop_s": 20}, 12)])
def test_in_order_messages_take_the_fast_path_and_match_the_per_reading_path(
    windows: dict[str, Any], count: int
) -> None:
    messages = [_regular(range(i, i + 20), PUMP) for i in range(0, 200, 20)]
    vectors, stats, general = _both(messages, **windows)
    assert general == 0
    assert len(vectors) == count and stats.duplicates == 0
    assert vectors[-count // 4 - 1].features["flow.count"] == 60.0


def test_out_of_order_readings_fall_back_to_the_general_sort() -> None:
    messages = [_regular(range(i, i + 20), PUMP) for i in range(0, 120, 20)]
    messages[0], messages[1] = messages[1], messages[0]  # inside the first window
    _, stats, general = _both(messages)
    assert general >= 1 and stats.late == 0


def test_duplicates_across_messages_fall_back_and_are_counted_once() -> None:
    first = _regular(range(30), PUMP)
    again = [(s, t, v + 1000.0) for s, t, v in first[:10]]  # same sensor and time: the first arrival wins
    vectors, stats, general = _both([first, again, _regular(range(30, 90), PUMP)])
    assert general >= 1 and stats.duplicates == 10
    assert vectors[0].features["flow.max"] is not None and vectors[0].features["flow.max"] < 100.0


def test_nan_values_and_unknown_sensors_in_the_fast_path() -> None:
    samples = _regular(range(90), PUMP)
    samples = [(s, t, math.nan if i % 5 == 0 else v) for i, (s, t, v) in enumerate(samples)]
    samples += [("nope", T0 + i, 1.0) for i in range(5)]
    vectors, stats, general = _both([samples[i : i + 50] for i in range(0, len(samples), 50)])
    assert general == 0
    assert stats.unusable > 0 and stats.unknown_sensors == {"PMP-001/nope": 5}
    assert 0.0 < vectors[0].bad_quality_share < 1.0


def test_unusable_readings_are_counted_exactly_whenever_the_counters_are_read() -> None:
    cfg = _config()
    reference, engine = window_engine(cfg), window_engine(cfg)
    for i in range(700):  # more messages than are counted together
        samples = [(s, T0 + i + 0.1 * k, math.nan if (i + k) % 4 == 0 else 1.0) for k, s in enumerate(PUMP)]
        reference.add_samples("PMP-001", samples)
        engine.add_columns("PMP-001", *_columns(samples))
        if i % 150 == 0:
            assert engine.stats.unusable == reference.stats.unusable
    assert engine.stats.unusable == reference.stats.unusable == 700


@pytest.mark.parametrize("windows", [{}, {"kind": "hopping", "size_s": 60, "hop_s": 20}])
def test_reading_the_state_between_messages_changes_nothing(windows: dict[str, Any]) -> None:
    cfg = _config(**windows)
    reference, engine = window_engine(cfg), window_engine(cfg)
    expected: list[FeatureVector] = []
    got: list[FeatureVector] = []
    for i in range(0, 240, 15):
        samples = _regular(range(i, i + 15), PUMP)
        expected += reference.add_samples("PMP-001", samples)
        got += engine.add_columns("PMP-001", *_columns(samples))
        state = engine.machine_state("PMP-001", raw=True)
        assert state is not None and sum(len(t) // 8 for t, _ in state["buffers"].values()) == engine.open_readings()
    assert got + engine.flush() == expected + reference.flush()


_samples = st.lists(
    st.tuples(
        st.sampled_from([*PUMP, "nope"]),
        st.integers(0, 600).map(lambda i: T0 + i / 2),
        st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.just(math.nan)),
    ),
    min_size=1,
    max_size=15,
)
_step: st.SearchStrategy[tuple[str, list[Sample]]] = st.one_of(
    st.tuples(st.sampled_from(["columns", "samples"]), _samples),
    st.tuples(st.just("state"), st.just([])),
)
WINDOWS = [{}, {"kind": "hopping", "size_s": 60, "hop_s": 20}, {"impute": "last", "grace_s": 0}]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, min_size=1, max_size=30), windows=st.sampled_from(WINDOWS), sort=st.booleans())
def test_any_mix_of_messages_single_readings_and_state_reads_matches_the_per_reading_path(
    steps: list[tuple[str, list[Sample]]], windows: dict[str, Any], sort: bool
) -> None:
    cfg = _config(**windows)
    reference, engine = window_engine(cfg), window_engine(cfg)
    expected: list[FeatureVector] = []
    got: list[FeatureVector] = []
    for kind, samples in steps:
        if sort:  # in time order per message: the fast path's normal case
            samples = sorted(samples, key=lambda s: s[1])
        if kind == "state":
            engine.machine_state("PMP-001", raw=True)
            continue
        expected += reference.add_samples("PMP-001", samples)
        if kind == "columns":
            got += engine.add_columns("PMP-001", *_columns(samples))
        else:
            got += engine.add_samples("PMP-001", samples)
        assert engine.open_readings() == reference.open_readings()
        assert engine.stats.unusable == reference.stats.unusable
    assert got + engine.flush() == expected + reference.flush()
    assert _stats(engine) == _stats(reference)
    late = [(x.sensor, x.ts, repr(x.value), x.reason) for x in engine.drain_late()]
    assert sorted(late) == sorted((x.sensor, x.ts, repr(x.value), x.reason) for x in reference.drain_late())


def test_columns_that_do_not_add_up_are_refused_at_once() -> None:
    engine = window_engine(_config())
    with pytest.raises(ValueError):
        engine.add_columns("PMP-001", ["flow", "speed"], [2, 2], np.array([T0, T0 + 1, T0 + 2]), np.ones(3))
    with pytest.raises(ValueError):
        engine.add_columns("PMP-001", ["flow"], [2], np.array([T0, T0 + 1]), np.ones(3))
    assert engine.open_readings() == 0


_single = st.tuples(
    st.sampled_from([*PUMP, "nonsense"]),
    # Seconds after T0: mostly rising with jitter, some far back (late), some beyond the clock (future), some
    # before the floor (ancient).
    st.one_of(st.floats(0, 400), st.floats(-5_000_000, -4_000_000), st.floats(10_000, 20_000), st.integers(0, 50)),
    st.one_of(st.floats(-1e3, 1e3), st.just(math.nan)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    readings=st.lists(_single, min_size=1, max_size=120),
    machine=st.sampled_from(["PMP-001", "NOPE-9"]),
    kind=st.sampled_from(["tumbling", "hopping"]),
)
def test_add_sample_is_add_samples_with_one_reading(readings: list[Sample], machine: str, kind: str) -> None:
    """``add_sample`` (the worker's path for one reading per record) skips ``add_samples``' set-up, not its rules:
    the same vectors, counters, late readings and refusals, reading by reading."""
    windows = {"kind": kind, "hop_s": 20} if kind == "hopping" else {}
    cfg = _config(max_clock_skew_s=60, **windows)
    one, many = window_engine(cfg), window_engine(cfg)
    for engine in (one, many):
        engine.set_clock(T0 + 1_000)
    for sensor, dt, value in readings:
        got = one.add_sample(machine, sensor, T0 + dt, value)
        expected = many.add_samples(machine, [(sensor, T0 + dt, value)])
        assert list(got) == expected
        assert one.drain_late() == many.drain_late()
    assert _stats(one) == _stats(many)
    assert one.tick(T0 + 10_000) == many.tick(T0 + 10_000)
    assert one.flush() == many.flush()
