"""Online evaluation and the segment audit: how well each machine type, site and line is served.

Two views, both prequential (every number comes from predictions made before the label was known):

* per labelled window: ROC AUC of the risk score, precision and recall at the alert threshold;
* per alert episode, as the plant sees it: failures caught at least ``min_lead_s`` ahead, lead times, and false
  alarms (episodes no failure followed within the horizon) per machine-week.

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> episodes = Episodes(open_after=2, close_after=2)
>>> for i, alert in enumerate([0, 1, 1, 1, 0, 0, 0]):
...     _ = episodes.update("m1", t0 + timedelta(hours=i), bool(alert))
>>> [(e.opened.hour, e.closed.hour if e.closed else None) for e in episodes.of("m1")]
[(2, 5)]
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from vigil import outcomes
from vigil.contracts import Decision, Prediction, SegmentAuditReport

_MAX_LEADS = 1000
_MAX_FAILURES = 8


@dataclass
class Episode:
    machine_id: str
    opened: datetime
    closed: datetime | None = None
    failure: datetime | None = None
    """The failure this episode preceded (within the horizon), once known."""
    expired: bool = False
    """Counted as a false alarm (its horizon passed without a failure)."""


class Episodes:
    """Alert episodes per machine from per-window decisions: open after ``open_after`` consecutive alerts,
    close after ``close_after`` consecutive non-alerts (hysteresis, so one quiet window does not split one)."""

    def __init__(self, open_after: int = 2, close_after: int = 3, max_per_machine: int = 200) -> None:
        self.open_after = open_after
        self.close_after = close_after
        self.max_per_machine = max_per_machine
        self._episodes: dict[str, deque[Episode]] = {}
        self._run: dict[str, int] = {}
        self._quiet: dict[str, int] = {}

    def update(self, machine_id: str, ts: datetime, alert: bool) -> Episode | None:
        """One decision; returns the episode it opened, if any."""
        episodes = self._episodes.setdefault(machine_id, deque(maxlen=self.max_per_machine))
        current = episodes[-1] if episodes and episodes[-1].closed is None else None
        if alert:
            self._quiet[machine_id] = 0
            self._run[machine_id] = self._run.get(machine_id, 0) + 1
            if current is None and self._run[machine_id] >= self.open_after:
                episode = Episode(machine_id, ts)
                episodes.append(episode)
                return episode
            return None
        self._run[machine_id] = 0
        if current is not None:
            self._quiet[machine_id] = self._quiet.get(machine_id, 0) + 1
            if self._quiet[machine_id] >= self.close_after:
                current.closed = ts
        return None

    def reset(self, machine_id: str, ts: datetime) -> None:
        """The machine failed or was repaired: an open episode ends here."""
        episodes = self._episodes.get(machine_id)
        if episodes and episodes[-1].closed is None:
            episodes[-1].closed = ts
        self._run[machine_id] = 0
        self._quiet[machine_id] = 0

    def export_machine(self, machine_id: str) -> tuple[list[Episode], int, int]:
        return list(self._episodes.get(machine_id, ())), self._run.get(machine_id, 0), self._quiet.get(machine_id, 0)

    def import_machine(self, machine_id: str, episodes: list[Episode], run: int, quiet: int) -> None:
        self._episodes[machine_id] = deque(episodes, maxlen=self.max_per_machine)
        self._run[machine_id] = run
        self._quiet[machine_id] = quiet

    def drop_machine(self, machine_id: str) -> None:
        self._episodes.pop(machine_id, None)
        self._run.pop(machine_id, None)
        self._quiet.pop(machine_id, None)

    def of(self, machine_id: str) -> list[Episode]:
        return list(self._episodes.get(machine_id, ()))

    def all(self) -> list[Episode]:
        return [e for q in self._episodes.values() for e in q]


@dataclass
class SegmentStats:
    """Counters of one segment (a machine type, a site or a line)."""

    auc: Any = None
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    failures: int = 0
    caught: int = 0
    false_alarms: int = 0
    episodes: int = 0
    machine_seconds: float = 0.0
    leads: deque[float] = field(default_factory=lambda: deque(maxlen=_MAX_LEADS))

    def summary(self) -> dict[str, float | int | None]:
        weeks = self.machine_seconds / (7 * 86400)
        leads = sorted(self.leads)
        return {
            "roc_auc": float(self.auc.get())
            if self.auc is not None and self.tp + self.fn and self.fp + self.tn
            else None,
            "precision": self.tp / (self.tp + self.fp) if self.tp + self.fp else None,
            "recall_windows": self.tp / (self.tp + self.fn) if self.tp + self.fn else None,
            "failures": self.failures,
            "caught": self.caught,
            "recall": self.caught / self.failures if self.failures else None,
            "lead_median_h": statistics.median(leads) / 3600 if leads else None,
            "lead_p10_h": leads[int(0.1 * (len(leads) - 1))] / 3600 if leads else None,
            "false_alarms": self.false_alarms,
            "false_alarms_per_machine_week": self.false_alarms / weeks if weeks > 0 else None,
            "machine_weeks": weeks,
        }


class SegmentAudit:
    """Prequential quality per segment, updated by the pipeline as predictions and labels happen."""

    def __init__(self, threshold: float, horizon_s: float, min_lead_s: float, open_after: int = 2) -> None:
        self.threshold = threshold
        self.horizon_s = horizon_s
        self.min_lead_s = min_lead_s
        self.open_after = open_after
        self.episodes = Episodes(open_after=open_after)
        self._segments: dict[tuple[str, str], SegmentStats] = {}
        self._last_ts: dict[str, datetime] = {}
        self._where: dict[str, tuple[str, str | None, str | None]] = {}
        self._failures: dict[str, deque[outcomes.Failure]] = {}
        """Recent failures per machine: what decides whether an expiring episode was a false alarm."""

    def _stats(self, kind: str, name: str | None) -> SegmentStats | None:
        if name is None:
            return None
        stats = self._segments.get((kind, name))
        if stats is None:
            from river import metrics

            roc_auc: Any = metrics.ROCAUC
            stats = self._segments[(kind, name)] = SegmentStats(auc=roc_auc(n_thresholds=50))
        return stats

    def _each(self, machine_type: str, site: str | None, line: str | None) -> list[SegmentStats]:
        found = [self._stats("fleet", "all"), self._stats("type", machine_type)]
        found += [self._stats("site", site), self._stats("line", line)]
        return [s for s in found if s is not None]

    def prediction(self, prediction: Prediction) -> None:
        machine = prediction.machine_id
        self._where[machine] = (prediction.machine_type, prediction.site, prediction.line)
        last = self._last_ts.get(machine)
        self._last_ts[machine] = prediction.ts
        if last is not None and prediction.decision != Decision.OFF:
            elapsed = max(0.0, min((prediction.ts - last).total_seconds(), 3600.0))
            for stats in self._each(*self._where[machine]):
                stats.machine_seconds += elapsed
        opened = self.episodes.update(machine, prediction.ts, prediction.decision == Decision.ALERT)
        if opened is not None:
            for stats in self._each(*self._where[machine]):
                stats.episodes += 1
        self._expire(machine, prediction.ts)

    def _score(self, failures: list[outcomes.Failure], episodes: list[Episode]) -> outcomes.Outcome:
        """The kernel's matching of episodes to failures (:func:`vigil.outcomes.score`), so the live audit counts
        caught failures, lead times and false alarms exactly as the offline evaluation, the demo and
        ``vigil query`` do."""
        return outcomes.score(
            failures,
            [outcomes.Episode(e.machine_id, e.opened) for e in episodes],
            min_lead_s=self.min_lead_s,
            horizon_s=self.horizon_s,
            machines=1,
            span_s=0.0,
        )

    def _expire(self, machine: str, now: datetime) -> None:
        """Episodes whose horizon passed become settled: a false alarm if no failure followed (counted once).

        Right-censored: an episode still inside its horizon is not judged yet, as a failure may still follow."""
        horizon = timedelta(seconds=self.horizon_s)
        failures = list(self._failures.get(machine, ()))
        for episode in self.episodes.of(machine):
            if episode.expired or episode.opened + horizon >= now:
                continue
            episode.expired = True
            if self._score(failures, [episode]).false_alarms:
                for stats in self._each(*self._where[machine]):
                    stats.false_alarms += 1

    def label(self, machine_type: str, site: str | None, line: str | None, score: float, positive: bool) -> None:
        predicted = score >= self.threshold
        for stats in self._each(machine_type, site, line):
            stats.auc.update(positive, score)
            if positive and predicted:
                stats.tp += 1
            elif positive:
                stats.fn += 1
            elif predicted:
                stats.fp += 1
            else:
                stats.tn += 1

    def failure(self, machine_id: str, machine_type: str, site: str | None, line: str | None, ts: datetime) -> None:
        failure = outcomes.Failure(machine_id, ts)
        self._failures.setdefault(machine_id, deque(maxlen=_MAX_FAILURES)).append(failure)
        episodes = self.episodes.of(machine_id)
        for episode in episodes:
            if episode.failure is None and 0 <= (ts - episode.opened).total_seconds() <= self.horizon_s:
                episode.failure = ts
        outcome = self._score([failure], episodes)
        self.episodes.reset(machine_id, ts)
        for stats in self._each(machine_type, site, line):
            stats.failures += 1
            # Lead times are those of caught failures only, as in vigil.outcomes (evaluate, demo, vigil query).
            stats.caught += outcome.caught
            stats.leads.extend(h * 3600.0 for h in outcome.lead_times_h)

    # ------------------------------------------------------------------ one machine's share (follows its partition)
    def export_machine(self, machine_id: str) -> dict[str, Any]:
        """The machine's episodes, alert runs, last prediction time, segment and recent failures; the segment
        counters stay with the worker that counted them."""
        episodes, run, quiet = self.episodes.export_machine(machine_id)
        return {
            "episodes": episodes,
            "run": run,
            "quiet": quiet,
            "last_ts": self._last_ts.get(machine_id),
            "where": self._where.get(machine_id),
            "failures": list(self._failures.get(machine_id, ())),
        }

    def import_machine(self, machine_id: str, state: dict[str, Any]) -> None:
        self.episodes.import_machine(machine_id, state["episodes"], state["run"], state["quiet"])
        for name, table in (("last_ts", self._last_ts), ("where", self._where)):
            if state[name] is not None:
                table[machine_id] = state[name]
        self._failures[machine_id] = deque(state["failures"], maxlen=_MAX_FAILURES)

    def drop_machine(self, machine_id: str) -> None:
        self.episodes.drop_machine(machine_id)
        for table in (self._last_ts, self._where, self._failures):
            table.pop(machine_id, None)

    def report(self) -> dict[str, dict[str, float | int | None]]:
        """``{"type=pump": {...}, "site=north": {...}, ...}``."""
        return {f"{kind}={name}": stats.summary() for (kind, name), stats in sorted(self._segments.items())}

    def findings(self, margin: float = 0.15) -> dict[str, list[str]]:
        """Per segment, why it is served clearly worse than the fleet (failure recall or ROC AUC lower by more
        than ``margin``); segments served as well are absent."""
        report = self.report()
        fleet = report.get("fleet=all", {})
        out: dict[str, list[str]] = {}
        for name, summary in report.items():
            if name == "fleet=all":
                continue
            for metric in ("recall", "roc_auc"):
                mine, overall = summary.get(metric), fleet.get(metric)
                if mine is not None and overall is not None and mine < overall - margin:
                    out.setdefault(name, []).append(f"{metric} {mine:.2f} vs fleet {overall:.2f}")
        return out

    def worse_segments(self, margin: float = 0.15) -> list[str]:
        """Segments whose failure recall or ROC AUC is clearly below the fleet's: the audit's finding."""
        return [f"{name}: {why}" for name, whys in self.findings(margin).items() for why in whys]

    def messages(self, worker: str = "0", margin: float = 0.15) -> list[SegmentAuditReport]:
        """The audit as one :class:`~vigil.contracts.SegmentAuditReport` per segment (fleet first)."""
        findings = self.findings(margin)
        out = []
        for (kind, name), stats in sorted(self._segments.items(), key=lambda kv: (kv[0][0] != "fleet", kv[0])):
            summary = stats.summary()
            why = findings.get(f"{kind}={name}", [])
            out.append(
                SegmentAuditReport(
                    dimension=_DIMENSIONS[kind],
                    segment=name,
                    worker=worker,
                    labelled_windows=stats.tp + stats.fp + stats.fn + stats.tn,
                    roc_auc=summary["roc_auc"],
                    precision=summary["precision"],
                    recall_windows=summary["recall_windows"],
                    failures=stats.failures,
                    caught=stats.caught,
                    recall=summary["recall"],
                    lead_time_median_h=summary["lead_median_h"],
                    lead_time_p10_h=summary["lead_p10_h"],
                    episodes=stats.episodes,
                    false_alarms=stats.false_alarms,
                    machine_weeks=stats.machine_seconds / (7 * 86400),
                    false_alarms_per_machine_week=summary["false_alarms_per_machine_week"],
                    worse_than_fleet=bool(why),
                    findings=tuple(why),
                )
            )
        return out


_DIMENSIONS: dict[str, Literal["fleet", "machine_type", "site", "line"]] = {
    "fleet": "fleet",
    "type": "machine_type",
    "site": "site",
    "line": "line",
}

QUALITY_METRICS = (
    "roc_auc",
    "precision",
    "recall_windows",
    "recall",
    "lead_time_median_h",
    "lead_time_p10_h",
    "false_alarms_per_machine_week",
    "failures",
    "caught",
    "false_alarms",
)
"""The numbers of a :class:`~vigil.contracts.SegmentAuditReport` published as ``vigil_model_quality`` gauges."""


def quality_gauges(report: SegmentAuditReport) -> dict[str, float]:
    """``{metric: value}`` of one report for the ``vigil_model_quality`` gauge (unknown values left out)."""
    out: dict[str, float] = {}
    for metric in QUALITY_METRICS:
        value = getattr(report, metric)
        if value is not None:
            out[metric] = float(value)
    return out
