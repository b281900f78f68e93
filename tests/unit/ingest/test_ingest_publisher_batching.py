"""Publisher batching and spooling with Kafka unreachable (a closed port): nothing accepted is lost.

No broker is needed: every message lands in the spool, where its batching and order can be inspected.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.exceptions import PublishError
from ingest.publisher import KafkaPublisher
from ingest.spool import Spool
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics
from vigil.contracts import Gap, MaintenanceEvent, MaintenanceKind, Reading, ReadingBatch, decode

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _publisher(tmp_path: Path, port: int, **publish: object) -> KafkaPublisher:
    return KafkaPublisher(
        KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"),
        Topics(readings="r", maintenance="m", dead_letter="d"),
        SpoolSettings(path=tmp_path / "spool.sqlite", retry_interval_s=600),
        PublishSettings.model_validate(
            {"batch_max_samples": 500, "batch_max_ms": 60_000, "connect_timeout_s": 0.5, **publish}
        ),
        source="test",
    )


def _spool_file(tmp_path: Path) -> Path:
    [path] = tmp_path.glob("*.sqlite")  # the publisher puts its source name into the file name
    return path


def _spooled(tmp_path: Path) -> Iterator[tuple[str, bytes | None, object]]:
    spool = Spool(SpoolSettings(path=_spool_file(tmp_path)))
    spool.open()
    try:
        for m in spool.peek(10_000):
            yield m.topic, m.key, decode(m.value)
    finally:
        spool.close()


def _reading(machine: str, i: int) -> Reading:
    return Reading(machine_id=machine, sensor="flow", ts=T + timedelta(seconds=i), value=float(i))


def test_readings_are_batched_per_machine_and_spooled_in_order_when_kafka_is_unreachable(
    tmp_path: Path, closed_port: int
) -> None:
    pub = _publisher(tmp_path, closed_port)
    pub.start()
    assert pub.spooling
    for i in range(1200):
        pub.add(_reading("PMP-001", i))
        if i < 300:
            pub.add(_reading("PMP-002", i))
    pub.add_gap(Gap(machine_id="PMP-002", start=T, end=T + timedelta(minutes=1), reason="test"))
    pub.add_event(MaintenanceEvent(machine_id="PMP-001", ts=T, event=MaintenanceKind.FAILURE))
    pub.close(timeout_s=5)

    assert pub.counters.added == 1500
    assert pub.counters.spooled == 1500
    assert pub.counters.sent == 0
    assert pub.counters.dropped == 0
    messages = list(_spooled(tmp_path))
    shapes = [
        (topic, key, type(msg).__name__, len(msg.samples) if isinstance(msg, ReadingBatch) else None)
        for topic, key, msg in messages
    ]
    assert shapes == [
        ("r", b"PMP-001", "ReadingBatch", 500),
        ("r", b"PMP-001", "ReadingBatch", 500),
        ("r", b"PMP-002", "ReadingBatch", 300),  # flushed ahead of its gap, so the gap follows its data
        ("r", b"PMP-002", "Gap", None),
        ("m", b"PMP-001", "MaintenanceEvent", None),
        ("r", b"PMP-001", "ReadingBatch", 200),
    ]
    pmp1 = [
        s.value
        for _, _, msg in messages
        if isinstance(msg, ReadingBatch) and msg.machine_id == "PMP-001"
        for s in msg.samples
    ]
    assert pmp1 == [float(i) for i in range(1200)]


def test_a_partial_batch_is_sent_after_batch_max_ms_without_a_flush(tmp_path: Path, closed_port: int) -> None:
    pub = _publisher(tmp_path, closed_port, batch_max_ms=50)
    pub.start()
    try:
        pub.add(_reading("PMP-001", 0))
        deadline = time.monotonic() + 30
        while pub.backlog < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.backlog == 1
    finally:
        pub.close(timeout_s=5)


def test_a_restarted_publisher_keeps_the_backlog_and_continues_the_sequence(tmp_path: Path, closed_port: int) -> None:
    first = _publisher(tmp_path, closed_port)
    first.start()
    for i in range(10):
        first.add(_reading("PMP-001", i))
    first.close(timeout_s=5)
    second = _publisher(tmp_path, closed_port)
    second.start()
    assert second.spooling
    assert second.backlog == 10
    for i in range(10, 15):
        second.add(_reading("PMP-001", i))
    second.close(timeout_s=5)
    values = [s.value for _, _, msg in _spooled(tmp_path) if isinstance(msg, ReadingBatch) for s in msg.samples]
    assert values == [float(i) for i in range(15)]


def test_the_spool_bound_drops_by_policy_and_counts(tmp_path: Path, closed_port: int) -> None:
    pub = KafkaPublisher(
        KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port}"),
        Topics(readings="r"),
        SpoolSettings(path=tmp_path / "spool.sqlite", max_bytes=1024, policy="drop_newest", retry_interval_s=600),
        PublishSettings(batch_max_samples=10, connect_timeout_s=0.5),
    )
    pub.start()
    for i in range(200):
        pub.add(_reading("PMP-001", i))
    pub.close(timeout_s=5)
    c = pub.counters
    assert c.dropped > 0
    assert c.spooled + c.dropped == 200
    assert c.by_reason["drop:drop_newest"] == c.dropped
    values = [s.value for _, _, msg in _spooled(tmp_path) if isinstance(msg, ReadingBatch) for s in msg.samples]
    assert values == [float(i) for i in range(c.spooled)]  # drop_newest keeps the history


def test_using_a_publisher_before_start_is_an_error(tmp_path: Path, closed_port: int) -> None:
    with pytest.raises(PublishError, match="not started"):
        _publisher(tmp_path, closed_port).add(_reading("PMP-001", 0))


def test_metrics_mirror_the_counters_while_spooling(tmp_path: Path, closed_port: int) -> None:
    from ingest.publisher import IngestMetrics
    from vigil.metrics import ServiceMetrics

    metrics = ServiceMetrics("test-ingest", process_metrics=False)
    exporter = IngestMetrics(metrics)
    pub = _publisher(tmp_path, closed_port, batch_max_samples=10)
    pub.start()
    try:
        for i in range(25):
            pub.add(_reading("PMP-001", i))
        exporter.update(pub, {"out_of_range": 2, "unknown_machine": 1}, {"received": 9, "json": 3})
        exporter.update(pub, {"out_of_range": 2, "unknown_machine": 1}, {"received": 9, "json": 3})  # no double count
    finally:
        pub.close(timeout_s=5)
    value = metrics.registry.get_sample_value
    assert value("vigil_ingest_spooling") == 1
    assert value("vigil_ingest_spool_backlog_readings") == 20
    assert value("vigil_ingest_spooled_readings_total", {"reason": "kafka_unavailable"}) == 20
    assert value("vigil_ingest_input_total", {"reason": "out_of_range"}) == 2
    assert value("vigil_dead_letters_total", {"reason": "json"}) == 3
    assert value("vigil_readings_total") == 0


def test_a_batch_too_large_for_kafka_is_split_in_order(tmp_path: Path, closed_port: int) -> None:
    from ingest.publisher import MAX_MESSAGE_BYTES

    pub = _publisher(tmp_path, closed_port)
    pub.start()
    unit = "u" * 4000  # ~4 kB per reading: a 500-reading batch would be ~2 MB
    for i in range(500):
        pub.add(Reading(machine_id="PMP-001", sensor="flow", ts=T + timedelta(seconds=i), value=float(i), unit=unit))
    pub.close(timeout_s=5)
    spool = Spool(SpoolSettings(path=_spool_file(tmp_path)))
    spool.open()
    sizes = [len(m.value) for m in spool.peek(100)]
    spool.close()
    assert len(sizes) > 1
    assert max(sizes) <= MAX_MESSAGE_BYTES
    values = [s.value for _, _, msg in _spooled(tmp_path) if isinstance(msg, ReadingBatch) for s in msg.samples]
    assert values == [float(i) for i in range(500)]


_KILLED_CHILD = """
import os, signal, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from ingest.publisher import KafkaPublisher
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics
from vigil.contracts import Reading

port, spool = sys.argv[1], Path(sys.argv[2])
pub = KafkaPublisher(
    KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"),
    Topics(readings="r"),
    SpoolSettings(path=spool, retry_interval_s=600),
    PublishSettings(batch_max_samples=100, connect_timeout_s=0.5),
)
pub.start()
t0 = datetime(2026, 1, 1, tzinfo=UTC)
for i in range(1000):
    pub.add(Reading(machine_id="PMP-001", sensor="flow", ts=t0 + timedelta(seconds=i), value=float(i)))
print(pub.backlog, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit: a crash
"""


def test_spooled_readings_survive_the_process_being_killed(tmp_path: Path, closed_port: int) -> None:
    import subprocess
    import sys

    spool_path = tmp_path / "spool.sqlite"
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(closed_port), str(spool_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    assert child.stdout.strip() == "1000"  # full batches were spooled before the kill
    values = [s.value for _, _, msg in _spooled(tmp_path) if isinstance(msg, ReadingBatch) for s in msg.samples]
    assert values == [float(i) for i in range(1000)]


def test_adding_after_close_is_refused_not_silently_buffered(tmp_path: Path, closed_port: int) -> None:
    pub = _publisher(tmp_path, closed_port)
    pub.start()
    pub.add(_reading("PMP-001", 0))
    pub.close(timeout_s=2)
    with pytest.raises(PublishError, match="closed"):
        pub.add(_reading("PMP-001", 1))
    assert pub.counters.added == 1
    assert pub.backlog == 1


def test_each_source_gets_its_own_spool_file_and_a_spool_is_locked_to_one_process(
    tmp_path: Path, closed_port: int
) -> None:
    from ingest.exceptions import SpoolError

    settings = SpoolSettings(path=tmp_path / "ingest.sqlite", retry_interval_s=600)
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port}")
    publish = PublishSettings(connect_timeout_s=0.5)
    opcua = KafkaPublisher(kafka, Topics(), settings, publish, source="opcua")
    mqtt = KafkaPublisher(kafka, Topics(), settings, publish, source="mqtt")
    assert (opcua.spool_path.name, mqtt.spool_path.name) == ("ingest.opcua.sqlite", "ingest.mqtt.sqlite")
    opcua.start()
    try:
        twin = KafkaPublisher(kafka, Topics(), settings, publish, source="opcua")
        with pytest.raises(SpoolError, match=r"in use by pid \d+"):
            twin.start()
    finally:
        opcua.close(timeout_s=1)
