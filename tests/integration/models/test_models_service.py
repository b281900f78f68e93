"""The models service against the real broker: predictions and drift out, state restored from the changelog."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from models.pipeline import FleetModel
from models.service import ModelService
from models.synthetic import WINDOW_S, pump_vector
from vigil.bus import TopicSpec, changelog_topic, ensure_topics, machine_key, make_producer
from vigil.config import KafkaSettings, Topics, VigilConfig
from vigil.contracts import DriftEvent, FeatureVector, MaintenanceEvent, Prediction, encode
from vigil.testing import read_all

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def vectors(count: int, seed: int = 1) -> list[FeatureVector]:
    rng = random.Random(seed)
    out = []
    for k in range(count):
        wear = max(0.0, (k - 120) * 0.008)  # ~7 h of wear: the level alert, not a short trend, decides
        # A stuck transmitter: the same value, no spread, for three windows (while the other sensors move).
        stuck = {"flow.std": 0.0, "flow.mean": 95.0, "flow.max": 95.0} if 100 <= k < 103 else None
        end = T0 + timedelta(seconds=WINDOW_S * (k + 1))
        out.append(pump_vector("PMP-001", end, load=0.6 + 0.1 * (k // 10 % 4), wear=wear, rng=rng, overrides=stuck))
    return out


@pytest.fixture
def config(example_config: VigilConfig, kafka_settings: KafkaSettings, topics: Topics) -> VigilConfig:
    topics = topics.model_copy(update={"audit": f"{topics.features}.audit"})
    cfg = example_config.model_copy(update={"kafka": kafka_settings, "topics": topics})
    # One partition, so the order across machines and topics is the broker's, identical in every run.
    ensure_topics(kafka_settings, [TopicSpec(topics.features, 1), TopicSpec(topics.maintenance, 1)])
    return cfg


def produce(config: VigilConfig, messages: list[FeatureVector | MaintenanceEvent]) -> None:
    producer = make_producer(config.kafka)
    try:
        for m in messages:
            topic = config.topics.features if isinstance(m, FeatureVector) else config.topics.maintenance
            producer.send(topic, key=machine_key(m.machine_id), value=encode(m)).get(timeout=30)
    finally:
        producer.close()


def messages(config: VigilConfig, topic: str) -> list[object]:
    """Every message of ``topic`` (the service has stopped: read to its end, so a duplicate is seen too)."""
    return read_all(config.kafka, [topic])


def reference(config: VigilConfig, items: list[FeatureVector]) -> dict[datetime, str]:
    model = FleetModel(config.models, config.machines_by_id, config.machine_types)
    out = {}
    for fv in items:
        p = model.process(fv).prediction
        assert p is not None
        out[p.ts] = p.model_dump_json()
    return out


def run_service(config: VigilConfig, group: str, **kwargs: object) -> ModelService:
    service = ModelService(config, group)
    service.setup()
    try:
        service.run(**kwargs)  # type: ignore[arg-type]
    finally:
        service.close()
    return service


def test_service_predicts_reports_sensor_faults_and_learns_from_maintenance(config: VigilConfig, unique: str) -> None:
    items = vectors(160)
    failure = MaintenanceEvent(machine_id="PMP-001", ts=items[-1].window_end, event="failure")
    produce(config, [*items, failure])
    service = run_service(config, f"g-{unique}", idle_exit_s=6.0)
    assert service.restored == "fresh"
    predictions = [m for m in messages(config, config.topics.predictions) if isinstance(m, Prediction)]
    assert len(predictions) == 160
    assert {p.ts for p in predictions} == {fv.window_end for fv in items}
    assert predictions[0].cold_start and not predictions[-1].cold_start
    assert predictions[-1].decision == "alert" and predictions[-1].contributions
    drift = [m for m in messages(config, config.topics.drift) if isinstance(m, DriftEvent)]
    assert any(d.event == "sensor_fault" and d.target == "flow" for d in drift)
    assert service.model.type_memory("pump").classifier.n_positive > 0  # the failure labelled the last 48 h


def test_restart_restores_state_and_predicts_like_an_uninterrupted_run(config: VigilConfig, unique: str) -> None:
    items = vectors(200, seed=7)
    produce(config, list(items))
    group = f"g-{unique}"
    first = run_service(config, group, max_records=120)
    assert first.predictions == 120
    second = run_service(config, group, max_records=80)  # the rest of the input
    assert second.restored == "restored" and second.predictions == 80
    published = [m for m in messages(config, config.topics.predictions) if isinstance(m, Prediction)]
    assert len(published) == 200  # nothing lost, nothing twice
    assert {p.ts: p.model_dump_json() for p in published} == reference(config, items)


def test_unreadable_checkpoint_is_reported_and_rebuilt_by_replay(config: VigilConfig, unique: str) -> None:
    items = vectors(130, seed=3)
    produce(config, list(items[:100]))
    group = f"g-{unique}"
    run_service(config, group, idle_exit_s=6.0)
    producer = make_producer(config.kafka)
    try:
        topic = changelog_topic(config.topics, "models").name
        producer.send(topic, key=f"{group}/header".encode(), value=b"\x00not a checkpoint").get(timeout=30)
    finally:
        producer.close()
    produce(config, list(items[100:]))
    rebuilt = run_service(config, group, idle_exit_s=6.0)
    assert rebuilt.restored == "rebuilt"
    assert rebuilt.predictions == 30  # the replayed 100 rebuilt the models without being published again
    published = [m for m in messages(config, config.topics.predictions) if isinstance(m, Prediction)]
    assert len(published) == 130
    assert {p.ts: p.model_dump_json() for p in published} == reference(config, items)
