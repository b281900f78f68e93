"""Message contracts: every payload that crosses a Kafka topic, in one module.

Every message is a JSON object with a schema version ``v`` and a ``kind`` that names its contract, so one
decoder reads any topic and a consumer can refuse a message from a future schema with a clear reason.
Timestamps are timezone-aware UTC datetimes on the wire (ISO 8601); naive timestamps are refused, because a
plant's local clock is exactly the ambiguity we do not want in an event-time pipeline.

>>> from datetime import datetime, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> batch = ReadingBatch(machine_id="pump-001", samples=[Sample(sensor="flow", ts=t, value=12.5, unit="m3/h")])
>>> decode(encode(batch)) == batch
True
>>> decode(b'{"v": 1, "kind": "reading"}')
Traceback (most recent call last):
...
vigil.exceptions.ContractError: schema: reading.machine_id: Field required; reading.sensor: Field required; ...
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

import msgpack
import numpy as np
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from vigil.exceptions import ContractError

SCHEMA_VERSION = 1
"""Wire schema version written into every message as ``v``."""


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # a ValueError, so pydantic reports it as a validation error, not a crash
        raise ValueError("outside years 1..9999 in UTC") from exc


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-/]+$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Quality(enum.StrEnum):
    """OPC UA status code severity, kept end to end (bad data never trains a model)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"

    @classmethod
    def from_status_code(cls, code: int) -> Quality:
        """Severity from the top two bits of an OPC UA StatusCode.

        >>> Quality.from_status_code(0), Quality.from_status_code(0x40000000), Quality.from_status_code(0x80000000)
        (<Quality.GOOD: 'good'>, <Quality.UNCERTAIN: 'uncertain'>, <Quality.BAD: 'bad'>)
        """
        severity = (code >> 30) & 0b11
        if severity == 0:
            return cls.GOOD
        if severity == 1:
            return cls.UNCERTAIN
        return cls.BAD


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    v: Literal[1] = 1
    """Schema version (:data:`SCHEMA_VERSION`)."""


class Sample(BaseModel):
    """One value of one sensor inside a :class:`ReadingBatch`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sensor: Identifier
    ts: UtcDatetime
    """Event time: the OPC UA source timestamp unless the source is configured to use the server's."""
    value: float | None
    """``None`` only when the source delivered no usable value (bad quality, NaN); see ``flags``."""
    unit: str | None = None
    quality: Quality = Quality.GOOD
    status_code: int = 0
    """Raw OPC UA StatusCode (0 = Good)."""
    server_ts: UtcDatetime | None = None
    flags: tuple[str, ...] = ()
    """Why a value is suspect, e.g. ``out_of_range``, ``not_finite``, ``bad_quality``."""


class Reading(_Message):
    """One value of one sensor of one machine, as collected."""

    kind: Literal["reading"] = "reading"
    machine_id: Identifier
    sensor: Identifier
    ts: UtcDatetime
    value: float | None
    unit: str | None = None
    quality: Quality = Quality.GOOD
    status_code: int = 0
    server_ts: UtcDatetime | None = None
    ingest_ts: UtcDatetime = Field(default_factory=utcnow)
    source: str | None = None
    flags: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, datetime]:
        """Identity for de-duplication and idempotent writes: (machine, sensor, source timestamp)."""
        return (self.machine_id, self.sensor, self.ts)


class ReadingBatch(_Message):
    """Many readings of one machine in one message (the normal form on the readings topic)."""

    kind: Literal["reading_batch"] = "reading_batch"
    machine_id: Identifier
    samples: list[Sample] = Field(min_length=1)
    ingest_ts: UtcDatetime = Field(default_factory=utcnow)
    source: str | None = None

    def readings(self) -> Iterator[Reading]:
        for s in self.samples:
            yield Reading(
                machine_id=self.machine_id,
                sensor=s.sensor,
                ts=s.ts,
                value=s.value,
                unit=s.unit,
                quality=s.quality,
                status_code=s.status_code,
                server_ts=s.server_ts,
                ingest_ts=self.ingest_ts,
                source=self.source,
                flags=s.flags,
            )


_EPOCH_MAX = 253402300799.0
"""9999-12-31T23:59:59Z: the last second a ``datetime`` holds (epoch seconds on the columnar wire form)."""
EpochSeconds = Annotated[float, Field(ge=0.0, le=_EPOCH_MAX, allow_inf_nan=False)]


class SensorColumn(BaseModel):
    """One sensor's readings inside a :class:`ReadingColumns`: parallel lists, one entry per reading.

    Event times are epoch seconds (UTC) here, not ISO strings: a reader turns a column into numbers without
    parsing a timestamp per reading. The optional lists are left out (``None``) when every reading has the
    default (quality ``good``, status code 0, no server timestamp, no flags).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sensor: Identifier
    unit: str | None = None
    ts: list[EpochSeconds] = Field(min_length=1)
    value: list[float | None]
    quality: list[Quality] | None = None
    status_code: list[int] | None = None
    server_ts: list[EpochSeconds | None] | None = None
    flags: list[tuple[str, ...]] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> SensorColumn:
        n = len(self.ts)
        for name in ("value", "quality", "status_code", "server_ts", "flags"):
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"{name} has {len(column)} entries for {n} timestamps")
        return self


class ReadingColumns(_Message):
    """Many readings of one machine in one message, column by column (an optional, faster form of
    :class:`ReadingBatch`; collectors send it with ``publish.batch_format = "columns"``)."""

    kind: Literal["reading_columns"] = "reading_columns"
    machine_id: Identifier
    columns: list[SensorColumn] = Field(min_length=1)
    ingest_ts: UtcDatetime = Field(default_factory=utcnow)
    source: str | None = None

    def readings(self) -> Iterator[Reading]:
        for c in self.columns:
            for i, ts in enumerate(c.ts):
                server_ts = c.server_ts[i] if c.server_ts is not None else None
                yield Reading(
                    machine_id=self.machine_id,
                    sensor=c.sensor,
                    ts=datetime.fromtimestamp(ts, UTC),
                    value=c.value[i],
                    unit=c.unit,
                    quality=c.quality[i] if c.quality is not None else Quality.GOOD,
                    status_code=c.status_code[i] if c.status_code is not None else 0,
                    server_ts=datetime.fromtimestamp(server_ts, UTC) if server_ts is not None else None,
                    ingest_ts=self.ingest_ts,
                    source=self.source,
                    flags=c.flags[i] if c.flags is not None else (),
                )


class Gap(_Message):
    """Data is missing for a machine (or one sensor) between ``start`` and ``end``: not zero, absent.

    Collectors emit it after a lost connection or a silent subscription, on the readings topic, keyed by the
    machine, so it is ordered with the data around it.
    """

    kind: Literal["gap"] = "gap"
    machine_id: Identifier
    sensor: Identifier | None = None
    start: UtcDatetime
    end: UtcDatetime
    reason: str
    source: str | None = None


class MaintenanceKind(enum.StrEnum):
    FAILURE = "failure"
    REPAIR = "repair"
    INSPECTION = "inspection"


class MaintenanceEvent(_Message):
    """A failure, repair or inspection: the delayed labels the models learn from."""

    kind: Literal["maintenance"] = "maintenance"
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    machine_id: Identifier
    ts: UtcDatetime
    event: MaintenanceKind
    failure_mode: str | None = None
    text: str = ""


class MachineState(enum.StrEnum):
    RUNNING = "running"
    OFF = "off"
    STALE = "stale"
    """No reading arrived for the window; it was closed on wall-clock time."""


class FeatureVector(_Message):
    """Features of one machine over one event-time window."""

    kind: Literal["features"] = "features"
    machine_id: Identifier
    machine_type: str
    site: str | None = None
    line: str | None = None
    window_start: UtcDatetime
    window_end: UtcDatetime
    features: dict[str, float | None]
    """``<sensor>.<aggregation>`` (and cross-sensor names) to value; ``None`` means missing, never zero."""
    missing: tuple[str, ...] = ()
    """Sensors with no good reading in the window (their features are ``None`` or imputed, see ``imputed``)."""
    imputed: tuple[str, ...] = ()
    bad_quality_share: float = 0.0
    count: int = 0
    gap: bool = False
    """A :class:`Gap` overlapped the window."""
    state: MachineState = MachineState.RUNNING
    closed_by: Literal["watermark", "wall_clock", "shutdown"] = "watermark"
    state_held: float | None = None
    """Set when the machine type's running sensor sent no usable reading in the window and ``state`` was decided
    from the value it last reported (report by exception: an unchanged value is not sent again): that value.
    ``state`` is then ``off`` below the type's ``off_below``, else ``running``, or ``stale`` when the value is older
    than ``windows.max_state_hold_s``. The sensor's own features stay missing. ``None``: the window decided."""
    state_held_ts: UtcDatetime | None = None
    """When the held value was reported (event time); set with ``state_held``."""
    started_at: UtcDatetime | None = None
    """The machine's latest start at or before the window's end (its running sensor rising through the type's
    ``off_below``, judged sample by sample, so a stop and restart inside one window is seen); ``None`` when none
    is known (no running sensor, no hard limit to track it for, or none since the feature worker's state began)."""


class Contribution(BaseModel):
    """Why: one feature's share in a score, with its value next to normal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    value: float | None
    normal: float | None = None
    """The reference the value is compared with (running mean for the machine/type)."""
    normal_std: float | None = None
    contribution: float
    """Signed share in the score (for a linear model weight x standardised value)."""


class Decision(enum.StrEnum):
    OK = "ok"
    ALERT = "alert"
    OFF = "off"
    """Machine off: no prediction is meaningful."""


class Prediction(_Message):
    """A model's (and the fail-safe rules') verdict for one feature vector."""

    kind: Literal["prediction"] = "prediction"
    machine_id: Identifier
    machine_type: str
    site: str | None = None
    line: str | None = None
    ts: UtcDatetime
    """Event time of the window the prediction is for (its end)."""
    window_start: UtcDatetime | None = None
    model: str
    model_version: int = 0
    p_failure: float | None = Field(default=None, ge=0.0, le=1.0)
    anomaly_score: float | None = None
    anomaly_threshold: float | None = None
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    horizon_s: float | None = None
    decision: Decision = Decision.OK
    decided_by: Literal["model", "rule", "anomaly", "none"] = "model"
    reasons: tuple[str, ...] = ()
    """Plain-language reasons, e.g. ``cold start: using type model``, ``input outside seen range``."""
    cold_start: bool = False
    contributions: tuple[Contribution, ...] = ()
    rule_violations: tuple[str, ...] = ()


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(enum.StrEnum):
    OPEN = "open"
    UPDATED = "updated"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    SILENCED = "silenced"
    INHIBITED = "inhibited"


class Alert(_Message):
    """One transition of an alert episode (machine, kind); the sequence is the audit history."""

    kind: Literal["alert"] = "alert"
    alert_id: str
    machine_id: Identifier
    machine_type: str | None = None
    site: str | None = None
    line: str | None = None
    alert_kind: str
    """What is alerted: ``failure_risk``, ``anomaly``, ``hard_limit``, ``drift``, ``sensor_fault``, ``startup_limit``, ..."""
    state: AlertState
    severity: Severity
    ts: UtcDatetime
    """When this transition happened (event time of the triggering prediction where there is one)."""
    opened_at: UtcDatetime
    p_failure: float | None = None
    horizon_s: float | None = None
    summary: str
    contributions: tuple[Contribution, ...] = ()
    what_to_check: tuple[str, ...] = ()
    actor: str | None = None
    """Who caused the transition (a planner's name for acknowledge/assign, ``vigil`` otherwise)."""
    assignee: str | None = None
    note: str | None = None
    seq: int = 0
    """Position of this transition in its episode (1, 2, ...): the order even where ``ts`` mixes event time
    (predictions) and wall-clock time (a planner's acknowledgement)."""


class DriftEvent(_Message):
    """Drift, a retraining step, or a sensor fault, as a first-class event."""

    kind: Literal["drift"] = "drift"
    ts: UtcDatetime
    machine_type: str
    machine_id: Identifier | None = None
    detector: str
    """``adwin``, ``page_hinkley``, ``kswin``, ``sensor_fault``, ..."""
    target: str
    """What drifted: ``error`` (model error) or a feature name."""
    event: Literal["warning", "drift", "sensor_fault", "retrain_started", "promoted", "rolled_back", "kept"]
    detail: str = ""
    value: float | None = None


class DeadLetter(_Message):
    """A message a service could not use, with the raw bytes and the reason; nothing disappears."""

    kind: Literal["dead_letter"] = "dead_letter"
    ts: UtcDatetime = Field(default_factory=utcnow)
    service: str
    reason: str
    error: str
    source_topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    raw: str
    """The original payload, base64-encoded (only its first bytes when ``raw_size`` is larger: see
    :data:`vigil.bus.DEAD_LETTER_RAW_MAX`)."""
    raw_size: int | None = None
    """Length in bytes of the original payload (``None`` in dead letters written before this field)."""


class SegmentAuditReport(_Message):
    """The prequential quality of one segment (the fleet, a machine type, a site or a line) as measured by one
    worker of the models stage over the machines it served; published periodically, keyed
    ``<dimension>=<segment>``. Every number comes from predictions made before their label was known."""

    kind: Literal["segment_audit"] = "segment_audit"
    ts: UtcDatetime = Field(default_factory=utcnow)
    """When the audit was taken (wall clock)."""
    dimension: Literal["fleet", "machine_type", "site", "line"]
    segment: str
    worker: str = "0"
    """The models worker that measured it (each worker audits the machines of its partitions)."""
    labelled_windows: int = 0
    roc_auc: float | None = None
    """Of the live risk score against the delayed window labels."""
    precision: float | None = None
    """Of the windows at or above the alert threshold."""
    recall_windows: float | None = None
    failures: int = 0
    caught: int = 0
    """Failures with an alert episode at least the minimum lead time before them."""
    recall: float | None = None
    lead_time_median_h: float | None = None
    lead_time_p10_h: float | None = None
    episodes: int = 0
    false_alarms: int = 0
    """Episodes whose horizon passed without a failure (episodes still inside it are not judged yet)."""
    machine_weeks: float = 0.0
    false_alarms_per_machine_week: float | None = None
    worse_than_fleet: bool = False
    findings: tuple[str, ...] = ()
    """Why the segment is served worse, e.g. ``recall 0.60 vs fleet 0.90``."""


AnyMessage: TypeAlias = Annotated[
    Reading
    | ReadingBatch
    | ReadingColumns
    | Gap
    | MaintenanceEvent
    | FeatureVector
    | Prediction
    | Alert
    | DriftEvent
    | DeadLetter
    | SegmentAuditReport,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyMessage)
MESSAGE_KINDS: dict[str, type[_Message]] = {
    cls.model_fields["kind"].default: cls
    for cls in (
        Reading,
        ReadingBatch,
        ReadingColumns,
        Gap,
        MaintenanceEvent,
        FeatureVector,
        Prediction,
        Alert,
        DriftEvent,
        DeadLetter,
        SegmentAuditReport,
    )
}


M = TypeVar("M", bound="_Message")


def encode(message: _Message) -> bytes:
    """JSON bytes for the wire."""
    return message.model_dump_json(exclude_defaults=False).encode()


def decode(payload: bytes | str) -> Any:
    """Parse any contract from JSON (or a :func:`pack_columns` message), raising :class:`ContractError` with the
    reason when it is invalid.

    The return type is the union of the contracts; use :func:`decode_as` when one kind is expected.
    """
    if isinstance(payload, bytes) and is_packed(payload):
        return unpack_columns(payload)
    try:
        return _ADAPTER.validate_json(payload)
    except ValidationError as exc:
        raise _contract_error(exc, payload) from exc


def decode_as(payload: bytes | str, cls: type[M]) -> M:
    """Parse a payload that must be of one contract."""
    message = decode(payload)
    if not isinstance(message, cls):
        raise ContractError("kind", f"expected {cls.model_fields['kind'].default!r}, got {message.kind!r}")
    return message


def _contract_error(exc: ValidationError, payload: bytes | str) -> ContractError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"type": "", "loc": ()}
    if first["type"] == "json_invalid":
        return ContractError("json", str(first.get("msg", "invalid JSON")))
    if first["type"] in ("model_attributes_type", "dict_type") and not first["loc"]:
        return ContractError("json", "payload is not a JSON object")
    if first["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return ContractError("kind", str(first.get("msg", "unknown kind")))
    if any(e["loc"][1:2] == ("v",) for e in errors):
        return ContractError("version", f"unsupported schema version (this build reads v{SCHEMA_VERSION})")
    detail = "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; ... ({len(errors)} errors)"
    return ContractError("schema", detail)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# ---------------------------------------------------------------------------------------------------- packed form
PACKED_KEYS = frozenset(
    {"v", "kind", "machine_id", "ingest_ts", "source", "sensors", "units", "lengths", "ts", "value", "server_ts"}
    | {"quality", "status_code", "flags"}
)
"""Keys of the packed form of :class:`ReadingColumns` (see :func:`pack_columns`)."""
PACKED_MAX_BYTES = 4 * 1024 * 1024
"""A larger packed message is refused unread (reason ``packed``). Unpacking can allocate up to ~20x a payload's
size in Python objects (4 MB of two-character strings: 83 MB; lists and maps are counted as they are built, see
:func:`unpack_document`), so without a cap one hostile record could exhaust a worker's memory. 4 MiB is the
largest record a Vigil producer sends (``max_request_size`` in :func:`vigil.bus.make_producer`); the publisher
keeps its messages under 900 kB."""
_F8 = "<f8"
_EPOCH_EXACT = 2.0**33
"""Below this (year 2242) a float64 of epoch seconds holds every microsecond exactly (its spacing is under 1 us)."""


def is_packed(payload: bytes) -> bool:
    """Whether ``payload`` is a MessagePack map (the packed form), not JSON: a JSON document starts with ``{``
    or white space, a MessagePack map with a byte in ``0x80..0x8f`` (up to 15 keys) or ``0xde``/``0xdf``."""
    return bool(payload) and (0x80 <= payload[0] <= 0x8F or payload[0] in (0xDE, 0xDF))


def unpack_document(payload: bytes) -> Any:
    """The MessagePack document of a packed payload: the one unpacking that :func:`unpack_columns` and the feature
    worker's fast decoder share, so both see the same document (the same limits, the last of duplicate keys).
    Raises ``ValueError`` (msgpack's own errors, and a payload above :data:`PACKED_MAX_BYTES`)."""
    if len(payload) > PACKED_MAX_BYTES:
        raise ValueError(f"{len(payload)} bytes, more than the {PACKED_MAX_BYTES} a packed message may have")
    # A valid message has one map (the top level, 14 keys at most), no extension types, and few lists: six per
    # message and one per reading's flags, where every reading takes 16 bytes of times and values. Counting them
    # as they are built stops a payload of empty lists or maps (1 byte each, ~60 bytes as Python objects) early.
    budget = [len(payload) // 16 + 8, 1]

    def list_hook(items: list[Any]) -> list[Any]:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError("more lists than a packed message of this size can hold")
        return items

    def object_hook(obj: dict[str, Any]) -> dict[str, Any]:
        budget[1] -= 1
        if budget[1] < 0:
            raise ValueError("a map inside the message (only the top level is one)")
        return obj

    return msgpack.unpackb(
        payload,
        raw=False,
        strict_map_key=True,
        max_map_len=len(PACKED_KEYS),
        max_ext_len=0,
        list_hook=list_hook,
        object_hook=object_hook,
    )


def pack_columns(message: ReadingColumns) -> bytes:
    """The packed wire form of a :class:`ReadingColumns` (``publish.batch_format = "packed"``).

    A MessagePack map with the JSON form's envelope (``v``, ``kind``, ``machine_id``, ``ingest_ts`` as epoch
    seconds, ``source``) and, instead of a list of column objects, the columns side by side: ``sensors``, ``units``
    and ``lengths`` (one entry per column) and ``ts``, ``value`` and ``server_ts`` as little-endian float64 binaries
    of ``sum(lengths)`` numbers, column after column (``NaN`` = null). ``quality``, ``status_code`` and ``flags`` are
    lists with one entry per reading, present only when a reading differs from the default. A reader turns the
    numbers into arrays without parsing one: ~20x cheaper to decode than the JSON columns, ~40 % smaller.

    Every reading comes back as it was, with two exceptions the JSON form shares: a non-finite value travels as
    null, and a column without an optional list gets its defaults spelled out when another column has one (the
    lists are per message). An ``ingest_ts`` that epoch seconds cannot hold exactly (before 1970, or after 2242 to
    the microsecond) is written as ISO 8601 text instead. A status code beyond MessagePack's 64-bit integers
    (OPC UA's are 32-bit) cannot be packed: :class:`ContractError` with reason ``packed``.

    >>> from datetime import datetime, timezone
    >>> c = SensorColumn(sensor="flow", unit="m3/h", ts=[1767225600.0, 1767225601.0], value=[12.5, None])
    >>> m = ReadingColumns(machine_id="PMP-001", columns=[c], source="opcua:line-1")
    >>> decode(pack_columns(m)) == m
    True
    """
    cols = message.columns
    ingest = message.ingest_ts.timestamp()
    if not (0.0 <= ingest < _EPOCH_EXACT and datetime.fromtimestamp(ingest, UTC) == message.ingest_ts):
        ingest_ts: float | str = message.ingest_ts.isoformat()
    else:
        ingest_ts = ingest
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "kind": message.kind,
        "machine_id": message.machine_id,
        "ingest_ts": ingest_ts,
        "source": message.source,
        "sensors": [c.sensor for c in cols],
        "units": [c.unit for c in cols],
        "lengths": [len(c.ts) for c in cols],
        "ts": np.array([t for c in cols for t in c.ts], dtype=_F8).tobytes(),
        # An infinity is refused on the packed form; like the JSON form (pydantic writes it as null), a null.
        "value": np.array(
            [v if v is not None and math.isfinite(v) else math.nan for c in cols for v in c.value], dtype=_F8
        ).tobytes(),
    }
    if any(c.server_ts is not None for c in cols):
        doc["server_ts"] = np.array(
            [
                math.nan if c.server_ts is None or t is None else t
                for c in cols
                for t in c.server_ts or [None] * len(c.ts)
            ],
            dtype=_F8,
        ).tobytes()
    if any(c.quality is not None for c in cols):
        doc["quality"] = [q.value for c in cols for q in (c.quality or [Quality.GOOD] * len(c.ts))]
    if any(c.status_code is not None for c in cols):
        doc["status_code"] = [s for c in cols for s in (c.status_code or [0] * len(c.ts))]
    if any(c.flags is not None for c in cols):
        doc["flags"] = [list(f) for c in cols for f in (c.flags or [()] * len(c.ts))]
    try:
        out: bytes = msgpack.packb(doc, use_bin_type=True)
    except OverflowError as exc:  # the only integers in the document are lengths and status codes
        raise ContractError("packed", f"a status code does not fit MessagePack's 64-bit integers: {exc}") from exc
    return out


def unpack_columns(payload: bytes) -> ReadingColumns:
    """The :class:`ReadingColumns` of a packed message, fully validated (:class:`ContractError` when it is not
    one: reason ``packed`` for a broken frame or one above :data:`PACKED_MAX_BYTES`, else the JSON form's
    reasons). The cheap checks (keys, lengths) come before any number is converted."""
    try:
        doc = unpack_document(payload)
    except Exception as exc:  # msgpack raises several unrelated types (ExtraData, FormatError, ValueError, ...)
        raise ContractError("packed", f"not a MessagePack message: {type(exc).__name__}: {exc}") from exc
    if type(doc) is not dict:
        raise ContractError("packed", "a packed message must be a map")
    if doc.get("v") != SCHEMA_VERSION:
        raise ContractError("version", f"unsupported schema version (this build reads v{SCHEMA_VERSION})")
    if doc.get("kind") != "reading_columns":
        raise ContractError("kind", f"a packed message must be 'reading_columns', not {doc.get('kind')!r}")
    unknown = sorted(str(k) for k in set(doc) - PACKED_KEYS)
    if unknown:
        raise ContractError("schema", f"reading_columns: unknown key(s) {', '.join(unknown)}")
    sensors, lengths = doc.get("sensors"), doc.get("lengths")
    if type(sensors) is not list or type(lengths) is not list or len(sensors) != len(lengths):
        raise ContractError("schema", "reading_columns: 'sensors' and 'lengths' must be lists of the same length")
    units = doc.get("units", [None] * len(sensors))
    if type(units) is not list or len(units) != len(sensors):
        raise ContractError("schema", "reading_columns: 'units' must have one entry per sensor")
    if any(type(n) is not int or n < 1 for n in lengths):
        raise ContractError("schema", "reading_columns: every length must be a positive integer")
    total = sum(lengths)
    names = [name for name in ("ts", "value", "server_ts") if name != "server_ts" or doc.get(name) is not None]
    for name in names:
        raw = doc.get(name)
        if type(raw) is not bytes or len(raw) != 8 * total:
            raise ContractError("schema", f"reading_columns: {name!r} must be {total} little-endian float64 numbers")
    lists: dict[str, list[Any]] = {}
    for name in ("quality", "status_code", "flags"):
        if doc.get(name) is None:
            continue
        if type(doc[name]) is not list or len(doc[name]) != total:
            raise ContractError("schema", f"reading_columns: {name!r} must have one entry per reading")
        lists[name] = doc[name]
    arrays: dict[str, list[float | None]] = {}
    for name in names:
        numbers = np.frombuffer(doc[name], dtype=_F8)
        if np.isinf(numbers).any():
            raise ContractError("schema", f"reading_columns: {name!r} holds an infinite number")
        arrays[name] = [None if x != x else x for x in numbers.tolist()]
    columns: list[dict[str, Any]] = []
    start = 0
    for sensor, unit, n in zip(sensors, units, lengths, strict=True):
        part = slice(start, start + n)
        column: dict[str, Any] = {
            "sensor": sensor,
            "unit": unit,
            "ts": arrays["ts"][part],
            "value": arrays["value"][part],
        }
        if "server_ts" in arrays:
            column["server_ts"] = arrays["server_ts"][part]
        for name, entries in lists.items():
            column[name] = entries[part]
        columns.append(column)
        start += n
    envelope = {k: doc[k] for k in ("v", "kind", "machine_id", "ingest_ts", "source") if k in doc}
    if isinstance(envelope.get("ingest_ts"), float | int) and not isinstance(envelope["ingest_ts"], bool):
        ts = float(envelope["ingest_ts"])
        if not 0.0 <= ts <= _EPOCH_MAX:
            raise ContractError("schema", "reading_columns.ingest_ts: outside years 1970..9999")
        envelope["ingest_ts"] = datetime.fromtimestamp(ts, UTC)
    try:  # through the union, so that errors read as the JSON form's do (``reading_columns.machine_id: ...``)
        message: ReadingColumns = _ADAPTER.validate_python({**envelope, "columns": columns})
    except ValidationError as exc:
        raise _contract_error(exc, b"") from exc
    return message
