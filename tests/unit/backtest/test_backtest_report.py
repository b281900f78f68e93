"""The backtest's HTML report: well-formed, complete, escaped, and robust to missing values and empty lists."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from backtest.report import render_html, verdict_sentence, write_report

START = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)
METHODS = ("vigil", "hard_limits", "margin")
LABELS = {
    "vigil": "Vigil (every episode a planner is paged for)",
    "hard_limits": "Rule: the plant file's hard limits",
    "margin": "Rule: limits moved in by 5 % of the valid range",
}
INJECTION = "<script>alert('x')</script> seal & <b>bearing</b>"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _score(method: str, failures: int, caught: int, late: int, fa: int, lead: float | None) -> dict[str, Any]:
    return {
        "label": LABELS[method],
        "failures": failures,
        "caught": caught,
        "late": late,
        "missed": failures - caught - late,
        "recall": caught / failures if failures else float("nan"),
        "lead_time_median_h": lead,
        "lead_time_p10_h": None if lead is None else lead / 3,
        "paged_episodes": caught + late + fa,
        "false_alarms": fa,
        "false_alarms_per_operating_machine_month": fa / 9.6,
        "informational_episodes": 3 if method == "vigil" else 0,
        "episodes_by_kind": {"failure_risk": caught + fa, "anomaly": 2}
        if method == "vigil"
        else {"hard_limit": caught},
    }


def _timeline(machine: str, failure: datetime, seed: int) -> dict[str, Any]:
    """Four days before the failure to six hours after, 10-minute window means with a gap of NaN and None."""
    begin, end = failure - 96 * HOUR, failure + 6 * HOUR
    times = [begin + i * timedelta(minutes=10) for i in range(int((end - begin) / timedelta(minutes=10)) + 1)]
    temp, vib, risk = [], [], []
    for i, t in enumerate(times):
        to_failure = (failure - t) / HOUR
        wear = max(0.0, 1 - to_failure / 40) if to_failure > 0 else 0.0
        wave = math.sin(i / 9 + seed)
        gap = 200 <= i < 215
        after = to_failure < 0
        temp.append([iso(t), None if gap or after else round(66 + 2 * wave + 26 * wear**2, 2)])
        vib.append([iso(t), float("nan") if gap or after else round(2.1 + 0.3 * wave + 3.5 * wear**3, 3)])
        ratio = None if i < 30 else round(0.4 + 0.2 * abs(wave) + 3 * wear**2 + (14 if i == 500 else 0), 3)
        risk.append([iso(t), None if i < 30 or after else round(min(0.98, 0.03 + 0.95 * wear**1.5), 4), ratio])
    return {
        "start": iso(begin),
        "end": iso(end),
        "sensors": {
            "bearing_temp": {"unit": "degC", "limit_low": None, "limit_high": 95.0, "points": temp},
            "vibration_rms": {"unit": "mm/s", "limit_low": 0.0, "limit_high": 7.1, "points": vib},
            "suction_pressure": {"unit": "bar", "limit_low": 0.5, "limit_high": float("nan"), "points": []},
        },
        "risk": risk,
        "episodes": [
            {
                "alert_id": f"{machine}.anomaly.1",
                "kind": "anomaly",
                "opened": iso(failure - 70 * HOUR),
                "closed": iso(failure - 66 * HOUR),
                "severity": "info",
                "summary": "Vibration unusual for this pump",
                "paged": False,
            },
            {
                "alert_id": f"{machine}.failure_risk.1",
                "kind": "failure_risk",
                "opened": iso(failure - (20 + seed) * HOUR),
                "closed": None,
                "severity": "critical",
                "summary": "Failure risk 86% within 48 h",
                "paged": True,
            },
            {
                "alert_id": f"{machine}.hard_limit.1",
                "kind": "hard_limit",
                "opened": iso(failure - 3 * HOUR),
                "closed": iso(failure),
                "severity": "critical",
                "summary": "bearing_temp above 95 degC",
                "paged": True,
            },
        ],
        "maintenance": [
            {"ts": iso(failure - 90 * HOUR), "event": "inspection", "text": "Routine round, nothing found"},
            {"ts": iso(failure), "event": "failure", "text": INJECTION},
            {"ts": iso(failure + 4 * HOUR), "event": "repair", "text": "Bearing replaced"},
        ],
    }


def build_result(failures: int = 3) -> dict[str, Any]:
    """A result as ``vigil backtest`` writes it: three methods, ``failures`` failures, NaN and None here and there."""
    cases = [
        ("PMP-P101", START + 5 * 24 * HOUR, "thrust bearing", ("caught", 31.0), ("missed", None), ("caught", 6.5)),
        ("MTR-<M7>", START + 12 * 24 * HOUR + 7 * HOUR, None, ("late", 2.5), ("late", 1.0), ("missed", None)),
        ("CMP-003", START + 20 * 24 * HOUR, "seal leak", ("missed", None), ("missed", None), ("caught", 12.0)),
    ][:failures]
    out_failures = []
    for seed, (machine, ts, mode, *verdicts) in enumerate(cases):
        out_failures.append(
            {
                "machine": machine,
                "ts": iso(ts),
                "failure_mode": mode,
                "verdicts": {
                    m: {"verdict": v, "lead_time_h": lead} for m, (v, lead) in zip(METHODS, verdicts, strict=True)
                },
                "timeline": _timeline(machine, ts, seed),
            }
        )
    n = len(cases)
    return {
        "plant": "North works <pilot>",
        "generated_at": iso(START + 40 * 24 * HOUR),
        "command": "vigil backtest --config plant.toml --readings history.parquet --maintenance cmms.csv",
        "span": {"start": iso(START), "end": iso(START + 30 * 24 * HOUR), "days": 30.0},
        "machines": 12,
        "operating_machine_months": 9.6,
        "readings": 31_104_000,
        "windows": 518_400,
        "settings": {"horizon_h": 48.0, "min_lead_h": 4.0, "window_s": 60.0, "margin_pct": 5.0, "burn_in_days": 2.0},
        "input": {
            "rows": 31_110_412,
            "readings": 31_104_000,
            "refused": {"unknown_machine": 6_000, "not_a_number": 412},
            "maintenance": {"imported": 58, "refused": {"unparseable_time": 2}},
        },
        "scores": {
            "vigil": _score("vigil", n, min(n, 1), 1 if n > 1 else 0, 8, 31.0 if n else None),
            "hard_limits": _score("hard_limits", n, 0, 1 if n > 1 else 0, 0, None),
            "margin": _score("margin", n, min(n, 2), 0, 1, 9.2 if n else None),
        },
        "failures": out_failures,
        "false_alarms": [
            {
                "machine": "FAN-002",
                "kind": "failure_risk",
                "opened": iso(START + 3 * 24 * HOUR),
                "closed": iso(START + 3 * 24 * HOUR + 5 * HOUR),
                "summary": "Failure risk 61% within 48 h",
            },
            {
                "machine": "MTR-<M7>",
                "kind": "anomaly",
                "opened": iso(START + 9 * 24 * HOUR),
                "closed": None,
                "summary": INJECTION,
            },
        ],
        "calibration": [
            {
                "bin_low": k / 10,
                "bin_high": (k + 1) / 10,
                "n": [48_000, 2_100, 640, 300, 120, 0, 44, 30, 12, 9][k],
                "mean_p": [0.02, 0.14, 0.25, 0.34, 0.45, None, 0.66, 0.74, 0.86, 0.95][k],
                "observed": [0.01, 0.09, 0.21, 0.4, 0.38, None, 0.7, float("nan"), 0.83, 1.0][k],
            }
            for k in range(10)
        ],
        "segments": {
            "fleet=all": {"roc_auc": 0.91, "recall": 0.67, "false_alarms": 8, "machine_weeks": 41.6},
            "type=pump": {"roc_auc": None, "recall": float("nan"), "false_alarms": 3, "machine_weeks": 17.1},
        },
    }


class _Checker(HTMLParser):
    """Every tag opened is closed, in order (void elements aside); records the tags and text seen."""

    VOID = {"meta", "link", "br", "hr", "img", "input", "wbr", "col", "source"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check(page: str) -> _Checker:
    c = _Checker()
    c.feed(page)
    c.close()
    assert c.errors == []
    assert c.stack == []
    return c


def test_the_page_is_well_formed_and_holds_every_section() -> None:
    page = render_html(build_result())
    c = check(page)
    words = " ".join(c.text)
    for heading in ("Scores", "Input quality", "Failures (3)", "false alarms (2)", "Calibration", "Segments"):
        assert heading in words
    for label in LABELS.values():
        assert label in words
    assert "unknown_machine" in words and "6,000" in words


def test_each_failure_shows_its_machine_verdicts_and_one_timeline_svg() -> None:
    result = build_result()
    page = render_html(result)
    c = check(page)
    # One SVG per timeline, and the reliability diagram.
    assert c.counts["svg"] == len(result["failures"]) + 1
    for i, failure in enumerate(result["failures"], start=1):
        article = re.search(rf'<article class="timeline" id="failure-{i}">(.*?)</article>', page, re.S)
        assert article is not None
        body = article.group(1)
        assert body.count("<svg") == 1
        machine = failure["machine"].replace("<", "&lt;").replace(">", "&gt;")
        assert machine in body
        for method, v in failure["verdicts"].items():
            assert f"<strong>{v['verdict']}</strong>" in body, (method, v)
    assert "31 h ahead" in page and "2.5 h ahead" in page


def test_texts_from_the_data_are_escaped() -> None:
    page = render_html(build_result())
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<b>bearing</b>" not in page
    assert "MTR-&lt;M7&gt;" in page and "MTR-<M7>" not in page
    assert "North works &lt;pilot&gt;" in page


def test_missing_and_nan_values_show_as_na() -> None:
    result = build_result()
    result["operating_machine_months"] = float("nan")
    result["scores"]["vigil"]["lead_time_p10_h"] = None
    page = render_html(result)
    check(page)
    assert not re.search(r"\b(nan|NaN|inf|Infinity|None)\b", page)
    row = re.search(r"<tr><td><strong>Vigil \(every.*?</tr>", page, re.S)
    assert row is not None and "n/a" in row.group(0)
    assert "<dt>Operating machine-months</dt><dd>n/a</dd>" in page
    # The empty sensor and the NaN limit still draw a panel that says so.
    assert "suction_pressure" in page and "no data" in page


def test_no_failures_and_empty_lists() -> None:
    result = build_result(failures=0)
    result["false_alarms"] = []
    result["calibration"] = []
    result["segments"] = {}
    page = render_html(result)
    c = check(page)
    assert c.counts.get("svg", 0) == 0
    assert "The history holds no failure" in page
    assert verdict_sentence(result).startswith("The history holds no failure")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: r.clear(),
        lambda r: r.update(scores=None, failures=None, span="?", settings=[]),
        lambda r: r["failures"][0].update(timeline={}),
        lambda r: r["failures"][0]["timeline"].update(start="not a time", end=None, risk=[[None], ["x", 1]]),
        lambda r: r["failures"][0]["timeline"]["sensors"]["bearing_temp"].update(points=[[None, None], ["2026"]]),
        lambda r: r["failures"][0]["timeline"]["episodes"].append({"kind": None, "opened": "2026-03-07T00:00:00"}),
        lambda r: r["calibration"].append({"bin_low": None, "n": "many"}),
        lambda r: r["segments"].update({"line=a": {"nested": {"x": 1}}}),
    ],
)
def test_malformed_parts_do_not_crash(mangle: Any) -> None:
    result = build_result()
    mangle(result)
    check(render_html(result))


def test_the_verdict_sentence_compares_vigil_with_the_rules() -> None:
    sentence = verdict_sentence(build_result())
    assert sentence == (
        "Vigil caught 1 of 3 failures at least 4 h ahead (median lead 31 h; 1 more alerted too late) with 0.8 false "
        "alarms per operating machine-month; the hard-limit rule caught 0 with 0.0, the margin rule caught 2 with 0.1."
    )


def test_the_timeline_draws_limits_episodes_and_maintenance() -> None:
    page = render_html(build_result(failures=1))
    svg = re.search(r'<article class="timeline".*?(<svg.*?</svg>)', page, re.S)
    assert svg is not None
    drawing = svg.group(1)
    assert "high limit 95" in drawing  # bearing_temp's limit is within reach of the data: drawn dashed
    assert drawing.count('stroke-dasharray="5 3"') >= 2
    assert 'fill="url(#hatch-1)"' in drawing  # the informational anomaly episode is hatched
    for colour in ("#c92a2a", "#2b8a3e", "#868e96"):  # failure, repair, inspection markers
        assert f'stroke="{colour}"' in drawing
    assert "clipped at 10" in drawing  # the one anomaly spike does not flatten the ratio line


def test_write_report_writes_one_self_contained_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.html"
    write_report(build_result(), path)
    page = path.read_text(encoding="utf-8")
    check(page)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page


def test_a_timeline_is_not_drawn_over_time_before_the_history() -> None:
    result = build_result(failures=1)
    drawing = re.search(r"<svg.*?</svg>", render_html(result), re.S)
    assert drawing is not None and ">03 Mar<" in drawing.group(0)
    result["span"]["start"] = iso(START + 3 * 24 * HOUR)  # the history begins on 5 March
    drawing = re.search(r"<svg.*?</svg>", render_html(result), re.S)
    assert drawing is not None
    assert ">03 Mar<" not in drawing.group(0) and ">04 Mar<" not in drawing.group(0)
    assert ">05 Mar<" in drawing.group(0)
