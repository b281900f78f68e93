"""MQTT payload mapping: configured dotted fields and time formats to readings; every bad payload has a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.exceptions import PayloadError
from ingest.mqtt import PayloadMapper
from vigil.config import MqttMapping
from vigil.contracts import Quality

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_default_mapping_reads_flat_objects() -> None:
    mapper = PayloadMapper(MqttMapping(), source="mqtt:s")
    [r] = mapper.parse(
        json.dumps(
            {"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 12.5, "unit": "m3/h"}
        ).encode()
    )
    assert (r.machine_id, r.sensor, r.ts, r.value, r.unit, r.quality, r.source) == (
        "PMP-001",
        "flow",
        T,
        12.5,
        "m3/h",
        Quality.GOOD,
        "mqtt:s",
    )


def test_dotted_paths_epoch_and_quality_fields() -> None:
    mapping = MqttMapping(
        machine="device.asset",
        sensor="point.name",
        ts="point.t",
        value="point.v",
        unit=None,
        quality="point.q",
        ts_format="epoch_s",
    )
    payload = {"device": {"asset": "MTR-002"}, "point": {"name": "speed", "t": 1767225600, "v": "1480", "q": "bad"}}
    [r] = PayloadMapper(mapping).parse(json.dumps(payload).encode())
    assert (r.machine_id, r.sensor, r.ts, r.value, r.unit, r.quality) == (
        "MTR-002",
        "speed",
        T,
        1480.0,
        None,
        Quality.BAD,
    )


def test_an_array_payload_yields_every_good_item_and_an_error_per_bad_one() -> None:
    mapper = PayloadMapper(MqttMapping(ts_format="epoch_ms"))
    items = [
        {"machine": "PMP-001", "sensor": "flow", "ts": 1767225600000, "value": 1},
        {"machine": "PMP-001", "sensor": "flow", "ts": 1767225601000, "value": "broken"},
        {"machine": "PMP-001", "sensor": "flow", "ts": 1767225602000, "value": None},
        17,
    ]
    readings, errors = mapper.parse_all(json.dumps(items).encode())
    assert [r.value for r in readings] == [1.0, None]
    assert [e.reason for e in errors] == ["wrong_type", "not_object"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "json"),
        (b"\xff\xfe\x00", "json"),
        (b'"just a string"', "not_object"),
        (b'{"sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1}', "missing_field"),
        (b'{"machine": "PMP-001", "sensor": "flow", "value": 1}', "missing_field"),
        (b'{"machine": "PMP-001", "sensor": "flow", "ts": "tomorrow", "value": 1}', "bad_timestamp"),
        (b'{"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": true}', "wrong_type"),
        (b'{"machine": 7, "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1}', "wrong_type"),
        (b'{"machine": "bad id!", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1}', "invalid"),
        (b'{"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1, "q": 0}', None),
    ],
)
def test_malformed_payloads_have_a_reason(payload: bytes, reason: str | None) -> None:
    mapper = PayloadMapper(MqttMapping())
    if reason is None:
        assert len(mapper.parse(payload)) == 1
        return
    with pytest.raises(PayloadError) as info:
        mapper.parse(payload)
    assert info.value.reason == reason


def test_a_time_without_offset_is_read_in_the_mappings_zone() -> None:
    # Since MQTT uses the ReadingMapping (as files and Kafka do), time.zone says what a time without an offset
    # means (UTC unless configured); the MQTT-only mapping refused such times.
    payload = b'{"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T01:00:00", "value": 1}'
    [r] = PayloadMapper(MqttMapping()).parse(payload)
    assert r.ts == T.replace(hour=1)
    berlin = MqttMapping.model_validate({"time": {"zone": "Europe/Berlin"}})
    [r] = PayloadMapper(berlin).parse(payload)
    assert r.ts == T
