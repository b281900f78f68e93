"""A slice of the pipeline on the secured stack: a device publishes over MQTT/TLS with a password, the MQTT
collector (its own Kafka user) publishes readings over SASL_SSL, the feature worker (its own user, ACLs limited
to its topics and group) emits feature vectors to Kafka and writes them to InfluxDB over HTTPS with a user that
may only write its database. Everything the run logged, at DEBUG for every library, must not hold any secret."""

from __future__ import annotations

import io
import json
import logging
import ssl
import threading
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertService
from features.service import FeatureService
from ingest.collector_cli import ensure_reading_topics
from ingest.mqtt import MqttCollector
from ingest.publisher import KafkaPublisher
from ingest.validation import Validator
from models.service import ModelService
from vigil.config import EXAMPLE_CONFIG, MqttMapping, MqttSource, PublishSettings, SpoolSettings, Topics, load_config
from vigil.config.connections import KafkaSettings
from vigil.contracts import FeatureVector, decode
from vigil.influx import V1Transport
from vigil.logs import setup_logging
from vigil.testing import TopicReader, raw, wait_for

pytestmark = pytest.mark.integration

SIZE = 60.0
T0 = (time.time() // 3600 - 2) * 3600  # two hours ago, on a window boundary


def _config(secure: Any, user: str, topics: Topics, database: str, group: str) -> Any:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    windows = {
        "size_s": SIZE,
        "grace_s": 5.0,
        "idle_timeout_s": 3600,
        "checkpoint_interval_s": 1.0,
        "session_timeout_s": 8.0,
        "group_id": group,
        "write_influx": True,
    }
    data = {
        **plant,
        "kafka": secure.kafka_data(user),
        "topics": topics.model_dump(),
        "influx": secure.influx_data(database),
        "mqtt": secure.mqtt_data("collector"),
        "windows": windows,
    }
    return load_config(environ={}, data=data)


def _device_publish(secure: Any, topic: str, payloads: list[bytes]) -> None:
    """A plant gateway: user ``device``, TLS checked against the private CA."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set("device", secure.secret("mqtt-device"))
    client.tls_set_context(ssl.create_default_context(cafile=str(secure.ca_file)))
    client.connect(secure.sc.host, secure.sc.mqtt_port)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def _payloads(windows: range) -> list[bytes]:
    return [
        json.dumps(
            {"machine": "PMP-001", "sensor": "bearing_temp", "t": int((T0 + k * SIZE + s + 2.0) * 1000), "v": 40.0 + k}
        ).encode()
        for k in windows
        for s in range(0, 60, 10)
    ]


def test_mqtt_collector_features_models_alerts_influx_secured_leak_no_secret(
    secure: Any, secure_topics: Topics, unique: str, tmp_path: Path
) -> None:
    database = f"sec_{unique}"
    secure.influx_admin(f'CREATE DATABASE "{database}"')
    secure.influx_admin(f'GRANT ALL ON "{database}" TO vigil')  # read and write this database, nothing else
    captured = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = setup_logging("DEBUG", stream=captured, quiet={})
    try:
        collector_config = _config(secure, "collector", secure_topics, database, f"vigil-collect-{unique}")
        features_config = _config(secure, "features", secure_topics, database, f"vigil-features-{unique}")
        ensure_reading_topics(collector_config)  # the collector's start-up: topics and its ACLs checked
        source = MqttSource(
            name="gateway",
            topics=[f"vigil-test/{unique}/telemetry"],
            qos=1,
            mapping=MqttMapping(machine="machine", sensor="sensor", ts="t", value="v", ts_format="epoch_ms"),
        )
        publisher = KafkaPublisher(
            collector_config.kafka,
            secure_topics,
            SpoolSettings(path=tmp_path / "spool.sqlite"),
            PublishSettings(batch_max_ms=50),
        )
        publisher.start()
        collector = MqttCollector(collector_config.mqtt, source, publisher, Validator(collector_config))
        payloads = _payloads(range(6))
        with collector:
            assert collector.wait_subscribed(30)
            _device_publish(secure, f"vigil-test/{unique}/telemetry", payloads)
            wait_for(lambda: collector.counters["accepted"] >= len(payloads), 60, "readings through the collector")
        publisher.close()

        reader_settings = secure.kafka("admin")  # the test reads what the features user may not
        vectors = TopicReader(reader_settings, [secure_topics.features], raw)
        service = FeatureService(features_config, worker_id="secure")
        stop = threading.Event()
        service.setup()
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        try:
            wait_for(lambda: len(vectors.records) >= 4, 90, "feature vectors of windows 0-3 over SASL_SSL")
            transport = V1Transport(features_config.influx)
            wait_for(
                lambda: bool(transport.query("SELECT count(*) FROM /.*/")),
                60,
                "feature points in InfluxDB over HTTPS",
            )
            after_features = {r["name"] for r in transport.query("SHOW MEASUREMENTS")}
        finally:
            stop.set()
            thread.join(60)
            service.close()
            vectors.close()
        got = [decode(r.value) for r in list(vectors.records)]

        # The models service (its own user) turns the vectors into predictions...
        models = ModelService(
            _config(secure, "models", secure_topics, database, f"vigil-models-{unique}"), f"vigil-models-{unique}"
        )
        models.setup()
        try:
            models.run(max_records=len(got), idle_exit_s=5)
        finally:
            models.close()
        predictions = TopicReader(reader_settings, [secure_topics.predictions], raw)
        try:
            wait_for(lambda: len(predictions.records) >= len(got), 60, "predictions over SASL_SSL")
        finally:
            predictions.close()
        # ... and the alerts service (its own user) reads them and writes them to InfluxDB.
        alerts_config = _config(secure, "alerts", secure_topics, database, f"vigil-alerts-{unique}")
        alerts_config = alerts_config.model_copy(
            update={"alerts": alerts_config.alerts.model_copy(update={"outbox_path": str(tmp_path / "outbox.sqlite3")})}
        )
        alerts = AlertService(alerts_config, group_id=f"vigil-alerts-{unique}")
        alerts.setup(http=False)
        try:

            def more_measurements() -> bool:
                alerts.run_once()
                return {r["name"] for r in transport.query("SHOW MEASUREMENTS")} > after_features

            wait_for(more_measurements, 90, "the alerts service's points in InfluxDB over HTTPS")
            points = {r["name"] for r in transport.query("SHOW MEASUREMENTS")}
        finally:
            alerts.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        secure.influx_admin(f'DROP DATABASE "{database}"')

    assert collector.counters["accepted"] == len(payloads)
    assert all(isinstance(v, FeatureVector) and v.machine_id == "PMP-001" for v in got)
    starts = sorted({v.window_start for v in got if isinstance(v, FeatureVector)})
    assert starts[0] == datetime.fromtimestamp(T0, UTC)
    assert after_features, "the feature worker wrote no measurement to InfluxDB"
    assert points > after_features, "the alerts service wrote nothing to InfluxDB"
    output = captured.getvalue()
    assert "SASL_SSL" in output or "sasl" in output.lower()  # the capture saw the Kafka clients at work
    for secret in secure.secrets():
        assert secret not in output


def test_plain_mechanism_over_tls_and_scram_sha_256_both_work(secure: Any, secure_topics: Topics) -> None:
    from vigil.bus import TopicSpec, ensure_topics, make_producer

    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        kafka: KafkaSettings = secure.kafka("collector", mechanism)
        ensure_topics(kafka, [TopicSpec(secure_topics.readings, 1)], max_wait_s=60)
        producer = make_producer(kafka)
        try:
            metadata = producer.send(secure_topics.readings, b"{}").get(timeout=30)
        finally:
            producer.close()
        assert metadata.topic == secure_topics.readings
