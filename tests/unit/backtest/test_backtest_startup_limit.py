"""The backtest scores a limit crossed only during warm-up as informational (``startup_limit``), not as a paged
episode, while a crossing that persists past the warm-up is a paged, critical ``hard_limit``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.lifecycle import Lifecycle
from backtest.run import METHODS, PAGED_KINDS, Backtest, Settings, _Method, scores
from vigil.config import VigilConfig
from vigil.contracts import Decision, Prediction

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)
WARM = "discharge_pressure below low limit 90 for 480 s during warm-up"
PAST = "discharge_pressure below low limit 90 for 240 s (mean 84.2)"


def window(machine: str, i: int, *violations: str) -> Prediction:
    return Prediction(
        machine_id=machine,
        machine_type="pump",
        ts=T0 + (i + 1) * STEP,
        window_start=T0 + i * STEP,
        model="m",
        decision=Decision.ALERT if violations else Decision.OK,
        decided_by="rule",
        rule_violations=violations,
    )


def test_warm_up_crossings_are_informational_and_a_persisting_crossing_is_paged(example_config: VigilConfig) -> None:
    assert "startup_limit" not in PAGED_KINDS
    methods = {m: _Method(Lifecycle(example_config.alerts)) for m in METHODS}
    vigil = methods["vigil"]
    # PMP-001 pumps back up after each of three restarts (its warm-up crossings are one episode, kept across the
    # restarts); PMP-002 stays below the limit after its warm-up.
    for i in range(36):
        vigil.take(vigil.lifecycle.observe(window("PMP-001", i, *((WARM,) if i % 12 == 0 else ())), 0.0))
    for i, violations in enumerate([(WARM,), (PAST,), (PAST,)]):
        vigil.take(vigil.lifecycle.observe(window("PMP-002", i, *violations), 0.0))
    bt = Backtest(config=example_config, settings=Settings(), methods=methods)
    bt.start, bt.end = T0.timestamp(), (T0 + timedelta(days=7)).timestamp()
    bt.operating_s.update({"PMP-001": 6 * 86400.0, "PMP-002": 6 * 86400.0})

    s = scores(bt)["vigil"]

    assert s["episodes_by_kind"] == {"hard_limit": 1, "startup_limit": 2}
    assert s["paged_episodes"] == 1 and s["informational_episodes"] == 2
    (hard,) = [e for e in vigil.episodes.values() if e.kind == "hard_limit"]
    assert hard.machine_id == "PMP-002" and hard.severity == "critical" and hard.paged
    assert hard.opened_at == T0 + 2 * STEP, "paged in the first window after warm-up that shows the crossing"
