"""What both generators share: time axes, local-time formatting across DST, random episodes, TOML and JSON output.

Times are integer epoch seconds (UTC) throughout; only the exporters turn them into the text a foreign system
would write. Local time is converted with the IANA database, so a span over a DST change gets the missing hour
in spring and the repeated hour in autumn, as a naive local-time export really has them.

>>> local_strings(np.array([1774742400, 1774746000]), "Europe/Berlin", "%d.%m.%Y %H:%M")  # 00:00 and 01:00 UTC
['29.03.2026 01:00', '29.03.2026 03:00']
>>> [t["kind"] for t in dst_transitions(1774746000 - 3600, 1774746000 + 7200, "Europe/Berlin")]
['spring_forward']
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BERLIN = "Europe/Berlin"


def parse_start(text: str, zone: str) -> int:
    """``2026-03-01`` or ``2026-03-01T06:00`` in local time of ``zone`` -> epoch seconds.

    >>> parse_start("2026-03-01", "Europe/Berlin")  # midnight CET is 23:00 UTC the day before
    1772319600
    """
    local = dt.datetime.fromisoformat(text)
    if local.tzinfo is None:
        local = local.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return int(local.timestamp())


def utc_iso(t: float) -> str:
    """Epoch seconds -> ``2026-03-01T00:00:00Z``.

    >>> utc_iso(1772323200)
    '2026-03-01T00:00:00Z'
    """
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_strings(t: np.ndarray, zone: str, fmt: str) -> list[str]:
    """Epoch seconds -> local wall-clock text in ``zone`` (DST-correct, no offset written)."""
    index = pd.to_datetime(np.asarray(t, dtype="int64"), unit="s", utc=True).tz_convert(zone)
    return [str(s) for s in index.strftime(fmt)]


def local_hours(t: np.ndarray, zone: str) -> np.ndarray:
    """Epoch seconds -> local hour of day as a float (for daily cycles)."""
    index = pd.to_datetime(np.asarray(t, dtype="int64"), unit="s", utc=True).tz_convert(zone)
    return np.asarray(index.hour + index.minute / 60.0, dtype=float)


def local_weekdays(t: np.ndarray, zone: str) -> np.ndarray:
    index = pd.to_datetime(np.asarray(t, dtype="int64"), unit="s", utc=True).tz_convert(zone)
    return np.asarray(index.day_of_week, dtype=int)


def ambient_temperature(time: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Machine-room air: 18 degC, a daily swing of +-5 K peaking mid-afternoon, and weather (an hourly AR(1))."""
    hours = local_hours(time, BERLIN)
    daily = 18.0 + 5.0 * np.sin(2 * np.pi * (hours - 9.0) / 24.0)
    n_hours = int((time[-1] - time[0]) // 3600) + 2
    weather = np.zeros(n_hours)
    for i in range(1, n_hours):
        weather[i] = 0.97 * weather[i - 1] + rng.normal(0.0, 0.5)
    hour_index = ((time - time[0]) // 3600).astype(int)
    frac = ((time - time[0]) % 3600) / 3600.0
    return np.asarray(daily + weather[hour_index] * (1 - frac) + weather[hour_index + 1] * frac)


def dst_transitions(start: int, end: int, zone: str) -> list[dict[str, Any]]:
    """The UTC-offset changes of ``zone`` in ``[start, end)``, found hour by hour."""
    hours = np.arange(start - start % 3600, end + 3600, 3600, dtype="int64")
    index = pd.to_datetime(hours, unit="s", utc=True).tz_convert(zone)
    offsets = [int(ts.utcoffset().total_seconds()) for ts in index]
    out: list[dict[str, Any]] = []
    for i in range(1, len(hours)):
        if offsets[i] != offsets[i - 1] and start <= hours[i] < end:
            kind = "spring_forward" if offsets[i] > offsets[i - 1] else "fall_back"
            out.append(
                {
                    "utc": utc_iso(hours[i]),
                    "kind": kind,
                    "offset_before_s": offsets[i - 1],
                    "offset_after_s": offsets[i],
                }
            )
    return out


def episodes(
    rng: np.random.Generator, n_steps: int, dt_s: float, per_week: float, duration_s: tuple[float, float]
) -> list[tuple[int, int]]:
    """Random non-overlapping ``[start, end)`` step ranges: a Poisson number per week, uniform durations."""
    weeks = n_steps * dt_s / (7 * 86400)
    count = int(rng.poisson(per_week * weeks))
    out: list[tuple[int, int]] = []
    for _ in range(count):
        length = max(1, round(rng.uniform(*duration_s) / dt_s))
        if length >= n_steps:
            continue
        start = int(rng.integers(0, n_steps - length))
        if all(start >= e or start + length <= s for s, e in out):
            out.append((start, start + length))
    return sorted(out)


def toml_value(value: Any) -> str:
    """A Python value as TOML: strings (JSON escapes are valid in TOML basic strings), numbers, bools, lists, tables.

    >>> toml_value({"machine": "PMP-P101", "scale": 0.5, "tags": ["a", 1]})
    '{ machine = "PMP-P101", scale = 0.5, tags = ["a", 1] }'
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Iterable):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted key.

    >>> toml_key("P101_TT_BRG"), toml_key("PUMP P101")
    ('P101_TT_BRG', '"PUMP P101"')
    """
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else json.dumps(key)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
