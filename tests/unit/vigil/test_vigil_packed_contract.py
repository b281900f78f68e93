"""The packed readings form's contract (:func:`vigil.contracts.pack_columns` / :func:`unpack_columns`): lossless
for every valid :class:`ReadingColumns`, and a hostile payload is a :class:`ContractError`, never a crash or a
memory blow-up."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.contracts import (
    PACKED_MAX_BYTES,
    Quality,
    Reading,
    ReadingColumns,
    SensorColumn,
    decode,
    pack_columns,
    unpack_columns,
)
from vigil.exceptions import ContractError

T0 = 1767225600.0
_EPOCH_MAX = 253402300799.0


def _valid(n: int) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": "reading_columns",
        "machine_id": "PMP-001",
        "sensors": ["flow"],
        "lengths": [n],
        "ts": b"\0" * (8 * n),
        "value": b"\0" * (8 * n),
    }


def _reason(payload: bytes) -> str:
    with pytest.raises(ContractError) as caught:
        unpack_columns(payload)
    return caught.value.reason


def test_a_packed_message_above_the_size_limit_is_refused_unread() -> None:
    n = PACKED_MAX_BYTES // 16 + 1  # valid in every other respect
    payload = msgpack.packb(_valid(n), use_bin_type=True)
    assert len(payload) > PACKED_MAX_BYTES
    assert _reason(payload) == "packed"
    ok = msgpack.packb(_valid(1000), use_bin_type=True)
    assert len(unpack_columns(ok).columns[0].ts) == 1000


@pytest.mark.parametrize(
    "payload",
    [
        b"\xdf\xff\xff\xff\xff",  # a map declaring 4 billion entries
        b"\x81\xa1v\xdd\xff\xff\xff\xff",  # an array declaring 4 billion entries
        b"\x81\xa2ts\xc6\xff\xff\xff\xff" + b"\0" * 10,  # a 4 GB bin
        b"\x81\xa1v" + b"\x91" * 100_000 + b"\xc0",  # arrays nested 100,000 deep
        b"\x81\xa1v" + b"\xdd\x00\x10\x00\x00" + b"\x90" * 0x100000,  # a million empty arrays (1 MB)
        msgpack.packb({**_valid(2), "v": msgpack.ExtType(1, b"x")}),
        msgpack.packb({**_valid(2), 1: 2}),
        msgpack.packb(_valid(2)) + b"\xc0",  # trailing bytes
    ],
)
def test_hostile_packed_payloads_are_contract_errors(payload: bytes) -> None:
    assert _reason(payload) in ("packed", "version", "schema")


def test_lists_and_maps_are_counted_as_they_are_built() -> None:
    """A 1-byte empty list or map is ~60 bytes as a Python object: a payload of them is refused once it holds more
    than a valid message of its size can (one map; six lists and one flags list per reading of 16 bytes), before
    the rest is built. The largest valid count still passes."""
    n = 4096
    flagged = {**_valid(n), "flags": [["spike"]] * n, "quality": ["good"] * n, "status_code": [0] * n}
    assert len(unpack_columns(msgpack.packb(flagged, use_bin_type=True)).columns[0].flags or ()) == n
    lists = 1 << 20
    payload = b"\x81\xa5flags\xdd" + lists.to_bytes(4, "big") + b"\x90" * lists
    with pytest.raises(ContractError, match="more lists than a packed message of this size can hold"):
        unpack_columns(payload)
    maps = b"\x81\xa5flags\x92\x80\x80"
    with pytest.raises(ContractError, match="a map inside the message"):
        unpack_columns(maps)


def test_a_huge_bin_of_the_wrong_length_is_refused_before_any_number_is_converted() -> None:
    # 'ts' is right and 200k readings long (3.2 MB), 'value' one number short: refused by its length.
    n = 200_000
    doc = {**_valid(n), "value": b"\0" * (8 * n - 8)}
    with pytest.raises(ContractError, match="'value' must be 200000"):
        unpack_columns(msgpack.packb(doc, use_bin_type=True))


_epoch = st.one_of(st.floats(0.0, _EPOCH_MAX), st.sampled_from([0.0, -0.0, 5e-324, T0, _EPOCH_MAX]))
_value = st.one_of(st.none(), st.floats(), st.sampled_from([math.inf, -math.inf, math.nan, -0.0]))


@st.composite
def _column(draw: st.DrawFn) -> SensorColumn:
    n = draw(st.integers(1, 4))

    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(st.none(), st.lists(strategy, min_size=n, max_size=n)))

    return SensorColumn(
        sensor=draw(st.sampled_from(["flow", "speed"])),
        unit=draw(st.sampled_from([None, "", "m3/h"])),
        ts=draw(st.lists(_epoch, min_size=n, max_size=n)),
        value=draw(st.lists(_value, min_size=n, max_size=n)),
        quality=maybe(st.sampled_from(list(Quality))),
        status_code=maybe(st.integers(-(2**63), 2**64 - 1)),
        server_ts=maybe(st.one_of(st.none(), _epoch)),
        flags=maybe(st.lists(st.sampled_from(["out_of_range", "x"]), max_size=2).map(tuple)),
    )


_aware = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC))


def _expected(message: ReadingColumns) -> list[Reading]:
    # A non-finite value travels as null, as in the JSON form (pydantic writes inf and NaN as null).
    return [
        r.model_copy(update={"value": None}) if r.value is not None and not math.isfinite(r.value) else r
        for r in message.readings()
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    columns=st.lists(_column(), min_size=1, max_size=3),
    ingest_ts=st.one_of(_aware, st.just(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))),
    source=st.sampled_from([None, "", "opcua:line-1"]),
)
def test_decode_of_pack_columns_gives_back_every_reading(
    columns: list[SensorColumn], ingest_ts: datetime, source: str | None
) -> None:
    message = ReadingColumns(machine_id="PMP-001", columns=columns, ingest_ts=ingest_ts, source=source)
    decoded = decode(pack_columns(message))
    assert isinstance(decoded, ReadingColumns) and decoded.ingest_ts == message.ingest_ts
    assert list(decoded.readings()) == _expected(message)


def test_status_codes_beyond_64_bits_cannot_be_packed_and_say_so() -> None:
    column = SensorColumn(sensor="flow", ts=[T0], value=[1.0], status_code=[2**64])
    with pytest.raises(ContractError, match="status code") as caught:
        pack_columns(ReadingColumns(machine_id="PMP-001", columns=[column]))
    assert caught.value.reason == "packed"
