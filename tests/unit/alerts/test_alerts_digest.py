"""Informational is not paging: routing leaves drift and sensor faults out unless a route asks; the digest lists a
period's findings grouped by machine, once per period, also after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.digest import Digester, DigestNotification, Schedule, is_finding
from alerts.lifecycle import Lifecycle, PlantInfo
from alerts.routing import Router
from alerts.store import AlertStore
from vigil.config import AlertConfig
from vigil.config.alerting import DigestConfig
from vigil.contracts import Alert, AlertState, DriftEvent
from vigil.influx import MachineTags

T0 = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)  # 07:30 in Berlin, Monday
PLANT = PlantInfo(
    machines={"PMP-001": MachineTags("pump", "north", "north-1"), "PMP-002": MachineTags("pump", "north", "north-1")}
)
RECEIVERS = [
    {"type": "webhook", "name": "pager", "url": "http://127.0.0.1:1/pager"},
    {"type": "webhook", "name": "reliability", "url": "http://127.0.0.1:1/rel"},
]


def config(**kw: Any) -> AlertConfig:
    data: dict[str, Any] = {"open_after": 1, "receivers": RECEIVERS}
    data.update(kw)
    return AlertConfig.model_validate(data)


def alert(machine: str, kind: str, state: str = "open", seq: int = 1, minutes: int = 0, summary: str = "") -> Alert:
    ts = T0 + timedelta(minutes=minutes)
    return Alert(
        alert_id=f"{machine}.{kind}.x",
        machine_id=machine,
        machine_type="pump",
        site="north",
        line="north-1",
        alert_kind=kind,
        state=state,
        severity="warning" if kind == "sensor_fault" else "info",
        ts=ts,
        opened_at=T0,
        summary=summary or f"{kind} on {machine}",
        seq=seq,
    )


def sensor_fault(machine: str, minutes: int = 0) -> DriftEvent:
    return DriftEvent(
        ts=T0 + timedelta(minutes=minutes),
        machine_type="pump",
        machine_id=machine,
        detector="sensor_fault",
        target="flow",
        event="sensor_fault",
        detail="stuck: flow unchanged for 20 samples",
    )


# --------------------------------------------------------------------------------------------- routing


def test_without_routes_informational_kinds_reach_no_receiver_and_paged_kinds_reach_all() -> None:
    router = Router(config())
    assert router.receivers(alert("PMP-001", "drift")) == ()
    assert router.receivers(alert("PMP-001", "sensor_fault")) == ()
    assert router.receivers(alert("PMP-001", "anomaly")) == ("pager", "reliability")


def test_a_route_hears_informational_kinds_only_when_it_asks() -> None:
    routes = [{"receiver": "pager"}, {"receiver": "reliability", "kinds": ["sensor_fault"]}]
    router = Router(config(routes=routes))
    assert router.receivers(alert("PMP-001", "hard_limit")) == ("pager",)
    assert router.receivers(alert("PMP-001", "sensor_fault")) == ("reliability",), "first route skipped: not asked"
    assert router.receivers(alert("PMP-001", "drift")) == (), "nobody asked for drift"
    everything = Router(config(routes=[{"receiver": "pager", "include_informational": True}]))
    assert everything.receivers(alert("PMP-001", "drift")) == ("pager",)
    only_drift = Router(config(routes=[{"receiver": "pager", "kinds": ["drift"]}]))
    assert only_drift.receivers(alert("PMP-001", "anomaly")) == (), "kinds restricts the paged kinds too"


def test_the_lifecycle_neither_notifies_escalates_nor_reminds_about_a_sensor_fault() -> None:
    routes = [{"receiver": "pager", "escalate_to": "reliability", "escalate_after_s": 60, "repeat_interval_s": 60}]
    life = Lifecycle(config(routes=routes), PLANT)
    (opened,) = life.observe_drift(sensor_fault("PMP-001"), now=0.0)
    assert opened.alert.state == AlertState.OPEN and opened.receivers == ()
    assert is_finding(opened.alert)
    assert life.tick(now=86400.0) == [], "no escalation and no reminder for what nobody was paged about"


def test_unknown_digest_receiver_and_kind_are_refused() -> None:
    with pytest.raises(ValueError, match=r"digest\.receivers: unknown receiver"):
        config(digest={"receivers": ["nobody"]})
    with pytest.raises(ValueError, match="kinds"):
        config(routes=[{"receiver": "pager", "kinds": ["drifts"]}])
    with pytest.raises(ValueError, match="unknown time zone"):
        DigestConfig(timezone="Europe/Nowhere")


# --------------------------------------------------------------------------------------------- periods


def test_shift_periods_follow_the_local_clock_across_the_dst_change() -> None:
    schedule = Schedule(DigestConfig(interval="shift", timezone="Europe/Berlin"))
    night = schedule.period_at(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # 03:30 CEST, the night the clocks jump
    assert night.title() == "shift 2026-03-28 22:00-06:00 Europe/Berlin"
    assert night.end - night.start == timedelta(hours=7)
    day = Schedule(DigestConfig(interval="day", shift_starts=["22:00", "06:00"], timezone="Europe/Berlin"))
    p = day.period_at(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert (p.start, p.end) == (datetime(2026, 3, 2, 5, 0, tzinfo=UTC), datetime(2026, 3, 3, 5, 0, tzinfo=UTC))


# --------------------------------------------------------------------------------------------- the digest


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    s = AlertStore(tmp_path / "outbox.sqlite3")
    s.open()
    return s


def shift_digester(**kw: Any) -> Digester:
    c = config(digest={"interval": "shift", "timezone": "Europe/Berlin", "receivers": ["reliability"], **kw})
    digester = Digester.for_alerts(c.digest, [r.name for r in c.receivers])
    assert digester is not None
    return digester


def pending(store: AlertStore, receiver: str = "reliability") -> list[DigestNotification]:
    out = []
    for entry in store.pending(receiver):
        assert isinstance(entry.notification, DigestNotification)
        out.append(entry.notification)
    return out


def test_the_digest_groups_a_shifts_findings_by_machine_and_is_sent_once(store: AlertStore) -> None:
    digester = shift_digester()
    start = T0.timestamp()  # in the 06:00-14:00 (Berlin) shift
    assert digester.run(store, start, lambda: "http://vigil") == 0, "a new store starts with the running shift"
    store.commit({}, None, [], start + 60, [alert("PMP-001", "sensor_fault"), alert("PMP-002", "drift")])
    store.commit({}, None, [], start + 120, [alert("PMP-001", "sensor_fault", "resolved", seq=2, minutes=50)])
    store.commit({}, None, [], start + 180, [alert("PMP-001", "drift", minutes=90)])
    assert digester.run(store, start + 3600, lambda: "http://vigil") == 0, "the shift has not ended"
    shift_end = datetime(2026, 3, 2, 13, 0, tzinfo=UTC).timestamp()
    assert digester.run(store, shift_end + 1, lambda: "http://vigil") == 1
    (digest,) = pending(store)
    assert pending(store, "pager") == [], "only the digest's receivers"
    assert digest.title() == (
        "Vigil digest, shift 2026-03-02 06:00-14:00 Europe/Berlin: 3 informational finding(s) on 2 machine(s)"
    )
    body = digest.as_json()
    assert body["type"] == "vigil.digest" and body["data"]["findings"] == 4
    machines = {m["machine_id"]: [(e["kind"], e["state"]) for e in m["episodes"]] for m in body["data"]["machines"]}
    assert machines == {"PMP-001": [("sensor_fault", "resolved"), ("drift", "open")], "PMP-002": [("drift", "open")]}
    text = digest.text()
    assert text.index("PMP-001") < text.index("sensor_fault on PMP-001") < text.index("PMP-002 (pump")
    assert "resolved 2026-03-02 07:20 UTC" in text and "still open" in text
    assert digester.run(store, shift_end + 2, lambda: "http://vigil") == 0, "sent once"


def test_a_restart_does_not_send_a_period_twice_and_the_next_period_carries_the_new_findings(
    store: AlertStore, tmp_path: Path
) -> None:
    shift_end = datetime(2026, 3, 2, 13, 0, tzinfo=UTC).timestamp()
    shift_digester().run(store, T0.timestamp(), lambda: "http://vigil")
    store.commit({}, None, [], T0.timestamp() + 60, [alert("PMP-001", "sensor_fault")])
    assert shift_digester().run(store, shift_end + 5, lambda: "http://vigil") == 1
    store.close()

    reopened = AlertStore(tmp_path / "outbox.sqlite3")
    reopened.open()
    again = shift_digester()  # a new process: nothing in memory
    assert again.run(reopened, shift_end + 30, lambda: "http://vigil") == 0
    assert len(pending(reopened)) == 1
    # A replay after a crash records the same transition again: ignored. A new one goes into the next shift.
    reopened.commit({}, None, [], shift_end + 40, [alert("PMP-001", "sensor_fault")])
    reopened.commit({}, None, [], shift_end + 50, [alert("PMP-002", "drift", minutes=400)])
    assert again.run(reopened, shift_end + 8 * 3600 + 1, lambda: "http://vigil") == 1
    first, second = pending(reopened)
    assert [a.machine_id for a in first.alerts] == ["PMP-001"], "the first shift's digest, sent once"
    assert [a.machine_id for a in second.alerts] == ["PMP-002"]
    assert second.period is not None and second.period.title() == "shift 2026-03-02 14:00-22:00 Europe/Berlin"


def test_an_empty_period_sends_nothing_unless_asked(store: AlertStore) -> None:
    shift_end = datetime(2026, 3, 2, 13, 0, tzinfo=UTC).timestamp()
    shift_digester().run(store, T0.timestamp(), lambda: "http://vigil")
    assert shift_digester().run(store, shift_end + 1, lambda: "http://vigil") == 0
    assert store.digest_sent_until() == shift_end, "the period counts as done"
    chatty = shift_digester(send_empty=True)
    assert chatty.run(store, shift_end + 8 * 3600 + 1, lambda: "http://vigil") == 1
    (empty,) = pending(store)
    assert "Nothing to report" in empty.text() and empty.as_json()["data"]["machines"] == []


def test_a_digest_that_fails_to_build_leaves_the_findings_for_the_next_attempt(store: AlertStore) -> None:
    shift_end = datetime(2026, 3, 2, 13, 0, tzinfo=UTC).timestamp()
    digester = shift_digester()
    digester.run(store, T0.timestamp(), lambda: "http://vigil")
    store.commit({}, None, [], T0.timestamp() + 60, [alert("PMP-001", "sensor_fault")])

    def broken() -> str:
        raise RuntimeError("no URL")

    with pytest.raises(RuntimeError):
        digester.run(store, shift_end + 1, broken)
    assert store.digest_sent_until() != shift_end and len(store.unsent_findings()) == 1
    assert digester.run(store, shift_end + 2, lambda: "http://vigil") == 1, "retried at the next call"
    assert store.unsent_findings() == []


def test_digest_disabled_or_without_receivers() -> None:
    assert Digester.for_alerts(DigestConfig(enabled=False), ["pager"]) is None
    assert Digester.for_alerts(DigestConfig(), []) is None
    every = Digester.for_alerts(DigestConfig(), ["pager", "reliability"])
    assert every is not None and every.receivers == ("pager", "reliability"), "empty receivers: every receiver"


def test_slack_teams_and_email_render_the_digest() -> None:
    digester = shift_digester()
    period = digester.schedule.last_ended(T0 + timedelta(hours=8))
    from alerts.digest import build

    n = build("reliability", period, [alert("PMP-001", "sensor_fault"), alert("type:pump", "drift")], "http://v")
    assert "PMP-001" in n.slack()["blocks"][1]["text"]["text"]
    assert [s["activityTitle"] for s in n.teams()["sections"]] == [
        "PMP-001 (pump, site north, line north-1)",
        "type:pump (every pump of the type)",
    ]
    mail = n.email("vigil@plant", ["rel@plant"])
    assert mail["Subject"].startswith("Vigil digest, shift") and "sensor_fault on PMP-001" in mail.get_content()
