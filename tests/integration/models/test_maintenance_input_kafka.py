"""The issue's bad maintenance records sent straight to a real maintenance topic, through the real model service:
each one is dead-lettered with its reason, the service keeps going, and a good failure still labels the windows."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest

from models.service import ModelService
from models.synthetic import WINDOW_S, pump_vector
from vigil.bus import TopicSpec, ensure_topics, machine_key, make_producer
from vigil.config import KafkaSettings, Topics, VigilConfig
from vigil.contracts import DeadLetter, FeatureVector, MaintenanceEvent, encode
from vigil.testing import consume

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def test_bad_maintenance_records_are_dead_lettered_and_a_good_failure_still_labels(
    example_config: VigilConfig, kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    topics = topics.model_copy(update={"audit": f"{topics.features}.audit"})
    config = example_config.model_copy(update={"kafka": kafka_settings, "topics": topics})
    ensure_topics(kafka_settings, [TopicSpec(topics.features, 1), TopicSpec(topics.maintenance, 1)])
    rng = random.Random(3)
    items = [
        pump_vector("PMP-001", T0 + timedelta(seconds=WINDOW_S * (k + 1)), load=0.7, wear=0.0, rng=rng)
        for k in range(60)
    ]
    last = items[-1].window_end
    good = MaintenanceEvent(machine_id="PMP-001", ts=last, event="failure", event_id="wo-1")
    bad: list[tuple[object, str]] = [
        (good.model_copy(update={"machine_id": "PMP-999", "event_id": "wo-2"}), "unknown_machine"),
        (good.model_copy(update={"ts": datetime(2999, 1, 1, tzinfo=UTC), "event_id": "wo-3"}), "implausible_time"),
        (
            good.model_copy(update={"ts": datetime(1970, 1, 1, tzinfo=UTC), "event": "repair", "event_id": "wo-4"}),
            "implausible_time",
        ),
        # 5 MB does not fit a default broker's records (1 MB); 500 kB is as oversized for a label.
        (good.model_copy(update={"text": "x" * 500_000, "event_id": "wo-5"}), "oversized"),
        (items[5], "kind"),  # a feature vector on the maintenance topic
    ]
    producer = make_producer(kafka_settings)
    sent: list[tuple[int, bytes, str]] = []
    try:
        for fv in items:
            producer.send(topics.features, key=machine_key(fv.machine_id), value=encode(fv)).get(timeout=30)
        for message, reason in bad:
            payload = encode(message)  # type: ignore[arg-type]
            meta = producer.send(topics.maintenance, key=b"PMP-001", value=payload).get(timeout=30)
            sent.append((meta.offset, payload, reason))
        producer.send(topics.maintenance, key=b"PMP-001", value=encode(good)).get(timeout=30)
    finally:
        producer.close()

    service = ModelService(config, f"g-{unique}")
    service.setup()
    try:
        service.run(idle_exit_s=6.0)  # returns when idle: it did not stop on any record
    finally:
        service.close()

    letters = [
        m
        for m in consume(kafka_settings, [topics.dead_letter], lambda out: len(out) >= len(bad), timeout_s=60)
        if isinstance(m, DeadLetter)
    ]
    by_offset = {d.offset: d for d in letters if d.source_topic == topics.maintenance}
    for offset, payload, reason in sent:
        letter = by_offset.get(offset)
        assert letter is not None, reason
        assert letter.reason == reason and letter.error
        assert base64.b64decode(letter.raw) == payload
    assert len(by_offset) == len(bad)  # the good failure is not among them
    assert service.model.type_memory("pump").classifier.n_positive > 0  # and it labelled the last windows
    assert all(isinstance(fv, FeatureVector) for fv in items)
