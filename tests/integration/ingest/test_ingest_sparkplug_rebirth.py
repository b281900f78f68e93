"""Sparkplug B against the real Mosquitto: a collector that starts after the edge node's birth asks it to rebirth,
and, as the primary host, publishes its STATE (online while it runs, offline after)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.sparkplug import Payload
from vigil.config import KafkaSettings, Topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DOUBLE, INT64, BOOLEAN = 10, 4, 11


def _client(host: str, port: int, name: str) -> Any:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id=name)
    client.connect(host, port)
    client.loop_start()
    return client


class EdgeNode:
    """Edge node 'line1', device 'P1': births at once, then a DDATA every 50 ms; births again on a rebirth NCMD."""

    def __init__(self, host: str, port: int, group: str) -> None:
        self.group, self.seq, self.value = group, 0, 0.0
        self.rebirths = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.client = _client(host, port, f"edge-{group}")
        self.client.on_message = self._on_command
        self.client.subscribe(f"spBv1.0/{group}/NCMD/line1", qos=1)

    def _send(self, kind: str, *metrics: dict[str, object], device: bool = True) -> None:
        p = Payload(timestamp=int(time.time() * 1000), seq=self.seq)
        for m in metrics:
            p.metrics.add(**m)
        topic = f"spBv1.0/{self.group}/{kind}/line1" + ("/P1" if device else "")
        self.client.publish(topic, bytes(p.SerializeToString()), qos=1)
        self.seq = (self.seq + 1) % 256

    def births(self) -> None:
        with self.lock:
            self.seq = 0
            self._send("NBIRTH", {"name": "bdSeq", "datatype": INT64, "long_value": 0}, device=False)
            self._send("DBIRTH", {"name": "Flow", "alias": 1, "datatype": DOUBLE, "double_value": self.value})

    def _on_command(self, _client: Any, _userdata: Any, message: Any) -> None:
        metrics = {m.name: m.boolean_value for m in Payload.FromString(message.payload).metrics}
        if metrics.get("Node Control/Rebirth"):
            self.rebirths += 1
            self.births()

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.value += 1.0
                self._send("DDATA", {"alias": 1, "datatype": DOUBLE, "double_value": self.value})
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_late_collector_asks_for_a_rebirth_and_publishes_its_state(
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
    group, host_id = f"g{unique}", f"vigil-{unique}"
    plant = (ROOT / "config" / "plant.example.toml").read_text()
    plant += f"""
[[sources.sparkplug]]
name = "spb"
group_id = "{group}"
host_id = "{host_id}"
devices = {{ "line1/P1" = "PMP-003" }}
metrics = {{ Flow = "flow" }}
"""
    config_path = tmp_path / "plant.toml"
    config_path.write_text(plant)
    for key, value in {
        "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIGIL_TOPICS__READINGS": topics.readings,
        "VIGIL_SPOOL__PATH": str(tmp_path / "spool.sqlite"),
        "VIGIL_MQTT__HOST": host,
        "VIGIL_MQTT__PORT": str(port),
    }.items():
        monkeypatch.setenv(key, value)
    states: list[dict[str, Any]] = []
    watcher = _client(host, port, f"watch-{unique}")
    watcher.on_message = lambda _c, _u, m: states.append(json.loads(m.payload))
    watcher.subscribe(f"spBv1.0/STATE/{host_id}", qos=1)
    node = EdgeNode(host, port, group)
    node.births()  # before the collector runs: it never sees these births
    sender = threading.Thread(target=node.run, daemon=True)
    sender.start()
    try:
        code = main(["sparkplug", "--config", str(config_path), "--duration", "4", "--metrics-port", "-1"])
    finally:
        node.stop.set()
        sender.join(5)
        node.close()
    assert code == 0
    spb = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sources"]["spb"]
    # Data before the births it missed is dropped and answered by one rebirth request; after the rebirth every
    # value is read (about 20 per second for ~4 s).
    assert spb["no_birth"] >= 1 and spb["rebirth_requests"] == 1 and node.rebirths == 1, spb
    assert spb["births"] == 2 and spb["readings"] >= 20 and spb.get("unknown_alias", 0) == 0, spb
    deadline = time.monotonic() + 5
    while len(states) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.loop_stop()
    watcher.disconnect()
    assert [s["online"] for s in states] == [True, False], states  # online while it ran, offline after
    assert all(isinstance(s["timestamp"], int) for s in states)
    # The offline state is retained: a primary-host-aware edge node connecting now learns it at once.
    late: list[dict[str, Any]] = []
    retained = _client(host, port, f"late-{unique}")
    retained.on_message = lambda _c, _u, m: late.append(json.loads(m.payload))
    retained.subscribe(f"spBv1.0/STATE/{host_id}", qos=1)
    deadline = time.monotonic() + 5
    while not late and time.monotonic() < deadline:
        time.sleep(0.05)
    retained.publish(f"spBv1.0/STATE/{host_id}", b"", qos=1, retain=True).wait_for_publish(5)  # clear it
    retained.loop_stop()
    retained.disconnect()
    assert late and late[0]["online"] is False
