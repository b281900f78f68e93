"""Conformance: every registered aggregation, discovered from the registry, checked the same way."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from features.aggregations import AGGREGATIONS, Aggregation, SegmentArrays, WindowArrays, get
from features.exceptions import UnknownAggregationError

END = 1_800_000_120.0


def _slope(ts: pd.Series, v: pd.Series) -> float:
    if len(v) < 2 or ts.nunique() < 2:
        return 0.0
    return float(np.polyfit(ts.to_numpy() - ts.iloc[0], v.to_numpy(), 1)[0])


# An independent oracle per aggregation (pandas / scipy); a new aggregation without one fails the test below.
REFERENCE: dict[str, Callable[[pd.Series, pd.Series], float]] = {
    "count": lambda ts, v: float(v.count()),
    "mean": lambda ts, v: float(v.mean()),
    "std": lambda ts, v: float(v.std(ddof=0)),
    "min": lambda ts, v: float(v.min()),
    "max": lambda ts, v: float(v.max()),
    "last": lambda ts, v: float(v.iloc[int(ts.to_numpy().argmax())]),
    "slope": _slope,
    "rms": lambda ts, v: float(np.sqrt((v**2).mean())),
    "p2p": lambda ts, v: float(v.max() - v.min()),
    "skew": lambda ts, v: float(stats.skew(v.to_numpy(), bias=True)) if v.nunique() > 1 else 0.0,
    "kurtosis": lambda ts, v: float(stats.kurtosis(v.to_numpy(), fisher=True, bias=True)) if v.nunique() > 1 else 0.0,
    "since_last": lambda ts, v: END - float(ts.max()),
}

CASES = {
    "random": (np.sort(np.random.default_rng(1).uniform(0, 120, 200)), np.random.default_rng(2).normal(50, 7, 200)),
    "one": (np.array([10.0]), np.array([3.5])),
    "constant": (np.arange(20.0), np.full(20, 0.1)),
    "trend": (np.arange(0.0, 60.0, 0.5), 2.0 + 0.25 * np.arange(0.0, 60.0, 0.5)),
    "skewed": (np.arange(50.0), np.random.default_rng(3).exponential(2.0, 50)),
}


@pytest.fixture(params=sorted(AGGREGATIONS), ids=str)
def agg(request: pytest.FixtureRequest) -> Aggregation:
    return AGGREGATIONS[request.param]


def _incremental(agg: Aggregation, ts: np.ndarray, values: np.ndarray) -> float | None:
    state = agg.initialize()
    for t, v in zip(ts, values, strict=True):
        state = agg.add(state, float(t), float(v))
    return agg.result(state, END)


def test_every_aggregation_has_an_oracle(agg: Aggregation) -> None:
    assert agg.name in REFERENCE, f"add an independent reference for aggregation {agg.name!r}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_incremental_vectorised_and_oracle_agree(agg: Aggregation, case: str) -> None:
    ts, values = CASES[case]
    ts = ts + (END - 120.0)
    expected = REFERENCE[agg.name](pd.Series(ts), pd.Series(values))
    vectorised = agg.compute(WindowArrays(ts, values, END))
    incremental = _incremental(agg, ts, values)
    assert vectorised == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert incremental == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_empty_window_is_missing_not_zero(agg: Aggregation) -> None:
    if agg.name == "count":
        assert agg.result(agg.initialize(), END) == 0.0
        return
    assert agg.result(agg.initialize(), END) is None
    assert agg.compute(WindowArrays(np.empty(0), np.empty(0), END)) is None


def test_state_is_small_serialisable_and_pickles(agg: Aggregation) -> None:
    ts, values = CASES["random"]
    state = agg.initialize()
    for t, v in zip(ts[:50], values[:50], strict=True):
        state = agg.add(state, float(t), float(v))
    assert isinstance(state, tuple) and all(isinstance(x, float) for x in state) and len(state) <= 8
    assert tuple(json.loads(json.dumps(state))) == state
    restored = pickle.loads(pickle.dumps(state))
    for t, v in zip(ts[50:], values[50:], strict=True):
        state = agg.add(state, float(t), float(v))
        restored = agg.add(restored, float(t), float(v))
    assert agg.result(restored, END) == agg.result(state, END)
    assert type(pickle.loads(pickle.dumps(agg))) is type(agg)


def test_deterministic_and_does_not_mutate_inputs(agg: Aggregation) -> None:
    ts, values = CASES["random"]
    ts_copy, values_copy = ts.copy(), values.copy()
    first = (_incremental(agg, ts, values), agg.compute(WindowArrays(ts, values, END)))
    second = (_incremental(agg, ts, values), agg.compute(WindowArrays(ts, values, END)))
    assert first == second
    assert np.array_equal(ts, ts_copy) and np.array_equal(values, values_copy)


def test_results_are_finite(agg: Aggregation) -> None:
    for ts, values in CASES.values():
        result = agg.compute(WindowArrays(ts, values, END))
        assert result is not None and math.isfinite(result)


def test_unknown_aggregation_is_a_typed_error() -> None:
    with pytest.raises(UnknownAggregationError, match="unknown aggregation 'median'"):
        get("median")


def test_all_segments_at_once_equal_one_window_at_a_time(agg: Aggregation) -> None:
    # The engine computes every sensor of a window in one call; each segment must give what compute() gives.
    cases = [CASES[name] for name in sorted(CASES)]
    ts = np.concatenate([t + (END - 120.0) for t, _ in cases])
    values = np.concatenate([v for _, v in cases])
    starts = np.cumsum([0] + [len(v) for _, v in cases[:-1]])
    segments = SegmentArrays(ts, values, starts, END)
    got = agg.compute_segments(segments)
    assert len(got) == len(cases)
    for result, (t, v) in zip(got, cases, strict=True):
        expected = agg.compute(WindowArrays(t + (END - 120.0), v, END))
        assert result == pytest.approx(expected, rel=1e-9, abs=1e-9)


class _Median(Aggregation):
    """Without a vectorised form: the base class falls back to compute() per segment."""

    def compute(self, w: WindowArrays) -> float | None:
        return float(np.median(w.values)) if w.n else None


def test_an_aggregation_without_a_vectorised_form_still_works_per_segment() -> None:
    ts = np.arange(6.0)
    segments = SegmentArrays(ts, np.array([1.0, 5.0, 2.0, 7.0, 8.0, 9.0]), np.array([0, 3]), 10.0)
    assert _Median().compute_segments(segments) == [2.0, 8.0]
