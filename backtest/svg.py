"""Inline-SVG building blocks for the backtest report: scales, ticks, broken line paths and one line panel.

No plotting library and no script: the report is one HTML file that opens anywhere and prints. Every text and
attribute value goes through :func:`html.escape`, so data (machine ids, maintenance texts) cannot inject markup.

>>> x = Scale(0.0, 10.0, 100.0, 200.0)
>>> x(5.0)
150.0
>>> nice_range(3.2, 96.0, 4)
(0.0, 100.0, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0])

A missing value breaks the line instead of bridging the gap:

>>> line_path([(0, 1.0), (1, None), (2, 3.0), (3, 4.0)], Scale(0, 3, 0, 30), Scale(0, 4, 40, 0))
'M0,30M20,10L30,0'
>>> [label for _, label, _ in time_ticks(0.0, 86400.0, 5)]
['00:00', '06:00', '12:00', '18:00', '00:00']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK = "#1f2933"
MUTED = "#6b7785"
GRID = "#e4e7eb"

_MINUTE = 60
_HOUR = 3600
_DAY = 86400
_TIME_STEPS = (
    5 * _MINUTE,
    10 * _MINUTE,
    15 * _MINUTE,
    30 * _MINUTE,
    _HOUR,
    2 * _HOUR,
    3 * _HOUR,
    6 * _HOUR,
    12 * _HOUR,
    _DAY,
    2 * _DAY,
    7 * _DAY,
    14 * _DAY,
    28 * _DAY,
    56 * _DAY,
    91 * _DAY,
    182 * _DAY,
    364 * _DAY,
)


@dataclass(frozen=True)
class Scale:
    """A linear map from the domain ``[lo, hi]`` to the range ``[a, b]`` (``a > b`` for a y axis)."""

    lo: float
    hi: float
    a: float
    b: float

    def __call__(self, v: float) -> float:
        span = self.hi - self.lo
        if span == 0:
            return (self.a + self.b) / 2
        return self.a + (v - self.lo) / span * (self.b - self.a)


def el(tag: str, attrs: Mapping[str, object], content: str = "") -> str:
    """One SVG element; ``content`` is markup already built (escape text with :func:`text`)."""
    parts = "".join(f' {k.replace("_", "-")}="{escape(_attr(v))}"' for k, v in attrs.items() if v is not None)
    if content:
        return f"<{tag}{parts}>{content}</{tag}>"
    return f"<{tag}{parts}/>"


def text(x: float, y: float, s: str, **attrs: object) -> str:
    """A ``<text>`` element at (x, y) with escaped content; keyword names use ``_`` for ``-``."""
    return el("text", {"x": x, "y": y, **attrs}, escape(s))


def _attr(v: object) -> str:
    if isinstance(v, float):
        return _coord(v)
    return str(v)


def _coord(v: float) -> str:
    r = round(v, 1)
    return str(int(r)) if r == int(r) else str(r)


def nice_step(span: float, n: int) -> float:
    """The 1, 2 or 5 times a power of ten step that cuts ``span`` into the nearest to ``n`` pieces."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    mag = 10 ** math.floor(math.log10(span / max(n, 1)))
    return float(min((m * mag for m in (1, 2, 5, 10)), key=lambda step: abs(span / step - n)))


def nice_range(lo: float, hi: float, n: int) -> tuple[float, float, list[float]]:
    """``[lo, hi]`` widened to whole steps, and the ticks on it."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, n)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    count = round((stop - start) / step)
    ticks = [_clean(start + i * step) for i in range(count + 1)]
    return ticks[0], ticks[-1], ticks


def _clean(v: float) -> float:
    # 0.1 * 3 is 0.30000000000000004: round away the binary noise so tick labels read well.
    return float(f"{v:.12g}")


def tick_label(v: float, step: float) -> str:
    """A tick value with as many decimals as its step needs."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if decimals == 0 and abs(v) >= 10000:
        return f"{v:,.0f}"
    return f"{v:.{decimals}f}"


def time_ticks(t0: float, t1: float, target: int = 8) -> list[tuple[float, str, str]]:
    """Ticks on UTC epoch seconds ``[t0, t1]``: (position, label, second line shown where the date changes)."""
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
        return []
    step = next((s for s in _TIME_STEPS if (t1 - t0) / s <= target), _TIME_STEPS[-1])
    first = math.ceil(t0 / step) * step if step <= _DAY else _next_midnight(t0)
    ticks: list[tuple[float, str, str]] = []
    previous = ""
    t = float(first)
    while t <= t1 + 1e-6:
        when = datetime.fromtimestamp(t, tz=UTC)
        if step < _DAY:
            label, context = when.strftime("%H:%M"), when.strftime("%d %b")
        else:
            label, context = when.strftime("%d %b"), when.strftime("%Y")
        ticks.append((t, label, context if context != previous else ""))
        previous = context
        t += step
    return ticks


def _next_midnight(t: float) -> float:
    when = datetime.fromtimestamp(t, tz=UTC)
    midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if midnight < when:
        midnight += timedelta(days=1)
    return midnight.timestamp()


def line_path(points: Sequence[tuple[float, float | None]], x: Scale, y: Scale) -> str:
    """Path data through the points; a ``None`` (or NaN) value starts a new segment."""
    out: list[str] = []
    pen_down = False
    for px, py in points:
        if py is None or not math.isfinite(py):
            pen_down = False
            continue
        out.append(f"{'L' if pen_down else 'M'}{_coord(x(px))},{_coord(y(py))}")
        pen_down = True
    return "".join(out)


@dataclass(frozen=True)
class Series:
    """One line of a panel: (x, y) points, ``None`` where undefined."""

    points: Sequence[tuple[float, float | None]]
    colour: str
    width: float = 1.5


@dataclass(frozen=True)
class RefLine:
    """A horizontal reference (a hard limit, a threshold), dashed, labelled at the right end."""

    y: float
    colour: str
    label: str


@dataclass(frozen=True)
class Panel:
    """One small multiple of a stacked chart: its title, y domain and ticks, lines and references."""

    title: str
    subtitle: str
    y_lo: float
    y_hi: float
    y_ticks: Sequence[float]
    series: Sequence[Series]
    refs: Sequence[RefLine] = ()
    note: str = ""


def line_panel(
    panel: Panel,
    x: Scale,
    top: float,
    height: float,
    gutter: float,
    clip_id: str,
    x_ticks: Sequence[float] = (),
) -> str:
    """``panel`` drawn between ``top`` and ``top + height``, plot area from ``x.a`` to ``x.b``, labels in the gutter,
    faint vertical grid lines at ``x_ticks`` (the shared time axis's ticks)."""
    y = Scale(panel.y_lo, panel.y_hi, top + height, top)
    width = x.b - x.a
    parts = [
        el("rect", {"x": x.a, "y": top, "width": width, "height": height, "fill": "#fbfcfd", "stroke": GRID}),
        el("clipPath", {"id": clip_id}, el("rect", {"x": x.a, "y": top - 1, "width": width, "height": height + 2})),
    ]
    for t in x_ticks:
        parts.append(el("line", {"x1": x(t), "x2": x(t), "y1": top, "y2": top + height, "stroke": GRID}))
    step = panel.y_ticks[1] - panel.y_ticks[0] if len(panel.y_ticks) > 1 else 1.0
    for v in panel.y_ticks:
        yy = y(v)
        parts.append(el("line", {"x1": x.a, "x2": x.b, "y1": yy, "y2": yy, "stroke": GRID}))
        parts.append(text(x.a - 5, yy + 3.5, tick_label(v, step), text_anchor="end", font_size=10, fill=MUTED))
    parts.append(
        text(6, top + 13, _clip_text(panel.title, gutter - 36, 6.6), font_size=11.5, font_weight=600, fill=INK)
    )
    if panel.subtitle:
        parts.append(text(6, top + 26, _clip_text(panel.subtitle, gutter - 36, 5.6), font_size=10, fill=MUTED))
    lines = []
    # Reference labels sit in the gutter, under the title: inside the plot they collide with the data and markers.
    for k, ref in enumerate(panel.refs):
        yy = y(ref.y)
        lines.append(
            el("line", {"x1": x.a, "x2": x.b, "y1": yy, "y2": yy, "stroke": ref.colour, "stroke_dasharray": "5 3"})
        )
        label = _clip_text(ref.label, gutter - 36, 5.4)
        parts.append(text(6, top + 39 + 11 * k, label, font_size=9.5, fill=ref.colour))
    for s in panel.series:
        d = line_path(s.points, x, y)
        if d:
            lines.append(
                el(
                    "path",
                    {"d": d, "fill": "none", "stroke": s.colour, "stroke_width": s.width, "stroke_linejoin": "round"},
                )
            )
    parts.append(el("g", {"clip-path": f"url(#{clip_id})"}, "".join(lines)))
    if panel.note:
        parts.append(text(x.a + 6, top + 12, panel.note, font_size=9.5, fill=MUTED, font_style="italic"))
    return el("g", {}, "".join(parts))


def _clip_text(s: str, room: float, char_px: float) -> str:
    # Characters average about ``char_px`` at the given size; the full name stays in the figure's table and title.
    fits = max(int(room / char_px), 4)
    return s if len(s) <= fits else s[: fits - 1] + "…"


def time_axis(x: Scale, y: float, ticks: Sequence[tuple[float, str, str]]) -> str:
    """The time axis at ``y``: its line, tick marks, times and (where it changes) the date under them."""
    parts = [el("line", {"x1": x.a, "x2": x.b, "y1": y, "y2": y, "stroke": MUTED})]
    for t, label, context in ticks:
        xx = x(t)
        parts.append(el("line", {"x1": xx, "x2": xx, "y1": y, "y2": y + 4, "stroke": MUTED}))
        parts.append(text(xx, y + 15, label, text_anchor="middle", font_size=10, fill=INK))
        if context:
            parts.append(text(xx, y + 27, context, text_anchor="middle", font_size=10, fill=MUTED))
    return el("g", {}, "".join(parts))


def svg(width: float, height: float, content: str, label: str) -> str:
    """The outer ``<svg>``: scales to the page width, keeps its aspect ratio, names itself for screen readers."""
    attrs = {
        "xmlns": "http://www.w3.org/2000/svg",
        "viewBox": f"0 0 {_coord(width)} {_coord(height)}",
        "width": "100%",
        "role": "img",
        "aria-label": label,
        "font-family": FONT,
    }
    return el("svg", attrs, el("title", {}, escape(label)) + content)
