"""Maintenance records pushed over MQTT (the real Mosquitto) reach the real Kafka like a CMMS file import: same
reader, same ids (a redelivered message publishes nothing twice), refusals dead-lettered with the reason."""

from __future__ import annotations

import json

import pytest

from ingest.maintenance_mqtt import MaintenanceSubscriber
from vigil.bus import ensure_topics, make_producer, pipeline_topics
from vigil.config import KafkaSettings, MqttSettings, Topics, VigilConfig
from vigil.config.mapping import MaintenanceMapping, MaintenanceSource
from vigil.contracts import DeadLetter, MaintenanceEvent
from vigil.testing import consume, wait_for

pytestmark = pytest.mark.integration


def _publish(address: tuple[str, int], topic: str, payloads: list[bytes]) -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2)
    client.connect(*address)
    client.loop_start()
    try:
        for info in [client.publish(topic, p, qos=1) for p in payloads]:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_records_pushed_over_mqtt_are_imported_once_and_bad_ones_dead_lettered(
    mqtt_address: tuple[str, int],
    kafka_settings: KafkaSettings,
    topics: Topics,
    example_config: VigilConfig,
    unique: str,
) -> None:
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    mqtt_topic = f"cmms/{unique}/workorders"
    source = MaintenanceSource(
        name="cmms",
        mqtt_topics=[mqtt_topic],
        mapping=MaintenanceMapping(machine="asset", kind="type", work_order="wo", text="text"),
    )
    producer = make_producer(kafka_settings)
    known = {m.id for m in example_config.machines}
    subscriber = MaintenanceSubscriber(
        source, MqttSettings(host=mqtt_address[0], port=mqtt_address[1]), producer, topics, known, set()
    )
    subscriber.start()
    try:
        assert subscriber.subscribed.wait(30)
        good = [
            {"asset": "PMP-001", "ts": "2026-05-02T08:00:00Z", "type": "CM", "wo": "7001", "text": "bearing"},
            {"asset": "PMP-001", "ts": "2026-05-02T20:00:00Z", "type": "repair", "wo": "7002"},
        ]
        bad = {"asset": "PMP-999", "ts": "2026-05-02T08:00:00Z", "type": "CM", "wo": "7003"}
        _publish(mqtt_address, mqtt_topic, [json.dumps([*good, bad]).encode(), b"{not json"])
        # The same records again (a maintenance system that re-sends): nothing new is published.
        _publish(mqtt_address, mqtt_topic, [json.dumps(good).encode()])
        wait_for(lambda: subscriber.counters["messages"] >= 3, 60, "three MQTT messages handled")
    finally:
        subscriber.stop()
        producer.close(timeout=30)
    events = consume(kafka_settings, [topics.maintenance], until=lambda got: len(got) >= 2, settle_s=2)
    assert [(e.event_id, e.event.value) for e in events if isinstance(e, MaintenanceEvent)] == [
        ("cmms:7001", "failure"),
        ("cmms:7002", "repair"),
    ]
    letters = consume(kafka_settings, [topics.dead_letter], until=lambda got: len(got) >= 2, settle_s=1)
    reasons = sorted(d.reason for d in letters if isinstance(d, DeadLetter))
    assert reasons == ["json", "unknown_machine"]
    assert subscriber.counters["imported"] == 2 and subscriber.counters["duplicate"] == 2
    assert subscriber.counters["not_acknowledged"] == 0
