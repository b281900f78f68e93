"""The feature worker against the real broker: a report-by-exception pump that stopped is ``off`` on the features
topic, also after the worker restarts from its changelog."""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from features.service import FeatureService
from vigil.bus import TopicSpec, ensure_topics, machine_key, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics, VigilConfig, load_config
from vigil.contracts import FeatureVector, MachineState, Reading, decode, encode
from vigil.testing import TopicReader, raw, wait_for

pytestmark = pytest.mark.integration

SIZE = 60.0
# Event times two hours ago (the worker refuses readings far ahead of its clock), on a window boundary.
T0 = (time.time() // 3600 - 2) * 3600


def make_config(kafka: KafkaSettings, topics: Topics, group: str) -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    windows = {
        "size_s": SIZE,
        "grace_s": 5.0,
        "idle_timeout_s": 3600,
        "checkpoint_interval_s": 1.0,
        "session_timeout_s": 8.0,
        "group_id": group,
    }
    data = {**plant, "kafka": {**kafka.model_dump(), "partitions": 2}, "topics": topics.model_dump()}
    return load_config(environ={}, data={**data, "windows": windows})


def pump(windows: range, speeds: dict[int, list[tuple[float, float]]], machine: str = "PMP-001") -> list[Reading]:
    """A pump's readings: the bearing temperature (a changing value) every 10 s, the speed only when it changes."""
    out: list[Reading] = []
    for k in windows:
        events = [(s + 2.0, "bearing_temp", 40.0 + k + s / 100) for s in range(0, 60, 10)]
        events += [(offset, "speed", value) for offset, value in speeds.get(k, [])]
        for offset, sensor, value in sorted(events):
            ts = datetime.fromtimestamp(T0 + k * SIZE + offset, UTC)
            out.append(Reading(machine_id=machine, sensor=sensor, ts=ts, value=value))
    return out


def produce(kafka: KafkaSettings, topic: str, readings: list[Reading]) -> None:
    producer = make_producer(kafka)
    try:
        for r in readings:
            producer.send(topic, key=machine_key(r.machine_id), value=encode(r))
        producer.flush()
    finally:
        producer.close()


class Vectors(TopicReader):
    """Reads the features topic's records from the beginning in a background thread."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        super().__init__(kafka, [topic], raw)

    def by_window(self, machine: str = "PMP-001") -> dict[int, FeatureVector]:
        return {k: v for (m, k), (v, _) in self.by_machine_window().items() if m == machine}

    def by_machine_window(self) -> dict[tuple[str, int], tuple[FeatureVector, str]]:
        """``(machine, window number)`` -> the vector and the worker that emitted it (the last, if twice)."""
        out: dict[tuple[str, int], tuple[FeatureVector, str]] = {}
        for r in list(self.records):
            v = decode(r.value)
            assert isinstance(v, FeatureVector) and r.key == machine_key(v.machine_id)
            worker = dict(r.headers or []).get("worker", b"").decode()
            out[v.machine_id, round((v.window_start.timestamp() - T0) / SIZE)] = (v, worker)
        return out


def run_until(service: FeatureService, condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Run the worker in a thread until ``condition``; it then stops as on SIGTERM (checkpoint, commit)."""
    stop = threading.Event()
    service.setup()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(condition, timeout, what)
    finally:
        stop.set()
        thread.join(60)
        service.close()
    assert not thread.is_alive()


def test_a_pump_that_reported_its_speed_once_at_zero_is_off_also_after_a_restart(
    kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    config = make_config(kafka_settings, topics, f"g-{unique}")
    ensure_topics(kafka_settings, [TopicSpec(topics.readings, 2)])
    # Speed 1500 once, then 0 once (the stop, window 1), then nothing: only the bearing temperature.
    produce(kafka_settings, topics.readings, pump(range(6), {0: [(1.0, 1500.0)], 1: [(20.0, 0.0)]}))
    vectors = Vectors(kafka_settings, topics.features)
    try:
        first = FeatureService(config, worker_id="first")
        run_until(first, lambda: len(vectors.by_window()) >= 5, 90, "windows 0-4 from the first worker")
        # The restarted worker reads only what came after the first one's commit: temperatures, no speed at all.
        produce(kafka_settings, topics.readings, pump(range(6, 11), {}))
        second = FeatureService(config, worker_id="second")
        run_until(second, lambda: len(vectors.by_window()) >= 10, 90, "windows 5-9 from the restarted worker")
        # Restored from the changelog (once per assignment: a rebalance while the first worker's membership
        # expires restores it again, seen in CI; the vectors below show what the state held).
        assert second.stats.restored_machines >= 1
        got = vectors.by_window()
    finally:
        vectors.close()
    assert sorted(got) == list(range(10))
    assert got[0].state == MachineState.RUNNING and got[0].state_held is None
    assert got[1].state == MachineState.OFF and got[1].state_held is None  # its own speed reading decided
    stopped_at = datetime.fromtimestamp(T0 + SIZE + 20.0, UTC)
    for k in range(2, 10):
        v = got[k]
        assert v.state == MachineState.OFF, (k, v.state)
        assert v.state_held == 0.0 and v.state_held_ts == stopped_at, k
        assert "speed" in v.missing and v.features["speed.mean"] is None, k
    # Windows 5-9 came from the restarted worker: the held value was in the changelog.
    assert first.stats.vectors == 5 and second.stats.vectors == 5


def test_the_held_value_follows_its_machine_to_another_worker_on_a_rebalance(
    kafka_settings: KafkaSettings, topics: Topics, unique: str
) -> None:
    config = make_config(kafka_settings, topics, f"g-{unique}")
    ensure_topics(kafka_settings, [TopicSpec(topics.readings, 2)])
    # Keyed to partitions 0 and 1 of two: after the rebalance each worker owns one of them.
    machines = ("PMP-001", "PMP-002")
    stop = {0: [(1.0, 1500.0)], 1: [(20.0, 0.0)]}
    produce(kafka_settings, topics.readings, [r for m in machines for r in pump(range(6), stop, m)])
    vectors = Vectors(kafka_settings, topics.features)
    services = [FeatureService(config, worker_id="a"), FeatureService(config, worker_id="b")]
    stops = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=s.run, args=(e,), daemon=True) for s, e in zip(services, stops, strict=True)]
    try:
        services[0].setup()
        threads[0].start()
        wait_for(lambda: len(vectors.by_machine_window()) >= 10, 90, "windows 0-4 of both pumps from worker a")
        services[1].setup()
        threads[1].start()
        # Worker a checkpoints the machine it gives up when revoked; b restores it from the changelog.
        wait_for(lambda: services[1].stats.restored_machines >= 1, 90, "worker b's assignment")
        produce(kafka_settings, topics.readings, [r for m in machines for r in pump(range(6, 11), {}, m)])
        wait_for(lambda: len(vectors.by_machine_window()) >= 20, 90, "windows 5-9 of both pumps")
    finally:
        for event in stops:
            event.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(60)
        for service in services:
            service.close()
        vectors.close()
    got = vectors.by_machine_window()
    assert sorted(got) == [(m, k) for m in machines for k in range(10)]
    for (machine, k), (v, _) in got.items():
        if k >= 2:
            assert v.state == MachineState.OFF and v.state_held == 0.0, (machine, k, v.state)
    # After the rebalance each pump's windows come from one worker, and the moved one's from worker b.
    later = {m: {got[m, k][1] for k in range(5, 10)} for m in machines}
    assert sorted(w for ws in later.values() for w in ws) == ["a", "b"], later
