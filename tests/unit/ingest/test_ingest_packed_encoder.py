"""The publisher's columnar encoders (``encode_packed``, ``encode_columns``) over arbitrary valid readings: never
raise, never write a message the contract refuses, give back every reading, and the feature worker reads the same
numbers from the packed form as from the JSON columns (duplicates and nulls included)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.publisher import encode_batch, encode_columns, encode_packed
from streaming.decoding import Decoded, ReadingDecoder
from vigil.contracts import Quality, Reading, ReadingBatch, ReadingColumns, decode

_T0 = datetime(2026, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_moment = st.one_of(
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 31, 23, 59, 59, 999999), timezones=st.just(UTC)),
    st.integers(0, 10_000_000).map(lambda us: _T0 + timedelta(microseconds=us)),  # many in one window
    st.integers(0, 2_000_000).map(lambda us: _LAST - timedelta(microseconds=us)),  # the last seconds of 9999
    st.sampled_from([datetime(1970, 1, 1, tzinfo=UTC), datetime(1601, 1, 1, tzinfo=UTC), _T0]),
)
_value = st.one_of(st.none(), st.floats(), st.sampled_from([-0.0, math.nan, math.inf, 5e-324]))


@st.composite
def _readings(draw: st.DrawFn) -> list[Reading]:
    n = draw(st.integers(1, 12))
    sensors = draw(st.lists(st.sampled_from(["flow", "speed"]), min_size=n, max_size=n))
    # Mostly one unit per sensor (the columnar forms); sometimes a unit change (rows).
    two_units = draw(st.integers(0, 4)) == 0
    out = []
    for sensor in sensors:
        ts = draw(_moment)
        out.append(
            Reading(
                machine_id="PMP-001",
                sensor=sensor,
                ts=ts,
                value=draw(_value),
                unit=draw(st.sampled_from([None, "m3/h"])) if two_units else {"flow": "m3/h", "speed": None}[sensor],
                quality=draw(st.sampled_from(list(Quality))),
                status_code=draw(st.one_of(st.just(0), st.integers(0, 2**32 - 1), st.integers(-(2**70), 2**70))),
                server_ts=draw(st.one_of(st.none(), st.just(ts), _moment)),
                flags=tuple(draw(st.lists(st.sampled_from(["out_of_range", "x"]), max_size=2))),
            )
        )
    if draw(st.booleans()):  # a duplicate (same sensor and event time), maybe with another value
        out.append(out[0].model_copy(update={"value": draw(_value)}))
    return out


def _by_sensor(readings: list[Reading]) -> dict[str, list[Reading]]:
    out: dict[str, list[Reading]] = {}
    for r in readings:
        out.setdefault(r.sensor, []).append(r)
    return out


Encoder = Callable[[str, list[Reading], str | None], bytes]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings=_readings(), encoder=st.sampled_from([encode_packed, encode_columns]))
def test_columnar_encoders_give_back_every_valid_reading(readings: list[Reading], encoder: Encoder) -> None:
    message = decode(encoder("PMP-001", readings, "opcua:x"))
    assert isinstance(message, ReadingColumns | ReadingBatch)
    got = list(message.readings())
    # A non-finite value travels as null on every wire form.
    expected = [
        r.model_copy(
            update={
                "value": r.value if r.value is not None and math.isfinite(r.value) else None,
                "ingest_ts": message.ingest_ts,
                "source": "opcua:x",
            }
        )
        for r in readings
    ]
    # Columns group the readings by sensor; each sensor's readings keep their order.
    assert _by_sensor(got) == _by_sensor(expected)


def _numbers(d: Decoded) -> list[tuple[str, float, str]]:
    """``(sensor, event time, repr(value))`` per reading, in order, whichever form the decoder returned (a message
    the packed form cannot carry, e.g. a status code beyond int64, is published as rows)."""
    if d.columns is not None:
        c = d.columns
        sensors = [s for s, n in zip(c.sensors, c.lengths, strict=True) for _ in range(n)]
        return list(zip(sensors, c.ts.tolist(), [repr(v) for v in c.values.tolist()], strict=True))
    return [(s, t, repr(v)) for s, t, v in d.samples]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(readings=_readings(), accept_uncertain=st.booleans())
def test_the_worker_reads_the_same_numbers_from_packed_as_from_json_columns(
    readings: list[Reading], accept_uncertain: bool
) -> None:
    decoder = ReadingDecoder(accept_uncertain=accept_uncertain)
    packed = decoder.decode(encode_packed("PMP-001", readings))
    columns = decoder.decode(encode_columns("PMP-001", readings))
    assert _numbers(packed) == _numbers(columns)
    # ... and the same readings, in the same order per sensor, as the rows (what the window engine keeps).
    per_sensor_rows: dict[str, list[tuple[float, str]]] = {}
    for sensor, t, v in _numbers(decoder.decode(encode_batch("PMP-001", readings))):
        per_sensor_rows.setdefault(sensor, []).append((t, v))
    per_sensor_packed: dict[str, list[tuple[float, str]]] = {}
    for sensor, t, v in _numbers(packed):
        per_sensor_packed.setdefault(sensor, []).append((t, v))
    assert per_sensor_packed == per_sensor_rows
