"""The hand-written ReadingBatch encoder must produce exactly what the pydantic contract reads."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.publisher import encode_batch
from vigil.contracts import Quality, Reading, ReadingBatch, decode

T = datetime(2026, 1, 1, tzinfo=UTC)

readings = st.builds(
    Reading,
    machine_id=st.just("PMP-001"),
    sensor=st.sampled_from(["flow", "bearing_temp", "a.b:c/d-e_f"]),
    ts=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    value=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    unit=st.none() | st.text(max_size=8),
    quality=st.sampled_from(list(Quality)),
    status_code=st.integers(min_value=0, max_value=2**32 - 1),
    server_ts=st.none() | st.just(T),
    flags=st.lists(st.sampled_from(["out_of_range", "stuck", 'we"ird\\flag', "ü"]), max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(readings, min_size=1, max_size=20), source=st.none() | st.text(max_size=10))
def test_encoded_batches_decode_to_the_same_readings(batch: list[Reading], source: str | None) -> None:
    decoded = decode(encode_batch("PMP-001", batch, source))
    assert isinstance(decoded, ReadingBatch)
    assert decoded.source == source
    for original, got in zip(batch, decoded.readings(), strict=True):
        assert (
            got.machine_id,
            got.sensor,
            got.ts,
            got.unit,
            got.quality,
            got.status_code,
            got.server_ts,
            got.flags,
        ) == (
            original.machine_id,
            original.sensor,
            original.ts,
            original.unit,
            original.quality,
            original.status_code,
            original.server_ts,
            original.flags,
        )
        if original.value is None or not math.isfinite(original.value):
            assert got.value is None
        else:
            assert got.value == original.value


def test_non_utc_offsets_and_microseconds_survive() -> None:
    ts = datetime(2026, 1, 1, 3, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3)))
    r = Reading(machine_id="PMP-001", sensor="flow", ts=ts, value=1.0)
    [got] = decode(encode_batch("PMP-001", [r])).readings()
    assert got.ts == ts
    assert got.key == r.key
