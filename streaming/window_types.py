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


@dataclass
class BuildResult:
    vector: FeatureVector
    latest: dict[str, SensorFeatures] = field(default_factory=dict)
    """Per sensor with data, its value features: what ``impute = "last"`` uses for the next window."""


class VectorBuilder(Protocol):
    """What :class:`streaming.windows.WindowEngine` calls when a window closes."""

    def build_with_latest(
        self,
        machine_id: str,
        start: float,
        end: float,
        sensors: Mapping[str, SensorWindow],
        *,
        gap: bool = False,
        closed_by: ClosedBy = "watermark",
        previous: Mapping[str, SensorFeatures] | None = None,
    ) -> BuildResult: ...
