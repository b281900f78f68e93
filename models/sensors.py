"""Sensor health: a stuck, stepped, spiking or dropped-out sensor is a sensor fault, not machine degradation.

Faulty sensors' features are left out of scoring and training while the fault lasts, and the change is reported
once (a :class:`~vigil.contracts.DriftEvent` with ``event="sensor_fault"``), so a broken thermocouple does not
page a planner about a failing bearing. Checks use the per-machine standardised residuals (``z``, deviation from
normal at the current operating point), so a load step that moves every sensor at once is not a sensor's step.

>>> health = SensorHealth(stuck_windows=2)
>>> normal_std = {"t.std": 0.5}
>>> health.update({"t.mean": 60.0, "t.std": 0.0}, {}, (), normal_std)
[]
>>> health.update({"t.mean": 60.0, "t.std": 0.0}, {}, (), normal_std)
[('t', 'stuck', 't.std is 0 for 2 windows')]
>>> health.faulty
{'t': 'stuck'}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

_STEP_GROWTH = 2.0
"""A latched step whose offset from the pre-jump level grows past this multiple of the jump is released."""


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
        self._last_z: dict[str, float] = {}
        self._step_from: dict[str, float] = {}
        self._step_size: dict[str, float] = {}
        self._steady = True

    def __setstate__(self, state: dict[str, object]) -> None:
        # Checkpoints written before the step's size was kept still restore (their latched steps stay latched).
        self.__dict__.update({"_step_size": {}, "_steady": True, **state})

    def reset(self) -> None:
        self.faulty.clear()
        self._stuck.clear()
        self._missing.clear()
        self._last_z.clear()
        self._step_from.clear()
        self._step_size.clear()

    def update(
        self,
        x: Mapping[str, float],
        z: Mapping[str, float],
        missing: Iterable[str],
        normal_std: Mapping[str, float],
        steady: bool = True,
    ) -> list[tuple[str, str, str]]:
        """Check one running window; returns the faults that started with it as ``(sensor, kind, detail)``.

        ``x`` are the raw features, ``z`` their residual z-scores (empty while no reference exists), ``missing``
        the sensors without a good reading, ``normal_std`` the usual ``<sensor>.std`` of this machine.
        ``steady`` is false in a start's warm-up or right after a load change: sensors then settle at their own
        pace (a bearing heats slower than a current rises), so one sensor moving alone is no sign of a step.
        """
        self._steady = steady
        sensors = {k.split(".", 1)[0] for k in x if "." in k}
        gone = set(missing)
        found: dict[str, tuple[str, str]] = {}
        for sensor in sorted(gone):
            self._missing[sensor] = self._missing.get(sensor, 0) + 1
            if self._missing[sensor] >= self.dropout_windows and sensors:
                found[sensor] = ("dropout", f"no good reading for {self._missing[sensor]} window(s)")
        for sensor in sensors - gone:
            self._missing.pop(sensor, None)
        jumps = {s: z[f"{s}.mean"] - self._last_z[s] for s in sensors if f"{s}.mean" in z and s in self._last_z}
        for sensor in sorted(sensors):
            fault = self._stuck_check(sensor, x, normal_std) or self._step_check(sensor, z, jumps)
            fault = fault or self._spike_check(sensor, z)
            if fault is not None:
                found[sensor] = fault
        for sensor in sensors:
            if f"{sensor}.mean" in z:
                self._last_z[sensor] = z[f"{sensor}.mean"]
        new = [(s, kind, detail) for s, (kind, detail) in sorted(found.items()) if self.faulty.get(s) != kind]
        self.faulty = {s: kind for s, (kind, _) in found.items()}
        return new

    def _stuck_check(
        self, sensor: str, x: Mapping[str, float], normal_std: Mapping[str, float]
    ) -> tuple[str, str] | None:
        std = x.get(f"{sensor}.std")
        usual = normal_std.get(f"{sensor}.std", 0.0)
        if std is not None and std <= 1e-12 and usual > 1e-9:
            self._stuck[sensor] = self._stuck.get(sensor, 0) + 1
            if self._stuck[sensor] >= self.stuck_windows:
                return ("stuck", f"{sensor}.std is 0 for {self._stuck[sensor]} windows")
        else:
            self._stuck.pop(sensor, None)
        return None

    def _step_check(self, sensor: str, z: Mapping[str, float], jumps: Mapping[str, float]) -> tuple[str, str] | None:
        now = z.get(f"{sensor}.mean")
        if now is None:
            return None
        start = self._step_from.get(sensor)
        if start is not None:
            size = self._step_size.get(sensor, math.inf)
            # A step lasts until the sensor is back near the level it jumped from. An offset stays the size it
            # jumped; a level that keeps moving away (twice the jump) is the machine changing, not the sensor.
            if self.step_z / 2 < abs(now - start) and (now - start) / size < _STEP_GROWTH:
                return ("step", f"{sensor}.mean stays {now - start:+.1f} sd off its level before the jump")
            del self._step_from[sensor]
            self._step_size.pop(sensor, None)
            return None
        jump = jumps.get(sensor)
        others = [abs(v) for s, v in jumps.items() if s != sensor]
        if self._steady and jump is not None and abs(jump) > self.step_z and all(o < self.step_z / 3 for o in others):
            self._step_from[sensor] = self._last_z[sensor]
            self._step_size[sensor] = jump
            return ("step", f"{sensor}.mean jumped {jump:+.1f} sd in one window, alone")
        return None

    def _spike_check(self, sensor: str, z: Mapping[str, float]) -> tuple[str, str] | None:
        peak, mean = z.get(f"{sensor}.max"), z.get(f"{sensor}.mean")
        if peak is not None and mean is not None and peak > self.spike_z and abs(mean) < self.spike_z / 3:
            return ("spike", f"{sensor}.max is {peak:.0f} sd above normal while its mean is not")
        return None
