"""Bad input, counted and flagged, never a crash: the gate every collector puts its readings through.

A reading of an unknown machine or sensor is rejected (an unknown node never creates a machine) and logged once
per key, not once per reading. Everything else is kept and flagged, because downstream decides what to do with
suspect data and a planner may want to see it: ``bad_quality`` and ``uncertain_quality`` (OPC UA severity),
``not_finite`` (NaN/inf; the value becomes ``None``), ``out_of_range`` (outside the configured valid range) and
``unit_mismatch`` (the source says another unit than the configuration).

>>> from datetime import datetime, timezone
>>> from vigil.config import load_config
>>> from vigil.contracts import Reading
>>> v = Validator(load_config(environ={}))
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> v.check(Reading(machine_id="PMP-001", sensor="bearing_temp", ts=t, value=400.0)).flags
('out_of_range',)
>>> v.check(Reading(machine_id="PMP-999", sensor="bearing_temp", ts=t, value=40.0)) is None
True
>>> dict(v.counters)
{'out_of_range': 1, 'unknown_machine': 1}
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

from vigil.config import VigilConfig
from vigil.contracts import Quality, Reading

log = logging.getLogger(__name__)

REJECT_REASONS = ("unknown_machine", "unknown_sensor", "wrong_type")
FLAG_REASONS = ("bad_quality", "uncertain_quality", "not_finite", "out_of_range", "unit_mismatch")


def coerce_value(raw: Any) -> float | None:
    """A sensor value from JSON/CSV as a float; ``None`` stays ``None`` (no value), NaN/inf are kept.

    Raises :class:`TypeError` for anything that is not a number (booleans included: a switch is not a reading).

    >>> coerce_value(3), coerce_value("2.5"), coerce_value(None)
    (3.0, 2.5, None)
    >>> coerce_value(True)
    Traceback (most recent call last):
    ...
    TypeError: value True is a bool, not a number
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise TypeError(f"value {raw!r} is a bool, not a number")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            raise TypeError(f"value {raw[:40]!r} is not a number") from None
    raise TypeError(f"value of type {type(raw).__name__} is not a number")


class Validator:
    """Checks readings against the plant configuration; ``counters`` counts every reason seen."""

    def __init__(self, config: VigilConfig) -> None:
        self.config = config
        self.counters: Counter[str] = Counter()
        self._warned: set[tuple[str, ...]] = set()
        # (machine, sensor) -> (min, max, unit), resolved once: check() runs for every reading.
        self._specs: dict[tuple[str, str], tuple[float, float, str]] = {}
        self._machines: set[str] = set()
        for machine in config.machines_by_id.values():
            self._machines.add(machine.id)
            for name, spec in machine.sensors.items():
                self._specs[(machine.id, name)] = (spec.range.min, spec.range.max, spec.unit)

    def check(self, reading: Reading) -> Reading | None:
        """The reading with its flags set, or ``None`` when it must be rejected (unknown machine or sensor)."""
        spec = self._specs.get((reading.machine_id, reading.sensor))
        if spec is None:
            self._reject_unknown(reading)
            return None
        flags: list[str] = []
        value = reading.value
        if reading.quality is Quality.BAD:
            flags.append("bad_quality")
        elif reading.quality is Quality.UNCERTAIN:
            flags.append("uncertain_quality")
        if value is not None:
            if not math.isfinite(value):
                flags.append("not_finite")
                value = None
            elif not spec[0] <= value <= spec[1]:
                flags.append("out_of_range")
        if reading.unit is not None and reading.unit != spec[2]:
            flags.append("unit_mismatch")
        if not flags:
            return reading
        self.counters.update(flags)
        merged = tuple(dict.fromkeys((*reading.flags, *flags)))
        return reading.model_copy(update={"flags": merged, "value": value})

    def count(self, reason: str, key: tuple[str, ...] = (), detail: str = "") -> None:
        """Count a rejection a collector found before a Reading existed (e.g. ``wrong_type``); log once per key."""
        self.counters[reason] += 1
        if (reason, *key) not in self._warned:
            self._warned.add((reason, *key))
            log.warning("rejected %s %s%s (logged once per key; see counters)", reason, "/".join(key), detail)

    def _reject_unknown(self, reading: Reading) -> None:
        if reading.machine_id not in self._machines:
            self.count("unknown_machine", (reading.machine_id,), ": not in [[machines]], no machine is created")
        else:
            self.count("unknown_sensor", (reading.machine_id, reading.sensor), ": not a sensor of its machine type")
