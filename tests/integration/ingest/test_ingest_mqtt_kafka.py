"""MQTT end to end: JSON pushed to the real Mosquitto, mapped, validated, published to the real Kafka."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.mqtt import MqttCollector
from ingest.publisher import KafkaPublisher
from ingest.validation import Validator
from vigil.bus import ensure_topics, pipeline_topics
from vigil.config import (
    KafkaSettings,
    MqttMapping,
    MqttSettings,
    MqttSource,
    PublishSettings,
    SpoolSettings,
    Topics,
    VigilConfig,
)
from vigil.contracts import DeadLetter, ReadingBatch
from vigil.testing import consume

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def _mqtt_publish(address: tuple[str, int], messages: list[tuple[str, bytes]]) -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2)
    client.connect(*address)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_pushed_json_reaches_kafka_and_bad_payloads_are_dead_lettered(
    mqtt_address: tuple[str, int],
    kafka_settings: KafkaSettings,
    topics: Topics,
    example_config: VigilConfig,
    unique: str,
    tmp_path: Path,
) -> None:
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    source = MqttSource(
        name="plant-sensors",
        topics=[f"vigil-test/{unique}/+/telemetry"],
        qos=1,
        mapping=MqttMapping(machine="meta.asset", sensor="point", ts="t", value="v", unit="u", ts_format="epoch_ms"),
    )
    validator = Validator(example_config)
    publisher = KafkaPublisher(
        kafka_settings, topics, SpoolSettings(path=tmp_path / "spool.sqlite"), PublishSettings(batch_max_ms=50)
    )
    publisher.start()
    collector = MqttCollector(MqttSettings(host=mqtt_address[0], port=mqtt_address[1]), source, publisher, validator)

    def payload(machine: str, i: int, value: Any = None, sensor: str = "bearing_temp") -> bytes:
        t = int((T0 + timedelta(seconds=i)).timestamp() * 1000)
        return json.dumps(
            {
                "meta": {"asset": machine},
                "point": sensor,
                "t": t,
                "v": float(i % 90) if value is None else value,
                "u": "degC",
            }
        ).encode()

    good = [(f"vigil-test/{unique}/{m}/telemetry", payload(m, i)) for i in range(300) for m in ("PMP-001", "MTR-002")]
    array = [
        (
            f"vigil-test/{unique}/batch/telemetry",
            json.dumps([json.loads(payload("CMP-001", i, sensor="oil_temp")) for i in range(50)]).encode(),
        )
    ]
    bad = [
        (f"vigil-test/{unique}/x/telemetry", b"{not json"),
        (f"vigil-test/{unique}/x/telemetry", b'{"meta": {"asset": "PMP-001"}}'),
        (f"vigil-test/{unique}/x/telemetry", payload("PMP-001", 9999, value="hot")),
    ]
    unknown = [(f"vigil-test/{unique}/x/telemetry", payload("PMP-999", i)) for i in range(5)]
    flagged = [(f"vigil-test/{unique}/x/telemetry", payload("PMP-003", 1, value=900.0))]
    with collector:
        assert collector.wait_subscribed(30)
        _mqtt_publish(mqtt_address, good + array + bad + unknown + flagged)
        total = len(good) + len(array) + len(bad) + len(unknown) + len(flagged)
        deadline = time.monotonic() + 60
        while collector.counters["received"] < total and time.monotonic() < deadline:
            time.sleep(0.1)
    publisher.close()

    assert collector.counters["received"] == total, dict(collector.counters)
    assert collector.counters["accepted"] == 600 + 50 + 1
    assert (collector.counters["json"], collector.counters["missing_field"], collector.counters["wrong_type"]) == (
        1,
        1,
        1,
    )
    assert validator.counters["unknown_machine"] == 5
    assert validator.counters["out_of_range"] == 1
    assert publisher.counters.sent == 651

    messages = consume(
        kafka_settings,
        [topics.readings, topics.dead_letter],
        lambda out: (
            sum(len(m.samples) for m in out if isinstance(m, ReadingBatch)) >= 651
            and sum(isinstance(m, DeadLetter) for m in out) >= 3
        ),
    )
    readings = [r for m in messages if isinstance(m, ReadingBatch) for r in m.readings()]
    keys = Counter((r.machine_id, r.sensor, r.ts) for r in readings)
    assert len(readings) == 651
    assert max(keys.values()) == 1
    assert {r.machine_id for r in readings} == {"PMP-001", "MTR-002", "CMP-001", "PMP-003"}
    assert [r.flags for r in readings if r.machine_id == "PMP-003"] == [("out_of_range",)]
    assert all(r.source == "mqtt:plant-sensors" for r in readings)
    letters = [m for m in messages if isinstance(m, DeadLetter)]
    assert sorted(letter.reason for letter in letters) == ["json", "missing_field", "wrong_type"]
    assert all(letter.source_topic and letter.source_topic.startswith("mqtt:vigil-test/") for letter in letters)


def test_main_runs_the_configured_sources_and_prints_its_counters(
    mqtt_address: tuple[str, int],
    kafka_settings: KafkaSettings,
    topics: Topics,
    unique: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ingest.mqtt import main
    from vigil.config import EXAMPLE_CONFIG

    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    # Retained messages on distinct topics: the broker hands them over on subscription, whenever that happens.
    prefix = f"vigil-test/{unique}/main"
    t = int(T0.timestamp())
    retained = [
        (f"{prefix}/{i}", json.dumps({"machine": "MTR-003", "sensor": "speed", "ts": t + i, "value": 1480.0}).encode())
        for i in range(20)
    ]
    _mqtt_publish_retained(mqtt_address, retained)
    config = tmp_path / "plant.toml"
    config.write_text(
        EXAMPLE_CONFIG.read_text()
        + f'\n[[sources.mqtt]]\nname = "retained"\ntopics = ["{prefix}/#"]\n'
        + '[sources.mqtt.mapping]\nts_format = "epoch_s"\nunit = "unit"\n'
    )
    for key, value in {
        "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIGIL_TOPICS__READINGS": topics.readings,
        "VIGIL_TOPICS__DEAD_LETTER": topics.dead_letter,
        "VIGIL_SPOOL__PATH": str(tmp_path / "spool.sqlite"),
        "VIGIL_MQTT__HOST": mqtt_address[0],
        "VIGIL_MQTT__PORT": str(mqtt_address[1]),
    }.items():
        monkeypatch.setenv(key, value)
    try:
        assert main(["--config", str(config), "--duration", "6", "--metrics-port", "0"]) == 0
    finally:
        _mqtt_publish_retained(mqtt_address, [(topic, b"") for topic, _ in retained])  # clear them
    summary = json.loads(capsys.readouterr().out)
    assert summary["sources"]["retained"]["accepted"] == 20
    assert summary["publisher"]["sent"] == 20
    readings = [
        r
        for m in consume(
            kafka_settings,
            [topics.readings],
            lambda out: sum(len(m.samples) for m in out if isinstance(m, ReadingBatch)) >= 20,
        )
        if isinstance(m, ReadingBatch)
        for r in m.readings()
    ]
    assert sorted(r.ts for r in readings) == [T0 + timedelta(seconds=i) for i in range(20)]


def _mqtt_publish_retained(address: tuple[str, int], messages: list[tuple[str, bytes]]) -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2)
    client.connect(*address)
    client.loop_start()
    try:
        for info in [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_collector_resubscribes_after_the_broker_restarts(
    kafka_settings: KafkaSettings,
    topics: Topics,
    example_config: VigilConfig,
    unique: str,
    free_port: int,
    tmp_path: Path,
) -> None:
    from vigil.services import Mosquitto, ServicesConfig

    broker = Mosquitto(ServicesConfig(state_dir=tmp_path / "mqtt-state", mqtt_port=free_port))
    broker.up()
    try:
        ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
        source = MqttSource(name="restart", topics=[f"restart/{unique}/#"], mapping=MqttMapping(ts_format="epoch_s"))
        publisher = KafkaPublisher(
            kafka_settings, topics, SpoolSettings(path=tmp_path / "spool.sqlite"), PublishSettings(batch_max_ms=50)
        )
        publisher.start()
        address = ("127.0.0.1", free_port)
        collector = MqttCollector(
            MqttSettings(host=address[0], port=free_port), source, publisher, Validator(example_config)
        )

        def send(first: int, count: int) -> None:
            t = int(T0.timestamp())
            _mqtt_publish(
                address,
                [
                    (
                        f"restart/{unique}/x",
                        json.dumps({"machine": "PMP-004", "sensor": "pressure", "ts": t + i, "value": 4.2}).encode(),
                    )
                    for i in range(first, first + count)
                ],
            )

        def wait_for(condition: Any, what: str, timeout_s: float = 60) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(0.1)

        with collector:
            assert collector.wait_subscribed(30)
            send(0, 10)
            wait_for(lambda: collector.counters["accepted"] == 10, "the first messages")
            broker.down()
            wait_for(lambda: not collector.subscribed, "the collector to notice the broker is gone")
            broker.up()
            assert collector.wait_subscribed(60)
            send(10, 10)
            wait_for(lambda: collector.counters["accepted"] == 20, "messages after the restart")
        publisher.close()
        assert publisher.counters.sent == 20
    finally:
        broker.down()
    readings = [
        r
        for m in consume(
            kafka_settings,
            [topics.readings],
            lambda out: sum(len(m.samples) for m in out if isinstance(m, ReadingBatch)) >= 20,
        )
        if isinstance(m, ReadingBatch)
        for r in m.readings()
    ]
    assert sorted(r.ts for r in readings) == [T0 + timedelta(seconds=i) for i in range(20)]
