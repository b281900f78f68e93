"""``vigil tail`` against the real broker: every wire form printed as the contract's JSON, bad bytes with the
reason, the last N per partition, and a missing topic refused."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

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
