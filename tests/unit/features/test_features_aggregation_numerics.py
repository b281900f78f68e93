"""Numerics of the moment aggregations in all three forms (incremental, per window, all segments at once):
scale invariance, exactly constant signals of any length, one and two readings, values whose moments under- or
overflow (never an exception, never a made-up number)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from features.aggregations import AGGREGATIONS, SegmentArrays, WindowArrays

MOMENTS = ("std", "skew", "kurtosis", "slope")


def _three(name: str, values: list[float] | np.ndarray) -> list[float | None]:
    agg = AGGREGATIONS[name]
    v = np.asarray(values, dtype=np.float64)
    ts = np.arange(len(v), dtype=np.float64)
    state = agg.initialize()
    for t, x in zip(ts.tolist(), v.tolist(), strict=True):
        state = agg.add(state, t, x)
    seg = agg.compute_segments(SegmentArrays(ts, v, np.array([0], dtype=np.intp), float(len(v))))[0]
    return [agg.result(state, float(len(v))), agg.compute(WindowArrays(ts, v, float(len(v)))), seg]


@pytest.mark.parametrize("scale", [1e-13, 1e-40, 1e40])
@pytest.mark.parametrize("name", ["skew", "kurtosis"])
def test_shape_features_do_not_depend_on_the_unit(name: str, scale: float) -> None:
    base = [1.0, 2.0, 5.0, 3.0, 11.0]
    reference = _three(name, base)
    for got in _three(name, [x * scale for x in base]):
        assert got == pytest.approx(reference[0], rel=1e-9)
    assert reference[0] != 0.0


@pytest.mark.parametrize("value,n", [(0.1, 20_000), (123456.789, 60_000), (1e6 + 0.1, 100_000), (-3.3, 7)])
def test_a_constant_signal_of_any_length_has_no_spread_and_no_shape(value: float, n: int) -> None:
    for name in ("std", "skew", "kurtosis", "slope"):
        assert _three(name, np.full(n, value)) == [0.0, 0.0, 0.0], name


def test_one_and_two_readings() -> None:
    for name in ("std", "skew", "kurtosis", "slope"):
        assert _three(name, [4.2]) == [0.0, 0.0, 0.0], name
    assert _three("skew", [1.0, 3.0]) == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert _three("kurtosis", [1.0, 3.0]) == pytest.approx([-2.0, -2.0, -2.0])
    assert _three("slope", [1.0, 3.0]) == pytest.approx([2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "values",
    [
        [1e200, -1e200, 3e200],  # the squares overflow
        [1.7e308, 1.7e308, -1.7e308],  # the sum overflows
        [2.8e-123, 0.0],  # the powers of the variance underflow
        [1e-160, 3e-160, 0.0],
        [5e-324, 0.0, 5e-324],  # subnormal
    ],
)
def test_extreme_values_never_raise_and_never_give_a_wrong_finite_shape(values: list[float]) -> None:
    for name in AGGREGATIONS:
        for got in _three(name, values):
            assert got is None or isinstance(got, float)
    for name in ("skew", "kurtosis"):
        for got in _three(name, values):
            # Either undefined (NaN/inf: the feature builder reports None) or a plausible shape value.
            assert got is None or not math.isfinite(got) or (-1e3 < got < 1e3)
