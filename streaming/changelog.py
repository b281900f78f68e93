"""The feature workers' durable state: one compacted Kafka record per machine, with the offsets it reflects.

Key ``<group_id>/<machine_id>``; value ``b"VGS2"`` + zlib of (4-byte big-endian header length, JSON header
``{"v": 2, "offsets": {"<topic>:<partition>": next offset}, "machine": <WindowEngine.machine_state()> with each
sensor's buffers replaced by its reading count}``, then per sensor in header order its event times and values as
byte-shuffled float64). Shuffling (all first bytes of the floats, then all second bytes, ...) lets zlib level 1
shrink regular event times and slowly moving values several-fold, where the first format (``v: 1``, base64 text
in zlib'd JSON, still read) compressed poorly: fewer bytes for kafka-python's pure-Python CRC32C, which is the
main cost of a checkpoint. A record is self-consistent (state and offsets written together), so no multi-record
atomicity is needed: whoever restores it skips that machine's records below its offsets. The topic is created
with room for a large machine (:data:`MAX_STATE_BYTES`).

>>> record = encode_checkpoint({"flow:0": 12}, {"watermark": 1.0})
>>> decode_checkpoint("PMP-001", record).offsets
{'flow:0': 12}
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.exceptions import StateError
from vigil.bus import TopicSpec, make_consumer
from vigil.config import KafkaSettings

MAX_STATE_BYTES = 16 * 1024 * 1024
"""Largest compressed checkpoint of one machine (its open windows' readings); the changelog is created for it."""
_VERSION = 2
_MAGIC = b"VGS2"
"""Starts a ``v: 2`` record (a ``v: 1`` record is plain zlib, starting with ``0x78``)."""


@dataclass(frozen=True)
class Checkpoint:
    offsets: dict[str, int]
    """``"<topic>:<partition>"`` -> the next offset; every record of the machine below it is in ``machine``."""
    machine: dict[str, Any]
    """The machine's window state (:meth:`streaming.windows.WindowEngine.load_machine_state`)."""


def encode_checkpoint(offsets: dict[str, int], machine: dict[str, Any]) -> bytes:
    """One record value; ``machine["buffers"]`` may hold float64 bytes (``machine_state(raw=True)``) or base64."""
    header_machine = dict(machine)
    counts: dict[str, int] = {}
    planes: list[bytes] = []
    for sensor, (ts, values) in machine.get("buffers", {}).items():
        ts_b, values_b = _raw(ts), _raw(values)
        if len(ts_b) != len(values_b) or len(ts_b) % 8:
            raise StateError(f"sensor {sensor!r}: {len(ts_b)} bytes of times but {len(values_b)} of values")
        counts[sensor] = len(ts_b) // 8
        planes += [_shuffle(ts_b), _shuffle(values_b)]
    if "buffers" in machine:
        header_machine["buffers"] = counts
    header = json.dumps({"v": _VERSION, "offsets": offsets, "machine": header_machine}).encode()
    return _MAGIC + zlib.compress(b"".join([len(header).to_bytes(4, "big"), header, *planes]), 1)


def decode_checkpoint(machine_id: str, value: bytes) -> Checkpoint:
    """The record's offsets and machine state (buffers as float64 bytes; base64 text for a ``v: 1`` record)."""
    try:
        if not value.startswith(_MAGIC):
            return _decode_v1(machine_id, value)
        body = zlib.decompress(value[len(_MAGIC) :])
        size = int.from_bytes(body[:4], "big")
        record = json.loads(body[4 : 4 + size])
        if not isinstance(record, dict) or record.get("v") != _VERSION:
            raise StateError(f"checkpoint of machine {machine_id!r} has an unknown format")
        machine = record["machine"]
        if "buffers" in machine:
            pos, buffers = 4 + size, {}
            for sensor, count in machine["buffers"].items():
                n = 8 * int(count)
                if pos + 2 * n > len(body):
                    raise ValueError(f"sensor {sensor!r}: record truncated")
                buffers[sensor] = [_unshuffle(body[pos : pos + n]), _unshuffle(body[pos + n : pos + 2 * n])]
                pos += 2 * n
            machine["buffers"] = buffers
        return Checkpoint(offsets=dict(record["offsets"]), machine=machine)
    except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"checkpoint of machine {machine_id!r} is unreadable: {exc}") from exc


def _decode_v1(machine_id: str, value: bytes) -> Checkpoint:
    record = json.loads(zlib.decompress(value))
    if not isinstance(record, dict) or record.get("v") != 1:
        raise StateError(f"checkpoint of machine {machine_id!r} has an unknown format")
    return Checkpoint(offsets=dict(record["offsets"]), machine=record["machine"])


def _raw(column: bytes | str) -> bytes:
    return column if isinstance(column, bytes) else base64.b64decode(column)


def _shuffle(data: bytes) -> bytes:
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffle(data: bytes) -> bytes:
    return np.frombuffer(data, dtype=np.uint8).reshape(8, -1).T.tobytes()


class Changelog:
    """One group's records in the compacted changelog topic: ``ensure()`` creates it, ``read()`` restores."""

    def __init__(self, kafka: KafkaSettings, topic: TopicSpec, group_id: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id

    def key(self, machine_id: str) -> bytes:
        return f"{self.group_id}/{machine_id}".encode()

    def ensure(self) -> None:
        """Create the compacted topic (one partition) allowing records up to :data:`MAX_STATE_BYTES`."""
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(**self.kafka.client_kwargs(), client_id=f"{self.kafka.client_id}-admin")
        try:
            if self.topic.name in set(admin.list_topics()):
                return
            configs = {
                "cleanup.policy": "compact",
                "min.compaction.lag.ms": "0",
                "segment.ms": "600000",
                "max.message.bytes": str(MAX_STATE_BYTES + 64 * 1024),
            }
            topic = NewTopic(self.topic.name, 1, self.kafka.replication_factor, topic_configs=configs)
            # Another worker may create it at the same moment; that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic], timeout_ms=30_000, wait_for_metadata=True)
        finally:
            admin.close()

    def read(self, timeout_s: float = 120.0) -> dict[str, Checkpoint]:
        """The latest checkpoint of every machine of this group (the topic read to its end)."""
        from kafka import TopicPartition

        prefix = f"{self.group_id}/"
        consumer = make_consumer(self.kafka, None, client_id=f"{self.kafka.client_id}-restore")
        latest: dict[str, bytes] = {}
        try:
            tp = TopicPartition(self.topic.name, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            deadline = time.monotonic() + timeout_s
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise StateError(f"changelog {self.topic.name} not read to its end within {timeout_s:g}s")
                for messages in consumer.poll(timeout_ms=1000).values():
                    for msg in messages:
                        key = msg.key.decode() if msg.key else ""
                        if not key.startswith(prefix):
                            continue
                        if msg.value is None:
                            latest.pop(key[len(prefix) :], None)
                        else:
                            latest[key[len(prefix) :]] = msg.value
        finally:
            consumer.close(autocommit=False)
        return {machine: decode_checkpoint(machine, value) for machine, value in latest.items()}
