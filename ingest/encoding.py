"""How a batch of one machine's readings becomes one Kafka message: rows, columns or packed columns.

The hot path of every collector (the :class:`~ingest.publisher.KafkaPublisher` encodes each batch once); the
forms are those :func:`vigil.contracts.decode` reads (``publish.batch_format``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import msgpack
import numpy as np

from vigil.contracts import Reading, utcnow

MAX_MESSAGE_BYTES = 900_000
"""Largest message the publisher sends: below Kafka's default ``message.max.bytes`` (1 MiB); larger batches split."""


_SAMPLE_HEADS: dict[tuple[str, str | None, str, int, tuple[str, ...]], str] = {}


def encode_batch(machine_id: str, readings: list[Reading], source: str | None = None) -> bytes:
    """The JSON of a :class:`ReadingBatch` of these readings, exactly as :func:`vigil.contracts.decode` reads it.

    Written by hand because it is the hot path: building ``Sample`` models and serialising them through pydantic
    costs ~15 us per reading, this ~1.5 us. The parts that repeat (sensor, unit, quality, status code, flags)
    are encoded once per combination and cached; a round-trip test against the pydantic contract guards it.
    Readings were validated when built, so timestamps are aware (UTC) and identifiers need no escaping, but
    free text (unit, flags, source) goes through ``json.dumps``. A non-finite value becomes ``null``.

    >>> from datetime import datetime, timezone
    >>> from vigil.contracts import ReadingBatch, decode
    >>> r = Reading(machine_id="PMP-001", sensor="flow", ts=datetime(2026, 1, 1, tzinfo=timezone.utc), value=2.5)
    >>> batch = decode(encode_batch("PMP-001", [r]))
    >>> isinstance(batch, ReadingBatch), list(batch.readings())[0].value
    (True, 2.5)
    """
    heads = _SAMPLE_HEADS
    parts = []
    for r in readings:
        key = (r.sensor, r.unit, r.quality, r.status_code, r.flags)
        head = heads.get(key)
        if head is None:
            if len(heads) > 100_000:  # bounded: a source inventing units must not grow memory forever
                heads.clear()
            head = heads[key] = (
                f'{{"sensor":{json.dumps(r.sensor)},"unit":{json.dumps(r.unit)},"quality":"{r.quality.value}",'
                f'"status_code":{int(r.status_code)},"flags":{json.dumps(list(r.flags))},"ts":"'
            )
        value = r.value
        text = "null" if value is None or not math.isfinite(value) else repr(float(value))
        server = "null" if r.server_ts is None else f'"{r.server_ts.isoformat()}"'
        parts.append(f'{head}{r.ts.isoformat()}","value":{text},"server_ts":{server}}}')
    return (
        f'{{"v":1,"kind":"reading_batch","machine_id":{json.dumps(machine_id)},'
        f'"ingest_ts":"{utcnow().isoformat()}","source":{json.dumps(source)},"samples":[{",".join(parts)}]}}'
    ).encode()


def encode_columns(machine_id: str, readings: list[Reading], source: str | None = None) -> bytes:
    """The JSON of a :class:`~vigil.contracts.ReadingColumns` of these readings (``publish.batch_format =
    "columns"``): one column per sensor and unit, event times as epoch seconds, the optional lists (quality,
    status code, server timestamp, flags) only where a reading differs from the default. A non-finite value
    becomes ``null``.

    >>> from datetime import datetime, timezone
    >>> from vigil.contracts import ReadingColumns, decode
    >>> r = Reading(machine_id="PMP-001", sensor="flow", ts=datetime(2026, 1, 1, tzinfo=timezone.utc), value=2.5)
    >>> message = decode(encode_columns("PMP-001", [r]))
    >>> isinstance(message, ReadingColumns), list(message.readings())[0] == r.model_copy(
    ...     update={"ingest_ts": message.ingest_ts})
    (True, True)
    """
    columns = _columns(readings)
    if columns is None:
        return encode_batch(machine_id, readings, source)
    doc = {
        "v": 1,
        "kind": "reading_columns",
        "machine_id": machine_id,
        "ingest_ts": utcnow().isoformat(),
        "source": source,
        "columns": columns,
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def encode_packed(machine_id: str, readings: list[Reading], source: str | None = None) -> bytes:
    """The packed form of :func:`encode_columns` (``publish.batch_format = "packed"``, see
    :func:`vigil.contracts.pack_columns`): MessagePack with the numbers as float64 binaries, null as NaN.

    >>> from datetime import datetime, timezone
    >>> from vigil.contracts import ReadingColumns, decode
    >>> r = Reading(machine_id="PMP-001", sensor="flow", ts=datetime(2026, 1, 1, tzinfo=timezone.utc), value=2.5)
    >>> message = decode(encode_packed("PMP-001", [r]))
    >>> isinstance(message, ReadingColumns), list(message.readings())[0] == r.model_copy(
    ...     update={"ingest_ts": message.ingest_ts})
    (True, True)
    """
    columns = _columns(readings)
    if columns is None:
        return encode_batch(machine_id, readings, source)
    nan = math.nan
    doc: dict[str, Any] = {
        "v": 1,
        "kind": "reading_columns",
        "machine_id": machine_id,
        "ingest_ts": utcnow().timestamp(),
        "source": source,
        "sensors": [c["sensor"] for c in columns],
        "units": [c["unit"] for c in columns],
        "lengths": [len(c["ts"]) for c in columns],
        "ts": _f8(t for c in columns for t in c["ts"]),
        "value": _f8(nan if v is None else v for c in columns for v in c["value"]),
    }
    if any("server_ts" in c for c in columns):
        doc["server_ts"] = _f8(
            nan if t is None else t for c in columns for t in c.get("server_ts") or [None] * len(c["ts"])
        )
    for name, default in (("quality", "good"), ("status_code", 0), ("flags", [])):
        if any(name in c for c in columns):
            doc[name] = [x for c in columns for x in c.get(name) or [default] * len(c["ts"])]
    try:
        packed: bytes = msgpack.packb(doc, use_bin_type=True)
    except OverflowError:
        # A status code beyond MessagePack's 64-bit integers (valid on a Reading, which holds any int; OPC UA's
        # are 32-bit): the rows carry it.
        return encode_batch(machine_id, readings, source)
    return packed


def _f8(numbers: Iterable[float]) -> bytes:
    return np.fromiter(numbers, dtype="<f8").tobytes()


_EPOCH_MAX = 253402300799.0
"""The columnar forms' last epoch second (9999-12-31T23:59:59Z)."""
_EPOCH_EXACT = 2.0**33
"""Below this (year 2242) float epoch seconds hold every microsecond: beyond it, whether one does is checked."""


def _exact_epochs(epochs: list[float], moments: list[datetime]) -> bool:
    """Whether these epoch seconds (of these datetimes) are valid on the columnar forms and give the datetimes
    back to the microsecond."""
    if not epochs:
        return True
    low, high = min(epochs), max(epochs)
    if low < 0.0 or high > _EPOCH_MAX:
        return False
    return high < _EPOCH_EXACT or all(datetime.fromtimestamp(e, UTC) == m for e, m in zip(epochs, moments, strict=True))


def _columns(readings: list[Reading]) -> list[dict[str, Any]] | None:
    """The readings as columns (one per sensor and unit, the optional lists only where a reading differs from the
    default), or ``None`` when they must go as rows."""
    groups: dict[tuple[str, str | None], list[Reading]] = {}
    for r in readings:
        groups.setdefault((r.sensor, r.unit), []).append(r)
    if len({sensor for sensor, _ in groups}) != len(groups):
        # One sensor in two units: its columns would reorder its readings, and of two with the same timestamp the
        # window engine keeps the first to arrive. Rows keep the order (a unit change is rare).
        return None
    columns = []
    for (sensor, unit), rs in groups.items():
        ts = [r.ts.timestamp() for r in rs]
        servers = [r.server_ts.timestamp() for r in rs if r.server_ts is not None]
        if not _exact_epochs(ts, [r.ts for r in rs]) or not _exact_epochs(
            servers, [r.server_ts for r in rs if r.server_ts is not None]
        ):
            # Epoch seconds on the columnar form hold 1970 .. 9999-12-31T23:59:59 (a clock reset to 1601, OPC UA's
            # zero, is before; a fraction of 9999's last second after): such a batch goes as rows, which hold any
            # valid Reading, rather than as a message the contract refuses or one that moves a timestamp.
            return None
        column: dict[str, Any] = {
            "sensor": sensor,
            "unit": unit,
            "ts": ts,
            "value": [None if r.value is None or not math.isfinite(r.value) else float(r.value) for r in rs],
        }
        if any(r.quality != "good" for r in rs):
            column["quality"] = [r.quality.value for r in rs]
        if any(r.status_code for r in rs):
            column["status_code"] = [int(r.status_code) for r in rs]
        if any(r.server_ts is not None for r in rs):
            column["server_ts"] = [None if r.server_ts is None else r.server_ts.timestamp() for r in rs]
        if any(r.flags for r in rs):
            column["flags"] = [list(r.flags) for r in rs]
        columns.append(column)
    return columns


ENCODERS: dict[str, Callable[[str, list[Reading], str | None], bytes]] = {
    "rows": encode_batch,
    "columns": encode_columns,
    "packed": encode_packed,
}
