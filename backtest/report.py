"""The backtest's report: one self-contained HTML page a reliability engineer opens in a browser or prints.

It reads the result as plain data (the JSON ``vigil backtest`` writes) and draws every chart as inline SVG:
no script, no stylesheet or font from the network. Every value that comes from the data is escaped, and a value
that is missing, ``None`` or NaN shows as "n/a" instead of failing the page.

>>> page = render_html({"plant": "North <works>", "scores": {}, "failures": []})
>>> "North &lt;works&gt;" in page, "<works>" in page, "<script" in page
(True, False, False)
>>> verdict_sentence({"settings": {"min_lead_h": 4.0}, "scores": {
...     "vigil": {"failures": 20, "caught": 18, "late": 1, "lead_time_median_h": 31.2,
...               "false_alarms_per_operating_machine_month": 0.81},
...     "margin": {"failures": 20, "caught": 17, "false_alarms_per_operating_machine_month": 0.0}}})
'Vigil caught 18 of 20 failures at least 4 h ahead (median lead 31 h; 1 more alerted too late) with 0.8 false alarms per operating machine-month; the margin rule caught 17 with 0.0.'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from backtest import svg
from backtest.svg import Panel, RefLine, Scale, Series, el, text

METHOD_NAMES = {"vigil": "Vigil", "hard_limits": "the hard-limit rule", "margin": "the margin rule"}
"""How the verdict sentence names each method (the result's labels are too long for a sentence)."""

KIND_COLOURS = {
    "failure_risk": "#d9480f",
    "anomaly": "#7048e8",
    "hard_limit": "#c2255c",
    "drift": "#1971c2",
    "sensor_fault": "#5c677d",
    "startup_limit": "#f59f00",
}
_OTHER_KIND_COLOURS = ("#0c8599", "#5c940d", "#a61e4d", "#364fc7", "#862e9c")
EVENT_COLOURS = {"failure": "#c92a2a", "repair": "#2b8a3e", "inspection": "#868e96"}
VERDICT_COLOURS = {"caught": "#2b8a3e", "late": "#e67700", "missed": "#c92a2a"}
SENSOR_COLOUR = "#2f4b7c"
LIMIT_COLOUR = "#c92a2a"
P_COLOUR = KIND_COLOURS["failure_risk"]
RATIO_COLOUR = KIND_COLOURS["anomaly"]

_WIDTH = 1000.0
_GUTTER = 150.0
_RIGHT = 16.0
_PANEL_H = 62.0
_PANEL_GAP = 14.0
_LANE_H = 15.0
_RATIO_CAP = 10.0
"""Anomaly ratios above this are drawn at the top: one spike must not flatten the rest of the line."""

NA = "n/a"


# --------------------------------------------------------------------------------------------- reading the data
def _num(v: Any) -> float | None:
    """A finite number, or ``None`` (missing, NaN, infinite, not a number)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else []


def _when(v: Any) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (a naive one is taken as UTC), or ``None``."""
    if not isinstance(v, str) or not v:
        return None
    try:
        t = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _epoch(v: Any) -> float | None:
    t = _when(v)
    return t.timestamp() if t is not None else None


# ------------------------------------------------------------------------------------------------- formatting
def _e(v: Any) -> str:
    return escape(str(v), quote=True)


def fmt_time(v: Any) -> str:
    """``2026-03-04T06:00:00Z`` -> ``2026-03-04 06:00`` (UTC); anything unreadable -> n/a."""
    t = _when(v)
    return t.strftime("%Y-%m-%d %H:%M") if t is not None else NA


def fmt_value(v: Any) -> str:
    """A number as a person reads it (thousands separated, few decimals); other values as text."""
    if v is None:
        return NA
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        f = _num(v)
        if f is None:
            return NA
        if f == int(f) and abs(f) < 1e15:
            return f"{int(f):,}"
        return f"{f:,.0f}" if abs(f) >= 100 else f"{f:.3g}"
    if isinstance(v, Mapping | list | tuple):
        return json.dumps(v, default=str, sort_keys=True)
    return str(v)


def fmt_hours(v: Any) -> str:
    f = _num(v)
    if f is None:
        return NA
    return f"{f:.0f} h" if abs(f) >= 10 or f == int(f) else f"{f:.1f} h"


def fmt_rate(v: Any) -> str:
    """False alarms per machine-month: one decimal, two where one would round a small rate to 0.0."""
    f = _num(v)
    if f is None:
        return NA
    return f"{f:.2f}" if 0 < abs(f) < 0.095 else f"{f:.1f}"


def fmt_p(v: Any) -> str:
    f = _num(v)
    return NA if f is None else f"{f:.2f}"


def fmt_share(v: Any) -> str:
    f = _num(v)
    return NA if f is None else f"{100 * f:.0f} %"


def _kind_colours(result: Mapping[str, Any]) -> dict[str, str]:
    """Known kinds keep their colours; others get the spare ones in order of first appearance."""
    colours = dict(KIND_COLOURS)
    kinds = [str(e.get("kind")) for f in _list(result.get("failures")) for e in _episodes(f)]
    kinds += [str(_map(a).get("kind")) for a in _list(result.get("false_alarms"))]
    for kind in kinds:
        if kind not in colours:
            colours[kind] = _OTHER_KIND_COLOURS[(len(colours) - len(KIND_COLOURS)) % len(_OTHER_KIND_COLOURS)]
    return colours


def _episodes(failure: Any) -> list[Mapping[str, Any]]:
    return [_map(e) for e in _list(_map(_map(failure).get("timeline")).get("episodes"))]


def _method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method.replace("_", " "))


# --------------------------------------------------------------------------------------------------- the page
def render_html(result: Mapping[str, Any]) -> str:
    """The whole report as one HTML document."""
    result = _map(result)
    colours = _kind_colours(result)
    plant = str(result.get("plant") or "plant")
    body = [
        _header(result),
        f'<p class="verdict">{_e(verdict_sentence(result))}</p>',
        _scores(result),
        _input_quality(result),
        _failures(result, colours),
        _false_alarms(result, colours),
        _calibration(result),
        _segments(result),
        _run_counts(result),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Backtest: {_e(plant)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(b for b in body if b)
        + "\n</main>\n</body>\n</html>\n"
    )


def write_report(result: Mapping[str, Any], path: Path) -> None:
    """Write :func:`render_html` of ``result`` to ``path`` (UTF-8), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result), encoding="utf-8")


def verdict_sentence(result: Mapping[str, Any]) -> str:
    """The result in one sentence: Vigil's catches, lead and false-alarm rate, then each rule's."""
    scores = {str(k): _map(v) for k, v in _map(result.get("scores")).items()}
    if not scores:
        return "The result holds no scores."
    first = "vigil" if "vigil" in scores else next(iter(scores))
    s = scores[first]
    name = _method_name(first)
    name = name[0].upper() + name[1:]
    min_lead = fmt_hours(_map(result.get("settings")).get("min_lead_h"))
    failures = _num(s.get("failures")) or 0
    rest = [(m, v) for m, v in scores.items() if m != first]
    if failures == 0:
        sentence = (
            f"The history holds no failure, so nothing could be caught; {name} raised "
            f"{fmt_value(s.get('false_alarms'))} false alarms ({fmt_rate(s.get('false_alarms_per_operating_machine_month'))}"
            " per operating machine-month)"
        )
        others = [
            f"{_method_name(m)} {fmt_value(v.get('false_alarms'))} "
            f"({fmt_rate(v.get('false_alarms_per_operating_machine_month'))})"
            for m, v in rest
        ]
    else:
        details = []
        if _num(s.get("caught")):
            details.append(f"median lead {fmt_hours(s.get('lead_time_median_h'))}")
        late = _num(s.get("late")) or 0
        if late:
            details.append(f"{late:.0f} more alerted too late")
        sentence = (
            f"{name} caught {fmt_value(s.get('caught'))} of {fmt_value(failures)} failures at least {min_lead} ahead"
            + (f" ({'; '.join(details)})" if details else "")
            + f" with {fmt_rate(s.get('false_alarms_per_operating_machine_month'))} false alarms per operating"
            " machine-month"
        )
        others = [
            f"{_method_name(m)} caught {fmt_value(v.get('caught'))} "
            f"with {fmt_rate(v.get('false_alarms_per_operating_machine_month'))}"
            for m, v in rest
        ]
    return sentence + ("; " + ", ".join(others) if others else "") + "."


def _header(result: Mapping[str, Any]) -> str:
    span = _map(result.get("span"))
    settings = _map(result.get("settings"))
    facts = [
        (
            "Span",
            f"{fmt_time(span.get('start'))} to {fmt_time(span.get('end'))} UTC ({fmt_value(span.get('days'))} days)",
        ),
        ("Machines", fmt_value(result.get("machines"))),
        ("Operating machine-months", fmt_value(result.get("operating_machine_months"))),
        ("Readings", fmt_value(result.get("readings"))),
        ("Windows", fmt_value(result.get("windows"))),
        (
            "Scoring",
            f"caught = alerted {fmt_hours(settings.get('min_lead_h'))} to {fmt_hours(settings.get('horizon_h'))} "
            f"before a failure; windows of {fmt_value(settings.get('window_s'))} s; margin rule "
            f"{fmt_value(settings.get('margin_pct'))} %; first {fmt_value(settings.get('burn_in_days'))} days "
            "not scored (burn-in)",
        ),
    ]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    command = result.get("command")
    return (
        f"<header><h1>Backtest: {_e(result.get('plant') or 'plant')}</h1>"
        f'<p class="muted">Generated {_e(fmt_time(result.get("generated_at")))} UTC. All times are UTC.</p>'
        f'<dl class="facts">{rows}</dl>'
        + (f'<pre class="command"><code>{_e(command)}</code></pre>' if command else "")
        + "</header>"
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool] = (), cls: str = "") -> str:
    """A table from already escaped cells; ``numeric`` columns are right-aligned."""
    align = [' class="num"' if i < len(numeric) and numeric[i] else "" for i in range(len(head))]
    thead = "".join(f"<th{align[i]}>{h}</th>" for i, h in enumerate(head))
    tbody = "".join("<tr>" + "".join(f"<td{align[i]}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{thead}</tr></thead><tbody>{tbody}</tbody></table>'


def _scores(result: Mapping[str, Any]) -> str:
    scores = _map(result.get("scores"))
    if not scores:
        return ""
    head = [
        "Method",
        "Failures",
        "Caught",
        "Late",
        "Missed",
        "Recall",
        "Median lead",
        "Lead p10",
        "Paged episodes",
        "False alarms",
        "per op. machine-month",
        "Informational",
        "Episodes by kind",
    ]
    rows = []
    for method, s in scores.items():
        s = _map(s)
        kinds = "<br>".join(
            f'<span class="nowrap">{_e(k)} {_e(fmt_value(n))}</span>'
            for k, n in _map(s.get("episodes_by_kind")).items()
        )
        label = s.get("label") or method
        rows.append(
            [f"<strong>{_e(label)}</strong>"]
            + [
                _e(x)
                for x in (
                    fmt_value(s.get("failures")),
                    fmt_value(s.get("caught")),
                    fmt_value(s.get("late")),
                    fmt_value(s.get("missed")),
                    fmt_share(s.get("recall")),
                    fmt_hours(s.get("lead_time_median_h")),
                    fmt_hours(s.get("lead_time_p10_h")),
                    fmt_value(s.get("paged_episodes")),
                    fmt_value(s.get("false_alarms")),
                    fmt_rate(s.get("false_alarms_per_operating_machine_month")),
                    fmt_value(s.get("informational_episodes")),
                )
            ]
            + [kinds or "none"]
        )
    numeric = [False] + [True] * 11 + [False]
    return (
        "<section><h2>Scores</h2>"
        + _table(head, rows, numeric, "scores")
        + '<p class="note">Caught: the first alert of the machine\'s life came at least the minimum lead time before '
        "the failure (and within the horizon, or was still open). Late: an alert came, but too close to the failure. "
        "False alarms: paged episodes not followed by a failure of that machine within the horizon.</p></section>"
    )


def _reasons(refused: Any) -> list[list[str]]:
    items = sorted(_map(refused).items(), key=lambda kv: -(_num(kv[1]) or 0))
    return [[_e(reason), _e(fmt_value(n))] for reason, n in items]


def _input_quality(result: Mapping[str, Any]) -> str:
    inp = _map(result.get("input"))
    if not inp:
        return ""
    maintenance = _map(inp.get("maintenance"))
    refused_n = sum(_num(n) or 0 for n in _map(inp.get("refused")).values())
    parts = [
        "<section><h2>Input quality</h2>",
        '<div class="columns"><div>',
        f"<p>Rows read: <strong>{_e(fmt_value(inp.get('rows')))}</strong>; readings accepted: "
        f"<strong>{_e(fmt_value(inp.get('readings')))}</strong>; refused: <strong>{_e(fmt_value(refused_n))}"
        "</strong>.</p>",
    ]
    reasons = _reasons(inp.get("refused"))
    parts.append(_table(["Refused because", "Count"], reasons, [False, True]) if reasons else "<p>Nothing refused.</p>")
    parts.append("</div><div>")
    m_refused = _reasons(maintenance.get("refused"))
    parts.append(
        f"<p>Maintenance records imported: <strong>{_e(fmt_value(maintenance.get('imported')))}</strong>.</p>"
        + (_table(["Record refused because", "Count"], m_refused, [False, True]) if m_refused else "")
    )
    parts.append("</div></div></section>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- the failures
def _verdict_chips(failure: Mapping[str, Any], scores: Mapping[str, Any]) -> str:
    chips = []
    for method, v in _map(failure.get("verdicts")).items():
        v = _map(v)
        verdict = str(v.get("verdict") or NA)
        lead = _num(v.get("lead_time_h"))
        label = _map(scores.get(method)).get("label")
        name = _method_name(str(method))
        name = name[4:] if name.startswith("the ") else name
        detail = f", {fmt_hours(lead)} ahead" if lead is not None and verdict != "missed" else ""
        colour = VERDICT_COLOURS.get(verdict, "#5c677d")
        chips.append(
            f'<span class="chip" style="border-color:{colour}" title="{_e(label or method)}">'
            f'<span class="dot" style="background:{colour}"></span>{_e(name)}: '
            f"<strong>{_e(verdict)}</strong>{_e(detail)}</span>"
        )
    return f'<div class="chips">{"".join(chips)}</div>'


@dataclass(frozen=True)
class _Context:
    """What every failure's drawing needs from the rest of the result."""

    settings: Mapping[str, Any]
    scores: Mapping[str, Any]
    colours: Mapping[str, str]
    history: tuple[float | None, float | None]
    """Start and end of the history: a timeline is not drawn over time that holds no data."""


def _failures(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    failures = [_map(f) for f in _list(result.get("failures"))]
    scores = _map(result.get("scores"))
    span = _map(result.get("span"))
    ctx = _Context(_map(result.get("settings")), scores, colours, (_epoch(span.get("start")), _epoch(span.get("end"))))
    if not failures:
        return "<section><h2>Failures</h2><p>The history holds no failure.</p></section>"
    methods = list(scores) or list(_map(failures[0].get("verdicts")))
    rows = []
    for i, f in enumerate(failures):
        cells = [
            f'<a href="#failure-{i + 1}">{_e(f.get("machine"))}</a>',
            _e(fmt_time(f.get("ts"))),
            _e(f.get("failure_mode") or "unknown"),
        ]
        for m in methods:
            v = _map(_map(f.get("verdicts")).get(m))
            verdict = str(v.get("verdict") or NA)
            lead = _num(v.get("lead_time_h"))
            colour = VERDICT_COLOURS.get(verdict, "#5c677d")
            shown = verdict + (f" ({fmt_hours(lead)})" if lead is not None and verdict != "missed" else "")
            cells.append(f'<span style="color:{colour}">{_e(shown)}</span>')
        rows.append(cells)
    head = ["Machine", "Failure (UTC)", "Mode"] + [_e(_method_name(m)) for m in methods]
    parts = [
        f"<section><h2>Failures ({len(failures)})</h2>",
        _table(head, rows, cls="failures"),
        _legend(colours, failures),
    ]
    for i, f in enumerate(failures):
        parts.append(_failure(i + 1, f, ctx))
    parts.append("</section>")
    return "".join(parts)


def _legend(colours: Mapping[str, str], failures: Sequence[Mapping[str, Any]]) -> str:
    used = sorted({str(e.get("kind")) for f in failures for e in _episodes(f)})
    items = [
        f'<span><i class="swatch line" style="border-color:{SENSOR_COLOUR}"></i>sensor (window mean)</span>',
        f'<span><i class="swatch dashed" style="border-color:{LIMIT_COLOUR}"></i>hard limit</span>',
        f'<span><i class="swatch line" style="border-color:{P_COLOUR}"></i>p(failure)</span>',
        f'<span><i class="swatch line" style="border-color:{RATIO_COLOUR}"></i>anomaly score / threshold</span>',
    ]
    items += [f'<span><i class="swatch" style="background:{colours[k]}"></i>{_e(k)}</span>' for k in used]
    items.append('<span><i class="swatch hatched"></i>not paged (informational)</span>')
    items.append('<span><i class="swatch window"></i>catch window</span>')
    items += [
        f'<span><i class="swatch vline" style="border-color:{c}"></i>{_e(event)}</span>'
        for event, c in EVENT_COLOURS.items()
    ]
    return f'<div class="legend">{"".join(items)}</div>'


def _failure(index: int, failure: Mapping[str, Any], ctx: _Context) -> str:
    tl = _map(failure.get("timeline"))
    mode = failure.get("failure_mode")
    title = f"{failure.get('machine')}: failure {fmt_time(failure.get('ts'))} UTC" + (f" ({mode})" if mode else "")
    maintenance = [_map(m) for m in _list(tl.get("maintenance"))]
    notes = "".join(
        f'<li><span style="color:{EVENT_COLOURS.get(str(m.get("event")), "#5c677d")}">{_e(m.get("event"))}</span> '
        f"{_e(fmt_time(m.get('ts')))}: {_e(m.get('text') or '')}</li>"
        for m in maintenance
    )
    episodes = _episodes(failure)
    ep_rows = [
        [
            f'<span class="nowrap"><span class="dot" style="background:{ctx.colours.get(str(e.get("kind")), "#5c677d")}">'
            f"</span>{_e(e.get('kind'))}</span>",
            _e(fmt_time(e.get("opened"))),
            _e(fmt_time(e.get("closed")) if e.get("closed") else "still open"),
            _e(e.get("severity") or NA),
            "paged" if e.get("paged") else "informational",
            _e(e.get("summary") or ""),
        ]
        for e in episodes
    ]
    return (
        f'<article class="timeline" id="failure-{index}"><h3>{_e(title)}</h3>'
        + _verdict_chips(failure, ctx.scores)
        + _timeline_svg(index, failure, ctx)
        + (f'<ul class="maintenance">{notes}</ul>' if notes else "")
        + (
            _table(["Episode", "Opened", "Closed", "Severity", "Paged", "Summary"], ep_rows, cls="episodes")
            if ep_rows
            else '<p class="muted">No alert episode on this machine in this period.</p>'
        )
        + "</article>"
    )


def _points(raw: Any, column: int = 1) -> list[tuple[float, float | None]]:
    out: list[tuple[float, float | None]] = []
    for row in _list(raw):
        row = _list(row)
        t = _epoch(row[0]) if row else None
        if t is not None:
            out.append((t, _num(row[column]) if len(row) > column else None))
    return out


def _span(failure: Mapping[str, Any], ctx: _Context) -> tuple[float, float] | None:
    tl = _map(failure.get("timeline"))
    t0, t1 = _epoch(tl.get("start")), _epoch(tl.get("end"))
    if t0 is None or t1 is None or t1 <= t0:
        seen = [t for s in _map(tl.get("sensors")).values() for t, _ in _points(_map(s).get("points"))]
        seen += [t for t, _ in _points(tl.get("risk"))]
        f_ts = _epoch(failure.get("ts"))
        if f_ts is not None:
            horizon = (_num(ctx.settings.get("horizon_h")) or 48.0) * 3600
            seen += [f_ts - 2 * horizon, f_ts + 6 * 3600]
        if not seen:
            return None
        t0, t1 = min(seen), max(seen)
    first, last = ctx.history
    if first is not None and t0 < first < t1:
        t0 = first
    if last is not None and t0 < last < t1:
        t1 = last
    return (t0, t1) if t1 > t0 else (t0 - 3600, t0 + 3600)


def _sensor_panel(name: str, spec: Mapping[str, Any]) -> Panel:
    points = _points(spec.get("points"))
    values = [v for _, v in points if v is not None]
    limits = [(lbl, _num(spec.get(key))) for lbl, key in (("low limit", "limit_low"), ("high limit", "limit_high"))]
    unit = str(spec.get("unit") or "")
    if values:
        lo, hi = min(values), max(values)
    else:
        known = [v for _, v in limits if v is not None]
        lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    # A limit far from the data would squash the line flat: it is drawn when it sits within one data span.
    reach = max(hi - lo, abs(hi) * 0.05, 1e-9)
    refs, off = [], []
    for label, v in limits:
        if v is None:
            continue
        if lo - reach <= v <= hi + reach:
            lo, hi = min(lo, v), max(hi, v)
            refs.append(RefLine(v, LIMIT_COLOUR, f"{label} {fmt_value(v)}"))
        else:
            off.append(f"{label} {fmt_value(v)} {unit} off scale".replace("  ", " "))
    y_lo, y_hi, ticks = svg.nice_range(lo, hi, 2)
    note = "no data" if not values else "; ".join(off)
    return Panel(name, unit, y_lo, y_hi, ticks, [Series(points, SENSOR_COLOUR)], refs, note)


def _risk_panels(risk: Any, horizon_h: float | None) -> list[Panel]:
    p = _points(risk, 1)
    ratio = _points(risk, 2)
    top = max((v for _, v in ratio if v is not None), default=1.0)
    clipped = top > _RATIO_CAP
    r_lo, r_hi, r_ticks = svg.nice_range(0.0, max(min(top, _RATIO_CAP), 1.2), 2)
    ratio = [(t, min(v, r_hi) if v is not None else None) for t, v in ratio]
    return [
        Panel(
            "p(failure)",
            f"within {fmt_hours(horizon_h)}" if horizon_h is not None else "within the horizon",
            0.0,
            1.0,
            [0.0, 0.5, 1.0],
            [Series(p, P_COLOUR)],
            note="" if any(v is not None for _, v in p) else "no prediction",
        ),
        Panel(
            "anomaly",
            "score / threshold",
            r_lo,
            r_hi,
            r_ticks,
            [Series(ratio, RATIO_COLOUR)],
            [RefLine(1.0, RATIO_COLOUR, "threshold")],
            note=f"clipped at {fmt_value(r_hi)} (peak {fmt_value(top)})" if clipped else "",
        ),
    ]


def _lanes(bars: Sequence[tuple[float, float]]) -> list[int]:
    """A lane per bar so that bars in one lane do not overlap (greedy, in the given order)."""
    ends: list[float] = []
    out = []
    for a, b in bars:
        lane = next((i for i, end in enumerate(ends) if end <= a), len(ends))
        if lane == len(ends):
            ends.append(b)
        else:
            ends[lane] = b
        out.append(lane)
    return out


def _timeline_svg(index: int, failure: Mapping[str, Any], ctx: _Context) -> str:
    """Sensors, risk, episodes and maintenance of one failure as small multiples on one shared time axis."""
    span = _span(failure, ctx)
    machine = str(failure.get("machine"))
    label = f"Timeline of {machine} before its failure at {fmt_time(failure.get('ts'))} UTC"
    if span is None:
        return svg.svg(_WIDTH, 40, text(10, 24, "No time range to draw.", font_size=12, fill=svg.MUTED), label)
    t0, t1 = span
    tl = _map(failure.get("timeline"))
    x = Scale(t0, t1, _GUTTER, _WIDTH - _RIGHT)
    ticks = svg.time_ticks(t0, t1, 9)
    panels = [_sensor_panel(str(n), _map(s)) for n, s in _map(tl.get("sensors")).items()]
    panels += _risk_panels(tl.get("risk"), _num(ctx.settings.get("horizon_h")))
    top = 22.0
    parts: list[str] = [
        el(
            "defs",
            {},
            el(
                "pattern",
                {
                    "id": f"hatch-{index}",
                    "width": 6,
                    "height": 6,
                    "patternUnits": "userSpaceOnUse",
                    "patternTransform": "rotate(45)",
                },
                el("line", {"x1": 0, "y1": 0, "x2": 0, "y2": 6, "stroke": "#ffffff", "stroke_width": 2.5}),
            ),
        )
    ]
    y = top
    for k, panel in enumerate(panels):
        parts.append(svg.line_panel(panel, x, y, _PANEL_H, _GUTTER, f"clip-{index}-{k}", [t for t, _, _ in ticks]))
        y += _PANEL_H + _PANEL_GAP
    band, band_h = _episode_band(index, failure, ctx, x, y, ticks)
    parts.append(band)
    bottom = y + band_h
    parts.append(_markers(failure, x, top, bottom))
    parts.append(svg.time_axis(x, bottom, ticks))
    height = bottom + 34
    return svg.svg(_WIDTH, height, "".join(parts), label)


def _grid(x: Scale, top: float, height: float, ticks: Sequence[tuple[float, str, str]]) -> str:
    return "".join(
        el("line", {"x1": x(t), "x2": x(t), "y1": top, "y2": top + height, "stroke": svg.GRID, "stroke_width": 0.8})
        for t, _, _ in ticks
    )


def _episode_band(
    index: int,
    failure: Mapping[str, Any],
    ctx: _Context,
    x: Scale,
    top: float,
    ticks: Sequence[tuple[float, str, str]],
) -> tuple[str, float]:
    t0, t1 = x.lo, x.hi
    bars = []
    for e in _episodes(failure):
        a = _epoch(e.get("opened"))
        if a is None:
            continue
        b = _epoch(e.get("closed"))
        a, b = max(a, t0), min(b if b is not None else t1, t1)
        if b < t0 or a > t1:
            continue
        bars.append((a, max(b, a), e))
    lanes = _lanes([(a, b) for a, b, _ in bars])
    height = max(max(lanes, default=0) + 1, 1) * _LANE_H + 10
    parts = [
        el("rect", {"x": x.a, "y": top, "width": x.b - x.a, "height": height, "fill": "#fbfcfd", "stroke": svg.GRID}),
        _grid(x, top, height, ticks),
        text(6, top + 13, "alert episodes", font_size=11.5, font_weight=600, fill=svg.INK),
    ]
    f_ts = _epoch(failure.get("ts"))
    horizon, min_lead = _num(ctx.settings.get("horizon_h")), _num(ctx.settings.get("min_lead_h"))
    if f_ts is not None and horizon is not None and min_lead is not None:
        a, b = max(f_ts - horizon * 3600, t0), min(f_ts - min_lead * 3600, t1)
        if b > a:
            parts.append(
                el(
                    "rect",
                    {"x": x(a), "y": top, "width": x(b) - x(a), "height": height, "fill": "#2b8a3e", "opacity": 0.1},
                    el("title", {}, escape("catch window: an alert opened here is in time")),
                )
            )
    if not bars:
        parts.append(text(x.a + 6, top + 13, "no episode", font_size=9.5, fill=svg.MUTED, font_style="italic"))
    for (a, b, e), lane in zip(bars, lanes, strict=True):
        kind = str(e.get("kind"))
        colour = ctx.colours.get(kind, "#5c677d")
        paged = bool(e.get("paged"))
        yy = top + 5 + lane * _LANE_H
        width = max(x(b) - x(a), 2.0)
        tip = (
            f"{kind} ({e.get('severity') or NA}, {'paged' if paged else 'not paged'}): "
            f"{fmt_time(e.get('opened'))} to {fmt_time(e.get('closed')) if e.get('closed') else 'still open'}. "
            f"{e.get('summary') or ''}"
        )
        rect = {"x": x(a), "y": yy, "width": width, "height": _LANE_H - 4, "rx": 2}
        bar = el("rect", {**rect, "fill": colour, "opacity": 1.0 if paged else 0.45})
        if not paged:
            bar += el("rect", {**rect, "fill": f"url(#hatch-{index})"})
        parts.append(el("g", {}, el("title", {}, escape(tip)) + bar))
    return "".join(parts), height


def _markers(failure: Mapping[str, Any], x: Scale, top: float, bottom: float) -> str:
    events = [
        (t, str(m.get("event")), str(m.get("text") or ""))
        for m in (_map(m) for m in _list(_map(failure.get("timeline")).get("maintenance")))
        if (t := _epoch(m.get("ts"))) is not None
    ]
    f_ts = _epoch(failure.get("ts"))
    if f_ts is not None and not any(ev == "failure" and abs(t - f_ts) < 1 for t, ev, _ in events):
        events.append((f_ts, "failure", str(failure.get("failure_mode") or "")))
    parts = []
    # Failures last, so their red line lies on top of a repair logged at the same time.
    for t, event, note in sorted(events, key=lambda ev: (ev[1] == "failure", ev[0])):
        if not x.lo <= t <= x.hi:
            continue
        xx = x(t)
        colour = EVENT_COLOURS.get(event, "#5c677d")
        tip = f"{event} {fmt_time_epoch(t)}" + (f": {note}" if note else "")
        line = el(
            "line",
            {
                "x1": xx,
                "x2": xx,
                "y1": top - 6,
                "y2": bottom,
                "stroke": colour,
                "stroke_width": 2 if event == "failure" else 1.5,
            },
        )
        mark = el("path", {"d": f"M{xx - 5:.1f},{top - 14:.1f}h10l-5,8z", "fill": colour})
        right = xx > x.b - 60  # near the right edge the label goes to the left of its marker
        label = (
            text(
                xx + (-7 if right else 7),
                top - 7,
                event,
                font_size=10,
                fill=colour,
                font_weight=600,
                text_anchor="end" if right else "start",
            )
            if event == "failure"
            else ""
        )
        parts.append(el("g", {}, el("title", {}, escape(tip)) + line + mark + label))
    return "".join(parts)


def fmt_time_epoch(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M")


# ----------------------------------------------------------------------------------- false alarms, calibration
def _false_alarms(result: Mapping[str, Any], colours: Mapping[str, str]) -> str:
    alarms = [_map(a) for a in _list(result.get("false_alarms"))]
    if not alarms:
        return "<section><h2>Vigil's false alarms</h2><p>None.</p></section>"
    rows = []
    for a in alarms:
        opened, closed = _epoch(a.get("opened")), _epoch(a.get("closed"))
        hours = (closed - opened) / 3600 if opened is not None and closed is not None else None
        kind = str(a.get("kind"))
        rows.append(
            [
                _e(a.get("machine")),
                f'<span class="dot" style="background:{colours.get(kind, "#5c677d")}"></span>{_e(kind)}',
                _e(fmt_time(a.get("opened"))),
                _e(fmt_time(a.get("closed")) if a.get("closed") else "still open"),
                _e(fmt_hours(hours)),
                _e(a.get("summary") or ""),
            ]
        )
    return (
        f"<section><h2>Vigil's false alarms ({len(alarms)})</h2>"
        '<p class="note">Paged episodes not followed by a failure of the same machine within the horizon.</p>'
        + _table(["Machine", "Kind", "Opened", "Closed", "Lasted", "Summary"], rows, [False] * 4 + [True, False])
        + "</section>"
    )


def _calibration(result: Mapping[str, Any]) -> str:
    bins = [_map(b) for b in _list(result.get("calibration"))]
    if not bins:
        return ""
    rows = [
        [
            _e(f"{fmt_value(b.get('bin_low'))} to {fmt_value(b.get('bin_high'))}"),
            _e(fmt_value(b.get("n"))),
            _e(fmt_p(b.get("mean_p"))),
            _e(fmt_p(b.get("observed"))),
        ]
        for b in bins
    ]
    return (
        "<section><h2>Calibration</h2>"
        '<p class="note">Predictions grouped by p(failure): the mean predicted probability against the share '
        "actually followed by a failure within the horizon. On the diagonal, p means what it says.</p>"
        '<div class="columns calibration"><div>'
        + reliability_svg(bins)
        + "</div><div>"
        + _table(["p(failure) bin", "Predictions", "Mean p", "Observed"], rows, [False, True, True, True])
        + "</div></div></section>"
    )


def reliability_svg(bins: Sequence[Mapping[str, Any]]) -> str:
    """The reliability diagram: mean predicted p against observed frequency per bin, and the bin counts below."""
    left, size, top = 56.0, 300.0, 34.0
    x = Scale(0.0, 1.0, left, left + size)
    y = Scale(0.0, 1.0, top + size, top)
    count_top, count_h = top + size + 66, 64.0
    content = _reliability_plot(bins, x, y) + _bin_counts(bins, x, count_top, count_h)
    return svg.svg(left + size + 20, count_top + count_h + 22, content, "Reliability diagram of p(failure)")


def _reliability_plot(bins: Sequence[Mapping[str, Any]], x: Scale, y: Scale) -> str:
    left, top, size = x.a, y.b, x.b - x.a
    parts = [el("rect", {"x": left, "y": top, "width": size, "height": size, "fill": "#fbfcfd", "stroke": svg.GRID})]
    for v in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(el("line", {"x1": x(v), "x2": x(v), "y1": top, "y2": top + size, "stroke": svg.GRID}))
        parts.append(el("line", {"x1": left, "x2": left + size, "y1": y(v), "y2": y(v), "stroke": svg.GRID}))
        parts.append(text(x(v), top + size + 14, f"{v:.1f}", text_anchor="middle", font_size=10, fill=svg.MUTED))
        parts.append(text(left - 6, y(v) + 3.5, f"{v:.1f}", text_anchor="end", font_size=10, fill=svg.MUTED))
    middle = top + size / 2
    parts += [
        text(left + size / 2, top + size + 32, "mean predicted p(failure)", text_anchor="middle", font_size=11),
        text(
            14, middle, "observed frequency", text_anchor="middle", font_size=11, transform=f"rotate(-90 14 {middle})"
        ),
        el("line", {"x1": x(0), "y1": y(0), "x2": x(1), "y2": y(1), "stroke": svg.MUTED, "stroke_dasharray": "4 3"}),
        # The legend above the plot: inside it, it would hide the points of a badly calibrated model.
        el("line", {"x1": left, "x2": left + 22, "y1": 12, "y2": 12, "stroke": svg.MUTED, "stroke_dasharray": "4 3"}),
        text(left + 28, 15.5, "perfect calibration", font_size=10, fill=svg.MUTED),
        el(
            "line",
            {"x1": left + 150, "x2": left + 172, "y1": 12, "y2": 12, "stroke": SENSOR_COLOUR, "stroke_width": 1.5},
        ),
        el("circle", {"cx": left + 161, "cy": 12, "r": 3.5, "fill": SENSOR_COLOUR}),
        text(left + 178, 15.5, "one bin of predictions", font_size=10, fill=svg.INK),
    ]
    points = sorted(
        (p, o, b)
        for b in bins
        if (p := _num(b.get("mean_p"))) is not None and (o := _num(b.get("observed"))) is not None
    )
    d = svg.line_path([(p, o) for p, o, _ in points], x, y)
    if d:
        parts.append(el("path", {"d": d, "fill": "none", "stroke": SENSOR_COLOUR, "stroke_width": 1.5}))
    for p, o, b in points:
        tip = (
            f"p(failure) {fmt_value(b.get('bin_low'))} to {fmt_value(b.get('bin_high'))}: "
            f"{fmt_value(b.get('n'))} predictions, mean p {p:.3f}, observed {o:.3f}"
        )
        parts.append(
            el("circle", {"cx": x(p), "cy": y(o), "r": 4, "fill": SENSOR_COLOUR}, el("title", {}, escape(tip)))
        )
    if not points:
        parts.append(
            text(left + 10, top + 20, "no scored prediction", font_size=10, fill=svg.MUTED, font_style="italic")
        )
    return "".join(parts)


def _bin_counts(bins: Sequence[Mapping[str, Any]], x: Scale, top: float, height: float) -> str:
    """Predictions per bin as bars on a log scale: the lowest bin usually holds most predictions and a linear
    scale would hide every other bar."""
    counts = [(_num(b.get("bin_low")), _num(b.get("bin_high")), _num(b.get("n")) or 0.0) for b in bins]
    biggest = max((n for _, _, n in counts), default=0.0)
    scale = math.log10(1 + biggest) if biggest > 0 else 1.0
    base = top + height
    parts = [
        text(x.a, top - 8, "predictions per bin (log scale)", font_size=11, fill=svg.INK),
        el("line", {"x1": x.a, "x2": x.b, "y1": base, "y2": base, "stroke": svg.MUTED}),
    ]
    for lo, hi, n in counts:
        if lo is None or hi is None:
            continue
        h = height * math.log10(1 + max(n, 0.0)) / scale
        xa, xb = x(max(lo, 0.0)) + 1, x(min(hi, 1.0)) - 1
        parts.append(el("rect", {"x": xa, "y": base - h, "width": max(xb - xa, 1.0), "height": h, "fill": "#a5b4c8"}))
        parts.append(text((xa + xb) / 2, base + 13, fmt_count(n), text_anchor="middle", font_size=9, fill=svg.MUTED))
    return "".join(parts)


def fmt_count(n: float) -> str:
    """A count short enough to sit under a narrow bar.

    >>> [fmt_count(n) for n in (9, 640, 2100, 48000, 1_250_000)]
    ['9', '640', '2.1k', '48k', '1.2M']
    """
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= size:
            v = n / size
            return f"{v:.1f}{suffix}" if v < 10 else f"{v:.0f}{suffix}"
    return f"{n:.0f}"


# ----------------------------------------------------------------------------------------- segments, run counts
def _segments(result: Mapping[str, Any]) -> str:
    segments = {str(k): _map(v) for k, v in _map(result.get("segments")).items()}
    if not segments:
        return ""
    columns: list[str] = []
    for stats in segments.values():
        columns += [str(k) for k in stats if str(k) not in columns]
    rows = [[_e(name)] + [_e(fmt_value(stats.get(c))) for c in columns] for name, stats in segments.items()]
    head = ["Segment"] + [_e(c.replace("_", " ")) for c in columns]
    return (
        "<section><h2>Segments</h2>"
        '<p class="note">Vigil\'s own prequential audit, per machine type, site and line.</p>'
        + _table(head, rows, [False] + [True] * len(columns), "segments")
        + "</section>"
    )


def _run_counts(result: Mapping[str, Any]) -> str:
    """Counters the run reports beside the scores (quality flags, who decided, drift), when present."""
    blocks = []
    for key, title in (("flags", "Quality flags"), ("decided_by", "Decided by"), ("drift_events", "Drift events")):
        counts = _map(result.get(key))
        if counts:
            rows = [[_e(k), _e(fmt_value(v))] for k, v in counts.items()]
            blocks.append(f"<div><h3>{title}</h3>{_table(['', 'Count'], rows, [False, True])}</div>")
    if not blocks:
        return ""
    return f'<section><h2>Run counters</h2><div class="columns three">{"".join(blocks)}</div></section>'


_CSS = """
:root { --ink: #1f2933; --muted: #6b7785; --rule: #d9dee3; --soft: #f4f6f8; --accent: #2f4b7c; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 15px; margin: 0 0 8px; }
.muted, .note { color: var(--muted); }
.note { font-size: 12.5px; max-width: 900px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 14px 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; }
.command { background: var(--soft); border: 1px solid var(--rule); border-radius: 4px; padding: 8px 10px;
  white-space: pre-wrap; word-break: break-all; font-size: 12.5px; }
.verdict { font-size: 17px; line-height: 1.5; margin: 22px 0; padding: 12px 16px; background: var(--soft);
  border-left: 4px solid var(--accent); }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
thead th { border-bottom: 1.5px solid var(--ink); font-weight: 600; background: #fff; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.scores { width: 100%; }
table.scores td:first-child { min-width: 200px; }
table.scores th, table.scores td { padding: 4px 7px; }
.nowrap { white-space: nowrap; }
table.scores tbody tr:first-child { background: #eef3fa; }
table.episodes { font-size: 12px; width: 100%; }
table.episodes td:nth-child(-n+5), table.failures td { white-space: nowrap; }
.columns { display: flex; gap: 40px; flex-wrap: wrap; align-items: flex-start; }
.columns > div { min-width: 280px; }
.calibration > div:first-child { width: 400px; }
.timeline { margin: 26px 0 34px; padding-top: 10px; border-top: 1px solid var(--rule); }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin: 4px 0 8px; }
.chip { border: 1px solid; border-radius: 12px; padding: 1px 10px; font-size: 12.5px; }
.dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 12px; color: var(--muted); margin: 10px 0; }
.legend span { display: inline-flex; align-items: center; }
.swatch { display: inline-block; width: 18px; height: 10px; margin-right: 6px; border-radius: 2px; }
.swatch.line { height: 0; border-top: 2px solid; border-radius: 0; }
.swatch.dashed { height: 0; border-top: 2px dashed; border-radius: 0; }
.swatch.vline { width: 0; height: 14px; border-left: 2px solid; border-radius: 0; margin: 0 8px; }
.swatch.hatched { background: repeating-linear-gradient(45deg, #c9a7f5 0 3px, #fff 3px 5px); }
.swatch.window { background: rgba(43, 138, 62, 0.15); }
ul.maintenance { margin: 6px 0; padding-left: 18px; font-size: 12.5px; }
a { color: var(--accent); }
svg { display: block; max-width: 100%; height: auto; }
@media print {
  body { font-size: 11px; }
  main { max-width: none; padding: 0; }
  .timeline, table, svg { break-inside: avoid; }
  h2 { break-after: avoid; }
  .verdict, .command, table.scores tbody tr:first-child { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  a { color: inherit; text-decoration: none; }
}
"""
