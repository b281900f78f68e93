"""Offline evaluation on the simulated fleet, as the plant sees it: failures caught early, false alarms.

No Kafka: the seeded :class:`~ingest.simulator.fleet.Fleet` produces readings and maintenance events, the
:class:`~streaming.windows.WindowEngine` turns readings into feature vectors, and the same
:class:`~models.pipeline.FleetModel` the service runs predicts and learns online (every prediction is made
before its label is known). Per-window decisions become alert episodes with the alerting stage's policy (open
after ``alerts.open_after`` consecutive alerting windows, close after three quiet ones), scored by
:mod:`vigil.outcomes` for the models and, beside them, for the hard-limit rules alone.

The simulated machines start at random points of their wear, so the first days hold failures no method can
see coming with a normal it has not learnt yet; ``burn_in_days`` are processed (the models learn) but not
scored, and the report says so.

``vigil evaluate --weeks 4 --seed 11`` prints recall, lead times and false alarms for both.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from models.exceptions import EvaluationError
from models.metrics import Episodes
from models.pipeline import FleetModel
from vigil.config import VigilConfig, load_config
from vigil.contracts import Decision, FeatureVector, MaintenanceEvent
from vigil.outcomes import Episode, Failure, Outcome, confirmable, score

log = logging.getLogger(__name__)

START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass
class Evaluation:
    seed: int
    weeks: float
    burn_in_days: float
    machines: int
    model: Outcome
    rules: Outcome
    vectors: int = 0
    seconds: float = 0.0
    decided_by: Counter[str] = field(default_factory=Counter)
    drift: Counter[str] = field(default_factory=Counter)
    pending_max: int = 0
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    worse_segments: list[str] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    """The model's alert episodes (scored period)."""
    failures: list[Failure] = field(default_factory=list)
    model_state: FleetModel | None = None
    """The fleet model after the run (for inspection)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "weeks": self.weeks,
            "burn_in_days": self.burn_in_days,
            "machines": self.machines,
            "vectors": self.vectors,
            "seconds": round(self.seconds, 1),
            "model": self.model.as_dict(),
            "rules": self.rules.as_dict(),
            "decided_by": dict(self.decided_by),
            "drift_events": dict(self.drift),
            "pending_labels_max": self.pending_max,
            "segments": self.segments,
            "worse_segments": self.worse_segments,
        }


class _EpisodeLog:
    """Per-window decisions -> opened episodes (``vigil.outcomes.Episode``)."""

    def __init__(self, open_after: int) -> None:
        self.tracker = Episodes(open_after=open_after, close_after=3)
        self.opened: list[Episode] = []

    def update(self, machine_id: str, ts: datetime, alert: bool) -> None:
        episode = self.tracker.update(machine_id, ts, alert)
        if episode is not None:
            self.opened.append(Episode(machine_id, episode.opened))

    def reset(self, machine_id: str, ts: datetime) -> None:
        self.tracker.reset(machine_id, ts)


Item = tuple[str, FeatureVector | MaintenanceEvent]
"""``("v", vector)`` or ``("m", maintenance event)``, in the order the pipeline would see them."""


def simulate(
    config: VigilConfig, *, seed: int, weeks: float, sample_interval_s: float = 60.0, failure_rate: float = 1.0
) -> Iterator[Item]:
    """The simulated fleet through the window engine: feature vectors and maintenance events, in order."""
    try:
        from features.vector import window_engine
        from ingest.simulator.fleet import Fleet
    except ImportError as exc:  # pragma: no cover - the stages ship together
        raise EvaluationError(f"the simulator or the window engine is not installed: {exc}") from exc
    fleet = Fleet(config, seed=seed, start=START, sample_interval_s=sample_interval_s, failure_rate=failure_rate)
    engine = window_engine(config)
    for readings, events in fleet.run(weeks * 7 * 86400.0):
        for reading in readings:
            for fv in engine.add(reading):
                yield ("v", fv)
        for event in events:
            yield ("m", event)
    for fv in engine.flush():
        yield ("v", fv)


def evaluate(
    config: VigilConfig,
    *,
    seed: int,
    weeks: float,
    sample_interval_s: float = 60.0,
    burn_in_days: float = 2.0,
    failure_rate: float = 1.0,
) -> Evaluation:
    """Simulate ``weeks`` of the configured fleet and score the models and the rules alone."""
    stream = simulate(config, seed=seed, weeks=weeks, sample_interval_s=sample_interval_s, failure_rate=failure_rate)
    return score_stream(config, stream, seed=seed, weeks=weeks, burn_in_days=burn_in_days)


def score_stream(
    config: VigilConfig, stream: Iterable[Item], *, seed: int, weeks: float, burn_in_days: float = 2.0
) -> Evaluation:
    """Run the models over a stream of vectors and maintenance events and score them and the rules."""
    started = time.monotonic()
    model = FleetModel(config.models, config.machines_by_id, config.machine_types)
    model_log = _EpisodeLog(config.alerts.open_after)
    rules_log = _EpisodeLog(config.alerts.open_after)
    failures: list[Failure] = []
    result = Evaluation(seed, weeks, burn_in_days, len(config.machines), Outcome(), Outcome())
    for _, item in stream:
        if isinstance(item, FeatureVector):
            out = model.process(item)
            result.vectors += 1
            for event in out.drift:
                result.drift[event.event] += 1
            p = out.prediction
            if p is not None:
                result.decided_by[f"{p.decision}/{p.decided_by}"] += 1
                model_log.update(item.machine_id, p.ts, p.decision == Decision.ALERT)
                rules_log.update(item.machine_id, p.ts, bool(p.rule_violations))
            result.pending_max = max(result.pending_max, model.pending.count())
        else:
            for drift in model.maintenance(item):
                result.drift[drift.event] += 1
            if item.event == "failure":
                failures.append(Failure(item.machine_id, item.ts, item.failure_mode))
                model_log.reset(item.machine_id, item.ts)
                rules_log.reset(item.machine_id, item.ts)
    duration_s = weeks * 7 * 86400.0
    scored_from = START + timedelta(days=burn_in_days)
    # Right-censoring: whether an episode opened in the run's last horizon is false cannot be known (its failure
    # may come after the end), so such episodes count only when a failure confirms them, and that time is left
    # out of the machine-time the false-alarm rate is divided by (which makes the rate, if anything, higher).
    end = START + timedelta(seconds=duration_s)
    span_s = max(duration_s - burn_in_days * 86400.0 - config.models.horizon_s, 1.0)
    scored = [f for f in failures if f.ts >= scored_from]
    horizon_s = config.models.horizon_s
    for name, log_ in (("model", model_log), ("rules", rules_log)):
        known, _ = confirmable(log_.opened, scored, end=end, horizon_s=horizon_s)
        # An alert raised during the burn-in that preceded a scored failure did warn the plant in time: it counts
        # for recall and lead time. Only the false alarms of the burn-in are not scored (normals being learnt).
        outcome = score(
            scored, known, min_lead_s=config.models.min_lead_s, horizon_s=horizon_s, machines=1, span_s=span_s
        )
        episodes = [e for e in known if e.opened_at >= scored_from]
        counted = score(
            scored,
            episodes,
            min_lead_s=config.models.min_lead_s,
            horizon_s=horizon_s,
            machines=result.machines,
            span_s=span_s,
        )
        outcome.episodes, outcome.false_alarms = counted.episodes, counted.false_alarms
        outcome.machine_weeks = counted.machine_weeks
        setattr(result, name, outcome)
        if name == "model":
            result.episodes = episodes
    result.failures = scored
    result.segments = model.audit.report()
    result.worse_segments = model.audit.worse_segments()
    result.seconds = time.monotonic() - started
    result.model_state = model
    return result


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


def render(result: Evaluation) -> str:
    lines = [
        f"seed {result.seed}: {result.weeks:g} week(s) of {result.machines} simulated machines "
        f"({result.vectors} feature vectors, {result.seconds:.0f} s); first {result.burn_in_days:g} day(s) "
        "learnt but not scored; episodes in the last horizon count only when a failure confirms them",
        f"{'':<8}{'failures':>9}{'caught':>8}{'recall':>8}{'lead med h':>11}{'lead p10 h':>11}"
        f"{'episodes':>9}{'false':>7}{'FA/machine-month':>18}",
    ]
    for name, o in (("model", result.model), ("rules", result.rules)):
        lines.append(
            f"{name:<8}{o.failures:>9}{o.caught:>8}{_fmt(o.recall):>8}{_fmt(o.lead_time_median_h):>11}"
            f"{_fmt(o.lead_time_p10_h):>11}{o.episodes:>9}{o.false_alarms:>7}"
            f"{_fmt(o.false_alarms_per_machine_month):>18}"
        )
    missed = ", ".join(f"{f.machine_id} {f.ts:%m-%d %H:%M} ({f.failure_mode})" for f in result.model.missed_failures)
    lines.append(f"missed by the model: {missed or 'none'}")
    lines.append("segment audit (prequential, whole run): segment  recall  FA/machine-week  ROC AUC")
    for segment, summary in result.segments.items():
        lines.append(
            f"  {segment:<18}{_fmt(_num(summary.get('recall'))):>8}"
            f"{_fmt(_num(summary.get('false_alarms_per_machine_week'))):>17}{_fmt(_num(summary.get('roc_auc'))):>9}"
        )
    if result.worse_segments:
        lines.append(f"served worse than the fleet: {'; '.join(result.worse_segments)}")
    lines.append(f"decisions: {dict(sorted(result.decided_by.items()))}")
    lines.append(f"drift events: {dict(sorted(result.drift.items()))}; pending labels max {result.pending_max}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``vigil evaluate``: score the models against the simulated fleet."""
    parser = argparse.ArgumentParser(prog="vigil evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--config", default=None, help="plant configuration (default: $VIGIL_CONFIG, the example)")
    parser.add_argument("--sample-interval", type=float, default=60.0, help="simulated seconds between samples")
    parser.add_argument("--burn-in-days", type=float, default=2.0)
    parser.add_argument("--failure-rate", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    result = evaluate(
        config,
        seed=args.seed,
        weeks=args.weeks,
        sample_interval_s=args.sample_interval,
        burn_in_days=args.burn_in_days,
        failure_rate=args.failure_rate,
    )
    print(json.dumps(result.as_dict(), indent=2, default=str) if args.json else render(result))  # noqa: T201
    return 0
