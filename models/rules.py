"""Fail-safe rules: hard limits from the plant configuration, evaluated on every window, no learning involved.

A limit applies to a sensor's window mean (a single spike is a sensor's business, a window above the limit is the
machine's).

>>> from vigil.config import Limits, Range, SensorSpec
>>> spec = SensorSpec(unit="degC", range=Range(min=0, max=150), limits=Limits(high=95))
>>> HardLimits({"bearing_temp": spec}).violations({"bearing_temp.mean": 97.5, "bearing_temp.max": 99.0})
('bearing_temp.mean 97.5 > high limit 95',)
"""

from __future__ import annotations

from collections.abc import Mapping

from vigil.config import SensorSpec


class HardLimits:
    """The hard limits of one machine's sensors."""

    def __init__(self, sensors: Mapping[str, SensorSpec], aggregation: str = "mean") -> None:
        self.sensors = dict(sensors)
        self.aggregation = aggregation
        self._limits = [
            (f"{name}.{aggregation}", spec.limits.low, spec.limits.high)
            for name, spec in sorted(self.sensors.items())
            if spec.limits.low is not None or spec.limits.high is not None
        ]

    def limits(self) -> list[tuple[str, float | None, float | None]]:
        """``(feature, low, high)`` for every limited sensor."""
        return list(self._limits)

    def violations(self, features: Mapping[str, float | None]) -> tuple[str, ...]:
        out: list[str] = []
        for key, low, high in self._limits:
            value = features.get(key)
            if value is None:
                continue
            if high is not None and value > high:
                out.append(f"{key} {value:.4g} > high limit {high:g}")
            elif low is not None and value < low:
                out.append(f"{key} {value:.4g} < low limit {low:g}")
        return tuple(out)

    def sensors_violated(self, features: Mapping[str, float | None]) -> list[str]:
        return [v.split(".", 1)[0] for v in self.violations(features)]
