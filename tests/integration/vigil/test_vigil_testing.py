"""``vigil.testing``, the helpers the integration tests read topics back with, against the real broker."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.bus import TopicSpec, ensure_topics, make_producer
from vigil.config import KafkaSettings
from vigil.testing import TopicReader, consume, raw

pytestmark = pytest.mark.integration


def _send(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(kafka)
    try:
        for i, value in enumerate(values):
            producer.send(topic, key=f"k{i}".encode(), value=value)
        producer.flush()
    finally:
        producer.close()


def test_consume_returns_every_record_of_every_partition_once_the_condition_holds(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"t-{unique}.testing"
    ensure_topics(kafka_settings, [TopicSpec(topic, partitions=3)])
    _send(kafka_settings, topic, [f"v{i}".encode() for i in range(30)])
    got = consume(kafka_settings, [topic], lambda out: len(out) >= 30, map=lambda r: r.value, settle_s=1)
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(30))


def test_a_topic_created_after_the_reader_started_is_read(kafka_settings: KafkaSettings, unique: str) -> None:
    topic = f"t-{unique}.later"
    with TopicReader(kafka_settings, [topic], raw) as reader:
        assert reader.wait(lambda out: bool(out), timeout_s=2) == []
        ensure_topics(kafka_settings, [TopicSpec(topic, partitions=2)])
        _send(kafka_settings, topic, [b"a", b"b", b"c"])
        got = reader.wait(lambda out: len(out) >= 3, timeout_s=60)
    assert sorted(r.value for r in got) == [b"a", b"b", b"c"]


def test_an_assertion_in_map_fails_the_test_instead_of_a_silent_timeout(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"t-{unique}.bad"
    ensure_topics(kafka_settings, [TopicSpec(topic, partitions=1)])
    _send(kafka_settings, topic, [b"not a message"])

    def strict(record: Any) -> Any:
        assert record.value.startswith(b"{"), record.value
        return record

    with pytest.raises(AssertionError, match="not a message"):
        consume(kafka_settings, [topic], lambda out: len(out) >= 1, map=strict, timeout_s=60)
