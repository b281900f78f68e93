"""The transactional producer against the real broker: commit, abort, offsets in the transaction, zombie fencing."""

from __future__ import annotations

import time

import pytest
from kafka import OffsetAndMetadata, TopicPartition

from vigil.bus import TopicSpec, ensure_topics, make_producer
from vigil.config.connections import KafkaSettings, Topics
from vigil.exceptions import ProducerFenced
from vigil.transactions import TransactionalProducer, make_read_committed_consumer

pytestmark = pytest.mark.integration


def _read_all(kafka: KafkaSettings, topic: str, timeout_s: float = 20.0) -> list[bytes]:
    consumer = make_read_committed_consumer(kafka, None, client_id="txn-test-reader")
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in records]
        return values
    finally:
        consumer.close(autocommit=False)


def test_committed_is_seen_aborted_is_not_and_offsets_commit_with_the_outputs(
    kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    ensure_topics(kafka_settings, [TopicSpec(topics.readings, 1), TopicSpec(topics.features, 1)])
    plain = make_producer(kafka_settings)
    for i in range(3):
        plain.send(topics.readings, value=b"in-%d" % i)
    plain.flush()
    plain.close()
    group = f"g-{unique}"
    consumer = make_read_committed_consumer(kafka_settings, group, [topics.readings])
    tx = TransactionalProducer(kafka_settings, group, "test")
    try:
        tx.assign([0])
        assert tx.transactional_id == f"{group}-test-p0"
        tx.send(topics.features, value=b"aborted")
        tx.abort()
        tx.send(topics.features, value=b"kept")
        tp = TopicPartition(topics.readings, 0)
        assert tx.commit({tp: OffsetAndMetadata(2, "", -1)}, group) is True
        assert tx.commit({}, group) is False
        assert _read_all(kafka_settings, topics.features) == [b"kept"]
        assert consumer.committed(tp) == 2
    finally:
        tx.close()
        consumer.close(autocommit=False)


def test_a_restarted_owner_aborts_the_zombies_open_transaction_and_fences_it(
    kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    ensure_topics(kafka_settings, [TopicSpec(topics.features, 1)])
    group = f"g-{unique}"
    zombie = TransactionalProducer(kafka_settings, group, "test")
    zombie.assign([0, 1])
    zombie.send(topics.features, value=b"zombie")
    zombie.flush()
    heir = TransactionalProducer(kafka_settings, group, "test")
    try:
        heir.assign([0])
        heir.send(topics.features, value=b"heir")
        heir.commit({}, group)
        # The zombie's open transaction was aborted by the heir's init_transactions: only the heir's record is
        # visible, at once (not after transaction_timeout_ms), and the zombie can no longer commit.
        assert _read_all(kafka_settings, topics.features) == [b"heir"]
        with pytest.raises(ProducerFenced):
            zombie.send(topics.features, value=b"late")
            zombie.commit({}, group)
    finally:
        heir.close()
        zombie.close()
