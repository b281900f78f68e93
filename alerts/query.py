"""``vigil query``: the reliability engineer's common questions, answered from InfluxDB.

    vigil query open-alerts                 alert episodes whose last transition is not ``resolved``
    vigil query machine PMP-001             one machine's alert transitions and maintenance events
    vigil query failures                    failures caught (with lead time) and missed
    vigil query false-alarms                false alarms per machine type, per machine-week

Each runs the InfluxQL shown in ``docs/influx-schema.md`` over the v1 API (or the v1-compat API of 2.x/3.x),
over ``--days`` back from ``--end``. By default the window is the span of the recorded data: from the first to the
last prediction or maintenance event, whenever that was (a plant replayed from last spring, a simulated plant
running ahead of the clock); the listing questions (open alerts, one machine) run on to now as well, so a
planner's acknowledgement stamped with the wall clock is seen.
Scoring uses :mod:`vigil.outcomes`, the same code as the demo's summary, with ``models.horizon_s`` and
``models.min_lead_s`` from the configuration. Options go before or after the question.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.config import VigilConfig, load_config
from vigil.exceptions import ConfigError, VigilError
from vigil.influx import ALERTS, MAINTENANCE, PREDICTIONS, InfluxSink, from_ns
from vigil.outcomes import Episode as OutcomeEpisode
from vigil.outcomes import Failure, Outcome, Repair, score

ALERT_KINDS = ("failure_risk", "hard_limit", "anomaly")
"""Episode kinds that count as a warning of a machine failure (drift, sensor faults and limits crossed during warm-up
do not)."""


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def where(self) -> str:
        return f"time >= '{self.start.isoformat()}' AND time < '{self.end.isoformat()}'"

    @property
    def span_s(self) -> float:
        return (self.end - self.start).total_seconds()


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def open_alerts_query(w: Window) -> str:
    # The latest transition of each episode is the one with the highest seq (not the latest time: a planner's
    # acknowledgement is stamped with wall-clock time, a resolve with the prediction's event time).
    return (
        'SELECT top("seq", 1) AS seq, "status", "severity", "summary", "opened_at_ns" '
        f'FROM "{ALERTS}" WHERE {w.where} GROUP BY "alert_id", "machine", "kind"'
    )


def open_alerts(sink: InfluxSink, w: Window) -> list[dict[str, Any]]:
    rows = [r for r in sink.query(open_alerts_query(w)) if r.get("status") != "resolved"]
    return sorted(rows, key=lambda r: (r.get("opened_at_ns") or 0, r.get("alert_id") or ""))


def machine_history(sink: InfluxSink, machine: str, w: Window) -> list[dict[str, Any]]:
    m = _quote(machine)
    alerts = sink.query(
        f'SELECT "alert_id", "seq", "status", "severity", "summary", "actor", "note" FROM "{ALERTS}" '
        f'WHERE "machine" = {m} AND {w.where}'
    )
    events = sink.query(
        f'SELECT "event_kind", "failure_mode", "text" FROM "{MAINTENANCE}" WHERE "machine" = {m} AND {w.where}'
    )
    return sorted(alerts + events, key=lambda r: int(r["time"]))


def failures_query(w: Window) -> str:
    # event_kind is always written; failure_mode only when the record had one (a SELECT of it alone skips the rest)
    return f'SELECT "event_kind", "failure_mode" FROM "{MAINTENANCE}" WHERE "event" = \'failure\' AND {w.where} GROUP BY "machine", "type"'


def episodes_query(w: Window) -> str:
    kinds = " OR ".join(f'"kind" = {_quote(k)}' for k in ALERT_KINDS)
    return (
        f'SELECT first("opened_at_ns") AS opened_at_ns FROM "{ALERTS}" WHERE ({kinds}) AND {w.where} '
        'GROUP BY "alert_id", "machine", "type", "kind"'
    )


def repairs_query(w: Window) -> str:
    return f'SELECT "event_kind" FROM "{MAINTENANCE}" WHERE "event" = \'repair\' AND {w.where} GROUP BY "machine"'


def operating_query(w: Window) -> str:
    """Predictions of running machines (decision other than ``off``), per machine type: operating windows."""
    return f'SELECT count("decision") FROM "{PREDICTIONS}" WHERE "decision" <> \'off\' AND {w.where} GROUP BY "type"'


@dataclass
class OutcomeInputs:
    """What :func:`vigil.outcomes.score` needs, read from InfluxDB: the same inputs as ``vigil backtest``."""

    failures: list[tuple[Failure, str]]
    """Failures with their machine type."""
    episodes: list[tuple[OutcomeEpisode, str]]
    """Alert episodes (paged kinds) with their machine type; ``closed_at`` from their latest transition."""
    repairs: list[Repair]
    operating_s: dict[str, float]
    """Operating (running) seconds per machine type: predictions of running machines times the window length."""


def load_outcome_inputs(sink: InfluxSink, w: Window, horizon_s: float, window_s: float) -> OutcomeInputs:
    """Failures, repairs, operating time and alert episodes in the window.

    Episodes are read from ``horizon_s`` before the window, so a failure early in the window still counts as
    caught by an alert opened before it; an episode whose latest transition is not ``resolved`` is open at the
    window's end (an early warning still open at a failure is a catch).
    """
    failures = [
        (Failure(r["machine"], from_ns(int(r["time"])), r.get("failure_mode")), r.get("type") or "?")
        for r in sink.query(failures_query(w))
    ]
    wide = Window(w.start - timedelta(seconds=horizon_s), w.end)
    closed: dict[str, datetime | None] = {
        str(r.get("alert_id")): (from_ns(int(r["time"])) if r.get("status") == "resolved" else w.end)
        for r in sink.query(open_alerts_query(wide))
    }
    episodes = [
        (
            OutcomeEpisode(
                r["machine"],
                from_ns(int(r["opened_at_ns"])),
                r.get("kind") or "?",
                closed.get(str(r.get("alert_id"))),
                r.get("alert_id"),
            ),
            r.get("type") or "?",
        )
        for r in sink.query(episodes_query(wide))
        if r.get("opened_at_ns") is not None
    ]
    repairs = [Repair(r["machine"], from_ns(int(r["time"]))) for r in sink.query(repairs_query(wide))]
    operating = {
        str(r.get("type") or "?"): float(r.get("count") or 0) * window_s for r in sink.query(operating_query(w))
    }
    return OutcomeInputs(failures, episodes, repairs, operating)


def failures_report(config: VigilConfig, sink: InfluxSink, w: Window) -> tuple[Outcome, list[dict[str, Any]]]:
    m = config.models
    inputs = load_outcome_inputs(sink, w, m.horizon_s, config.windows.size_s)
    outcome = score(
        [f for f, _ in inputs.failures],
        [e for e, _ in inputs.episodes],
        min_lead_s=m.min_lead_s,
        horizon_s=m.horizon_s,
        machines=len(config.machines),
        span_s=w.span_s,
        repairs=inputs.repairs,
        operating_s=sum(inputs.operating_s.values()) or None,
    )
    types = {id(f): type_ for f, type_ in inputs.failures}
    rows = [
        {
            "machine": v.failure.machine_id,
            "type": types.get(id(v.failure), "?"),
            "failure_at": v.failure.ts.isoformat(),
            "failure_mode": v.failure.failure_mode,
            "verdict": v.verdict,
            "lead_time_h": None if v.lead_time_h is None else round(v.lead_time_h, 2),
            "alert_id": v.alert_id,
        }
        for v in outcome.verdicts
    ]
    return outcome, rows


def false_alarms_report(config: VigilConfig, sink: InfluxSink, w: Window) -> list[dict[str, Any]]:
    """False alarms per machine type, per operating machine-month (running time from the predictions; calendar
    time when no prediction was recorded)."""
    m = config.models
    inputs = load_outcome_inputs(sink, w, m.horizon_s, config.windows.size_s)
    per_type = {t: sum(1 for x in config.machines if x.type == t) for t in config.machine_types}
    rows = []
    for type_, machines in per_type.items():
        # Only episodes that opened inside the window are judged; earlier ones only explain failures.
        eps = [e for e, t in inputs.episodes if t == type_ and e.opened_at >= w.start]
        fails = [f for f, t in inputs.failures if t == type_]
        # A failure just after the window can still explain an alert inside it; the window end is a cut-off.
        o = score(
            fails,
            eps,
            min_lead_s=m.min_lead_s,
            horizon_s=m.horizon_s,
            machines=machines,
            span_s=w.span_s,
            repairs=inputs.repairs,
            operating_s=inputs.operating_s.get(type_) or None,
        )
        rows.append(
            {
                "type": type_,
                "machines": machines,
                "episodes": o.episodes,
                "false_alarms": o.false_alarms,
                "machine_months": round(o.machine_weeks * 7 / 30, 3),
                "operating_time": o.operating,
                "false_alarms_per_machine_month": None
                if not o.machine_weeks
                else round(o.false_alarms_per_machine_month, 3),
            }
        )
    return rows


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _with_times(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        r = dict(r)
        for k in keys:
            if r.get(k) is not None:
                r[k] = from_ns(int(r[k])).strftime("%Y-%m-%d %H:%M")
        out.append(r)
    return out


def _options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    # The same options before or after the question (``vigil query failures --database demo``); after it they
    # only override what was given.
    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--config", default=d(None), help="plant configuration (default: $VIGIL_CONFIG, example)")
    parser.add_argument("--database", default=d(None), help="InfluxDB database (default: influx.database)")
    parser.add_argument(
        "--days", type=float, default=d(None), help="window length (default: the recorded data's whole span)"
    )
    parser.add_argument("--end", default=d(None), help="window end, ISO 8601 (default: the latest data)")
    parser.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")


SPAN_SOURCES = ((PREDICTIONS, "p_failure"), (MAINTENANCE, "event_kind"))
"""What "the recorded data" is: every prediction and every maintenance event (a failure can follow the last
prediction, a machine can be predicted on before its first maintenance record)."""


def data_span(sink: InfluxSink) -> tuple[datetime, datetime] | None:
    """First and last timestamp of the predictions and maintenance events, over all time (``None``: no data)."""
    times: list[int] = []
    for measurement, field_ in SPAN_SOURCES:
        # No time condition: a selector without GROUP BY time() spans all data, past and future alike.
        for q in (f'SELECT first("{field_}") FROM "{measurement}"', f'SELECT last("{field_}") FROM "{measurement}"'):
            times += [int(r["time"]) for r in sink.query(q) if r.get("time") is not None]
    if not times:
        return None
    return from_ns(min(times)), from_ns(max(times))


def window(
    sink: InfluxSink, days: float | None, end: datetime | None, now: datetime, *, until_now: bool = False
) -> Window:
    """The question's time window: ``--days`` back from ``--end``, each defaulting to the recorded data's span.

    ``until_now`` runs the default end on to ``now`` when that is later (listing questions, where an alert
    transition stamped with the wall clock must be seen; scoring keeps the data's span, so machine-weeks are
    not padded with time nobody watched). With no data at all the window is the last 90 days.
    """
    span = data_span(sink) if days is None or end is None else None
    if end is None:
        if span is None:
            end = now
        else:
            end = span[1] + timedelta(microseconds=1)  # the window's end is exclusive
            if until_now:
                end = max(end, now)
    if days is not None:
        return Window(end - timedelta(days=days), end)
    if span is not None and span[0] < end:
        return Window(span[0], end)
    return Window(end - timedelta(days=90), end)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vigil query", description="questions reliability engineers ask")
    _options(parser, defaults=True)
    sub = parser.add_subparsers(dest="question", required=True)
    for name, help_ in (
        ("open-alerts", "alert episodes whose latest transition is not resolved"),
        ("machine", "one machine's alert transitions and maintenance events"),
        ("failures", "failures caught (with lead time) and missed"),
        ("false-alarms", "false alarms per machine type and machine-week"),
    ):
        question = sub.add_parser(name, help=help_)
        _options(question, defaults=False)
        if name == "machine":
            question.add_argument("machine_id")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 2
    if args.database:
        config = config.model_copy(update={"influx": config.influx.model_copy(update={"database": args.database})})
    end = datetime.fromisoformat(args.end) if args.end else None
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    sink = InfluxSink(config.influx)
    try:
        w = window(sink, args.days, end, datetime.now(UTC), until_now=args.question in ("open-alerts", "machine"))
        text, data = _answer(args, config, sink, w)
    except VigilError as exc:
        print(f"vigil query: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(json.dumps(data, default=str, indent=2) if args.json else text)  # noqa: T201
    return 0


def _answer(args: argparse.Namespace, config: VigilConfig, sink: InfluxSink, w: Window) -> tuple[str, Any]:
    if args.question == "open-alerts":
        rows = open_alerts(sink, w)
        cols = ["alert_id", "machine", "kind", "severity", "status", "opened_at_ns", "summary"]
        return (_table(_with_times(rows, "opened_at_ns"), cols) if rows else "no open alerts"), rows
    if args.question == "machine":
        rows = machine_history(sink, args.machine_id, w)
        cols = [
            "time",
            "_measurement",
            "alert_id",
            "seq",
            "status",
            "event_kind",
            "severity",
            "summary",
            "actor",
            "note",
            "failure_mode",
        ]
        return (_table(_with_times(rows, "time"), cols) if rows else "nothing recorded"), rows
    if args.question == "failures":
        outcome, rows = failures_report(config, sink, w)
        summary = outcome.as_dict()
        text = (
            _table(rows, ["machine", "type", "failure_at", "failure_mode", "verdict", "lead_time_h"])
            if rows
            else "no failures"
        )
        text += (
            f"\n\nfailures {outcome.failures}: caught {outcome.caught}, missed {outcome.missed} (late {outcome.late}); "
            f"recall {_cell(outcome.recall)}; lead time median {_cell(outcome.lead_time_median_h)} h, "
            f"p10 {_cell(outcome.lead_time_p10_h)} h"
        )
        return text, {"summary": summary, "failures": rows}
    rows = false_alarms_report(config, sink, w)
    cols = [
        "type",
        "machines",
        "episodes",
        "false_alarms",
        "machine_months",
        "operating_time",
        "false_alarms_per_machine_month",
    ]
    return _table(rows, cols), rows
