"""A fenced feature worker recovers instead of exiting: a second producer takes the worker's transactional id
(``init_transactions`` bumps its epoch, as a broker restart that aborted the worker's transaction does) twice
mid-stream, on the real broker; the worker goes back to its last commit with a new producer and goes on, and the
features topic read ``read_committed`` equals an uninterrupted run: 0 vectors missing, 0 extra, 0 different."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from features.service import FeatureService
from features.vector import window_engine
from vigil.bus import TopicSpec, ensure_topics, machine_key, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics, load_config
from vigil.contracts import FeatureVector, decode
from vigil.testing import TopicReader, raw, wait_for
from vigil.transactions import transactional_id

pytestmark = pytest.mark.integration

T0 = 1_764_000_000.0  # in the past, aligned to the windows
MACHINES = ["PMP-001", "PMP-002", "PMP-003", "PMP-004"]
SENSORS = ["bearing_temp", "vibration_rms", "motor_current", "pressure", "flow", "speed"]
FENCES = 2


def _messages(seconds: int, seed: int = 5) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    for t in range(0, seconds, 10):
        for machine in MACHINES:
            samples = [
                {
                    "sensor": sensor,
                    "ts": datetime.fromtimestamp(T0 + t + k * 2 + rng.random(), UTC).isoformat(),
                    "value": round(10 + i + rng.gauss(0, 1), 3),
                }
                for i, sensor in enumerate(SENSORS)
                for k in range(5)
            ]
            doc = {"v": 1, "kind": "reading_batch", "machine_id": machine, "samples": samples}
            out.append((machine_key(machine), json.dumps(doc).encode()))
    return out


def test_a_fenced_worker_goes_back_to_its_last_commit_and_on(
    kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    ensure_topics(
        kafka_settings,
        [TopicSpec(topics.readings, 2), TopicSpec(topics.features, 2), TopicSpec(topics.dead_letter, 2)],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_CONFIG": str(EXAMPLE_CONFIG),
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "VIGIL_KAFKA__PARTITIONS": "2",
            "VIGIL_KAFKA__LINGER_MS": "5",
            "VIGIL_WINDOWS__SIZE_S": "60",
            "VIGIL_WINDOWS__GRACE_S": "5",
            "VIGIL_WINDOWS__IDLE_TIMEOUT_S": "3600",
            "VIGIL_WINDOWS__CHECKPOINT_INTERVAL_S": "0.5",
            "VIGIL_WINDOWS__SESSION_TIMEOUT_S": "6",
            "VIGIL_WINDOWS__GROUP_ID": f"g-{unique}",
            "VIGIL_WINDOWS__WRITE_INFLUX": "false",
        }
    )
    env.update({f"VIGIL_TOPICS__{k.upper()}": v for k, v in topics.model_dump().items() if isinstance(v, str)})
    config = load_config(environ=env)
    messages = _messages(900)
    engine = window_engine(config)
    expected = {
        (v.machine_id, v.window_start.timestamp()): v
        for _, value in messages
        for v in engine.add_message(decode(value))
    }
    assert len(expected) > 40

    service = FeatureService(config, poll_timeout_ms=200)
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
    reader = TopicReader(kafka_settings, [topics.features], raw)  # read_committed
    producer = make_producer(kafka_settings)
    tid = transactional_id(config.windows.group_id, "features", [0, 1])
    assert tid is not None
    parts = [messages[len(messages) * i // (FENCES + 1) : len(messages) * (i + 1) // (FENCES + 1)] for i in range(3)]
    try:
        for n, part in enumerate(parts):
            seen = len(reader.records)
            for i, (key, value) in enumerate(part):
                producer.send(topics.readings, key=key, value=value)
                if i % 20 == 19:
                    producer.flush()
                    time.sleep(0.05)
            producer.flush()
            if n > 0:  # the worker notices the fence at its next transaction (these readings')
                wait_for(lambda n=n: service.stats.fenced >= n or bool(failed), 60, f"fence {n} noticed")
            if n < FENCES:
                wait_for(lambda seen=seen: len(reader.records) > seen, 60, f"vectors of part {n}")
                # The id's next owner: its init_transactions fences the worker's producer (epoch bumped).
                usurper = make_producer(kafka_settings, transactional_id=tid)
                usurper.init_transactions()
                usurper.close(timeout=5)
        wait_for(lambda: len(reader.records) >= len(expected) or bool(failed), 90, f"{len(expected)} vectors")
        time.sleep(2.0)  # anything extra would arrive now
    finally:
        stop.set()
        worker.join(60)
        service.close()
        producer.close()
        reader.close()
    assert not failed, failed
    assert service.stats.fenced == FENCES
    copies: Counter[tuple[str, float]] = Counter()
    got: dict[tuple[str, float], FeatureVector] = {}
    for record in reader.records:
        vector = decode(record.value)
        assert isinstance(vector, FeatureVector)
        key = (vector.machine_id, vector.window_start.timestamp())
        copies[key] += 1
        got[key] = vector
    missing = set(expected) - set(got)
    extra = [key for key, n in copies.items() if n > 1 or key not in expected]
    different = [key for key in set(expected) & set(got) if got[key] != expected[key]]
    assert (len(missing), len(extra), len(different)) == (0, 0, 0), (sorted(missing)[:5], extra[:5], different[:5])
