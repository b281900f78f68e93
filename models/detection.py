"""Detection delay on streams with a known change point: the fourth of the plant's measures of quality.

Recall and false alarms (:mod:`models.evaluate`) say whether failures were caught; this says how fast the
models stage notices a change it should notice, and whether it keeps quiet about changes it should not alarm
on. Each scenario feeds the real :class:`~models.pipeline.FleetModel` healthy pump windows
(:mod:`models.synthetic`), then changes one thing at a known window:

- ``step``: sudden wear (bearing temperature +10 degC, vibration +2.6 mm/s at the same load): an alert is due;
- ``ramp``: wear growing linearly to 0.8 over 48 h (bearing and vibration towards their hard limits): an alert
  is due, the earlier the better;
- ``stuck``: the flow sensor freezes at its last value: a ``sensor_fault`` event is due, and no alert;
- ``load``: the pump moves to a new operating point for good (a normal change): no alert is due.

Reported per scenario: the share of runs where the expected signal came, its delay from the change point
(median and 90th percentile, hours), the feature-drift events' delay, and the alerts raised where none was due
(before the change, after warm-up, and after a change that should not alarm).

    vigil detection-delay                    # 4 pumps x 3 seeds per scenario, about half a minute
    vigil detection-delay --runs 5 --json

>>> r = run_scenario("step", seed=1, machines=1, healthy_h=30.0, after_h=12.0)
>>> r.expected, r.detected[0], 0.0 <= r.delays_h[0] < 12.0
('alert', True, True)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from models.pipeline import FleetModel
from models.synthetic import WINDOW_S, pump_vector
from vigil.config import VigilConfig, load_config
from vigil.contracts import Decision, FeatureVector

START = datetime(2026, 3, 2, tzinfo=UTC)
SCENARIOS = ("step", "ramp", "stuck", "load")
_EXPECTED = {"step": "alert", "ramp": "alert", "stuck": "sensor_fault", "load": "nothing"}


@dataclass
class ScenarioResult:
    scenario: str
    expected: str
    """``alert``, ``sensor_fault`` or ``nothing`` (a normal change)."""
    detected: list[bool] = field(default_factory=list)
    """Per machine run: the expected signal came (for ``nothing``: no alert came)."""
    delays_h: list[float] = field(default_factory=list)
    """From the change point to the expected signal, for the runs where it came."""
    drift_delays_h: list[float] = field(default_factory=list)
    """From the change point to the machine's first feature-drift event, where one came."""
    alerts_before: int = 0
    """Alert episodes opened on healthy data before the change (after warm-up)."""
    alerts_unwanted: int = 0
    """Alert episodes opened after a change that should not alarm (``stuck``, ``load``)."""
    healthy_machine_weeks: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "expected": self.expected,
            "runs": len(self.detected),
            "detected_share": _ratio(sum(self.detected), len(self.detected)),
            "delay_median_h": _quantile(self.delays_h, 0.5),
            "delay_p90_h": _quantile(self.delays_h, 0.9),
            "drift_delay_median_h": _quantile(self.drift_delays_h, 0.5),
            "alerts_before_change": self.alerts_before,
            "false_alarms_per_machine_week_before_change": _ratio(self.alerts_before, self.healthy_machine_weeks),
            "alerts_where_none_due": self.alerts_unwanted,
        }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 2)


def _changed(scenario: str, hours_since: float) -> dict[str, Any]:
    """``pump_vector`` arguments for a window ``hours_since`` the change point (negative: before it)."""
    if hours_since < 0:
        return {}
    if scenario == "step":
        return {"wear": 0.3}
    if scenario == "ramp":
        return {"wear": min(0.8, 0.8 * hours_since / 48.0)}
    if scenario == "load":
        return {"load": 0.55}
    return {}


def run_scenario(
    scenario: str,
    *,
    seed: int = 1,
    machines: int = 4,
    healthy_h: float = 72.0,
    after_h: float = 48.0,
    config: VigilConfig | None = None,
) -> ScenarioResult:
    """Feed ``machines`` pumps ``healthy_h`` hours of healthy windows, change them, watch ``after_h`` hours."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    cfg = config or load_config(environ={})
    pumps = [m for m in cfg.machines_by_id.values() if m.type == "pump"][:machines]
    model = FleetModel(cfg.models, cfg.machines_by_id, cfg.machine_types)
    rng = random.Random(seed)
    result = ScenarioResult(scenario, _EXPECTED[scenario])
    change = START + timedelta(hours=healthy_h)
    warm = START + timedelta(seconds=cfg.models.warmup_s) + timedelta(hours=24)
    result.healthy_machine_weeks = len(pumps) * max(0.0, (change - warm).total_seconds()) / (7 * 86400.0)
    windows = int((healthy_h + after_h) * 3600 / WINDOW_S)
    loads = {m.id: 0.75 + 0.2 * rng.random() for m in pumps}
    first: dict[str, dict[str, datetime]] = {m.id: {} for m in pumps}
    alerting = dict.fromkeys(loads, False)
    frozen: dict[str, float] = {}
    for k in range(windows):
        end = START + timedelta(seconds=WINDOW_S * (k + 1))
        hours_since = (end - change).total_seconds() / 3600.0
        for m in pumps:
            if hours_since < 0 and rng.random() < 0.02:  # ordinary load changes while healthy
                loads[m.id] = 0.75 + 0.2 * rng.random()
            kwargs: dict[str, Any] = {"load": loads[m.id], "rng": rng, "line": m.line, "site": m.site}
            kwargs.update(_changed(scenario, hours_since))
            fv = pump_vector(m.id, end, **kwargs)
            if scenario == "stuck" and hours_since >= 0:
                fv = _freeze(fv, "flow", frozen.setdefault(m.id, fv.features["flow.mean"] or 0.0))
            out = model.process(fv)
            is_alert = out.prediction is not None and out.prediction.decision == Decision.ALERT
            if is_alert and not alerting[m.id]:  # an episode opens
                if hours_since < 0 and end >= warm:
                    result.alerts_before += 1
                elif hours_since >= 0:
                    first[m.id].setdefault("alert", end)
                    if result.expected != "alert":
                        result.alerts_unwanted += 1
            alerting[m.id] = is_alert
            for event in out.drift:
                if hours_since < 0 or event.machine_id != m.id:
                    continue
                if event.event == "sensor_fault":
                    first[m.id].setdefault("sensor_fault", end)
                elif event.event == "drift" and event.target != "error":
                    first[m.id].setdefault("drift", end)
    for m in pumps:
        seen = first[m.id]
        if result.expected == "nothing":
            result.detected.append("alert" not in seen)
        else:
            result.detected.append(result.expected in seen)
            if result.expected in seen:
                result.delays_h.append((seen[result.expected] - change).total_seconds() / 3600.0)
        if "drift" in seen:
            result.drift_delays_h.append((seen["drift"] - change).total_seconds() / 3600.0)
    return result


def _freeze(fv: FeatureVector, sensor: str, value: float) -> FeatureVector:
    features = dict(fv.features)
    for agg in ("mean", "max"):
        features[f"{sensor}.{agg}"] = value
    features[f"{sensor}.std"] = 0.0
    features[f"{sensor}.slope"] = 0.0
    return fv.model_copy(update={"features": features})


def evaluate(
    scenarios: Sequence[str] = SCENARIOS,
    runs: int = 3,
    machines: int = 4,
    config: VigilConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ScenarioResult]:
    """Every scenario over ``runs`` seeds; the per-run results pooled per scenario."""
    out: list[ScenarioResult] = []
    for scenario in scenarios:
        pooled = ScenarioResult(scenario, _EXPECTED[scenario])
        for seed in range(1, runs + 1):
            r = run_scenario(scenario, seed=seed, machines=machines, config=config)
            pooled.detected += r.detected
            pooled.delays_h += r.delays_h
            pooled.drift_delays_h += r.drift_delays_h
            pooled.alerts_before += r.alerts_before
            pooled.alerts_unwanted += r.alerts_unwanted
            pooled.healthy_machine_weeks += r.healthy_machine_weeks
        if progress is not None:
            progress(scenario)
        out.append(pooled)
    return out


def main(argv: list[str]) -> int:
    """``vigil detection-delay``: how fast the models notice known changes, and whether they keep quiet."""
    parser = argparse.ArgumentParser(prog="vigil detection-delay", description=main.__doc__)
    parser.add_argument("--config", default=None, help="plant configuration (default: $VIGIL_CONFIG, the example)")
    parser.add_argument("--runs", type=int, default=3, help="seeds per scenario")
    parser.add_argument("--machines", type=int, default=4, help="pumps per run")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="only this scenario (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    results = evaluate(args.scenario or SCENARIOS, args.runs, args.machines, config)
    rows = [r.summary() for r in results]
    if args.json:
        print(json.dumps(rows, indent=2))  # noqa: T201
        return 0
    header = f"{'scenario':<8} {'expected':<13} {'runs':>4} {'detected':>8} {'delay h (p50/p90)':>18}"
    header += f" {'drift h':>8} {'FA/mw before':>12} {'unwanted':>8}"
    lines = [header]
    for r in rows:
        delay = f"{_fmt(r['delay_median_h'])}/{_fmt(r['delay_p90_h'])}"
        lines.append(
            f"{r['scenario']:<8} {r['expected']:<13} {r['runs']:>4} {_fmt(r['detected_share']):>8} {delay:>18}"
            f" {_fmt(r['drift_delay_median_h']):>8}"
            f" {_fmt(r['false_alarms_per_machine_week_before_change']):>12} {r['alerts_where_none_due']:>8}"
        )
    print("\n".join(lines))  # noqa: T201
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
