"""The feature worker against the real broker: reference features, SIGKILL recovery, rebalance, dead letters."""

from __future__ import annotations

import base64
import importlib.util
import math
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest

from features.service import FeatureService
from features.vector import window_engine
from ingest.publisher import encode_columns, encode_packed
from streaming.changelog import decode_checkpoint
from vigil.bus import TopicSpec, ensure_topics, machine_key, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics, VigilConfig, load_config
from vigil.contracts import DeadLetter, FeatureVector, Reading, ReadingBatch, Sample, decode, encode, is_packed
from vigil.exceptions import ConfigError
from vigil.testing import TopicReader, consume, raw, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SIZE, GRACE = 60.0, 10.0


def _oracle() -> ModuleType:
    spec = importlib.util.spec_from_file_location("streaming_oracle", Path(__file__).with_name("streaming_oracle.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["streaming_oracle"] = module
    spec.loader.exec_module(module)
    return module


oracle = _oracle()


def windows_settings(group: str) -> dict[str, Any]:
    return {
        "size_s": SIZE,
        "grace_s": GRACE,
        "idle_timeout_s": 3600,
        "checkpoint_interval_s": 1.0,
        "session_timeout_s": 8.0,
        "group_id": group,
    }


def make_config(kafka: KafkaSettings, topics: Topics, group: str, partitions: int = 2, **windows: Any) -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    # The oracle's streams run at levels 50-90 on every sensor; the worker applies the plant's valid ranges (a pump's
    # pressure is 0-25 bar), so this plant's pumps measure pressure on a wider scale.
    plant["machine_types"]["pump"]["sensors"]["pressure"]["range"]["max"] = 250.0
    kafka_data = {**kafka.model_dump(), "partitions": partitions}
    return load_config(
        environ={},
        data={
            **plant,
            "kafka": kafka_data,
            "topics": topics.model_dump(),
            "windows": {**windows_settings(group), **windows},
        },
    )


def plant_file() -> Path:
    """The example plant with the pump pressure range :func:`make_config` uses, for a worker subprocess."""
    text = EXAMPLE_CONFIG.read_text()
    old = 'pressure = { unit = "bar", range = { min = 0, max = 25 } }'
    assert old in text
    path = Path(tempfile.mkdtemp(prefix="vigil-plant-")) / "plant.toml"
    path.write_text(text.replace(old, 'pressure = { unit = "bar", range = { min = 0, max = 250 } }'))
    return path


def worker_env(kafka: KafkaSettings, topics: Topics, group: str, partitions: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_CONFIG": str(plant_file()),
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "VIGIL_KAFKA__PARTITIONS": str(partitions),
            "VIGIL_KAFKA__LINGER_MS": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key, value in topics.model_dump().items():
        if isinstance(value, str):
            env[f"VIGIL_TOPICS__{key.upper()}"] = value
    for key, value in windows_settings(group).items():
        env[f"VIGIL_WINDOWS__{key.upper()}"] = str(value)
    return env


class Worker:
    """``vigil features`` as a subprocess, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "features", "--metrics-port", "-1"],
            env=env,
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._out.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._out.close()
        return int(self.proc.returncode)


def batches(readings: list[Reading], size: int = 5) -> list[ReadingBatch]:
    """Consecutive readings of one machine as batches, keeping every machine's arrival order."""
    out: list[ReadingBatch] = []
    pending: dict[str, list[Reading]] = {}
    for r in readings:
        group = pending.setdefault(r.machine_id, [])
        group.append(r)
        if len(group) == size:
            out.append(_batch(r.machine_id, group))
            pending[r.machine_id] = []
    out += [_batch(m, g) for m, g in pending.items() if g]
    return out


def _batch(machine: str, readings: list[Reading]) -> ReadingBatch:
    samples = [Sample(sensor=r.sensor, ts=r.ts, value=r.value, quality=r.quality) for r in readings]
    return ReadingBatch(machine_id=machine, samples=samples)


def produce(
    kafka: KafkaSettings, topic: str, messages: list[ReadingBatch], pause: float = 0.0, form: str = "rows"
) -> None:
    """``form="columns"``/``"packed"``: each batch as the publisher's ``reading_columns`` message (JSON or packed)."""
    producer = make_producer(kafka)
    encoders = {"columns": encode_columns, "packed": encode_packed}
    try:
        for i, m in enumerate(messages):
            value = encoders[form](m.machine_id, list(m.readings())) if form in encoders else encode(m)
            producer.send(topic, key=machine_key(m.machine_id), value=value)
            if pause and i % 20 == 19:
                producer.flush()
                time.sleep(pause)
        producer.flush()
    finally:
        producer.close()


class Collector(TopicReader):
    """Reads a topic's records from the beginning in a background thread."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        super().__init__(kafka, [topic], raw)

    def vectors(self) -> list[tuple[FeatureVector, str]]:
        out = []
        for r in list(self.records):
            worker = dict(r.headers or []).get("worker", b"").decode()
            out.append((decode(r.value), worker))
        return out


def expected_vectors(config: VigilConfig, messages: list[ReadingBatch]) -> dict[tuple[str, float], FeatureVector]:
    engine = window_engine(config)
    out = [v for m in messages for v in engine.add_batch(m)]
    return {(v.machine_id, v.window_start.timestamp()): v for v in out}


def unique_by_window(got: list[tuple[FeatureVector, str]]) -> dict[tuple[str, float], FeatureVector]:
    by_key: dict[tuple[str, float], FeatureVector] = {}
    for v, _ in got:
        key = (v.machine_id, v.window_start.timestamp())
        if key in by_key:
            # At least once: a window may be emitted again after a crash, but always with the same content.
            assert by_key[key] == v, f"window {key} emitted twice with different features"
        by_key[key] = v
    return by_key


@pytest.fixture
def group(unique: str) -> str:
    return f"g-{unique}"


@pytest.fixture
def created(kafka_settings: KafkaSettings, topics: Topics) -> Iterator[Topics]:
    ensure_topics(kafka_settings, [TopicSpec(topics.readings, 2)])
    yield topics


def run_in_thread(service: FeatureService) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    service.setup()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


MACHINES = {
    "PMP-001": ["flow", "pressure", "speed", "bearing_temp"],
    "MTR-001": ["speed", "current", "winding_temp"],
    "CMP-001": ["speed", "oil_temp"],
}


@pytest.mark.parametrize("form", ["rows", "columns", "packed"])
def test_worker_features_equal_pandas_reference_with_late_out_of_order_duplicates(
    kafka_settings: KafkaSettings, created: Topics, group: str, form: str
) -> None:
    config = make_config(kafka_settings, created, group)
    readings = oracle.stream(21, MACHINES, seconds=600)
    messages = batches(readings)
    produce(kafka_settings, created.readings, messages, form=form)
    expected = expected_vectors(config, messages)
    sensors = {m: list(config.machines_by_id[m].sensors) for m in MACHINES}
    reference = oracle.reference([list(m.readings()) for m in messages], sensors, SIZE, GRACE)
    service = FeatureService(config)
    collector = Collector(kafka_settings, created.features)
    stop, thread = run_in_thread(service)
    try:
        wait_for(lambda: len(collector.records) >= len(expected), 90, f"{len(expected)} feature vectors")
    finally:
        stop.set()
        thread.join(60)
        service.close()
        collector.close()
    got = [v for v, _ in collector.vectors()]
    assert len(got) == len(expected)
    oracle.assert_matches(got, {k: reference[k] for k in expected})
    assert service.engine.stats.late > 0 and service.engine.stats.duplicates > 0
    # Late readings are routed, not dropped.
    assert service.stats.dead_letters == service.engine.stats.late


@pytest.mark.parametrize("size_s", [SIZE, 300.0], ids=["bases", "deltas"])
def test_worker_killed_mid_window_resumes_without_loss_or_double_counting(
    kafka_settings: KafkaSettings, created: Topics, group: str, tmp_path: Path, size_s: float
) -> None:
    """With 60 s windows one closes before nearly every checkpoint (bases); with 300 s windows the checkpoints
    between closes are deltas, and the second worker restores from a base and its deltas."""
    config = make_config(kafka_settings, created, group, size_s=size_s)
    messages = batches(oracle.stream(5, MACHINES, seconds=900, late=0.0), size=4)
    expected = expected_vectors(config, messages)
    env = worker_env(kafka_settings, created, group, 2)
    env["VIGIL_WINDOWS__SIZE_S"] = str(size_s)
    collector = Collector(kafka_settings, created.features)
    first = Worker(env, tmp_path / "first.log")
    try:
        third = len(messages) // 3
        produce(kafka_settings, created.readings, messages[:third])
        # Deltas: fed slowly enough that readings keep coming after the windows closed (a base), so the
        # checkpoints before the kill are deltas.
        pause = 0.05 if size_s == SIZE else 0.5
        feeder = threading.Thread(
            target=produce, args=(kafka_settings, created.readings, messages[third : 2 * third], pause)
        )
        feeder.start()
        wait_for(lambda: len(collector.records) >= 3, 90, "the first worker's first vectors")
        # At least one checkpoint, and readings after it (deltas: two checkpoints after the windows closed).
        time.sleep(1.5 if size_s == SIZE else 3.5)
        first.kill()
        feeder.join(60)
        produce(kafka_settings, created.readings, messages[2 * third :])
        second = Worker(env, tmp_path / "second.log")
        try:
            wait_for(lambda: len(unique_by_window(collector.vectors())) >= len(expected), 120, "all windows")
            time.sleep(1.0)
        finally:
            assert second.stop() == 0, second.text()
    finally:
        if first.proc.poll() is None:
            first.kill()
        collector.close()
    got = unique_by_window(collector.vectors())
    assert sorted(got) == sorted(expected)
    for key, vector in expected.items():
        assert got[key] == vector, key
    assert "restored window state of" in second.text()
    if size_s != SIZE:
        assert re.search(r"bases with [1-9]\d* delta records", second.text()), second.text()


def test_two_workers_split_partitions_through_a_rebalance(
    kafka_settings: KafkaSettings, topics: Topics, group: str, tmp_path: Path
) -> None:
    machines = {
        **MACHINES,
        "PMP-002": ["flow", "speed"],
        "MTR-002": ["speed", "current"],
        "CMP-002": ["speed", "oil_temp"],
    }
    ensure_topics(kafka_settings, [TopicSpec(topics.readings, 4)])
    config = make_config(kafka_settings, topics, group, partitions=4)
    messages = batches(oracle.stream(9, machines, seconds=900, late=0.0), size=4)
    expected = expected_vectors(config, messages)
    half = len(messages) // 2
    env = worker_env(kafka_settings, topics, group, 4)
    collector = Collector(kafka_settings, topics.features)
    a = Worker(env, tmp_path / "a.log")
    b: Worker | None = None
    try:
        produce(kafka_settings, topics.readings, messages[:half])
        wait_for(lambda: len(collector.records) >= 5, 90, "worker A's first vectors")
        b = Worker(env, tmp_path / "b.log")
        wait_for(lambda: "restored window state" in b.text() if b else False, 90, "worker B's assignment")
        rebalanced_at = len(collector.records)
        produce(kafka_settings, topics.readings, messages[half:])
        wait_for(lambda: len(unique_by_window(collector.vectors())) >= len(expected), 120, "all windows")
        time.sleep(1.0)
    finally:
        codes = [w.stop() for w in (a, b) if w is not None]
        collector.close()
    assert codes == [0, 0], a.text() + (b.text() if b else "")
    vectors = collector.vectors()
    got = unique_by_window(vectors)
    assert sorted(got) == sorted(expected)
    for key, vector in expected.items():
        assert got[key] == vector, key
    # Steady state after the rebalance: each machine's windows come from one worker only, and both work.
    after = vectors[rebalanced_at + 10 :]
    workers_of: dict[str, set[str]] = {}
    for v, worker in after:
        workers_of.setdefault(v.machine_id, set()).add(worker)
    assert all(len(w) == 1 for w in workers_of.values()), workers_of
    assert len(set().union(*workers_of.values())) == 2


_PACKED_OK: dict[str, Any] = {
    "v": 1,
    "kind": "reading_columns",
    "machine_id": "PMP-001",
    "sensors": ["flow"],
    "lengths": [1],
    "ts": struct.pack("<d", 1767225600.0),
    "value": struct.pack("<d", 1.0),
}
BAD = [
    (b"not json at all", "json"),
    (msgpack.packb(_PACKED_OK)[:-5], "packed"),  # truncated
    (msgpack.packb({**_PACKED_OK, "ts": struct.pack("<d", math.inf)}), "schema"),
    (msgpack.packb({**_PACKED_OK, "lengths": [2]}), "schema"),  # fewer numbers than readings
    (msgpack.packb({**_PACKED_OK, "v": 2}), "version"),
    (msgpack.packb({**_PACKED_OK, "units": None}), "schema"),  # present but nil (the fast path took it)
    (msgpack.packb({**_PACKED_OK, "ingest_ts": None}), "schema"),
    (b"\x81\xa1v" + b"\x91" * 50_000 + b"\xc0", "packed"),  # arrays nested 50,000 deep
    (msgpack.packb({**_PACKED_OK, "source": msgpack.ExtType(3, b"x")}), "packed"),  # no extension types
    (b"[1, 2, 3]", "json"),
    (b'{"v": 1, "kind": "reading_batch", "machine_id": "PMP-001", "samples": []}', "schema"),
    (
        b'{"v": 9, "kind": "reading", "machine_id": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1}',
        "version",
    ),
    (b'{"v": 1, "kind": "bogus"}', "kind"),
    (
        b'{"v": 1, "kind": "reading", "machine_id": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00", "value": 1}',
        "schema",
    ),
    (
        b'{"v": 1, "kind": "reading", "machine_id": "PMP 001!", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1}',
        "schema",
    ),
    (
        b'{"v": 1, "kind": "reading_batch", "machine_id": "PMP-001", "samples": [{"sensor": "flow", "ts": "2026-01-01T00:',
        "json",
    ),
    (
        b'{"v": 1, "kind": "reading_batch", "machine_id": "PMP-001", "samples": [{"sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": "high"}]}',
        "wrong_type",
    ),
    (b"\xff\xfe\x00garbage", "json"),
    (
        b'{"v": 1, "kind": "reading_batch", "machine_id": "PMP-001", "samples": [{"sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": 1, "extra": 2}]}',
        "schema",
    ),
]


def test_bad_messages_land_in_dead_letters_with_reasons_while_good_ones_flow(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    config = make_config(kafka_settings, created, group)
    good = batches(oracle.stream(4, {"PMP-001": ["flow", "speed"]}, seconds=300, late=0.0, duplicates=0.0))
    heartbeat_fv = FeatureVector(
        machine_id="PMP-001",
        machine_type="pump",
        window_start=good[0].samples[0].ts,
        window_end=good[0].samples[0].ts,
        features={},
    )
    corpus = [*BAD, (encode(heartbeat_fv), "kind")]
    producer = make_producer(kafka_settings)
    sent: list[tuple[int, bytes, str]] = []
    futures = []
    for i, message in enumerate(good):
        producer.send(created.readings, key=b"PMP-001", value=encode(message))
        if i < len(corpus):
            futures.append((producer.send(created.readings, key=b"PMP-001", value=corpus[i][0]), corpus[i]))
    producer.send(created.readings, key=b"PMP-001", value=None)  # a tombstone
    producer.flush()
    for future, (payload, reason) in futures:
        sent.append((future.get(30).offset, payload, reason))
    producer.close()
    expected = expected_vectors(config, good)
    service = FeatureService(config)
    features = Collector(kafka_settings, created.features)
    dead = Collector(kafka_settings, created.dead_letter)
    stop, thread = run_in_thread(service)
    try:
        wait_for(
            lambda: len(dead.records) >= len(corpus) + 1 and len(features.records) >= len(expected),
            90,
            "dead letters and feature vectors",
        )
    finally:
        stop.set()
        thread.join(60)
        service.close()
        features.close()
        dead.close()
    letters = [decode(r.value) for r in dead.records]
    assert all(isinstance(d, DeadLetter) and d.service == "features" for d in letters)
    by_offset = {d.offset: d for d in letters}
    for offset, payload, reason in sent:
        letter = by_offset[offset]
        assert letter.reason == reason, (payload, letter.error)
        assert base64.b64decode(letter.raw) == payload
        assert letter.source_topic == created.readings and letter.partition is not None and letter.error
    assert any("tombstone" in d.error for d in letters)
    got = unique_by_window(features.vectors())
    assert sorted(got) == sorted(expected)


def test_a_crash_before_the_transaction_commits_leaves_nothing_visible_and_the_restart_emits_each_vector_once(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    config = make_config(kafka_settings, created, group)
    messages = batches(oracle.stream(8, {"PMP-001": ["flow", "speed"]}, seconds=400, late=0.0), size=4)
    expected = expected_vectors(config, messages)
    produce(kafka_settings, created.readings, messages)
    features = Collector(kafka_settings, created.features)
    crashed = FeatureService(config)
    crashed.setup()
    try:
        wait_for(lambda: crashed.step() >= 0 and crashed.stats.messages >= len(messages), 60, "all records")
        crashed._write_state()  # vectors and state are in the open transaction ...
        assert crashed.stats.vectors == len(expected)
    finally:
        crashed.close()  # ... which the crash aborts before the commit
    resumed = FeatureService(config)
    resumed.setup()
    try:
        wait_for(lambda: resumed.step() >= 0 and resumed.stats.messages >= len(messages), 60, "the replay")
        resumed.checkpoint()
        assert resumed.stats.restored_machines == 0  # the aborted state was never visible
        wait_for(lambda: len(features.records) >= len(expected), 30, "the committed vectors")
    finally:
        resumed.close()
        features.close()
    got = unique_by_window(features.vectors())
    assert sorted(got) == sorted(expected)
    assert len(features.records) == len(expected)  # the aborted vectors were never read


def test_pattern_subscription_unknown_machines_counted_and_features_in_influxdb(
    kafka_settings: KafkaSettings, topics: Topics, group: str, unique: str, influx: Any
) -> None:
    extra = f"t-{unique}.readings-line2"
    ensure_topics(kafka_settings, [TopicSpec(topics.readings, 2), TopicSpec(extra, 2)])
    patterned = topics.model_copy(update={"readings_pattern": rf"t-{unique}\.readings.*"})
    config = make_config(kafka_settings, patterned, group)
    config = config.model_copy(
        update={
            "influx": influx.settings(),
            "windows": config.windows.model_copy(update={"write_influx": True}),
        }
    )
    pump = batches(oracle.stream(2, {"PMP-001": ["flow", "speed"]}, seconds=200, late=0.0, duplicates=0.0))
    motor = batches(oracle.stream(3, {"MTR-001": ["speed"]}, seconds=200, late=0.0, duplicates=0.0))
    stranger = [_batch("XYZ-999", [oracle.stream(4, {"XYZ-999": ["flow"]}, seconds=10)[0]])]
    produce(kafka_settings, topics.readings, pump + stranger)
    produce(kafka_settings, extra, motor)
    expected = {**expected_vectors(config, pump), **expected_vectors(config, motor)}
    service = FeatureService(config)
    collector = Collector(kafka_settings, topics.features)
    stop, thread = run_in_thread(service)
    try:
        wait_for(lambda: len(collector.records) >= len(expected), 90, "vectors from both topics")
    finally:
        stop.set()
        thread.join(60)
        service.close()
        collector.close()
    assert sorted(unique_by_window(collector.vectors())) == sorted(expected)
    # Refused by the decoder with the plant's rules: a dead letter, never a machine.
    assert service.decoder.counters["unknown_machine"] == 1 and not service.engine.stats.unknown_machines
    rows = influx.query('SELECT "flow.mean", "count" FROM "features" WHERE "machine" = \'PMP-001\'')
    series = rows["results"][0]["series"][0]
    assert len(series["values"]) == sum(1 for m, _ in expected if m == "PMP-001")


def test_a_machine_state_larger_than_a_default_kafka_record_checkpoints_and_restores(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    import random

    from kafka import TopicPartition

    config = make_config(kafka_settings, created, group)
    config = config.model_copy(update={"windows": config.windows.model_copy(update={"size_s": 3600.0})})
    service = FeatureService(config)
    service.setup()
    try:
        service.restore({TopicPartition(created.readings, 0)})  # (what the first poll does): the producer
        rng = random.Random(1)
        sensors = list(config.machines_by_id["PMP-001"].sensors)
        samples = [(sensors[i % 6], oracle.T0 + i * 0.02, rng.random()) for i in range(120_000)]
        service.engine.add_samples("PMP-001", samples)
        service._machine_offsets["PMP-001"] = {f"{created.readings}:0": 42}
        service._dirty.add("PMP-001")
        service.checkpoint()  # > 1 MB compressed: the default record limit would refuse it
        assert service.stats.commits == 1
        checkpoint = service.changelog.read()["PMP-001"]
        assert checkpoint.offsets == {f"{created.readings}:0": 42}
        restored = window_engine(config)
        restored.load_machine_state("PMP-001", checkpoint.machine)
        assert restored.open_readings() == 120_000
        assert restored.flush() == service.engine.flush()
    finally:
        service.close()


def test_idle_machine_windows_close_on_the_wall_clock_as_stale(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    config = make_config(kafka_settings, created, group)
    config = config.model_copy(update={"windows": config.windows.model_copy(update={"idle_timeout_s": 2.0})})
    readings = oracle.stream(6, {"PMP-001": ["flow", "speed"]}, seconds=30, late=0.0, duplicates=0.0, bad=0.0)
    produce(kafka_settings, created.readings, batches(readings))
    service = FeatureService(config)
    collector = Collector(kafka_settings, created.features)
    stop, thread = run_in_thread(service)
    try:
        wait_for(lambda: len(collector.records) >= 1, 60, "the stale window")
    finally:
        stop.set()
        thread.join(60)
        service.close()
        collector.close()
    ((vector, _),) = collector.vectors()
    assert vector.closed_by == "wall_clock" and vector.state.value == "stale"
    assert vector.count == len(readings)


def test_a_reading_from_a_clock_years_ahead_is_dead_lettered_and_does_not_silence_its_machine(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    # The real wall clock and recent event times: the last ten minutes, in 60 s windows.
    start = (time.time() // 60) * 60 - 600
    config = make_config(kafka_settings, created, group)
    assert config.windows.max_clock_skew_s == 86_400  # the default
    readings = oracle.stream(9, {"PMP-001": ["flow", "speed"]}, seconds=540, late=0.0, duplicates=0.0)
    shift = start - oracle.T0
    readings = [r.model_copy(update={"ts": r.ts + timedelta(seconds=shift)}) for r in readings]
    messages = batches(readings, size=6)
    future = datetime.fromtimestamp(start + 3 * 365 * 86_400, UTC)  # a controller whose clock says 3 years on
    rogue = ReadingBatch(machine_id="PMP-001", samples=[Sample(sensor="flow", ts=future, value=42.0)])
    messages.insert(len(messages) // 3, rogue)
    produce(kafka_settings, created.readings, messages)
    clean = [m for m in messages if m is not rogue]
    expected = expected_vectors(config, clean)
    service = FeatureService(config)
    features = Collector(kafka_settings, created.features)
    dead = Collector(kafka_settings, created.dead_letter)
    stop, thread = run_in_thread(service)
    try:
        wait_for(lambda: len(features.records) >= len(expected) and dead.records, 90, "vectors and the dead letter")
    finally:
        stop.set()
        thread.join(60)
        service.close()
        features.close()
        dead.close()
    (letter,) = [decode(r.value) for r in dead.records]
    assert letter.reason == "clock_skew" and "ahead of the wall clock" in letter.error
    assert decode(base64.b64decode(letter.raw)).ts == future
    assert service.engine.stats.clock_skew == 1 and service.engine.stats.late == 0
    # Every window after the rogue reading was still built from all its readings.
    assert unique_by_window(features.vectors()) == expected


@pytest.mark.parametrize("batch_format", ["columns", "packed"])
def test_a_collector_publishing_columns_gives_the_same_vectors_as_rows(
    kafka_settings: KafkaSettings, created: Topics, group: str, tmp_path: Path, batch_format: str
) -> None:
    from ingest.publisher import KafkaPublisher
    from vigil.config import PublishSettings, SpoolSettings
    from vigil.contracts import ReadingColumns

    config = make_config(kafka_settings, created, group)
    readings = oracle.stream(13, MACHINES, seconds=400, late=0.0)
    # The collector's publisher with batch_format = "columns" or "packed", as a plant would configure it.
    publish = PublishSettings(batch_format=batch_format, batch_max_samples=40, batch_max_ms=50)
    with KafkaPublisher(
        kafka_settings, created, SpoolSettings(path=tmp_path / "spool.sqlite"), publish, source="test"
    ) as publisher:
        for r in readings:
            publisher.add(r)
        publisher.flush(30)
    engine = window_engine(config)
    expected = {
        (v.machine_id, v.window_start.timestamp()): v for r in readings for v in engine.add(r)
    }  # the per-reading path; the published batches arrive per machine in the same order
    service = FeatureService(config)
    features = Collector(kafka_settings, created.features)
    raw = Collector(kafka_settings, created.readings)
    stop, thread = run_in_thread(service)
    try:
        wait_for(lambda: len(features.records) >= len(expected), 90, f"{len(expected)} feature vectors")
    finally:
        stop.set()
        thread.join(60)
        service.close()
        features.close()
        raw.close()
    assert raw.records and all(isinstance(decode(r.value), ReadingColumns) for r in raw.records)
    assert all(is_packed(r.value) == (batch_format == "packed") for r in raw.records)
    got = unique_by_window(features.vectors())
    assert set(got) == set(expected)
    for key, vector in got.items():
        want = expected[key]
        assert vector.count == want.count and vector.missing == want.missing, key
        for name, value in want.features.items():
            assert vector.features[name] == (pytest.approx(value, rel=1e-9, abs=1e-12) if value is not None else None)


def test_reading_topics_with_different_partition_counts_stop_the_worker_naming_the_key(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    # A data engineer adds a sensor topic that someone else created with another partition count: the range
    # assignor could give one machine's partitions of the two topics to two workers.
    odd = f"{created.readings}.odd"
    ensure_topics(kafka_settings, [TopicSpec(odd, 3)])
    topics = created.model_copy(update={"extra_readings": [odd]})
    service = FeatureService(make_config(kafka_settings, topics, group))
    service.setup()
    try:
        deadline = time.monotonic() + 60
        with pytest.raises(ConfigError) as refused:
            while time.monotonic() < deadline:
                service.step()
        assert refused.value.problems[0][0] == "topics.extra_readings"
        assert f"{created.readings}: 2" in str(refused.value) and f"{odd}: 3" in str(refused.value)
        assert service.stats.messages == 0
    finally:
        service.close()


def test_a_payload_too_big_for_its_dead_letter_is_cut_and_the_worker_goes_on(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    # 900 kB of garbage fits Kafka's default 1 MiB message size, but its base64 in a dead letter (1.2 MB) would
    # not: the worker could neither use it nor set it aside, and would stop on it after every restart.
    config = make_config(kafka_settings, created, group)
    good = batches(oracle.stream(5, {"PMP-001": ["flow", "speed"]}, seconds=300, late=0.0, duplicates=0.0))
    huge = b"\x00" + bytes(range(256)) * 3515  # ~900 kB, not JSON
    producer = make_producer(kafka_settings, max_request_size=2 << 20)
    producer.send(created.readings, key=b"PMP-001", value=huge).get(30)
    for message in good:
        producer.send(created.readings, key=b"PMP-001", value=encode(message))
    producer.flush()
    producer.close()
    expected = expected_vectors(config, good)
    service = FeatureService(config)
    features = Collector(kafka_settings, created.features)
    dead = Collector(kafka_settings, created.dead_letter)
    stop, thread = run_in_thread(service)
    try:
        wait_for(
            lambda: len(dead.records) >= 1 and len(features.records) >= len(expected), 90, "dead letter and vectors"
        )
    finally:
        stop.set()
        thread.join(60)
        service.close()
        features.close()
        dead.close()
    (letter,) = [decode(r.value) for r in dead.records]
    assert isinstance(letter, DeadLetter) and letter.reason == "json" and letter.offset == 0
    assert letter.raw_size == len(huge) and base64.b64decode(letter.raw) == huge[: len(base64.b64decode(letter.raw))]
    assert len(base64.b64decode(letter.raw)) < len(huge) and "cut to its first" in letter.error
    assert sorted(unique_by_window(features.vectors())) == sorted(expected)


def test_checkpoint_cost_is_measured_in_the_metrics_and_matches_the_changelog(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    from vigil.metrics import ServiceMetrics

    config = make_config(kafka_settings, created, group)
    messages = batches(oracle.stream(8, {"PMP-001": ["flow", "speed"]}, seconds=120, late=0.0, duplicates=0.0))
    produce(kafka_settings, created.readings, messages)
    metrics = ServiceMetrics("features", process_metrics=False, lag_interval_s=3600)
    service = FeatureService(config, metrics=metrics)
    service.setup()
    try:
        deadline = time.monotonic() + 60
        while service.stats.messages < len(messages) and time.monotonic() < deadline:
            service.step()
        service.checkpoint()
        assert service.stats.checkpoint_records >= 1 and service.stats.checkpoint_bytes > 0
    finally:
        service.close()
    changelog = Collector(kafka_settings, service.changelog.topic.name)
    try:
        wait_for(lambda: len(changelog.records) >= service.stats.checkpoint_records, 30, "changelog records")
    finally:
        changelog.close()
    assert sum(len(r.value) for r in changelog.records) == service.stats.checkpoint_bytes
    registry = metrics.registry
    assert registry.get_sample_value("vigil_checkpoint_bytes_total") == service.stats.checkpoint_bytes
    count = registry.get_sample_value("vigil_processing_seconds_count", {"step": "features_checkpoint"})
    assert count == service.stats.checkpoints
    sent = registry.get_sample_value("vigil_messages_out_total", {"topic": service.changelog.topic.name})
    assert sent == service.stats.checkpoint_records


def test_incremental_checkpoints_restore_from_a_base_and_its_deltas(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    """Between window closes a checkpoint writes only the readings added since the previous one (a delta record
    keyed ``<group>/<machine>#k``); a worker that takes over merges base and deltas and ends with the windows an
    uninterrupted engine computes."""
    # 600 s windows: none closes in this test, so every checkpoint after the first is a delta.
    config = make_config(kafka_settings, created, group, size_s=600.0)
    stream = oracle.stream(11, {"PMP-001": ["flow", "pressure", "speed", "bearing_temp"]}, seconds=240, late=0.0)
    messages = batches(stream, size=8)
    quarter = len(messages) // 4
    first = FeatureService(config)
    first.setup()
    try:
        for part in range(3):
            chunk = messages[part * quarter : (part + 1) * quarter]
            produce(kafka_settings, created.readings, chunk)
            step_until(first, first.stats.messages + len(chunk))
            first.checkpoint()
    finally:
        first.close()
    changelog = Collector(kafka_settings, first.changelog.topic.name)
    try:
        wait_for(lambda: len(changelog.records) >= 3, 30, "the base and two deltas")
    finally:
        changelog.close()
    held = {
        r.key.decode(): sum(len(ts) // 8 for ts, _ in decode_checkpoint("PMP-001", r.value).machine["buffers"].values())
        for r in changelog.records
    }
    base_key = f"{group}/PMP-001"
    # Each record holds the readings of its own part of the stream only.
    parts = [sum(len(m.samples) for m in messages[p * quarter : (p + 1) * quarter]) for p in range(3)]
    assert held == {base_key: parts[0], f"{base_key}#1": parts[1], f"{base_key}#2": parts[2]}

    produce(kafka_settings, created.readings, messages[3 * quarter :])
    second = FeatureService(config)
    second.setup()
    try:
        deadline = time.monotonic() + 60
        while second.stats.messages < len(messages) - 3 * quarter and time.monotonic() < deadline:
            second.step()
        assert second.stats.restored_machines == 1 and second.stats.replay_skipped == 0
        got = second.engine.flush()
    finally:
        second.close()
    reference = window_engine(config)
    expected = [v for m in messages for v in reference.add_batch(m)] + reference.flush()
    assert got == expected


def test_the_changelog_is_partitioned_like_the_readings_and_a_worker_restores_only_its_partitions(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    """Each machine's checkpoint records go to the changelog partition of its readings partition, so a worker that
    takes over one readings partition reads that changelog partition only, and restores exactly its machines."""
    from kafka import TopicPartition

    config = make_config(kafka_settings, created, group, size_s=600.0)
    machines = {"PMP-001": ["flow", "speed"], "PMP-002": ["flow", "speed"], "MTR-001": ["speed"], "MTR-002": ["speed"]}
    messages = batches(oracle.stream(5, machines, seconds=120, late=0.0), size=6)
    produce(kafka_settings, created.readings, messages)
    first = run_and_checkpoint(config, len(messages))
    assert first.changelog.partitions == 2

    # Where each machine's readings are, and where its checkpoint records went.
    home = {r.key.decode(): r.partition for r in consume(kafka_settings, [created.readings], _all(messages), raw)}
    assert set(home.values()) == {0, 1}  # the machines are spread over both partitions
    records = consume(kafka_settings, [first.changelog.topic.name], lambda got: len(got) >= len(machines), raw)
    placed = {r.key.decode().partition("/")[2].partition("#")[0]: r.partition for r in records}
    assert placed == home

    second = FeatureService(config)
    second.setup()
    try:
        # A worker assigned nothing (more workers than partitions) restores nothing, and does not fail.
        second.restore(set())
        assert second.engine.machines == [] and second.changelog.records_read == 0
        second.restore({TopicPartition(created.readings, 1)})
        restored = set(second.engine.machines)
        read = second.changelog.records_read
        # A machine's records stay in the changelog partition they were restored from, even when its offsets
        # come to name another readings partition too (producers hashing keys differently): never two.
        moved = sorted(restored)[0]
        second._machine_offsets[moved][f"{created.readings}:0"] = 0
        second._dirty.add(moved)
        second.checkpoint()
    finally:
        second.close()
    assert restored == {m for m, p in home.items() if p == 1}
    assert read == sum(1 for r in records if r.partition == 1)
    again = consume(kafka_settings, [first.changelog.topic.name], lambda got: len(got) > len(records), raw)
    assert len(again) == len(records) + 1
    assert {r.partition for r in again if r.key.decode().startswith(f"{group}/{moved}")} == {1}


def _all(messages: list[ReadingBatch]) -> Any:
    return lambda got: len(got) >= len(messages)


def test_a_changelog_created_with_one_partition_keeps_working_for_partitioned_readings(
    kafka_settings: KafkaSettings, created: Topics, group: str
) -> None:
    """A changelog from before the partitioned layout (one partition) is kept as it is: every machine's records
    go to partition 0, and a worker taking over either readings partition finds its machines there."""
    from kafka import TopicPartition

    from streaming.changelog import Changelog
    from vigil.bus import changelog_topic

    config = make_config(kafka_settings, created, group, size_s=600.0)
    Changelog(kafka_settings, changelog_topic(created, "features"), group).ensure(1)
    machines = {"PMP-001": ["flow"], "PMP-002": ["flow"]}  # readings partitions 0 and 1
    messages = batches(oracle.stream(6, machines, seconds=60, late=0.0), size=6)
    produce(kafka_settings, created.readings, messages)
    first = run_and_checkpoint(config, len(messages))
    assert first.changelog.partitions == 1
    for partition, machine in ((0, "PMP-001"), (1, "PMP-002")):
        worker = FeatureService(config)
        worker.setup()
        try:
            worker.restore({TopicPartition(created.readings, partition)})
            assert worker.engine.machines == [machine]
        finally:
            worker.close()


def run_and_checkpoint(config: VigilConfig, messages: int) -> FeatureService:
    """A worker that handles ``messages`` messages, checkpoints and closes."""
    worker = FeatureService(config)
    worker.setup()
    try:
        step_until(worker, messages)
        worker.checkpoint()
    finally:
        worker.close()
    return worker


def step_until(worker: FeatureService, messages: int) -> None:
    """Step the worker until it has handled ``messages`` messages in all (60 s at most)."""
    deadline = time.monotonic() + 60
    while worker.stats.messages < messages and time.monotonic() < deadline:
        worker.step()
    assert worker.stats.messages == messages
