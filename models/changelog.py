"""Where the models stage keeps its checkpoints: two compacted Kafka topics.

* ``<changelog_prefix>models`` (one partition): the **shared models of each worker** (per machine type), key
  ``<group>[.<worker>]/header`` and ``.../chunk/<i>`` (:class:`SharedStore`);
* ``<changelog_prefix>models.machines`` (as many partitions as the features topic): **one record per machine**,
  key ``<group>/<machine>``, in the partition with the number of the machine's features partition, and one
  **marker** per partition, key ``<group>/@offsets``, holding the input offsets up to which every machine of
  that partition is in the changelog (:class:`MachineChangelog`). This is the Kafka Streams pattern: whoever
  is assigned features partition ``p`` reads changelog partition ``p`` to its end and has the state of exactly
  the machines it now serves.

Machine ids cannot contain ``@`` (see :data:`vigil.contracts.Identifier`), so the marker's key never clashes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.checkpoint import read_header
from models.exceptions import CheckpointError, ModelsError
from vigil.bus import TopicSpec, make_consumer, partition_count
from vigil.config import KafkaSettings

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 60.0
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""Largest record the machine changelog accepts (one machine with a full pending-label buffer fits easily)."""
MARKER = "@offsets"


class SharedStore:
    """The per-worker checkpoints of the shared (per-type) models of one group, in a one-partition topic."""

    def __init__(self, kafka: KafkaSettings, topic: str, group_id: str, key: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.key = key

    def write(self, producer: Any, header: bytes, chunks: list[bytes]) -> None:
        """Chunks first, then the header that names them: a torn write leaves a checksum mismatch, not a lie."""
        futures = [
            producer.send(self.topic, key=f"{self.key}/chunk/{i}".encode(), value=chunk)
            for i, chunk in enumerate(chunks)
        ]
        for future in futures:
            future.get(timeout=SEND_TIMEOUT_S)
        producer.send(self.topic, key=f"{self.key}/header".encode(), value=header).get(timeout=SEND_TIMEOUT_S)

    def ensure(self) -> None:
        """The topic compacted (it is created so by :func:`vigil.bus.ensure_topics`; one made otherwise is fixed)."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(**self.kafka.client_kwargs(), client_id=f"{self.kafka.client_id}-admin")
        try:
            ensure_compacted(admin, self.topic, SHARED_TOPIC_CONFIGS)
        finally:
            admin.close()

    def read(self, timeout_s: float = 60.0) -> dict[str, tuple[bytes, list[bytes | None]]]:
        """The latest header and chunks of every worker of the group (``None`` for a missing chunk)."""
        from kafka import TopicPartition

        consumer = make_consumer(self.kafka, None, max_partition_fetch_bytes=8 * 1024 * 1024)
        latest: dict[str, bytes | None] = {}
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            end = consumer.end_offsets([tp])[tp]
            deadline = time.monotonic() + timeout_s
            while consumer.position(tp) < end and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        key = record.key.decode(errors="replace") if record.key else ""
                        owner = key.partition("/")[0]
                        if owner == self.group_id or owner.startswith(f"{self.group_id}."):
                            latest[key] = record.value
        finally:
            consumer.close(autocommit=False)
        out: dict[str, tuple[bytes, list[bytes | None]]] = {}
        for key, header in latest.items():
            owner, _, rest = key.partition("/")
            if rest != "header" or header is None:
                continue
            try:
                count = int(read_header(header).get("chunks", 0))
            except (CheckpointError, TypeError, ValueError):
                count = 0
            out[owner] = (header, [latest.get(f"{owner}/chunk/{i}") for i in range(count)])
        return out


@dataclass
class PartitionLog:
    """What changelog partition ``p`` holds for one group: the marker and the latest record per machine."""

    marker: bytes | None = None
    machines: dict[str, bytes] = field(default_factory=dict)
    records: int = 0
    """Records read to get there (every group's, superseded ones included): what compaction keeps bounded."""


@dataclass(frozen=True)
class Marker:
    """What a partition's marker says: ``offsets`` -- every machine of the partition is in the changelog up to
    these (resume there); ``published`` -- outputs were produced up to these (a replay below them publishes
    nothing). ``published`` is ahead of ``offsets`` after a revocation (which writes no machine state) or while a
    refused partition is being rebuilt by replay."""

    offsets: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)


def encode_marker(offsets: dict[str, int], worker: str, published: dict[str, int] | None = None) -> bytes:
    return json.dumps(
        {
            "offsets": offsets,
            "published": published if published is not None else offsets,
            "worker": worker,
            "written_at": datetime.now(UTC).isoformat(),
        }
    ).encode()


def decode_marker(value: bytes) -> Marker:
    """A marker; raises :class:`CheckpointError` when it is unreadable (a marker without ``published``, as written
    before that field existed, published up to its offsets)."""
    meta = read_header(value)
    offsets = _int_map(meta.get("offsets"), "offsets")
    published = meta.get("published")
    return Marker(offsets, offsets if published is None else _int_map(published, "published offsets"))


def _int_map(value: Any, what: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise CheckpointError(f"changelog marker has no {what}")
    try:
        return {str(k): int(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"changelog marker {what} are not integers: {exc}") from exc


class MachineChangelog:
    """Per-machine state of one group in a compacted topic partitioned like the features topic."""

    def __init__(self, kafka: KafkaSettings, topic: str, group_id: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id

    def key(self, machine_id: str) -> bytes:
        return f"{self.group_id}/{machine_id}".encode()

    def ensure(self, partitions: int) -> None:
        """Create the topic compacted with ``partitions`` partitions, or bring an existing one there: a machine's
        state must sit in the partition with the number of its features partition, and only compaction keeps a
        restore bounded (and a quiet machine's state from expiring). A topic with fewer partitions (the features
        topic grew) gets more; one with more keeps its extra partitions unused; either way it is reported."""
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(**self.kafka.client_kwargs(), client_id=f"{self.kafka.client_id}-admin")
        try:
            if self.topic not in set(admin.list_topics()):
                configs = dict(MACHINE_TOPIC_CONFIGS)
                topic = NewTopic(self.topic, partitions, self.kafka.replication_factor, topic_configs=configs)
                # Another worker may create it at the same moment; that is fine.
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([topic], timeout_ms=30_000, wait_for_metadata=True)
            ensure_compacted(admin, self.topic, MACHINE_TOPIC_CONFIGS, MAX_RECORD_BYTES)
            found = self.partition_count()
            if found < partitions:
                log.warning(
                    "models: changelog topic %s has %d partition(s), the features topic %d: adding partitions "
                    "(machines whose features partition changed start from their type's model)",
                    self.topic,
                    found,
                    partitions,
                )
                self._grow(admin, partitions)
            elif found > partitions:
                log.warning(
                    "models: changelog topic %s has %d partition(s), the features topic %d: partitions %d.. are "
                    "not used",
                    self.topic,
                    found,
                    partitions,
                    partitions,
                )
        finally:
            admin.close()

    def _grow(self, admin: Any, partitions: int, timeout_s: float = 30.0) -> None:
        from kafka.errors import KafkaError

        try:
            admin.create_partitions({self.topic: partitions}, timeout_ms=30_000)
        except KafkaError as exc:  # another worker grew it first: checked below
            log.info("models: adding partitions to %s: %s", self.topic, exc)
        deadline = time.monotonic() + timeout_s
        while self.partition_count() < partitions:
            if time.monotonic() > deadline:
                raise ModelsError(f"changelog topic {self.topic} did not grow to {partitions} partitions")
            time.sleep(0.5)

    def partition_count(self, timeout_s: float = 30.0) -> int:
        return partition_count(self.kafka, self.topic, timeout_s)

    def send(self, producer: Any, partition: int, key: bytes, value: bytes) -> Any:
        return producer.send(self.topic, key=key, value=value, partition=partition)

    def read(self, partitions: set[int], timeout_s: float = 120.0) -> dict[int, PartitionLog]:
        """Changelog partitions read to their end: the latest marker and machine records of this group."""
        from kafka import TopicPartition

        out = {p: PartitionLog() for p in partitions}
        if not partitions:
            return out
        prefix = f"{self.group_id}/"
        consumer = make_consumer(
            self.kafka, None, client_id=f"{self.kafka.client_id}-restore", max_partition_fetch_bytes=MAX_RECORD_BYTES
        )
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            # A large fleet takes as long as it takes: only a read that stops making progress is given up.
            deadline = time.monotonic() + timeout_s
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise ModelsError(f"changelog {self.topic}: nothing read for {timeout_s:g}s before its end")
                batch = consumer.poll(timeout_ms=1000)
                if batch:
                    deadline = time.monotonic() + timeout_s
                for tp, records in batch.items():
                    log_ = out[tp.partition]
                    log_.records += len(records)
                    for record in records:
                        key = record.key.decode(errors="replace") if record.key else ""
                        if not key.startswith(prefix):
                            continue
                        name = key[len(prefix) :]
                        if name == MARKER:
                            log_.marker = record.value
                        elif record.value is None:
                            log_.machines.pop(name, None)
                        else:
                            log_.machines[name] = record.value
        finally:
            consumer.close(autocommit=False)
        return out


MACHINE_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "0",
    # Roll the active segment (which is never compacted) every 10 minutes, clean once 10 % of the log is
    # superseded, and at the latest after an hour: a restore reads about one record per machine plus the last
    # minutes of checkpoints, instead of every checkpoint ever written.
    "segment.ms": "600000",
    "min.cleanable.dirty.ratio": "0.1",
    "max.compaction.lag.ms": "3600000",
    "max.message.bytes": str(MAX_RECORD_BYTES),
}
"""Topic configuration of the machine changelog."""

SHARED_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"}
"""Configuration set on a shared-models topic found uncompacted."""


def ensure_compacted(admin: Any, topic: str, wanted: dict[str, str], min_message_bytes: int = 0) -> bool:
    """Make ``topic`` compacted (only compaction) with a message limit of at least ``min_message_bytes``,
    setting ``wanted`` when it is not (a topic created by hand, or auto-created, with the broker's defaults: it
    would delete states after the retention time and let a restore read every checkpoint ever written). Returns
    whether the configuration was changed."""
    from kafka.admin import ConfigResource, ConfigResourceType

    keys = {"cleanup.policy": None, "max.message.bytes": None}
    found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, keys)], config_filter="all")
    current = {k: str(v.get("value")) for k, v in found.get("topic", {}).get(topic, {}).items()}
    policy = current.get("cleanup.policy", "")
    try:
        limit = int(current.get("max.message.bytes", "0"))
    except ValueError:
        limit = 0
    if policy == "compact" and limit >= min_message_bytes:
        return False
    log.warning(
        "models: topic %s has cleanup.policy=%s, max.message.bytes=%s: setting %s",
        topic,
        policy or "?",
        limit,
        ", ".join(f"{k}={v}" for k, v in wanted.items()),
    )
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, dict(wanted))])
    return True


def changelog_topics(prefix: str) -> tuple[str, str]:
    """The shared models' topic and the per-machine topic."""
    return f"{prefix}models", f"{prefix}models.machines"


def shared_spec(prefix: str) -> TopicSpec:
    return TopicSpec(changelog_topics(prefix)[0], partitions=1, compacted=True)
