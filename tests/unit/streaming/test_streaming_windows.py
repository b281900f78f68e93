"""The window engine against an independent pandas reference, and its edge semantics."""

from __future__ import annotations

import importlib.util
import pickle
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from features.vector import FeatureBuilder, window_engine
from streaming.exceptions import StateError
from streaming.windows import WindowEngine
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import FeatureVector, Gap, MachineState, Quality, Reading, ReadingBatch, Sample

ROOT = Path(__file__).resolve().parents[3]


def _oracle() -> ModuleType:
    path = ROOT / "tests" / "integration" / "streaming" / "streaming_oracle.py"
    spec = importlib.util.spec_from_file_location("streaming_oracle", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["streaming_oracle"] = module
    spec.loader.exec_module(module)
    return module


oracle = _oracle()
T0 = oracle.T0


def config(**windows: Any) -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    return load_config(environ={}, data={**plant, "windows": {"size_s": 60, "grace_s": 10, **windows}})


def reading(sensor: str, t: float, value: float | None, machine: str = "PMP-001", **kw: Any) -> Reading:
    return Reading(machine_id=machine, sensor=sensor, ts=datetime.fromtimestamp(T0 + t, UTC), value=value, **kw)


def sensors_of(cfg: VigilConfig) -> dict[str, list[str]]:
    return {mid: list(m.sensors) for mid, m in cfg.machines_by_id.items()}


def test_matches_pandas_reference_with_late_out_of_order_and_duplicates() -> None:
    cfg = config()
    machines = {"PMP-001": ["flow", "pressure", "speed", "bearing_temp"], "MTR-001": ["speed", "current"]}
    readings = oracle.stream(7, machines, seconds=900)
    engine = window_engine(cfg)
    vectors: list[FeatureVector] = []
    for r in readings:
        vectors += engine.add(r)
    vectors += engine.flush()
    assert engine.stats.late > 0 and engine.stats.duplicates > 0 and engine.stats.unusable > 0
    assert len(engine.drain_late()) == engine.stats.late
    oracle.assert_matches(vectors, oracle.reference(readings, sensors_of(cfg), 60.0, 10.0))
    # Windows come out in event-time order per machine.
    for machine in machines:
        starts = [v.window_start for v in vectors if v.machine_id == machine]
        assert starts == sorted(starts)


def test_a_batch_arrives_at_once_and_matches_the_reference() -> None:
    cfg = config()
    readings = oracle.stream(3, {"PMP-001": ["flow", "speed"]}, seconds=400)
    batched = window_engine(cfg)
    vectors: list[FeatureVector] = []
    chunks = [readings[i : i + 7] for i in range(0, len(readings), 7)]
    for chunk in chunks:
        samples = [Sample(sensor=r.sensor, ts=r.ts, value=r.value, quality=r.quality) for r in chunk]
        vectors += batched.add_batch(ReadingBatch(machine_id="PMP-001", samples=samples))
    vectors += batched.flush()
    oracle.assert_matches(vectors, oracle.reference(chunks, sensors_of(cfg), 60.0, 10.0))


def test_sample_order_inside_a_batch_does_not_make_readings_late() -> None:
    # A collector batch listing one sensor's three minutes, then the next sensor's same three minutes.
    engine = window_engine(config())
    samples = [(sensor, T0 + t, float(t)) for sensor in ("flow", "speed") for t in range(0, 180, 10)]
    out = engine.add_samples("PMP-001", samples)
    assert engine.stats.late == 0
    assert [v.features["speed.count"] for v in out] == [6.0, 6.0]  # windows 0-60 and 60-120 closed, complete


def test_snapshot_restore_continues_open_windows_exactly() -> None:
    cfg = config()
    readings = oracle.stream(11, {"PMP-001": ["flow", "speed"], "CMP-001": ["speed"]}, seconds=500)
    whole = window_engine(cfg)
    expected = [v for r in readings for v in whole.add(r)] + whole.flush()
    first = window_engine(cfg)
    got = [v for r in readings[: len(readings) // 2] for v in first.add(r)]
    second = WindowEngine.restore(cfg, first.snapshot(), FeatureBuilder(cfg))
    got += [v for r in readings[len(readings) // 2 :] for v in second.add(r)] + second.flush()
    assert got == expected
    # Per machine, as the service checkpoints it.
    per = window_engine(cfg)
    data = first.snapshot_machine("PMP-001")
    assert data is not None
    per.restore_machine("PMP-001", data)
    assert per.machines == ["PMP-001"]


def test_corrupt_state_is_a_typed_error() -> None:
    with pytest.raises(StateError):
        WindowEngine.restore(config(), b"not state", FeatureBuilder(config()))


def test_hopping_windows_hold_each_reading_in_size_over_hop_windows() -> None:
    engine = window_engine(config(kind="hopping", hop_s=20))
    out: list[FeatureVector] = []
    for t in range(0, 200, 5):
        out += engine.add(reading("flow", t, float(t)))
    out += engine.flush()
    by_start = {v.window_start.timestamp() - T0: v for v in out}
    assert by_start[0.0].features["flow.count"] == 12  # 0..55
    assert by_start[20.0].features["flow.mean"] == pytest.approx(sum(range(20, 80, 5)) / 12)
    assert by_start[-40.0].features["flow.count"] == 4  # 0..15: windows starting before the first reading
    assert sorted(by_start) == [float(s) for s in range(-40, 200, 20)]
    assert engine.stats.duplicates == 0


def test_missing_sensor_is_explicit_and_bad_quality_only_counts_in_bad_share() -> None:
    engine = window_engine(config())
    engine.add(reading("flow", 1, 10.0))
    engine.add(reading("flow", 2, 999.0, quality=Quality.BAD))
    engine.add(reading("flow", 3, 30.0, flags=("out_of_range",)))
    engine.add(reading("pressure", 4, None))
    engine.add(reading("speed", 5, 1500.0))
    (v,) = engine.add(reading("speed", 75, 1500.0))
    assert v.features["flow.mean"] == 10.0 and v.features["flow.count"] == 1.0
    assert v.features["flow.bad_share"] == pytest.approx(2 / 3)
    assert v.features["pressure.mean"] is None and v.features["pressure.count"] == 0.0
    assert v.features["pressure.bad_share"] == 1.0
    assert v.features["bearing_temp.mean"] is None and v.features["bearing_temp.bad_share"] is None
    assert set(v.missing) == {"pressure", "bearing_temp", "vibration_rms", "motor_current"}
    assert v.imputed == () and v.features["pressure_per_flow"] is None
    assert v.count == 5 and v.bad_quality_share == pytest.approx(3 / 5)
    assert v.state == MachineState.RUNNING


def test_impute_last_fills_from_the_previous_window_and_flags_it() -> None:
    engine = window_engine(config(impute="last"))
    engine.add(reading("pressure", 1, 3.0))
    engine.add(reading("flow", 2, 12.0))
    (first,) = engine.add(reading("flow", 71, 10.0))
    assert first.features["pressure_per_flow"] == pytest.approx(0.25)
    (second,) = engine.add(reading("flow", 140, 10.0))
    assert "pressure" in second.missing and "pressure" in second.imputed
    assert second.features["pressure.mean"] == 3.0 and second.features["pressure.since_last"] is None
    assert second.features["pressure_per_flow"] == pytest.approx(0.3)
    assert "bearing_temp" in second.missing and "bearing_temp" not in second.imputed


def test_machine_off_when_running_sensor_below_threshold_and_gap_flag() -> None:
    engine = window_engine(config())
    engine.add_gap(
        Gap(
            machine_id="PMP-001",
            start=datetime.fromtimestamp(T0 + 10, UTC),
            end=datetime.fromtimestamp(T0 + 20, UTC),
            reason="connection lost",
        )
    )
    engine.add(reading("speed", 1, 20.0))
    (v,) = engine.add(reading("speed", 80, 20.0))
    assert v.state == MachineState.OFF and v.gap is True
    engine.add(reading("speed", 85, 3000.0))
    (w,) = engine.add(reading("speed", 150, 1500.0))
    assert w.state == MachineState.RUNNING and w.gap is False


def test_idle_machine_closed_by_wall_clock_as_stale_and_later_data_is_late() -> None:
    # A made-up wall clock decades behind the event times: the clock skew check is off for it.
    engine = window_engine(config(idle_timeout_s=30, max_clock_skew_s=float("inf")))
    assert engine.tick(1000.0) == []
    engine.add(reading("flow", 1, 1.0))
    engine.add(reading("flow", 2, 2.0))
    assert engine.tick(1020.0) == []
    (v,) = engine.tick(1031.0)
    assert v.closed_by == "wall_clock" and v.state == MachineState.STALE and v.count == 2
    assert engine.add(reading("flow", 3, 3.0)) == [] and engine.stats.late == 1
    assert engine.tick(2000.0) == []
    (late,) = engine.drain_late()
    assert late.sensor == "flow" and late.value == 3.0


def test_unknown_machines_and_sensors_are_counted_not_raised() -> None:
    engine = window_engine(config())
    engine.add(reading("flow", 1, 1.0, machine="NOPE-1"))
    engine.add(reading("nonsense", 1, 1.0))
    assert engine.stats.unknown_machines == {"NOPE-1": 1}
    assert engine.stats.unknown_sensors == {"PMP-001/nonsense": 1}
    assert engine.machines == ["PMP-001"]


def test_duplicate_counts_once_and_first_arrival_wins() -> None:
    engine = window_engine(config())
    engine.add(reading("flow", 1, 1.0))
    engine.add(reading("flow", 1, 100.0))
    (v,) = engine.add(reading("flow", 90, 1.0))
    assert v.features["flow.count"] == 1.0 and v.features["flow.mean"] == 1.0 and v.count == 1
    assert engine.stats.duplicates == 1


def test_feature_vector_pickles_and_window_bounds() -> None:
    engine = window_engine(config())
    engine.add(reading("flow", 61, 1.0))
    (v,) = engine.flush()
    assert v.closed_by == "shutdown"
    assert (v.window_start.timestamp() - T0, v.window_end.timestamp() - T0) == (60.0, 120.0)
    assert pickle.loads(pickle.dumps(v)) == v


def test_hopping_windows_match_a_direct_pandas_computation() -> None:
    import numpy as np
    import pandas as pd

    cfg = config(kind="hopping", size_s=60, hop_s=15, grace_s=30)
    readings = oracle.stream(13, {"PMP-001": ["flow", "speed"]}, seconds=400, disorder=5.0, late=0.0, duplicates=0.1)
    engine = window_engine(cfg)
    vectors = [v for r in readings for v in engine.add(r)] + engine.flush()
    assert engine.stats.late == 0
    rows = [(r.sensor, r.ts.timestamp(), r.value if r.quality == Quality.GOOD else np.nan) for r in readings]
    df = pd.DataFrame(rows, columns=["sensor", "ts", "value"]).drop_duplicates(["sensor", "ts"], keep="first")
    starts = [v.window_start.timestamp() for v in vectors]
    assert starts == sorted(starts) and len(set(np.diff(starts))) == 1  # every 15 s, none missing
    for v in vectors:
        start = v.window_start.timestamp()
        inside = df[(df["ts"] >= start) & (df["ts"] < start + 60)]
        assert v.count == len(inside)
        for sensor in ("flow", "speed"):
            good = inside[inside["sensor"] == sensor].dropna()
            if len(good):
                assert v.features[f"{sensor}.mean"] == pytest.approx(good["value"].mean())
                assert v.features[f"{sensor}.std"] == pytest.approx(good["value"].std(ddof=0), abs=1e-9)
                assert v.features[f"{sensor}.last"] == good.sort_values("ts")["value"].iloc[-1]
            else:
                assert v.features[f"{sensor}.mean"] is None


@pytest.mark.parametrize(
    ("seed", "size", "grace", "disorder"),
    [(1, 30.0, 0.0, 3.0), (2, 30.0, 5.0, 20.0), (3, 120.0, 30.0, 10.0), (4, 15.0, 2.0, 1.0), (5, 60.0, 60.0, 40.0)],
)
def test_reference_holds_across_window_sizes_grace_and_disorder(
    seed: int, size: float, grace: float, disorder: float
) -> None:
    cfg = config(size_s=size, grace_s=grace)
    machines = {"PMP-002": ["flow", "speed"], "CMP-003": ["speed", "oil_temp", "discharge_temp"]}
    readings = oracle.stream(seed, machines, seconds=500, disorder=disorder, late=0.03, duplicates=0.08)
    engine = window_engine(cfg)
    vectors = [v for r in readings for v in engine.add(r)] + engine.flush()
    oracle.assert_matches(vectors, oracle.reference(readings, sensors_of(cfg), size, grace))


def _columns(chunk: list[Reading]) -> tuple[list[str], list[int], Any, Any]:
    """One message as the bulk path takes it (grouped by sensor, arrival order kept per sensor)."""
    import numpy as np

    from streaming.windows import usable

    by_sensor: dict[str, list[Reading]] = {}
    for r in chunk:
        by_sensor.setdefault(r.sensor, []).append(r)
    ts, values = [], []
    for rs in by_sensor.values():
        ts += [r.ts.timestamp() for r in rs]
        values += [
            float(r.value) if r.value is not None and usable(r.quality, r.value, r.flags, False) else float("nan")
            for r in rs
        ]
    return list(by_sensor), [len(rs) for rs in by_sensor.values()], np.array(ts), np.array(values)


@pytest.mark.parametrize("windows", [{}, {"kind": "hopping", "size_s": 60, "hop_s": 20}, {"impute": "last"}])
def test_the_bulk_column_path_equals_the_per_reading_path(windows: dict[str, Any]) -> None:
    cfg = config(**windows)
    machines = {"PMP-001": ["flow", "pressure", "speed", "bearing_temp", "nope"], "MTR-001": ["speed", "current"]}
    readings = oracle.stream(5, machines, seconds=900)
    per_reading, bulk = window_engine(cfg), window_engine(cfg)
    expected: list[FeatureVector] = []
    got: list[FeatureVector] = []
    for i in range(0, len(readings), 9):
        chunk = [r for r in readings[i : i + 9]]
        for machine in dict.fromkeys(r.machine_id for r in chunk):
            mine = [r for r in chunk if r.machine_id == machine]
            expected += per_reading.add_samples(
                machine, [(s, t, v) for s, n, ts, vs in [_columns(mine)] for s, t, v in _flat(s, n, ts, vs)]
            )
            got += bulk.add_columns(machine, *_columns(mine))
    expected += per_reading.flush()
    got += bulk.flush()
    assert got == expected and len(got) > 20
    a, b = per_reading.stats, bulk.stats
    assert (a.readings, a.unusable, a.late, a.duplicates, a.unknown_sensors) == (
        b.readings,
        b.unusable,
        b.late,
        b.duplicates,
        b.unknown_sensors,
    )
    assert b.late > 0 and b.duplicates > 0 and sum(b.unknown_sensors.values()) > 0
    assert [(x.sensor, x.ts) for x in per_reading.drain_late()] == [(x.sensor, x.ts) for x in bulk.drain_late()]


def _flat(sensors: list[str], lengths: list[int], ts: Any, values: Any) -> list[tuple[str, float, float]]:
    names = [s for s, n in zip(sensors, lengths, strict=True) for _ in range(n)]
    return list(zip(names, ts.tolist(), values.tolist(), strict=True))


def test_unknown_machine_columns_are_counted() -> None:
    import numpy as np

    engine = window_engine(config())
    assert engine.add_columns("XYZ-9", ["flow"], [2], np.array([T0, T0 + 1]), np.array([1.0, 2.0])) == []
    assert engine.stats.unknown_machines["XYZ-9"] == 2


def test_reading_columns_messages_give_the_same_vectors_as_reading_batches() -> None:
    from ingest.publisher import encode_columns
    from vigil.contracts import ReadingColumns, decode

    cfg = config()
    readings = oracle.stream(17, {"PMP-001": ["flow", "speed", "pressure"]}, seconds=500)
    chunks = [readings[i : i + 11] for i in range(0, len(readings), 11)]
    rows, columns = window_engine(cfg), window_engine(cfg)
    expected: list[FeatureVector] = []
    got: list[FeatureVector] = []
    for chunk in chunks:
        samples = [Sample(sensor=r.sensor, ts=r.ts, value=r.value, quality=r.quality) for r in chunk]
        expected += rows.add_message(ReadingBatch(machine_id="PMP-001", samples=samples))
        message = decode(encode_columns("PMP-001", chunk))
        assert isinstance(message, ReadingColumns)
        got += columns.add_message(message)
    assert got == expected and len(got) >= 5
    assert columns.stats.unusable == rows.stats.unusable > 0
