"""What is normal for one machine (or one machine type): per-feature running mean, standard deviation and range.

The first ``ref_windows`` windows are averaged equally (Welford); after that the reference forgets slowly
(exponentially, ``forget`` per update), and the caller updates it only with windows it considers healthy, so a
slow degradation is measured against the machine's normal instead of being absorbed into it.

>>> normal = Normal(ref_windows=3)
>>> for v in (10.0, 12.0, 11.0):
...     normal.update({"t.mean": v})
>>> normal.ready, round(normal.mean("t.mean"), 3), round(normal.std("t.mean"), 3)
(True, 11.0, 1.0)
>>> round(normal.z({"t.mean": 14.0, "new.key": 1.0})["t.mean"], 3)
3.0
"""

from __future__ import annotations

import math

_REL_FLOOR = 1e-3
"""Standard deviation floor relative to the mean: a constant feature (a speed set point) is not infinitely
surprising when it moves a little."""
_ABS_FLOOR = 1e-6


class _Stat:
    __slots__ = ("hi", "lo", "m2", "mean", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.lo = math.inf
        self.hi = -math.inf

    def __getstate__(self) -> tuple[int, float, float, float, float]:
        return (self.n, self.mean, self.m2, self.lo, self.hi)

    def __setstate__(self, state: tuple[int, float, float, float, float]) -> None:
        self.n, self.mean, self.m2, self.lo, self.hi = state

    def update(self, value: float, ref: int, forget: float) -> None:
        self.n += 1
        self.lo = min(self.lo, value)
        self.hi = max(self.hi, value)
        if self.n <= ref:
            delta = value - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (value - self.mean)
            return
        # Past the reference period: exponentially weighted mean and variance (m2 holds the variance * ref).
        var = self.m2 / max(ref - 1, 1)
        delta = value - self.mean
        self.mean += forget * delta
        var = (1 - forget) * (var + forget * delta * delta)
        self.m2 = var * max(ref - 1, 1)

    def std(self, ref: int) -> float:
        if self.n < 2:
            return math.nan
        return math.sqrt(self.m2 / (min(self.n, max(ref, 2)) - 1))


class Normal:
    """Per-feature reference statistics with a z-score view."""

    def __init__(self, ref_windows: int = 50, forget: float = 0.002) -> None:
        self.ref_windows = ref_windows
        self.forget = forget
        self._stats: dict[str, _Stat] = {}
        self.n = 0

    @property
    def ready(self) -> bool:
        return self.n >= self.ref_windows

    def update(self, x: dict[str, float]) -> None:
        self.n += 1
        for key, value in x.items():
            stat = self._stats.get(key)
            if stat is None:
                stat = self._stats[key] = _Stat()
            stat.update(value, self.ref_windows, self.forget)

    def mean(self, key: str) -> float:
        stat = self._stats.get(key)
        return stat.mean if stat is not None and stat.n else math.nan

    def std(self, key: str) -> float:
        stat = self._stats.get(key)
        if stat is None:
            return math.nan
        return stat.std(self.ref_windows)

    def scale(self, key: str) -> float:
        """The standard deviation used for z-scores (floored)."""
        stat = self._stats.get(key)
        if stat is None or stat.n < 2:
            return math.nan
        return max(stat.std(self.ref_windows), _REL_FLOOR * abs(stat.mean), _ABS_FLOOR)

    def seen(self, key: str) -> tuple[float, float] | None:
        stat = self._stats.get(key)
        return (stat.lo, stat.hi) if stat is not None and stat.n else None

    def z(self, x: dict[str, float]) -> dict[str, float]:
        """Standardised values of the features this reference knows; unknown features are left out."""
        out: dict[str, float] = {}
        for key, value in x.items():
            stat = self._stats.get(key)
            if stat is None or stat.n < 2:
                continue
            out[key] = (value - stat.mean) / max(stat.std(self.ref_windows), _REL_FLOOR * abs(stat.mean), _ABS_FLOOR)
        return out

    def keys(self) -> list[str]:
        return list(self._stats)
