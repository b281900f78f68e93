"""[[sources.mqtt]] on the one mapping model: the older keys still load, the new ones (tags, wide layout, zones,
machine from the topic) work on MQTT payloads, and the mapping's machines are checked at start-up."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.mqtt import PayloadMapper
from vigil.config import EXAMPLE_CONFIG, MqttMapping, load_config
from vigil.config.mapping import ReadingMapping, TimeSpec
from vigil.config.sources import MqttSource
from vigil.exceptions import VigilError

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_older_keys_become_the_time_spec_and_the_mapping_is_a_reading_mapping() -> None:
    old = tomllib.loads('machine = "asset"\nts = "t"\nts_format = "epoch_ms"\nvalue = "v"\n')
    mapping = MqttSource(name="s", topics=["x/#"], mapping=old).mapping  # type: ignore[arg-type]
    assert isinstance(mapping, ReadingMapping)
    assert mapping.time == TimeSpec(column="t", format="epoch_ms")
    assert (mapping.machine, mapping.value, mapping.unit) == ("asset", "v", "unit")  # MQTT's unit default kept
    assert MqttMapping.model_validate({"ts_format": "epoch_s"}).time == TimeSpec(column="ts", format="epoch_s")
    merged = MqttMapping.model_validate({"ts": "t", "time": {"zone": "Europe/Berlin"}}).time
    assert merged == TimeSpec(column="t", zone="Europe/Berlin")


@pytest.mark.parametrize(
    "data",
    [
        {"ts": "t", "time": {"column": "u"}},
        {"ts_format": "epoch_s", "time": {"format": "iso"}},
        {"ts_format": "fortnights"},
        {"ts": "t", "tss": "x"},
    ],
)
def test_contradictory_or_unknown_keys_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        MqttMapping.model_validate(data)


def test_a_wide_mqtt_payload_with_tags_and_the_machine_from_the_topic() -> None:
    wide = MqttMapping.model_validate(
        {
            "layout": "wide",
            "machine": None,
            "sensor": None,
            "machine_from_name": r"^plant/(?P<machine>[^/]+)/state$",
            "time": {"column": "time", "format": "%d.%m.%Y %H:%M:%S", "zone": "Europe/Berlin"},
            "tags": {"TT": {"machine": "CMP-001", "sensor": "oil_temp"}},
        }
    )
    mapper = PayloadMapper(wide, source="mqtt:s")
    payload = json.dumps({"time": "01.01.2026 01:00:00", "TT": 55.5, "speed": 1480}).encode()
    readings = mapper.parse(payload, "plant/MTR-001/state")
    assert [(r.machine_id, r.sensor, r.ts, r.value) for r in readings] == [
        ("CMP-001", "oil_temp", T, 55.5),
        ("MTR-001", "speed", T, 1480.0),
    ]
    bad = json.dumps({"time": "01.01.2026 01:00:00", "TT": 55.5, "speed": "1480,0"}).encode()  # decimal point
    readings, errors = mapper.parse_all(bad, "plant/MTR-001/state")
    assert [r.sensor for r in readings] == ["oil_temp"]
    assert [(e.reason, e.detail.split("'")[1]) for e in errors] == [("wrong_type", "speed")]
    _, errors = mapper.parse_all(payload, "elsewhere/MTR-001")
    assert [(e.reason, e.detail.split("'")[1]) for e in errors] == [("missing_field", "machine_from_name")]


def test_mqtt_mapping_tags_are_checked_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "plant.toml"
    path.write_text(
        EXAMPLE_CONFIG.read_text()
        + '\n[[sources.mqtt]]\nname = "s"\ntopics = ["x/#"]\n[sources.mqtt.mapping]\nlayout = "wide"\n'
        + 'machine = "m"\n[sources.mqtt.mapping.tags]\nTT = { machine = "PMP-999", sensor = "flow" }\n'
    )
    with pytest.raises(VigilError, match=r"sources\.mqtt\[0\]\.mapping\.tags\.TT\.machine"):
        load_config(path, environ={})
