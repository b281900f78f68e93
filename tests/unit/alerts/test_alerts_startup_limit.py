"""A hard limit crossed only during a machine's warm-up is start-up physics (a compressor pumping back up after a
restart): an informational ``startup_limit`` episode for the digest, paged only through a route that asks for it.
A crossing that persists past the warm-up is a critical ``hard_limit`` episode, paged at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.digest import is_finding
from alerts.lifecycle import Lifecycle, Transition
from vigil.config import AlertConfig
from vigil.contracts import Decision, Prediction, Severity

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)
RECEIVERS = [
    {"type": "webhook", "name": "pager", "url": "http://127.0.0.1:1/pager"},
    {"type": "webhook", "name": "reliability", "url": "http://127.0.0.1:1/rel"},
]
WARM = "discharge_pressure below low limit 90 for 480 s during warm-up"
PAST = "discharge_pressure below low limit 90 for 240 s (mean 84.2)"


def life(routes: list[dict[str, object]] | None = None, **kw: object) -> Lifecycle:
    data: dict[str, object] = {"open_after": 2, "resolve_after_s": 0, "receivers": RECEIVERS, "routes": routes or []}
    data.update(kw)
    return Lifecycle(AlertConfig.model_validate(data))


def window(i: int, *violations: str) -> Prediction:
    """One 10-minute window of compressor CMP-001; the rules decide when they found anything (as models.pipeline)."""
    return Prediction(
        machine_id="CMP-001",
        machine_type="compressor",
        ts=T0 + (i + 1) * STEP,
        window_start=T0 + i * STEP,
        model="m",
        p_failure=0.05,
        decision=Decision.ALERT if violations else Decision.OK,
        decided_by="rule" if violations else "model",
        rule_violations=violations,
    )


def opened(transitions: list[Transition]) -> dict[str, Transition]:
    return {t.alert.alert_kind: t for t in transitions if t.alert.state.value == "open"}


def test_a_crossing_only_during_warm_up_is_a_startup_limit_episode_that_pages_nobody_by_default() -> None:
    for routes in ([], [{"receiver": "pager"}]):  # no routes: every receiver for the paged kinds; a catch-all route
        lc = life(routes)
        out = lc.observe(window(0, WARM), 0.0)
        (t,) = out
        assert t.alert.alert_kind == "startup_limit" and t.alert.state.value == "open"
        assert t.alert.severity == Severity.WARNING and t.receivers == (), routes
        assert t.alert.summary == f"Limit crossed during warm-up: {WARM}"
        assert is_finding(t.alert), "it goes to the digest"
        assert all(ep.kind != "hard_limit" for ep in lc.open_episodes())
        assert [tr.alert.state.value for tr in lc.observe(window(1), 0.0)] == ["resolved"]


def test_a_route_that_names_startup_limit_or_includes_informational_kinds_is_paged() -> None:
    named = life([{"receiver": "pager"}, {"receiver": "reliability", "kinds": ["startup_limit"]}])
    (t,) = named.observe(window(0, WARM), 0.0)
    assert t.alert.alert_kind == "startup_limit" and t.receivers == ("reliability",)

    everything = life([{"receiver": "pager", "include_informational": True}])
    (t,) = everything.observe(window(0, WARM), 0.0)
    assert t.receivers == ("pager",)


def test_a_crossing_that_persists_past_warm_up_opens_a_critical_hard_limit_at_once() -> None:
    lc = life([{"receiver": "pager"}], resolve_after_s=3600)
    first = opened(lc.observe(window(0, WARM), 0.0))
    assert set(first) == {"startup_limit"} and first["startup_limit"].receivers == ()
    # The pressure is still low once the warm-up is over: the persisted crossing outside it is a hard limit, paged in
    # the first window that shows it (open_after is 2 for the model's episodes, not for the fail-safe).
    second = opened(lc.observe(window(1, PAST), 0.0))
    assert set(second) == {"hard_limit"}
    hard = second["hard_limit"].alert
    assert hard.severity == Severity.CRITICAL and second["hard_limit"].receivers == ("pager",)
    assert hard.summary == f"Hard limit exceeded: {PAST}", "the warm-up crossing is not part of the hard limit"
    kinds = sorted(ep.kind for ep in lc.open_episodes())
    assert kinds == ["hard_limit", "startup_limit"], "each its own episode; the start-up one resolves on its own"


def test_one_window_with_a_warm_up_crossing_and_a_persisted_one_opens_both_episodes() -> None:
    lc = life()
    other = "bearing_temp above high limit 95 for 600 s (mean 97.1)"
    out = opened(lc.observe(window(0, WARM, other), 0.0))
    assert out["hard_limit"].alert.summary == f"Hard limit exceeded: {other}"
    assert out["hard_limit"].alert.severity == Severity.CRITICAL and out["hard_limit"].receivers == (
        "pager",
        "reliability",
    )
    assert out["startup_limit"].alert.summary.endswith(WARM) and out["startup_limit"].receivers == ()


def test_restarts_within_the_resolve_time_stay_one_startup_limit_episode() -> None:
    lc = life(resolve_after_s=6 * 3600)
    out: list[Transition] = []
    for cycle in range(4):  # a restart every 3 h: 20 minutes below the limit while pumping back up
        base = cycle * 18
        out += lc.observe(window(base, WARM), 0.0)
        out += lc.observe(window(base + 1, WARM), 0.0)
        for i in range(base + 2, base + 18):
            out += lc.observe(window(i), 0.0)
    assert [t.alert.state.value for t in out] == ["open"], "one digest finding, not one per restart"


def test_a_warm_up_crossing_while_a_hard_limit_episode_is_open_holds_it_and_opens_nothing_else() -> None:
    lc = life([{"receiver": "pager"}])
    assert set(opened(lc.observe(window(0, PAST), 0.0))) == {"hard_limit"}
    # The machine restarts and is still below the limit while warming up: the same problem goes on.
    assert lc.observe(window(1, WARM), 0.0) == [], "held (resolve_after_s is 0 here: a clear window would resolve it)"
    assert [ep.kind for ep in lc.open_episodes()] == ["hard_limit"]
    (resolved,) = lc.observe(window(2), 0.0)
    assert resolved.alert.alert_kind == "hard_limit" and resolved.alert.state.value == "resolved"
