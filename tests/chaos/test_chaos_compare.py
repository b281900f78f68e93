"""The chaos suite's comparison and kill plan, without services: what counts as lost, duplicated, different."""

from __future__ import annotations

from bench.chaos import COMPONENTS, Kill, Pass, Report, Row, compare, plan_kills, print_report, render
from vigil.config import Topics


def test_a_key_missing_from_the_chaos_run_is_lost_and_an_extra_copy_duplicated() -> None:
    clean = [(("m1", 0), 1.0), (("m1", 1), 2.0), (("m2", 0), 3.0)]
    chaos = [(("m1", 0), 1.0), (("m1", 0), 1.0), (("m2", 0), 3.0), (("m3", 0), 9.0)]
    row = compare("readings", clean, chaos)
    assert (row.clean, row.chaos, row.lost, row.duplicated, row.different) == (3, 4, 1, 2, 0)
    assert not row.ok


def test_a_key_in_both_runs_with_another_value_is_different_not_lost() -> None:
    clean = [(("m1", 0), {"p": 0.1, "ingest_ts": "a"}), (("m1", 1), {"p": 0.2})]
    chaos = [(("m1", 0), {"p": 0.1, "ingest_ts": "b"}), (("m1", 1), {"p": 0.3})]
    row = compare("predictions", clean, chaos)
    # ingest_ts says when, not what: ignored; p changed on one key.
    assert (row.lost, row.duplicated, row.different) == (0, 0, 1)
    assert "p: 0.2 -> 0.3" in row.examples[0]


def test_identical_runs_compare_clean_and_render_ok() -> None:
    keyed = [(("a", i), i) for i in range(5)]
    row = compare("x", keyed, list(reversed(keyed)))
    assert row.ok
    assert render([row]).splitlines()[-1].endswith("ok")


def test_the_kill_plan_is_seeded_spread_over_the_load_and_kills_each_component_n_times() -> None:
    plan = plan_kills(list(COMPONENTS), 3, load_s=300.0, seed=5)
    assert plan == plan_kills(list(COMPONENTS), 3, load_s=300.0, seed=5)
    assert plan != plan_kills(list(COMPONENTS), 3, load_s=300.0, seed=6)
    assert sorted(k.component for k in plan) == sorted(list(COMPONENTS) * 3)
    moments = [k.at_s for k in plan]
    assert moments == sorted(moments) and moments[0] > 0 and moments[-1] < 300.0


def test_the_report_prints_one_table_per_chaos_pass_and_a_summary_per_component() -> None:
    def run(name: str, component: str | None) -> Pass:
        kills = [Kill(1.0, component, done=True)] if component else []
        return Pass(name, Topics(), "db", {}, kills=kills)

    bad = Row("readings (topic)", 10, 12, 0, 2, 0, ["extra ('m1', 's', 0)"])
    good = Row("readings (topic)", 10, 10, 0, 0, 0)
    report = Report(
        rows=[bad],
        passes=[run("clean", None), run("chaos-collector", "collector"), run("chaos-models", "models")],
        by_pass={"chaos-collector": [bad], "chaos-models": [good]},
    )
    lines: list[str] = []
    print_report(report, log=lines.append)
    text = "\n".join(lines)
    assert not report.ok
    assert "chaos-collector vs clean: kills {'collector': 1}" in text
    assert "0/2/0" in text and "0/0/0" in text
    assert text.rstrip().endswith("verdict: LOSS, DUPLICATES OR DIFFERENCES")
