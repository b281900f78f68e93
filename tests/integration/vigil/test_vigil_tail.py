"""``vigil tail`` against the real broker: every wire form printed as the contract's JSON, bad bytes with the
reason, the last N per partition, and a missing topic refused."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.publisher import encode_batch, encode_packed
from vigil.bus import TopicSpec, ensure_topics, make_producer
from vigil.config import KafkaSettings
from vigil.contracts import Reading

pytestmark = pytest.mark.integration


def _tail(kafka: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", "tail", *args, "--idle-s", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tail_prints_packed_rows_and_undecodable_messages_as_json_lines(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"tail-{unique}"
    ensure_topics(kafka_settings, [TopicSpec(topic, 1)])
    t = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [Reading(machine_id="PMP-001", sensor="flow", ts=t + timedelta(seconds=i), value=i) for i in range(3)]
    producer = make_producer(kafka_settings)
    for value in (encode_batch("PMP-001", readings), encode_packed("PMP-001", readings), b"\x00garbage"):
        producer.send(topic, key=b"PMP-001", value=value)
    producer.flush()
    producer.close()

    done = _tail(kafka_settings, topic, "--from-beginning")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["offset"] for line in lines] == [0, 1, 2]
    assert lines[0]["message"]["kind"] == "reading_batch" and len(lines[0]["message"]["samples"]) == 3
    packed = lines[1]["message"]
    assert packed["kind"] == "reading_columns" and packed["columns"][0]["value"] == [0.0, 1.0, 2.0]
    assert lines[2]["error"].startswith("json") and base64.b64decode(lines[2]["raw_base64"]) == b"\x00garbage"
    assert all(line["key"] == "PMP-001" for line in lines)

    last = _tail(kafka_settings, topic, "--last", "1")
    assert [json.loads(line)["offset"] for line in last.stdout.splitlines()] == [2]

    missing = _tail(kafka_settings, f"{topic}-missing")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def _env(kafka: KafkaSettings) -> dict[str, str]:
    return {**os.environ, "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers}


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_missing_topic_is_refused_and_not_created(kafka_settings: KafkaSettings, unique: str) -> None:
    from kafka import KafkaAdminClient

    topic = f"tail-missing-{unique}"
    missing = _tail(kafka_settings, topic)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    admin = KafkaAdminClient(**kafka_settings.client_kwargs())
    try:
        time.sleep(2)  # an auto-creation would show by now
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def test_last_n_per_partition_with_an_empty_partition_then_follow_until_ctrl_c(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"tail-parts-{unique}"
    ensure_topics(kafka_settings, [TopicSpec(topic, 3)])
    producer = make_producer(kafka_settings)
    for i in range(5):
        producer.send(topic, key=b"PMP-001", value=b'{"n": %d}' % i, partition=0)
    producer.send(topic, key=b"MTR-001", value=b'{"n": 0}', partition=2)  # partition 1 stays empty
    producer.flush()

    last = _tail(kafka_settings, topic, "--last", "2")
    assert last.returncode == 0, last.stderr
    seen = [(line["partition"], line["offset"]) for line in _lines(last.stdout)]
    # Partitions interleave as they are fetched; within one, offsets rise.
    assert sorted(seen) == [(0, 3), (0, 4), (2, 0)] and [p for p in seen if p[0] == 0] == [(0, 3), (0, 4)]

    follow = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "tail", topic, "--last", "0", "--follow"],
        env=_env(kafka_settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None and follow.stderr is not None
        while "following" not in (said := follow.stderr.readline()):  # positioned at the end
            assert said, "vigil tail ended before following"
        producer.send(topic, key=b"PMP-002", value=b'{"n": 9}', partition=1)
        producer.flush()
        line = json.loads(follow.stdout.readline())  # blocks until tail prints it
        assert (line["partition"], line["offset"], line["key"]) == (1, 0, "PMP-002")
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=60)
    finally:
        follow.kill()
        producer.close()
    assert follow.returncode == 0 and "Traceback" not in err


def test_tail_into_a_pipe_closed_early_stops_quietly(kafka_settings: KafkaSettings, unique: str) -> None:
    # `vigil tail TOPIC | head -1`: the reader goes away; tail must stop (it hung, its consumer left open) and
    # print no traceback.
    topic = f"tail-pipe-{unique}"
    ensure_topics(kafka_settings, [TopicSpec(topic, 1)])
    producer = make_producer(kafka_settings)
    for i in range(3000):
        producer.send(topic, value=b'{"n": %d}' % i)
    producer.flush()
    producer.close()
    tail = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "tail", topic, "--from-beginning", "--idle-s", "5"],
        env=_env(kafka_settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert tail.stdout is not None and tail.stderr is not None
        assert json.loads(tail.stdout.readline())["offset"] == 0
        tail.stdout.close()
        tail.wait(timeout=90)
        err = tail.stderr.read().decode()
    finally:
        tail.kill()
    assert tail.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err
