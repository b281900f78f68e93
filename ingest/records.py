"""JSON records in someone else's shape (MQTT payloads, another team's Kafka topic) read by a ReadingMapping.

:class:`RecordMapper` is the per-record twin of :class:`ingest.tabular.TableReader`: the same
:class:`~vigil.config.mapping.ReadingMapping`, the same semantics, the same refusal reasons, for one JSON object
at a time. A field is found by its dotted path (``meta.asset`` reaches ``{"meta": {"asset": ...}}``; a key that
itself contains dots is found as it is first).

- ``long``: one reading per record: the time, ``machine`` + ``sensor`` (or ``tag``) and ``value`` fields.
  ``null`` or an empty string as the value is a reading without a value.
- ``wide``: one record per moment: every other field (nested objects are walked to their leaves, named by their
  dotted path) is a tag of ``tags``, or, with a ``machine`` field, a sensor of that machine (renamed by
  ``sensors``). ``null`` or an empty string is no reading; a field that maps to nothing is counted once in
  ``unmapped_fields`` (add it to ``tags`` or ``ignore``), never an error.

Refusals are :class:`~ingest.exceptions.PayloadError`\\ s whose detail starts with the field:
``missing_field`` (a field the mapping needs is absent or null), ``bad_timestamp`` (the record's time cannot be
read: every reading of the record is refused), ``wrong_type`` (a value that is not a number, booleans included,
a machine or sensor that is not text, an unreadable quality: the rest of a wide record is kept), ``unknown_tag``
(long layout: a tag not in ``tags``), ``unknown_machine`` / ``unknown_sensor`` (when the mapper is given the
plant's machines), ``invalid`` (a machine or sensor name a Reading cannot carry). :meth:`RecordMapper.map_payload`
adds ``json`` (not JSON) and ``not_object`` (an item that is not an object) for raw bytes.

Times go through :func:`ingest.timeparse.parse_time` (``time.format``, ``time.zone`` for times without an
offset); a tag's ``scale``/``offset`` convert its value into the configured unit (the reading then carries no
unit: the source's unit no longer applies); strings use the mapping's ``decimal`` separator.

>>> from vigil.config.mapping import ReadingMapping, TagSpec, TimeSpec
>>> mapping = ReadingMapping(layout="wide", machine=None, sensor=None, decimal=",",
...     time=TimeSpec(column="meta.time", format="epoch_ms"),
...     tags={"data.TT01": TagSpec(machine="PMP-001", sensor="bearing_temp", scale=5 / 9, offset=-160 / 9),
...           "data.FT01": TagSpec(machine="PMP-001", sensor="flow")})
>>> mapper = RecordMapper(mapping, source="kafka:historian")
>>> readings, errors = mapper.map({"meta": {"time": 1767225600000}, "data": {"TT01": 98.6, "FT01": "hot"}})
>>> [(r.machine_id, r.sensor, r.ts.isoformat(), round(r.value or 0, 2)) for r in readings]
[('PMP-001', 'bearing_temp', '2026-01-01T00:00:00+00:00', 37.0)]
>>> [(e.reason, e.detail) for e in errors]
[('wrong_type', "field 'data.FT01': value 'hot' is not a number")]
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ingest.exceptions import PayloadError
from ingest.timeparse import parse_time
from ingest.validation import coerce_quality, coerce_value
from vigil.config.mapping import ReadingMapping, TagSpec
from vigil.contracts import Quality, Reading

log = logging.getLogger(__name__)

_MISSING: Any = object()


def lookup(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of a JSON object (a key containing dots first), or ``_MISSING``.

    >>> lookup({"a": {"b": 1}, "c.d": 2}, "a.b"), lookup({"a": {"b": 1}, "c.d": 2}, "c.d")
    (1, 2)
    """
    if path in record:
        return record[path]
    obj: Any = record
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def leaves(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every non-object value of a JSON object with its dotted path (a wide record's fields).

    >>> list(leaves({"t": 1, "data": {"TT01": 2.5, "x": {"y": None}}, "list": [1]}))
    [('t', 1), ('data.TT01', 2.5), ('data.x.y', None), ('list', [1])]
    """
    for key, value in record.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{path}.")
        else:
            yield path, value


def _error(reason: str, field: str, detail: str) -> PayloadError:
    return PayloadError(reason, f"field {field!r}: {detail}")


class RecordMapper:
    """Maps one JSON record (a dict) to readings by a :class:`ReadingMapping`; see the module documentation.

    With ``machines`` (machine id -> its sensors) readings of other machines or sensors are refused here
    (``unknown_machine`` / ``unknown_sensor``, as the file reader does); without, that is the validator's job.
    ``counters["unmapped_fields"]`` counts wide fields that map to nothing (each once).
    """

    def __init__(
        self,
        mapping: ReadingMapping,
        source: str | None = None,
        machines: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.mapping = mapping
        self.source = source
        self.machines = None if machines is None else {m: set(s) for m, s in machines.items()}
        self.counters: Counter[str] = Counter()
        self.unmapped_fields: set[str] = set()

    # ------------------------------------------------------------------------------------------ bytes

    def map_payload(self, payload: bytes, name: str | None = None) -> tuple[list[Reading], list[PayloadError]]:
        """A JSON object or an array of objects as readings and the refusals of every bad item or field.

        >>> from vigil.config.mapping import ReadingMapping
        >>> readings, errors = RecordMapper(ReadingMapping()).map_payload(
        ...     b'[{"machine": "PMP-001", "sensor": "flow", "ts": "2026-01-01T00:00:00Z", "value": "1.5"}, 7]')
        >>> [r.value for r in readings], [(e.reason, e.detail) for e in errors]
        ([1.5], [('not_object', 'expected a JSON object, got int')])
        """
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            return [], [PayloadError("json", str(exc)[:200])]
        items = doc if isinstance(doc, list) else [doc]
        readings: list[Reading] = []
        errors: list[PayloadError] = []
        for item in items:
            if not isinstance(item, dict):
                errors.append(PayloadError("not_object", f"expected a JSON object, got {type(item).__name__}"))
                continue
            got, bad = self.map(item, name)
            readings += got
            errors += bad
        return readings, errors

    # ------------------------------------------------------------------------------------------ one record

    def map(self, record: Mapping[str, Any], name: str | None = None) -> tuple[list[Reading], list[PayloadError]]:
        """The readings of one record and the refusals of its bad fields.

        ``name`` (an MQTT topic, a Kafka key) is what ``machine_from_name`` is matched against, as a file's
        name is for files.
        """
        m = self.mapping
        column = m.time.column
        raw_ts = lookup(record, column)
        if raw_ts is _MISSING:
            return [], [_error("missing_field", column, f"absent (mapping time.column = {column!r})")]
        try:
            ts = parse_time(raw_ts, m.time)
        except PayloadError as exc:
            return [], [_error(exc.reason, column, exc.detail)]
        if m.layout == "wide":
            return self._wide(record, ts, name)
        return self._long(record, ts, name)

    def _long(
        self, record: Mapping[str, Any], ts: datetime, name: str | None
    ) -> tuple[list[Reading], list[PayloadError]]:
        m = self.mapping
        raw_value = lookup(record, m.value)
        if raw_value is _MISSING:
            return [], [_error("missing_field", m.value, f"absent (mapping value = {m.value!r})")]
        try:
            value = self._number(m.value, raw_value, empty=None)
        except PayloadError as exc:
            return [], [exc]
        spec: TagSpec | None = None
        if m.tag is not None:
            raw_tag = lookup(record, m.tag)
            if raw_tag is _MISSING or raw_tag is None:
                return [], [_error("missing_field", m.tag, f"absent (mapping tag = {m.tag!r})")]
            # A CSV reads every tag as text; a JSON number names the same tag.
            key = str(raw_tag) if isinstance(raw_tag, str | int) and not isinstance(raw_tag, bool) else None
            spec = m.resolve_tag(key) if key is not None else None
            if spec is None:
                return [], [_error("unknown_tag", m.tag, f"tag {str(raw_tag)[:60]!r} is not in mapping.tags")]
            machine, sensor, field = spec.machine, spec.sensor, m.tag
        else:
            try:
                machine = self._machine(record, name)
                sensor = self._text(record, m.sensor or "", "sensor")
            except PayloadError as exc:
                return [], [exc]
            sensor = m.sensors.get(sensor, sensor)
            field = m.sensor or ""
        try:
            status = self._quality(record)
            self._known(machine, sensor, field)
            reading = self._reading(record, machine, sensor, ts, value, spec, status)
        except PayloadError as exc:
            return [], [exc]
        return [reading], []

    def _wide(
        self, record: Mapping[str, Any], ts: datetime, name: str | None
    ) -> tuple[list[Reading], list[PayloadError]]:
        m = self.mapping
        skip = {m.time.column, *m.ignore}
        for path in (m.machine, m.quality, m.unit):
            if path is not None:
                skip.add(path)
        machine: str | None = None
        try:
            status = self._quality(record)
            # As in a file: the machine field when the record has one, else the name, else only tags map.
            raw = _MISSING if m.machine is None else lookup(record, m.machine)
            if raw is not _MISSING and raw is not None:
                machine = self._machine(record, None)
            elif m.machine_from_name is not None and name is not None:
                machine = self._machine(record, name)
            elif not m.tags and not m.tag_pattern:
                where = m.machine or "machine_from_name"
                return [], [
                    _error("missing_field", where, "absent: the record names no machine and no tags are mapped")
                ]
        except PayloadError as exc:
            return [], [exc]
        readings: list[Reading] = []
        errors: list[PayloadError] = []
        for path, raw_value in leaves(record):
            if path in skip or any(path.startswith(f"{s}.") for s in skip):
                continue
            spec = m.resolve_tag(path)
            if spec is not None:
                reading_machine, sensor = spec.machine, spec.sensor
            elif machine is not None:
                reading_machine, sensor = machine, m.sensors.get(path, path)
            else:
                self._unmapped(path)
                continue
            try:
                value = self._number(path, raw_value, empty=_MISSING)
                if value is _MISSING:
                    continue
                self._known(reading_machine, sensor, path)
                readings.append(self._reading(record, reading_machine, sensor, ts, value, spec, status))
            except PayloadError as exc:
                errors.append(exc)
        return readings, errors

    # ------------------------------------------------------------------------------------------ parts

    def _machine(self, record: Mapping[str, Any], name: str | None) -> str:
        m = self.mapping
        if m.machine_from_name is not None and name is not None:
            match = re.search(m.machine_from_name, name)
            if match is None:
                raise _error("missing_field", "machine_from_name", f"{m.machine_from_name!r} does not match {name!r}")
            machine: str = match.group("machine")
        else:
            machine = self._text(record, m.machine or "", "machine")
        return m.machines.get(machine, machine)

    @staticmethod
    def _text(record: Mapping[str, Any], path: str, key: str) -> str:
        raw = lookup(record, path)
        if raw is _MISSING or raw is None or raw == "":
            raise _error("missing_field", path, f"absent or empty (mapping {key} = {path!r})")
        if not isinstance(raw, str):
            raise _error("wrong_type", path, f"{key} {str(raw)[:40]!r} ({type(raw).__name__}) is not text")
        return raw

    def _number(self, field: str, raw: Any, empty: Any) -> Any:
        """The value as a float (``coerce_value``: booleans refused); ``empty`` for null or blank text."""
        if raw is None:
            return empty
        if isinstance(raw, str):
            raw = raw.strip()
            if not raw:
                return empty
            if self.mapping.decimal == ",":
                raw = raw.replace(",", ".")
        try:
            return coerce_value(raw)
        except PayloadError as exc:
            raise _error(exc.reason, field, exc.detail) from None

    def _quality(self, record: Mapping[str, Any]) -> tuple[Quality, int]:
        path = self.mapping.quality
        raw = None if path is None else lookup(record, path)
        try:
            return coerce_quality(None if raw is _MISSING else raw)
        except PayloadError as exc:
            raise _error(exc.reason, path or "", exc.detail) from None

    def _known(self, machine: str, sensor: str, field: str) -> None:
        if self.machines is None:
            return
        sensors = self.machines.get(machine)
        if sensors is None:
            raise _error("unknown_machine", field, f"machine {machine[:60]!r} is not in [[machines]]")
        if sensor not in sensors:
            raise _error("unknown_sensor", field, f"machine {machine!r} has no sensor {sensor[:60]!r}")

    def _reading(
        self,
        record: Mapping[str, Any],
        machine: str,
        sensor: str,
        ts: datetime,
        value: float | None,
        spec: TagSpec | None,
        status: tuple[Quality, int],
    ) -> Reading:
        unit: str | None = None
        converted = spec is not None and (spec.scale != 1.0 or spec.offset != 0.0)
        if converted:
            assert spec is not None
            value = None if value is None else value * spec.scale + spec.offset
        elif self.mapping.unit is not None:
            raw_unit = lookup(record, self.mapping.unit)
            unit = None if raw_unit is _MISSING or raw_unit is None else str(raw_unit)
        try:
            return Reading(
                machine_id=machine,
                sensor=sensor,
                ts=ts,
                value=value,
                unit=unit,
                quality=status[0],
                status_code=status[1],
                source=self.source,
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            raise PayloadError("invalid", f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None

    def _unmapped(self, path: str) -> None:
        # Bounded: a topic whose records carry ever new keys must not grow this set for ever.
        if path not in self.unmapped_fields and len(self.unmapped_fields) < 10_000:
            self.unmapped_fields.add(path)
            self.counters["unmapped_fields"] += 1
            log.warning("field %r maps to no machine and sensor (add it to tags or ignore)", path)
