"""``vigil evaluate`` is the backtest on the simulator: the models beat the hard-limit rules on a short run."""

from __future__ import annotations

from backtest.cli import finite, render
from backtest.run import outcome, result
from backtest.simulated import evaluate, main
from vigil.config import VigilConfig


def test_models_catch_failures_early_that_rules_alone_miss(example_config: VigilConfig) -> None:
    # Short (about 20 s of CPU): 4.5 days at 2-minute samples, twice the failure rate, 1.5 days of burn-in.
    bt = evaluate(example_config, seed=23, weeks=4.5 / 7, sample_interval_s=120.0, burn_in_days=1.5, failure_rate=2.0)
    text = render(finite(result(bt)))
    model, _, _ = outcome(bt, "vigil")
    rules, _, _ = outcome(bt, "hard_limits")
    assert model.failures >= 6, text
    # The direction of the quality bar: more failures caught at least min_lead ahead than the rules alone...
    assert model.recall >= 0.6 and model.recall > rules.recall + 0.4, text
    assert model.lead_time_median_h >= 4.0, text
    assert bt.drift["sensor_fault"] > 0, text


def test_the_command_prints_the_backtest_table(capsys: object) -> None:
    assert main(["--weeks", "0.3", "--sample-interval", "300", "--seed", "5"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "hard_limits" in out and "margin" in out and "FA/op. machine-month" in out
