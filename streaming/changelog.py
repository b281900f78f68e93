"""The feature workers' durable state: compacted Kafka records per machine, with the offsets they reflect.

Checkpoints are incremental. A *base* record (key ``<group_id>/<machine_id>``) holds a machine's whole state and a
lineage id; the *deltas* after it (key ``<group_id>/<machine_id>#<k>``, ``k = 1, 2, ...``, the same lineage)
hold only the readings added since the previous record, with the machine's other state and offsets whole.
:meth:`Changelog.read` merges a base with its lineage's deltas (:func:`merge_checkpoints`). The worker writes a
base after one of the machine's windows closed or after :data:`MAX_DELTAS` deltas, then tombstones the previous
base's deltas. Every record has this value (format 3) ``b"VGS3"``, a 4-byte big-endian length, then that many bytes
of zlib (level 1) of (4-byte header length, JSON header ``{"v": 3, "offsets": {"<topic>:<partition>": next
offset}, "machine": <WindowEngine.machine_state()> with each sensor's buffers replaced by its reading count,
"raw_planes": [...]}``, then the packed planes), then the raw planes. The held readings (every sensor's, in header
order) are cut into 16 byte planes: byte 0 of every event time, byte 1, ..., byte 7, then the same for the values
(float64, little-endian). Planes whose bytes look random in a sample (the low bytes of noisy values, jittered
times) are stored as they are (``raw_planes``, in order, after the compressed part); the others (exponents, high
bytes, regular times) are compressed, where zlib shrinks them to almost nothing quickly. Format 2 (``VGS2``:
every plane compressed) spent most of a checkpoint's CPU compressing noise for 5-10 % of the size; format 1 (base64
text in zlib'd JSON) compressed poorly. Both are still read. A base with its first ``k`` deltas is
self-consistent (state and offsets written together, in one partition, in order), so no multi-record atomicity
is needed: whoever restores it skips that machine's records below its offsets. The topic is created with room for a large machine (:data:`MAX_STATE_BYTES`).

The topic is partitioned like the reading topics: a machine's records go to changelog partition ``p % n`` (``p``
its readings partition, ``n`` the changelog's partition count), so a worker taking over readings partitions
reads only theirs (:meth:`Changelog.read`). A changelog created with one partition (before this layout) keeps
working: ``n = 1`` puts every machine in partition 0, which every worker then reads whole. The partition count of
an existing changelog is never changed: each key must stay in one partition, or a restore could meet an older
record of a machine in another partition.

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
import numpy.typing as npt

from streaming.exceptions import StateError
from vigil.bus import TopicSpec, make_consumer, partition_count
from vigil.config import KafkaSettings

MAX_STATE_BYTES = 16 * 1024 * 1024
"""Largest compressed checkpoint of one machine (its open windows' readings); the changelog is created for it."""
MAX_DELTAS = 60
"""Deltas after one base before the next checkpoint writes the machine whole again (a base is also written
whenever a window closes, which removes readings): bounds what a restore reads and merges."""
_VERSION = 3
_MAGIC = b"VGS3"
"""Starts a ``v: 3`` record."""
_MAGIC_V2 = b"VGS2"
"""Starts a ``v: 2`` record (still read; a ``v: 1`` record is plain zlib, starting with ``0x78``)."""
_PLANES = 16
"""Byte planes per reading: 8 of its event time, 8 of its value."""
_SAMPLE = 256
_NOISY_DISTINCT = 16
"""A plane with this many distinct bytes among ~256 sampled is stored uncompressed. zlib shrinks the others (the
high bytes of times and values, regular times) to almost nothing, quickly; on planes with more distinct bytes it
spends most of a checkpoint's CPU (100-250 MB/s) for a third or less of their size (a few bits of entropy per
byte: millisecond jitter of times, the low bytes of a noisy value)."""


@dataclass(frozen=True)
class Checkpoint:
    offsets: dict[str, int]
    """``"<topic>:<partition>"`` -> the next offset; every record of the machine below it is in ``machine``."""
    machine: dict[str, Any]
    """The machine's window state (:meth:`streaming.windows.WindowEngine.load_machine_state`)."""
    lineage: str | None = None
    """The base record's lineage id (``None``: a record written before incremental checkpoints)."""
    delta: int = 0
    """For one record: 0 for a base, ``k`` for the ``k``-th delta after it. After :meth:`Changelog.read`: how
    many deltas were applied to the base."""
    highest_delta: int = 0
    """After :meth:`Changelog.read`: the highest delta key of the machine in the topic, of any lineage (the next
    base tombstones them all)."""


def encode_checkpoint(
    offsets: dict[str, int], machine: dict[str, Any], *, lineage: str | None = None, delta: int = 0
) -> bytes:
    """One record value (format ``v: 3``); ``machine["buffers"]`` may hold float64 bytes
    (``machine_state(raw=True)``) or base64. With ``delta`` > 0 the record is the ``delta``-th increment of the
    base of the same ``lineage``: its buffers are appended to the base's (and the earlier deltas'), sensor by
    sensor; its other state and its offsets replace theirs (:meth:`Changelog.read` merges them)."""
    header_machine = dict(machine)
    counts: dict[str, int] = {}
    times: list[bytes] = []
    values: list[bytes] = []
    for sensor, (ts, vals) in machine.get("buffers", {}).items():
        ts_b, values_b = _raw(ts), _raw(vals)
        if len(ts_b) != len(values_b) or len(ts_b) % 8:
            raise StateError(f"sensor {sensor!r}: {len(ts_b)} bytes of times but {len(values_b)} of values")
        counts[sensor] = len(ts_b) // 8
        times.append(ts_b)
        values.append(values_b)
    if "buffers" in machine:
        header_machine["buffers"] = counts
    planes = _planes(b"".join(times), b"".join(values))
    raw = _noisy(planes)
    doc: dict[str, Any] = {
        "v": _VERSION,
        "offsets": offsets,
        "machine": header_machine,
        "raw_planes": np.flatnonzero(raw).tolist(),
    }
    if lineage is not None:
        doc["lineage"] = lineage
        doc["delta"] = delta
    header = json.dumps(doc).encode()
    packed = zlib.compress(b"".join([len(header).to_bytes(4, "big"), header, planes[~raw].tobytes()]), 1)
    return b"".join([_MAGIC, len(packed).to_bytes(4, "big"), packed, planes[raw].tobytes()])


def decode_checkpoint(machine_id: str, value: bytes) -> Checkpoint:
    """The record's offsets and machine state (buffers as float64 bytes; base64 text for a ``v: 1`` record)."""
    try:
        if value.startswith(_MAGIC):
            return _decode_v3(machine_id, value)
        if value.startswith(_MAGIC_V2):
            return _decode_v2(machine_id, value)
        return _decode_v1(machine_id, value)
    except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"checkpoint of machine {machine_id!r} is unreadable: {exc}") from exc


def _decode_v3(machine_id: str, value: bytes) -> Checkpoint:
    start = len(_MAGIC) + 4
    packed_end = start + int.from_bytes(value[len(_MAGIC) : start], "big")
    body = zlib.decompress(value[start:packed_end])
    size = int.from_bytes(body[:4], "big")
    record = json.loads(body[4 : 4 + size])
    if not isinstance(record, dict) or record.get("v") != _VERSION:
        raise StateError(f"checkpoint of machine {machine_id!r} has an unknown format")
    machine = record["machine"]
    if "buffers" in machine:
        counts = {sensor: int(count) for sensor, count in machine["buffers"].items()}
        n = sum(counts.values())
        raw = np.zeros(_PLANES, dtype=bool)
        raw[record["raw_planes"]] = True
        packed, loose = body[4 + size :], value[packed_end:]
        if len(packed) != int(np.count_nonzero(~raw)) * n or len(loose) != int(np.count_nonzero(raw)) * n:
            raise ValueError("record truncated")
        if not loose:  # every plane compressed (always for a small record, e.g. a delta): no masks to apply
            planes = np.frombuffer(packed, dtype=np.uint8).reshape(_PLANES, n)
        else:
            planes = np.empty((_PLANES, n), dtype=np.uint8)
            planes[~raw] = np.frombuffer(packed, dtype=np.uint8).reshape(-1, n)
            planes[raw] = np.frombuffer(loose, dtype=np.uint8).reshape(-1, n)
        times, values = planes[:8].T.tobytes(), planes[8:].T.tobytes()
        buffers, pos = {}, 0
        for sensor, count in counts.items():
            buffers[sensor] = [times[pos : pos + 8 * count], values[pos : pos + 8 * count]]
            pos += 8 * count
        machine["buffers"] = buffers
    lineage = record.get("lineage")
    delta = int(record.get("delta", 0))
    if (lineage is not None and not isinstance(lineage, str)) or delta < 0 or (delta and lineage is None):
        raise ValueError(f"lineage {lineage!r}, delta {delta!r}")
    return Checkpoint(offsets=dict(record["offsets"]), machine=machine, lineage=lineage, delta=delta)


def merge_checkpoints(machine_id: str, base: Checkpoint, deltas: dict[int, Checkpoint]) -> Checkpoint:
    """The base with its lineage's deltas ``1, 2, ...`` applied in order (up to the first missing one): buffers
    appended sensor by sensor, the rest of the state and the offsets from the last applied record."""
    applied: list[Checkpoint] = []
    k = 1
    while k in deltas and deltas[k].lineage == base.lineage and base.lineage is not None:
        applied.append(deltas[k])
        k += 1
    highest = max(deltas, default=0)
    if not applied:
        return Checkpoint(base.offsets, base.machine, base.lineage, 0, highest)
    times: dict[str, list[bytes]] = {}
    values: dict[str, list[bytes]] = {}
    for record in (base, *applied):
        for sensor, (ts, vals) in record.machine.get("buffers", {}).items():
            times.setdefault(sensor, []).append(_raw(ts))
            values.setdefault(sensor, []).append(_raw(vals))
    last = applied[-1]
    machine = dict(last.machine)
    machine["buffers"] = {sensor: [b"".join(times[sensor]), b"".join(values[sensor])] for sensor in times}
    return Checkpoint(last.offsets, machine, base.lineage, len(applied), highest)


def _decode_v2(machine_id: str, value: bytes) -> Checkpoint:
    body = zlib.decompress(value[len(_MAGIC_V2) :])
    size = int.from_bytes(body[:4], "big")
    record = json.loads(body[4 : 4 + size])
    if not isinstance(record, dict) or record.get("v") != 2:
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


def _decode_v1(machine_id: str, value: bytes) -> Checkpoint:
    record = json.loads(zlib.decompress(value))
    if not isinstance(record, dict) or record.get("v") != 1:
        raise StateError(f"checkpoint of machine {machine_id!r} has an unknown format")
    return Checkpoint(offsets=dict(record["offsets"]), machine=record["machine"])


def _raw(column: bytes | str) -> bytes:
    return column if isinstance(column, bytes) else base64.b64decode(column)


def _planes(times: bytes, values: bytes) -> npt.NDArray[np.uint8]:
    """The byte planes of ``n`` event times and ``n`` values (float64): row ``i < 8`` holds byte ``i`` of every
    event time, row ``8 + i`` byte ``i`` of every value."""
    n = len(times) // 8
    planes = np.empty((_PLANES, n), dtype=np.uint8)
    planes[:8] = np.frombuffer(times, dtype=np.uint8).reshape(n, 8).T
    planes[8:] = np.frombuffer(values, dtype=np.uint8).reshape(n, 8).T
    return planes


def _noisy(planes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Which planes look random (many distinct bytes in a sample of ~256): zlib would spend most of a
    checkpoint's CPU on them for 5-10 % of the record's size, so they are stored as they are."""
    n = planes.shape[1]
    if n < 2 * _SAMPLE:
        return np.zeros(_PLANES, dtype=bool)  # small: compressing all of it is cheap
    # Stable: numpy's radix sort for bytes, ~20x faster here than its default for a 2-D uint8 array.
    sample = np.sort(planes[:, :: n // _SAMPLE], axis=1, kind="stable")
    distinct = np.count_nonzero(sample[:, 1:] != sample[:, :-1], axis=1)
    noisy: npt.NDArray[np.bool_] = distinct >= _NOISY_DISTINCT
    return noisy


def _unshuffle(data: bytes) -> bytes:
    return np.frombuffer(data, dtype=np.uint8).reshape(8, -1).T.tobytes()


class Changelog:
    """One group's records in the compacted changelog topic: ``ensure()`` creates it, ``read()`` restores."""

    def __init__(self, kafka: KafkaSettings, topic: TopicSpec, group_id: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.partitions = 1
        """The topic's partition count (known after :meth:`ensure`)."""
        self.records_read = 0
        """Records the last :meth:`read` went through (of every group, tombstones included)."""

    def partition(self, readings_partition: int) -> int:
        """The changelog partition of a machine whose readings are in partition ``readings_partition``."""
        return readings_partition % self.partitions

    def key(self, machine_id: str, delta: int = 0) -> bytes:
        """``<group>/<machine>`` for a base record, ``<group>/<machine>#<delta>`` for its deltas (identifiers
        cannot hold ``#``)."""
        if delta:
            return f"{self.group_id}/{machine_id}#{delta}".encode()
        return f"{self.group_id}/{machine_id}".encode()

    def ensure(self, partitions: int = 1) -> None:
        """Create the compacted topic with ``partitions`` partitions (the reading topics' count) allowing records
        up to :data:`MAX_STATE_BYTES`; an existing topic keeps its partition count. Sets :attr:`partitions`."""
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(**self.kafka.client_kwargs(), client_id=f"{self.kafka.client_id}-admin")
        try:
            if self.topic.name not in set(admin.list_topics()):
                configs = {
                    "cleanup.policy": "compact",
                    "min.compaction.lag.ms": "0",
                    # Roll the active segment (never compacted) every 10 minutes, clean once 10 % of the log is
                    # superseded and at the latest after an hour: a restore reads about a base and its deltas per
                    # machine plus the last minutes of checkpoints.
                    "segment.ms": "600000",
                    "min.cleanable.dirty.ratio": "0.1",
                    "max.compaction.lag.ms": "3600000",
                    "max.message.bytes": str(MAX_STATE_BYTES + 64 * 1024),
                }
                topic = NewTopic(self.topic.name, partitions, self.kafka.replication_factor, topic_configs=configs)
                # Another worker may create it at the same moment; that is fine.
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([topic], timeout_ms=30_000, wait_for_metadata=True)
        finally:
            admin.close()
        self.partitions = partition_count(self.kafka, self.topic.name)

    def read(self, partitions: set[int] | None = None, timeout_s: float = 120.0) -> dict[str, Checkpoint]:
        """The latest checkpoint of every machine of this group in the changelog ``partitions`` (all when
        ``None``), read to their end. Gives up when nothing arrives for ``timeout_s`` before the end."""
        from kafka import TopicPartition

        self.records_read = 0
        if partitions is not None and not partitions:  # a worker assigned nothing (more workers than partitions)
            return {}
        wanted = range(partition_count(self.kafka, self.topic.name)) if partitions is None else sorted(partitions)
        prefix = f"{self.group_id}/"
        consumer = make_consumer(self.kafka, None, client_id=f"{self.kafka.client_id}-restore")
        latest: dict[str, bytes] = {}
        try:
            tps = [TopicPartition(self.topic.name, p) for p in wanted]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            deadline = time.monotonic() + timeout_s
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise StateError(f"changelog {self.topic.name}: nothing read for {timeout_s:g}s before its end")
                batch = consumer.poll(timeout_ms=1000)
                if batch:
                    deadline = time.monotonic() + timeout_s
                for messages in batch.values():
                    self.records_read += len(messages)
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
        bases: dict[str, Checkpoint] = {}
        deltas: dict[str, dict[int, Checkpoint]] = {}
        for key, value in latest.items():
            machine, _, delta = key.partition("#")
            if delta:
                record = decode_checkpoint(machine, value)
                if delta.isdigit() and record.delta == int(delta):
                    deltas.setdefault(machine, {})[record.delta] = record
            else:
                bases[machine] = decode_checkpoint(machine, value)
        # A delta without its base (never written: the base is written first) is ignored.
        return {machine: merge_checkpoints(machine, base, deltas.get(machine, {})) for machine, base in bases.items()}
