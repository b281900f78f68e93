"""Another team's Kafka topic as a source, against the real Kafka: their JSON records (wide with nested fields,
long with tags, arrays, malformed JSON, unknown tags) mapped into the readings topic, the refusals dead-lettered
with the source topic/partition/offset and the raw bytes; offsets committed after Kafka acknowledged, so a restart
publishes only what is new. ``vigil collect kafka`` runs as a subprocess and is stopped by SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.kafka_topic import TopicCollector
from ingest.publisher import KafkaPublisher
from ingest.validation import Validator
from tests.conftest import ROOT
from vigil.bus import TopicSpec, ensure_topics, make_producer, pipeline_topics
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, PublishSettings, SpoolSettings, Topics, VigilConfig
from vigil.config.mapping import KafkaSource, ReadingMapping, TagSpec, TimeSpec
from vigil.contracts import DeadLetter, Reading, ReadingBatch
from vigil.testing import consume, wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)

HISTORIAN = """
[[sources.kafka]]
name = "historian"
topic = "{topic}"
group_id = "{group}"

[sources.kafka.mapping]
layout = "wide"
machine = "header.asset"
sensor = "sensor"
ignore = ["header.site", "comment"]

[sources.kafka.mapping.time]
column = "header.time"
format = "epoch_ms"

[sources.kafka.mapping.machines]
"P-1" = "PMP-001"

[sources.kafka.mapping.sensors]
"data.temp" = "bearing_temp"
"data.flow" = "flow"

[sources.kafka.mapping.tags]
"data.P2.FT" = {{ machine = "PMP-002", sensor = "flow" }}
"data.P2.TT" = {{ machine = "PMP-002", sensor = "bearing_temp", scale = 0.5555555555555556, offset = -17.77777777777778 }}
"""


def _wide(i: int, **data: Any) -> dict[str, Any]:
    t = int((T0 + timedelta(seconds=10 * i)).timestamp() * 1000)
    body = {"temp": 60.5 + i % 5, "flow": 12.0 + i % 3, "P2": {"FT": 7.5, "TT": 104.0}}
    body.update(data)
    return {"header": {"time": t, "asset": "P-1", "site": "north"}, "data": body, "comment": "shift A"}


def _produce(kafka: KafkaSettings, topic: str, values: list[tuple[bytes | None, bytes]]) -> None:
    producer = make_producer(kafka)
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def _run_cli(
    kafka: KafkaSettings, env: dict[str, str], config: Path, topics: Topics, until: Any, log: Path
) -> dict[str, Any]:
    """``vigil collect kafka`` as a subprocess until ``until(messages)`` holds for the output topics, then SIGTERM;
    its summary line."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "collect", "kafka", "--source", "historian", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
        )
    try:
        consume(kafka, [topics.readings, topics.dead_letter], until, timeout_s=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, log.read_text()[-3000:]
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary


def _readings(messages: list[Any]) -> list[Reading]:
    return [r for m in messages if isinstance(m, ReadingBatch) for r in m.readings()]


def test_collect_kafka_maps_a_wide_foreign_topic_dead_letters_the_rest_and_resumes_where_it_committed(
    kafka_settings: KafkaSettings, topics: Topics, unique: str, tmp_path: Path
) -> None:
    foreign = f"t-{unique}.historian"
    ensure_topics(kafka_settings, [*pipeline_topics(kafka_settings, topics), TopicSpec(foreign, 2)])
    config = tmp_path / "plant.toml"
    config.write_text(EXAMPLE_CONFIG.read_text() + HISTORIAN.format(topic=foreign, group=f"collect-{unique}"))
    records: list[tuple[bytes | None, bytes]] = [(b"line-1", json.dumps(_wide(i)).encode()) for i in range(20)]
    array = json.dumps([_wide(i) for i in range(20, 25)]).encode()  # one message, five moments
    bad_value = json.dumps(_wide(25, flow="hot")).encode()  # the flow field is refused, the rest kept
    not_json = b'{"header": {"time": 1'
    unknown = json.dumps(_wide(26) | {"header": {"time": 1, "asset": "P-9"}}).encode()  # an unknown machine
    records += [(b"line-1", array), (b"line-2", bad_value), (None, not_json), (b"line-2", unknown)]
    _produce(kafka_settings, foreign, records)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIGIL_TOPICS__READINGS": topics.readings,
        "VIGIL_TOPICS__DEAD_LETTER": topics.dead_letter,
        "VIGIL_SPOOL__PATH": str(tmp_path / "spool.sqlite"),
        "VIGIL_METRICS_PORT": "-1",
        "VIGIL_PUBLISH__BATCH_MAX_MS": "50",
        "PYTHONUNBUFFERED": "1",
    }
    # 26 moments x 4 readings, but the bad flow; the unknown machine's record yields its two PMP-002 tags.
    expected = 26 * 4 - 1 + 2

    def done(messages: list[Any]) -> bool:
        return len(_readings(messages)) >= expected and sum(isinstance(m, DeadLetter) for m in messages) >= 4

    summary = _run_cli(kafka_settings, env, config, topics, done, tmp_path / "run1.log")
    counts = summary["sources"]["historian"]
    assert counts["received"] == 24
    assert counts["accepted"] == expected
    assert (counts["json"], counts["wrong_type"], counts["unknown_machine"], counts.get("bad_timestamp")) == (
        1,
        1,
        2,
        None,
    )
    assert counts["commits"] >= 1 and "commit_deferred" not in counts
    assert summary["publisher"]["sent"] == expected

    messages = consume(kafka_settings, [topics.readings, topics.dead_letter], done)
    readings = _readings(messages)
    assert len(readings) == expected
    assert max(Counter(r.key for r in readings).values()) == 1
    first = {(r.machine_id, r.sensor): r.value for r in readings if r.ts == T0}
    assert first == pytest.approx(
        {
            ("PMP-001", "bearing_temp"): 60.5,
            ("PMP-001", "flow"): 12.0,
            ("PMP-002", "flow"): 7.5,
            ("PMP-002", "bearing_temp"): 40.0,
        }
    )
    # Only the tag converts its unit (104 degF = 40 degC); the renamed fields are taken as they are.
    letters = [m for m in messages if isinstance(m, DeadLetter)]
    assert sorted(letter.reason for letter in letters) == ["json", "unknown_machine", "unknown_machine", "wrong_type"]
    assert all(letter.source_topic == foreign and letter.partition is not None for letter in letters)
    assert all(letter.offset is not None and letter.service == "ingest.kafka.historian" for letter in letters)
    by_reason = {letter.reason: letter for letter in letters}
    assert base64.b64decode(by_reason["json"].raw) == not_json
    assert base64.b64decode(by_reason["wrong_type"].raw) == bad_value
    assert "'data.flow'" in by_reason["wrong_type"].error
    assert by_reason["unknown_machine"].key == "line-2"

    # A restart in the same group reads only what came after the committed offsets.
    _produce(kafka_settings, foreign, [(b"line-1", json.dumps(_wide(100)).encode())])
    summary = _run_cli(
        kafka_settings, env, config, topics, lambda m: len(_readings(m)) >= expected + 4, tmp_path / "run2.log"
    )
    assert summary["sources"]["historian"]["received"] == 1
    assert summary["sources"]["historian"]["accepted"] == 4
    readings = _readings(consume(kafka_settings, [topics.readings], lambda m: len(_readings(m)) >= expected + 4))
    assert len(readings) == expected + 4
    assert max(Counter(r.key for r in readings).values()) == 1


def test_a_long_foreign_topic_with_tags_in_process_commits_only_what_kafka_acknowledged(
    kafka_settings: KafkaSettings, topics: Topics, unique: str, example_config: VigilConfig, tmp_path: Path
) -> None:
    foreign = f"t-{unique}.events"
    ensure_topics(kafka_settings, [*pipeline_topics(kafka_settings, topics), TopicSpec(foreign, 1)])
    source = KafkaSource(
        name="events",
        topic=foreign,
        group_id=f"events-{unique}",
        mapping=ReadingMapping(
            tag="point.tag",
            machine=None,
            sensor=None,
            value="point.value",
            quality="point.status",
            decimal=",",
            time=TimeSpec(column="when", format="%Y-%m-%d %H:%M:%S", zone="Europe/Berlin"),
            tags={
                "MTR3.SPD": TagSpec(machine="MTR-003", sensor="speed"),
                "MTR3.CUR": TagSpec(machine="MTR-003", sensor="current"),
            },
        ),
    )
    machines = {m.id: set(m.sensors) for m in example_config.machines_by_id.values()}

    def event(i: int, tag: str = "MTR3.SPD", value: Any = "1480,5", status: Any = "good") -> bytes:
        when = (T0 + timedelta(hours=2, seconds=i)).strftime("%Y-%m-%d %H:%M:%S")  # Berlin local = UTC+2 in May
        return json.dumps({"when": when, "point": {"tag": tag, "value": value, "status": status}}).encode()

    good = [event(i) for i in range(10)] + [event(i, "MTR3.CUR", 12.25, 0) for i in range(10)]
    bad = [event(50, "MTR9.XYZ"), b"\xff\xfe not json", event(51, status="so-so"), b"[1, 2]"]
    _produce(kafka_settings, foreign, [(None, v) for v in [*good, *bad]])

    def collector() -> tuple[TopicCollector, KafkaPublisher]:
        publisher = KafkaPublisher(
            kafka_settings,
            topics,
            SpoolSettings(path=tmp_path / "spool.sqlite"),
            PublishSettings(batch_max_ms=50),
            source="kafka:events",
        )
        publisher.start()
        c = TopicCollector(kafka_settings, source, publisher, Validator(example_config), machines)
        c.setup()
        return c, publisher

    first, publisher = collector()
    try:
        wait_for(lambda: first.step() >= 0 and first.counters["received"] >= len(good) + len(bad), 90, "the records")
        assert first.acknowledged()
        assert first.offsets["commits"] >= 1
    finally:
        first.close()
        publisher.close()
    assert first.counters["accepted"] == 20
    assert (first.counters["unknown_tag"], first.counters["json"], first.counters["wrong_type"]) == (1, 1, 1)
    assert first.counters["not_object"] == 2

    messages = consume(
        kafka_settings,
        [topics.readings, topics.dead_letter],
        lambda m: len(_readings(m)) >= 20 and sum(isinstance(x, DeadLetter) for x in m) >= 5,
    )
    readings = _readings(messages)
    assert sorted(r.ts for r in readings if r.sensor == "speed") == [T0 + timedelta(seconds=i) for i in range(10)]
    assert {r.value for r in readings} == {1480.5, 12.25}
    letters = [m for m in messages if isinstance(m, DeadLetter)]
    assert sorted(x.reason for x in letters) == ["json", "not_object", "not_object", "unknown_tag", "wrong_type"]
    assert sorted(x.offset for x in letters if x.reason != "not_object") == [20, 21, 22]
    unknown = next(x for x in letters if x.reason == "unknown_tag")
    assert "'point.tag'" in unknown.error and base64.b64decode(unknown.raw) == bad[0]

    # The same group again: only the record produced after the commit is read.
    _produce(kafka_settings, foreign, [(None, event(99))])
    second, publisher = collector()
    try:
        wait_for(lambda: second.step() >= 0 and second.counters["received"] >= 1, 90, "the new record")
        for _ in range(4):  # anything re-read would arrive with it or right behind it
            second.step()
    finally:
        second.close()
        publisher.close()
    assert second.counters["received"] == 1
    assert second.counters["accepted"] == 1
