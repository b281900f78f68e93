"""Kafka stopped for a while: readings spool, and after restart every (machine, sensor, ts) arrives exactly once.

Uses a PRIVATE Kafka on free ports (the shared broker is never stopped). The spool also crosses a publisher
restart: the first publisher closes while Kafka is down, the second one replays its backlog first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.publisher import KafkaPublisher
from vigil.bus import TopicSpec, ensure_topics
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics
from vigil.contracts import Reading, ReadingBatch, decode
from vigil.services import Kafka
from vigil.testing import consume, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MACHINES = ("PMP-001", "PMP-002", "MTR-001", "CMP-003")
SENSORS = ("bearing_temp", "vibration_rms", "speed")


def _readings(start: int, count: int) -> Iterator[Reading]:
    """``count`` readings, round-robin over machines and sensors, with distinct source timestamps."""
    for i in range(start, start + count):
        yield Reading(
            machine_id=MACHINES[i % len(MACHINES)],
            sensor=SENSORS[(i // len(MACHINES)) % len(SENSORS)],
            ts=T0 + timedelta(milliseconds=i),
            value=float(i),
        )


def _samples(record: Any) -> list[tuple[str, str, datetime, float | None]]:
    batch = decode(record.value)
    assert isinstance(batch, ReadingBatch)
    assert record.key == batch.machine_id.encode()
    return [(r.machine_id, r.sensor, r.ts, r.value) for r in batch.readings()]


def _consume(kafka: KafkaSettings, topic: str, expected: int) -> list[tuple[str, str, datetime, float | None]]:
    """Every reading on the topic, read 3 s longer than the expected count (to catch duplicates)."""
    batches = consume(kafka, [topic], lambda got: sum(map(len, got)) >= expected, _samples, 120, settle_s=3)
    return [sample for batch in batches for sample in batch]


def test_readings_spool_during_an_outage_and_arrive_exactly_once_after_restart(
    private_kafka: Kafka, tmp_path: Path, unique: str
) -> None:
    kafka = KafkaSettings(bootstrap_servers=private_kafka.cfg.kafka_bootstrap, client_id="outage-test", linger_ms=5)
    topics = Topics(readings=f"outage-{unique}.readings")
    ensure_topics(kafka, [TopicSpec(topics.readings, partitions=3)])
    spool = SpoolSettings(path=tmp_path / "spool.sqlite", retry_interval_s=1.0)
    publish = PublishSettings(batch_max_samples=100, batch_max_ms=50, delivery_timeout_s=4, connect_timeout_s=2)

    first = KafkaPublisher(kafka, topics, spool, publish)
    first.start()
    for r in _readings(0, 1000):
        first.add(r)
    first.flush(60)
    assert first.counters.sent == 1000
    assert not first.spooling
    # start() does not wait for Kafka: what was added before the first connect went through the spool.
    before = first.counters.spooled

    private_kafka.down()
    for r in _readings(1000, 2000):  # handed to the producer; they fail after the delivery timeout
        first.add(r)
    first.flush(1)
    wait_for(
        lambda: first.spooling and first.counters.spooled == before + 2000, 90, "the in-flight readings to be spooled"
    )
    for r in _readings(3000, 1000):  # Kafka known to be down: straight to the spool
        first.add(r)
    first.close(timeout_s=5)  # the process "restarts" with the backlog on disk
    assert first.counters.sent == 1000
    assert first.counters.spooled == before + 3000
    assert first.counters.dropped == 0
    assert first.backlog == 3000

    private_kafka.up()
    second = KafkaPublisher(kafka, topics, spool, publish)
    second.start()
    assert second.backlog == 3000
    for r in _readings(4000, 1000):
        second.add(r)
    wait_for(lambda: not second.spooling, 120, "the spool to drain")
    second.close(timeout_s=60)
    assert second.backlog == 0
    assert second.counters.replayed >= 3000
    assert second.counters.sent == 4000
    assert second.counters.dropped == 0

    got = _consume(kafka, topics.readings, 5000)
    keys = Counter((m, s, ts) for m, s, ts, _ in got)
    expected = {(r.machine_id, r.sensor, r.ts) for r in _readings(0, 5000)}
    assert set(keys) == expected
    assert [k for k, n in keys.items() if n > 1] == []
    assert len(got) == 5000
    # Each machine's readings keep their order across the outage (one partition per machine, spool in order).
    for machine in MACHINES:
        values = [v for m, _, _, v in got if m == machine]
        assert values == sorted(values)
