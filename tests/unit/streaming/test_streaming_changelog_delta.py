"""Incremental checkpoints: a base record and the deltas after it restore what the engine held.

``WindowEngine.checkpoint_state`` answers with only the readings added since its last call while nothing left the
buffers (no window closed, nothing reordered), and with the whole state otherwise; ``merge_checkpoints`` appends a
lineage's deltas to its base sensor by sensor. Whatever the stream (late, out-of-order and duplicate readings,
single readings and column messages, windows closing between checkpoints), an engine restored from the merged
records must close the same windows as the engine that wrote them."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.vector import window_engine
from streaming.changelog import Checkpoint, decode_checkpoint, encode_checkpoint, merge_checkpoints
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config

PLANT = tomllib.loads(EXAMPLE_CONFIG.read_text())
T0 = 1_764_000_000.0
PUMP = ["flow", "pressure", "speed", "bearing_temp"]
MACHINE = "PMP-001"


def _config(**windows: Any) -> VigilConfig:
    return load_config(environ={}, data={**PLANT, "windows": {"size_s": 60, "grace_s": 10, **windows}})


_reading = st.tuples(st.sampled_from(PUMP), st.floats(0, 400), st.floats(-100, 100))
_step = st.one_of(
    st.tuples(st.just("single"), st.lists(_reading, min_size=1, max_size=1)),
    st.tuples(st.just("samples"), st.lists(_reading, min_size=1, max_size=12)),
    st.tuples(st.just("columns"), st.lists(_reading, min_size=1, max_size=12)),
    st.tuples(st.just("checkpoint"), st.just([])),
    st.tuples(st.just("full"), st.just([])),
)


def _columns(readings: list[tuple[str, float, float]]) -> tuple[list[str], list[int], Any, Any]:
    by_sensor: dict[str, list[tuple[str, float, float]]] = {}
    for r in readings:
        by_sensor.setdefault(r[0], []).append(r)
    rows = list(by_sensor.values())
    ts = np.array([T0 + t for group in rows for _, t, _ in group])
    values = np.array([v for group in rows for _, _, v in group])
    return list(by_sensor), [len(g) for g in rows], ts, values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, min_size=1, max_size=40), kind=st.sampled_from(["tumbling", "hopping"]))
def test_a_base_and_its_deltas_restore_the_engine(steps: list[tuple[str, Any]], kind: str) -> None:
    cfg = _config(**({"kind": "hopping", "hop_s": 20} if kind == "hopping" else {}))
    engine = window_engine(cfg)
    base: Checkpoint | None = None
    deltas: dict[int, Checkpoint] = {}
    offset = 0
    for op, readings in steps:
        offset += 1
        if op == "single":
            sensor, t, v = readings[0]
            engine.add_sample(MACHINE, sensor, T0 + t, v)
        elif op == "samples":
            engine.add_samples(MACHINE, [(s, T0 + t, v) for s, t, v in readings])
        elif op == "columns":
            engine.add_columns(MACHINE, *_columns(readings))
        else:
            got = engine.checkpoint_state(MACHINE, full=op == "full")
            if got is None:
                continue
            state, is_delta = got
            assert not (is_delta and op == "full")
            offsets = {"readings:0": offset}
            if is_delta:
                assert base is not None
                k = len(deltas) + 1
                deltas[k] = decode_checkpoint(MACHINE, encode_checkpoint(offsets, state, lineage="L", delta=k))
            else:
                base = decode_checkpoint(MACHINE, encode_checkpoint(offsets, state, lineage="L"))
                deltas = {}
            merged = merge_checkpoints(MACHINE, base, deltas)
            assert merged.offsets == offsets and merged.delta == len(deltas)
            restored = window_engine(cfg)
            restored.load_machine_state(MACHINE, merged.machine)
            # The engine as it is now and the restored one close the same windows, now and after more readings.
            original = copy.deepcopy(engine)
            more = [(s, T0 + 400 + i, float(i)) for i, s in enumerate(PUMP * 20)]
            assert restored.add_samples(MACHINE, more) == original.add_samples(MACHINE, more)
            assert restored.flush() == original.flush()


def test_deltas_carry_only_the_new_readings_until_a_window_closes() -> None:
    engine = window_engine(_config(size_s=600))
    sizes: list[tuple[bool, int]] = []
    for second in range(0, 900, 5):
        engine.add_samples(MACHINE, [(s, T0 + second + i, 1.0 + i) for i in range(5) for s in PUMP])
        got = engine.checkpoint_state(MACHINE)
        assert got is not None
        state, is_delta = got
        sizes.append((is_delta, sum(len(ts) // 8 for ts, _ in state["buffers"].values())))
    assert sizes[0] == (False, 20)  # the first checkpoint is a base
    deltas = [n for is_delta, n in sizes if is_delta]
    assert deltas and set(deltas) == {20}, "each delta holds the 5 s of readings since the previous one"
    bases = [n for is_delta, n in sizes[1:] if not is_delta]
    assert bases, "a closing window (readings leave the buffer) makes the next checkpoint a base"
    assert max(bases) < 600 * len(PUMP), "written right after a close, a base holds little"


def test_a_missing_delta_stops_the_chain_and_another_lineage_is_ignored() -> None:
    def record(delta: int, lineage: str, offset: int, value: float) -> Checkpoint:
        state = {
            "watermark": float(offset),
            "closed_upto": 0.0,
            "gaps": [],
            "previous": {},
            "buffers": {"flow": [np.array([T0 + offset]).tobytes(), np.array([value]).tobytes()]},
        }
        return decode_checkpoint(MACHINE, encode_checkpoint({"t:0": offset}, state, lineage=lineage, delta=delta))

    base = record(0, "A", 1, 1.0)
    merged = merge_checkpoints(MACHINE, base, {1: record(1, "A", 2, 2.0), 3: record(3, "A", 4, 4.0)})
    assert merged.offsets == {"t:0": 2} and merged.delta == 1 and merged.highest_delta == 3
    assert np.frombuffer(merged.machine["buffers"]["flow"][1]).tolist() == [1.0, 2.0]
    stale = merge_checkpoints(MACHINE, base, {1: record(1, "B", 9, 9.0)})
    assert stale.offsets == {"t:0": 1} and stale.delta == 0 and stale.highest_delta == 1
