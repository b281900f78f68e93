"""Per-machine state follows its partition: two model workers against the real broker, a rebalance in the middle
(a second worker joins, then the first leaves); a bad machine checkpoint is rebuilt by replay; the segment audit
is read back from its topic."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from models.changelog import changelog_topics
from models.pipeline import FleetModel
from models.service import ModelService
from models.synthetic import WINDOW_S, pump_vector
from vigil.bus import TopicSpec, ensure_topics, make_consumer, make_producer
from vigil.config import KafkaSettings, Topics, VigilConfig
from vigil.contracts import FeatureVector, MaintenanceEvent, Prediction, SegmentAuditReport, decode, encode
from vigil.testing import read_all

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, tzinfo=UTC)
PARTITIONS = 4
MACHINES = [f"PMP-00{i + 1}" for i in range(PARTITIONS)]
"""One pump per partition (``PMP-00<p+1>`` is produced to partition ``p``), so a moved partition moves a machine."""


@pytest.fixture
def config(example_config: VigilConfig, kafka_settings: KafkaSettings, topics: Topics) -> VigilConfig:
    topics = topics.model_copy(update={"audit": f"{topics.features}.audit"})
    models = example_config.models.model_copy(update={"checkpoint_interval_s": 2.0})
    cfg = example_config.model_copy(update={"kafka": kafka_settings, "topics": topics, "models": models})
    ensure_topics(kafka_settings, [TopicSpec(topics.features, PARTITIONS), TopicSpec(topics.maintenance, PARTITIONS)])
    return cfg


def windows(machine: int, start: int, count: int) -> list[FeatureVector]:
    rng = random.Random(1000 * machine + start)
    return [
        pump_vector(MACHINES[machine], T0 + timedelta(seconds=WINDOW_S * (k + 1)), load=0.8, rng=rng)
        for k in range(start, start + count)
    ]


def produce(config: VigilConfig, messages: list[FeatureVector | MaintenanceEvent]) -> None:
    producer = make_producer(config.kafka)
    try:
        for m in messages:
            topic = config.topics.features if isinstance(m, FeatureVector) else config.topics.maintenance
            partition = MACHINES.index(m.machine_id)
            producer.send(topic, key=m.machine_id.encode(), value=encode(m), partition=partition).get(timeout=30)
    finally:
        producer.close()


def phase(config: VigilConfig, start: int, count: int) -> None:
    produce(config, [fv for i in range(PARTITIONS) for fv in windows(i, start, count)])


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Worker:
    """One model worker running in a thread, as a separate process would."""

    def __init__(self, config: VigilConfig, group: str, name: str) -> None:
        self.service = ModelService(config, group, worker=name)
        self.stop = threading.Event()
        self.service.setup()
        self.thread = threading.Thread(target=self._run, name=f"models-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run(self.stop)
        finally:
            self.service.close()

    def owned(self) -> set[int]:
        return set(self.service._owned)

    def leave(self) -> None:
        self.stop.set()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()


def published(config: VigilConfig, topic: str) -> Iterator[tuple[str, object]]:
    """``(worker header, message)`` of every committed record of ``topic`` (its writers have stopped: to its end,
    so a double is seen without waiting for more records than expected)."""
    return iter(
        read_all(config.kafka, [topic], lambda r: (dict(r.headers).get("worker", b"").decode(), decode(r.value)))
    )


def reference(config: VigilConfig, machine: int, count: int) -> FleetModel:
    model = FleetModel(config.models, config.machines_by_id, config.machine_types)
    for fv in windows(machine, 0, count):
        model.process(fv)
    return model


def test_machine_state_follows_its_partition_through_a_rebalance(config: VigilConfig, unique: str) -> None:
    group = f"g-{unique}"
    phase(config, 0, 70)
    a = Worker(config, group, "a")
    try:
        # ... and checkpointed them (machines, shared models, markers): b starts from that checkpoint.
        wait_until(
            lambda: a.service.predictions == 70 * PARTITIONS and a.service.last_checkpoint_machines > 0,
            "worker a: the first 70 windows, checkpointed",
        )
        wait_until(lambda: not a.service._dirty, "worker a: every machine checkpointed")
        b = Worker(config, group, "b")
        try:
            wait_until(
                lambda: a.owned() and b.owned() and a.owned() | b.owned() == set(range(PARTITIONS)),
                "the partitions split between a and b",
            )
            moved = b.owned()
            assert b.service.restored == "peer"  # b's per-type models start from a's
            phase(config, 70, 20)
            wait_until(lambda: a.service.predictions + b.service.predictions == 90 * PARTITIONS, "90 windows")
            assert b.service.machines_restored == len(moved)  # the state of every machine that moved to b
        finally:
            a.leave()
        wait_until(lambda: b.owned() == set(range(PARTITIONS)), "b owning every partition")
        phase(config, 90, 10)
        wait_until(lambda: a.service.predictions + b.service.predictions == 100 * PARTITIONS, "all 100 windows")
        b.leave()
    finally:
        a.stop.set()

    records = [(w, m) for w, m in published(config, config.topics.predictions)]
    predictions = [(w, m) for w, m in records if isinstance(m, Prediction)]
    seen = Counter((m.machine_id, m.ts) for _, m in predictions)
    assert len(seen) == 100 * PARTITIONS and max(seen.values()) == 1  # every window once, none twice
    by_worker = {(m.machine_id, m.ts): w for w, m in predictions}
    for p in moved:
        machine = MACHINES[p]
        moved_at = windows(p, 69, 1)[0].window_end
        later = [m for _, m in predictions if m.machine_id == machine and m.ts > moved_at]
        after_move = [m for m in later if by_worker[(machine, m.ts)] == "b"]
        assert len(after_move) == 30  # b predicted the 20 + 10 windows after the move ...
        assert not any(m.cold_start or any("cold start" in r for r in m.reasons) for m in after_move)  # ... warm
        # ... and the machine's own state on b is the state of one uninterrupted run over all 100 windows.
        ref = reference(config, p, 100)
        mine, theirs = b.service.model.machine_memory(machine), ref.machine_memory(machine)
        assert mine is not None and theirs is not None
        assert (mine.windows, mine.normal.n) == (theirs.windows, theirs.normal.n)
        assert mine.windows > 90
        assert b.service.model.pending.count(machine) == ref.pending.count(machine) > 0
        assert b.service._last_window[machine] == windows(p, 99, 1)[0].window_end


def test_a_refused_machine_checkpoint_is_rebuilt_by_replay(config: VigilConfig, unique: str) -> None:
    group = f"g-{unique}"
    phase(config, 0, 60)
    first = ModelService(config, group)
    first.setup()
    try:
        first.run(max_records=60 * PARTITIONS, idle_exit_s=60.0)
    finally:
        first.close()
    assert first.predictions == 60 * PARTITIONS
    producer = make_producer(config.kafka)
    try:  # a torn record for PMP-001 (partition 0): header fine, body not
        machines_topic = changelog_topics(config.topics.changelog_prefix)[1]
        producer.send(machines_topic, key=f"{group}/{MACHINES[0]}".encode(), value=b'{"format": 1}\n\x00', partition=0)
        producer.flush(timeout=30)
    finally:
        producer.close()
    phase(config, 60, 10)
    second = ModelService(config, group)
    second.setup()
    try:
        # PMP-001's 60 windows again (replayed, not published) and every machine's 10 new ones.
        second.run(max_records=60 + 10 * PARTITIONS, idle_exit_s=60.0)
    finally:
        second.close()
    assert second.machines_refused == 1 and second.machines_restored == PARTITIONS - 1
    assert second.predictions == 10 * PARTITIONS  # the replay of PMP-001 published nothing twice
    seen = Counter(
        (m.machine_id, m.ts) for _, m in published(config, config.topics.predictions) if isinstance(m, Prediction)
    )
    assert len(seen) == 70 * PARTITIONS and max(seen.values()) == 1
    ref = reference(config, 0, 70)
    rebuilt, expected = second.model.machine_memory(MACHINES[0]), ref.machine_memory(MACHINES[0])
    assert rebuilt is not None and expected is not None
    assert (rebuilt.windows, rebuilt.normal.n) == (expected.windows, expected.normal.n)


def test_segment_audit_is_published_on_its_topic(config: VigilConfig, unique: str) -> None:
    phase(config, 0, 60)
    service = ModelService(config, f"g-{unique}", worker="w1")
    service.setup()
    try:
        service.run(max_records=60 * PARTITIONS)
        # After the machine's vectors, so the failure is of a machine the worker knows (topics are not ordered).
        produce(config, [MaintenanceEvent(machine_id=MACHINES[1], ts=windows(1, 59, 1)[0].window_end, event="failure")])
        service.run(max_records=1, idle_exit_s=60.0)  # the failure
        reports = service.publish_audit()
    finally:
        service.close()
    assert service.audits >= len(reports) > 0
    consumer = make_consumer(config.kafka, None, [config.topics.audit])
    latest: dict[str, SegmentAuditReport] = {}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and len(latest) < len(reports):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    message = decode(r.value)
                    assert isinstance(message, SegmentAuditReport)
                    assert r.key.decode() == f"{message.dimension}={message.segment}"
                    latest[r.key.decode()] = message
    finally:
        consumer.close()
    assert {"fleet=all", "machine_type=pump", "site=north", "line=north-1"} <= set(latest)
    fleet = latest["fleet=all"]
    assert fleet.worker == "w1" and fleet.failures == 1 and fleet.labelled_windows > 0
    assert fleet.machine_weeks == pytest.approx(PARTITIONS * 59 * WINDOW_S / (7 * 86400), rel=0.01)


def topic_configs(config: VigilConfig, topic: str) -> dict[str, str]:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(**config.kafka.client_kwargs())
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, None)], config_filter="all")
    finally:
        admin.close()
    return {k: str(v["value"]) for k, v in found["topic"][topic].items()}


def run_twice(config: VigilConfig, group: str) -> tuple[ModelService, ModelService]:
    """20 windows per machine through one worker, 10 more through the next (which restores the first's state)."""
    out = []
    for start, count in ((0, 20), (20, 10)):
        phase(config, start, count)
        service = ModelService(config, group)
        service.setup()
        try:  # exactly what is new (the next one resumes at the first's checkpoint); no idle wait
            service.run(max_records=count * PARTITIONS, idle_exit_s=60.0)
        finally:
            service.close()
        assert service.predictions == count * PARTITIONS
        out.append(service)
    return out[0], out[1]


@pytest.mark.parametrize("changelog_partitions", [1, 2 * PARTITIONS])
def test_a_changelog_partitioned_unlike_the_features_is_reported_and_used(
    config: VigilConfig, unique: str, changelog_partitions: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Fewer partitions (the features topic grew): partitions are added; more: the extra ones stay unused. The
    state keeps following its partition either way (before: ``vigil models`` refused to start, exit 2)."""
    from vigil.bus import partition_count

    machines_topic = changelog_topics(config.topics.changelog_prefix)[1]
    ensure_topics(config.kafka, [TopicSpec(machines_topic, changelog_partitions, compacted=True)])
    _, second = run_twice(config, f"g-{unique}")
    assert f"changelog topic {machines_topic} has {changelog_partitions} partition(s)" in caplog.text
    assert partition_count(config.kafka, machines_topic) == max(PARTITIONS, changelog_partitions)
    assert second.machines_restored == PARTITIONS and second.machines_refused == 0


def test_an_uncompacted_changelog_is_made_compacted(config: VigilConfig, unique: str) -> None:
    """A changelog created by hand or auto-created with the broker's defaults would delete a quiet machine's
    state after the retention time and make every restore read every checkpoint ever written."""
    shared_topic, machines_topic = changelog_topics(config.topics.changelog_prefix)
    ensure_topics(config.kafka, [TopicSpec(machines_topic, PARTITIONS), TopicSpec(shared_topic, 1)])
    assert topic_configs(config, machines_topic)["cleanup.policy"] == "delete"
    _, second = run_twice(config, f"g-{unique}")
    for topic in (machines_topic, shared_topic):
        configs = topic_configs(config, topic)
        assert configs["cleanup.policy"] == "compact"
        assert float(configs["min.cleanable.dirty.ratio"]) == pytest.approx(0.1)
    assert int(topic_configs(config, machines_topic)["max.message.bytes"]) >= 16 * 1024 * 1024
    assert second.machines_restored == PARTITIONS


def test_a_crash_after_the_checkpoint_publishes_each_prediction_once_and_learns_nothing_twice(
    config: VigilConfig, unique: str
) -> None:
    group = f"g-{unique}"
    phase(config, 0, 60)
    first = ModelService(config, group, worker="a")
    first.setup()
    first.run(max_records=60 * PARTITIONS)  # ends with a checkpoint
    phase(config, 60, 20)
    deadline = time.monotonic() + 120
    while first.predictions < 80 * PARTITIONS and time.monotonic() < deadline:
        first.step()  # handled and published, never checkpointed
    assert first.predictions == 80 * PARTITIONS
    # The crash: the process dies after its sends, before any checkpoint or commit.
    crash(first)

    second = ModelService(config, group, worker="a")
    second.setup()
    try:
        second.run(idle_exit_s=6.0)
    finally:
        second.close()
    assert second.restored == "restored" and second.machines_restored == PARTITIONS
    assert second.predictions == 20 * PARTITIONS  # the windows after the checkpoint, again
    by_window: dict[tuple[str, datetime], set[str]] = {}
    predictions = [m for _, m in published(config, config.topics.predictions) if isinstance(m, Prediction)]
    for m in predictions:
        by_window.setdefault((m.machine_id, m.ts), set()).add(m.model_dump_json())
    assert len(by_window) == 80 * PARTITIONS
    assert all(len(versions) == 1 for versions in by_window.values())
    # The crashed worker's 20 windows per machine were in its open transaction: aborted, never read.
    assert len(predictions) == 80 * PARTITIONS
    for p in range(PARTITIONS):
        mine, theirs = second.model.machine_memory(MACHINES[p]), reference(config, p, 80).machine_memory(MACHINES[p])
        assert mine is not None and theirs is not None
        assert (mine.windows, mine.normal.n) == (theirs.windows, theirs.normal.n)


def crash(service: ModelService) -> None:
    """The process dies: its sends are out (in its open transaction, which nobody commits or aborts: the next
    owner's producer aborts it), nothing more is checkpointed or committed."""
    assert service._tx is not None
    producer = service._tx.producer
    producer.flush(timeout=30)
    service._closing = True
    service._consumer.close(autocommit=False)
    producer.close(timeout=10)


def corrupt_machine_record(config: VigilConfig, group: str, partition: int) -> None:
    producer = make_producer(config.kafka)
    try:  # header fine, body torn
        machines_topic = changelog_topics(config.topics.changelog_prefix)[1]
        key = f"{group}/{MACHINES[partition]}".encode()
        producer.send(machines_topic, key=key, value=b'{"format": 1}\n\x00', partition=partition)
        producer.flush(timeout=30)
    finally:
        producer.close()


def test_a_crash_during_a_replay_publishes_nothing_again(config: VigilConfig, unique: str) -> None:
    """A worker rebuilding a refused machine by replay checkpoints half-way and dies: the next one must still know
    that everything up to the old offsets was published (the checkpoint must not move that knowledge back)."""
    group = f"g-{unique}"
    phase(config, 0, 60)
    first = ModelService(config, group)
    first.setup()
    try:
        first.run(max_records=60 * PARTITIONS, idle_exit_s=60.0)
    finally:
        first.close()
    assert first.predictions == 60 * PARTITIONS
    corrupt_machine_record(config, group, 0)
    second = ModelService(config, group)
    second.setup()
    second.run(max_records=30)  # replays PMP-001's first 30 windows (publishing nothing), ends with a checkpoint
    assert second.machines_refused == 1 and second.predictions == 0
    crash(second)
    third = ModelService(config, group)
    third.setup()
    try:
        third.run(max_records=30, idle_exit_s=60.0)  # PMP-001's windows 30-59, again
    finally:
        third.close()
    assert third.predictions == 0  # windows 30-59 of PMP-001 were published by the first worker already
    seen = Counter(
        (m.machine_id, m.ts) for _, m in published(config, config.topics.predictions) if isinstance(m, Prediction)
    )
    assert len(seen) == 60 * PARTITIONS and max(seen.values()) == 1
    ref = reference(config, 0, 60).machine_memory(MACHINES[0])
    rebuilt = third.model.machine_memory(MACHINES[0])
    assert rebuilt is not None and ref is not None
    assert (rebuilt.windows, rebuilt.normal.n) == (ref.windows, ref.normal.n)  # and learnt nothing twice


def test_a_maintenance_event_on_another_partition_reaches_its_machine(config: VigilConfig, unique: str) -> None:
    """A failure published to a maintenance partition other than its machine's features partition (another
    producer's partitioner, a missing key): it must reach the state of its machine, on the partition that state
    lives on, and must not make that partition's state move (before: the machine's state went to changelog
    partition 2 while its features stay on 0, and a worker owning 2 but not 0 kept the label from the model)."""
    from models.changelog import MachineChangelog

    group = f"g-{unique}"
    machine = MACHINES[0]  # keyed by the default partitioner, PMP-001 is on partition 0 as well
    vectors = windows(0, 0, 30)
    producer = make_producer(config.kafka)
    try:
        for fv in vectors:
            producer.send(config.topics.features, key=machine.encode(), value=encode(fv)).get(timeout=30)
    finally:
        producer.close()
    service = ModelService(config, group)
    service.setup()
    try:
        service.run(max_records=30)
        failure = MaintenanceEvent(machine_id=machine, ts=vectors[-1].window_end, event="failure")
        producer = make_producer(config.kafka)
        try:
            producer.send(config.topics.maintenance, key=machine.encode(), value=encode(failure), partition=2).get(30)
        finally:
            producer.close()
        service.run(max_records=2, idle_exit_s=60.0)  # the event where it arrived, then where it was forwarded
        assert service.forwarded == 1
        assert service.model.pending.export_machine(machine)[1]  # the failure is in the machine's state
    finally:
        service.close()
    stored = MachineChangelog(config.kafka, changelog_topics(config.topics.changelog_prefix)[1], group).read({0, 2})
    assert machine in stored[0].machines and machine not in stored[2].machines
    again = ModelService(config, group)
    again.setup()
    try:
        deadline = time.monotonic() + 120
        while again._owned != set(range(PARTITIONS)) and time.monotonic() < deadline:
            again.step()  # until assigned (and restored)
    finally:
        again.close()
    assert again.machines_restored == 1 and again.model.pending.export_machine(machine)[1]


def test_a_maintenance_topic_partitioned_unlike_the_features_is_refused_at_start(
    config: VigilConfig, unique: str
) -> None:
    """Its events could not reach the worker that holds their machine (the range assignor pairs partition p of
    both topics; forwarding needs partition p to exist): refused with the reason, ``vigil models`` exits 2."""
    from models.exceptions import ModelsError

    maintenance = f"{config.topics.maintenance}.two"
    ensure_topics(config.kafka, [TopicSpec(maintenance, 2)])
    bad = config.model_copy(update={"topics": config.topics.model_copy(update={"maintenance": maintenance})})
    with pytest.raises(ModelsError, match=f"{maintenance} \\(2\\)"):
        ModelService(bad, f"g-{unique}").setup()


def test_a_worker_dropped_from_the_group_writes_no_state(config: VigilConfig, unique: str) -> None:
    """A worker the group moved on without (a missed session or poll interval) may still hold records in hand;
    its checkpoint must not overwrite the state and markers of the partitions' new owners."""
    from models.changelog import MachineChangelog

    group = f"g-{unique}"
    phase(config, 0, 20)
    service = ModelService(config, group)
    service.setup()
    try:
        deadline = time.monotonic() + 120
        while service.predictions < 20 * PARTITIONS and time.monotonic() < deadline:
            service.step()  # handled, not checkpointed
        assert service.predictions == 20 * PARTITIONS
        # What the client does when the coordinator answers "unknown member" / "illegal generation".
        service._consumer._coordinator.reset_generation()
        service.checkpoint()
    finally:
        service.close()
    machines_topic = changelog_topics(config.topics.changelog_prefix)[1]
    stored = MachineChangelog(config.kafka, machines_topic, group).read(set(range(PARTITIONS)))
    assert all(not log.machines and log.marker is None for log in stored.values())


def test_a_repeated_maintenance_event_is_applied_once(config: VigilConfig, unique: str) -> None:
    """The same failure delivered twice (re-forwarded after a crash of the forwarding worker, or re-sent by its
    producer) is one failure, also for the worker that restores the machine afterwards (before: two failures in
    the machine's labels and in the segment audit)."""
    group = f"g-{unique}"
    machine = MACHINES[0]
    vectors = windows(0, 0, 30)
    failure = MaintenanceEvent(machine_id=machine, ts=vectors[-1].window_end, event="failure")
    produce(config, vectors)
    service = ModelService(config, group)
    service.setup()
    try:
        service.run(max_records=30, idle_exit_s=60.0)
        produce(config, [failure, failure])  # after the vectors: the audit counts failures of known machines
        service.run(max_records=2, idle_exit_s=60.0)
    finally:
        service.close()
    assert service.duplicates == 1
    assert len(service.model.pending.export_machine(machine)[1]) == 1
    assert service.model.audit.messages("a")[0].failures == 1
    produce(config, [failure])
    again = ModelService(config, group)
    again.setup()
    try:
        again.run(max_records=1, idle_exit_s=60.0)
    finally:
        again.close()
    assert again.machines_restored == 1 and len(again.model.pending.export_machine(machine)[1]) == 1
