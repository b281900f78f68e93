"""The plant: sites, lines, machine types (templates of sensors) and machines."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from vigil.config._base import Section

Name = str


class Range(Section):
    """Valid (physically possible) range of a sensor; values outside are flagged ``out_of_range``."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} > max {self.max:g}")
        return self


class Limits(Section):
    """Hard limits for the non-ML fail-safe rules; crossing one always raises an alert."""

    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low {self.low:g} >= high {self.high:g}")
        return self


class SensorSpec(Section):
    unit: str
    range: Range
    limits: Limits = Limits()
    key: bool = False
    """A key sensor: its features are watched by the feature-drift detectors."""


class SensorOverride(Section):
    """Per-machine changes to its type's sensor (a different range or limit on one machine)."""

    unit: str | None = None
    range: Range | None = None
    limits: Limits | None = None


class DerivedFeature(Section):
    """A cross-sensor feature computed per window from two sensors' means: ``a / b`` or ``a - b``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    op: str = Field(pattern=r"^(ratio|difference)$")
    a: Name
    b: Name


class MachineType(Section):
    description: str = ""
    sensors: dict[Name, SensorSpec] = Field(min_length=1)
    derived: list[DerivedFeature] = []
    running_sensor: Name | None = None
    """A sensor whose mean below ``off_below`` means the machine is off (windows get state ``off``)."""
    off_below: float = 0.0
    warmup_s: float | None = Field(default=None, ge=0)
    """After a start (the running sensor rising through ``off_below``) or after a sensor's data resumes from a gap,
    this long is warm-up: a hard-limit crossing in it is reported as one during warm-up (a warning), not as a
    hard-limit alert. Unset: ``[models] warmup_s`` (which also keeps anomalies quiet after a start)."""
    data_gap_s: float = Field(default=600.0, gt=0)
    """A sensor silent for longer than this (and longer than three of its sample intervals) resumes as after a
    start: the machine may have stopped and restarted unseen."""
    what_to_check: dict[str, list[str]] = {}
    """Per sensor (or failure mode), what a technician should check; copied into alerts."""

    @model_validator(mode="after")
    def _refs(self) -> Self:
        for d in self.derived:
            for ref in (d.a, d.b):
                if ref not in self.sensors:
                    raise ValueError(f"derived feature {d.name!r} uses unknown sensor {ref!r}")
        if self.running_sensor is not None and self.running_sensor not in self.sensors:
            raise ValueError(f"running_sensor {self.running_sensor!r} is not one of this type's sensors")
        return self


class Site(Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str = ""


class Line(Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    site: str
    name: str = ""


class Machine(Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:\-/]+$", max_length=200)
    type: str
    line: str
    sensors: dict[Name, SensorOverride] = {}
    commissioned: str | None = None


class ResolvedMachine(Section):
    """A machine with its type's sensors merged with its own overrides, and its line's site."""

    id: str
    type: str
    line: str
    site: str
    sensors: dict[Name, SensorSpec]
