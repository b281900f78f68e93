"""A fenced model worker recovers instead of exiting: a second producer takes the worker's transactional id
(``init_transactions`` bumps its epoch, as a broker restart that aborted the worker's transaction does) twice
mid-stream, on the real broker; the worker goes back to its last commit with a new producer and goes on, and the
predictions topic read ``read_committed`` equals an uninterrupted run: 0 missing, 0 extra, 0 different."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from models.pipeline import FleetModel
from models.service import ModelService
from models.synthetic import WINDOW_S, pump_vector
from vigil.bus import TopicSpec, ensure_topics, machine_key, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics, load_config
from vigil.contracts import Prediction, decode, encode
from vigil.testing import TopicReader, raw, wait_for
from vigil.transactions import transactional_id

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, tzinfo=UTC)
MACHINES = ["PMP-001", "PMP-002", "PMP-003"]
WINDOWS = 60
FENCES = 2


def test_a_fenced_model_worker_goes_back_to_its_last_commit_and_on(
    kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    ensure_topics(kafka_settings, [TopicSpec(topics.features, 1), TopicSpec(topics.maintenance, 1)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_CONFIG": str(EXAMPLE_CONFIG),
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "VIGIL_KAFKA__PARTITIONS": "1",
            "VIGIL_KAFKA__LINGER_MS": "5",
            "VIGIL_MODELS__CHECKPOINT_INTERVAL_S": "0.5",
            "VIGIL_MODELS__SESSION_TIMEOUT_S": "6",
        }
    )
    env.update({f"VIGIL_TOPICS__{k.upper()}": v for k, v in topics.model_dump().items() if isinstance(v, str)})
    config = load_config(environ=env)
    rngs = {m: random.Random(i) for i, m in enumerate(MACHINES)}
    vectors = [
        pump_vector(m, T0 + timedelta(seconds=WINDOW_S * (k + 1)), load=0.8, wear=0.5 * k / WINDOWS, rng=rngs[m])
        for k in range(WINDOWS)
        for m in MACHINES
    ]
    model = FleetModel(config.models, config.machines_by_id, config.machine_types)
    expected: dict[tuple[str, datetime], Prediction] = {}
    for fv in vectors:
        prediction = model.process(fv).prediction
        if prediction is not None:
            expected[(prediction.machine_id, prediction.ts)] = prediction
    assert len(expected) == len(vectors)

    group = f"g-{unique}"
    service = ModelService(config, group)
    service.setup()
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            service.run(stop)
        except BaseException as exc:  # the test fails on it below
            failed.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    reader = TopicReader(kafka_settings, [topics.predictions], raw)  # read_committed
    producer = make_producer(kafka_settings)
    tid = transactional_id(group, "models", [0])
    assert tid is not None
    parts = [vectors[len(vectors) * i // (FENCES + 1) : len(vectors) * (i + 1) // (FENCES + 1)] for i in range(3)]
    try:
        for n, part in enumerate(parts):
            seen = len(reader.records)
            for i, fv in enumerate(part):
                producer.send(topics.features, key=machine_key(fv.machine_id), value=encode(fv))
                if i % 10 == 9:
                    producer.flush()
                    time.sleep(0.1)
            producer.flush()
            if n > 0:  # the worker notices the fence at its next transaction (these vectors')
                wait_for(lambda n=n: service.fenced >= n or bool(failed), 60, f"fence {n} noticed")
            if n < FENCES:
                wait_for(lambda seen=seen: len(reader.records) > seen or bool(failed), 60, f"predictions of {n}")
                usurper = make_producer(kafka_settings, transactional_id=tid)
                usurper.init_transactions()
                usurper.close(timeout=5)
        wait_for(lambda: len(reader.records) >= len(expected) or bool(failed), 120, f"{len(expected)} predictions")
        time.sleep(2.0)  # anything extra would arrive now
    finally:
        stop.set()
        worker.join(60)
        service.close()
        producer.close()
        reader.close()
    assert not failed, failed
    assert service.fenced == FENCES
    got: dict[tuple[str, datetime], Prediction] = {}
    copies: Counter[tuple[str, datetime]] = Counter()
    for record in reader.records:
        prediction = decode(record.value)
        assert isinstance(prediction, Prediction)
        key = (prediction.machine_id, prediction.ts)
        copies[key] += 1
        got[key] = prediction
    missing = set(expected) - set(got)
    extra = [key for key, n in copies.items() if n > 1 or key not in expected]
    different = [key for key in set(expected) & set(got) if got[key] != expected[key]]
    assert (len(missing), len(extra), len(different)) == (0, 0, 0), (sorted(missing)[:5], extra[:5], different[:3])
