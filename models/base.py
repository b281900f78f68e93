"""The model family: small classes over standardised feature dicts, with one or two verbs each.

Every model takes a ``dict[str, float]`` of per-machine standardised features (missing keys are simply absent,
new keys are learnt when they appear), stores its constructor arguments as-is (so :meth:`OnlineModel.clone`
is ``type(self)(**params)``), and pickles. Classifiers ``learn_one(x, y, w)`` / ``predict_proba_one(x)``;
anomaly detectors ``learn_one(x)`` / ``score_one(x)``; both ``explain_one(x)`` into signed per-feature shares.
"""

from __future__ import annotations

import inspect
from typing import Any, Self


class OnlineModel:
    """Base: constructor arguments are the configuration."""

    def params(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def clone(self) -> Self:
        """A fresh, unfitted model with the same configuration."""
        return type(self)(**self.params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def explain_one(self, x: dict[str, float]) -> dict[str, float]:
        """Signed contribution of each feature to the output for ``x``."""
        raise NotImplementedError


class Classifier(OnlineModel):
    """P(failure within the horizon) from standardised features."""

    n_positive: int
    n_negative: int

    def learn_one(self, x: dict[str, float], y: bool, w: float = 1.0) -> None:
        raise NotImplementedError

    def predict_proba_one(self, x: dict[str, float]) -> float:
        raise NotImplementedError


class AnomalyDetector(OnlineModel):
    """An anomaly score (higher = more unusual) from standardised features."""

    def learn_one(self, x: dict[str, float]) -> None:
        raise NotImplementedError

    def score_one(self, x: dict[str, float]) -> float:
        raise NotImplementedError


def clip(x: dict[str, float], bound: float) -> dict[str, float]:
    """Standardised values clipped to +-bound, so one wild input cannot dominate a linear model."""
    return {k: max(-bound, min(bound, v)) for k, v in x.items()}
