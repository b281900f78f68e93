"""What a notification says, in every format."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.render import Notification, alert_text
from alerts.store import notification_id
from vigil.contracts import Alert, Contribution

T = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def alert(**kw: object) -> Alert:
    base: dict[str, object] = {
        "alert_id": "PMP-001.failure_risk.20261126T100000Z",
        "machine_id": "PMP-001",
        "machine_type": "pump",
        "site": "north",
        "line": "north-1",
        "alert_kind": "failure_risk",
        "state": "open",
        "severity": "critical",
        "ts": T,
        "opened_at": T,
        "p_failure": 0.86,
        "horizon_s": 172800.0,
        "summary": "Failure risk 86% within 48 h",
        "contributions": (
            Contribution(feature="vibration_rms.max", value=5.1, normal=4.0, contribution=0.3),
            Contribution(feature="bearing_temp.mean", value=97.2, normal=71.0, normal_std=3.1, contribution=1.8),
        ),
        "what_to_check": ("Bearing lubrication", "Alignment"),
    }
    base.update(kw)
    return Alert.model_validate(base)


def test_text_answers_the_planners_questions() -> None:
    text = alert_text(alert(), "http://vigil.plant:8470")
    for needle in (
        "PMP-001",  # what / where
        "site north, line north-1",
        "86% probability",  # how likely
        "within 48 h",  # how soon
        "bearing_temp.mean = 97.2 (normal 71 +/- 3.1)",  # why, values next to normal
        "Bearing lubrication",  # what to check
        "vigil alert ack PMP-001.failure_risk.20261126T100000Z --by NAME",  # how to acknowledge
        "http://vigil.plant:8470/alerts/PMP-001.failure_risk.20261126T100000Z/ack",
    ):
        assert needle in text, needle
    assert text.index("bearing_temp") < text.index("vibration_rms"), "strongest contribution first"


def test_resolved_and_acknowledged_do_not_ask_for_acknowledgement() -> None:
    assert "Ack:" not in alert_text(alert(state="resolved"), "http://x")
    acked = alert_text(alert(state="acknowledged", actor="Ann", note="parts ordered"), "http://x")
    assert "Ack:" not in acked and "By:     Ann" in acked and "parts ordered" in acked


def test_formats() -> None:
    n = Notification("msg_1", "chat", "north-1", (alert(), alert(machine_id="PMP-002", severity="warning")), "http://x")
    body = n.as_json()
    assert body["type"] == "vigil.alert.group" and len(body["data"]["alerts"]) == 2
    assert n.title().startswith("[CRITICAL] 2 alert transitions on north-1")
    slack = n.slack()
    assert slack["text"] == n.title() and slack["blocks"][0]["type"] == "header" and len(slack["blocks"]) == 3
    teams = n.teams()
    assert teams["@type"] == "MessageCard" and teams["themeColor"] == "D32F2F" and len(teams["sections"]) == 2
    facts = {f["name"] for f in teams["sections"][0]["facts"]}
    assert {"Machine", "Probability", "Within", "Why", "Check", "Acknowledge"} <= facts
    mail = n.email("vigil@plant.example", ["a@plant.example", "b@plant.example"])
    assert mail["Message-ID"] == "<msg_1@vigil>" and mail["To"] == "a@plant.example, b@plant.example"
    assert "86% probability" in mail.get_content()


def test_notification_ids_are_deterministic_per_receiver_and_transition() -> None:
    a = alert()
    assert notification_id("r", [a]) == notification_id("r", [a])
    assert notification_id("r", [a]) != notification_id("s", [a])
    assert notification_id("r", [a]) != notification_id("r", [alert(state="resolved")])
