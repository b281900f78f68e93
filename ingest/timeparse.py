"""One way to read a foreign timestamp: :func:`parse_time` turns a cell of a file, or a JSON field, into aware UTC.

Every reader of someone else's data (CMMS exports, historian files, foreign topics) goes through it, so a plant's
time conventions are interpreted the same everywhere: the :class:`~vigil.config.mapping.TimeSpec` says the format
(``iso``, ``epoch_s``, ``epoch_ms`` or a ``strptime`` pattern) and the IANA zone of times written without an
offset. It runs once per row of files with millions of rows, so the zone is looked up once and the common paths
(ISO with an offset, naive UTC) do no more than parse.
"""

from __future__ import annotations

import functools
import math
import zoneinfo
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from ingest.exceptions import PayloadError
from vigil.config.mapping import TimeSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    return zoneinfo.ZoneInfo(name)


def parse_time(raw: Any, spec: TimeSpec) -> datetime:
    """``raw`` (text, a number, or a datetime from a typed column) read as ``spec`` says, as an aware UTC datetime.

    A time without an offset is local time in ``spec.zone``. A local time that does not exist (the hour skipped
    when clocks spring forward) is refused; an ambiguous one (the hour repeated when they fall back) is the
    first of the two (``fold=0``, still summer time). Raises :class:`~ingest.exceptions.PayloadError` with reason
    ``bad_timestamp``.

    >>> berlin = TimeSpec(format="%d.%m.%Y %H:%M", zone="Europe/Berlin")
    >>> parse_time("15.07.2026 14:30", berlin).isoformat()
    '2026-07-15T12:30:00+00:00'
    >>> parse_time("25.10.2026 02:30", berlin).isoformat()  # clocks went back at 03:00: the first 02:30
    '2026-10-25T00:30:00+00:00'
    >>> parse_time("29.03.2026 02:30", berlin)
    Traceback (most recent call last):
    ...
    ingest.exceptions.PayloadError: bad_timestamp: '29.03.2026 02:30' does not exist in Europe/Berlin (clocks sprang forward)
    >>> parse_time("2026-01-01T08:00:00+01:00", TimeSpec()).isoformat(), parse_time(1767225600500, TimeSpec(format="epoch_ms")).isoformat()
    ('2026-01-01T07:00:00+00:00', '2026-01-01T00:00:00.500000+00:00')
    """
    if isinstance(raw, datetime):
        ts = raw
    elif raw is None or isinstance(raw, bool):
        raise PayloadError("bad_timestamp", f"{raw!r} is not a timestamp")
    elif spec.format in ("epoch_s", "epoch_ms"):
        return _epoch(raw, spec.format)
    elif not isinstance(raw, str):
        raise PayloadError(
            "bad_timestamp", f"{str(raw)[:40]!r} ({type(raw).__name__}) is not text in format {spec.format!r}"
        )
    elif spec.format == "iso":
        try:
            ts = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise PayloadError("bad_timestamp", f"{raw[:40]!r} is not ISO 8601") from None
    else:
        try:
            ts = datetime.strptime(raw.strip(), spec.format)
        except ValueError:
            raise PayloadError("bad_timestamp", f"{raw[:40]!r} does not match {spec.format!r}") from None
    try:
        if ts.tzinfo is not None:
            return ts.astimezone(UTC)
        if spec.zone == "UTC":
            return ts.replace(tzinfo=UTC)
        zone = _zone(spec.zone)
        local = ts.replace(tzinfo=zone, fold=0)
        utc = local.astimezone(UTC)
    except OverflowError:
        raise PayloadError("bad_timestamp", f"{str(raw)[:40]!r} is outside years 1..9999 in UTC") from None
    # A wall time in the spring-forward gap does not survive the round trip (02:30 comes back as 03:30).
    if utc.astimezone(zone).replace(tzinfo=None) != ts:
        raise PayloadError("bad_timestamp", f"{str(raw)[:40]!r} does not exist in {spec.zone} (clocks sprang forward)")
    return utc


def _epoch(raw: Any, fmt: str) -> datetime:
    try:
        number = raw if isinstance(raw, int | float) else float(str(raw).strip())
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError
        if fmt == "epoch_ms":
            return _EPOCH + timedelta(milliseconds=number)
        return _EPOCH + timedelta(seconds=number)
    except (TypeError, ValueError, OverflowError):
        raise PayloadError("bad_timestamp", f"{str(raw)[:40]!r} is not an {fmt} number") from None
