"""``vigil collect mqtt`` as a plant runs it: a TOML file, the real Mosquitto and Kafka, a summary at the end."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.mqtt import main
from vigil.bus import ensure_topics, pipeline_topics
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics
from vigil.contracts import Reading, ReadingBatch, decode
from vigil.testing import consume, raw

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _plant_file(tmp_path: Path, unique: str) -> Path:
    path = tmp_path / "plant.toml"
    path.write_text(
        EXAMPLE_CONFIG.read_text()
        + f"""
[[sources.mqtt]]
name = "plant-sensors"
topics = ["vigil-cli/{unique}/+/telemetry"]
qos = 1
[sources.mqtt.mapping]
machine = "asset"
sensor = "point"
ts = "t"
value = "v"
ts_format = "epoch_ms"
"""
    )
    return path


def _publish_when_subscribed(address: tuple[str, int], unique: str, n: int) -> None:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    time.sleep(3.0)  # the collector subscribes within a second of starting; QoS 1 is not retained
    client = Client(CallbackAPIVersion.VERSION2)
    client.connect(*address)
    client.loop_start()
    try:
        for i in range(n):
            t = int((T0 + timedelta(seconds=i)).timestamp() * 1000)
            body = {"asset": "PMP-001", "point": "bearing_temp", "t": t, "v": 40.0 + i % 10}
            client.publish(f"vigil-cli/{unique}/PMP-001/telemetry", json.dumps(body), qos=1).wait_for_publish(30)
        client.publish(f"vigil-cli/{unique}/x/telemetry", b"{not json", qos=1).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_collect_mqtt_command_publishes_and_summarises(
    mqtt_address: tuple[str, int],
    kafka_settings: KafkaSettings,
    topics: Topics,
    unique: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    for key, value in {
        "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIGIL_MQTT__HOST": mqtt_address[0],
        "VIGIL_MQTT__PORT": str(mqtt_address[1]),
        "VIGIL_TOPICS__READINGS": topics.readings,
        "VIGIL_TOPICS__DEAD_LETTER": topics.dead_letter,
        "VIGIL_SPOOL__PATH": str(tmp_path / "spool.sqlite"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    sender = threading.Thread(target=_publish_when_subscribed, args=(mqtt_address, unique, 120))
    sender.start()
    try:
        # signal handlers are installed, so main() runs on the main thread; it stops on its own.
        code = main(["--config", str(_plant_file(tmp_path, unique)), "--duration", "12", "--metrics-port", "-1"])
    finally:
        sender.join()
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sources"]["plant-sensors"]["accepted"] == 120
    assert summary["publisher"]["sent"] == 120

    def received(records: list[Any]) -> tuple[list[Reading], list[dict[str, Any]]]:
        letters = [json.loads(r.value) for r in records if r.topic == topics.dead_letter]
        batches = [decode(r.value) for r in records if r.topic == topics.readings]
        assert all(isinstance(m, ReadingBatch) for m in batches)
        return [r for m in batches for r in m.readings()], letters

    def enough(records: list[Any]) -> bool:
        readings, letters = received(records)
        return len(readings) >= 120 and bool(letters)

    readings, letters = received(consume(kafka_settings, [topics.readings, topics.dead_letter], enough, map=raw))
    assert sorted(r.ts for r in readings) == [T0 + timedelta(seconds=i) for i in range(120)]
    assert {r.source for r in readings} == {"mqtt"}
    assert [d["reason"] for d in letters] == ["json"]


def test_collect_mqtt_command_refuses_a_bad_configuration_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:  # an override would hide the file's mistake
        monkeypatch.delenv(key)
    path = tmp_path / "plant.toml"
    path.write_text(EXAMPLE_CONFIG.read_text().replace("port = 11883", 'port = "eleven"', 1))
    assert main(["--config", str(path), "--metrics-port", "-1"]) == 2
    assert "mqtt.port" in capsys.readouterr().err
