"""Sensor health: a sensor is called faulty only on evidence a healthy (or wearing) machine cannot produce.

Faulty sensors' features are left out of scoring and training while the fault lasts, and the change is reported
once (a :class:`~vigil.contracts.DriftEvent` with ``event="sensor_fault"``, informational: it goes to the digest,
not to a planner's pager). The evidence, per running window:

- **stuck**: the sensor did not change at all (window ``std`` exactly 0, the same value as the window before) for
  ``stuck_windows`` windows and at least ``stuck_samples`` readings, while another sensor of the machine changed
  and the sensor's normal does vary. A sensor that reports once per window (report by exception) changes its
  value between windows and is not stuck; a machine whose every sensor is flat is a frozen source, not a sensor;
  a value flat at zero or at the bottom of the valid range is a physical floor (no flow while unloaded, a
  low-flow cut-off), not evidence.
- **spike** (an impossible jump and back): within one window the sensor went more than ``jump_share`` of its
  valid range away from the window's level and came back (the last reading is back near the level), while no
  other sensor moved by a third of that share of its range (a start, a stop or a speed change moves several).
- **step** (an impossible jump that stays): the window level moved more than ``jump_share`` of the valid range
  from one window to the next, alone, in steady operation (not in a start's warm-up nor right after a load
  change); it lasts while the offset stays, and is released when the level is back or keeps moving away (twice
  the jump: the machine changing, not the sensor). A health indicator (``key``) stepping the way wear moves it
  (towards its limit; up when it has none) is not evidence: a cracked gear tooth steps the kurtosis up at once.
- **dropout**: no good reading for ``dropout_windows`` windows while the machine's other sensors report.

A temperature rising from bearing wear (hours, a few per cent of the range per window) or a level that moves
with the machine's speed is none of these: no z-score against a learnt normal takes part, so a cold start, an
operating point the normal has not seen, or wear cannot make a sensor look faulty.

>>> health = SensorHealth(spans={"t": 100.0, "p": 10.0}, stuck_windows=2)
>>> window = {"t.mean": 60.0, "t.std": 0.0, "t.max": 60.0, "p.mean": 3.0, "p.std": 0.1, "p.max": 3.2}
>>> health.update(window, (), {"t.std": 0.5})
[]
>>> health.update(window, (), {"t.std": 0.5})
[('t', 'stuck', 't unchanged at 60 for 2 windows while p changed')]
>>> health.faulty
{'t': 'stuck'}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

_STEP_GROWTH = 2.0
"""A latched step whose offset from the pre-jump level grows past this multiple of the jump is released."""
_QUIET = 1.0 / 3.0
"""Other sensors moving less than this share of the jump threshold (in their own ranges) are "not moving"."""


def _value(features: Mapping[str, Any], key: str) -> float | None:
    v = features.get(key)
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _wear_direction(spec: Any) -> int:
    """The way wear moves a health indicator: towards its limit (up with a high limit or none, down with only a
    low one); 0 for a sensor that is no health indicator (not ``key``)."""
    if not getattr(spec, "key", False):
        return 0
    limits = getattr(spec, "limits", None)
    low, high = getattr(limits, "low", None), getattr(limits, "high", None)
    return -1 if low is not None and high is None else 1


class SensorHealth:
    """Per machine: which sensors look faulty now, and why. ``spans`` are the sensors' valid-range widths."""

    def __init__(
        self,
        spans: Mapping[str, float] | None = None,
        stuck_windows: int = 2,
        stuck_samples: int = 10,
        dropout_windows: int = 1,
        jump_share: float = 0.1,
    ) -> None:
        self.spans = dict(spans or {})
        self.stuck_windows = stuck_windows
        self.stuck_samples = stuck_samples
        self.dropout_windows = dropout_windows
        self.jump_share = jump_share
        self.faulty: dict[str, str] = {}
        self.floors: dict[str, float] = {}
        """Per sensor, the bottom of its valid range: a value flat there is a physical floor, not a stuck sensor."""
        self.wear: dict[str, int] = {}
        """Per health indicator, the direction wear moves it (+1 up, -1 down): a step that way is not evidence."""
        self._stuck: dict[str, tuple[float, int, int]] = {}
        """Per sensor: the value it is flat at, for how many windows, over how many readings (0: not known)."""
        self._missing: dict[str, int] = {}
        self._last_mean: dict[str, float] = {}
        self._step_from: dict[str, float] = {}
        self._step_size: dict[str, float] = {}
        self._at: float | None = None
        self._spacing = math.inf
        """The shortest time seen between two windows: a longer one means windows are missing in between."""

    @classmethod
    def for_sensors(cls, sensors: Mapping[str, Any], **kwargs: Any) -> SensorHealth:
        """From a machine's sensor specifications (anything with ``range.min``/``range.max``, optionally
        ``limits.low``/``limits.high`` and ``key``)."""
        spans = {name: float(s.range.max - s.range.min) for name, s in sensors.items()}
        health = cls({k: v for k, v in spans.items() if v > 0}, **kwargs)
        health.floors = {name: float(s.range.min) for name, s in sensors.items()}
        health.wear = {name: d for name, s in sensors.items() if (d := _wear_direction(s)) != 0}
        return health

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Checkpoints of the z-score checks restore without ranges (jumps are judged again after a repair's reset
        # only where the pipeline gives ranges) and with their stuck counters started afresh.
        defaults: dict[str, Any] = {
            "spans": {},
            "stuck_samples": 10,
            "jump_share": 0.1,
            "_last_mean": {},
            "_step_size": {},
            "_at": None,
            "_spacing": math.inf,
            "floors": {},
            "wear": {},
        }
        self.__dict__.update({**defaults, **state})
        if any(not isinstance(v, tuple) for v in self._stuck.values()):
            self._stuck = {}
        for old in ("step_z", "spike_z", "_last_z", "_steady"):
            self.__dict__.pop(old, None)

    def reset(self) -> None:
        self.faulty.clear()
        self._stuck.clear()
        self._missing.clear()
        self._last_mean.clear()
        self._step_from.clear()
        self._step_size.clear()
        self._at = None

    def update(
        self,
        features: Mapping[str, Any],
        missing: Iterable[str],
        normal_std: Mapping[str, float],
        steady: bool = True,
        at: float | None = None,
    ) -> list[tuple[str, str, str]]:
        """Check one running window; returns the faults that started with it as ``(sensor, kind, detail)``.

        ``features`` are the window's raw features (``<sensor>.mean``, ``.std``, ``.max`` and, when the feature
        worker sends them, ``.min``, ``.last`` and ``.count``; ``None`` where there was no value), ``missing`` the
        sensors without a good reading, ``normal_std`` the usual ``<sensor>.std`` of this machine. ``steady`` is
        false in a start's warm-up or right after a load change, when sensors settle each at their own pace.
        ``at`` is the window's end (seconds): a level is compared with the window before only when no window is
        missing in between (after a gap in the data the machine may have done anything).
        """
        means = {}
        for key in features:
            sensor, _, agg = key.partition(".")
            if agg == "mean":
                value = _value(features, key)
                if value is not None:
                    means[sensor] = value
        gone = set(missing)
        found: dict[str, tuple[str, str]] = {}
        for sensor in sorted(gone):
            self._missing[sensor] = self._missing.get(sensor, 0) + 1
            if self._missing[sensor] >= self.dropout_windows and means:
                found[sensor] = ("dropout", f"no good reading for {self._missing[sensor]} window(s)")
        for sensor in set(means) - gone:
            self._missing.pop(sensor, None)
        consecutive = self._consecutive(at)
        changing = sorted(s for s in means if (_value(features, f"{s}.std") or 0.0) > 0.0)
        excursions = {s: self._excursion(s, features, means[s]) for s in means}
        moves = {
            s: abs(means[s] - self._last_mean[s]) / self.spans[s] for s in means if consecutive and self._movable(s)
        }
        for sensor in sorted(means):
            fault = self._stuck_check(sensor, features, means[sensor], changing, normal_std)
            fault = fault or self._step_check(sensor, means[sensor], moves, steady)
            fault = fault or self._spike_check(sensor, features, means[sensor], excursions)
            if fault is not None:
                found[sensor] = fault
        self._last_mean.update(means)
        new = [(s, kind, detail) for s, (kind, detail) in sorted(found.items()) if self.faulty.get(s) != kind]
        self.faulty = {s: kind for s, (kind, _) in found.items()}
        return new

    # ------------------------------------------------------------------------------------------- the checks

    def _consecutive(self, at: float | None) -> bool:
        if at is None:
            return True
        last, self._at = self._at, at
        if last is None or at <= last:
            return last is None
        self._spacing = min(self._spacing, at - last)
        return at - last <= 1.5 * self._spacing

    def _movable(self, sensor: str) -> bool:
        # A sensor that was stuck or silent in the window before is compared with a value it did not measure.
        return (
            sensor in self._last_mean
            and self.spans.get(sensor, 0.0) > 0.0
            and self.faulty.get(sensor) not in ("stuck", "dropout")
        )

    def _stuck_check(
        self,
        sensor: str,
        features: Mapping[str, Any],
        mean: float,
        changing: list[str],
        normal_std: Mapping[str, float],
    ) -> tuple[str, str] | None:
        std = _value(features, f"{sensor}.std")
        count = _value(features, f"{sensor}.count")
        usual = normal_std.get(f"{sensor}.std", 0.0)
        others = [s for s in changing if s != sensor]
        flat = std is not None and std == 0.0 and usual > 1e-9 and math.isfinite(usual) and bool(others)
        if flat and (mean == 0.0 or mean <= self.floors.get(sensor, -math.inf)):
            # Flat at zero or at the bottom of the range: no flow through an unloaded compressor, a transmitter's
            # low-flow cut-off. A healthy machine produces that, so it is no evidence of a stuck sensor.
            flat = False
        previous = self._stuck.get(sensor)
        if not flat or (previous is not None and previous[0] != mean):
            # A new flat value is a new run (a report-by-exception sensor changes between windows).
            if not flat:
                self._stuck.pop(sensor, None)
                return None
            previous = None
        windows = (previous[1] if previous else 0) + 1
        samples = (previous[2] if previous else 0) + int(count or 0)
        self._stuck[sensor] = (mean, windows, samples)
        enough = samples >= self.stuck_samples or count is None
        if windows >= self.stuck_windows and enough:
            return ("stuck", f"{sensor} unchanged at {mean:.6g} for {windows} windows while {others[0]} changed")
        return None

    def _step_check(self, sensor: str, mean: float, moves: Mapping[str, float], steady: bool) -> tuple[str, str] | None:
        start = self._step_from.get(sensor)
        if start is not None:
            size = self._step_size.get(sensor, math.inf)
            # A step lasts until the sensor is back near the level it jumped from; a level that keeps moving away
            # (twice the jump) is the machine changing, not the sensor.
            if abs(size) / 2 < abs(mean - start) and (mean - start) / size < _STEP_GROWTH:
                return ("step", f"{sensor} stays {mean - start:+.4g} off its level before the jump")
            del self._step_from[sensor]
            self._step_size.pop(sensor, None)
            return None
        move = moves.get(sensor)
        if not steady or move is None or move <= self.jump_share:
            return None
        if any(m >= self.jump_share * _QUIET for s, m in moves.items() if s != sensor):
            return None
        jump = mean - self._last_mean[sensor]
        if jump * self.wear.get(sensor, 0) > 0:
            # A health indicator jumping the way wear moves it (a cracked gear tooth steps the kurtosis up): a
            # degrading machine can do that, so it stays in the scoring rather than being called a faulty sensor.
            return None
        self._step_from[sensor] = self._last_mean[sensor]
        self._step_size[sensor] = jump
        return ("step", f"{sensor} jumped {jump:+.4g} ({move:.0%} of its range) in one window, alone")

    def _excursion(self, sensor: str, features: Mapping[str, Any], mean: float) -> tuple[float, float]:
        """How far the window's extremes went from its level, up and down, as shares of the valid range."""
        span = self.spans.get(sensor, 0.0)
        if span <= 0:
            return (0.0, 0.0)
        top, bottom = _value(features, f"{sensor}.max"), _value(features, f"{sensor}.min")
        up = (top - mean) / span if top is not None else 0.0
        down = (mean - bottom) / span if bottom is not None else 0.0
        return (max(up, 0.0), max(down, 0.0))

    def _spike_check(
        self,
        sensor: str,
        features: Mapping[str, Any],
        mean: float,
        excursions: Mapping[str, tuple[float, float]],
    ) -> tuple[str, str] | None:
        up, down = excursions.get(sensor, (0.0, 0.0))
        size = max(up, down)
        if size <= self.jump_share:
            return None
        # A spike goes out and comes back: the rest of the window sits at its level, unlike a step inside it.
        if min(up, down) > size / 4:
            return None
        last = _value(features, f"{sensor}.last")
        span = self.spans[sensor]
        if last is not None and abs(last - mean) / span > size / 2:
            return None  # the window ended out there: a jump that has not come back (yet)
        if any(max(e) >= self.jump_share * _QUIET for s, e in excursions.items() if s != sensor):
            return None  # other sensors moved too: the machine started, stopped or changed speed
        direction = "above" if up >= down else "below"
        return ("spike", f"{sensor} went {size:.0%} of its range {direction} its level in one window and back")
