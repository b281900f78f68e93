"""The bad-input corpus, through the feature worker's decoder (pure): every case is refused with a reason (a dead
letter in the worker) or flagged with a reason (counted, the value unusable), nothing raises anything else, and
the good readings decode exactly as before. The same corpus goes through the real worker and broker in
``tests/integration/streaming/test_bad_input_corpus_kafka.py``."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

import msgpack
import numpy as np
import pytest

from features.vector import FeatureBuilder, SensorWindow
from ingest.publisher import encode_columns, encode_packed
from ingest.validation import Validator
from streaming.decoding import Decoded, ReadingDecoder
from vigil.config import load_config
from vigil.contracts import FeatureVector, Reading, ReadingBatch, Sample, encode
from vigil.exceptions import ContractError

CONFIG = load_config(environ={})
T = "2026-01-01T00:00:00Z"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def reading(value: str, machine: str = "PMP-001", sensor: str = "bearing_temp", extra: str = "") -> bytes:
    return (
        f'{{"v":1,"kind":"reading","machine_id":"{machine}","sensor":"{sensor}","ts":"{T}","value":{value}{extra}}}'
    ).encode()


def batch(*samples: str, machine: str = "PMP-001", extra: str = "") -> bytes:
    return f'{{"v":1,"kind":"reading_batch","machine_id":"{machine}","samples":[{",".join(samples)}]{extra}}}'.encode()


def sample(value: str, sensor: str = "bearing_temp", ts: str = T, extra: str = "") -> str:
    return f'{{"sensor":"{sensor}","ts":"{ts}","value":{value}{extra}}}'


def packed(values: list[float], sensor: str = "bearing_temp", **changes: object) -> bytes:
    doc = {
        "v": 1,
        "kind": "reading_columns",
        "machine_id": "PMP-001",
        "sensors": [sensor],
        "lengths": [len(values)],
        "ts": struct.pack(f"<{len(values)}d", *[T0.timestamp() + i for i in range(len(values))]),
        "value": struct.pack(f"<{len(values)}d", *values),
        **changes,
    }
    return bytes(msgpack.packb(doc))


@dataclass(frozen=True)
class Case:
    name: str
    payload: bytes | None
    refused: str | None = None
    """The dead letter's reason when the record is refused."""
    flagged: str | None = None
    """The counter's reason when readings are flagged (made unusable) instead."""
    partial: str | None = None
    """The dead letter's reason when some readings of the record are refused and the others used."""


# The measured cases of issue 15 first, then the rest of the corpus.
CORPUS = [
    Case("boolean value (became 1.0)", reading("true"), refused="wrong_type"),
    Case("boolean value in a batch", batch(sample("10.0"), sample("false")), refused="wrong_type"),
    Case("boolean value in columns", b"", refused="wrong_type"),  # built below
    Case("duplicate key let 1e9 through", reading("20.0", extra=',"value":1e9'), refused="duplicate_key"),
    Case("duplicate key in a batch sample", batch(sample("20.0", extra=',"value":1e9')), refused="duplicate_key"),
    Case("duplicate machine key", reading("20.0", extra=',"machine_id":"PMP-002"'), refused="duplicate_key"),
    Case("duplicate key in a packed map", b"", refused="duplicate_key"),  # built below (msgpack dedups dicts)
    Case("1.7e308 (mean 2.8e306, moments None)", reading("1.7e308"), flagged="out_of_range"),
    Case("1e999 parses as infinity", batch(sample("1e999")), flagged="not_finite"),
    Case(
        "1e999 in columns",
        b'{"v":1,"kind":"reading_columns","machine_id":"PMP-001","columns":'
        b'[{"sensor":"bearing_temp","ts":[1767225600.0,1767225601.0],"value":[1e999,20.0]}]}',
        flagged="not_finite",
    ),
    Case("-5000 for a range of -20..150", reading("-5000"), flagged="out_of_range"),
    Case("-5000 in a batch", batch(sample("20.0"), sample("-5000", ts="2026-01-01T00:00:01Z")), flagged="out_of_range"),
    Case("1e16 beyond any range", reading("1e16", sensor="speed"), flagged="out_of_range"),
    Case("out of range in packed columns", packed([20.0, -5000.0, 1.7e308]), flagged="out_of_range"),
    Case("unknown machine", reading("20.0", machine="PMP-999"), refused="unknown_machine"),
    Case("unknown machine, batch", batch(sample("20.0"), machine="XYZ-1"), refused="unknown_machine"),
    Case("unknown sensor", reading("20.0", sensor="nonsense"), refused="unknown_sensor"),
    Case(
        "unknown sensor beside good readings",
        batch(sample("20.0"), sample("1.0", sensor="nonsense")),
        partial="unknown_sensor",
    ),
    Case("unknown sensor in packed columns", packed([1.0], sensor="nonsense"), refused="unknown_sensor"),
    Case("text as a value", reading('"12.5"'), refused="wrong_type"),
    Case("boolean schema version", reading("20.0").replace(b'"v":1', b'"v":true'), refused="wrong_type"),
    Case("a feature vector on the readings topic", b"", refused="kind"),  # built below
    Case("a tombstone", None, refused="json"),
    Case("not JSON", b"\xff\xfe garbage", refused="json"),
    Case("naive timestamp", reading("20.0").replace(b"Z", b""), refused="schema"),
    Case("inf in a packed binary", packed([math.inf]), refused="schema"),
]


def _built(case: Case) -> Case:
    if case.name == "boolean value in columns":
        payload = (
            b'{"v":1,"kind":"reading_columns","machine_id":"PMP-001","columns":'
            b'[{"sensor":"bearing_temp","ts":[1767225600.0,1767225601.0],"value":[true,20.0]}]}'
        )
        return Case(case.name, payload, refused="wrong_type")
    if case.name == "duplicate key in a packed map":
        body = packed([20.0])
        # A map header of one more pair, then "machine_id" again: msgpack keeps the last value.
        extra = msgpack.packb("machine_id") + msgpack.packb("PMP-002")
        return Case(case.name, bytes([body[0] + 1]) + body[1:] + extra, refused="duplicate_key")
    if case.name == "a feature vector on the readings topic":
        fv = FeatureVector(machine_id="PMP-001", machine_type="pump", window_start=T0, window_end=T0, features={})
        return Case(case.name, encode(fv), refused="kind")
    return case


CASES = [_built(c) for c in CORPUS]


def outcome(case: Case) -> tuple[str, str, Decoded | None]:
    """``("refused", reason)``, ``("flagged", reason)``, ``("partial", reason)`` or ``("clean", "")``."""
    decoder = ReadingDecoder.for_plant(CONFIG)
    try:
        decoded = decoder.decode(case.payload)
    except ContractError as exc:
        assert exc.detail, case.name
        return "refused", exc.reason, None
    if decoded.refused is not None:
        return "partial", decoded.refused[0], decoded
    flagged = [reason for reason, n in decoder.counters.items() if n]
    if flagged:
        return "flagged", flagged[0], decoded
    return "clean", "", decoded


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_bad_record_is_refused_or_flagged_with_its_reason(case: Case) -> None:
    kind, reason, decoded = outcome(case)
    if case.refused is not None:
        assert (kind, reason) == ("refused", case.refused)
    elif case.partial is not None:
        assert (kind, reason) == ("partial", case.partial)
        assert decoded is not None and [s[0] for s in decoded.samples] == ["bearing_temp"]
    else:
        assert (kind, reason) == ("flagged", case.flagged)
        assert decoded is not None
        values = decoded.columns.values.tolist() if decoded.columns is not None else [s[2] for s in decoded.samples]
        # A flagged value is unusable (NaN: it counts in the window's bad share), every other one kept as sent.
        assert any(v != v for v in values)
        assert all(v != v or -20.0 <= v <= 150.0 or v == 20.0 for v in values)


def test_the_whole_corpus_is_accounted_for() -> None:
    outcomes = [outcome(c)[0] for c in CASES]
    assert "clean" not in outcomes
    assert len(outcomes) == len(CASES) >= 26


def test_the_decoder_flags_what_the_collector_flags() -> None:
    """The same value judged by the collector's validator and the worker's decoder: the same reason."""
    validator = Validator(CONFIG)
    for sensor, value in [("bearing_temp", -5000.0), ("bearing_temp", 1.7e308), ("speed", 1e16), ("flow", 12.0)]:
        checked = validator.check(Reading(machine_id="PMP-001", sensor=sensor, ts=T0, value=value))
        assert checked is not None
        decoder = ReadingDecoder.for_plant(CONFIG)
        decoder.decode(reading(repr(value), sensor=sensor))
        assert sorted(decoder.counters) == sorted(checked.flags), (sensor, value)
    # A per-machine range (PMP-004's bearing runs to 160) is the one both apply.
    decoder = ReadingDecoder.for_plant(CONFIG)
    assert decoder.decode(reading("155", machine="PMP-004")).samples[0][2] == 155.0
    assert math.isnan(decoder.decode(reading("155", machine="PMP-001")).samples[0][2])


def good_messages() -> list[bytes]:
    readings = [
        Reading(machine_id="PMP-001", sensor=s, ts=datetime.fromtimestamp(T0.timestamp() + i, UTC), value=v + i / 7)
        for i in range(40)
        for s, v in [("bearing_temp", 61.5), ("flow", 120.0), ("pressure", 6.25), ("speed", 1480)]
    ]
    rows = ReadingBatch(
        machine_id="PMP-001", samples=[Sample(sensor=r.sensor, ts=r.ts, value=r.value) for r in readings]
    )
    singles = [encode(r) for r in readings[:8]]
    return [encode(rows), encode_columns("PMP-001", readings), encode_packed("PMP-001", readings), *singles]


@pytest.mark.parametrize("i", range(11))
def test_good_readings_decode_exactly_as_without_the_plant_rules(i: int) -> None:
    payload = good_messages()[i]
    strict, plain = ReadingDecoder.for_plant(CONFIG), ReadingDecoder()
    a, b = strict.decode(payload), plain.decode(payload)
    assert a.fast and b.fast and a.refused is None and not strict.counters
    if a.columns is not None:
        assert b.columns is not None
        assert a.columns.sensors == b.columns.sensors and a.columns.lengths == b.columns.lengths
        assert a.columns.values.tobytes() == b.columns.values.tobytes()
        assert a.columns.ts.tobytes() == b.columns.ts.tobytes()
    else:
        assert a.samples == b.samples
        assert json.loads(payload).get("kind") in ("reading", "reading_batch")


def test_a_statistic_that_cannot_be_computed_lists_the_sensor_as_missing() -> None:
    builder = FeatureBuilder(CONFIG)
    huge = SensorWindow(ts=np.array([0.0, 1.0, 2.0]), values=np.array([1.7e308, -1.7e308, 1.7e308]), total=3)
    v = builder.build("PMP-001", 0.0, 60.0, {"flow": huge})
    assert "flow" in v.missing and v.features["flow.mean"] is None and v.features["flow.count"] == 0.0
    # Accepted values (within +-1e15) keep every statistic finite, and the moments are not lost to overflow.
    big = SensorWindow(ts=np.array([0.0, 1.0, 2.0]), values=np.array([1e15, -1e15, 3e14]), total=3)
    v = builder.build("PMP-001", 0.0, 60.0, {"flow": big})
    assert "flow" not in v.missing
    assert all(v.features[f"flow.{name}"] is not None for name in ("rms", "std", "skew", "kurtosis", "slope", "p2p"))
    assert v.features["flow.mean"] == pytest.approx(1e14)
