"""Bad input is counted per reason and flagged, never a crash; unknown machines are rejected and logged once."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import pytest

from ingest.exceptions import PayloadError
from ingest.validation import Validator, coerce_quality, coerce_ts, coerce_value
from vigil.config import VigilConfig
from vigil.contracts import Quality, Reading

T = datetime(2026, 1, 1, tzinfo=UTC)


def _reading(**kw: object) -> Reading:
    fields: dict[str, object] = {"machine_id": "PMP-001", "sensor": "bearing_temp", "ts": T, "value": 50.0}
    fields.update(kw)
    return Reading.model_validate(fields)


def test_a_good_reading_passes_unchanged(example_config: VigilConfig) -> None:
    v = Validator(example_config)
    reading = _reading(unit="degC")
    assert v.check(reading) is reading
    assert not v.counters


@pytest.mark.parametrize(
    ("fields", "flags", "value"),
    [
        ({"quality": Quality.BAD, "status_code": 0x80000000}, ("bad_quality",), 50.0),
        ({"quality": Quality.UNCERTAIN}, ("uncertain_quality",), 50.0),
        ({"value": math.nan}, ("not_finite",), None),
        ({"value": math.inf}, ("not_finite",), None),
        ({"value": 150.5}, ("out_of_range",), 150.5),
        ({"value": -20.5}, ("out_of_range",), -20.5),
        ({"unit": "degF"}, ("unit_mismatch",), 50.0),
        ({"quality": Quality.BAD, "value": 999.0}, ("bad_quality", "out_of_range"), 999.0),
    ],
)
def test_suspect_readings_are_kept_flagged_and_counted(
    example_config: VigilConfig, fields: dict[str, object], flags: tuple[str, ...], value: float | None
) -> None:
    v = Validator(example_config)
    original = _reading(**fields)
    checked = v.check(original)
    assert checked is not None
    assert checked.flags == flags
    assert checked.value == value
    assert dict(v.counters) == dict.fromkeys(flags, 1)
    assert original.flags == ()  # the record we were given is never mutated


def test_existing_flags_are_kept(example_config: VigilConfig) -> None:
    checked = Validator(example_config).check(_reading(value=500.0, flags=("stuck",)))
    assert checked is not None
    assert checked.flags == ("stuck", "out_of_range")


def test_the_range_comes_from_the_resolved_machine(example_config: VigilConfig) -> None:
    machine = example_config.machines_by_id["PMP-001"]
    top = machine.sensors["flow"].range.max
    v = Validator(example_config)
    checked = v.check(_reading(sensor="flow", value=top + 1))
    assert checked is not None
    assert "out_of_range" in checked.flags


def test_unknown_machines_and_sensors_are_rejected_and_logged_once_per_key(
    example_config: VigilConfig, caplog: pytest.LogCaptureFixture
) -> None:
    v = Validator(example_config)
    with caplog.at_level(logging.WARNING, logger="ingest.validation"):
        for _ in range(100):
            assert v.check(_reading(machine_id="PMP-999")) is None
            assert v.check(_reading(machine_id="GHOST-1")) is None
            assert v.check(_reading(sensor="no_such_sensor")) is None
    assert dict(v.counters) == {"unknown_machine": 200, "unknown_sensor": 100}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert sum("PMP-999" in m for m in messages) == 1
    assert "PMP-999" not in example_config.machines_by_id  # no machine was created


def test_count_records_rejections_found_before_a_reading_exists(example_config: VigilConfig) -> None:
    v = Validator(example_config)
    v.count("wrong_type", ("PMP-001", "flow"))
    v.count("wrong_type", ("PMP-001", "flow"))
    assert v.counters["wrong_type"] == 2


@pytest.mark.parametrize("raw", ["abc", True, [1], {"v": 1}])
def test_values_that_are_not_numbers_are_wrong_type(raw: object) -> None:
    with pytest.raises(PayloadError) as info:
        coerce_value(raw)
    assert info.value.reason == "wrong_type"


def test_numbers_and_numeric_text_are_values() -> None:
    assert coerce_value(3) == 3.0
    assert coerce_value(" 2.5 ") == 2.5
    assert coerce_value("") is None
    assert math.isnan(coerce_value("nan") or 0.0)


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        ("2026-01-01T00:00:00Z", "iso"),
        ("2026-01-01T01:00:00+01:00", "iso"),
        (1767225600, "epoch_s"),
        ("1767225600", "epoch_s"),
        (1767225600000, "epoch_ms"),
        (datetime(2026, 1, 1, tzinfo=UTC), "iso"),
    ],
)
def test_timestamps_in_every_format_become_utc(raw: object, fmt: str) -> None:
    assert coerce_ts(raw, fmt) == T


@pytest.mark.parametrize(("raw", "fmt"), [("yesterday", "iso"), (None, "iso"), ("x", "epoch_s"), (True, "epoch_ms")])
def test_bad_timestamps_are_refused(raw: object, fmt: str) -> None:
    with pytest.raises(PayloadError) as info:
        coerce_ts(raw, fmt)
    assert info.value.reason == "bad_timestamp"


def test_naive_timestamps_are_refused_unless_declared_utc() -> None:
    with pytest.raises(PayloadError, match="no time zone"):
        coerce_ts("2026-01-01T00:00:00")
    assert coerce_ts("2026-01-01T00:00:00", naive_utc=True) == T


def test_quality_from_words_and_status_codes() -> None:
    assert coerce_quality("GOOD") == (Quality.GOOD, 0)
    assert coerce_quality("2147483648") == (Quality.BAD, 0x80000000)
    assert coerce_quality(0x408F0000)[0] is Quality.UNCERTAIN
    with pytest.raises(PayloadError):
        coerce_quality("excellent")
