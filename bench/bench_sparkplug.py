"""Throughput of the Sparkplug B collector through the real Mosquitto, no Kafka.

    eval "$(python -m vigil.cli services up mosquitto)"
    PYTHONPATH=. python bench/bench_sparkplug.py            # ~10 s
    PYTHONPATH=. python bench/bench_sparkplug.py --smoke

An edge node (paho, QoS 1) publishes a DBIRTH with ``--metrics`` metrics per device for the 12 machines of the
example plant, then DDATA messages carrying every metric by alias, pausing every 480 messages until the collector caught up (Mosquitto
drops QoS 1 messages beyond 1000 queued per subscriber); the collector decodes, maps and validates each value (the
publisher is a counting stand-in). Prints values/s received and the decoder alone.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from typing import Any

from ingest.sparkplug import Payload, SparkplugCollector, SparkplugDecoder
from ingest.validation import Validator
from vigil.config import SparkplugSource, load_config
from vigil.contracts import Gap, Reading


class _Count:
    def __init__(self) -> None:
        self.added = 0
        self.done = threading.Event()
        self.want = 0

    def add(self, reading: Reading) -> None:
        self.added += 1
        if self.added >= self.want:
            self.done.set()

    def add_gap(self, gap: Gap) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="DDATA messages per device")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    messages = 100 if args.smoke else args.messages
    config = load_config()
    group = f"bench{uuid.uuid4().hex[:6]}"
    machines = list(config.machines_by_id.values())
    source = SparkplugSource(name="bench", group_id=group, qos=1)
    sink = _Count()
    births = sum(len(m.sensors) for m in machines)
    # Aliases are unique within an edge node (Sparkplug B), so each device's start after the previous one's.
    base = {m.id: sum(len(x.sensors) for x in machines[:k]) for k, m in enumerate(machines)}
    sink.want = births * (messages + 1)
    collector = SparkplugCollector(config.mqtt, source, config, sink, Validator(config))  # type: ignore[arg-type]
    collector.start()
    assert collector.wait_subscribed(30), "no SUBACK from the broker"

    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    edge = Client(CallbackAPIVersion.VERSION2, client_id=f"edge-{group}")
    edge.max_inflight_messages_set(1000)
    edge.connect(config.mqtt.host, config.mqtt.port)
    edge.loop_start()
    seq = 0

    def payload(metrics: list[dict[str, Any]]) -> bytes:
        nonlocal seq
        p = Payload(timestamp=int(time.time() * 1000), seq=seq)
        seq = (seq + 1) % 256
        for m in metrics:
            p.metrics.add(**m)
        return bytes(p.SerializeToString())

    edge.publish(f"spBv1.0/{group}/NBIRTH/edge", payload([{"name": "bdSeq", "datatype": 4, "long_value": 0}]), qos=1)
    for m in machines:
        metrics = [
            {"name": s, "alias": base[m.id] + i, "datatype": 10, "double_value": 1.0} for i, s in enumerate(m.sensors)
        ]
        edge.publish(f"spBv1.0/{group}/DBIRTH/edge/{m.id}", payload(metrics), qos=1)
    started = time.perf_counter()
    for n in range(messages):
        for m in machines:
            metrics = [{"alias": base[m.id] + i, "double_value": float(n)} for i in range(len(m.sensors))]
            edge.publish(f"spBv1.0/{group}/DDATA/edge/{m.id}", payload(metrics), qos=1)
        if n % 40 == 39:
            # Flow control: Mosquitto queues at most 1000 QoS 1 messages per subscriber (max_queued_messages)
            # and drops the rest; let the collector catch up every 480 messages.
            deadline = time.monotonic() + 30
            while sink.added < births * (n + 1) and time.monotonic() < deadline:
                time.sleep(0.001)
    sink.done.wait(30)
    elapsed = time.perf_counter() - started
    edge.loop_stop()
    edge.disconnect()
    collector.stop()
    # The decoder alone, on the same messages (no broker, no validation).
    decoder = SparkplugDecoder(source, config)
    decoder.handle(f"spBv1.0/{group}/NBIRTH/edge", payload([{"name": "bdSeq", "datatype": 4, "long_value": 0}]))
    for m in machines:
        metrics = [
            {"name": s, "alias": base[m.id] + i, "datatype": 10, "double_value": 1.0} for i, s in enumerate(m.sensors)
        ]
        decoder.handle(f"spBv1.0/{group}/DBIRTH/edge/{m.id}", payload(metrics))
    encoded = [
        (
            f"spBv1.0/{group}/DDATA/edge/{m.id}",
            payload([{"alias": base[m.id] + i, "double_value": 2.0} for i in range(len(m.sensors))]),
        )
        for _ in range(200)
        for m in machines
    ]
    t0 = time.perf_counter()
    values = sum(len(decoder.handle(topic, data)) for topic, data in encoded)
    decode_s = time.perf_counter() - t0
    print(
        f"sparkplug: {sink.added:,} of {sink.want:,} values in {elapsed:.1f} s through Mosquitto = "
        f"{sink.added / elapsed:,.0f} values/s ({len(machines)} devices, QoS 1, validated); "
        f"decoder alone {values / decode_s:,.0f} values/s; counters {dict(collector.counters)}"
    )


if __name__ == "__main__":
    main()
