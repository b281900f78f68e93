"""Error drift -> background model -> promote-if-better, and roll back when the promoted model does worse."""

from __future__ import annotations

import random

from models.drift import ManagedClassifier


def feed(model: ManagedClassifier, rng: random.Random, n: int, sign: int, until: str | None = None) -> list[str]:
    events: list[str] = []
    for _ in range(n):
        a = rng.gauss(0.0, 1.0)
        model.learn_one({"a": a}, (a > 0) == (sign > 0))
        events += [e for e, _, _ in model.drain()]
        if until is not None and until in events:
            break
    return events


def test_concept_change_is_detected_and_a_better_background_model_is_promoted() -> None:
    model = ManagedClassifier(min_labels=100)
    rng = random.Random(0)
    feed(model, rng, 1000, +1)
    assert model.predict_proba_one({"a": 2.0}) > 0.8
    events = feed(model, rng, 600, -1, until="promoted")
    assert events[:2] == ["drift", "retrain_started"] and events[-1] == "promoted"
    assert model.version == 1
    feed(model, rng, 300, -1)
    assert model.predict_proba_one({"a": 2.0}) < 0.2


def test_a_background_model_that_is_not_better_is_not_promoted() -> None:
    model = ManagedClassifier(min_labels=100)
    events = feed(model, random.Random(0), 1000, +1)
    assert "promoted" not in events and model.version == 0


def test_promoted_model_doing_worse_than_the_previous_one_is_rolled_back() -> None:
    model = ManagedClassifier(min_labels=100)
    rng = random.Random(0)
    feed(model, rng, 1000, +1)
    feed(model, rng, 600, -1, until="promoted")
    events = feed(model, rng, 100, +1)
    assert "rolled_back" in events and model.version == 2


def test_background_model_starts_at_the_warning_before_the_drift() -> None:
    model = ManagedClassifier(min_labels=100)
    rng = random.Random(0)
    log: list[tuple[int, str]] = []
    for i in range(2000):
        a = rng.gauss(0.0, 1.0)
        boundary = 0.0 if i < 1000 else min(2.0, (i - 1000) / 500)  # a gradual concept change from label 1000
        model.learn_one({"a": a}, a > boundary)
        log += [(i, e) for e, _, _ in model.drain()]
    after = [(i, e) for i, e in log if i >= 1000]
    first_warning = next(i for i, e in after if e == "warning")
    first_drift = next(i for i, e in after if e == "drift")
    assert first_warning < first_drift
    assert (first_warning, "retrain_started") in after


def test_a_checkpoint_from_before_the_warning_zone_still_learns() -> None:
    model = ManagedClassifier(min_labels=100)
    del model.__dict__["_warning"]  # as unpickled from an older checkpoint
    model.learn_one({"a": 1.0}, True)
    assert "_warning" in model.__dict__
