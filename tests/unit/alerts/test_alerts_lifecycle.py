"""The alert lifecycle as a pure state machine: open, update, acknowledge, escalate, resolve, silence, inhibit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.exceptions import UnknownAlertError
from alerts.lifecycle import Lifecycle, PlantInfo, Silence, Transition
from vigil.config import AlertConfig
from vigil.config.alerting import SilenceSpec
from vigil.contracts import (
    AlertState,
    Contribution,
    Decision,
    DriftEvent,
    FeatureVector,
    MachineState,
    MaintenanceEvent,
    Prediction,
    Severity,
)
from vigil.influx import MachineTags

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)
PLANT = PlantInfo(
    machines={
        "PMP-001": MachineTags("pump", "north", "north-1"),
        "PMP-002": MachineTags("pump", "north", "north-1"),
        "PMP-003": MachineTags("pump", "south", "south-1"),
    },
    what_to_check={"pump": {"bearing_temp": ["Bearing lubrication"], "vibration_rms": ["Alignment"]}},
)
RECEIVERS = [
    {"type": "webhook", "name": "planners", "url": "http://127.0.0.1:1/hook"},
    {"type": "webhook", "name": "manager", "url": "http://127.0.0.1:1/boss"},
    {"type": "webhook", "name": "south", "url": "http://127.0.0.1:1/south"},
]


def config(**kw: object) -> AlertConfig:
    data: dict[str, object] = {
        "open_threshold": 0.5,
        "close_threshold": 0.3,
        "open_after": 2,
        "cooldown_s": 3600,
        # These tests are about hysteresis, cooldown, routing and suppression: an episode resolves at the first
        # prediction without its condition. Sustained recovery (resolve_after_s) is tested in test_alerts_episodes.
        "resolve_after_s": 0,
        "receivers": RECEIVERS,
        "routes": [
            {"receiver": "south", "sites": ["south"]},
            {"receiver": "planners", "escalate_to": "manager", "escalate_after_s": 1800, "repeat_interval_s": 7200},
        ],
    }
    data.update(kw)
    return AlertConfig.model_validate(data)


def pred(i: int, p: float | None, machine: str = "PMP-001", **kw: object) -> Prediction:
    base: dict[str, object] = {
        "machine_id": machine,
        "machine_type": "pump",
        "ts": T0 + i * STEP,
        "model": "logistic",
        "p_failure": p,
        "horizon_s": 172800.0,
        "contributions": (
            Contribution(feature="bearing_temp.mean", value=96.0, normal=70.0, normal_std=3.0, contribution=1.4),
        ),
    }
    base.update(kw)
    # As the model service decides: the classifier alerts at p >= 0.5, the anomaly signal at score >= threshold.
    if "decision" not in kw:
        score, threshold = kw.get("anomaly_score"), kw.get("anomaly_threshold")
        if p is not None and p >= 0.5:
            base.update(decision="alert", decided_by="model")
        elif isinstance(score, float) and isinstance(threshold, float) and score >= threshold:
            base.update(decision="alert", decided_by="anomaly")
    return Prediction.model_validate(base)


def states(transitions: list[Transition]) -> list[str]:
    return [t.alert.state.value for t in transitions]


def feed(life: Lifecycle, probs: list[float | None], *, start: int = 0, now: float = 0.0) -> list[Transition]:
    out: list[Transition] = []
    for i, p in enumerate(probs, start=start):
        out += life.observe(pred(i, p), now)
    return out


def test_open_requires_consecutive_crossings_and_hysteresis_keeps_it_open() -> None:
    life = Lifecycle(config(), PLANT)
    assert feed(life, [0.6, 0.2, 0.6]) == [], "one crossing, then a dip: the counter restarts"
    opened = feed(life, [0.62], start=3)
    assert states(opened) == ["open"]
    alert = opened[0].alert
    assert alert.alert_id == "PMP-001.failure_risk.20261126T083000Z"
    assert alert.severity == Severity.WARNING and alert.site == "north" and alert.line == "north-1"
    assert alert.what_to_check == ("Bearing lubrication",)
    assert opened[0].receivers == ("planners",)
    # Between close (0.3) and open (0.5): still open; a move of update_min_delta (0.1) since the last record,
    # even in small steps, is recorded once.
    assert states(feed(life, [0.58, 0.55, 0.51, 0.48, 0.45], start=4)) == ["updated"]
    resolved = feed(life, [0.1], start=9)
    assert states(resolved) == ["resolved"] and resolved[0].receivers == ("planners",)
    assert life.open_episodes() == []


def test_updates_on_severity_and_large_moves_only() -> None:
    life = Lifecycle(config(), PLANT)
    feed(life, [0.6, 0.6])
    assert feed(life, [0.62, 0.61], start=2) == []
    worse = feed(life, [0.85], start=4)
    assert states(worse) == ["updated"] and worse[0].alert.severity == Severity.CRITICAL
    assert worse[0].receivers == ("planners",), "a more severe episode is told again"
    calmer = feed(life, [0.6], start=5)
    assert states(calmer) == ["updated"] and calmer[0].receivers == (), "less severe: recorded, not notified"


def test_cooldown_reopens_the_same_episode_without_spamming() -> None:
    life = Lifecycle(config(), PLANT)
    first = feed(life, [0.6, 0.6])[0].alert.alert_id
    feed(life, [0.1], start=2)
    again = feed(life, [0.7, 0.7], start=3)  # 10-20 min later: inside the one-hour cooldown
    assert states(again) == ["open"] and again[0].alert.alert_id == first
    assert again[0].alert.note == "reopened within cooldown" and again[0].receivers == ()
    feed(life, [0.1], start=5)
    later = feed(life, [0.7, 0.7], start=20)  # hours later: a new episode
    assert states(later) == ["open"] and later[0].alert.alert_id != first and later[0].receivers == ("planners",)


def test_replayed_predictions_do_not_repeat_transitions() -> None:
    life = Lifecycle(config(), PLANT)
    feed(life, [0.6, 0.6])
    assert feed(life, [0.6, 0.6]) == [], "same event times again (a replay after a restart)"


def test_acknowledge_stops_escalation_and_escalation_goes_to_the_other_receiver() -> None:
    life = Lifecycle(config(), PLANT)
    a = feed(life, [0.6, 0.6], now=1000.0)[0].alert
    assert life.tick(1000.0 + 1799) == []
    escalated = life.tick(1000.0 + 1801)
    assert states(escalated) == ["escalated"] and escalated[0].receivers == ("manager",)
    assert life.tick(1000.0 + 1900) == [], "escalates once"

    acked = life.acknowledge(a.alert_id, "Ann", "parts ordered", 5000.0)
    assert states(acked) == ["acknowledged"] and acked[0].alert.actor == "Ann"
    assert set(acked[0].receivers) == {"planners", "manager"}
    assert life.tick(1e9) == [], "no reminders once acknowledged"
    resolved = feed(life, [0.1], start=2)
    assert set(resolved[0].receivers) == {"planners", "manager"}

    b = Lifecycle(config(), PLANT)
    b_alert = feed(b, [0.6, 0.6], now=0.0)[0].alert
    b.acknowledge(b_alert.alert_id, "Bob", None, 10.0)
    assert b.tick(1e6) == [], "acknowledged before the deadline: never escalated"
    with pytest.raises(UnknownAlertError):
        b.acknowledge("nope", "Bob", None, 0.0)


def test_reminder_after_repeat_interval_when_not_acknowledged() -> None:
    life = Lifecycle(config(routes=[{"receiver": "planners", "repeat_interval_s": 600}]), PLANT)
    feed(life, [0.6, 0.6], now=0.0)
    reminder = life.tick(601.0)
    assert states(reminder) == ["updated"] and reminder[0].alert.note == "reminder: not acknowledged"
    assert life.tick(700.0) == []


def test_assignment_is_recorded() -> None:
    life = Lifecycle(config(), PLANT)
    a = feed(life, [0.6, 0.6])[0].alert
    (t,) = life.assign(a.alert_id, "Fitter Fred", "Ann", 1.0)
    assert t.alert.assignee == "Fitter Fred" and t.alert.actor == "Ann" and t.alert.state == AlertState.UPDATED


def test_routing_by_site_and_minimum_severity() -> None:
    life = Lifecycle(config(), PLANT)
    south = []
    for i in range(2):
        south += life.observe(pred(i, 0.6, machine="PMP-003"), 0.0)
    assert south[0].receivers == ("south",)
    crit_only = Lifecycle(config(routes=[{"receiver": "planners", "min_severity": "critical"}]), PLANT)
    assert feed(crit_only, [0.6, 0.6])[0].receivers == ()
    assert feed(crit_only, [0.9], start=2)[0].receivers == ("planners",)


def test_silence_records_without_notifying_and_tells_planners_when_it_ends() -> None:
    spec = SilenceSpec(machines=["PMP-001"], starts_at=T0, ends_at=T0 + 6 * STEP, comment="bearing change")
    life = Lifecycle(config(silences=[spec]), PLANT)
    silenced = feed(life, [0.6, 0.6])
    assert states(silenced) == ["silenced"] and silenced[0].receivers == ()
    assert "bearing change" in (silenced[0].alert.note or "")
    assert feed(life, [0.7], start=2) == []
    after = feed(life, [0.7], start=7)  # event time past the silence
    assert states(after) == ["open"] and after[0].receivers == ("planners",)


def test_silence_added_at_run_time_silences_open_episodes_of_the_line() -> None:
    life = Lifecycle(config(), PLANT)
    feed(life, [0.6, 0.6])
    now = T0.timestamp()
    spec = SilenceSpec(lines=["north-1"], starts_at=T0, ends_at=T0 + timedelta(hours=2))
    out = life.add_silence(Silence("s1", spec), now)
    assert states(out) == ["silenced"]
    resolved = feed(life, [0.1], start=2)
    assert states(resolved) == ["resolved"] and resolved[0].receivers == (), "silenced: not notified"
    assert life.remove_silence("s1") and not life.remove_silence("s1")


def test_machine_off_inhibits_and_running_again_lifts_it() -> None:
    life = Lifecycle(config(), PLANT)
    feed(life, [0.6, 0.6])
    off = FeatureVector(
        machine_id="PMP-001",
        machine_type="pump",
        window_start=T0 + 2 * STEP,
        window_end=T0 + 3 * STEP,
        features={},
        state=MachineState.OFF,
    )
    inhibited = life.observe_features(off, 0.0)
    assert states(inhibited) == ["inhibited"] and inhibited[0].alert.note == "machine off"
    assert life.observe(pred(4, None, decision=Decision.OFF), 0.0) == []
    back = life.observe_features(off.model_copy(update={"state": MachineState.RUNNING}), 0.0)
    assert states(back) == ["updated"] and back[0].alert.note == "machine running again"
    assert back[0].receivers == (), "planners already know: a restart is not news"
    assert states(life.observe_features(off, 0.0)) == ["inhibited"]
    worse = life.observe(pred(5, 0.9), 0.0)  # running again, and more severe than what planners were told
    assert states(worse) == ["updated", "updated"] and worse[0].receivers == ()
    assert worse[1].alert.note == "severity now critical" and worse[1].receivers == ("planners",)


def test_episode_opened_while_line_down_is_inhibited() -> None:
    life = Lifecycle(config(), PLANT)
    assert life.set_line_down("north-1", True, 0.0) == []
    opened = feed(life, [0.6, 0.6])
    assert states(opened) == ["inhibited"] and opened[0].alert.note == "line north-1 down" and opened[0].receivers == ()
    lifted = life.set_line_down("north-1", False, 0.0)
    assert states(lifted) == ["open"] and lifted[0].receivers == ("planners",)


def test_hard_limit_opens_at_once_and_is_critical() -> None:
    life = Lifecycle(config(), PLANT)
    out = life.observe(pred(0, 0.1, rule_violations=("vibration_rms 12.0 > 11.2",), decided_by="rule"), 0.0)
    assert states(out) == ["open"] and out[0].alert.alert_kind == "hard_limit"
    assert out[0].alert.severity == Severity.CRITICAL
    assert out[0].alert.what_to_check[0] == "Alignment", "the violated sensor's checks come first"
    assert states(life.observe(pred(1, 0.1), 0.0)) == ["resolved"]


def test_anomaly_episode_with_hysteresis() -> None:
    life = Lifecycle(config(), PLANT)
    out = []
    for i, score in enumerate([1.2, 1.3, 0.9, 0.5]):
        out += life.observe(pred(i, None, anomaly_score=score, anomaly_threshold=1.0), 0.0)
    assert [(t.alert.alert_kind, t.alert.state.value) for t in out] == [("anomaly", "open"), ("anomaly", "resolved")]


def test_drift_and_repair() -> None:
    life = Lifecycle(config(), PLANT)
    drift = DriftEvent(ts=T0, machine_type="pump", detector="adwin", target="error", event="drift")
    out = life.observe_drift(drift, 0.0)
    assert states(out) == ["open"] and out[0].alert.machine_id == "type:pump" and out[0].alert.severity == Severity.INFO
    done = life.observe_drift(drift.model_copy(update={"ts": T0 + STEP, "event": "promoted"}), 0.0)
    assert states(done) == ["resolved"]

    feed(life, [0.6, 0.6])
    repair = MaintenanceEvent(machine_id="PMP-001", ts=T0 + 3 * STEP, event="repair", text="bearing replaced")
    fixed = life.observe_maintenance(repair, 0.0)
    assert states(fixed) == ["resolved"] and fixed[0].alert.note == "repair recorded: bearing replaced"


def test_state_survives_export_and_restore() -> None:
    life = Lifecycle(config(), PLANT)
    a = feed(life, [0.6, 0.6], now=100.0)[0].alert
    life.add_silence(Silence("s9", SilenceSpec(machines=["PMP-002"], starts_at=T0, ends_at=T0 + STEP)), 0.0)
    tracks, flags = life.export_dirty(), life.export_flags()
    assert life.export_dirty() == {}, "exported once"

    again = Lifecycle(config(), PLANT)
    again.restore(tracks, flags)
    assert again.get(a.alert_id) is not None and "s9" in again.silences
    assert feed(again, [0.6, 0.6]) == [], "the replayed predictions are recognised"
    resolved = feed(again, [0.1], start=2)
    assert states(resolved) == ["resolved"] and resolved[0].alert.alert_id == a.alert_id
    assert states(again.tick(100.0 + 1801)) == [], "resolved: nothing to escalate"


def test_a_running_vector_with_missing_sensors_leaves_off_to_the_model() -> None:
    # A report-by-exception source sends nothing while a stopped machine's speed stays 0: the vector says
    # "running" with the speed missing, the model (holding the last value) says off; no flip-flop per window.
    life = Lifecycle(config(), PLANT)
    feed(life, [0.6, 0.6])
    assert states(life.observe(pred(3, None, decision=Decision.OFF), 0.0)) == ["inhibited"]
    silent = FeatureVector(
        machine_id="PMP-001",
        machine_type="pump",
        window_start=T0 + 3 * STEP,
        window_end=T0 + 4 * STEP,
        features={},
        missing=("speed",),
        state=MachineState.RUNNING,
    )
    assert life.observe_features(silent, 0.0) == []
    assert life.observe(pred(4, None, decision=Decision.OFF), 0.0) == []
