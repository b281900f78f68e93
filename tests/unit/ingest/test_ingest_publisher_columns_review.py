"""encode_columns never writes a message the contract refuses: readings before 1970 (which a Reading allows and
the columnar form's epoch seconds do not) go as a reading_batch; everything else round-trips as columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.publisher import encode_columns
from vigil.contracts import Quality, Reading, ReadingBatch, ReadingColumns, decode

T = datetime(2026, 11, 26, tzinfo=UTC)


def _reading(ts: datetime, **kw: object) -> Reading:
    return Reading(machine_id="PMP-001", sensor="flow", ts=ts, value=1.0, **kw)


@pytest.mark.parametrize(
    "odd",
    [
        _reading(datetime(1601, 1, 1, tzinfo=UTC)),
        _reading(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        _reading(T, server_ts=datetime(1601, 1, 1, tzinfo=UTC)),
    ],
)
def test_readings_before_1970_are_sent_as_rows_not_refused(odd: Reading) -> None:
    readings = [_reading(T), odd, _reading(T + timedelta(seconds=1), quality=Quality.BAD)]
    message = decode(encode_columns("PMP-001", readings, "test"))
    assert isinstance(message, ReadingBatch)
    assert [r.ts for r in message.readings()] == [r.ts for r in readings]


def test_ordinary_readings_still_go_as_columns() -> None:
    readings = [_reading(T + timedelta(microseconds=i * 1001), server_ts=T) for i in range(5)]
    message = decode(encode_columns("PMP-001", readings, "test"))
    assert isinstance(message, ReadingColumns)
    assert [r.ts for r in message.readings()] == [r.ts for r in readings]


def test_a_sensor_in_two_units_keeps_its_arrival_order() -> None:
    # Same sensor and timestamp in two units: the first to arrive must stay first (it wins de-duplication).
    readings = [
        _reading(T + timedelta(seconds=1), unit="bar"),
        _reading(T, unit="psi"),
        _reading(T, unit="bar"),
    ]
    message = decode(encode_columns("PMP-001", readings, "test"))
    assert [(r.ts, r.unit) for r in message.readings()] == [(r.ts, r.unit) for r in readings]
