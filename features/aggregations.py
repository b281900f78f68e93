"""Window aggregations: one small class per feature, pure functions over small serialisable state.

Each aggregation has two equivalent forms:

* ``initialize() -> state``, ``add(state, ts, value) -> state``, ``result(state, end) -> float | None``: the
  incremental form (Quix Streams' ``initialize / agg / result``), over a tuple of floats that pickles and
  serialises trivially. Useful for a single stream of values and as the executable definition.
* ``compute(ts, values, end) -> float | None``: the same number from the window's arrays with numpy, which is
  what the window engine calls when a window closes (one vectorised pass per window instead of a Python call
  per reading).

Only usable (good-quality, finite) values reach an aggregation; ``ts`` are event times in epoch seconds, ``end``
is the window's end. An empty window gives ``None`` (missing), never zero. A new aggregation is one subclass with
a unique ``name``; it registers itself in :data:`AGGREGATIONS` and the conformance test picks it up.

>>> import numpy as np
>>> agg = AGGREGATIONS["slope"]
>>> state = agg.initialize()
>>> for t, v in [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]:
...     state = agg.add(state, t, v)
>>> agg.result(state, end=3.0), agg.compute(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]), end=3.0)
(2.0, 2.0)
>>> AGGREGATIONS["mean"].result(AGGREGATIONS["mean"].initialize(), end=0.0) is None
True
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from features.exceptions import UnknownAggregationError

State = tuple[float, ...]
Array = npt.NDArray[np.float64]

AGGREGATIONS: dict[str, Aggregation] = {}
"""Every registered aggregation by name, in registration order (the order of features in a vector)."""


def _flat(m2: float, mean: float) -> bool:
    # A constant signal: its higher moments are undefined; rounding in the mean must not make them explode.
    return m2 <= 1e-24 * max(1.0, mean * mean)


class Aggregation:
    """Base of every aggregation: subclasses set ``name`` and implement the four methods."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            AGGREGATIONS[cls.name] = cls()

    def initialize(self) -> State:
        raise NotImplementedError

    def add(self, state: State, ts: float, value: float) -> State:
        raise NotImplementedError

    def result(self, state: State, end: float) -> float | None:
        raise NotImplementedError

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        """The result for a whole window at once; ``ts`` sorted ascending, ``values`` aligned with it."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Count(Aggregation):
    name = "count"

    def initialize(self) -> State:
        return (0.0,)

    def add(self, state: State, ts: float, value: float) -> State:
        return (state[0] + 1.0,)

    def result(self, state: State, end: float) -> float | None:
        return state[0]

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return float(len(values))


class Mean(Aggregation):
    name = "mean"

    def initialize(self) -> State:
        return (0.0, 0.0)

    def add(self, state: State, ts: float, value: float) -> State:
        n, mean = state
        n += 1.0
        return (n, mean + (value - mean) / n)

    def result(self, state: State, end: float) -> float | None:
        return state[1] if state[0] else None

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return float(values.mean()) if len(values) else None


class Std(Aggregation):
    """Population standard deviation (ddof=0): defined for one reading, and what the moments below use."""

    name = "std"

    def initialize(self) -> State:
        return (0.0, 0.0, 0.0)

    def add(self, state: State, ts: float, value: float) -> State:
        n, mean, m2 = state
        n += 1.0
        delta = value - mean
        mean += delta / n
        return (n, mean, m2 + delta * (value - mean))

    def result(self, state: State, end: float) -> float | None:
        n, _, m2 = state
        return math.sqrt(max(m2, 0.0) / n) if n else None

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return float(values.std()) if len(values) else None


class Min(Aggregation):
    name = "min"

    def initialize(self) -> State:
        return (math.inf,)

    def add(self, state: State, ts: float, value: float) -> State:
        return (min(state[0], value),)

    def result(self, state: State, end: float) -> float | None:
        return state[0] if state[0] != math.inf else None

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return float(values.min()) if len(values) else None


class Max(Aggregation):
    name = "max"

    def initialize(self) -> State:
        return (-math.inf,)

    def add(self, state: State, ts: float, value: float) -> State:
        return (max(state[0], value),)

    def result(self, state: State, end: float) -> float | None:
        return state[0] if state[0] != -math.inf else None

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return float(values.max()) if len(values) else None


class Last(Aggregation):
    """The value with the latest event time (not the last to arrive: readings may come out of order)."""

    name = "last"

    def initialize(self) -> State:
        return (-math.inf, math.nan)

    def add(self, state: State, ts: float, value: float) -> State:
        # Strictly later only: of two readings with the same timestamp the first one wins, as in de-duplication.
        return (ts, value) if ts > state[0] else state

    def result(self, state: State, end: float) -> float | None:
        return state[1] if state[0] != -math.inf else None

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return float(values[-1]) if len(values) else None


class Slope(Aggregation):
    """Least-squares trend in units per second (0.0 when all readings share one timestamp)."""

    name = "slope"

    def initialize(self) -> State:
        return (0.0, 0.0, 0.0, 0.0, 0.0)

    def add(self, state: State, ts: float, value: float) -> State:
        n, mean_t, mean_v, c_tv, m2_t = state
        if n == 0.0:
            return (1.0, ts, value, 0.0, 0.0)
        n += 1.0
        dt = ts - mean_t
        mean_t += dt / n
        mean_v += (value - mean_v) / n
        return (n, mean_t, mean_v, c_tv + dt * (value - mean_v), m2_t + dt * (ts - mean_t))

    def result(self, state: State, end: float) -> float | None:
        n, _, _, c_tv, m2_t = state
        if not n:
            return None
        return c_tv / m2_t if m2_t > 0 else 0.0

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        if not len(values):
            return None
        tc = ts - ts.mean()
        denom = float(tc @ tc)
        return float(tc @ (values - values.mean())) / denom if denom > 0 else 0.0


class Rms(Aggregation):
    name = "rms"

    def initialize(self) -> State:
        return (0.0, 0.0)

    def add(self, state: State, ts: float, value: float) -> State:
        return (state[0] + 1.0, state[1] + value * value)

    def result(self, state: State, end: float) -> float | None:
        return math.sqrt(state[1] / state[0]) if state[0] else None

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return math.sqrt(float(values @ values) / len(values)) if len(values) else None


class PeakToPeak(Aggregation):
    name = "p2p"

    def initialize(self) -> State:
        return (math.inf, -math.inf)

    def add(self, state: State, ts: float, value: float) -> State:
        return (min(state[0], value), max(state[1], value))

    def result(self, state: State, end: float) -> float | None:
        return state[1] - state[0] if state[0] != math.inf else None

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return float(np.ptp(values)) if len(values) else None


def _moments_add(state: State, value: float) -> State:
    # Terriberry's one-pass update of the central moments M2..M4.
    n0, mean, m2, m3, m4 = state
    n = n0 + 1.0
    delta = value - mean
    delta_n = delta / n
    delta_n2 = delta_n * delta_n
    term1 = delta * delta_n * n0
    mean += delta_n
    m4 += term1 * delta_n2 * (n * n - 3 * n + 3) + 6 * delta_n2 * m2 - 4 * delta_n * m3
    m3 += term1 * delta_n * (n - 2) - 3 * delta_n * m2
    m2 += term1
    return (n, mean, m2, m3, m4)


def _central(values: Array) -> tuple[float, float, float, float]:
    mean = float(values.mean())
    d = values - mean
    d2 = d * d
    return mean, float(d2.mean()), float((d2 * d).mean()), float((d2 * d2).mean())


class Skewness(Aggregation):
    """Population (biased) skewness ``m3 / m2**1.5``; 0.0 for a constant signal."""

    name = "skew"

    def initialize(self) -> State:
        return (0.0, 0.0, 0.0, 0.0, 0.0)

    def add(self, state: State, ts: float, value: float) -> State:
        return _moments_add(state, value)

    def result(self, state: State, end: float) -> float | None:
        n, mean, m2, m3, _ = state
        if not n:
            return None
        if _flat(m2 / n, mean):
            return 0.0
        return float((m3 / n) / (m2 / n) ** 1.5)

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        if not len(values):
            return None
        mean, m2, m3, _ = _central(values)
        return 0.0 if _flat(m2, mean) else m3 / m2**1.5


class Kurtosis(Aggregation):
    """Population excess kurtosis ``m4 / m2**2 - 3`` (Fisher, biased); 0.0 for a constant signal."""

    name = "kurtosis"

    def initialize(self) -> State:
        return (0.0, 0.0, 0.0, 0.0, 0.0)

    def add(self, state: State, ts: float, value: float) -> State:
        return _moments_add(state, value)

    def result(self, state: State, end: float) -> float | None:
        n, mean, m2, _, m4 = state
        if not n:
            return None
        if _flat(m2 / n, mean):
            return 0.0
        return float((m4 / n) / (m2 / n) ** 2 - 3.0)

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        if not len(values):
            return None
        mean, m2, _, m4 = _central(values)
        return 0.0 if _flat(m2, mean) else m4 / m2**2 - 3.0


class SinceLast(Aggregation):
    """Seconds from the latest good reading to the window's end (a stale sensor shows up here first)."""

    name = "since_last"

    def initialize(self) -> State:
        return (-math.inf,)

    def add(self, state: State, ts: float, value: float) -> State:
        return (max(state[0], ts),)

    def result(self, state: State, end: float) -> float | None:
        return end - state[0] if state[0] != -math.inf else None

    def compute(self, ts: Array, values: Array, end: float) -> float | None:
        return end - float(ts[-1]) if len(ts) else None


def get(name: str) -> Aggregation:
    """The registered aggregation called ``name``.

    >>> get("rms")
    Rms()
    """
    try:
        return AGGREGATIONS[name]
    except KeyError:
        raise UnknownAggregationError(f"unknown aggregation {name!r} (known: {', '.join(AGGREGATIONS)})") from None
