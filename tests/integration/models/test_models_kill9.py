"""``kill -9`` of the ``vigil models`` process mid-stream, several times, on the real broker: the predictions topic
read ``read_committed`` must equal an uninterrupted run over the same feature vectors (a
:class:`~models.pipeline.FleetModel` fed them in topic order) - 0 predictions missing, 0 extra, 0 with another
value (p_failure, anomaly score, threshold, decision, reasons: the whole message).

Predictions are committed within 0.1 s (``models.commit_latency_s``: outputs and offsets, no state) while the state
is checkpointed every 1.5 s, and each kill lands at least one state checkpoint after the worker's first visible
prediction: a restarted worker restores state older than the committed offsets and must recompute the predictions
between them without publishing them again."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models.pipeline import FleetModel
from models.synthetic import WINDOW_S, pump_vector
from vigil.bus import TopicSpec, ensure_topics, machine_key, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics, load_config
from vigil.contracts import FeatureVector, Prediction, decode, encode
from vigil.testing import TopicReader, raw, read_all, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 3, 2, tzinfo=UTC)
MACHINES = ["PMP-001", "PMP-002", "PMP-003", "PMP-004"]
WINDOWS = 150
KILLS = 3


def _vectors() -> list[FeatureVector]:
    """Every pump's windows in time order, interleaved; PMP-002 wears (its scores move), the others are healthy."""
    rngs = {m: random.Random(i) for i, m in enumerate(MACHINES)}
    return [
        pump_vector(
            m,
            T0 + timedelta(seconds=WINDOW_S * (k + 1)),
            load=0.8,
            wear=0.6 * k / WINDOWS if m == "PMP-002" else 0.0,
            rng=rngs[m],
        )
        for k in range(WINDOWS)
        for m in MACHINES
    ]


def _env(kafka: KafkaSettings, topics: Topics) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_CONFIG": str(EXAMPLE_CONFIG),
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "VIGIL_KAFKA__PARTITIONS": "1",
            "VIGIL_KAFKA__LINGER_MS": "5",
            "VIGIL_MODELS__CHECKPOINT_INTERVAL_S": "1.5",
            "VIGIL_MODELS__COMMIT_LATENCY_S": "0.1",
            "VIGIL_MODELS__SESSION_TIMEOUT_S": "6",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key, value in topics.model_dump().items():
        if isinstance(value, str):
            env[f"VIGIL_TOPICS__{key.upper()}"] = value
    return env


def _start(env: dict[str, str], group: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "models", "--group", group, "--metrics-port", "-1"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_killed_three_times_mid_stream_the_committed_predictions_equal_an_uninterrupted_run(
    kafka_settings: KafkaSettings, topics: Topics, unique: str, tmp_path: Path
) -> None:
    # One partition: one worker sees every pump in topic order, as the reference does (the per-type models are
    # shared by the pumps, so the order of their windows matters).
    ensure_topics(kafka_settings, [TopicSpec(topics.features, 1), TopicSpec(topics.maintenance, 1)])
    env = _env(kafka_settings, topics)
    config = load_config(environ=env)
    vectors = _vectors()
    model = FleetModel(config.models, config.machines_by_id, config.machine_types)
    expected: dict[tuple[str, datetime], Prediction] = {}
    for fv in vectors:
        prediction = model.process(fv).prediction
        if prediction is not None:
            expected[(prediction.machine_id, prediction.ts)] = prediction
    assert len(expected) == len(vectors)
    assert len({round(p.anomaly_score or 0.0, 6) for p in expected.values()}) > 100  # values that can differ

    segments = [
        vectors[len(vectors) * i // (KILLS + 1) : len(vectors) * (i + 1) // (KILLS + 1)] for i in range(KILLS + 1)
    ]

    def feed(part: list[FeatureVector]) -> None:
        producer = make_producer(kafka_settings)
        try:
            for i, fv in enumerate(part):
                producer.send(topics.features, key=machine_key(fv.machine_id), value=encode(fv))
                if i % 10 == 9:
                    producer.flush()
                    time.sleep(0.3)
            producer.flush()
        finally:
            producer.close()

    group = f"g-{unique}"
    log = tmp_path / "models.log"
    reader = TopicReader(kafka_settings, [topics.predictions], raw)  # read_committed
    rng = random.Random(11)
    proc = _start(env, group, log)
    feeder: threading.Thread | None = None
    try:
        for n, part in enumerate(segments):
            # Each (re)started worker first owns its partition; then its part of the stream flows, and the kill
            # lands while it does (a transaction is open, and predictions were committed after the last state
            # checkpoint: those commits come every 0.1 s, the checkpoints every 1.5 s).
            wait_for(lambda n=n: log.read_text().count("models: assigned partitions") > n, 90, f"worker {n} assigned")
            seen = len(reader.records)
            feeder = threading.Thread(target=feed, args=(part,))
            feeder.start()
            if n < KILLS:
                # Killed after it checkpointed the state of some of its part (so the next one restores it: more
                # than one checkpoint interval after its first commit), while the rest flows in.
                wait_for(lambda seen=seen: len(reader.records) > seen, 60, f"worker {n}'s first commit")
                time.sleep(rng.uniform(1.7, 2.6))
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                feeder.join(60)
                proc = _start(env, group, log)
        wait_for(lambda: len(reader.records) >= len(expected), 120, f"{len(expected)} predictions")
    finally:
        if feeder is not None:
            feeder.join(60)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        reader.close()
    text = log.read_text()
    assert len(re.findall(r"restored [1-9]\d* machine", text)) >= KILLS, text[-3000:]  # every restart restored
    got: dict[tuple[str, datetime], Prediction] = {}
    copies: Counter[tuple[str, datetime]] = Counter()
    # The worker has stopped: its topic is complete, read to its end (anything extra included).
    for record in read_all(kafka_settings, [topics.predictions], raw):
        prediction = decode(record.value)
        assert isinstance(prediction, Prediction)
        key = (prediction.machine_id, prediction.ts)
        copies[key] += 1
        got[key] = prediction
    missing = set(expected) - set(got)
    extra = [key for key, n in copies.items() if n > 1 or key not in expected]
    different = [key for key in set(expected) & set(got) if got[key] != expected[key]]
    assert (len(missing), len(extra), len(different)) == (0, 0, 0), (sorted(missing)[:5], extra[:5], different[:3])
