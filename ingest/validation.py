"""Bad input, counted and flagged, never a crash: the gate every collector puts its readings through.

A reading of an unknown machine or sensor is rejected (an unknown node never creates a machine) and logged once
per key, not once per reading. Everything else is kept and flagged, because downstream decides what to do with
suspect data and a planner may want to see it: ``bad_quality`` and ``uncertain_quality`` (OPC UA severity),
``not_finite`` (NaN/inf; the value becomes ``None``), ``out_of_range`` (outside the configured valid range, or
beyond :data:`MAX_MAGNITUDE`; the feature worker judges values with the same table, :func:`valid_ranges`),
``unit_mismatch`` (the source says another unit than the configuration) and, when ``publish.max_clock_skew_s`` is
set, ``clock_skew`` (the event time is that far ahead of this machine's clock: a source clock set wrong).

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
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ingest.exceptions import PayloadError
from vigil.config import VigilConfig
from vigil.contracts import Quality, Reading

log = logging.getLogger(__name__)

REJECT_REASONS = ("unknown_machine", "unknown_sensor", "wrong_type")
FLAG_REASONS = ("bad_quality", "uncertain_quality", "not_finite", "out_of_range", "unit_mismatch", "clock_skew")
MAX_MAGNITUDE = 1e15
"""No sensor value is believed beyond this magnitude, whatever range the plant file gives (``out_of_range``): it
keeps every statistic of the accepted values far from float64's limits (a fourth power of 1e15 is 1e60) and no
physical sensor Vigil reads (temperatures, pressures, currents, counters) gets near it."""


def valid_ranges(config: VigilConfig) -> dict[str, dict[str, tuple[float, float]]]:
    """Machine id -> sensor -> the valid range ``(min, max)`` a value must lie in, from the plant file (per-machine
    overrides applied) and never wider than :data:`MAX_MAGNITUDE`. The one table of these rules: the collectors'
    :class:`Validator` and the feature worker's decoder (:mod:`streaming.decoding`) both judge values with it.

    >>> from vigil.config import load_config
    >>> valid_ranges(load_config(environ={}))["PMP-001"]["bearing_temp"]
    (-20.0, 150.0)
    """
    return {
        machine.id: {
            name: (max(spec.range.min, -MAX_MAGNITUDE), min(spec.range.max, MAX_MAGNITUDE))
            for name, spec in machine.sensors.items()
        }
        for machine in config.machines_by_id.values()
    }


def value_flag(value: float, low: float, high: float) -> str | None:
    """Why a number cannot be used as a reading of a sensor with the valid range ``[low, high]``: ``not_finite``
    (NaN, infinity), ``out_of_range``, or ``None`` when it can.

    >>> value_flag(20.0, -20.0, 150.0), value_flag(-5000.0, -20.0, 150.0), value_flag(float("inf"), -20.0, 150.0)
    (None, 'out_of_range', 'not_finite')
    """
    if low <= value <= high:
        return None
    return "out_of_range" if math.isfinite(value) else "not_finite"


def coerce_value(raw: Any) -> float | None:
    """A sensor value from JSON/CSV as a float; ``None`` stays ``None`` (no value), NaN/inf are kept.

    Raises :class:`PayloadError` (``wrong_type``) for anything that is not a number (booleans included: a
    switch state is not a sensor reading).

    >>> coerce_value(3), coerce_value("2.5"), coerce_value(None)
    (3.0, 2.5, None)
    >>> coerce_value(True)
    Traceback (most recent call last):
    ...
    ingest.exceptions.PayloadError: wrong_type: value True is a bool, not a number
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise PayloadError("wrong_type", f"value {raw!r} is a bool, not a number")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        if raw == "":
            return None
        try:
            return float(raw)
        except ValueError:
            raise PayloadError("wrong_type", f"value {raw[:40]!r} is not a number") from None
    raise PayloadError("wrong_type", f"value of type {type(raw).__name__} is not a number")


def coerce_ts(raw: Any, fmt: str = "iso", naive_utc: bool = False) -> datetime:
    """An event time from JSON/CSV/Parquet as an aware UTC datetime; raises :class:`PayloadError` (``bad_timestamp``).

    ``fmt`` is ``iso``, ``epoch_s`` or ``epoch_ms`` for strings and numbers; datetimes are taken as they are.
    A timestamp without a zone is refused unless ``naive_utc`` (files exported from a historian in UTC).

    >>> coerce_ts("2026-01-01T00:00:00Z"), coerce_ts(1767225600000, "epoch_ms")
    (datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))
    >>> coerce_ts("2026-01-01T00:00:00")
    Traceback (most recent call last):
    ...
    ingest.exceptions.PayloadError: bad_timestamp: '2026-01-01T00:00:00' has no time zone
    """
    if isinstance(raw, datetime):
        ts = raw
    elif isinstance(raw, bool) or raw is None:
        raise PayloadError("bad_timestamp", f"{raw!r} is not a timestamp")
    elif fmt != "iso" or isinstance(raw, int | float):
        try:
            seconds = float(raw) / (1000.0 if fmt == "epoch_ms" else 1.0)
            ts = datetime.fromtimestamp(seconds, UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            raise PayloadError("bad_timestamp", f"{str(raw)[:40]!r} is not an epoch {fmt}") from None
    elif isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            raise PayloadError("bad_timestamp", f"{raw[:40]!r} is not ISO 8601") from None
    else:
        raise PayloadError("bad_timestamp", f"value of type {type(raw).__name__} is not a timestamp")
    if ts.tzinfo is None:
        if not naive_utc:
            raise PayloadError("bad_timestamp", f"{str(raw)[:40]!r} has no time zone")
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def coerce_quality(raw: Any) -> tuple[Quality, int]:
    """Quality and status code from ``good``/``uncertain``/``bad``, an OPC UA status code, or nothing (good).

    >>> coerce_quality("Bad"), coerce_quality(0x40000000), coerce_quality(None)
    ((<Quality.BAD: 'bad'>, 2147483648), (<Quality.UNCERTAIN: 'uncertain'>, 1073741824), (<Quality.GOOD: 'good'>, 0))
    """
    if raw is None or raw == "":
        return Quality.GOOD, 0
    if isinstance(raw, int) and not isinstance(raw, bool):
        return Quality.from_status_code(raw), raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text.isdigit():
            code = int(text)
            return Quality.from_status_code(code), code
        if text in _QUALITY_CODES:
            return Quality(text), _QUALITY_CODES[text]
    raise PayloadError("wrong_type", f"quality {str(raw)[:40]!r} is not good/uncertain/bad or a status code")


_QUALITY_CODES = {"good": 0, "uncertain": 0x40000000, "bad": 0x80000000}


class Validator:
    """Checks readings against the plant configuration; ``counters`` counts every reason seen."""

    def __init__(self, config: VigilConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        """The wall clock the ``clock_skew`` check compares event times with (epoch seconds)."""
        self.counters: Counter[str] = Counter()
        self._max_skew = config.publish.max_clock_skew_s
        self._horizon: datetime | None = None
        self._horizon_at = -math.inf
        self._warned: set[tuple[str, ...]] = set()
        # (machine, sensor) -> (min, max, unit), resolved once: check() runs for every reading.
        self._specs: dict[tuple[str, str], tuple[float, float, str]] = {}
        self._machines: set[str] = set()
        ranges = valid_ranges(config)
        for machine in config.machines_by_id.values():
            self._machines.add(machine.id)
            for name, spec in machine.sensors.items():
                self._specs[(machine.id, name)] = (*ranges[machine.id][name], spec.unit)

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
            flag = value_flag(value, spec[0], spec[1])
            if flag is not None:
                flags.append(flag)
                if flag == "not_finite":
                    value = None
        if reading.unit is not None and reading.unit != spec[2]:
            flags.append("unit_mismatch")
        # The cached horizon may be up to a second old; a reading beyond it is judged again on the clock now, so
        # a fresh reading is never flagged because the cache lagged (with a small or zero max_clock_skew_s).
        if self._max_skew != math.inf and reading.ts > self._future() and reading.ts > self._future(fresh=True):
            flags.append("clock_skew")
        if not flags:
            return reading
        self.counters.update(flags)
        merged = tuple(dict.fromkeys((*reading.flags, *flags)))
        return reading.model_copy(update={"flags": merged, "value": value})

    def _future(self, fresh: bool = False) -> datetime:
        """Event times after this are ``clock_skew`` (refreshed once a second: this runs for every reading)."""
        now = self.clock()
        if fresh or self._horizon is None or abs(now - self._horizon_at) >= 1.0:
            self._horizon_at = now
            # Beyond year 9999 nothing can be ahead of it (datetime stops there).
            self._horizon = datetime.fromtimestamp(min(now + self._max_skew, 253402300799.0), UTC)
        return self._horizon

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
