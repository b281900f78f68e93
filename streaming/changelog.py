"""The feature workers' durable state: one compacted Kafka record per machine, with the offsets it reflects.

Key ``<group_id>/<machine_id>``; value a zlib-compressed JSON document ``{"v": 1, "offsets": {"<topic>:<partition>":
next offset}, "machine": <WindowEngine.machine_state()>}``. A record is self-consistent (state and offsets written
together), so no multi-record atomicity is needed: whoever restores it skips that machine's records below its
offsets. The topic is created with room for a large machine (:data:`MAX_STATE_BYTES`).

>>> record = encode_checkpoint({"flow:0": 12}, {"watermark": 1.0})
>>> decode_checkpoint("PMP-001", record).offsets
{'flow:0': 12}
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

from streaming.exceptions import StateError
from vigil.bus import TopicSpec, make_consumer
from vigil.config import KafkaSettings

MAX_STATE_BYTES = 16 * 1024 * 1024
"""Largest compressed checkpoint of one machine (its open windows' readings); the changelog is created for it."""
_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    offsets: dict[str, int]
    """``"<topic>:<partition>"`` -> the next offset; every record of the machine below it is in ``machine``."""
    machine: dict[str, Any]
    """The machine's window state (:meth:`streaming.windows.WindowEngine.load_machine_state`)."""


def encode_checkpoint(offsets: dict[str, int], machine: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps({"v": _VERSION, "offsets": offsets, "machine": machine}).encode(), 1)


def decode_checkpoint(machine_id: str, value: bytes) -> Checkpoint:
    try:
        record = json.loads(zlib.decompress(value))
    except (zlib.error, ValueError) as exc:
        raise StateError(f"checkpoint of machine {machine_id!r} is unreadable: {exc}") from exc
    if not isinstance(record, dict) or record.get("v") != _VERSION:
        raise StateError(f"checkpoint of machine {machine_id!r} has an unknown format")
    return Checkpoint(offsets=dict(record["offsets"]), machine=record["machine"])


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
