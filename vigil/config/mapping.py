"""One mapping model for data that arrives in someone else's shape: files, foreign Kafka topics, MQTT payloads.

A :class:`ReadingMapping` says where each part of a reading is found in a *record* (a CSV/Parquet row, or a JSON
object; dotted paths reach into nested JSON): the time (column, format, zone), the machine, the sensor or a tag
that names both, the value, and optionally unit and quality. Two layouts:

- ``long``: one reading per record (``machine``, ``sensor`` or ``tag``, ``value`` columns);
- ``wide``: one record per moment, one column per sensor (with a ``machine`` column, or the machine taken from the
  file name by ``machine_from_name``) or one column per tag (``tags`` maps each column to machine and sensor).

Tags, machine and sensor names are renamed by ``tags``, ``machines`` and ``sensors``; a tag may convert its
unit linearly (``scale`` then ``offset``: degF to degC is ``scale = 0.5556, offset = -17.78``), so the numbers
reaching the models are in the configured unit. :class:`MaintenanceMapping` does the same for the maintenance
system's (CMMS) exports: which columns hold machine, time, kind, failure mode, work-order id and text, and
which of the system's kind codes mean failure, repair or inspection.

>>> m = ReadingMapping(layout="wide", time=TimeSpec(column="Timestamp", format="%d.%m.%Y %H:%M", zone="Europe/Berlin"),
...                    machine=None, sensor=None, tags={"P1_TT01": TagSpec(machine="PMP-001", sensor="bearing_temp")})
>>> m.tags["P1_TT01"].machine, m.time.zone
('PMP-001', 'Europe/Berlin')
>>> TimeSpec(zone="Mars/Olympus")
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for TimeSpec
zone
  Value error, unknown time zone 'Mars/Olympus' (an IANA name such as 'UTC' or 'Europe/Berlin') ...
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from vigil.config._base import Section

TIME_FORMATS = ("iso", "epoch_s", "epoch_ms")
"""Named time formats; anything else is a ``strptime`` pattern (``%d.%m.%Y %H:%M:%S``)."""


class TimeSpec(Section):
    """Where the event time is and how to read it."""

    column: str = "ts"
    """Column (file) or dotted field path (JSON)."""
    format: str = "iso"
    """``iso`` (ISO 8601), ``epoch_s``, ``epoch_ms``, or a ``strptime`` pattern such as ``%m/%d/%Y %I:%M %p``."""
    zone: str = "UTC"
    """IANA zone of times written without an offset (historians often export local time); ignored when the time
    carries its own offset. Local times that do not exist (spring forward) are refused as ``bad_timestamp``;
    ambiguous ones (fall back) take the first (summer) reading."""

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'UTC' or 'Europe/Berlin')") from None
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in TIME_FORMATS and "%" not in value:
            raise ValueError(f"format {value!r} is neither one of {', '.join(TIME_FORMATS)} nor a strptime pattern")
        return value


class TagSpec(Section):
    """What one source tag (a wide column, or a value of the ``tag`` column) is, and how to convert its unit."""

    machine: str
    sensor: str
    scale: float = 1.0
    offset: float = 0.0
    """value in the configured unit = source value * scale + offset."""
    unit: str | None = None
    """The unit the source writes (documentation, and the unit a reading is stamped with before conversion)."""


class Conversion(Section):
    """A linear unit conversion for every tag of one sensor found by ``tag_pattern``."""

    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    """The unit the source writes."""


class ReadingMapping(Section):
    """Where a reading's parts are in a record; see the module documentation."""

    layout: Literal["long", "wide"] = "long"
    time: TimeSpec = TimeSpec()
    machine: str | None = "machine"
    """Column/field with the machine id (renamed by ``machines``); ``None`` when tags or the file name say it."""
    machine_from_name: str | None = None
    """A regular expression with a group ``machine``, matched against the file name (one file per machine)."""
    sensor: str | None = "sensor"
    """Long layout: column/field with the sensor name (renamed by ``sensors``)."""
    tag: str | None = None
    """Long layout: column/field with a tag name looked up in ``tags`` (instead of machine + sensor)."""
    value: str = "value"
    unit: str | None = None
    quality: str | None = None
    """Column/field with ``good``/``uncertain``/``bad`` or an OPC UA status code; missing means good."""
    tags: dict[str, TagSpec] = {}
    tag_pattern: str | None = None
    """A regular expression with groups ``machine`` and ``sensor`` for tags not listed in ``tags`` (wide columns or
    long tag values), e.g. ``(?P<machine>P\\d+)_(?P<sensor>.+)``; both parts are renamed by ``machines`` and
    ``sensors``, and ``conversions`` converts the sensor's unit. Adding a pump to the export then needs no new
    mapping lines."""
    conversions: dict[str, Conversion] = {}
    """Sensor name (after renaming) -> unit conversion of the tags ``tag_pattern`` finds."""
    machines: dict[str, str] = {}
    """Source machine name -> machine id in ``[[machines]]``."""
    sensors: dict[str, str] = {}
    """Source sensor name (long values, or wide column names with a machine column) -> sensor name."""
    ignore: list[str] = []
    """Wide layout: columns that are neither the time, the machine nor a sensor (counted once, never an error)."""
    decimal: Literal[".", ","] = "."
    """Decimal separator of numbers written as text (many European historians write ``3,14``)."""

    @field_validator("tag_pattern")
    @classmethod
    def _tag_regex(cls, value: str | None) -> str | None:
        return _pattern(value, ("machine", "sensor"))

    def resolve_tag(self, tag: str) -> TagSpec | None:
        r"""The tag's machine, sensor and conversion: from ``tags``, else from ``tag_pattern``; None if neither.

        >>> m = ReadingMapping(layout="wide", machine=None, tag_pattern=r"(?P<machine>P\d+)_(?P<sensor>TT|FT)",
        ...                    machines={"P7": "PMP-007"}, sensors={"TT": "bearing_temp", "FT": "flow"},
        ...                    conversions={"bearing_temp": Conversion(scale=0.5, offset=-10)})
        >>> m.resolve_tag("P7_TT"), m.resolve_tag("P7_XX")
        (TagSpec(machine='PMP-007', sensor='bearing_temp', scale=0.5, offset=-10.0, unit=None), None)
        """
        spec = self.tags.get(tag)
        if spec is not None or self.tag_pattern is None:
            return spec
        match = re.fullmatch(self.tag_pattern, tag)
        if match is None:
            return None
        machine, sensor = match.group("machine"), match.group("sensor")
        sensor = self.sensors.get(sensor, sensor)
        conversion = self.conversions.get(sensor, _IDENTITY)
        return TagSpec(
            machine=self.machines.get(machine, machine),
            sensor=sensor,
            scale=conversion.scale,
            offset=conversion.offset,
            unit=conversion.unit,
        )

    @field_validator("machine_from_name")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _pattern(value, ("machine",))

    @model_validator(mode="after")
    def _addressable(self) -> Self:
        if self.layout == "long":
            if self.tag is None and (self.sensor is None or (self.machine is None and not self.machine_from_name)):
                raise ValueError("a long layout needs a tag column, or a sensor column and a machine column/name")
        elif not self.tags and not self.tag_pattern and self.machine is None and self.machine_from_name is None:
            raise ValueError("a wide layout needs tags, a tag_pattern, a machine column, or machine_from_name")
        return self


_IDENTITY = Conversion()


def _pattern(value: str | None, groups: tuple[str, ...]) -> str | None:
    """A configured regular expression, checked to compile and to name ``groups``."""
    if value is None:
        return None
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    missing = [g for g in groups if g not in pattern.groupindex]
    if missing:
        raise ValueError("needs named group(s) " + " and ".join(f"(?P<{g}>...)" for g in missing))
    return value


class FileSource(Section):
    """``[[sources.file]]``: a historian export (CSV or Parquet) and how to read it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    path: str | None = None
    """A file or glob (relative to the working directory); the command line may name files instead."""
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    mapping: ReadingMapping = ReadingMapping()


class KafkaSource(Section):
    """``[[sources.kafka]]``: another team's topic with its own JSON schema, mapped into Vigil's readings."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    topic: str = Field(min_length=1)
    group_id: str | None = None
    """Consumer group (default ``vigil-collect-<name>``)."""
    mapping: ReadingMapping = ReadingMapping()


MaintenanceKindName = Literal["failure", "repair", "inspection", "ignore"]

DEFAULT_KINDS: dict[str, MaintenanceKindName] = {
    "failure": "failure",
    "breakdown": "failure",
    "corrective": "failure",
    "cm": "failure",
    "repair": "repair",
    "replacement": "repair",
    "inspection": "inspection",
    "preventive": "inspection",
    "pm": "inspection",
}


class MaintenanceMapping(Section):
    """Which columns of a maintenance-system export hold what, and what its kind codes mean.

    ``kinds`` maps the system's codes (compared case-insensitively, surrounding blanks ignored) to ``failure``,
    ``repair``, ``inspection`` or ``ignore`` (counted, not imported); a code that is not in the map is refused.
    The event id is the work order (with ``work_order``), else a digest of machine, time and kind, so importing
    the same export again changes nothing.
    """

    machine: str = "machine"
    time: TimeSpec = TimeSpec()
    kind: str = "kind"
    failure_mode: str | None = None
    work_order: str | None = None
    text: str | None = None
    kinds: dict[str, MaintenanceKindName] = DEFAULT_KINDS
    machines: dict[str, str] = {}
    """Source machine name (asset number) -> machine id in ``[[machines]]``."""
    max_text_chars: int = Field(default=4000, ge=0)
    """Longer free text is refused (``oversized``): an export that put a whole report in a cell is a mistake."""
    failure_repair_s: float | None = Field(default=None, ge=0)
    """When the export records only failures, a repair is assumed this long after each (the machine's next life
    starts then); ``None`` (default) assumes nothing."""

    @field_validator("kinds")
    @classmethod
    def _lower(cls, value: dict[str, MaintenanceKindName]) -> dict[str, MaintenanceKindName]:
        return {k.strip().lower(): v for k, v in value.items()}


class MaintenanceSource(Section):
    """``[[sources.maintenance]]``: a CMMS export (CSV or Parquet) of failures, repairs and inspections."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    path: str | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    mqtt_topics: list[str] = []
    """MQTT topics (on the ``[mqtt]`` broker) where a maintenance system publishes records as JSON (an object or an
    array, keyed like the export's columns): ``vigil collect maintenance --mqtt``."""
    mapping: MaintenanceMapping = MaintenanceMapping()
