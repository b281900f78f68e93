"""Sensor health: a stuck, stepped, spiking or dropped-out sensor is a sensor fault, not machine degradation.

Faulty sensors' features are left out of scoring and training while the fault lasts, and the change is reported
once (a :class:`~vigil.contracts.DriftEvent` with ``event="sensor_fault"``), so a broken thermocouple does not
page a planner about a failing bearing.

>>> from models.normal import Normal
>>> normal = Normal(ref_windows=3)
>>> for v in (60.0, 61.0, 59.0):
...     normal.update({"t.mean": v, "t.std": 0.5})
>>> health = SensorHealth(stuck_windows=2)
>>> health.update({"t.mean": 60.0, "t.std": 0.0}, (), normal), health.update({"t.mean": 60.0, "t.std": 0.0}, (), normal)
([], [('t', 'stuck', 't.std is 0 for 2 windows')])
>>> health.faulty
{'t': 'stuck'}
"""

from __future__ import annotations

from collections.abc import Iterable

from models.normal import Normal


class SensorHealth:
    """Per machine: which sensors look faulty now, and why."""

    def __init__(
        self, stuck_windows: int = 2, dropout_windows: int = 1, step_z: float = 12.0, spike_z: float = 12.0
    ) -> None:
        self.stuck_windows = stuck_windows
        self.dropout_windows = dropout_windows
        self.step_z = step_z
        self.spike_z = spike_z
        self.faulty: dict[str, str] = {}
        self._stuck: dict[str, int] = {}
        self._missing: dict[str, int] = {}
        self._last_mean: dict[str, float] = {}
        self._step_ref: dict[str, float] = {}

    def reset(self) -> None:
        self.faulty.clear()
        self._stuck.clear()
        self._missing.clear()
        self._last_mean.clear()
        self._step_ref.clear()

    def update(self, x: dict[str, float], missing: Iterable[str], normal: Normal) -> list[tuple[str, str, str]]:
        """Check one running window; returns the faults that started with it as ``(sensor, kind, detail)``."""
        sensors = {k.split(".", 1)[0] for k in x if "." in k}
        missing = set(missing)
        found: dict[str, tuple[str, str]] = {}
        for sensor in sorted(missing):
            self._missing[sensor] = self._missing.get(sensor, 0) + 1
            if self._missing[sensor] >= self.dropout_windows and sensors:
                found[sensor] = ("dropout", f"no good reading for {self._missing[sensor]} window(s)")
        for sensor in sensors - missing:
            self._missing.pop(sensor, None)
        for sensor in sorted(sensors):
            fault = self._check(sensor, x, normal)
            if fault is not None:
                found[sensor] = fault
            mean = x.get(f"{sensor}.mean")
            if mean is not None:
                self._last_mean[sensor] = mean
        new = [(s, kind, detail) for s, (kind, detail) in sorted(found.items()) if self.faulty.get(s) != kind]
        self.faulty = {s: kind for s, (kind, _) in found.items()}
        return new

    def _check(self, sensor: str, x: dict[str, float], normal: Normal) -> tuple[str, str] | None:
        std = x.get(f"{sensor}.std")
        normal_std = normal.mean(f"{sensor}.std")
        if std is not None and std <= 1e-12 and normal.ready and normal_std > 1e-9:
            self._stuck[sensor] = self._stuck.get(sensor, 0) + 1
            if self._stuck[sensor] >= self.stuck_windows:
                return ("stuck", f"{sensor}.std is 0 for {self._stuck[sensor]} windows")
        else:
            self._stuck.pop(sensor, None)
        if not normal.ready:
            return None
        mean = x.get(f"{sensor}.mean")
        scale = normal.scale(f"{sensor}.mean")
        if mean is not None and scale == scale:
            ref = self._step_ref.get(sensor)
            last = self._last_mean.get(sensor)
            if ref is not None:
                # A step lasts until the sensor is back near the level it jumped from.
                if abs(mean - ref) > self.step_z * scale / 2:
                    return ("step", f"{sensor}.mean stays {mean - ref:+.4g} off its level before the jump")
                del self._step_ref[sensor]
            elif last is not None and abs(mean - last) > self.step_z * scale:
                self._step_ref[sensor] = last
                return ("step", f"{sensor}.mean jumped {mean - last:+.4g} in one window")
        peak = x.get(f"{sensor}.max")
        peak_scale = normal.scale(f"{sensor}.max")
        if peak is not None and mean is not None and peak_scale == peak_scale and scale == scale:
            peak_z = (peak - normal.mean(f"{sensor}.max")) / peak_scale
            mean_z = (mean - normal.mean(f"{sensor}.mean")) / scale
            if peak_z > self.spike_z and abs(mean_z) < self.spike_z / 3:
                return ("spike", f"{sensor}.max {peak:.4g} is {peak_z:.0f} sd above normal while the mean is not")
        return None
