"""The alert service's input order (alerts/ordering.py): the same input in any arrival order, and across a restart
from the store, gives the lifecycle the same sequence and so the same transitions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts.lifecycle import Lifecycle, PlantInfo
from alerts.ordering import Held, InputOrder
from alerts.store import AlertStore
from vigil.config import AlertConfig
from vigil.contracts import Decision, DriftEvent, FeatureVector, MachineState, Prediction, encode
from vigil.influx import MachineTags

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)
PLANT = PlantInfo(machines={"PMP-001": MachineTags("pump", "north", "north-1")})
OFF = {4, 5, 9}
"""Windows in which the machine is off."""
FAULTS = {4, 7}
"""Windows with a sensor-fault finding."""


def vector(i: int) -> FeatureVector:
    return FeatureVector(
        machine_id="PMP-001",
        machine_type="pump",
        window_start=T0 + i * STEP,
        window_end=T0 + (i + 1) * STEP,
        features={},
        state=MachineState.OFF if i in OFF else MachineState.RUNNING,
    )


def prediction(i: int) -> Prediction:
    off = i in OFF
    return Prediction(
        machine_id="PMP-001",
        machine_type="pump",
        ts=T0 + (i + 1) * STEP,
        model="logistic",
        p_failure=None if off else 0.7,
        horizon_s=172800.0,
        decision=Decision.OFF if off else Decision.ALERT,
        decided_by="none" if off else "model",
    )


def fault(i: int) -> DriftEvent:
    return DriftEvent(
        ts=T0 + (i + 1) * STEP,
        machine_type="pump",
        machine_id="PMP-001",
        detector="sensor_fault",
        target="bearing_temp",
        event="sensor_fault",
    )


WINDOWS = 12


def arrivals(seed: int) -> list[Held]:
    """The features stream and the model service's stream (a window's prediction and drift, written in one
    transaction: fetched in either order) interleaved at random in chunks, each stream in its own order (a topic
    partition is read in order): the consumer may fetch either topic ahead of the other - except before the
    machine's very first vector (see alerts/ordering.py: until then its predictions are decided as they come)."""
    rng = random.Random(seed)
    features = [Held("features", 0, i, encode(vector(i)), vector(i)) for i in range(WINDOWS)]
    models: list[Held] = []
    faults = {i: n for n, i in enumerate(sorted(FAULTS))}
    for i in range(WINDOWS):
        window = [Held("predictions", 0, i, encode(prediction(i)), prediction(i))]
        if i in faults:
            window.append(Held("drift", 0, faults[i], encode(fault(i)), fault(i)))
            rng.shuffle(window)
        models += window
    queues = [features, models]
    out: list[Held] = [features.pop(0)]
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        k = rng.randint(1, 5)
        out += queue[:k]
        del queue[:k]
    return out


def decide(order: list[Held], *, ordered: bool = True, restart_at: int | None = None, tmp: Path | None = None) -> Any:
    """Feed the lifecycle, through :class:`InputOrder` (``ordered``) or as the records arrive; with
    ``restart_at``, the service's decided state (lifecycle and held records) goes through the real sqlite store
    after that many records and both are loaded again, as a restarted alert service does."""
    config = AlertConfig.model_validate({"open_after": 2, "resolve_after_s": 0, "cooldown_s": 0})
    life = Lifecycle(config, PLANT)
    buffer = InputOrder(wait_s=120.0)
    store = None
    if tmp is not None:
        store = AlertStore(tmp / "outbox.sqlite3")
        store.open()
    out = []
    for n, held in enumerate(order):
        if not ordered:
            out += _observe(life, held.message)
            continue
        buffer.add(held, now=0.0)
        for h in buffer.release(now=0.0):
            out += _observe(life, h.message)
        if store is not None and n + 1 == restart_at:
            store.commit(life.export_dirty(), life.export_flags(), [], 0.0, held=buffer.take_changes())
            life = Lifecycle(config, PLANT)
            life.restore(*store.load())
            buffer = InputOrder(wait_s=120.0)
            buffer.load(*store.load_held())
    if store is not None:
        store.close()
    return [(t.alert.alert_id, t.alert.seq, t.alert.state.value, t.alert.note) for t in out]


def _observe(life: Lifecycle, message: Any) -> list[Any]:
    if isinstance(message, Prediction):
        return life.observe(message, 0.0)
    if isinstance(message, FeatureVector):
        return life.observe_features(message, 0.0)
    return life.observe_drift(message, 0.0)


def test_any_arrival_order_gives_the_same_transitions() -> None:
    runs = {seed: decide(arrivals(seed)) for seed in range(20)}
    reference = runs[0]
    assert any(state == "inhibited" for _, _, state, _ in reference), "the scenario must exercise machine off"
    assert any(alert_id.endswith(tuple("0123456789Z")) and "sensor_fault" in alert_id for alert_id, *_ in reference)
    for seed, transitions in runs.items():
        assert transitions == reference, f"arrival order {seed} decided differently"


def test_without_the_order_two_runs_differ() -> None:
    """The same scenario fed as it arrives (what the service did before): the order changes the decisions, so the
    test above is not comparing inputs that cannot differ."""
    as_arrived = {tuple(decide(arrivals(seed), ordered=False)) for seed in range(20)}
    assert len(as_arrived) > 1


def test_a_restart_from_the_store_decides_as_an_uninterrupted_run(tmp_path: Path) -> None:
    order = arrivals(3)
    uninterrupted = decide(order)
    for i, at in enumerate((5, 11, 17)):
        run = tmp_path / str(i)
        run.mkdir()
        assert decide(order, restart_at=at, tmp=run) == uninterrupted, f"restart after {at} records"


def test_the_bounded_wait_releases_a_vector_without_its_prediction_in_order() -> None:
    buffer = InputOrder(wait_s=60.0)
    for i in range(3):
        buffer.add(Held("features", 0, i, b"", vector(i)), now=float(i))
    assert buffer.release(now=10.0) == []
    released = buffer.release(now=60.5)  # the first vector waited 60 s: it goes, with nothing younger
    assert [h.offset for h in released] == [0]
    assert [h.offset for h in buffer.release(now=100.0)] == [1, 2]
    assert buffer.timed_out == 2 and len(buffer) == 0


def test_predictions_without_vectors_and_drift_alone_go_at_once() -> None:
    """A plant that feeds the alert service only predictions (or only drift) is decided as it arrives."""
    predictions, drift = InputOrder(wait_s=3600.0), InputOrder(wait_s=3600.0)
    predictions.add(Held("predictions", 0, 0, b"", prediction(3)), now=0.0)
    drift.add(Held("drift", 0, 0, b"", fault(4)), now=0.0)
    assert [h.topic for h in predictions.release(now=0.0)] == ["predictions"]
    assert [h.topic for h in drift.release(now=0.0)] == ["drift"]


def test_a_drift_event_waits_for_its_window_s_prediction() -> None:
    buffer = InputOrder(wait_s=3600.0)
    buffer.add(Held("predictions", 0, 0, b"", prediction(3)), now=0.0)
    buffer.add(Held("drift", 0, 0, b"", fault(4)), now=0.0)
    assert [h.topic for h in buffer.release(now=0.0)] == ["predictions"]
    buffer.add(Held("predictions", 0, 1, b"", prediction(4)), now=0.0)
    assert [h.topic for h in buffer.release(now=0.0)] == ["predictions", "drift"]
