"""The plant's measures of quality, computed from failures and alert episodes.

- **recall**: share of failures preceded by an alert at least ``min_lead_s`` before them (and no more than
  ``horizon_s`` before, or still open at the failure), opened in the same life (after the machine's previous
  repair: an alert before a repair never counts for the next life's failure);
- **lead time**: from the first alert of the same life that caught a failure to the failure (median, 10th pct);
- **false alarms**: alert episodes not followed by a failure of that machine within ``horizon_s`` (in the same
  life), per operating machine-week and machine-month (running time, when the caller knows it; calendar time
  otherwise).

Used by ``vigil backtest``, the offline evaluation, the demo's summary and ``vigil query``, so every place
reports the same numbers.

>>> from datetime import datetime, timedelta, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> h = timedelta(hours=1)
>>> failures = [Failure("PMP-001", t + 30 * h)]
>>> episodes = [Episode("PMP-001", t + 20 * h), Episode("MTR-001", t + 5 * h)]
>>> s = score(failures, episodes, min_lead_s=4 * 3600, horizon_s=48 * 3600, machines=2, span_s=7 * 86400)
>>> s.caught, s.missed, s.false_alarms, s.lead_times_h
(1, 0, 1, [10.0])

An early warning that was still open at the failure is a catch however early; one raised before the machine's
previous repair warned of nothing in this life:

>>> early = Episode("PMP-001", t - 60 * h, closed_at=t + 31 * h)
>>> before_repair = Episode("PMP-001", t - 2 * h)
>>> s = score(failures, [early], min_lead_s=4 * 3600, horizon_s=48 * 3600, machines=1, span_s=7 * 86400)
>>> s.caught, s.lead_times_h
(1, [90.0])
>>> s = score(failures, [before_repair], min_lead_s=4 * 3600, horizon_s=48 * 3600, machines=1, span_s=7 * 86400,
...           repairs=[Repair("PMP-001", t)])
>>> s.caught, s.false_alarms
(0, 1)
>>> late = score(failures, [Episode("PMP-001", t + 28 * h)], min_lead_s=4 * 3600, horizon_s=48 * 3600,
...              machines=1, span_s=7 * 86400)
>>> [(v.verdict, v.lead_time_h) for v in late.verdicts], late.late
([('late', 2.0)], 1)
"""

from __future__ import annotations

import math
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
class Repair:
    """A repair (or any restart of a machine's life): alerts opened before it never count for a later failure."""

    machine_id: str
    ts: datetime


@dataclass(frozen=True)
class Episode:
    """An alert episode: when it opened (its first alert) for a machine, and when it closed (None: still open)."""

    machine_id: str
    opened_at: datetime
    kind: str = "failure_risk"
    closed_at: datetime | None = None
    """When it closed (resolved, or the failure/repair ended it); ``None`` when the caller does not know, in which
    case only the horizon decides whether it warned of a failure. One still open at the end of the data closes
    at that end."""
    alert_id: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What became of one failure: ``caught``, ``late`` (alerted, but too late) or ``missed``."""

    failure: Failure
    verdict: str
    lead_time_h: float | None
    """From the earliest alert of the same life (within the horizon, or still open at the failure) to the failure;
    None when there was none."""
    alert_id: str | None = None
    """The episode that gave the lead time, when it has an id."""


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
    """Machine time the false alarms are divided by: operating time when it is known, else calendar time."""
    operating: bool = False
    """Whether ``machine_weeks`` is operating time (from the machines' running state)."""
    lead_times_h: list[float] = field(default_factory=list)
    missed_failures: list[Failure] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    """One per failure, in time order."""
    false_episodes: list[Episode] = field(default_factory=list)
    """The episodes counted as false alarms."""

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

    def as_dict(self) -> dict[str, float | int | bool]:
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
            "machine_weeks": self.machine_weeks,
            "operating_time": self.operating,
            "false_alarms_per_machine_week": self.false_alarms_per_machine_week,
            "false_alarms_per_machine_month": self.false_alarms_per_machine_month,
        }


def lives(failures: Iterable[Failure], repairs: Iterable[Repair] = ()) -> dict[int, float]:
    """For each failure (by ``id``), the epoch second its life began: the end of the previous life of its
    machine (the first repair after the previous failure, or that failure itself when no repair is recorded);
    ``-inf`` for a machine's first failure. A repair without a failure before it (a planned replacement) starts
    a new life too."""
    marks: dict[str, list[tuple[float, int, Failure | None]]] = {}
    for f in failures:
        marks.setdefault(f.machine_id, []).append((f.ts.timestamp(), 0, f))
    for r in repairs:
        marks.setdefault(r.machine_id, []).append((r.ts.timestamp(), 1, None))
    out: dict[int, float] = {}
    for events in marks.values():
        began = -math.inf
        for ts, _is_repair, failure in sorted(events, key=lambda e: (e[0], e[1])):
            if failure is not None:
                out[id(failure)] = began
                began = ts  # until a repair says otherwise, the next life starts at this failure
            else:
                began = ts
    return out


def score(
    failures: Iterable[Failure],
    episodes: Iterable[Episode],
    *,
    min_lead_s: float,
    horizon_s: float,
    machines: int,
    span_s: float,
    repairs: Iterable[Repair] = (),
    operating_s: float | None = None,
) -> Outcome:
    """Match episodes to the failures that follow them on the same machine, in the same life.

    An episode counts for a failure when it opened after the machine's previous repair (the same life) and before
    the failure, and either within ``horizon_s`` of it or still open at the failure (an early warning that held
    is a catch, however early). Every other episode is a false alarm. False alarms are divided by
    ``operating_s`` (the machines' summed running time) when given, else by ``machines * span_s``.
    """
    fails = sorted(failures, key=lambda f: f.ts)
    began = lives(fails, repairs)
    machine_s = operating_s if operating_s is not None else machines * span_s
    out = Outcome(machine_weeks=machine_s / (7 * 86400.0), operating=operating_s is not None)
    by_machine: dict[str, list[Episode]] = {}
    for e in episodes:
        by_machine.setdefault(e.machine_id, []).append(e)
    out.failures = len(fails)
    explained: set[int] = set()
    for f in fails:
        at = f.ts.timestamp()
        life = began.get(id(f), -math.inf)
        candidates = [
            e
            for e in by_machine.get(f.machine_id, [])
            if life <= e.opened_at.timestamp() <= at
            and (at - e.opened_at.timestamp() <= horizon_s or (e.closed_at is not None and e.closed_at >= f.ts))
        ]
        for e in candidates:
            explained.add(id(e))
        first = min(candidates, key=lambda e: e.opened_at, default=None)
        lead_h = (at - first.opened_at.timestamp()) / 3600.0 if first is not None else None
        alert_id = first.alert_id if first is not None else None
        if lead_h is not None and lead_h * 3600.0 >= min_lead_s:
            out.caught += 1
            out.lead_times_h.append(lead_h)
            out.verdicts.append(Verdict(f, "caught", lead_h, alert_id))
        else:
            out.missed += 1
            out.missed_failures.append(f)
            if candidates:
                out.late += 1
            out.verdicts.append(Verdict(f, "late" if candidates else "missed", lead_h, alert_id))
    all_episodes = [e for es in by_machine.values() for e in es]
    out.episodes = len(all_episodes)
    out.false_episodes = sorted((e for e in all_episodes if id(e) not in explained), key=lambda e: e.opened_at)
    out.false_alarms = len(out.false_episodes)
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
