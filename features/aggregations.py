"""Window aggregations: one small class per feature, pure functions over small serialisable state.

Each aggregation has two equivalent forms:

* ``initialize() -> state``, ``add(state, ts, value) -> state``, ``result(state, end) -> float | None``: the
  incremental form (Quix Streams' ``initialize / agg / result``), over a tuple of floats that pickles and
  serialises trivially. Useful for a single stream of values and as the executable definition.
* ``compute(w: WindowArrays) -> float | None``: the same number from the window's arrays with numpy, which is
  what the window engine calls when a window closes (a few vectorised passes per window, shared between the
  aggregations through :class:`WindowArrays`, instead of a Python call per reading).

Only usable (good-quality, finite) values reach an aggregation; ``ts`` are event times in epoch seconds, ``end``
is the window's end. An empty window gives ``None`` (missing), never zero. A new aggregation is one subclass with
a unique ``name``; it registers itself in :data:`AGGREGATIONS` and the conformance test picks it up.

>>> import numpy as np
>>> agg = AGGREGATIONS["slope"]
>>> state = agg.initialize()
>>> for t, v in [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]:
...     state = agg.add(state, t, v)
>>> agg.result(state, end=3.0), agg.compute(WindowArrays(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]), end=3.0))
(2.0, 2.0)
>>> AGGREGATIONS["mean"].result(AGGREGATIONS["mean"].initialize(), end=0.0) is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
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
    # Relative to the signal's own scale (mean^2 + m2 is the mean of the squares), never an absolute floor: a
    # sensor reading values around 1e-13 (a leakage current in A) still has a shape. Below a variance of 1e-150
    # the powers of m2 underflow (m2**1.5 == 0.0 raised ZeroDivisionError): treated as constant. An overflowed
    # (inf) m2 is not constant: the ratio is then NaN, which the builder turns into a missing feature.
    return m2 < 1e-150 or (m2 != math.inf and m2 <= 1e-24 * (mean * mean + m2))


class WindowArrays:
    """One sensor's usable values in one window, with the intermediate results the aggregations share.

    Computed lazily and once per window: the mean, the centred values and the central moments feed several
    aggregations, so a window costs a handful of numpy passes, not one set per aggregation.
    """

    def __init__(self, ts: Array, values: Array, end: float) -> None:
        self.ts = ts
        self.values = values
        self.end = end
        self.n = len(values)

    @cached_property
    def mean(self) -> float:
        return float(self.values.sum()) / self.n

    @cached_property
    def centered(self) -> Array:
        return self.values - self.mean

    @cached_property
    def _c2(self) -> Array:
        return self.centered * self.centered

    @cached_property
    def m2(self) -> float:
        """Population variance."""
        return float(self._c2.sum()) / self.n

    @cached_property
    def m3(self) -> float:
        return float(self._c2 @ self.centered) / self.n

    @cached_property
    def m4(self) -> float:
        return float(self._c2 @ self._c2) / self.n

    @cached_property
    def min(self) -> float:
        return float(self.values.min())

    @cached_property
    def max(self) -> float:
        return float(self.values.max())


class SegmentArrays:
    """Several non-empty segments (one per sensor of a window) of usable values, concatenated, for the
    vectorised form of every aggregation.

    ``starts`` are the first index of each segment (strictly increasing; a segment ends where the next starts),
    ``ts`` is sorted ascending inside each segment, ``end`` is the window's end. The per-segment statistics the
    aggregations share are computed once, together, in a handful of numpy passes over all segments (numpy's cost
    per call, not per element, dominates windows of a few hundred readings), and handed out as Python lists.
    """

    def __init__(self, ts: Array, values: Array, starts: npt.NDArray[np.intp], end: float) -> None:
        self.ts = ts
        self.values = values
        self.starts = starts
        self.end = end
        self.k = len(starts)

    def window(self, i: int) -> WindowArrays:
        """Segment ``i`` as a :class:`WindowArrays` (for aggregations without a vectorised form)."""
        stop = int(self.starts[i + 1]) if i + 1 < self.k else len(self.values)
        lo = int(self.starts[i])
        return WindowArrays(self.ts[lo:stop], self.values[lo:stop], self.end)

    @cached_property
    def stats(self) -> SegmentStats:
        # Rows of one 2-D array per pass, so that each reduction over all segments is one numpy call (the same
        # sums, bit for bit, as a 1-D reduceat per quantity: reduceat adds each row's segments in order).
        v, ts, starts = self.values, self.ts, self.starts
        ends = np.empty(self.k, dtype=np.intp)
        ends[:-1] = starts[1:]
        ends[-1] = len(v)
        counts = ends - starts
        n = counts.astype(np.float64)
        lows, highs = np.minimum.reduceat(v, starts).tolist(), np.maximum.reduceat(v, starts).tolist()
        scale = [_scale(lo, hi) for lo, hi in zip(lows, highs, strict=True)]
        if any(f != 1.0 for f in scale):
            # Sums, squares and fourth powers of values this large (or small) overflow (or underflow): the moments
            # are taken of the values times a power of two (exact), and the aggregations scale back what is not
            # scale-free. Only such segments are scaled: others give the same numbers, bit for bit.
            v = v * np.repeat(np.array(scale), counts)
        add = np.add.reduceat
        first = np.empty((2, len(v)))
        first[0] = v
        first[1] = ts
        means = add(first, starts, axis=1) / n
        centered = first - np.repeat(means, counts, axis=1)
        cv, ct = centered[0], centered[1]
        powers = np.empty((6, len(v)))
        c2 = np.multiply(cv, cv, out=powers[0])
        np.multiply(c2, cv, out=powers[1])
        np.multiply(c2, c2, out=powers[2])
        np.multiply(v, v, out=powers[3])
        np.multiply(ct, ct, out=powers[4])
        np.multiply(ct, cv, out=powers[5])
        sums = add(powers, starts, axis=1)
        sums[:3] /= n
        m2, m3, m4, sum_sq, tt, tv = sums.tolist()
        last, last_ts = first[:, ends - 1].tolist()
        mean = means[0].tolist()
        if v is not self.values:
            last = self.values[ends - 1].tolist()
            mean = [m / f for m, f in zip(mean, scale, strict=True)]
        return SegmentStats(
            n=n.tolist(),
            mean=mean,
            m2=m2,
            m3=m3,
            m4=m4,
            sum_sq=sum_sq,
            tt=tt,
            tv=tv,
            min=lows,
            max=highs,
            last=last,
            last_ts=last_ts,
            scale=scale,
        )


_SCALE_ABOVE = 2.0**64
_SCALE_BELOW = 2.0**-64


def _scale(low: float, high: float) -> float:
    """The power of two a segment's values are multiplied by before their moments: 1.0 unless its largest
    magnitude is beyond 2**64 (a fourth power of the centred values could overflow) or below 2**-64 (underflow).

    >>> _scale(-20.0, 150.0), _scale(0.0, 1.7e308) == 2.0**-1024, _scale(1e-30, 1e-30) == 2.0**99
    (1.0, True, True)
    """
    magnitude = max(abs(low), abs(high))
    if _SCALE_BELOW <= magnitude <= _SCALE_ABOVE or magnitude == 0.0 or not math.isfinite(magnitude):
        return 1.0
    # frexp: magnitude = m * 2**e with 0.5 <= m < 1, so the scaled magnitude is in [0.5, 1). 2**-1024 is
    # subnormal, but multiplying or dividing by a power of two is exact while the result is a normal number.
    # A subnormal magnitude (exponent down to -1073) is scaled by 2**1023 at most: 2**1074 is not a float.
    return math.ldexp(1.0, min(-math.frexp(magnitude)[1], 1023))


@dataclass(frozen=True)
class SegmentStats:
    """Per segment: count, mean, central moments m2..m4 (divided by n), sum of squares, the time-centred sums of
    the slope (``tt`` = sum((t - mean_t)^2), ``tv`` = sum((t - mean_t)(v - mean))), min, max, the last value
    and its time. ``m2``..``m4``, ``sum_sq`` and ``tv`` are of the values times ``scale`` (see :func:`_scale`; 1.0
    for every ordinary segment); the others are of the values themselves."""

    n: list[float]
    mean: list[float]
    m2: list[float]
    m3: list[float]
    m4: list[float]
    sum_sq: list[float]
    tt: list[float]
    tv: list[float]
    min: list[float]
    max: list[float]
    last: list[float]
    last_ts: list[float]
    scale: list[float]


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

    def compute(self, w: WindowArrays) -> float | None:
        """The result for a whole window at once (``w.ts`` sorted ascending, ``w.values`` aligned with it)."""
        raise NotImplementedError

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        """:meth:`compute` for every segment at once (NaN where it is ``None``).

        This default calls :meth:`compute` per segment; the built-in aggregations override it with arithmetic on
        the shared :attr:`SegmentArrays.stats`, which is what makes closing a window cheap.
        """
        out = [self.compute(s.window(i)) for i in range(s.k)]
        return [math.nan if r is None else r for r in out]

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

    def compute(self, w: WindowArrays) -> float | None:
        return float(w.n)

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        return s.stats.n


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

    def compute(self, w: WindowArrays) -> float | None:
        return w.mean if w.n else None

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        return s.stats.mean


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

    def compute(self, w: WindowArrays) -> float | None:
        if not w.n:
            return None
        # Exactly constant: 0, not the rounding of the mean (the incremental form is exact there too).
        return 0.0 if w.min == w.max else math.sqrt(w.m2)

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        st = s.stats
        return [
            0.0 if lo == hi else math.sqrt(max(m2, 0.0)) / f
            for m2, lo, hi, f in zip(st.m2, st.min, st.max, st.scale, strict=True)
        ]


class Min(Aggregation):
    name = "min"

    def initialize(self) -> State:
        return (math.inf,)

    def add(self, state: State, ts: float, value: float) -> State:
        return (min(state[0], value),)

    def result(self, state: State, end: float) -> float | None:
        return state[0] if state[0] != math.inf else None

    def compute(self, w: WindowArrays) -> float | None:
        return w.min if w.n else None

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        return s.stats.min


class Max(Aggregation):
    name = "max"

    def initialize(self) -> State:
        return (-math.inf,)

    def add(self, state: State, ts: float, value: float) -> State:
        return (max(state[0], value),)

    def result(self, state: State, end: float) -> float | None:
        return state[0] if state[0] != -math.inf else None

    def compute(self, w: WindowArrays) -> float | None:
        return w.max if w.n else None

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        return s.stats.max


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

    def compute(self, w: WindowArrays) -> float | None:
        return float(w.values[-1]) if w.n else None

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        return s.stats.last


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

    def compute(self, w: WindowArrays) -> float | None:
        if not w.n:
            return None
        tc = w.ts - float(w.ts.sum()) / w.n
        denom = float(tc @ tc)
        return float(tc @ w.centered) / denom if denom > 0 else 0.0

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        st = s.stats
        return [tv / tt / f if tt > 0 else 0.0 for tt, tv, f in zip(st.tt, st.tv, st.scale, strict=True)]


class Rms(Aggregation):
    name = "rms"

    def initialize(self) -> State:
        return (0.0, 0.0)

    def add(self, state: State, ts: float, value: float) -> State:
        return (state[0] + 1.0, state[1] + value * value)

    def result(self, state: State, end: float) -> float | None:
        return math.sqrt(state[1] / state[0]) if state[0] else None

    def compute(self, w: WindowArrays) -> float | None:
        return math.sqrt(float(w.values @ w.values) / w.n) if w.n else None

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        st = s.stats
        return [math.sqrt(q / n) / f for q, n, f in zip(st.sum_sq, st.n, st.scale, strict=True)]


class PeakToPeak(Aggregation):
    name = "p2p"

    def initialize(self) -> State:
        return (math.inf, -math.inf)

    def add(self, state: State, ts: float, value: float) -> State:
        return (min(state[0], value), max(state[1], value))

    def result(self, state: State, end: float) -> float | None:
        return state[1] - state[0] if state[0] != math.inf else None

    def compute(self, w: WindowArrays) -> float | None:
        return w.max - w.min if w.n else None

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        return [hi - lo for lo, hi in zip(s.stats.min, s.stats.max, strict=True)]


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

    def compute(self, w: WindowArrays) -> float | None:
        if not w.n:
            return None
        return 0.0 if w.min == w.max or _flat(w.m2, w.mean) else w.m3 / w.m2**1.5

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        st = s.stats
        return [
            0.0 if lo == hi or _flat(m2, mean * f) else m3 / m2**1.5
            for m2, m3, mean, lo, hi, f in zip(st.m2, st.m3, st.mean, st.min, st.max, st.scale, strict=True)
        ]


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

    def compute(self, w: WindowArrays) -> float | None:
        if not w.n:
            return None
        return 0.0 if w.min == w.max or _flat(w.m2, w.mean) else w.m4 / w.m2**2 - 3.0

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        st = s.stats
        return [
            0.0 if lo == hi or _flat(m2, mean * f) else m4 / m2**2 - 3.0
            for m2, m4, mean, lo, hi, f in zip(st.m2, st.m4, st.mean, st.min, st.max, st.scale, strict=True)
        ]


class SinceLast(Aggregation):
    """Seconds from the latest good reading to the window's end (a stale sensor shows up here first)."""

    name = "since_last"

    def initialize(self) -> State:
        return (-math.inf,)

    def add(self, state: State, ts: float, value: float) -> State:
        return (max(state[0], ts),)

    def result(self, state: State, end: float) -> float | None:
        return end - state[0] if state[0] != -math.inf else None

    def compute(self, w: WindowArrays) -> float | None:
        return w.end - float(w.ts[-1]) if w.n else None

    def compute_segments(self, s: SegmentArrays) -> list[float]:
        return [s.end - t for t in s.stats.last_ts]


BUILT_IN = frozenset(AGGREGATIONS)
"""The aggregations above: each gives a finite number for any window with a usable reading (the values are
bounded, :data:`ingest.validation.MAX_MAGNITUDE`, and the moments scaled), so one that does not means the sensor's
statistics could not be computed and the feature builder lists the sensor as missing."""


def get(name: str) -> Aggregation:
    """The registered aggregation called ``name``.

    >>> get("rms")
    Rms()
    """
    try:
        return AGGREGATIONS[name]
    except KeyError:
        raise UnknownAggregationError(f"unknown aggregation {name!r} (known: {', '.join(AGGREGATIONS)})") from None
