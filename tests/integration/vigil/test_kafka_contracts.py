"""Every contract through the real broker, keyed by machine, with manual commits and exact resumption."""

from __future__ import annotations

import pytest

from tests.unit.vigil.test_contracts import one_of_each
from vigil.bus import TopicSpec, ensure_topics, machine_key, make_consumer, make_producer
from vigil.config import KafkaSettings
from vigil.contracts import decode, encode

pytestmark = pytest.mark.integration


def _drain(consumer: object, want: int, timeout_s: float = 30.0) -> list[object]:
    import time

    records: list[object] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500, max_records=want - len(records)).values():  # type: ignore[attr-defined]
            records.extend(batch)
    return records


def test_every_contract_through_kafka_with_manual_commit_and_resume(kafka_settings: KafkaSettings, unique: str) -> None:
    topic = f"t-{unique}.contracts"
    ensure_topics(kafka_settings, [TopicSpec(topic, partitions=3)])
    messages = one_of_each()
    producer = make_producer(kafka_settings)
    futures = []
    for i, message in enumerate(messages):
        machine = getattr(message, "machine_id", None) or f"M-{i}"
        futures.append(producer.send(topic, key=machine_key(machine), value=encode(message)))  # type: ignore[arg-type]
    metadata = [f.get(timeout=30) for f in futures]
    producer.close()
    # Keyed by machine: every PMP-001 message landed in one partition, in send order.
    pmp = [m for m, msg in zip(metadata, messages, strict=True) if getattr(msg, "machine_id", None) == "PMP-001"]
    assert len(pmp) >= 6
    assert len({m.partition for m in pmp}) == 1
    assert [m.offset for m in pmp] == sorted(m.offset for m in pmp)

    group = f"g-{unique}"
    consumer = make_consumer(kafka_settings, group, [topic])
    first = _drain(consumer, 4)
    assert len(first) == 4
    consumer.commit()  # manual commit of exactly what was consumed
    consumer.close()

    consumer = make_consumer(kafka_settings, group, [topic])
    rest = _drain(consumer, len(messages) - 4)
    extra = _drain(consumer, 1, timeout_s=3)
    consumer.close()
    assert extra == [], "nothing beyond the produced messages"
    seen = [(r.partition, r.offset) for r in first + rest]  # type: ignore[attr-defined]
    assert len(seen) == len(set(seen)) == len(messages), "resumed exactly after the commit: no loss, no repeat"
    decoded = sorted((decode(r.value) for r in first + rest), key=lambda m: m.kind)  # type: ignore[attr-defined]
    assert decoded == sorted(messages, key=lambda m: m.kind)  # type: ignore[attr-defined]


def test_uncommitted_messages_are_redelivered(kafka_settings: KafkaSettings, unique: str) -> None:
    topic = f"t-{unique}.redeliver"
    ensure_topics(kafka_settings, [TopicSpec(topic, partitions=1)])
    producer = make_producer(kafka_settings)
    for i in range(5):
        producer.send(topic, key=b"PMP-001", value=f"{i}".encode()).get(timeout=30)
    producer.close()
    group = f"g-{unique}"
    consumer = make_consumer(kafka_settings, group, [topic])
    got = _drain(consumer, 5)
    consumer.close()  # closed without commit: a crash before the downstream write succeeded
    consumer = make_consumer(kafka_settings, group, [topic])
    again = _drain(consumer, 5)
    consumer.close()
    assert [r.value for r in again] == [r.value for r in got] == [f"{i}".encode() for i in range(5)]  # type: ignore[attr-defined]
