"""The plant's measures of quality, computed from failures and alert episodes.

- **recall**: share of failures preceded by an alert at least ``min_lead_s`` before them (and no more than
  ``horizon_s`` before);
- **lead time**: from the first alert of the episode that caught a failure to the failure (median, 10th pct);
- **false alarms**: alert episodes not followed by a failure of that machine within ``horizon_s``, per
  machine-week (and per machine-month).

Used by the offline evaluation, the demo's summary and ``vigil query``, so every place reports the same numbers.

>>> from datetime import datetime, timedelta, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> h = timedelta(hours=1)
>>> failures = [Failure("PMP-001", t + 30 * h)]
>>> episodes = [Episode("PMP-001", t + 20 * h), Episode("MTR-001", t + 5 * h)]
>>> s = score(failures, episodes, min_lead_s=4 * 3600, horizon_s=48 * 3600, machines=2, span_s=7 * 86400)
>>> s.caught, s.missed, s.false_alarms, s.lead_times_h
(1, 0, 1, [10.0])
>>> late = score(failures, [Episode("PMP-001", t + 28 * h)], min_lead_s=4 * 3600, horizon_s=48 * 3600,
...              machines=1, span_s=7 * 86400)
>>> [(v.verdict, v.lead_time_h) for v in late.verdicts], late.late
([('late', 2.0)], 1)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Failure:
    machine_id: str
    ts: datetime
    failure_mode: str | None = None


@dataclass(frozen=True)
class Episode:
    """An alert episode: when it opened (its first alert) for a machine."""

    machine_id: str
    opened_at: datetime
    kind: str = "failure_risk"


@dataclass(frozen=True)
class Verdict:
    """What became of one failure: ``caught``, ``late`` (alerted, but too late) or ``missed``."""

    failure: Failure
    verdict: str
    lead_time_h: float | None
    """From the earliest alert within the horizon before the failure; None when there was none."""


@dataclass
class Outcome:
    failures: int = 0
    caught: int = 0
    missed: int = 0
    late: int = 0
    """Failures alerted, but less than the minimum lead time before."""
    episodes: int = 0
    false_alarms: int = 0
    machine_weeks: float = 0.0
    lead_times_h: list[float] = field(default_factory=list)
    missed_failures: list[Failure] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    """One per failure, in time order."""

    @property
    def recall(self) -> float:
        return self.caught / self.failures if self.failures else float("nan")

    @property
    def false_alarms_per_machine_week(self) -> float:
        return self.false_alarms / self.machine_weeks if self.machine_weeks else float("nan")

    @property
    def false_alarms_per_machine_month(self) -> float:
        return self.false_alarms_per_machine_week * (30.0 / 7.0)

    @property
    def lead_time_median_h(self) -> float:
        return statistics.median(self.lead_times_h) if self.lead_times_h else float("nan")

    @property
    def lead_time_p10_h(self) -> float:
        if not self.lead_times_h:
            return float("nan")
        ordered = sorted(self.lead_times_h)
        return ordered[int(0.1 * (len(ordered) - 1))]

    def as_dict(self) -> dict[str, float | int]:
        return {
            "failures": self.failures,
            "caught": self.caught,
            "missed": self.missed,
            "late": self.late,
            "recall": self.recall,
            "lead_time_median_h": self.lead_time_median_h,
            "lead_time_p10_h": self.lead_time_p10_h,
            "episodes": self.episodes,
            "false_alarms": self.false_alarms,
            "false_alarms_per_machine_week": self.false_alarms_per_machine_week,
            "false_alarms_per_machine_month": self.false_alarms_per_machine_month,
        }


def score(
    failures: Iterable[Failure],
    episodes: Iterable[Episode],
    *,
    min_lead_s: float,
    horizon_s: float,
    machines: int,
    span_s: float,
) -> Outcome:
    """Match episodes to the failures that follow them on the same machine."""
    out = Outcome(machine_weeks=machines * span_s / (7 * 86400.0))
    by_machine: dict[str, list[Episode]] = {}
    for e in episodes:
        by_machine.setdefault(e.machine_id, []).append(e)
    fails = sorted(failures, key=lambda f: f.ts)
    out.failures = len(fails)
    explained: set[int] = set()
    for f in fails:
        candidates = [
            e for e in by_machine.get(f.machine_id, []) if 0 <= (f.ts - e.opened_at).total_seconds() <= horizon_s
        ]
        for e in candidates:
            explained.add(id(e))
        lead_h = max(((f.ts - e.opened_at).total_seconds() / 3600.0 for e in candidates), default=None)
        if lead_h is not None and lead_h * 3600.0 >= min_lead_s:
            out.caught += 1
            out.lead_times_h.append(lead_h)
            out.verdicts.append(Verdict(f, "caught", lead_h))
        else:
            out.missed += 1
            out.missed_failures.append(f)
            if candidates:
                out.late += 1
            out.verdicts.append(Verdict(f, "late" if candidates else "missed", lead_h))
    all_episodes = [e for es in by_machine.values() for e in es]
    out.episodes = len(all_episodes)
    out.false_alarms = sum(1 for e in all_episodes if id(e) not in explained)
    return out


def confirmable(
    episodes: Iterable[Episode], failures: Iterable[Failure], *, end: datetime, horizon_s: float
) -> tuple[list[Episode], int]:
    """Right-censoring at the end of an observed span: an episode opened in its last ``horizon_s`` that no failure
    has confirmed yet may still be followed by one after the end, so it is neither a catch nor a false alarm yet.

    Returns the episodes whose outcome is known and how many were left out; divide the false alarms by machine
    time up to ``end - horizon_s`` (the only time in which a false alarm can be established).

    >>> from datetime import datetime, timedelta, timezone
    >>> end = datetime(2026, 1, 8, tzinfo=timezone.utc)
    >>> h = timedelta(hours=1)
    >>> episodes = [Episode("A", end - 60 * h), Episode("B", end - 10 * h), Episode("C", end - 20 * h)]
    >>> known, left_out = confirmable(episodes, [Failure("C", end - h)], end=end, horizon_s=48 * 3600)
    >>> [e.machine_id for e in known], left_out
    (['A', 'C'], 1)
    """
    cutoff = end.timestamp() - horizon_s
    fails = list(failures)
    given = list(episodes)
    known: list[Episode] = []
    for e in given:
        opened = e.opened_at.timestamp()
        confirmed = any(f.machine_id == e.machine_id and 0 <= f.ts.timestamp() - opened <= horizon_s for f in fails)
        if opened < cutoff or confirmed:
            known.append(e)
    return known, len(given) - len(known)
