"""Failure classifiers: one per machine type, shared by its machines (inputs are per-machine standardised).

>>> model = LogisticClassifier(seed=1)
>>> for i in range(300):
...     hot = i % 5 == 0
...     model.learn_one({"t.mean": 3.0 if hot else 0.0, "v.mean": 0.1}, hot)
>>> model.predict_proba_one({"t.mean": 3.0}) > 0.5 > model.predict_proba_one({"t.mean": 0.0})
True
>>> max(model.explain_one({"t.mean": 3.0, "v.mean": 0.0}).items(), key=lambda kv: kv[1])[0]
't.mean'
"""

from __future__ import annotations

from typing import Any

from models.base import Classifier, clip

_CLIP = 10.0


class LogisticClassifier(Classifier):
    """River logistic regression; explanation = weight x standardised value."""

    def __init__(self, learning_rate: float = 0.05, l2: float = 1e-4, seed: int = 42) -> None:
        from river import linear_model, optim

        self.learning_rate = learning_rate
        self.l2 = l2
        self.seed = seed
        self._model: Any = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2)
        self.n_positive = 0
        self.n_negative = 0

    def learn_one(self, x: dict[str, float], y: bool, w: float = 1.0) -> None:
        self._model.learn_one(clip(x, _CLIP), y, w=w)
        if y:
            self.n_positive += 1
        else:
            self.n_negative += 1

    def predict_proba_one(self, x: dict[str, float]) -> float:
        return float(self._model.predict_proba_one(clip(x, _CLIP))[True])

    def explain_one(self, x: dict[str, float]) -> dict[str, float]:
        weights = self._model.weights
        return {k: float(weights.get(k, 0.0)) * v for k, v in clip(x, _CLIP).items()}


class ForestClassifier(Classifier):
    """River adaptive random forest: non-linear; explanation = |standardised value| signed by whether the forest's
    probability drops when the feature is set to normal (0), one feature at a time."""

    def __init__(self, n_models: int = 10, seed: int = 42) -> None:
        from river import forest

        self.n_models = n_models
        self.seed = seed
        self._model: Any = forest.ARFClassifier(n_models=n_models, seed=seed)
        self.n_positive = 0
        self.n_negative = 0

    def learn_one(self, x: dict[str, float], y: bool, w: float = 1.0) -> None:
        # ARF has no sample weights: repeat a heavy sample (rounded), which is what Poisson bagging would do.
        for _ in range(max(1, round(w))):
            self._model.learn_one(clip(x, _CLIP), y)
        if y:
            self.n_positive += 1
        else:
            self.n_negative += 1

    def predict_proba_one(self, x: dict[str, float]) -> float:
        return float(self._model.predict_proba_one(clip(x, _CLIP)).get(True, 0.0))

    def explain_one(self, x: dict[str, float]) -> dict[str, float]:
        base = self.predict_proba_one(x)
        out: dict[str, float] = {}
        for key in x:
            out[key] = base - self.predict_proba_one({**x, key: 0.0})
        return out


def make_classifier(kind: str, seed: int) -> Classifier:
    if kind == "arf":
        return ForestClassifier(seed=seed)
    return LogisticClassifier(seed=seed)
