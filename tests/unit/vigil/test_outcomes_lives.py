"""Scoring as the plant sees it: same life, episodes still open at the failure, operating time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigil.outcomes import Episode, Failure, Repair, lives, score

T = datetime(2026, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
KW = {"min_lead_s": 4 * 3600.0, "horizon_s": 48 * 3600.0, "machines": 1, "span_s": 30 * 86400.0}


def test_an_alert_before_the_previous_repair_never_counts_for_the_next_failure() -> None:
    failures = [Failure("A", T + 10 * H), Failure("A", T + 22 * H)]
    repairs = [Repair("A", T + 12 * H)]
    early = Episode("A", T + 2 * H, closed_at=T + 10 * H)  # warned of the first failure
    s = score(failures, [early], repairs=repairs, **KW)
    assert [v.verdict for v in s.verdicts] == ["caught", "missed"]
    assert s.lead_times_h == [8.0]
    # Without the repair the second failure's life starts at the first failure: still not credited.
    assert [v.verdict for v in score(failures, [early], **KW).verdicts] == ["caught", "missed"]


def test_an_episode_still_open_at_the_failure_is_a_catch_however_early_and_not_a_false_alarm() -> None:
    failure = Failure("A", T + 100 * H)
    held = Episode("A", T, closed_at=T + 101 * H)
    closed = Episode("A", T, closed_at=T + 20 * H)
    s = score([failure], [held], **KW)
    assert (s.caught, s.false_alarms, s.lead_times_h) == (1, 0, [100.0])
    s = score([failure], [closed], **KW)
    assert (s.caught, s.false_alarms) == (0, 1)
    # Unknown closing time: only the horizon decides (the old callers' behaviour).
    assert score([failure], [Episode("A", T)], **KW).caught == 0


def test_false_alarms_are_divided_by_operating_time_when_it_is_known() -> None:
    s = score([], [Episode("A", T)], operating_s=15 * 86400.0, **KW)
    assert s.operating and abs(s.false_alarms_per_machine_month - 2.0) < 1e-9
    s = score([], [Episode("A", T)], **KW)
    assert not s.operating and abs(s.false_alarms_per_machine_month - 1.0) < 1e-9


def test_lives_start_at_the_repair_after_a_failure_or_at_the_failure() -> None:
    f1, f2, f3 = Failure("A", T), Failure("A", T + 10 * H), Failure("B", T + 5 * H)
    began = lives([f1, f2, f3], [Repair("A", T + 3 * H)])
    assert began[id(f1)] == float("-inf") and began[id(f3)] == float("-inf")
    assert began[id(f2)] == (T + 3 * H).timestamp()
