"""One episode per problem: an episode stays open across stops, duty cycles and short recoveries, and resolves after
``resolve_after_s`` of *operating* time without its condition (time while the machine is off does not count), or
at a repair. The state round-trips through export/restore and a replay gives the same ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.episodes import Track
from alerts.lifecycle import Lifecycle, PlantInfo, Transition
from vigil.config import AlertConfig
from vigil.contracts import (
    AlertState,
    Decision,
    DriftEvent,
    FeatureVector,
    MachineState,
    MaintenanceEvent,
    Prediction,
)
from vigil.influx import MachineTags

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)
HOUR = 6  # windows
PLANT = PlantInfo(machines={"PMP-P101": MachineTags("pump", "berlin", "berlin-cw")})
RECEIVERS = [{"type": "webhook", "name": "planners", "url": "http://127.0.0.1:1/hook"}]


def config(**kw: object) -> AlertConfig:
    data: dict[str, object] = {"open_after": 2, "resolve_after_s": 3 * 3600, "receivers": RECEIVERS}
    data.update(kw)
    return AlertConfig.model_validate(data)


@dataclass(frozen=True)
class Phase:
    """``windows`` ten-minute windows: running with an anomaly score (1.0 = the threshold), or off."""

    windows: int
    score: float | None  # None: the machine is off


def run(n: int, score: float) -> Phase:
    return Phase(n, score)


def off(n: int) -> Phase:
    return Phase(n, None)


def duty_cycle() -> list[Phase]:
    """Wear that shows at high speed only: 1 h high (above the threshold), a stop, 2 h low (clear), a stop."""
    return [run(HOUR, 1.6), off(3), run(2 * HOUR, 0.3), off(4)]


class Plant:
    """Feeds a lifecycle window by window as the services (and the backtest) do: features, then the prediction."""

    def __init__(self, life: Lifecycle, machine: str = "PMP-P101") -> None:
        self.life, self.machine, self.i = life, machine, 0
        self.log: list[Transition] = []

    def play(self, phases: list[Phase]) -> list[Transition]:
        out: list[Transition] = []
        for phase in phases:
            for _ in range(phase.windows):
                out += self.window(phase.score)
        self.log += out
        return out

    def window(self, score: float | None) -> list[Transition]:
        start, end = T0 + self.i * STEP, T0 + (self.i + 1) * STEP
        self.i += 1
        state = MachineState.OFF if score is None else MachineState.RUNNING
        fv = FeatureVector(
            machine_id=self.machine,
            machine_type="pump",
            window_start=start,
            window_end=end,
            features={},
            state=state,
        )
        if score is None:
            decision, by = Decision.OFF, "none"
        elif score >= 1.0:
            decision, by = Decision.ALERT, "anomaly"
        else:
            decision, by = Decision.OK, "anomaly"
        p = Prediction(
            machine_id=self.machine,
            machine_type="pump",
            ts=end,
            window_start=start,
            model="m",
            p_failure=None,
            anomaly_score=score,
            anomaly_threshold=None if score is None else 1.0,
            decision=decision,
            decided_by=by,
            reasons=("degradation trend on bearing_temp.mean rising",) if decision == Decision.ALERT else (),
        )
        now = end.timestamp()
        return self.life.observe_features(fv, now) + self.life.observe(p, now)

    @property
    def end(self) -> datetime:
        return T0 + self.i * STEP


def states(transitions: list[Transition]) -> list[str]:
    return [t.alert.state.value for t in transitions]


def pages(transitions: list[Transition]) -> list[Transition]:
    return [t for t in transitions if t.receivers]


def record(transitions: list[Transition]) -> list[tuple[str, str, datetime, int, str | None, tuple[str, ...]]]:
    return [
        (t.alert.alert_id, t.alert.state.value, t.alert.ts, t.alert.seq, t.alert.note, t.receivers) for t in transitions
    ]


def test_three_duty_cycles_with_stops_are_one_episode_and_one_page() -> None:
    plant = Plant(Lifecycle(config(), PLANT))
    out = plant.play(duty_cycle() * 3)
    assert len({t.alert.alert_id for t in out}) == 1, "one problem, one episode"
    assert states(out).count("open") == 1 and "resolved" not in states(out)
    assert "inhibited" in states(out), "the stops are recorded"
    assert [t.alert.state for t in pages(out)] == [AlertState.OPEN], "stops and restarts page nobody again"
    (ep,) = plant.life.open_episodes()
    assert ep.opened_at == T0 + 2 * STEP and ep.alert_id == "PMP-P101.anomaly.20260302T062000Z"


def test_the_old_behaviour_gives_one_episode_per_cycle() -> None:
    # What issue 14 saw: resolve at the first clear window, a cooldown shorter than the cycle.
    plant = Plant(Lifecycle(config(resolve_after_s=0, cooldown_s=3600), PLANT))
    out = plant.play(duty_cycle() * 3)
    assert len({t.alert.alert_id for t in out}) == 3 and states(out).count("resolved") == 3


def test_a_sustained_recovery_in_operating_time_resolves() -> None:
    plant = Plant(Lifecycle(config(), PLANT))
    plant.play([run(HOUR, 1.6)])
    assert plant.play([run(3 * HOUR - 1, 0.3)]) == [], "2 h 50 min of operation without the condition: still open"
    resolved = plant.play([run(1, 0.3)])
    assert states(resolved) == ["resolved"] and resolved[0].alert.ts == plant.end
    assert resolved[0].alert.note == "condition clear for 3.0 h of operation since 2026-03-02 07:10 UTC"
    assert resolved[0].receivers == ("planners",), "whoever was told hears of the resolve"
    assert plant.life.open_episodes() == []


def test_time_while_off_does_not_count_and_the_condition_returning_resets_the_count() -> None:
    plant = Plant(Lifecycle(config(), PLANT))
    plant.play([run(HOUR, 1.6)])
    # 2.5 h clear, a 10 h stop, 20 min clear: 2 h 50 min of operation (13 h of wall time).
    assert "resolved" not in states(plant.play([run(15, 0.3), off(60), run(2, 0.3)]))
    assert states(plant.play([run(1, 0.3)])) == ["resolved"], "the 3rd hour of operation without it"

    again = Plant(Lifecycle(config(), PLANT))
    again.play([run(HOUR, 1.6), run(2 * HOUR, 0.3), run(1, 1.2)])  # back for one window: the count restarts
    assert "resolved" not in states(again.play([run(3 * HOUR - 1, 0.3)]))
    assert states(again.play([run(1, 0.3)])) == ["resolved"]
    assert len({t.alert.alert_id for t in again.log}) == 1


def test_a_line_down_does_not_count_as_recovery() -> None:
    life = Lifecycle(config(), PLANT)
    plant = Plant(life)
    plant.play([run(HOUR, 1.6)])
    life.set_line_down("berlin-cw", True, 0.0)
    assert "resolved" not in states(plant.play([run(4 * HOUR, 0.3)])), "predictions while the line is down"
    life.set_line_down("berlin-cw", False, 0.0)
    assert states(plant.play([run(3 * HOUR, 0.3)]))[-1] == "resolved"


def test_a_repair_resolves_and_the_next_problem_is_a_new_episode() -> None:
    life = Lifecycle(config(), PLANT)
    plant = Plant(life)
    first = plant.play([run(HOUR, 1.6), run(HOUR, 0.3)])[0].alert.alert_id
    repair = MaintenanceEvent(machine_id="PMP-P101", ts=plant.end, event="repair", text="impeller replaced")
    fixed = life.observe_maintenance(repair, 0.0)
    assert states(fixed) == ["resolved"] and fixed[0].alert.note == "repair recorded: impeller replaced"
    # Within the cooldown, but after the repair: a new problem, a new episode and a new page.
    after = plant.play([run(2, 1.6)])
    assert states(after) == ["open"] and after[0].alert.alert_id != first and after[0].receivers == ("planners",)


def test_a_repair_forgets_an_episode_resolved_just_before_it() -> None:
    life = Lifecycle(config(resolve_after_s=0, cooldown_s=3600), PLANT)
    plant = Plant(life)
    first = plant.play([run(2, 1.6), run(1, 0.3)])[0].alert.alert_id
    life.observe_maintenance(MaintenanceEvent(machine_id="PMP-P101", ts=plant.end, event="repair"), 0.0)
    after = plant.play([run(2, 1.6)])
    assert states(after) == ["open"] and after[0].alert.alert_id != first, "not reopened within the cooldown"


def test_the_cooldown_still_reopens_after_a_sustained_recovery() -> None:
    plant = Plant(Lifecycle(config(cooldown_s=3600), PLANT))
    first = plant.play([run(HOUR, 1.6), run(3 * HOUR, 0.3)])
    assert states(first)[-1] == "resolved"
    again = plant.play([run(2, 1.6)])
    assert states(again) == ["open"] and again[0].alert.alert_id == first[0].alert.alert_id
    assert again[0].alert.note == "reopened within cooldown" and again[0].receivers == ()


def test_drift_outcomes_resolve_at_once() -> None:
    life = Lifecycle(config(), PLANT)
    drift = DriftEvent(ts=T0, machine_type="pump", detector="adwin", target="error", event="drift")
    assert states(life.observe_drift(drift, 0.0)) == ["open"]
    done = life.observe_drift(drift.model_copy(update={"ts": T0 + STEP, "event": "kept"}), 0.0)
    assert states(done) == ["resolved"]


def test_severity_rises_within_the_episode_and_pages_once_more() -> None:
    life = Lifecycle(config(), PLANT)

    def risk(i: int, p: float | None) -> list[Transition]:
        start = T0 + i * STEP
        decision = Decision.OFF if p is None else (Decision.ALERT if p >= 0.5 else Decision.OK)
        prediction = Prediction(
            machine_id="PMP-P101",
            machine_type="pump",
            ts=start + STEP,
            window_start=start,
            model="m",
            p_failure=p,
            horizon_s=172800.0,
            decision=decision,
            decided_by="none" if p is None else "model",
        )
        return life.observe(prediction, 0.0)

    out: list[Transition] = []
    for i, p in enumerate([0.6, 0.6, 0.65, None, None, 0.2, 0.9, 0.6, None, 0.55]):
        out += risk(i, p)
    assert len({t.alert.alert_id for t in out}) == 1
    told = [(t.alert.state.value, t.alert.severity.value, t.alert.note) for t in pages(out)]
    assert told == [("open", "warning", None), ("updated", "critical", "severity now critical")]
    assert out[-1].alert.severity.value == "warning", "the severity follows the condition within the episode"


def sequence() -> list[Phase]:
    return [*duty_cycle() * 2, run(3 * HOUR + 2, 0.3), run(HOUR, 1.5), off(10), run(4 * HOUR, 0.2)]


def test_a_replay_gives_the_same_ids_and_transitions() -> None:
    a, b = Plant(Lifecycle(config(), PLANT)), Plant(Lifecycle(config(), PLANT))
    a.play(sequence())
    b.play(sequence())
    assert record(a.log) == record(b.log)
    ids = sorted({t.alert.alert_id for t in a.log})
    # The second problem opens 2 h 40 min after the first resolved (3 h of operation into its recovery): past the
    # one-hour cooldown, so a new episode.
    assert ids == ["PMP-P101.anomaly.20260302T062000Z", "PMP-P101.anomaly.20260302T180000Z"]


def test_restore_in_the_middle_of_a_recovery_continues_it() -> None:
    whole = Plant(Lifecycle(config(), PLANT))
    whole.play([run(HOUR, 1.6), run(2 * HOUR, 0.3), off(6), run(2 * HOUR, 0.3)])

    first = Lifecycle(config(), PLANT)
    part = Plant(first)
    part.play([run(HOUR, 1.6), run(2 * HOUR, 0.3)])
    tracks, flags = first.export_dirty(), first.export_flags()
    saved = tracks["PMP-P101|anomaly"]
    assert saved["clear_s"] == 2 * 3600.0 and saved["clear_since"] == (T0 + HOUR * STEP + STEP).isoformat()
    assert Track.from_json(saved).to_json() == saved, "the track round-trips"

    restored = Lifecycle(config(), PLANT)
    restored.restore(tracks, flags)
    rest = Plant(restored)
    assert rest.play([run(HOUR, 1.6), run(2 * HOUR, 0.3)]) == [], "what Kafka redelivers changes nothing"
    assert rest.i == part.i
    rest.log = []
    rest.play([off(6), run(2 * HOUR, 0.3)])
    assert record(part.log + rest.log) == record(whole.log)
    assert states(rest.log)[-1] == "resolved" and rest.log[-1].alert.ts == T0 + (3 * HOUR + 6 + HOUR) * STEP


def test_state_saved_before_recovery_was_tracked_loads() -> None:
    old = {"above": 1, "last_ts": T0.isoformat(), "episode": None, "resolved": None}
    track = Track.from_json(old)
    assert track.clear_s == 0.0 and track.clear_since is None and track.last_ts == T0
