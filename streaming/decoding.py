"""Decoding the readings topics fast, without giving up validation.

A :class:`ReadingBatch` of a few hundred samples costs ~1 ms to build as pydantic models, which caps a worker far
below 100k readings/s. The common, well-formed batch is therefore checked field by field here (the same rules as
the contract: known keys only, identifiers, aware ISO 8601 timestamps, numeric or null values, known quality)
and turned straight into ``(sensor, epoch seconds, value or NaN)`` tuples for the window engine. Anything the fast
path is not sure about falls through to :func:`vigil.contracts.decode`, which either accepts it or raises the
:class:`~vigil.exceptions.ContractError` whose reason goes into the dead letter.

The decoder is stricter than the contract's parser where a lax reading would let a wrong number through (the
collector checked nothing of a record sent straight to the topic): a duplicate key in a JSON object or MessagePack
map (``duplicate_key``: which value was meant is unknowable), a boolean anywhere or text as a value (``wrong_type``:
a switch state is not a reading) are refused. Given the plant's valid ranges (:meth:`ReadingDecoder.for_plant`, what
the worker uses) it also applies the collector's rules (:func:`ingest.validation.valid_ranges`): a record of an
unknown machine is refused (``unknown_machine``); readings of an unknown sensor are refused (``unknown_sensor``: the
record when it holds nothing else, else listed in :attr:`Decoded.refused` while its other readings are used); a
value outside its sensor's range (and never beyond :data:`ingest.validation.MAX_MAGNITUDE`) is flagged as the
collector flags it, ``out_of_range`` (or ``not_finite``), and made unusable (NaN: it counts in the window's bad
share), counted in :attr:`ReadingDecoder.counters` and logged once per machine and sensor.

>>> d = ReadingDecoder()
>>> m = d.decode(b'{"v":1,"kind":"reading_batch","machine_id":"PMP-001","samples":['
...              b'{"sensor":"flow","ts":"2026-01-01T00:00:00Z","value":12.5},'
...              b'{"sensor":"flow","ts":"2026-01-01T00:00:01Z","value":null,"quality":"bad"}]}')
>>> m.machine_id, m.samples[0], m.samples[1][2] != m.samples[1][2], m.fast
('PMP-001', ('flow', 1767225600.0, 12.5), True, True)
>>> d.decode(b'{"v":1,"kind":"reading","machine_id":"PMP-001","sensor":"flow","ts":"2026-01-01T00:00:00"}')
Traceback (most recent call last):
...
vigil.exceptions.ContractError: schema: reading.ts: Input should have timezone info; reading.value: Field required
>>> d.decode(b'{"v":1,"kind":"reading","machine_id":"PMP-001","sensor":"flow","ts":"2026-01-01T00:00:00Z","value":true}')
Traceback (most recent call last):
...
vigil.exceptions.ContractError: wrong_type: value: true is a boolean, not a number
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np

from ingest.validation import MAX_MAGNITUDE, valid_ranges, value_flag
from streaming.window_types import Array
from streaming.windows import UNUSABLE_FLAGS as _UNUSABLE_FLAGS
from streaming.windows import column_arrays, usable
from vigil.config import VigilConfig
from vigil.contracts import (
    PACKED_KEYS,
    Gap,
    Reading,
    ReadingBatch,
    ReadingColumns,
    decode,
    is_packed,
    unpack_document,
)
from vigil.exceptions import ContractError

log = logging.getLogger(__name__)

# ``\Z``, not ``$``: Python's ``$`` also matches before a trailing newline, which the contract's pattern refuses.
_IDENT = re.compile(r"[A-Za-z0-9_.:\-/]+\Z")
_BATCH_KEYS = frozenset({"v", "kind", "machine_id", "samples", "ingest_ts", "source"})
_SAMPLE_KEYS = frozenset({"sensor", "ts", "value", "unit", "quality", "status_code", "server_ts", "flags"})
_READING_KEYS = _SAMPLE_KEYS | {"v", "kind", "machine_id", "ingest_ts", "source"}
_COLUMNS_KEYS = frozenset({"v", "kind", "machine_id", "columns", "ingest_ts", "source"})
_COLUMN_KEYS = frozenset({"sensor", "ts", "value", "unit", "quality", "status_code", "server_ts", "flags"})
_EPOCH_MAX = 253402300799.0
# A timestamp whose UTC form leaves years 1..9999 (e.g. 0001-01-01T00:00:00+01:00) is one the contract cannot hold.
_UTC_MIN = -62135596800.0
_UTC_END = _EPOCH_MAX + 1.0
_QUALITIES = frozenset({"good", "uncertain", "bad"})
_REFUSED_STRICT = frozenset({"bad", "uncertain"})
_REFUSED_LENIENT = frozenset({"bad"})
"""Qualities whose readings are unusable, without and with ``windows.accept_uncertain``."""
_NAN = math.nan
_INF = math.inf
_DIGITS = "0123456789"
_fromiso = datetime.fromisoformat
Bounds = tuple[float, float]
"""A sensor's valid range ``(min, max)``."""
_ANY: Bounds = (-MAX_MAGNITUDE, MAX_MAGNITUDE)
"""The range of a sensor when no plant file says more."""
_WARN_KEYS = 1000


def _canonical(t: str) -> bool:
    """Whether ``t`` (a string) has the shape ``YYYY-MM-DDTHH:MM:SS[.f]`` + ``Z`` or ``+HH:MM``: the fast path reads
    only those with ``datetime.fromisoformat``, which is laxer than the contract in the offset (seconds in it,
    ``+01``, a space before it, ``00.Z``) and in the date (ISO week dates); other forms go to the contract. Index
    checks, not a regex (a regex costs ~0.5 us a timestamp, a third of the decoder's budget). A string shorter
    than 20 raises IndexError (caught like the other parse errors: the contract decides)."""
    return (
        ((t[-1] == "Z" and t[-2] in _DIGITS) or (t[-3] == ":" and t[-6] in "+-" and t[-7] in _DIGITS))
        and t[4] == "-"
        and t[7] == "-"
        and t[10] == "T"
        and t[13] == ":"
        and t[16] == ":"
    )


class _Unsure(Exception):
    """The fast path declines; the full contract decides."""


def _reject_constant(name: str) -> float:
    # NaN/Infinity are not JSON; leave such payloads to the contract's own parser.
    raise _Unsure(name)


def _json_loads(payload: bytes) -> Any:
    return json.loads(payload, parse_constant=_reject_constant)


_loads: Callable[[bytes], Any]
try:  # orjson parses ~1.5x faster where it is installed; the stdlib parser is the fallback.
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = _json_loads


_F8 = np.dtype("<f8")
_fmin, _fmax = np.fmin.reduce, np.fmax.reduce


# The contract's own unpacking (same limits, same document), so the fast path never sees a different message.
_unpack = unpack_document


@dataclass(slots=True)
class Columns:
    """A ``reading_columns`` message as arrays: ``lengths[i]`` readings of ``sensors[i]``, one after the other."""

    sensors: list[str]
    lengths: list[int]
    ts: Array
    """Event times, epoch seconds."""
    values: Array
    """NaN where unusable."""
    span: tuple[float, float] | None = None
    """``(min, max)`` of :attr:`ts`."""


Single = tuple[str, str, float, float]
"""One bare reading: ``(machine_id, sensor, event time in epoch seconds, value or NaN when unusable)``."""


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~2.5 us more to build, once per record
class Decoded:
    """One message of a readings topic, ready for the window engine."""

    machine_id: str
    samples: list[tuple[str, float, float]]
    """``(sensor, event time in epoch seconds, value or NaN when unusable)``; empty for columns and gaps."""
    gap: Gap | None = None
    fast: bool = False
    """Decoded by the fast path (for the benchmark and metrics)."""
    columns: Columns | None = None
    """Set for ``reading_columns`` messages (then :attr:`samples` is empty)."""
    refused: tuple[str, str] | None = None
    """``(reason, detail)`` when some readings of the record were refused (an unknown sensor) and the others kept:
    the worker dead-letters the record with it."""

    @property
    def readings(self) -> int:
        return len(self.columns.ts) if self.columns is not None else len(self.samples)


class ReadingDecoder:
    """Decodes ``reading_batch``, ``reading`` and ``gap`` messages; anything else is a :class:`ContractError`.

    ``ranges`` (machine id -> sensor -> valid range, see :func:`ingest.validation.valid_ranges`) are the plant's:
    with them unknown machines and sensors are refused and values outside their range flagged; without them (a
    tool reading any topic) every identifier is accepted and only :data:`~ingest.validation.MAX_MAGNITUDE` bounds
    a value. ``counters`` counts every reading flagged and every record refused here, by reason.
    """

    def __init__(
        self,
        accept_uncertain: bool = False,
        cache_size: int = 100_000,
        ranges: Mapping[str, Mapping[str, Bounds]] | None = None,
    ) -> None:
        self.accept_uncertain = accept_uncertain
        self.cache_size = cache_size
        self.ranges = ranges
        self.counters: Counter[str] = Counter()
        self._idents: set[str] = set()
        self._warned: set[tuple[str, str, str]] = set()
        self._layouts: dict[tuple[Any, ...], tuple[Array, Array, frozenset[str]]] = {}
        """Per machine and message layout (sensors, lengths) of a columns message: its per-reading bounds."""
        # Machine -> sensor -> bounds: the plant's (names the contract would refuse are left out, so that the fast
        # path, which skips the identifier check for a known name, never accepts one), else filled as names come.
        self._known: dict[str, dict[str, Bounds]] = {}
        if ranges is not None:
            for machine, sensors in ranges.items():
                if _is_ident(machine):
                    self._known[machine] = {k: (float(b[0]), float(b[1])) for k, b in sensors.items() if _is_ident(k)}

    @classmethod
    def for_plant(cls, config: VigilConfig) -> ReadingDecoder:
        """The feature worker's decoder: the plant file's machines, sensors and valid ranges, its
        ``windows.accept_uncertain``.

        >>> from vigil.config import load_config
        >>> d = ReadingDecoder.for_plant(load_config(environ={}))
        >>> r = d.decode(b'{"v":1,"kind":"reading","machine_id":"PMP-001","sensor":"bearing_temp",'
        ...              b'"ts":"2026-01-01T00:00:00Z","value":-5000}')
        >>> r.samples[0][2] != r.samples[0][2], dict(d.counters)
        (True, {'out_of_range': 1})
        >>> d.decode(b'{"v":1,"kind":"reading","machine_id":"PMP-999","sensor":"flow","ts":"2026-01-01T00:00:00Z","value":1}')
        Traceback (most recent call last):
        ...
        vigil.exceptions.ContractError: unknown_machine: machine 'PMP-999' is not in the plant file's [[machines]]
        """
        return cls(accept_uncertain=config.windows.accept_uncertain, ranges=valid_ranges(config))

    # ------------------------------------------------------------------ the plant's rules
    def _machine(self, machine_id: Any) -> dict[str, Bounds]:
        """The sensors of a machine not (yet) in :attr:`_known`: refused with a plant, else remembered."""
        self._ident(machine_id)  # not an identifier: the contract says so
        if self.ranges is not None:
            self.counters["unknown_machine"] += 1
            raise ContractError("unknown_machine", f"machine {machine_id!r} is not in the plant file's [[machines]]")
        sensors: dict[str, Bounds] = {}
        if len(self._known) < self.cache_size:
            self._known[machine_id] = sensors
        return sensors

    def _sensor(self, sensors: dict[str, Bounds], sensor: Any) -> Bounds | None:
        """The bounds of a sensor not (yet) in ``sensors``: ``None`` (refused) with a plant, else remembered."""
        self._ident(sensor)
        if self.ranges is not None:
            return None
        if len(sensors) < 1000:
            sensors[sensor] = _ANY
        return _ANY

    def _sensors_of(self, machine_id: Any) -> dict[str, Bounds]:
        sensors = self._known.get(machine_id)
        return sensors if sensors is not None else self._machine(machine_id)

    def _flagged(self, machine_id: str, flagged: list[tuple[str, float]]) -> None:
        """Count (and log once per machine, sensor and reason) readings whose values were made unusable."""
        for sensor, value in flagged:
            bounds = self._known.get(machine_id, {}).get(sensor, _ANY)
            reason = value_flag(value, *bounds) or "out_of_range"
            self.counters[reason] += 1
            key = (reason, machine_id, sensor)
            if key not in self._warned and len(self._warned) < _WARN_KEYS:
                self._warned.add(key)
                log.warning(
                    "%s: %s/%s read %r, outside its valid range [%g, %g]: unusable (logged once per sensor; see "
                    "counters)",
                    reason,
                    machine_id,
                    sensor,
                    value,
                    *bounds,
                )

    def _unknown(self, machine_id: str, names: list[str], kept: int) -> tuple[str, str]:
        """Count readings of unknown sensors; the refusal, or :class:`ContractError` when nothing else is left."""
        if not kept:
            raise self._refusal(machine_id, names)
        self.counters["unknown_sensor"] += len(names)
        return "unknown_sensor", f"{_unknown_detail(machine_id, names)} (its other {kept} reading(s) were used)"

    def _refusal(self, machine_id: str, names: list[str]) -> ContractError:
        """The error refusing a record that holds readings of unknown sensors only (counted)."""
        self.counters["unknown_sensor"] += len(names)
        return ContractError("unknown_sensor", _unknown_detail(machine_id, names))

    def decode(self, payload: bytes | None) -> Decoded:
        """The message as :class:`Decoded`; :class:`ContractError` when the contract refuses it."""
        decoded = self.decode_record(payload)
        if isinstance(decoded, Decoded):
            return decoded
        machine_id, sensor, ts, value = decoded
        return Decoded(machine_id, [(sensor, ts, value)], None, True)

    def decode_record(self, payload: bytes | None) -> Decoded | Single:
        """:meth:`decode` for the worker's hot path: a bare reading (the six keys of the contract's ``reading``,
        nothing optional) comes back as a plain ``(machine_id, sensor, ts, value)`` tuple. With one reading per
        Kafka record this runs once per reading, and building :class:`Decoded` and its list cost as much as
        checking the reading."""
        if payload is None:
            raise ContractError("json", "empty message (tombstone) on a readings topic")
        head = payload[0] if payload else 0
        if head >= 0x80 and is_packed(payload):  # JSON starts with "{" or white space, MessagePack maps do not
            try:
                return self._fast_packed(payload)
            except (_Unsure, ValueError, TypeError, LookupError, AttributeError, OverflowError):
                pass  # not here: the traceback keeps the fast path's document alive, and the contract unpacks again
            return self._full(payload)  # the contract's own unpacking decides (and names the reason)
        try:
            doc = _loads(payload)
            if type(doc) is dict:
                kind = doc.get("kind")
                if kind == "reading":
                    # The bare reading (v, kind, machine_id, sensor, ts, value: with six keys, v and kind among
                    # them, a missing one of the other four raises KeyError), read inline. Its ten strings (six keys,
                    # kind, machine, sensor, time) are all it may quote: a 21st quote is a duplicate key (which
                    # orjson reads as the last), or an escaped quote; the full path decides those.
                    if len(doc) == 6 and (v := doc["v"]) == 1 and type(v) is int and payload.count(b'"') == 20:
                        machine_id, sensor, value = doc["machine_id"], doc["sensor"], doc["value"]
                        sensors = self._known.get(machine_id)
                        if sensors is None:
                            sensors = self._machine(machine_id)
                        bounds = sensors.get(sensor)
                        if bounds is None:
                            bounds = self._sensor(sensors, sensor)
                            if bounds is None:
                                raise self._refusal(machine_id, [sensor])
                        ts = _ts(doc["ts"])
                        vt = type(value)
                        if vt is float or vt is int:
                            if not bounds[0] <= value <= bounds[1]:
                                self._flagged(machine_id, [(sensor, float(value))])
                                value = _NAN
                            elif vt is int:
                                value = float(value)
                        elif value is None:
                            value = _NAN
                        else:
                            raise _Unsure("value")
                        return machine_id, sensor, ts, value
                    return self._fast_reading(doc, payload)
                if kind == "reading_batch":
                    return self._fast_batch(doc, payload)
                if kind == "reading_columns":
                    return self._fast_columns(doc, payload)
        # RecursionError: the stdlib fallback parser on deeply nested JSON (orjson stops at depth 1024 itself).
        except (_Unsure, ValueError, TypeError, LookupError, AttributeError, OverflowError, RecursionError):
            pass
        return self._full(payload)

    def _full(self, payload: bytes) -> Decoded:
        strict_check(payload)
        try:
            message = decode(payload)
        except (OverflowError, ValueError) as exc:
            if isinstance(exc, ContractError):
                raise
            # A validator that overflowed (an offset pushing a timestamp out of years 1..9999): the message is
            # invalid, and one such record must become a dead letter, never stop the worker.
            raise ContractError("schema", f"{type(exc).__name__}: {exc}") from exc
        try:
            return self._judge(message)
        except _Unsure as exc:  # the contract accepted what the fast path's identifier check does not: never a crash
            raise ContractError("schema", f"{exc}: not an identifier") from exc

    def _judge(self, message: Any) -> Decoded:
        if isinstance(message, ReadingBatch):
            return self._screen(message.machine_id, [self._from_sample(s) for s in message.readings()])
        if isinstance(message, Reading):
            return self._screen(message.machine_id, [self._from_sample(message)])
        if isinstance(message, ReadingColumns):
            sensors = self._sensors_of(message.machine_id)
            columns, refused = self._screen_columns(message.machine_id, sensors, self._from_columns(message))
            # An infinity the contract parsed (JSON's 1e999) is already unusable there: counted like a reading's.
            infinite = [(c.sensor, v) for c in message.columns for v in c.value if v is not None and v - v != 0.0]
            if infinite:
                self._flagged(message.machine_id, infinite)
            return Decoded(message.machine_id, [], columns=columns, refused=refused)
        if isinstance(message, Gap):
            self._sensors_of(message.machine_id)
            return Decoded(message.machine_id, [], gap=message)
        raise ContractError("kind", f"a {message.kind!r} message does not belong on a readings topic")

    def _screen(self, machine_id: str, samples: list[tuple[str, float, float]]) -> Decoded:
        """The plant's rules over decoded samples (the paths that do not apply them inline)."""
        sensors = self._sensors_of(machine_id)
        kept: list[tuple[str, float, float]] = []
        unknown: list[str] = []
        flagged: list[tuple[str, float]] = []
        for sample in samples:
            sensor, ts, value = sample
            bounds = sensors.get(sensor)
            if bounds is None:
                bounds = self._sensor(sensors, sensor)
                if bounds is None:
                    unknown.append(sensor)
                    continue
            if value == value and not bounds[0] <= value <= bounds[1]:  # NaN: already unusable
                flagged.append((sensor, value))
                sample = (sensor, ts, _NAN)
            kept.append(sample)
        if flagged:
            self._flagged(machine_id, flagged)
        refused = self._unknown(machine_id, unknown, len(kept)) if unknown else None
        return Decoded(machine_id, kept, refused=refused)

    def _screen_columns(
        self, machine_id: str, sensors: dict[str, Bounds], c: Columns
    ) -> tuple[Columns, tuple[str, str] | None]:
        """The plant's rules over a columns message: unknown sensors' columns dropped, values outside their
        sensor's range NaN. The common message costs four numpy calls against per-reading bounds that are built
        once per machine and message layout (collectors repeat their layouts)."""
        key = (machine_id, *c.sensors, *c.lengths)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layout(sensors, c)
            if len(self._layouts) < 10_000:
                self._layouts[key] = layout
        lows, highs, unknown = layout
        refused = None
        if unknown:
            parts = zip(c.sensors, c.lengths, strict=True)
            names = [name for name, n in parts if name in unknown for _ in range(n)]
            refused = self._unknown(machine_id, names, len(c.ts) - len(names))
            bounds = [None if name in unknown else sensors[name] for name in c.sensors]
            c, _ = _drop_columns(c, bounds)
            lows, highs, _ = self._layout(sensors, c)
        values = c.values
        # NaN (an unusable reading) fails both comparisons: then the readings are looked at one by one.
        inside = np.less_equal(lows, values)
        inside &= np.less_equal(values, highs)
        if inside.all():
            return c, refused
        bad = ~inside & (values == values)
        if bad.any():
            out = values.copy()
            per_reading = np.repeat(np.array(c.sensors, dtype=object), c.lengths)
            self._flagged(machine_id, list(zip(per_reading[bad].tolist(), out[bad].tolist(), strict=True)))
            out[bad] = _NAN
            c = Columns(c.sensors, c.lengths, c.ts, out, c.span)
        return c, refused

    def _layout(self, sensors: dict[str, Bounds], c: Columns) -> tuple[Array, Array, frozenset[str]]:
        """Per-reading lower and upper bounds of a message layout, and its sensors that are unknown."""
        bounds: list[Bounds] = []
        unknown: set[str] = set()
        for name in c.sensors:
            b = sensors.get(name)
            if b is None:
                b = self._sensor(sensors, name)
            if b is None:
                unknown.add(name)
                b = (_NAN, _NAN)
            bounds.append(b)
        lows = np.repeat(np.array([b[0] for b in bounds]), c.lengths)
        highs = np.repeat(np.array([b[1] for b in bounds]), c.lengths)
        return lows, highs, frozenset(unknown)

    def _from_sample(self, r: Reading) -> tuple[str, float, float]:
        value = r.value
        if value is None:
            return r.sensor, r.ts.timestamp(), _NAN
        # An infinity (JSON's 1e999) is otherwise usable: kept, for the screen to flag it ``not_finite``.
        ok = usable(r.quality, value if math.isfinite(value) else 0.0, r.flags, self.accept_uncertain)
        return r.sensor, r.ts.timestamp(), float(value) if ok else _NAN

    def _from_columns(self, message: ReadingColumns) -> Columns:
        return Columns(*column_arrays(message, self.accept_uncertain))

    def _fast_columns(self, doc: dict[str, Any], payload: bytes) -> Decoded:
        if not _v1(doc) or not _COLUMNS_KEYS.issuperset(doc):
            raise _Unsure("columns")
        machine_id = self._envelope(doc)
        raw = doc["columns"]
        if type(raw) is not list or not raw:
            raise _Unsure("columns")
        if b"true" in payload or b"false" in payload:  # numpy reads a boolean in a list of numbers as 1 or 0
            raise _Unsure("boolean")
        strings = _envelope_strings(doc)
        sensors: list[str] = []
        lengths: list[int] = []
        ts_lists: list[list[Any]] = []
        value_lists: list[list[Any]] = []
        for c in raw:
            if type(c) is not dict or not _COLUMN_KEYS.issuperset(c):
                raise _Unsure("column")
            sensors.append(self._ident(c["sensor"]))
            ts, values = c["ts"], c["value"]
            n = len(ts) if type(ts) is list else 0
            if not n or type(values) is not list or len(values) != n:
                raise _Unsure("column")
            if len(c) > 3:
                values = self._column_extras(c, values, n)
                strings += _column_strings(c)
            else:
                strings += 4  # three keys and the sensor
            lengths.append(n)
            ts_lists.append(ts)
            value_lists.append(values)
        times = _numbers(ts_lists[0] if len(ts_lists) == 1 else list(chain.from_iterable(ts_lists)))
        if times is None:
            raise _Unsure("ts")
        span = (float(times.min()), float(times.max()))
        if not (span[0] >= 0.0 and span[1] <= _EPOCH_MAX):
            raise _Unsure("ts")
        flat = value_lists[0] if len(value_lists) == 1 else list(chain.from_iterable(value_lists))
        values_ = _numbers(flat)
        if values_ is None:
            # Nulls (unusable readings) make numpy build objects: check each entry, then convert.
            for v in flat:
                vt = type(v)
                if vt is not float and vt is not int and v is not None:
                    raise _Unsure("value")
            values_ = np.array([_NAN if v is None else v for v in flat], dtype=np.float64)
        if 2 * strings != payload.count(b'"'):
            raise _Unsure("duplicate key")
        known = self._sensors_of(machine_id)
        columns, refused = self._screen_columns(machine_id, known, Columns(sensors, lengths, times, values_, span))
        return Decoded(machine_id, [], fast=True, columns=columns, refused=refused)

    def _fast_packed(self, payload: bytes) -> Decoded:
        """The packed form (:func:`vigil.contracts.pack_columns`): the numbers are used in place, as arrays."""
        doc = _unpack(payload)
        if type(doc) is not dict or not _v1(doc) or doc.get("kind") != "reading_columns":
            raise _Unsure("packed")
        if len(doc) != _map_size(payload):  # a repeated key (msgpack keeps the last): the full path names it
            raise _Unsure("duplicate key")
        if not PACKED_KEYS.issuperset(doc):
            raise _Unsure("keys")
        machine_id = self._ident(doc["machine_id"])
        # Absent is fine (ingest_ts: now; units: none), present but nil is not: the contract refuses both.
        ingest_ts, source = doc.get("ingest_ts", 0.0), doc.get("source")
        if type(ingest_ts) is not float or not 0.0 <= ingest_ts <= _EPOCH_MAX:
            raise _Unsure("ingest_ts")
        if source is not None and type(source) is not str:
            raise _Unsure("source")
        sensors, lengths = doc["sensors"], doc["lengths"]
        if type(sensors) is not list or type(lengths) is not list or len(sensors) != len(lengths) or not sensors:
            raise _Unsure("sensors")
        units = doc.get("units", sensors)  # absent: nothing to check (the sensors are checked below)
        if units is not sensors and (
            type(units) is not list
            or len(units) != len(sensors)
            or any(u is not None and type(u) is not str for u in units)
        ):
            raise _Unsure("units")
        total = 0
        for sensor, n in zip(sensors, lengths, strict=True):
            self._ident(sensor)
            if type(n) is not int or n < 1:
                raise _Unsure("lengths")
            total += n
        size = 8 * total
        raw_ts, raw_values, raw_server = doc["ts"], doc["value"], doc.get("server_ts")
        if type(raw_ts) is not bytes or type(raw_values) is not bytes or len(raw_ts) != size or len(raw_values) != size:
            raise _Unsure("arrays")
        times = np.frombuffer(raw_ts, dtype=_F8)
        span = (float(times.min()), float(times.max()))
        if not (span[0] >= 0.0 and span[1] <= _EPOCH_MAX):  # NaN fails both
            raise _Unsure("ts")
        values = np.frombuffer(raw_values, dtype=_F8)
        # An infinity (NaN alone is a null) is refused by the contract. The extremes show one without numpy's
        # RuntimeWarning (a sum overflows and warns on hostile values); a NaN hides them, so then look at all.
        lowest_value, highest_value = float(values.min()), float(values.max())
        if lowest_value == -_INF or highest_value == _INF:
            raise _Unsure("value")
        if highest_value != highest_value and np.isinf(values).any():
            raise _Unsure("value")
        if raw_server is not None:
            if type(raw_server) is not bytes or len(raw_server) != size:
                raise _Unsure("server_ts")
            server = np.frombuffer(raw_server, dtype=_F8)
            lowest, highest = _fmin(server), _fmax(server)  # NaN (no server timestamp) is skipped, unless all are
            if lowest == lowest and not (lowest >= 0.0 and highest <= _EPOCH_MAX):
                raise _Unsure("server_ts")
        if "quality" in doc or "flags" in doc or "status_code" in doc:
            values = self._packed_extras(doc, values, total)
        known = self._sensors_of(machine_id)
        columns, refused = self._screen_columns(machine_id, known, Columns(sensors, lengths, times, values, span))
        return Decoded(machine_id, [], fast=True, columns=columns, refused=refused)

    def _packed_extras(self, doc: dict[str, Any], values: Array, n: int) -> Array:
        """Check the packed form's optional per-reading lists; returns the values with unusable readings NaN.

        The lists cover every reading of the message once any reading needs one, so they are checked by set and
        by index, not with :func:`~streaming.windows.usable` per reading (which made a message with one flagged
        reading ~30x slower to decode than one without). Same rules: bad quality, uncertain unless accepted, or
        an unusable flag."""
        quality, flags, codes = doc.get("quality"), doc.get("flags"), doc.get("status_code")
        if codes is not None and (type(codes) is not list or len(codes) != n or any(type(x) is not int for x in codes)):
            raise _Unsure("status_code")
        if quality is None and flags is None:
            return values
        unusable: list[int] = []
        if quality is not None:
            if type(quality) is not list or len(quality) != n:
                raise _Unsure("quality")
            kinds = set(quality)  # an unhashable entry raises TypeError: the contract decides
            if not kinds <= _QUALITIES:
                raise _Unsure("quality")
            refused = kinds & (_REFUSED_LENIENT if self.accept_uncertain else _REFUSED_STRICT)
            if refused:
                unusable = [i for i, q in enumerate(quality) if q in refused]
        if flags is not None:
            if type(flags) is not list or len(flags) != n:
                raise _Unsure("flags")
            for i, f in enumerate(flags):
                if type(f) is not list:
                    raise _Unsure("flags")
                if f:
                    if any(type(x) is not str for x in f):
                        raise _Unsure("flags")
                    if not _UNUSABLE_FLAGS.isdisjoint(f):
                        unusable.append(i)
        if not unusable:
            return values
        out = values.copy()
        out[unusable] = _NAN
        return out

    def _column_extras(self, c: dict[str, Any], values: list[Any], n: int) -> list[Any]:
        """Check a column's optional lists; returns the values with unusable readings as ``None``."""
        unit = c.get("unit")
        if unit is not None and type(unit) is not str:
            raise _Unsure("unit")
        quality = c.get("quality")
        flags = c.get("flags")
        for name in ("status_code", "server_ts"):
            extra = c.get(name)
            if extra is None:
                continue
            if type(extra) is not list or len(extra) != n:
                raise _Unsure(name)
            for x in extra:
                xt = type(x)
                if name == "status_code" and xt is not int:
                    raise _Unsure(name)
                if (
                    name == "server_ts"
                    and x is not None
                    and ((xt is not float and xt is not int) or not 0 <= x <= _EPOCH_MAX)
                ):
                    raise _Unsure(name)
        if quality is None and flags is None:
            return values
        if quality is not None and (type(quality) is not list or len(quality) != n):
            raise _Unsure("quality")
        if flags is not None and (
            type(flags) is not list
            or len(flags) != n
            or any(type(f) is not list or any(type(x) is not str for x in f) for f in flags)
        ):
            raise _Unsure("flags")
        out = list(values)
        for i in range(n):
            q = quality[i] if quality is not None else "good"
            if q not in _QUALITIES:
                raise _Unsure("quality")
            if not usable(q, 0.0, flags[i] if flags is not None else (), self.accept_uncertain):
                # Masked below, so checked here: an unusable reading's value must still be a number or null.
                vt = type(out[i])
                if vt is not float and vt is not int and out[i] is not None:
                    raise _Unsure("value")
                out[i] = None
        return out

    def _ident(self, value: Any) -> str:
        if type(value) is not str:
            raise _Unsure("identifier")
        if value not in self._idents:
            if not (0 < len(value) <= 200 and _IDENT.match(value)):
                raise _Unsure("identifier")
            if len(self._idents) < self.cache_size:
                self._idents.add(value)
        return value

    def _fast_batch(self, doc: dict[str, Any], payload: bytes) -> Decoded:
        if not _v1(doc) or not _BATCH_KEYS.issuperset(doc):
            raise _Unsure("batch")
        machine_id = self._envelope(doc)
        raw = doc["samples"]
        if type(raw) is not list or not raw:
            raise _Unsure("samples")
        known = self._sensors_of(machine_id)
        samples: list[tuple[str, float, float]] = []
        append = samples.append
        strings = _envelope_strings(doc)
        others = 0
        unknown: list[str] = []
        flagged: list[tuple[str, float]] = []
        for s in raw:
            if type(s) is not dict:
                raise _Unsure("sample")
            if len(s) != 3:
                others += 1
                if len(s) == 8:
                    strings += self._publisher_sample(s, known, append, flagged, unknown)
                    continue
                sensor, epoch, value = self._full_sample(s)
                strings += _sample_strings(s)
                bounds = known.get(sensor)
                if bounds is None:
                    bounds = self._sensor(known, sensor)
                    if bounds is None:
                        unknown.append(sensor)
                        bounds = _ANY
                if not bounds[0] <= value <= bounds[1] and value == value:
                    flagged.append((sensor, value))
                    value = _NAN
                append((sensor, epoch, value))
                continue
            # The common sample: exactly sensor, ts and value (a missing one raises KeyError: the contract decides).
            sensor = s["sensor"]
            bounds = known.get(sensor)
            if bounds is None:
                bounds = self._sensor(known, sensor)
                if bounds is None:
                    unknown.append(sensor)
                    bounds = _ANY  # still checked below: the contract must accept the record
            t = s["ts"]
            if type(t) is not str or not _canonical(t):
                raise _Unsure("timestamp")
            epoch = _fromiso(t).timestamp()
            if not _UTC_MIN <= epoch < _UTC_END:
                raise _Unsure("timestamp")
            value = s["value"]
            vt = type(value)
            if vt is float or vt is int:
                if not bounds[0] <= value <= bounds[1]:
                    flagged.append((sensor, float(value)))
                    value = _NAN
                elif vt is int:
                    value = float(value)
            elif value is None:
                value = _NAN
            else:
                raise _Unsure("value")
            append((sensor, epoch, value))
        # Five strings (three keys, sensor, time) per common sample: one more quote is a duplicate key.
        if 2 * (strings + 5 * (len(raw) - others)) != payload.count(b'"'):
            raise _Unsure("duplicate key")
        if unknown:
            # Rare: unknown sensors: the screen refuses them (a sample already judged is NaN or in range, so it
            # passes unchanged).
            skip = set(unknown)
            if flagged:
                self._flagged(machine_id, [f for f in flagged if f[0] not in skip])
            decoded = self._screen(machine_id, samples)
            decoded.fast = True
            return decoded
        if flagged:
            self._flagged(machine_id, flagged)
        return Decoded(machine_id, samples, fast=True)

    def _publisher_sample(
        self,
        s: dict[str, Any],
        known: dict[str, Bounds],
        append: Callable[[tuple[str, float, float]], None],
        flagged: list[tuple[str, float]],
        unknown: list[str],
    ) -> int:
        """A sample with every key (what :func:`ingest.publisher.encode_batch` writes), checked inline and judged
        by the plant's rules (appended, flagged or noted as unknown here: this runs for every reading a collector
        sends); returns the strings it quotes (for the duplicate-key check). A missing key raises KeyError (the
        contract decides)."""
        sensor = s["sensor"]
        bounds = known.get(sensor)
        if bounds is None:
            bounds = self._sensor(known, sensor)
            if bounds is None:
                unknown.append(sensor)
                bounds = _ANY
        t = s["ts"]
        if type(t) is not str or not _canonical(t):
            raise _Unsure("timestamp")
        epoch = _fromiso(t).timestamp()
        server = s["server_ts"]
        if not _UTC_MIN <= epoch < _UTC_END or (server is not None and not _valid_ts(server)):
            raise _Unsure("timestamp")
        unit = s["unit"]
        flags = s["flags"]
        quality = s["quality"]
        if (
            (unit is not None and type(unit) is not str)
            or type(s["status_code"]) is not int
            or type(flags) is not list
            or quality not in _QUALITIES
        ):
            raise _Unsure("sample")
        value = s["value"]
        vt = type(value)
        if vt is int:
            value = float(value)
        elif vt is not float and value is not None:
            raise _Unsure("value")
        # Its eight keys, sensor, time and quality; unit and server time when set; its flags.
        strings = 11 + (unit is not None) + (server is not None) + len(flags)
        if flags:
            if any(type(f) is not str for f in flags):
                raise _Unsure("flags")
            if not usable(quality, 0.0, flags, self.accept_uncertain):
                value = None
        elif quality != "good" and not usable(quality, 0.0, flags, self.accept_uncertain):
            value = None
        if value is None:
            append((sensor, epoch, _NAN))
        elif bounds[0] <= value <= bounds[1]:
            append((sensor, epoch, value))
        else:
            flagged.append((sensor, value))
            append((sensor, epoch, _NAN))
        return strings

    def _fast_reading(self, doc: dict[str, Any], payload: bytes) -> Decoded:
        """A ``reading`` with optional keys (the bare one is read inline in :meth:`decode_record`)."""
        if not _v1(doc) or not _READING_KEYS.issuperset(doc):
            raise _Unsure("reading")
        machine_id = self._envelope(doc)
        # The keys were checked against the reading's (which include the sample's): read the sample in place.
        sample = self._full_sample(doc, keys_checked=True)
        # The sample's strings count the record's keys; the envelope adds kind, machine and its optional strings.
        if 2 * (_sample_strings(doc) + _envelope_strings(doc) - len(doc)) != payload.count(b'"'):
            raise _Unsure("duplicate key")
        decoded = self._screen(machine_id, [sample])
        decoded.fast = True
        return decoded

    def _envelope(self, doc: dict[str, Any]) -> str:
        machine_id = self._ident(doc["machine_id"])
        if "ingest_ts" in doc:
            _ts(doc["ingest_ts"])
        source = doc.get("source")
        if source is not None and type(source) is not str:
            raise _Unsure("source")
        return machine_id

    def _full_sample(self, s: dict[str, Any], keys_checked: bool = False) -> tuple[str, float, float]:
        if not keys_checked and not _SAMPLE_KEYS.issuperset(s):
            raise _Unsure("sample")
        sensor = self._ident(s["sensor"])
        ts = _ts(s["ts"])
        value = s["value"]
        vt = type(value)
        if vt is int:
            value = float(value)
        elif vt is not float and value is not None:
            raise _Unsure("value")
        quality = s.get("quality", "good")
        if quality not in _QUALITIES:
            raise _Unsure("quality")
        self._optional(s)
        if value is None or not usable(quality, value, s.get("flags", ()), self.accept_uncertain):
            return sensor, ts, _NAN
        return sensor, ts, value

    @staticmethod
    def _optional(s: dict[str, Any]) -> None:
        unit = s.get("unit")
        if unit is not None and type(unit) is not str:
            raise _Unsure("unit")
        code = s.get("status_code", 0)
        if type(code) is not int:
            raise _Unsure("status_code")
        server_ts = s.get("server_ts")
        if server_ts is not None:
            _ts(server_ts)
        if "flags" in s:
            flags = s["flags"]
            if type(flags) is not list or any(type(f) is not str for f in flags):
                raise _Unsure("flags")


def _unknown_detail(machine_id: str, names: list[str]) -> str:
    listed = ", ".join(repr(n) for n in dict.fromkeys(names))
    return f"{len(names)} reading(s) of sensor(s) {listed[:400]} that machine {machine_id!r} does not have"


def _is_ident(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= 200 and _IDENT.match(value) is not None


def _v1(doc: dict[str, Any]) -> bool:
    """Schema version 1, as the integer (``true == 1`` in Python, and the full path refuses a boolean)."""
    v = doc.get("v")
    return v == 1 and type(v) is int


def _envelope_strings(doc: dict[str, Any]) -> int:
    """The strings a checked envelope quotes in JSON: its keys, kind, machine and the optional ones."""
    return len(doc) + 2 + ("ingest_ts" in doc) + (type(doc.get("source")) is str)


def _sample_strings(s: dict[str, Any]) -> int:
    """The strings a checked sample (or reading) quotes: its keys, sensor, time and the optional ones."""
    n = len(s) + 2 + (type(s.get("unit")) is str) + ("quality" in s) + (type(s.get("server_ts")) is str)
    flags = s.get("flags")
    return n + len(flags) if flags else n


def _column_strings(c: dict[str, Any]) -> int:
    """The strings a checked column quotes: its keys, sensor, unit, qualities and flags."""
    n = len(c) + 1 + (type(c.get("unit")) is str)
    quality, flags = c.get("quality"), c.get("flags")
    if quality is not None:
        n += len(quality)
    if flags is not None:
        n += sum(map(len, flags))
    return n


def _map_size(payload: bytes) -> int:
    """The number of pairs a MessagePack map's header announces (:func:`~vigil.contracts.is_packed` payloads)."""
    head = payload[0]
    if head <= 0x8F:
        return head & 0x0F
    width = 2 if head == 0xDE else 4
    return int.from_bytes(payload[1 : 1 + width], "big")


def _drop_columns(c: Columns, bounds: list[Bounds | None]) -> tuple[Columns, list[Bounds | None]]:
    """The columns whose bounds are known (at least one is)."""
    keep: list[int] = []
    start = 0
    parts: list[slice] = []
    for i, n in enumerate(c.lengths):
        if bounds[i] is not None:
            keep.append(i)
            parts.append(slice(start, start + n))
        start += n
    ts = np.concatenate([c.ts[p] for p in parts])
    values = np.concatenate([c.values[p] for p in parts])
    columns = Columns([c.sensors[i] for i in keep], [c.lengths[i] for i in keep], ts, values)
    columns.span = (float(ts.min()), float(ts.max()))
    return columns, [bounds[i] for i in keep]


_READINGS_KINDS = frozenset({"reading", "reading_batch", "reading_columns", "gap"})
"""The kinds of a readings topic: none of their fields is a boolean."""


def strict_check(payload: bytes) -> None:
    """Refuse what the contract's parsers would let through: a repeated key (the parser keeps one of the values:
    ``duplicate_key``) in any message; in a readings message a boolean anywhere or text as a value (pydantic's lax
    mode reads them as numbers: ``wrong_type``). A payload that does not parse is left to the contract, which names
    what is wrong. The fast paths decline all of these, so only the full path calls this.

    >>> strict_check(b'{"v":1,"kind":"reading","machine_id":"M","sensor":"s","ts":"x","value":1,"value":1e9}')
    Traceback (most recent call last):
    ...
    vigil.exceptions.ContractError: duplicate_key: key 'value' appears twice in one object
    """
    wrong: list[str] = []
    if is_packed(payload):
        try:
            doc = unpack_document(payload)
        except Exception:  # msgpack raises several unrelated types; the contract unpacks again and names it
            return
        if type(doc) is dict:
            if len(doc) != _map_size(payload):
                raise ContractError("duplicate_key", "a key appears twice in the message's map")
            _wrong_types(list(doc.items()), wrong)
    else:
        try:
            doc = json.loads(payload, object_pairs_hook=lambda pairs: _pairs(pairs, wrong))
        except (ValueError, RecursionError):
            return
    if wrong and type(doc) is dict and doc.get("kind") in _READINGS_KINDS:
        raise ContractError("wrong_type", wrong[0])


def _pairs(pairs: list[tuple[str, Any]], wrong: list[str]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ContractError("duplicate_key", f"key {twice[:60]!r} appears twice in one object")
    if not wrong:
        _wrong_types(pairs, wrong)
    return obj


def _wrong_types(pairs: list[tuple[str, Any]], wrong: list[str]) -> None:
    """Note (in ``wrong``) the first boolean, or text where a value belongs."""
    for key, value in pairs:
        if value is True or value is False:
            wrong.append(f"{key}: {json.dumps(value)} is a boolean, not a number")
        elif type(value) is list and any(x is True or x is False for x in value):
            wrong.append(f"{key}: holds a boolean, not a number")
        elif key == "value" and (type(value) is str or (type(value) is list and any(type(x) is str for x in value))):
            wrong.append(f"{key}: text is not a number")
        else:
            continue
        return


def _numbers(values: list[Any]) -> Array | None:
    """The list as float64 when every entry is a JSON number (``None`` otherwise: nulls, strings, booleans)."""
    array = np.array(values)
    if array.ndim != 1:  # nested lists: numbers, but not what the contract's list of floats holds
        return None
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind in "iu":
        return array.astype(np.float64)
    return None


def _valid_ts(value: Any) -> bool:
    """Whether the fast path can vouch for this timestamp without converting it (cheaper than :func:`_ts`)."""
    if type(value) is not str or not _canonical(value) or _fromiso(value).tzinfo is None:
        return False
    # Only years 0001 and 9999 can leave the range in UTC.
    return value[:4] not in ("0001", "9999") or _UTC_MIN <= _fromiso(value).timestamp() < _UTC_END


def _ts(value: Any) -> float:
    # Only the canonical forms; anything else (week dates, numbers, odd separators) goes to pydantic.
    if type(value) is not str or not _canonical(value):
        raise _Unsure("timestamp")
    epoch = datetime.fromisoformat(value).timestamp()
    if not _UTC_MIN <= epoch < _UTC_END:
        raise _Unsure("timestamp")
    return epoch
