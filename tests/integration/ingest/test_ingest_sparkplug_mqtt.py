"""``vigil collect sparkplug`` against the real Mosquitto and Kafka: an edge node's births, data and a device death."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.sparkplug import Payload
from vigil.config import KafkaSettings, Topics
from vigil.contracts import Gap, ReadingBatch
from vigil.testing import consume

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DOUBLE, INT64, UINT16 = 10, 4, 6


def _payload(seq: int, *metrics: dict[str, object]) -> bytes:
    p = Payload(timestamp=int(time.time() * 1000), seq=seq)
    for m in metrics:
        p.metrics.add(**m)
    return bytes(p.SerializeToString())


def _edge_node(host: str, port: int, group: str, start_after_s: float) -> None:
    """An edge node 'line1' with device 'P1': birth, 20 values, the device dies and is reborn, 10 more values."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id=f"edge-{group}")
    client.connect(host, port)
    client.loop_start()
    time.sleep(start_after_s)
    seq = 0

    def send(kind: str, *metrics: dict[str, object], device: bool = True) -> None:
        nonlocal seq
        topic = f"spBv1.0/{group}/{kind}/line1" + ("/P1" if device else "")
        client.publish(topic, _payload(seq, *metrics), qos=1).wait_for_publish(10)
        seq = (seq + 1) % 256

    send("NBIRTH", {"name": "bdSeq", "datatype": INT64, "long_value": 0}, device=False)
    birth = [
        {"name": "Flow", "alias": 1, "datatype": DOUBLE, "double_value": 100.0},
        {"name": "speed", "alias": 2, "datatype": UINT16, "int_value": 1500},
    ]
    send("DBIRTH", *birth)
    for i in range(1, 21):
        send("DDATA", {"alias": 1, "datatype": DOUBLE, "double_value": 100.0 + i})
    send("DDEATH")
    time.sleep(0.5)
    send("DBIRTH", *birth)
    for i in range(21, 31):
        send("DDATA", {"alias": 1, "datatype": DOUBLE, "double_value": 100.0 + i})
    client.loop_stop()
    client.disconnect()


def test_vigil_collect_sparkplug_births_data_and_death(
    kafka_settings: KafkaSettings,
    topics: Topics,
    mqtt_address: tuple[str, int],
    unique: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ingest.cli import main

    host, port = mqtt_address
    group = f"g{unique}"
    plant = (ROOT / "config" / "plant.example.toml").read_text()
    plant += f"""
[[sources.sparkplug]]
name = "spb"
group_id = "{group}"
devices = {{ "line1/P1" = "PMP-003" }}
metrics = {{ Flow = "flow" }}
"""
    config_path = tmp_path / "plant.toml"
    config_path.write_text(plant)
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("VIGIL_TOPICS__READINGS", topics.readings)
    monkeypatch.setenv("VIGIL_SPOOL__PATH", str(tmp_path / "spool.sqlite"))
    monkeypatch.setenv("VIGIL_MQTT__HOST", host)
    monkeypatch.setenv("VIGIL_MQTT__PORT", str(port))
    edge = threading.Thread(target=_edge_node, args=(host, port, group, 3.0), daemon=True)
    edge.start()
    code = main(["sparkplug", "--config", str(config_path), "--duration", "8", "--metrics-port", "-1"])
    edge.join(10)
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    spb = summary["sources"]["spb"]
    assert spb["readings"] == 2 + 20 + 2 + 10 and spb.get("seq_gap", 0) == 0 and spb["gaps"] == 1, spb
    messages = consume(
        kafka_settings,
        [topics.readings],
        lambda out: (
            sum(len(m.samples) for m in out if isinstance(m, ReadingBatch)) >= 34
            and any(isinstance(m, Gap) for m in out)
        ),
    )
    readings = [r for m in messages if isinstance(m, ReadingBatch) for r in m.readings()]
    flows = sorted(r.value for r in readings if r.sensor == "flow" and r.value is not None)
    assert flows == sorted([100.0, *(100.0 + i for i in range(1, 31)), 100.0]), "every value once (both births)"
    assert {(r.machine_id, r.unit) for r in readings} == {("PMP-003", "m3/h"), ("PMP-003", "rpm")}
    gaps = [m for m in messages if isinstance(m, Gap)]
    assert len(gaps) == 1 and gaps[0].machine_id == "PMP-003" and gaps[0].reason == "connection_lost"
    assert gaps[0].end - gaps[0].start >= timedelta(seconds=0.4)
