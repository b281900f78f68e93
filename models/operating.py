"""What is normal for one machine *at its current operating point*: per-feature regression on load and time of day.

Most sensors follow the load (flow ~ s, current ~ s^3, temperatures ~ s with a lag) and the ambient temperature
(a daily cycle), so "bearing at 71 degC" is normal at full load on a hot afternoon and a warning at part load at
night. Each feature is regressed on ``[1, s, s^2, s_prev, sin(day), cos(day)]`` (``s`` = the running sensor's
window mean relative to its range, ``s_prev`` the previous window's, for the thermal lag), by exponentially
forgetting least squares; its z-score is the residual over the residual's own standard deviation, measured
prequentially (before each update), so it is honest about noise, and per quarter of the load range once that
quarter has been seen enough (noise and misfit differ between part and full load).

The first ``ref_windows`` updates weigh equally; after that each update forgets ``forget`` of the past, and the
caller updates only with windows it considers healthy, so a slow degradation is not absorbed into normal.

>>> import math
>>> normal = OperatingNormal(ref_windows=30)
>>> for i in range(200):
...     s = 0.6 + 0.4 * ((i * 7) % 10) / 10
...     r = regressors(s, s, hour=(i % 24))
...     normal.update({"t.mean": 30 + 20 * s + 0.01 * math.sin(i)}, r)
>>> round(normal.expected("t.mean", regressors(0.8, 0.8, hour=3)), 1)
46.0
>>> normal.z({"t.mean": 46.5}, regressors(0.8, 0.8, hour=3))["t.mean"] > 3
True
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

N_REGRESSORS = 6
_RIDGE = 1e-5
_SETTLE = N_REGRESSORS + 2
_VAR_SPEEDUP = 5.0
_MIN_SCALE_REL = 1e-3
_MIN_SCALE_ABS = 1e-6
LOAD_BINS = 4
"""The residual's spread is kept per quarter of the load range too: a ratio over a flow near zero, or a sensor that
a quadratic in the load fits worse at part load, is noisier there than at full load."""
_BIN_MIN = 20
"""Updates a load bin needs before its own spread is used (the whole range's until then)."""
_BIN_FLOOR = 0.25
"""A bin's variance is never taken below this share of the whole range's (a quiet bin is not overconfident)."""


def load_bin(r: NDArray[np.float64]) -> int:
    """The load bin of an operating point (its load clamped to [0, 1])."""
    return min(LOAD_BINS - 1, max(0, int(float(r[1]) * LOAD_BINS)))


def regressors(load: float | None, load_prev: float | None, hour: float) -> NDArray[np.float64]:
    """The operating point of one window: load (0 when unknown), its square, the previous load, time of day."""
    s = 0.0 if load is None or not math.isfinite(load) else load
    p = s if load_prev is None or not math.isfinite(load_prev) else load_prev
    angle = 2 * math.pi * hour / 24.0
    return np.array([1.0, s, s * s, p, math.sin(angle), math.cos(angle)])


class OperatingNormal:
    """Per-feature least squares on the operating point, with residual standard deviations."""

    def __init__(self, ref_windows: int = 50, forget: float = 0.002) -> None:
        self.ref_windows = ref_windows
        self.forget = forget
        self.n = 0
        self._index: dict[str, int] = {}
        self._a = np.zeros((0, N_REGRESSORS, N_REGRESSORS))
        self._b = np.zeros((0, N_REGRESSORS))
        self._beta = np.zeros((0, N_REGRESSORS))
        self._count = np.zeros(0)
        self._var = np.zeros(0)
        self._bvar = np.zeros((0, LOAD_BINS))
        self._bcount = np.zeros((0, LOAD_BINS))
        self._mean = np.zeros(0)
        self._lo = np.zeros(0)
        self._hi = np.zeros(0)
        self.load_range: tuple[float, float] | None = None

    def covers(self, r: NDArray[np.float64], slack: float = 0.03) -> bool:
        """Whether this reference has seen the operating point ``r`` (its load, within ``slack``): a fit
        extrapolated to a load it never saw is a guess, not a normal."""
        if self.load_range is None:
            return False
        lo, hi = self.load_range
        return lo - slack <= float(r[1]) <= hi + slack

    def __setstate__(self, state: dict[str, object]) -> None:
        # Checkpoints from before the per-load spread: every bin empty, so the whole range's spread is used.
        self.__dict__.update(state)
        if "_bvar" not in state:
            n = len(self._var)
            self._bvar = np.zeros((n, LOAD_BINS))
            self._bcount = np.zeros((n, LOAD_BINS))

    @property
    def ready(self) -> bool:
        return self.n >= self.ref_windows

    def _grow(self, keys: list[str]) -> None:
        new = [k for k in keys if k not in self._index]
        if not new:
            return
        for k in new:
            self._index[k] = len(self._index)
        extra = len(new)
        self._a = np.concatenate([self._a, np.zeros((extra, N_REGRESSORS, N_REGRESSORS))])
        self._b = np.concatenate([self._b, np.zeros((extra, N_REGRESSORS))])
        self._beta = np.concatenate([self._beta, np.zeros((extra, N_REGRESSORS))])
        self._count = np.concatenate([self._count, np.zeros(extra)])
        self._var = np.concatenate([self._var, np.zeros(extra)])
        self._bvar = np.concatenate([self._bvar, np.zeros((extra, LOAD_BINS))])
        self._bcount = np.concatenate([self._bcount, np.zeros((extra, LOAD_BINS))])
        self._mean = np.concatenate([self._mean, np.zeros(extra)])
        self._lo = np.concatenate([self._lo, np.full(extra, np.inf)])
        self._hi = np.concatenate([self._hi, np.full(extra, -np.inf)])

    def update(self, x: dict[str, float], r: NDArray[np.float64]) -> None:
        """Learn one healthy window."""
        if not x:
            return
        self.n += 1
        load = float(r[1])
        lo, hi = self.load_range if self.load_range is not None else (load, load)
        self.load_range = (min(lo, load), max(hi, load))
        self._grow(list(x))
        idx = np.fromiter((self._index[k] for k in x), dtype=np.intp, count=len(x))
        y = np.fromiter(x.values(), dtype=np.float64, count=len(x))
        count = self._count[idx] + 1
        self._count[idx] = count
        # Equal weights during the reference period, then exponential forgetting.
        keep = np.where(count <= self.ref_windows, 1.0, 1.0 - self.forget)
        rate = np.where(count <= self.ref_windows, 1.0 / count, self.forget)
        fitted = self._beta[idx] @ r
        residual = y - fitted
        # Prequential residual variance: the error of the fit made before seeing this window, counted only once
        # the fit is determined (more windows than regressors).
        settled = count - _SETTLE
        # The noise level adapts faster than the fit (its early estimates come from a fit still settling).
        var_rate = np.maximum(1.0 / np.maximum(settled, 1), min(1.0, _VAR_SPEEDUP * self.forget))
        self._var[idx] = np.where(
            settled > 0, (1 - var_rate) * self._var[idx] + var_rate * residual * residual, self._var[idx]
        )
        b = load_bin(r)
        bcount = self._bcount[idx, b] + (settled > 0)
        self._bcount[idx, b] = bcount
        bin_rate = np.maximum(1.0 / np.maximum(bcount, 1), min(1.0, _VAR_SPEEDUP * self.forget))
        self._bvar[idx, b] = np.where(
            settled > 0, (1 - bin_rate) * self._bvar[idx, b] + bin_rate * residual * residual, self._bvar[idx, b]
        )
        self._mean[idx] += rate * (y - self._mean[idx])
        self._lo[idx] = np.minimum(self._lo[idx], y)
        self._hi[idx] = np.maximum(self._hi[idx], y)
        self._a[idx] = keep[:, None, None] * self._a[idx] + np.outer(r, r)[None, :, :]
        self._b[idx] = keep[:, None] * self._b[idx] + y[:, None] * r[None, :]
        ridge = _RIDGE * np.eye(N_REGRESSORS) * np.maximum(1.0, np.abs(self._mean[idx]))[:, None, None]
        self._beta[idx] = np.linalg.solve(self._a[idx] + ridge, self._b[idx][:, :, None])[:, :, 0]

    def expected(self, key: str, r: NDArray[np.float64]) -> float:
        i = self._index.get(key)
        if i is None or self._count[i] < 2:
            return math.nan
        return float(self._beta[i] @ r)

    def scale(self, key: str, r: NDArray[np.float64] | None = None) -> float:
        i = self._index.get(key)
        if i is None or self._count[i] < 2:
            return math.nan
        return float(self._scale(np.array([i]), r)[0])

    def _scale(self, idx: NDArray[np.intp], r: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        var = self._var[idx]
        if r is not None:
            b = load_bin(r)
            own = np.maximum(self._bvar[idx, b], _BIN_FLOOR * var)
            var = np.where(self._bcount[idx, b] >= _BIN_MIN, own, var)
        floor = np.maximum(_MIN_SCALE_REL * np.abs(self._mean[idx]), _MIN_SCALE_ABS)
        return np.maximum(np.sqrt(np.maximum(var, 0.0)), floor)

    def mean(self, key: str) -> float:
        i = self._index.get(key)
        return float(self._mean[i]) if i is not None and self._count[i] else math.nan

    def seen(self, key: str) -> tuple[float, float] | None:
        i = self._index.get(key)
        return (float(self._lo[i]), float(self._hi[i])) if i is not None and self._count[i] else None

    def z(self, x: dict[str, float], r: NDArray[np.float64]) -> dict[str, float]:
        """Standardised residuals of the features this reference knows (at least a few windows of each)."""
        keys = [k for k in x if k in self._index and self._count[self._index[k]] > _SETTLE + 2]
        if not keys:
            return {}
        idx = np.fromiter((self._index[k] for k in keys), dtype=np.intp, count=len(keys))
        y = np.fromiter((x[k] for k in keys), dtype=np.float64, count=len(keys))
        z = (y - self._beta[idx] @ r) / self._scale(idx, r)
        return dict(zip(keys, z.tolist(), strict=True))

    def keys(self) -> list[str]:
        return list(self._index)
