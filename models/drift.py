"""Drift on model error and on key features, and the retraining policy that answers it.

:class:`ManagedClassifier` is a classifier like the others (same verbs), holding up to three models: the live
one, a background one trained since the error drift was detected, and the previous live one after a promotion.
A more sensitive twin of the drift detector marks the warning zone: the background model starts training at the
warning, so by the drift it already knows the new concept. On each label it scores every model before learning
(prequential, test-then-train); a background model replaces
the live one only if its log loss over the same labels is lower (promote-if-better), and a promoted model that
then does worse than the one it replaced is rolled back.

>>> managed = ManagedClassifier(min_labels=10)
>>> for i in range(40):
...     managed.learn_one({"a": float(i % 2)}, bool(i % 2))
>>> managed.version, managed.drain()
(0, [])
"""

from __future__ import annotations

import math
from typing import Any

from models.base import Classifier
from models.classifiers import make_classifier

_EPS = 1e-6


def make_drift_detector(kind: str, warning: bool = False) -> Any:
    """The error-drift detector; ``warning=True`` gives a more sensitive twin whose alarms are the warning zone
    (River's ADWIN has no warning level of its own, so the background model would otherwise only start at the
    drift itself, when the live model is already wrong)."""
    from river import drift as river_drift

    drift: Any = river_drift
    if kind == "page_hinkley":
        return drift.PageHinkley(min_instances=30, delta=0.005, threshold=2.5 if warning else 5.0)
    if kind == "kswin":
        return drift.KSWIN(alpha=0.005 if warning else 0.0001, window_size=200, stat_size=50, seed=42)
    return drift.ADWIN(delta=0.05 if warning else 0.002)


class LevelShift:
    """A lasting shift of one feature's deviation from the machine's normal, for the feature-drift events.

    The input is the deviation (z) of a key sensor from this machine's normal at its operating point. Its slow
    average (weight ``alpha`` per window, about ``1/alpha`` windows of memory) crossing ``level`` is a drift; the
    detector re-arms once the average is back within ``level / 2``, so a shift is reported once, not once per
    window. A warm-up, a duty cycle or a new operating point while the normal learns it move the deviation for
    hours and then back: they average out, which a cumulative-sum test (Page-Hinkley) over the same deviations does
    not do (it fired on healthy pumps every few days). ``drift_detected`` is true after the window that crossed.

    >>> detector = LevelShift(alpha=0.1, level=2.0, min_instances=5)
    >>> fired = []
    >>> for i, z in enumerate([0.5, -0.5] * 10 + [4.0] * 20 + [0.0] * 30):
    ...     detector.update(z)
    ...     if detector.drift_detected:
    ...         fired.append(i)
    >>> fired
    [26]
    """

    name = "level_shift"

    def __init__(self, alpha: float = 0.01, level: float = 3.0, min_instances: int = 100) -> None:
        self.alpha = alpha
        self.level = level
        self.min_instances = min_instances
        self.n = 0
        self.average = 0.0
        self.armed = True
        self.drift_detected = False
        self.held_h = 0.0
        """Running hours the current shift has lasted since it was detected (0 while armed)."""
        self.lasted = False
        """Whether the current shift has been reported as lasting (see :meth:`lasts`)."""

    def __setstate__(self, state: dict[str, float | bool | int]) -> None:
        # Checkpoints written before shifts had to last: none is held yet.
        state.setdefault("held_h", 0.0)
        state.setdefault("lasted", False)
        self.__dict__.update(state)

    def update(self, x: float) -> None:
        self.n += 1
        self.average += (x - self.average) * max(self.alpha, 1.0 / self.n)
        self.drift_detected = False
        if self.n < self.min_instances:
            return
        if self.armed and abs(self.average) >= self.level:
            self.drift_detected, self.armed = True, False
        elif not self.armed and abs(self.average) < self.level / 2:
            self.armed, self.held_h, self.lasted = True, 0.0, False

    def lasts(self, hours: float, at_least_h: float) -> bool:
        """Count ``hours`` of running time towards the current shift; true once, when it has lasted ``at_least_h``
        (a shift that goes back before then was a passing one).

        >>> detector = LevelShift(alpha=0.5, level=2.0, min_instances=1)
        >>> told = []
        >>> for z in [5.0] * 6 + [0.0] * 3:
        ...     detector.update(z)
        ...     told.append(detector.lasts(1.0, 3.0))
        >>> told.index(True), told.count(True)
        (2, 1)
        """
        if self.armed or self.lasted:
            return False
        self.held_h += hours
        if self.held_h >= at_least_h:
            self.lasted = True
            return True
        return False


def _log_loss(p: float, y: bool) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return -math.log(p if y else 1 - p)


class ManagedClassifier(Classifier):
    """A classifier with error-drift detection and promote-if-better retraining, with roll back."""

    def __init__(
        self, classifier: str = "logistic", detector: str = "adwin", min_labels: int = 200, seed: int = 42
    ) -> None:
        self.classifier = classifier
        self.detector = detector
        self.min_labels = min_labels
        self.seed = seed
        self.live: Classifier = make_classifier(classifier, seed)
        self.background: Classifier | None = None
        self.previous: Classifier | None = None
        self.version = 0
        self._detector: Any = make_drift_detector(detector)
        self._warning: Any = make_drift_detector(detector, warning=True)
        self._loss = {"live": 0.0, "other": 0.0}
        self._n_compared = 0
        self._events: list[tuple[str, str, float | None]] = []

    @property
    def n_positive(self) -> int:  # type: ignore[override]
        return self.live.n_positive

    @property
    def n_negative(self) -> int:  # type: ignore[override]
        return self.live.n_negative

    def predict_proba_one(self, x: dict[str, float]) -> float:
        return self.live.predict_proba_one(x)

    def explain_one(self, x: dict[str, float]) -> dict[str, float]:
        return self.live.explain_one(x)

    def drain(self) -> list[tuple[str, str, float | None]]:
        """Events since the last call, as ``(event, detail, value)``."""
        events, self._events = self._events, []
        return events

    def learn_one(self, x: dict[str, float], y: bool, w: float = 1.0) -> None:
        p_live = self.live.predict_proba_one(x)
        error = abs(float(y) - p_live)
        # Checkpoints written before the warning zone existed have no warning detector: start one.
        warning = self.__dict__.setdefault("_warning", make_drift_detector(self.detector, warning=True))
        warning.update(error)
        self._detector.update(error)
        if self._detector.drift_detected:
            self._events.append(("drift", "model error changed", error))
            self._start_background("drift")
        elif warning.drift_detected and self.background is None and self.previous is None:
            self._events.append(("warning", "model error may be changing", error))
            self._start_background("warning")
        other = self.background if self.background is not None else self.previous
        if other is not None:
            self._loss["live"] += w * _log_loss(p_live, y)
            self._loss["other"] += w * _log_loss(other.predict_proba_one(x), y)
            self._n_compared += 1
            other.learn_one(x, y, w)
        self.live.learn_one(x, y, w)
        if other is not None and self._n_compared >= self.min_labels:
            self._decide()

    def _start_background(self, since: str) -> None:
        if self.background is None and self.previous is None:
            self.background = make_classifier(self.classifier, self.seed + self.version + 1)
            self._reset_comparison()
            self._events.append(("retrain_started", f"background model training since the {since}", None))

    def _reset_comparison(self) -> None:
        self._loss = {"live": 0.0, "other": 0.0}
        self._n_compared = 0

    def _decide(self) -> None:
        live, other = self._loss["live"] / self._n_compared, self._loss["other"] / self._n_compared
        detail = f"log loss live {live:.4f} vs {'background' if self.background else 'previous'} {other:.4f}"
        if self.background is not None:
            if other < live:
                self.previous, self.live, self.background = self.live, self.background, None
                self.version += 1
                self._events.append(("promoted", detail, other))
            else:
                self.background = None
                self._events.append(("kept", detail, live))
        elif self.previous is not None:
            if other < live:
                self.live, self.previous = self.previous, None
                self.version += 1
                self._events.append(("rolled_back", detail, other))
            else:
                self.previous = None
        self._reset_comparison()
