"""Publishing to the real broker: count-exact, keyed by machine, batched, with gaps, events and dead letters."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.publisher import KafkaPublisher
from vigil.bus import dead_letter, ensure_topics, pipeline_topics
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics
from vigil.contracts import DeadLetter, Gap, MaintenanceEvent, MaintenanceKind, Reading, ReadingBatch, decode
from vigil.testing import consume

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def _consume(kafka: KafkaSettings, topic_names: list[str], expected_messages: int) -> list[Any]:
    """``(topic, key, message)`` of every record, 2 s after the expected count (to catch duplicates)."""
    return consume(
        kafka,
        topic_names,
        until=lambda out: len(out) >= expected_messages,
        map=lambda r: (r.topic, r.key, decode(r.value)),
        settle_s=2,
    )


def test_every_reading_arrives_once_batched_and_keyed_by_machine(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    publisher = KafkaPublisher(
        kafka_settings,
        topics,
        SpoolSettings(path=tmp_path / "spool.sqlite"),
        PublishSettings(batch_max_samples=250, batch_max_ms=100),
        source="test",
    )
    machines = [f"PMP-00{i}" for i in range(1, 5)]
    n = 10_000
    with publisher:
        for i in range(n):
            publisher.add(
                Reading(
                    machine_id=machines[i % 4],
                    sensor=("flow", "pressure")[i // 4 % 2],
                    ts=T0 + timedelta(milliseconds=i),
                    value=float(i),
                )
            )
        publisher.add_gap(Gap(machine_id="PMP-001", start=T0, end=T0 + timedelta(seconds=5), reason="test"))
        publisher.add_event(MaintenanceEvent(machine_id="PMP-002", ts=T0, event=MaintenanceKind.REPAIR))
        publisher.add_dead_letter(dead_letter(service="test", reason="json", error="boom", raw=b"\x00", key=b"x"))
    c = publisher.counters
    # start() does not wait for Kafka: what was added before the first connect went through the spool.
    assert (c.added, c.sent, c.dropped, c.reconciled) == (n, n, 0, 0)
    assert c.replayed == c.spooled
    assert c.bytes_sent > 0

    messages = _consume(kafka_settings, [topics.readings, topics.maintenance, topics.dead_letter], c.messages_sent)
    batches = [m for _, _, m in messages if isinstance(m, ReadingBatch)]
    # Batching: far fewer messages than readings, none over the bound.
    assert len(batches) < n / 100
    assert max(len(b.samples) for b in batches) <= 250
    assert all(key == msg.machine_id.encode() for _, key, msg in messages if isinstance(msg, ReadingBatch | Gap))
    keys = Counter((r.machine_id, r.sensor, r.ts) for b in batches for r in b.readings())
    assert len(keys) == n
    assert max(keys.values()) == 1
    for machine in machines:
        values = [s.value for b in batches if b.machine_id == machine for s in b.samples]
        assert values == sorted(values)
    kinds = Counter(type(m).__name__ for _, _, m in messages)
    assert (kinds["Gap"], kinds["MaintenanceEvent"], kinds["DeadLetter"]) == (1, 1, 1)
    [letter] = [m for _, _, m in messages if isinstance(m, DeadLetter)]
    assert letter.reason == "json"


def test_a_message_kafka_refuses_for_good_is_counted_dropped_and_does_not_block_the_rest(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    import base64
    import os

    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    publisher = KafkaPublisher(
        kafka_settings, topics, SpoolSettings(path=tmp_path / "spool.sqlite"), PublishSettings(batch_max_samples=1)
    )
    # One reading whose (incompressible) unit makes a 2 MB message: over the broker's 1 MiB message.max.bytes.
    huge = base64.b64encode(os.urandom(1_500_000)).decode()
    with publisher:
        publisher.add(Reading(machine_id="PMP-001", sensor="flow", ts=T0, value=1.0))
        publisher.add(Reading(machine_id="PMP-001", sensor="flow", ts=T0 + timedelta(seconds=1), value=2.0, unit=huge))
        publisher.flush(60)
        for i in range(2, 12):
            publisher.add(Reading(machine_id="PMP-001", sensor="flow", ts=T0 + timedelta(seconds=i), value=float(i)))
    c = publisher.counters
    assert (c.sent, c.dropped) == (11, 1)
    assert c.by_reason["drop:rejected_MessageSizeTooLargeError"] == 1
    assert publisher.backlog == 0
    messages = _consume(kafka_settings, [topics.readings], 11)
    values = [s.value for _, _, m in messages for s in m.samples]
    assert values == [1.0, *(float(i) for i in range(2, 12))]
