"""Conformance: every model class in ``models`` is found by itself and checked for clone, pickle round trip,
seeded determinism, and missing and new feature keys (after River's ``check_estimator``)."""

from __future__ import annotations

import importlib
import inspect
import math
import pickle
import pkgutil
import random

import pytest

import models
from models.base import AnomalyDetector, Classifier, OnlineModel


def _discover() -> list[type[OnlineModel]]:
    found: dict[str, type[OnlineModel]] = {}
    for info in pkgutil.iter_modules(models.__path__):
        if info.name in ("service", "evaluate"):
            continue  # entry points, not model code
        module = importlib.import_module(f"models.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, (Classifier, AnomalyDetector))
                and obj not in (Classifier, AnomalyDetector)
                and not inspect.isabstract(obj)
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


MODELS = _discover()


def test_discovery_finds_every_family_member() -> None:
    names = {m.__name__ for m in MODELS}
    assert {"LogisticClassifier", "ForestClassifier", "ManagedClassifier"} <= names
    assert {"DeviationDetector", "HalfSpaceTreesDetector"} <= names


def _stream(seed: int, n: int = 150) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.random() < 0.3
        out.append(({"a": rng.gauss(2.0 if y else 0.0, 1.0), "b": rng.gauss(0.0, 1.0)}, y))
    return out


def _learn(model: OnlineModel, data: list[tuple[dict[str, float], bool]]) -> None:
    for x, y in data:
        if isinstance(model, Classifier):
            model.learn_one(x, y)
        elif isinstance(model, AnomalyDetector):
            model.learn_one(x)


def _out(model: OnlineModel, x: dict[str, float]) -> float:
    if isinstance(model, Classifier):
        return model.predict_proba_one(x)
    assert isinstance(model, AnomalyDetector)
    return model.score_one(x)


PROBES = [{"a": 0.0, "b": 0.0}, {"a": 3.0, "b": -1.0}, {"a": -2.0, "b": 2.5}]


@pytest.fixture(params=MODELS, ids=lambda m: m.__name__)
def model_class(request: pytest.FixtureRequest) -> type[OnlineModel]:
    cls: type[OnlineModel] = request.param
    return cls


def test_clone_is_unfitted_with_the_same_parameters(model_class: type[OnlineModel]) -> None:
    trained = model_class()
    _learn(trained, _stream(1))
    clone = trained.clone()
    assert clone.params() == trained.params() and repr(clone) == repr(trained)
    fresh = model_class()
    assert [_out(clone, x) for x in PROBES] == [_out(fresh, x) for x in PROBES]


def test_pickle_round_trip_keeps_state_and_keeps_learning_identically(model_class: type[OnlineModel]) -> None:
    model = model_class()
    _learn(model, _stream(2))
    copy = pickle.loads(pickle.dumps(model))
    assert [_out(copy, x) for x in PROBES] == [_out(model, x) for x in PROBES]
    more = _stream(3, 40)
    _learn(model, more)
    _learn(copy, more)
    assert [_out(copy, x) for x in PROBES] == [_out(model, x) for x in PROBES]


def test_seeded_determinism(model_class: type[OnlineModel]) -> None:
    a, b = model_class(), model_class()
    data = _stream(4)
    _learn(a, data)
    _learn(b, data)
    assert [_out(a, x) for x in PROBES] == [_out(b, x) for x in PROBES]


def test_missing_and_new_feature_keys(model_class: type[OnlineModel]) -> None:
    model = model_class()
    _learn(model, _stream(5))
    for x in ({"a": 1.0}, {}, {"a": 1.0, "b": 0.5, "new": 4.0}):
        assert math.isfinite(_out(model, x))
        assert all(math.isfinite(v) for v in model.explain_one(x).values())
    _learn(model, [({"a": 1.0, "new": 2.0}, True), ({"b": 1.0}, False)])
    assert math.isfinite(_out(model, {"new": 2.0}))
