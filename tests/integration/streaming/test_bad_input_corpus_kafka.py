"""The bad-input corpus sent straight to a real readings topic (past the collector), through the real feature
worker: every bad record is dead-lettered with its reason or flagged with its reason (counted, the value unusable),
the worker never stops, and the good readings' vectors are exactly the reference's."""

from __future__ import annotations

import base64
import importlib.util
import sys
import threading
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from features.service import FeatureService
from features.vector import window_engine
from vigil.bus import TopicSpec, ensure_topics, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics, VigilConfig, load_config
from vigil.contracts import DeadLetter, FeatureVector, ReadingBatch, Sample, decode, encode
from vigil.metrics import ServiceMetrics
from vigil.testing import TopicReader, raw, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def _corpus() -> ModuleType:
    path = ROOT / "tests" / "unit" / "streaming" / "test_bad_input_corpus.py"
    spec = importlib.util.spec_from_file_location("bad_input_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_input_corpus"] = module
    spec.loader.exec_module(module)
    return module


corpus = _corpus()


def make_config(kafka: KafkaSettings, topics: Topics, group: str) -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    windows = {"size_s": 60, "grace_s": 10, "idle_timeout_s": 3600, "checkpoint_interval_s": 1.0, "group_id": group}
    return load_config(
        environ={},
        data={
            **plant,
            "kafka": {**kafka.model_dump(), "partitions": 1},
            "topics": topics.model_dump(),
            "windows": windows,
        },
    )


def good_batches() -> list[ReadingBatch]:
    """PMP-001 at 1 Hz for 320 s, every sensor inside its range: five windows close."""
    out = []
    for start in range(0, 320, 10):
        samples = [
            Sample(sensor=sensor, ts=datetime.fromtimestamp(T0 + t + k * 0.01, UTC), value=level + (t % 13) * 0.37)
            for t in range(start, start + 10)
            for k, (sensor, level) in enumerate(
                [("bearing_temp", 61.0), ("flow", 120.0), ("pressure", 6.0), ("speed", 1480.0)]
            )
        ]
        out.append(ReadingBatch(machine_id="PMP-001", samples=samples))
    return out


def test_the_bad_input_corpus_is_dead_lettered_or_flagged_and_good_vectors_are_unchanged(
    kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    ensure_topics(kafka_settings, [TopicSpec(topics.readings, 1)])
    config = make_config(kafka_settings, topics, f"g-{unique}")
    good = good_batches()
    # The corpus on another machine (PMP-002, the same type), so that PMP-001's vectors hold only good readings.
    cases = corpus.CASES
    producer = make_producer(kafka_settings)
    sent = []
    for i, batch in enumerate(good):
        producer.send(topics.readings, key=b"PMP-001", value=encode(batch))
        if i < len(cases):
            case = cases[i]
            payload = case.payload.replace(b"PMP-001", b"PMP-002") if case.payload is not None else None
            sent.append((producer.send(topics.readings, key=b"PMP-001", value=payload), case, payload))
    producer.flush()
    offsets = [(future.get(30).offset, case, payload) for future, case, payload in sent]
    producer.close()
    reference = window_engine(config)
    expected = {v.window_start: v for b in good for v in reference.add_batch(b)}
    assert len(expected) == 5

    metrics = ServiceMetrics("features")
    service = FeatureService(config, metrics=metrics)
    features = TopicReader(kafka_settings, [topics.features], raw)
    dead = TopicReader(kafka_settings, [topics.dead_letter], raw)
    to_dead = [o for o in offsets if o[1].refused is not None or o[1].partial is not None]
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run(stop)
        except BaseException as exc:  # a crash is what this test looks for
            errors.append(exc)

    service.setup()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: (len(dead.records) >= len(to_dead) and len(features.records) >= len(expected)) or bool(errors),
            120,
            "dead letters and feature vectors",
        )
        assert thread.is_alive() and not errors, errors  # 0 crashes
    finally:
        stop.set()
        thread.join(60)
        service.close()
        features.close()
        dead.close()

    letters = {d.offset: d for d in (decode(r.value) for r in dead.records)}
    assert all(isinstance(d, DeadLetter) and d.service == "features" for d in letters.values())
    outcomes = []
    for offset, case, payload in offsets:
        letter = letters.get(offset)
        if case.refused is not None or case.partial is not None:
            expected_reason = case.refused or case.partial
            assert letter is not None, case.name
            assert letter.reason == expected_reason and letter.error, (case.name, letter.error)
            assert base64.b64decode(letter.raw) == (payload or b"")
            outcomes.append((case.name, "dead letter", letter.reason))
        else:
            assert letter is None, case.name
            outcomes.append((case.name, "flagged", case.flagged))
    flagged = [c for c in cases if c.flagged is not None]
    # Counted by reason in the worker: every flagged reading (a record may hold more than one).
    counters = service.decoder.counters
    assert counters["out_of_range"] >= sum(1 for c in flagged if c.flagged == "out_of_range")
    assert counters["not_finite"] >= sum(1 for c in flagged if c.flagged == "not_finite")
    for reason in ("out_of_range", "not_finite"):  # and exported (reported at close)
        assert metrics.registry.get_sample_value("vigil_readings_flagged_total", {"reason": reason}) == counters[reason]
    assert len(outcomes) == len(cases)  # 100 %: each case dead-lettered or flagged with its reason

    vectors = [decode(r.value) for r in features.records]
    got = {v.window_start: v for v in vectors if isinstance(v, FeatureVector) and v.machine_id == "PMP-001"}
    assert sorted(got) == sorted(expected)
    for start, vector in expected.items():
        assert got[start] == vector  # the good readings' vectors, unchanged
