"""Review of the fast decoder against the contract: whatever the fast path accepts the contract accepts with the
same samples, and whatever the contract refuses (or cannot even parse) is a ContractError, never a crash."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streaming.decoding import ReadingDecoder, strict_check
from vigil.contracts import decode
from vigil.exceptions import ContractError

T = "2026-01-01T00:00:00Z"


def _outcome(decoder: ReadingDecoder, payload: bytes) -> tuple[str, Any]:
    try:
        d = decoder.decode(payload)
    except ContractError as exc:
        return "refused", exc.reason
    if d.columns is not None:
        c = d.columns
        return "ok", (d.machine_id, c.sensors, c.lengths, c.ts.tolist(), [repr(v) for v in c.values.tolist()])
    return "ok", (d.machine_id, [(s, t, repr(v)) for s, t, v in d.samples])


def _agrees(payload: bytes, accept_uncertain: bool = False) -> None:
    decoder = ReadingDecoder(accept_uncertain=accept_uncertain)
    fast = _outcome(decoder, payload)
    try:
        decode(payload)
        strict_check(payload)  # the decoder's own refusals: duplicate keys, booleans, text as a value
        contract_ok = True
    except ContractError:
        contract_ok = False
    except (OverflowError, ValueError):
        contract_ok = False  # the contract itself overflowed: the decoder must still refuse cleanly
    assert (fast[0] == "ok") == contract_ok, (payload, fast)
    if contract_ok:
        assert fast == _outcome(decoder, payload) and fast[1] == _full(decoder, payload)


def _full(decoder: ReadingDecoder, payload: bytes) -> Any:
    d = decoder._full(payload)
    if d.columns is not None:
        c = d.columns
        return (d.machine_id, c.sensors, c.lengths, c.ts.tolist(), [repr(v) for v in c.values.tolist()])
    return (d.machine_id, [(s, t, repr(v)) for s, t, v in d.samples])


def _batch(ts: str = T, machine: str = "PMP-001", sensor: str = "flow", **extra: Any) -> bytes:
    sample = {"sensor": sensor, "ts": ts, "value": 1.5}
    return json.dumps({"v": 1, "kind": "reading_batch", "machine_id": machine, "samples": [sample], **extra}).encode()


def _publisher_batch(ts: str = T, server_ts: str | None = None) -> bytes:
    sample = {
        "sensor": "flow",
        "unit": "m3/h",
        "quality": "good",
        "status_code": 0,
        "flags": [],
        "ts": ts,
        "value": 2.0,
        "server_ts": server_ts,
    }
    return json.dumps({"v": 1, "kind": "reading_batch", "machine_id": "PMP-001", "samples": [sample]}).encode()


@pytest.mark.parametrize(
    "ts",
    [
        "2026-01-01T00:00:00+23:59:59",  # offset with seconds: fromisoformat reads it, the contract does not
        "2026-01-01T00:00:00+00:00:00.5",
        "2026-01-01T00:00:00 +00:00",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00.5+01",
        "2026-W01-1T00:00:00Z",  # an ISO week date: fromisoformat reads it, the contract does not
        "2026-W01-1T00:00:00+00:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: the contract's UTC conversion overflows
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    ],
)
def test_timestamps_the_contract_refuses_are_dead_letters_on_every_path(ts: str) -> None:
    decoder = ReadingDecoder()
    for payload in (_batch(ts), _publisher_batch(ts), _publisher_batch(T, ts), _batch(T, ingest_ts=ts)):
        with pytest.raises(ContractError) as info:
            decoder.decode(payload)
        assert info.value.reason == "schema"
    reading = {"v": 1, "kind": "reading", "machine_id": "PMP-001", "sensor": "flow", "ts": ts, "value": 1.0}
    with pytest.raises(ContractError):
        decoder.decode(json.dumps(reading).encode())


@pytest.mark.parametrize("machine,sensor", [("PMP-001\n", "flow"), ("PMP-001", "flow\n")])
def test_identifiers_with_a_trailing_newline_are_refused_like_the_contract(machine: str, sensor: str) -> None:
    decoder = ReadingDecoder()
    with pytest.raises(ContractError):
        decoder.decode(_batch(machine=machine, sensor=sensor))
    decoder.decode(_batch())  # the cache of known identifiers must not let them in later either
    with pytest.raises(ContractError):
        decoder.decode(_batch(machine=machine, sensor=sensor))


@pytest.mark.parametrize(
    "column",
    [
        {"sensor": "flow", "ts": [[1.0, 2.0], [3.0, 4.0]], "value": [1.0, 2.0]},
        {"sensor": "flow", "ts": [1.0, 2.0], "value": [[1.0], [2.0]]},
        {"sensor": "flow", "ts": [[1.0], [2.0]], "value": [[1.0], [2.0]]},
    ],
)
def test_nested_lists_in_a_column_are_refused_like_the_contract(column: dict[str, Any]) -> None:
    payload = json.dumps({"v": 1, "kind": "reading_columns", "machine_id": "PMP-001", "columns": [column]}).encode()
    with pytest.raises(ContractError):
        ReadingDecoder().decode(payload)


_digits = st.integers(0, 99).map(lambda i: f"{i:02d}")
_offset = st.one_of(
    st.just("Z"),
    st.just("z"),
    st.builds(lambda s, h, m: f"{s}{h}:{m}", st.sampled_from("+-"), _digits, _digits),
    st.builds(lambda s, h, m: f"{s}{h}{m}", st.sampled_from("+-"), _digits, _digits),
    st.builds(lambda s, h: f"{s}{h}", st.sampled_from("+-"), _digits),
    st.builds(lambda s, h, m, x: f"{s}{h}:{m}:{x}", st.sampled_from("+-"), _digits, _digits, _digits),
    st.just(""),
)
_timestamp = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off: f"{y:04d}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{off}",
    st.sampled_from([1, 1969, 1970, 2026, 9999]),
    st.one_of(_digits, _digits.map(lambda w: "W" + w)),
    st.one_of(_digits, st.integers(1, 7).map(str)),
    st.sampled_from(["T", " ", "t"]),
    _digits,
    _digits,
    _digits,
    st.one_of(st.just(""), st.just("."), st.text("0123456789", min_size=1, max_size=11).map(lambda x: "." + x)),
    _offset,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ts=_timestamp, where=st.sampled_from(["rows", "publisher", "server", "ingest"]))
def test_fast_decoder_agrees_with_the_contract_on_timestamps(ts: str, where: str) -> None:
    payload = {
        "rows": lambda: _batch(ts),
        "publisher": lambda: _publisher_batch(ts),
        "server": lambda: _publisher_batch(T, ts),
        "ingest": lambda: _batch(T, ingest_ts=ts),
    }[where]()
    _agrees(payload)


_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1.0", "good", "bad", "uncertain", T]),
)
_value_list = st.lists(st.one_of(_json_scalar, st.lists(_json_scalar, max_size=2)), min_size=0, max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ts=st.lists(st.one_of(st.floats(-1, 2e9), st.integers(0, 2**40), _json_scalar), min_size=0, max_size=4),
    values=_value_list,
    quality=st.one_of(st.none(), st.lists(st.sampled_from(["good", "bad", "uncertain", "meh", 1]), max_size=4)),
    flags=st.one_of(st.none(), st.lists(st.lists(st.sampled_from(["out_of_range", "x", 1]), max_size=2), max_size=4)),
    status=st.one_of(st.none(), st.lists(st.one_of(st.integers(0, 2**33), st.booleans(), st.floats(0, 9)), max_size=4)),
    server=st.one_of(st.none(), st.lists(st.one_of(st.none(), st.floats(-1, 3e11), st.booleans()), max_size=4)),
    unit=st.one_of(st.none(), st.just("m3/h"), st.integers(0, 3)),
    sensor=st.sampled_from(["flow", "flow\n", "", "a b", 3]),
    accept_uncertain=st.booleans(),
)
def test_fast_decoder_agrees_with_the_contract_on_columns(
    ts: list[Any],
    values: list[Any],
    quality: list[Any] | None,
    flags: list[Any] | None,
    status: list[Any] | None,
    server: list[Any] | None,
    unit: Any,
    sensor: Any,
    accept_uncertain: bool,
) -> None:
    column: dict[str, Any] = {"sensor": sensor, "ts": ts, "value": values}
    for name, extra in (("quality", quality), ("flags", flags), ("status_code", status), ("server_ts", server)):
        if extra is not None:
            column[name] = extra
    if unit is not None:
        column["unit"] = unit
    doc = {"v": 1, "kind": "reading_columns", "machine_id": "PMP-001", "columns": [column]}
    _agrees(json.dumps(doc).encode(), accept_uncertain)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(_json_scalar, st.lists(_json_scalar, max_size=2)),
    quality=st.one_of(st.sampled_from(["good", "bad", "uncertain", "meh"]), _json_scalar),
    flags=st.one_of(st.lists(st.sampled_from(["out_of_range", "deadband", "not_finite"]), max_size=2), _json_scalar),
    status=st.one_of(st.integers(-(2**40), 2**40), _json_scalar),
    unit=st.one_of(st.none(), st.just("bar"), st.integers(0, 2)),
    accept_uncertain=st.booleans(),
)
def test_fast_decoder_agrees_with_the_contract_on_publisher_samples(
    value: Any, quality: Any, flags: Any, status: Any, unit: Any, accept_uncertain: bool
) -> None:
    sample = {
        "sensor": "flow",
        "unit": unit,
        "quality": quality,
        "status_code": status,
        "flags": flags,
        "ts": T,
        "value": value,
        "server_ts": None,
    }
    batch = {"v": 1, "kind": "reading_batch", "machine_id": "PMP-001", "samples": [sample]}
    _agrees(json.dumps(batch).encode(), accept_uncertain)
    three = {"sensor": "flow", "ts": T, "value": value}
    _agrees(json.dumps({"v": 1, "kind": "reading_batch", "machine_id": "PMP-001", "samples": [three]}).encode())
    reading = {"v": 1, "kind": "reading", "machine_id": "PMP-001", **{k: v for k, v in sample.items() if k != "unit"}}
    _agrees(json.dumps(reading).encode(), accept_uncertain)


def test_nan_constants_are_left_to_the_contract() -> None:
    payload = b'{"v":1,"kind":"reading_batch","machine_id":"PMP-001","samples":[{"sensor":"a","ts":"' + T.encode()
    decoded = ReadingDecoder().decode(payload + b'","value":NaN}]}')
    assert math.isnan(decoded.samples[0][2]) and not decoded.fast


def test_deeply_nested_json_is_a_dead_letter_with_the_stdlib_parser_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import streaming.decoding as decoding

    payload = b'{"v":1,"kind":"reading_batch","machine_id":"M","samples":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for loads in (decoding._loads, decoding._json_loads):
        monkeypatch.setattr(decoding, "_loads", loads)
        with pytest.raises(ContractError) as info:
            ReadingDecoder().decode(payload)
        assert info.value.reason == "json"


@pytest.mark.parametrize("value", ['"good"', "true", "[1.0]", "{}"])
@pytest.mark.parametrize("extras", ['"flags": [["out_of_range"]]', '"quality": ["bad"]'])
def test_an_unusable_column_reading_with_a_value_that_is_not_a_number_is_refused(value: str, extras: str) -> None:
    # Found by hypothesis in CI: the fast path masked a flagged reading's value before checking its type, so it
    # took a string value the contract refuses.
    payload = (
        '{"v": 1, "kind": "reading_columns", "machine_id": "PMP-001", '
        f'"columns": [{{"sensor": "flow", "ts": [0.0], "value": [{value}], {extras}}}]}}'
    ).encode()
    _agrees(payload)
