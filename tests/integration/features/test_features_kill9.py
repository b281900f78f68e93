"""``kill -9`` of the ``vigil features`` process mid-stream, several times, on the real broker: the features topic
read ``read_committed`` must equal an uninterrupted run over the same input (the window engine fed the same
messages in the same order per machine) - 0 vectors missing, 0 extra, 0 different."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from features.vector import window_engine
from vigil.bus import TopicSpec, ensure_topics, machine_key, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics, VigilConfig, load_config
from vigil.contracts import FeatureVector, decode
from vigil.testing import TopicReader, raw, read_all, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_764_000_000.0  # in the past, aligned to the windows (as plant data is: see windows.max_clock_skew_s)
MACHINES = ["PMP-001", "PMP-002", "PMP-003", "PMP-004", "PMP-005", "PMP-006"]
SENSORS = ["bearing_temp", "vibration_rms", "motor_current", "pressure", "flow", "speed"]
KILLS = 3


def _messages(seconds: int, seed: int = 3) -> list[tuple[bytes, bytes]]:
    """(key, value): every machine's six sensors every 2 s, 5 readings of a sensor per ``reading_batch``."""
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


def _env(kafka: KafkaSettings, topics: Topics, group: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_CONFIG": str(EXAMPLE_CONFIG),
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "VIGIL_KAFKA__PARTITIONS": "2",
            "VIGIL_KAFKA__LINGER_MS": "5",
            "VIGIL_WINDOWS__SIZE_S": "60",
            "VIGIL_WINDOWS__GRACE_S": "5",
            "VIGIL_WINDOWS__IDLE_TIMEOUT_S": "3600",
            "VIGIL_WINDOWS__CHECKPOINT_INTERVAL_S": "0.5",
            "VIGIL_WINDOWS__SESSION_TIMEOUT_S": "6",
            "VIGIL_WINDOWS__GROUP_ID": group,
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key, value in topics.model_dump().items():
        if isinstance(value, str):
            env[f"VIGIL_TOPICS__{key.upper()}"] = value
    return env


def _reference(config: VigilConfig, messages: list[tuple[bytes, bytes]]) -> dict[tuple[str, float], FeatureVector]:
    engine = window_engine(config)
    out = [v for _, value in messages for v in engine.add_message(decode(value))]
    return {(v.machine_id, v.window_start.timestamp()): v for v in out}


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "features", "--metrics-port", "-1"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_killed_three_times_mid_stream_the_committed_vectors_equal_an_uninterrupted_run(
    kafka_settings: KafkaSettings, topics: Topics, unique: str, tmp_path: Path
) -> None:
    ensure_topics(
        kafka_settings,
        [TopicSpec(topics.readings, 2), TopicSpec(topics.features, 2), TopicSpec(topics.dead_letter, 2)],
    )
    env = _env(kafka_settings, topics, f"g-{unique}")
    config = load_config(environ=env)
    messages = _messages(1800)
    expected = _reference(config, messages)
    assert len(expected) > 100

    segments = [
        messages[len(messages) * i // (KILLS + 1) : len(messages) * (i + 1) // (KILLS + 1)] for i in range(KILLS + 1)
    ]

    def feed(part: list[tuple[bytes, bytes]]) -> None:
        producer = make_producer(kafka_settings)
        try:
            for i, (key, value) in enumerate(part):
                producer.send(topics.readings, key=key, value=value)
                if i % 20 == 19:
                    producer.flush()
                    time.sleep(0.15)
            producer.flush()
        finally:
            producer.close()

    log = tmp_path / "features.log"
    reader = TopicReader(kafka_settings, [topics.features], raw)  # read_committed
    rng = random.Random(7)
    proc = _start(env, log)
    feeder: threading.Thread | None = None
    try:
        for n, part in enumerate(segments):
            # Each (re)started worker first restores; then its part of the stream flows, and it is killed after it
            # committed some vectors (checkpoints every 0.5 s), while readings still flow: a transaction is open.
            wait_for(lambda n=n: log.read_text().count("restored window state of") > n, 90, f"worker {n} assigned")
            seen = len(reader.records)
            feeder = threading.Thread(target=feed, args=(part,))
            feeder.start()
            if n < KILLS:
                wait_for(lambda seen=seen: len(reader.records) > seen, 60, f"worker {n}'s first commit")
                time.sleep(rng.uniform(0.2, 1.0))
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                feeder.join(60)
                proc = _start(env, log)
        wait_for(lambda: len(reader.records) >= len(expected), 90, f"{len(expected)} vectors")
    finally:
        if feeder is not None:
            feeder.join(60)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        reader.close()
    text = log.read_text()
    assert len(re.findall(r"restored window state of [1-9]\d* machine", text)) >= KILLS, text[-3000:]
    got: dict[tuple[str, float], FeatureVector] = {}
    copies: Counter[tuple[str, float]] = Counter()
    # The worker has stopped: its topic is complete, read to its end (anything extra included).
    for record in read_all(kafka_settings, [topics.features], raw):
        vector = decode(record.value)
        assert isinstance(vector, FeatureVector)
        key = (vector.machine_id, vector.window_start.timestamp())
        copies[key] += 1
        got[key] = vector
    missing = set(expected) - set(got)
    extra = [key for key, n in copies.items() if n > 1 or key not in expected]
    different = [key for key in set(expected) & set(got) if got[key] != expected[key]]
    assert (len(missing), len(extra), len(different)) == (0, 0, 0), (sorted(missing)[:5], extra[:5], different[:5])
