"""The backtest on a fleet from an independent generator: real engine, models and lifecycle, three methods scored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backtest.cli import finite, main
from backtest.cli import maintenance as read_maintenance
from backtest.cli import readings as read_readings
from backtest.run import METHODS, Backtest, Settings, Tracked, healthy, life_lengths, outcome, result, run
from tests.generators import pumps
from vigil.config import VigilConfig, load_config
from vigil.outcomes import Failure, Repair


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plant")
    assert pumps.main(["--out", str(out), "--seed", "7", "--machines", "3", "--days", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def backtest(plant: Path) -> dict[str, object]:
    config = load_config(plant / "plant.toml", environ={})
    events, _ = read_maintenance(config, config.sources.maintenance[0], [plant / "workorders.csv"])
    _, frames = read_readings(config, config.sources.file[0], [plant / "historian.csv"])
    bt = run(config, frames, events, Settings())
    return {"bt": bt, "events": events, "result": finite(result(bt))}


def test_every_failure_in_the_records_is_scored_by_every_method(plant: Path, backtest: dict[str, object]) -> None:
    truth = json.loads((plant / "truth.json").read_text())
    res = backtest["result"]
    assert isinstance(res, dict)
    for method in METHODS:
        s = res["scores"][method]
        assert s["failures"] == len(truth["failures"]) > 0
        assert s["caught"] + s["missed"] == s["failures"]
    assert len(res["failures"]) == len(truth["failures"])
    json.dumps(res, allow_nan=False)  # the report's input is plain JSON


def test_the_margin_rule_warns_no_later_than_the_hard_limits(backtest: dict[str, object]) -> None:
    """Limits moved in toward normal are crossed first: every failure the hard limits catch, the margin rule
    catches, with at least the same lead."""
    bt = backtest["bt"]
    hard = {(v.failure.machine_id, v.failure.ts): v for v in outcome(bt, "hard_limits")[0].verdicts}  # type: ignore[arg-type]
    margin = {(v.failure.machine_id, v.failure.ts): v for v in outcome(bt, "margin")[0].verdicts}  # type: ignore[arg-type]
    for key, v in hard.items():
        if v.lead_time_h is not None:
            assert margin[key].lead_time_h is not None and margin[key].lead_time_h >= v.lead_time_h - 1e-9


def test_labels_arrive_after_the_windows_they_label(backtest: dict[str, object]) -> None:
    """Every window that ends before a failure was predicted before the failure record reached the models: the
    failure's machine has a prediction for the window holding the failure time or later."""
    bt = backtest["bt"]
    for f in bt.failures:  # type: ignore[attr-defined]
        ends = [t for t, *_ in bt.series[f.machine_id]]  # type: ignore[attr-defined]
        assert any(t >= f.ts.timestamp() for t in ends)


def test_operating_time_excludes_stopped_machines(backtest: dict[str, object]) -> None:
    bt = backtest["bt"]
    calendar = 3 * (bt.end - bt.start)  # type: ignore[attr-defined]
    assert 0 < sum(bt.operating_s.values()) < calendar  # type: ignore[attr-defined]


def test_the_command_writes_json_and_html_and_refuses_bad_rows_by_row(
    plant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(plant / "plant.toml"), "--out", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "vigil" in out.out and "margin" in out.out
    res = json.loads((tmp_path / "r" / "backtest.json").read_text())
    refused = res["input"]["refused"]
    assert refused.get("bad_timestamp", 0) >= 1 and refused.get("wrong_type", 0) >= 1
    assert all({"row", "column", "reason", "detail"} <= set(r) for r in res["input"]["refusals"])
    assert res["input"]["maintenance"]["refusals"], "the generator's broken work orders are refused"
    assert (tmp_path / "r" / "backtest.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_a_bad_configuration_key_exits_2_naming_the_source(plant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(plant / "plant.toml"), "--source", "nope"]) == 2
    assert "sources.file" in capsys.readouterr().err


def test_the_margin_rule_judges_moved_in_limits_even_after_the_plant_was_resolved() -> None:
    """A copy of the configuration derives its machines again (a cached resolution made the margin rule the
    hard-limit rule: both scored identically on every fleet)."""
    from backtest.run import margin_config

    config = load_config(environ={})
    before = config.machines_by_id["PMP-001"].sensors["bearing_temp"].limits.high
    moved = margin_config(config, 5.0).machines_by_id["PMP-001"].sensors["bearing_temp"]
    span = moved.range.max - moved.range.min
    assert before is not None and moved.limits.high == pytest.approx(before - 0.05 * span)


def test_the_lives_the_labels_show_are_checked_against_the_horizon(example_config: VigilConfig) -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    bt = Backtest(example_config, Settings(), {})
    bt.failures = [Failure("PMP-001", t + timedelta(hours=h)) for h in (10, 30, 50)]
    bt.repairs = [Repair("PMP-001", t + timedelta(hours=h)) for h in (12, 32)]
    life = life_lengths(bt)
    assert (life["n"], life["median_h"]) == (2, 18.0)  # 12 -> 30 and 32 -> 50; the first life's start is unknown
    assert life["proposed_horizon_h"] == 18.0 and "horizon_s = 64800" in life["check"]
    bt.failures, bt.repairs = bt.failures[:1], []
    assert life_lengths(bt)["n"] == 0


def test_digest_findings_count_on_healthy_machine_time_only(example_config: VigilConfig) -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    bt = Backtest(example_config, Settings(), {})
    bt.end = (t + timedelta(days=10)).timestamp()
    hour = int(t.timestamp() // 3600)
    for machine in ("PMP-001", "PMP-002"):
        for h in range(240):  # ten days running, every hour
            bt.operating_hours[machine][hour + h] = 3600
    bt.failures = [Failure("PMP-001", t + timedelta(days=5))]
    bt.repairs = [Repair("PMP-001", t + timedelta(days=6))]
    finding = [
        Tracked("a", "PMP-001", "drift", t + timedelta(days=4)),  # within the 48 h before the failure: a symptom
        Tracked("b", "PMP-001", "drift", t + timedelta(days=5, hours=12)),  # failed, not yet repaired
        Tracked("c", "PMP-001", "drift", t + timedelta(days=8)),  # healthy again after the repair
        Tracked("d", "PMP-002", "sensor_fault", t + timedelta(days=1)),
    ]
    found, months = healthy(bt, finding)
    assert found == 2
    # PMP-001 is sick from 48 h before the failure to the repair hour (73 hours), PMP-002 never.
    assert months == pytest.approx((480 - 73) / (30 * 24))
