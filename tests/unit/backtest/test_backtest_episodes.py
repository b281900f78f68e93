"""The backtest counts episodes from the lifecycle's transitions: an episode kept open across stops (inhibited,
running again) and short recoveries is one paged episode; a sustained recovery closes it; a reopening within the
cooldown is the same episode again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.lifecycle import Lifecycle
from backtest.run import _Method
from vigil.config import AlertConfig
from vigil.contracts import Decision, Prediction

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)


def play(method: _Method, scores: list[float | None]) -> None:
    """One prediction per ten-minute window: an anomaly score (threshold 1.0), or None for a stopped machine."""
    for i, score in enumerate(scores):
        start = T0 + i * STEP
        decision = Decision.OFF if score is None else Decision.ALERT if score >= 1.0 else Decision.OK
        p = Prediction(
            machine_id="PMP-P101",
            machine_type="pump",
            ts=start + STEP,
            window_start=start,
            model="m",
            anomaly_score=score,
            anomaly_threshold=None if score is None else 1.0,
            decision=decision,
            decided_by="anomaly",
        )
        method.take(method.lifecycle.observe(p, 0.0))


CYCLE: list[float | None] = [1.6] * 6 + [None] * 3 + [0.3] * 12 + [None] * 4


def test_duty_cycles_are_one_paged_episode_until_a_sustained_recovery() -> None:
    method = _Method(Lifecycle(AlertConfig(open_after=2, resolve_after_s=3 * 3600)))
    play(method, CYCLE * 3)
    (ep,) = method.episodes.values()
    assert ep.paged and ep.kind == "anomaly" and ep.closed_at is None and ep.opened_at == T0 + 2 * STEP
    play(method, CYCLE * 3)  # replayed event times are ignored: nothing changes
    assert ep.closed_at is None and len(method.episodes) == 1

    later = _Method(Lifecycle(AlertConfig(open_after=2, resolve_after_s=3 * 3600)))
    play(later, CYCLE * 3 + [0.3] * 6)  # 2 h clear in the last cycle + 1 h: 3 h of operation
    (ep,) = later.episodes.values()
    assert ep.closed_at == T0 + (3 * len(CYCLE) + 6) * STEP


def test_the_old_semantics_count_one_episode_per_cycle_and_a_cooldown_reopening_as_one() -> None:
    old = _Method(Lifecycle(AlertConfig(open_after=2, resolve_after_s=0, cooldown_s=3600)))
    play(old, CYCLE * 3)
    assert len(old.episodes) == 3 and all(e.closed_at is not None for e in old.episodes.values())

    reopened = _Method(Lifecycle(AlertConfig(open_after=2, resolve_after_s=0, cooldown_s=3 * 3600)))
    play(reopened, CYCLE * 3)
    (ep,) = reopened.episodes.values()
    assert ep.closed_at is not None, "reopened twice within the cooldown; closed by the last cycle's clear phase"
