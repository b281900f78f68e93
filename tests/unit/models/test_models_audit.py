"""The segment audit: episodes matched to failures as :func:`vigil.outcomes.score` does, false alarms settled only
after their horizon, a machine's share exported and imported, the report as messages with worse segments flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.metrics import SegmentAudit, quality_gauges
from vigil import outcomes
from vigil.contracts import Decision, Prediction, SegmentAuditReport

T0 = datetime(2026, 3, 2, tzinfo=UTC)
H = timedelta(hours=1)


def predict(audit: SegmentAudit, machine: str, hours: range, alert: set[int], machine_type: str = "pump") -> None:
    site, line = ("north", "north-1") if machine_type == "pump" else ("south", "south-1")
    for h in hours:
        decision = Decision.ALERT if h in alert else Decision.OK
        prediction = Prediction(
            machine_id=machine,
            machine_type=machine_type,
            site=site,
            line=line,
            ts=T0 + h * H,
            model="m",
            decision=decision,
        )
        audit.prediction(prediction)


def audit() -> SegmentAudit:
    return SegmentAudit(threshold=0.5, horizon_s=48 * 3600, min_lead_s=4 * 3600)


def test_caught_failures_and_lead_times_match_the_kernel_scorer() -> None:
    a = audit()
    predict(a, "PMP-001", range(30), alert={10, 11, 12})  # an episode opens at 11 h (two alerts in a row)
    a.failure("PMP-001", "pump", "north", "north-1", T0 + 30 * H)
    predict(a, "PMP-002", range(30), alert={27, 28})  # opens at 28 h: 2 h ahead, too late
    a.failure("PMP-002", "pump", "north", "north-1", T0 + 30 * H)
    fleet = a.report()["fleet=all"]
    kernel = outcomes.score(
        [outcomes.Failure("PMP-001", T0 + 30 * H), outcomes.Failure("PMP-002", T0 + 30 * H)],
        [outcomes.Episode("PMP-001", T0 + 11 * H), outcomes.Episode("PMP-002", T0 + 28 * H)],
        min_lead_s=4 * 3600,
        horizon_s=48 * 3600,
        machines=2,
        span_s=30 * 3600,
    )
    assert (fleet["failures"], fleet["caught"], fleet["recall"]) == (kernel.failures, kernel.caught, 0.5)
    assert fleet["lead_median_h"] == pytest.approx(kernel.lead_time_median_h) == pytest.approx(19.0)
    assert fleet["false_alarms"] == 0


def test_a_false_alarm_is_counted_once_its_horizon_passed_without_a_failure() -> None:
    a = audit()
    predict(a, "MTR-001", range(40), alert={5, 6}, machine_type="motor")
    assert a.report()["fleet=all"]["false_alarms"] == 0  # not judged yet: a failure may still follow
    predict(a, "MTR-001", range(40, 60), alert=set(), machine_type="motor")
    report = a.report()
    assert report["fleet=all"]["false_alarms"] == report["type=motor"]["false_alarms"] == 1
    assert report["type=motor"]["false_alarms_per_machine_week"] == pytest.approx(1 / (59 / 168))


def test_a_machine_share_moves_to_another_audit() -> None:
    a, b = audit(), audit()
    predict(a, "PMP-001", range(20), alert={18, 19})  # the episode is open when the machine moves
    b.import_machine("PMP-001", a.export_machine("PMP-001"))
    a.drop_machine("PMP-001")
    assert a.episodes.of("PMP-001") == []
    predict(b, "PMP-001", range(20, 30), alert=set())
    b.failure("PMP-001", "pump", "north", "north-1", T0 + 30 * H)
    assert b.report()["fleet=all"]["caught"] == 1  # b knew the episode a had opened


def test_the_report_as_messages_flags_a_segment_served_worse() -> None:
    a = audit()
    for i in range(3):
        machine = f"PMP-00{i + 1}"
        predict(a, machine, range(30), alert={10, 11})
        a.failure(machine, "pump", "north", "north-1", T0 + 30 * H)
    predict(a, "MTR-001", range(30), alert=set(), machine_type="motor")
    a.failure("MTR-001", "motor", "south", "south-1", T0 + 30 * H)
    messages = {f"{m.dimension}={m.segment}": m for m in a.messages(worker="w")}
    assert next(iter(messages)) == "fleet=all"
    assert messages["fleet=all"].recall == pytest.approx(0.75) and messages["fleet=all"].worker == "w"
    motor = messages["machine_type=motor"]
    assert motor.worse_than_fleet and motor.findings == ("recall 0.00 vs fleet 0.75",)
    assert not messages["machine_type=pump"].worse_than_fleet
    assert isinstance(motor, SegmentAuditReport)
    gauges = quality_gauges(motor)
    assert gauges["recall"] == 0.0 and gauges["failures"] == 1.0 and "roc_auc" not in gauges
