"""The fast decoding path agrees with the contracts: same samples for valid input, same refusals for invalid."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ingest.publisher import encode_batch, encode_columns
from streaming.decoding import ReadingDecoder
from vigil.contracts import (
    FeatureVector,
    Gap,
    Quality,
    Reading,
    ReadingBatch,
    ReadingColumns,
    Sample,
    decode,
    encode,
)
from vigil.exceptions import ContractError

T = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _same(a: list[tuple[str, float, float]], b: list[tuple[str, float, float]]) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and x[1] == y[1] and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
        for x, y in zip(a, b, strict=True)
    )


BATCHES = [
    ReadingBatch(machine_id="PMP-001", samples=[Sample(sensor="flow", ts=T, value=1.5)]),
    ReadingBatch(
        machine_id="PMP-001",
        source="opcua:sim",
        samples=[
            Sample(sensor="flow", ts=T, value=3, unit="m3/h", status_code=0, server_ts=T, flags=()),
            Sample(sensor="speed", ts=T + timedelta(microseconds=1), value=None, quality=Quality.BAD),
            Sample(sensor="speed", ts=T + timedelta(seconds=1), value=7.0, quality=Quality.UNCERTAIN),
            Sample(sensor="pressure", ts=T + timedelta(seconds=2), value=99.0, flags=("out_of_range",)),
            Sample(sensor="pressure", ts=T + timedelta(seconds=3), value=2.0, flags=("deadband",)),
        ],
    ),
]


@pytest.mark.parametrize("accept_uncertain", [False, True])
@pytest.mark.parametrize("batch", BATCHES)
def test_fast_path_equals_the_contract_path(batch: ReadingBatch, accept_uncertain: bool) -> None:
    decoder = ReadingDecoder(accept_uncertain=accept_uncertain)
    fast = decoder.decode(encode(batch))
    slow = decoder._full(encode(batch))
    assert fast.fast and not slow.fast
    assert fast.machine_id == slow.machine_id == batch.machine_id
    assert _same(fast.samples, slow.samples)


def test_other_timezones_and_single_readings_and_gaps() -> None:
    decoder = ReadingDecoder()
    plus2 = T.astimezone(timezone(timedelta(hours=2))).isoformat()
    payload = (
        b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"'
        + plus2.encode()
        + b'","value":1}]}'
    )
    assert decoder.decode(payload).samples == [("a", T.timestamp(), 1.0)]
    reading = Reading(machine_id="M-1", sensor="a", ts=T, value=2.0, source="x", flags=("deadband",))
    single = decoder.decode(encode(reading))
    assert single.samples == [("a", T.timestamp(), 2.0)] and single.fast
    assert decoder._full(encode(reading)).samples == single.samples
    bad = decoder.decode(encode(reading.model_copy(update={"quality": Quality.BAD})))
    assert math.isnan(bad.samples[0][2])
    gap = Gap(machine_id="M-1", start=T, end=T + timedelta(seconds=5), reason="lost")
    decoded = decoder.decode(encode(gap))
    assert decoded.gap == gap and decoded.samples == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00","value":1}]}',
            "schema",
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M 1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z","value":1}]}',
            "schema",
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z","value":true}]}',
            "wrong_type",  # the contract reads true as 1.0; a switch state is not a reading
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z","value":1,"quality":"meh"}]}',
            "schema",
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z","value":1,"flags":"x"}]}',
            "schema",
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z","value":1,"more":1}]}',
            "schema",
        ),
        (b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[]}', "schema"),
        (
            b'{"v":2,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z","value":1}]}',
            "version",
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z","value":1e999999}]}',
            None,
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z",'
            b'"value":1,"unit":null,"quality":"good","status_code":0,"flags":[],"server_ts":"yesterday"}]}',
            "schema",
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z",'
            b'"value":1,"unit":null,"quality":"good","status_code":0,"flags":[],"extra":null}]}',
            "schema",
        ),
        (
            b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z",'
            b'"value":1,"unit":null,"quality":"good","status_code":0,"flags":[3],"server_ts":null}]}',
            "schema",
        ),
        (b"{", "json"),
        (
            b'{"v":1,"kind":"reading","machine_id":"M-1","sensor":"a","ts":"2026-11-26T12:00:00+01:00","value":"x"}',
            "wrong_type",
        ),
        (b'{"v":1,"kind":"reading","machine_id":"M-1","sensor":"a","ts":"2026-11-26T12:00:00Z"}', "schema"),
        (
            b'{"v":1,"kind":"reading","machine_id":"M-1","sensor":"a","ts":"2026-11-26T12:00:00Z","value":1,"x":1}',
            "schema",
        ),
        (None, "json"),
    ],
)
def test_fast_path_never_accepts_what_the_contract_refuses(payload: bytes | None, reason: str | None) -> None:
    decoder = ReadingDecoder()
    if reason is None:
        # The contract accepts these (an overflow as inf); the fast path defers or agrees.
        assert payload is not None and decode(payload)
        assert _same(decoder.decode(payload).samples, decoder._full(payload).samples)
        return
    with pytest.raises(ContractError) as info:
        decoder.decode(payload)
    assert info.value.reason == reason


def test_other_kinds_do_not_belong_on_a_readings_topic() -> None:
    fv = FeatureVector(machine_id="M-1", machine_type="pump", window_start=T, window_end=T, features={})
    with pytest.raises(ContractError, match="does not belong"):
        ReadingDecoder().decode(encode(fv))


def test_stdlib_json_fallback_gives_the_same_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    import streaming.decoding as decoding

    payload = encode(BATCHES[1])
    expected = ReadingDecoder().decode(payload)
    monkeypatch.setattr(decoding, "_loads", decoding._json_loads)
    again = ReadingDecoder().decode(payload)
    assert again.fast and _same(again.samples, expected.samples)
    nan = b'{"v":1,"kind":"reading_batch","machine_id":"M-1","samples":[{"sensor":"a","ts":"2026-11-26T12:00:00Z","value":NaN}]}'
    assert math.isnan(ReadingDecoder().decode(nan).samples[0][2])


def _as_samples(decoded: Any) -> list[tuple[str, float, float]]:
    c = decoded.columns
    names = [s for s, n in zip(c.sensors, c.lengths, strict=True) for _ in range(n)]
    return list(zip(names, c.ts.tolist(), c.values.tolist(), strict=True))


@pytest.mark.parametrize("accept_uncertain", [False, True])
@pytest.mark.parametrize("batch", BATCHES)
def test_columns_from_the_publisher_decode_like_the_rows(batch: ReadingBatch, accept_uncertain: bool) -> None:
    decoder = ReadingDecoder(accept_uncertain=accept_uncertain)
    payload = encode_columns(batch.machine_id, list(batch.readings()), batch.source)
    fast = decoder.decode(payload)
    slow = decoder._full(payload)
    assert fast.fast and not slow.fast and fast.samples == []
    assert fast.machine_id == slow.machine_id == batch.machine_id
    assert _same(_as_samples(fast), _as_samples(slow))
    assert fast.readings == len(batch.samples)
    # The same readings as the row form (grouped by sensor; the order within a sensor is kept).
    rows = decoder.decode(encode(batch)).samples
    published_rows = decoder.decode(encode_batch(batch.machine_id, list(batch.readings()), batch.source))
    assert published_rows.fast and _same(published_rows.samples, rows)
    assert _same(sorted(_as_samples(fast), key=lambda s: s[0]), sorted(rows, key=lambda s: s[0]))
    message = decode(payload)
    assert isinstance(message, ReadingColumns)
    assert [r.model_copy(update={"ingest_ts": T}) for r in message.readings()] == sorted(
        (r.model_copy(update={"ingest_ts": T, "source": batch.source}) for r in batch.readings()),
        key=lambda r: list(dict.fromkeys(s.sensor for s in batch.samples)).index(r.sensor),
    )


COLUMNS = b'{"v":1,"kind":"reading_columns","machine_id":"M-1","columns":[%s]}'


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        (b'{"sensor":"a","ts":[1.8e9,1800000001],"value":[1,null]}', None),
        (b'{"sensor":"a","ts":[1.8e9],"value":[1.5],"quality":["uncertain"],"flags":[["deadband"]]}', None),
        (b'{"sensor":"a","ts":[1.8e9],"value":[1.5],"server_ts":[null],"status_code":[0],"unit":"C"}', None),
        (b'{"sensor":"a","ts":[1.8e9],"value":[1.5,2.5]}', "schema"),
        (b'{"sensor":"a","ts":[],"value":[]}', "schema"),
        (b'{"sensor":"a","ts":["2026-01-01T00:00:00Z"],"value":[1]}', "schema"),
        (b'{"sensor":"a","ts":[-1],"value":[1]}', "schema"),
        (b'{"sensor":"a","ts":[1e300],"value":[1]}', "schema"),
        (b'{"sensor":"a b","ts":[1.8e9],"value":[1]}', "schema"),
        (b'{"sensor":"a","ts":[1.8e9],"value":["x"]}', "wrong_type"),
        (b'{"sensor":"a","ts":[1.8e9],"value":[1],"quality":["meh"]}', "schema"),
        (b'{"sensor":"a","ts":[1.8e9],"value":[1],"quality":["good","good"]}', "schema"),
        (b'{"sensor":"a","ts":[1.8e9],"value":[1],"flags":"x"}', "schema"),
        (b'{"sensor":"a","ts":[1.8e9],"value":[1],"more":1}', "schema"),
        (b'{"sensor":"a","ts":[1.8e9],"value":[1],"status_code":[1.5]}', "schema"),
    ],
)
def test_columns_fast_path_never_accepts_what_the_contract_refuses(column: bytes, reason: str | None) -> None:
    decoder = ReadingDecoder()
    payload = COLUMNS % column
    if reason is None:
        fast = decoder.decode(payload)
        assert fast.fast and _same(_as_samples(fast), _as_samples(decoder._full(payload)))
        return
    with pytest.raises(ContractError) as info:
        decoder.decode(payload)
    assert info.value.reason == reason
