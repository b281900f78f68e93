"""What the window engine hands to a feature builder, and the builder's interface as the engine sees it.

These live upstream in ``streaming`` so that the engine never imports ``features`` (imports flow
ingest -> streaming -> features -> models -> alerts); :mod:`features.vector` implements :class:`VectorBuilder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from vigil.contracts import FeatureVector

Array = npt.NDArray[np.float64]
ClosedBy = Literal["watermark", "wall_clock", "shutdown"]
SensorFeatures = dict[str, float | None]
"""One sensor's value features (aggregation name -> value), kept per machine for ``impute = "last"``."""


@dataclass(frozen=True)
class SensorWindow:
    """One sensor's readings in one window, de-duplicated: usable values sorted by event time, plus counts."""

    ts: Array
    values: Array
    total: int
    """Readings in the window, usable or not (the denominator of ``bad_share``)."""

    @property
    def bad(self) -> int:
        return self.total - len(self.values)


@dataclass(frozen=True)
class WindowColumns:
    """Every sensor of one machine's window at once, the form the engine hands over (numpy-friendly).

    Sensor ``i`` (``sensors[i]``) has its usable, de-duplicated readings at ``ts[bounds[i]:bounds[i + 1]]`` /
    ``values[...]``, sorted by event time, and ``totals[i]`` readings in the window, usable or not.
    """

    sensors: tuple[str, ...]
    ts: Array
    values: Array
    bounds: npt.NDArray[np.intp]
    totals: npt.NDArray[np.int64]

    def sensor(self, i: int) -> SensorWindow:
        lo, hi = int(self.bounds[i]), int(self.bounds[i + 1])
        return SensorWindow(ts=self.ts[lo:hi], values=self.values[lo:hi], total=int(self.totals[i]))


@dataclass
class BuildResult:
    vector: FeatureVector
    latest: dict[str, SensorFeatures] = field(default_factory=dict)
    """Per sensor with data, its value features: what ``impute = "last"`` uses for the next window."""


class VectorBuilder(Protocol):
    """What :class:`streaming.windows.WindowEngine` calls when a window closes."""

    def build_columns(
        self,
        machine_id: str,
        start: float,
        end: float,
        window: WindowColumns,
        *,
        gap: bool = False,
        closed_by: ClosedBy = "watermark",
        previous: Mapping[str, SensorFeatures] | None = None,
    ) -> BuildResult: ...
