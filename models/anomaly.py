"""Anomaly detectors for machines and types without failure history, and their adaptive threshold.

>>> detector = DeviationDetector(top=2)
>>> detector.score_one({"t.mean": 5.0, "v.mean": -3.0, "p.mean": 0.5})
4.0
>>> threshold = AdaptiveThreshold(q=0.9, floor=2.0, min_count=5)
>>> for s in (0.5, 1.0, 1.5, 1.0, 0.8, 1.2):
...     threshold.update(s)
>>> threshold.value
2.0
"""

from __future__ import annotations

import math
from typing import Any

from models.base import AnomalyDetector


class DeviationDetector(AnomalyDetector):
    """Mean of the ``top`` largest absolute deviations from normal (in the machine's standard deviations).

    Stateless on purpose: what is normal lives in the per-machine reference, so this score needs no failure
    history and no training, and its explanation is exactly the per-feature deviation.
    """

    def __init__(self, top: int = 2) -> None:
        self.top = top

    def learn_one(self, x: dict[str, float]) -> None:
        return None

    def score_one(self, x: dict[str, float]) -> float:
        if not x:
            return 0.0
        largest = sorted((abs(v) for v in x.values()), reverse=True)[: self.top]
        return sum(largest) / len(largest)

    def explain_one(self, x: dict[str, float]) -> dict[str, float]:
        return dict(x)


class HalfSpaceTreesDetector(AnomalyDetector):
    """River half-space trees on standardised features squashed into [0, 1] (the trees need bounded inputs)."""

    def __init__(self, n_trees: int = 25, height: int = 8, window_size: int = 250, seed: int = 42) -> None:
        from river import anomaly

        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self._model: Any = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed)

    @staticmethod
    def _squash(x: dict[str, float]) -> dict[str, float]:
        return {k: 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, v)) / 3.0)) for k, v in x.items()}

    def learn_one(self, x: dict[str, float]) -> None:
        self._model.learn_one(self._squash(x))

    def score_one(self, x: dict[str, float]) -> float:
        return float(self._model.score_one(self._squash(x)))

    def explain_one(self, x: dict[str, float]) -> dict[str, float]:
        # Trees have no additive decomposition; the per-feature deviation is what a technician can act on.
        return dict(x)


def make_detector(kind: str, seed: int) -> AnomalyDetector:
    if kind == "hst":
        return HalfSpaceTreesDetector(seed=seed)
    return DeviationDetector()


class AdaptiveThreshold:
    """A running quantile of healthy scores, never below ``floor``, per machine type."""

    def __init__(self, q: float = 0.995, floor: float = 0.0, min_count: int = 200) -> None:
        from river import stats

        self.q = q
        self.floor = floor
        self.min_count = min_count
        self._quantile: Any = stats.Quantile(q)
        self.count = 0

    def update(self, score: float) -> None:
        self._quantile.update(score)
        self.count += 1

    @property
    def value(self) -> float:
        if self.count < self.min_count:
            return self.floor
        q = self._quantile.get()
        return max(self.floor, float(q)) if q is not None else self.floor
