"""parse_time: formats, zones, the DST gap (refused) and overlap (first reading), and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ingest.exceptions import PayloadError
from ingest.timeparse import parse_time
from vigil.config.mapping import TimeSpec

BERLIN = TimeSpec(format="iso", zone="Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "spec", "expected"),
    [
        ("2026-01-01T08:00:00Z", TimeSpec(), utc(2026, 1, 1, 8)),
        ("2026-01-01T08:00:00+01:00", TimeSpec(), utc(2026, 1, 1, 7)),
        # an explicit offset wins over the zone
        ("2026-07-01T08:00:00-04:00", BERLIN, utc(2026, 7, 1, 12)),
        (" 2026-01-01 08:00:00 ", TimeSpec(), utc(2026, 1, 1, 8)),
        # naive: local time in the zone, winter (+01) and summer (+02)
        ("2026-01-15T08:00:00", BERLIN, utc(2026, 1, 15, 7)),
        ("2026-07-15T08:00:00", BERLIN, utc(2026, 7, 15, 6)),
        ("2026-07-15T08:00:00", TimeSpec(zone="America/New_York"), utc(2026, 7, 15, 12)),
        ("1767225600", TimeSpec(format="epoch_s"), utc(2026, 1, 1)),
        (1767225600.25, TimeSpec(format="epoch_s"), utc(2026, 1, 1) + timedelta(milliseconds=250)),
        ("1767225600123", TimeSpec(format="epoch_ms"), utc(2026, 1, 1) + timedelta(milliseconds=123)),
        (1767225600123, TimeSpec(format="epoch_ms"), utc(2026, 1, 1) + timedelta(milliseconds=123)),
        # an epoch is UTC whatever the zone says
        (1767225600, TimeSpec(format="epoch_s", zone="Asia/Tokyo"), utc(2026, 1, 1)),
        ("15.01.2026 08:00", TimeSpec(format="%d.%m.%Y %H:%M", zone="Europe/Berlin"), utc(2026, 1, 15, 7)),
        ("01/15/2026 08:00 PM", TimeSpec(format="%m/%d/%Y %I:%M %p", zone="UTC"), utc(2026, 1, 15, 20)),
        ("2026-01-15 08:00 +0530", TimeSpec(format="%Y-%m-%d %H:%M %z", zone="Europe/Berlin"), utc(2026, 1, 15, 2, 30)),
        # typed columns (Parquet): a naive datetime is local in the zone, an aware one is converted
        (datetime(2026, 1, 15, 8), BERLIN, utc(2026, 1, 15, 7)),
        (datetime(2026, 1, 15, 8, tzinfo=timezone(timedelta(hours=-5))), BERLIN, utc(2026, 1, 15, 13)),
    ],
)
def test_formats_and_zones(raw: object, spec: TimeSpec, expected: datetime) -> None:
    got = parse_time(raw, spec)
    assert got == expected
    assert got.tzinfo is UTC


def test_spring_forward_gap_is_refused_and_its_edges_are_not() -> None:
    spec = TimeSpec(format="%Y-%m-%d %H:%M", zone="Europe/Berlin")
    assert parse_time("2026-03-29 01:59", spec) == utc(2026, 3, 29, 0, 59)
    assert parse_time("2026-03-29 03:00", spec) == utc(2026, 3, 29, 1, 0)
    for wall in ("2026-03-29 02:00", "2026-03-29 02:30", "2026-03-29 02:59"):
        with pytest.raises(PayloadError) as exc:
            parse_time(wall, spec)
        assert exc.value.reason == "bad_timestamp"
        assert "does not exist in Europe/Berlin" in exc.value.detail


def test_spring_forward_gap_in_another_zone_and_as_a_typed_value() -> None:
    with pytest.raises(PayloadError, match="does not exist"):
        parse_time("2026-03-08T02:30:00", TimeSpec(zone="America/New_York"))
    with pytest.raises(PayloadError, match="does not exist"):
        parse_time(datetime(2026, 10, 4, 2, 30), TimeSpec(zone="Australia/Sydney"))


def test_fall_back_overlap_takes_the_first_reading() -> None:
    # 02:30 happens twice in Berlin on 2026-10-25: at 00:30Z (CEST) and 01:30Z (CET); fold=0 is the first
    assert parse_time("2026-10-25T02:30:00", BERLIN) == utc(2026, 10, 25, 0, 30)
    assert parse_time("2026-10-25T03:30:00", BERLIN) == utc(2026, 10, 25, 2, 30)
    assert parse_time("2026-11-01T01:30:00", TimeSpec(zone="America/New_York")) == utc(2026, 11, 1, 5, 30)


@pytest.mark.parametrize(
    ("raw", "spec", "detail"),
    [
        ("yesterday", TimeSpec(), "is not ISO 8601"),
        ("", TimeSpec(), "is not ISO 8601"),
        ("2026-13-01T00:00:00", TimeSpec(), "is not ISO 8601"),
        (None, TimeSpec(), "is not a timestamp"),
        (True, TimeSpec(format="epoch_s"), "is not a timestamp"),
        (1767225600, TimeSpec(), "(int) is not text in format 'iso'"),
        ("12:00 1.1.2026", TimeSpec(format="%d.%m.%Y %H:%M"), "does not match"),
        ("abc", TimeSpec(format="epoch_s"), "is not an epoch_s number"),
        (float("nan"), TimeSpec(format="epoch_ms"), "is not an epoch_ms number"),
        ("inf", TimeSpec(format="epoch_s"), "is not an epoch_s number"),
        (1e20, TimeSpec(format="epoch_s"), "is not an epoch_s number"),
        # valid wall times whose UTC instant falls outside datetime's years
        ("0001-01-01T00:00:00", TimeSpec(zone="Asia/Tokyo"), "outside years"),
        ("9999-12-31T23:00:00-05:00", TimeSpec(), "outside years"),
    ],
)
def test_refusals(raw: object, spec: TimeSpec, detail: str) -> None:
    with pytest.raises(PayloadError) as exc:
        parse_time(raw, spec)
    assert exc.value.reason == "bad_timestamp"
    assert detail in exc.value.detail


def test_epoch_before_1970_is_parsed_not_judged() -> None:
    # plausibility is the caller's decision (the maintenance reader refuses it as implausible_time)
    assert parse_time(-86400, TimeSpec(format="epoch_s")) == utc(1969, 12, 31)
