"""Property: the per-reading path (``add_samples``), the bulk column path (``add_columns``) and, for tumbling
windows, an independent pandas reference agree on any stream: duplicates inside one message and across messages,
out-of-order and late readings inside a column message, NaN values, unknown sensors, hopping windows, a message
spanning several windows, wall-clock (idle) closing and readings refused for clock skew."""

from __future__ import annotations

import importlib.util
import math
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from features.vector import window_engine
from streaming.windows import LateReading, WindowEngine
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import FeatureVector, Reading

ROOT = Path(__file__).resolve().parents[3]


def _oracle() -> ModuleType:
    path = ROOT / "tests" / "integration" / "streaming" / "streaming_oracle.py"
    spec = importlib.util.spec_from_file_location("streaming_oracle_paths", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["streaming_oracle_paths"] = module
    spec.loader.exec_module(module)
    return module


oracle = _oracle()
T0: float = oracle.T0
PLANT = tomllib.loads(EXAMPLE_CONFIG.read_text())
SENSORS = {
    "PMP-001": ["flow", "pressure", "speed", "nope"],
    "MTR-001": ["current", "speed", "winding_temp"],
}
Sample = tuple[str, float, float]
Message = tuple[str, list[Sample]]


def _config(**windows: Any) -> VigilConfig:
    return load_config(environ={}, data={**PLANT, "windows": {"size_s": 60, "grace_s": 10, **windows}})


_value = st.one_of(
    # Plant-scale numbers (the aggregations' own test covers tiny and huge ones; scipy underflows there).
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False).filter(lambda v: v == 0.0 or abs(v) > 1e-6),
    st.just(math.nan),
    st.sampled_from([0.0, 5.0, 1e6 + 0.1]),
)


@st.composite
def _message(draw: st.DrawFn) -> Message:
    machine = draw(st.sampled_from(sorted(SENSORS)))
    samples = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SENSORS[machine]),
                # Half-second grid over 7 minutes: duplicates, disorder and messages spanning windows are common.
                st.integers(0, 840).map(lambda i: T0 + i / 2),
                _value,
            ),
            min_size=1,
            max_size=12,
        )
    )
    return machine, samples


_event = st.one_of(
    _message(),
    st.tuples(st.just("tick"), st.integers(0, 900).map(lambda s: T0 + s)),
)


def _columns(samples: list[Sample]) -> tuple[list[str], list[int], Any, Any]:
    by_sensor: dict[str, list[Sample]] = {}
    for s in samples:
        by_sensor.setdefault(s[0], []).append(s)
    ts = [t for rows in by_sensor.values() for _, t, _ in rows]
    values = [v for rows in by_sensor.values() for _, _, v in rows]
    return list(by_sensor), [len(r) for r in by_sensor.values()], np.array(ts), np.array(values)


def _late_key(x: LateReading) -> tuple[Any, ...]:
    return (x.reason, x.machine_id, x.sensor, x.ts, repr(x.value), x.closed_upto)


def _run(engine: WindowEngine, events: list[Any], bulk: bool) -> tuple[list[FeatureVector], list[LateReading]]:
    out: list[FeatureVector] = []
    late: list[LateReading] = []
    for event in events:
        if event[0] == "tick":
            out += engine.tick(float(event[1]))
        elif bulk:
            out += engine.add_columns(event[0], *_columns(event[1]))
        else:
            out += engine.add_samples(event[0], event[1])
        late += engine.drain_late()
    out += engine.flush()
    return out, late + engine.drain_late()


def _stats(engine: WindowEngine) -> tuple[Any, ...]:
    s = engine.stats
    return (s.readings, s.unusable, s.late, s.clock_skew, s.duplicates, s.windows, s.wall_clock_windows,
            dict(s.unknown_sensors))  # fmt: skip


WINDOWS = [
    {},
    {"kind": "hopping", "size_s": 60, "hop_s": 20},
    {"kind": "hopping", "size_s": 60, "hop_s": 25, "grace_s": 0},
    {"impute": "last", "grace_s": 3, "idle_timeout_s": 30},
    {"max_clock_skew_s": 100, "idle_timeout_s": 45},
    {"max_clock_skew_s": 0, "size_s": 30, "grace_s": 30},
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(_event, min_size=1, max_size=25), windows=st.sampled_from(WINDOWS))
def test_bulk_path_equals_per_reading_path(events: list[Any], windows: dict[str, Any]) -> None:
    cfg = _config(**windows)
    per_reading, bulk = window_engine(cfg), window_engine(cfg)
    expected, expected_late = _run(per_reading, events, bulk=False)
    got, got_late = _run(bulk, events, bulk=True)
    assert got == expected
    assert _stats(bulk) == _stats(per_reading)
    # Within one message the bulk path reports clock-skew refusals before late ones: compare as multisets.
    assert sorted(map(_late_key, got_late)) == sorted(map(_late_key, expected_late))
    s = bulk.stats
    for name, seen in [("late", s.late), ("clock_skew", s.clock_skew), ("duplicates", s.duplicates),
                       ("wall_clock", s.wall_clock_windows), ("unusable", s.unusable)]:  # fmt: skip
        note_event(f"{name}: {'yes' if seen else 'no'}")


def _as_readings(machine: str, samples: list[Sample]) -> list[Reading]:
    return [
        Reading(
            machine_id=machine,
            sensor=s,
            ts=datetime.fromtimestamp(t, UTC),
            value=None if math.isnan(v) else v,
        )
        for s, t, v in samples
        if s != "nope"
    ]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(_message(), min_size=1, max_size=20), bulk=st.booleans())
def test_both_paths_match_the_pandas_reference(messages: list[Message], bulk: bool) -> None:
    cfg = _config()
    engine = window_engine(cfg)
    vectors, _ = _run(engine, messages, bulk=bulk)
    sensors_of = {mid: list(m.sensors) for mid, m in cfg.machines_by_id.items()}
    batches = [_as_readings(m, s) for m, s in messages]
    oracle.assert_matches(vectors, oracle.reference([b for b in batches if b], sensors_of, 60.0, 10.0))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(_message(), min_size=2, max_size=20),
    cut=st.integers(1, 19),
    windows=st.sampled_from(WINDOWS[:4]),
)
def test_a_restart_from_a_snapshot_in_the_bulk_path_changes_nothing(
    messages: list[Message], cut: int, windows: dict[str, Any]
) -> None:
    from features.vector import FeatureBuilder

    cfg = _config(**windows)
    expected, expected_late = _run(window_engine(cfg), messages, bulk=False)
    first = window_engine(cfg)
    got: list[FeatureVector] = []
    got_late: list[LateReading] = []
    for machine, samples in messages[:cut]:
        got += first.add_columns(machine, *_columns(samples))
    got_late += first.drain_late()
    restarted = WindowEngine.restore(cfg, first.snapshot(), FeatureBuilder(cfg))
    rest, rest_late = _run(restarted, messages[cut:], bulk=True)
    assert got + rest == expected
    assert sorted(map(_late_key, got_late + rest_late)) == sorted(map(_late_key, expected_late))
