"""Fail-safe rules: hard limits from the plant configuration, evaluated on every window, no learning involved.

A limit is judged with persistence: violated when the sensor stayed beyond it for ``persistence_s`` (the feature
builder's ``<sensor>.over_high_s`` / ``<sensor>.under_low_s``, runs of consecutive samples taken while the machine
ran, outside the warm-up after a start or a data gap; :mod:`features.persistence`). A single spike, the cold first
sample after a restart or a window that mixes running and stopped samples never fires. A crossing that persists
only during warm-up is reported as such (:data:`DURING_WARMUP` in its text; the alert lifecycle makes it an
informational ``startup_limit`` episode, not a critical ``hard_limit`` one: :func:`split_warmup`). A feature vector without those measures (built before they existed) is judged on its window
mean, as before; so is a rule whose limits are not the plant file's (``persistence_s=None``: the measures are
taken at the plant file's limits).

>>> from vigil.config import Limits, Range, SensorSpec
>>> spec = SensorSpec(unit="degC", range=Range(min=0, max=150), limits=Limits(high=95))
>>> rules = HardLimits({"bearing_temp": spec}, persistence_s=120.0)
>>> rules.violations({"bearing_temp.mean": 97.5, "bearing_temp.over_high_s": 240.0, "bearing_temp.warmup_over_high_s": 0.0})
('bearing_temp above high limit 95 for 240 s (mean 97.5)',)
>>> rules.violations({"bearing_temp.mean": 97.5, "bearing_temp.over_high_s": 60.0, "bearing_temp.warmup_over_high_s": 0.0})
()
>>> rules.violations({"bearing_temp.mean": 96.0, "bearing_temp.over_high_s": 0.0, "bearing_temp.warmup_over_high_s": 300.0})
('bearing_temp above high limit 95 for 300 s during warm-up',)
>>> rules.violations({"bearing_temp.mean": 97.5})   # an older vector: the mean decides
('bearing_temp.mean 97.5 > high limit 95',)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vigil.config import SensorSpec

DEFAULT_PERSISTENCE_S = 120.0
"""``[models] limit_persistence_s``'s default: three samples at 60 s."""
DURING_WARMUP = "during warm-up"
"""Ends the text of a crossing that persisted only during warm-up (see :func:`during_warmup`)."""


def during_warmup(violations: Sequence[str]) -> bool:
    """Whether every violation is a crossing during warm-up (no hard-limit alert then, see :func:`split_warmup`).

    >>> during_warmup(["flow below low limit 90 for 180 s during warm-up"]), during_warmup([])
    (True, False)
    """
    return bool(violations) and all(v.endswith(DURING_WARMUP) for v in violations)


def split_warmup(violations: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(outside, during)``: the crossings that persisted outside warm-up (hard limits) and those that persisted
    only during warm-up (expected start-up physics, reported as such).

    >>> split_warmup(["flow below low limit 90 for 180 s during warm-up", "bearing_temp above high limit 95 for 240 s"])
    (('bearing_temp above high limit 95 for 240 s',), ('flow below low limit 90 for 180 s during warm-up',))
    """
    return (
        tuple(v for v in violations if not v.endswith(DURING_WARMUP)),
        tuple(v for v in violations if v.endswith(DURING_WARMUP)),
    )


class HardLimits:
    """The hard limits of one machine's sensors."""

    def __init__(
        self,
        sensors: Mapping[str, SensorSpec],
        aggregation: str = "mean",
        persistence_s: float | None = DEFAULT_PERSISTENCE_S,
    ) -> None:
        self.sensors = dict(sensors)
        self.aggregation = aggregation
        self.persistence_s = persistence_s
        self._limits = [
            (name, spec.limits.low, spec.limits.high)
            for name, spec in sorted(self.sensors.items())
            if spec.limits.low is not None or spec.limits.high is not None
        ]
        self._persistent_keys = [
            f"{name}.{prefix}{side}_s"
            for name, low, high in self._limits
            for side, limit in (("over_high", high), ("under_low", low))
            if limit is not None
            for prefix in ("", "warmup_")
        ]

    def limits(self) -> list[tuple[str, float | None, float | None]]:
        """``(feature, low, high)`` for every limited sensor (the feature the mean rule judges)."""
        return [(f"{name}.{self.aggregation}", low, high) for name, low, high in self._limits]

    def violations(self, features: Mapping[str, float | None]) -> tuple[str, ...]:
        persistent = self.persistence_s is not None and any(k in features for k in self._persistent_keys)
        out: list[str] = []
        for name, low, high in self._limits:
            if persistent:
                for side, word, limit in (("over_high", "above high", high), ("under_low", "below low", low)):
                    if limit is None:
                        continue
                    found = self._persistent(features, name, side, f"{word} limit {limit:g}")
                    if found is not None:
                        out.append(found)
                        break
                continue
            key = f"{name}.{self.aggregation}"
            value = features.get(key)
            if value is None:
                continue
            if high is not None and value > high:
                out.append(f"{key} {value:.4g} > high limit {high:g}")
            elif low is not None and value < low:
                out.append(f"{key} {value:.4g} < low limit {low:g}")
        return tuple(out)

    def _persistent(self, features: Mapping[str, float | None], name: str, side: str, what: str) -> str | None:
        threshold = self.persistence_s or 0.0
        run = features.get(f"{name}.{side}_s")
        if run is not None and run >= threshold:
            mean = features.get(f"{name}.{self.aggregation}")
            detail = f" ({self.aggregation} {mean:.4g})" if mean is not None else ""
            return f"{name} {what} for {run:.0f} s{detail}"
        warm = features.get(f"{name}.warmup_{side}_s")
        if warm is not None and warm >= threshold:
            return f"{name} {what} for {warm:.0f} s {DURING_WARMUP}"
        return None

    def sensors_violated(self, features: Mapping[str, float | None]) -> list[str]:
        return [v.split(" ", 1)[0].split(".", 1)[0] for v in self.violations(features)]
