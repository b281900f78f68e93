"""``vigil smoke``: one message of every contract through Kafka and one point through InfluxDB.

A quick proof that the configured services answer, for a new installation or a changed deployment.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta

from vigil.bus import TopicSpec, ensure_topics, machine_key, make_consumer, make_producer
from vigil.config import VigilConfig, load_config
from vigil.contracts import (
    Alert,
    AlertState,
    DriftEvent,
    FeatureVector,
    MaintenanceEvent,
    MaintenanceKind,
    Prediction,
    ReadingBatch,
    Sample,
    Severity,
    decode,
    encode,
    utcnow,
)
from vigil.exceptions import ConfigError

log = logging.getLogger(__name__)


def _messages(machine: str, machine_type: str) -> list[object]:
    now = utcnow()
    return [
        ReadingBatch(machine_id=machine, samples=[Sample(sensor="speed", ts=now, value=1480.0, unit="rpm")]),
        MaintenanceEvent(machine_id=machine, ts=now, event=MaintenanceKind.INSPECTION, text="smoke test"),
        FeatureVector(
            machine_id=machine,
            machine_type=machine_type,
            window_start=now - timedelta(minutes=1),
            window_end=now,
            features={"speed.mean": 1480.0},
        ),
        Prediction(machine_id=machine, machine_type=machine_type, ts=now, model="smoke", p_failure=0.01),
        Alert(
            alert_id=uuid.uuid4().hex,
            machine_id=machine,
            alert_kind="smoke",
            state=AlertState.RESOLVED,
            severity=Severity.INFO,
            ts=now,
            opened_at=now,
            summary="smoke test",
        ),
        DriftEvent(ts=now, machine_type=machine_type, detector="smoke", target="error", event="kept"),
    ]


def run(config: VigilConfig) -> None:
    machine = config.machines[0]
    topic = f"{config.topics.changelog_prefix}smoke"
    ensure_topics(config.kafka, [TopicSpec(topic, partitions=1)])
    sent = _messages(machine.id, machine.type)
    producer = make_producer(config.kafka)
    for message in sent:
        producer.send(topic, key=machine_key(machine.id), value=encode(message)).get(timeout=30)  # type: ignore[arg-type]
    producer.close()
    from kafka import TopicPartition

    consumer = make_consumer(config.kafka, None)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    end = consumer.end_offsets([partition])[partition]
    consumer.seek(partition, max(0, end - len(sent)))
    got: list[object] = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(decode(r.value) for r in records)
    consumer.close()
    if got[-len(sent) :] != sent:
        raise RuntimeError(f"Kafka round trip returned {len(got)} of {len(sent)} messages")
    print(f"kafka {config.kafka.bootstrap_servers}: {len(sent)} contracts produced and consumed on {topic}")

    if config.influx.api == "v1":
        ts = time.time_ns()
        line = f"smoke,machine={machine.id} ok=1i {ts}"
        params = urllib.parse.urlencode({"db": config.influx.database, "precision": "ns"})
        request = urllib.request.Request(f"{config.influx.url}/write?{params}", data=line.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10, context=config.influx.ssl_context()) as resp:
            resp.read()
        q = urllib.parse.urlencode({"db": config.influx.database, "q": f"SELECT ok FROM smoke WHERE time = {ts}"})
        with urllib.request.urlopen(
            f"{config.influx.url}/query?{q}", timeout=10, context=config.influx.ssl_context()
        ) as resp:
            body = resp.read().decode()
        if '"ok"' not in body:
            raise RuntimeError(f"InfluxDB did not return the point it accepted: {body[:200]}")
        print(f"influxdb {config.influx.url} ({config.influx.database}): point written and read back")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vigil smoke", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default=None, help="plant configuration (default: $VIGIL_CONFIG or the example)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    run(config)
    return 0
