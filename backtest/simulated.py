"""``vigil evaluate``: the backtest on the built-in simulated fleet (no files, no Kafka).

The seeded simulator (:class:`ingest.simulator.fleet.Fleet`) writes its readings as columns and its failures and
repairs as maintenance records; :func:`backtest.run.run` does the rest exactly as for a plant's own history, so
the simulator's scores and a plant's come from one scoring code. The simulated machines start at random points
of their wear, so the first days hold failures no method can see coming with a normal it has not learnt yet;
``--burn-in-days`` (2) leaves their false alarms uncounted, and the report says so.

``vigil evaluate --weeks 4 --seed 11`` prints the same table as ``vigil backtest``; ``--out DIR`` writes its JSON
and HTML report too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from backtest.cli import finite, render
from backtest.run import Backtest, Settings, result, run
from ingest.tabular import Frame
from vigil.config import VigilConfig, load_config
from vigil.contracts import MaintenanceEvent, Reading
from vigil.exceptions import VigilError

START = datetime(2026, 1, 5, tzinfo=UTC)
"""A Monday: the simulated weeks start here (a rerun gives the same timestamps)."""


def simulate(
    config: VigilConfig,
    *,
    seed: int,
    weeks: float,
    sample_interval_s: float = 60.0,
    failure_rate: float = 1.0,
    events: list[MaintenanceEvent],
    chunk: int = 200_000,
) -> Iterator[Frame]:
    """The simulated fleet's readings as frames; its maintenance records are appended to ``events``."""
    from ingest.simulator.fleet import Fleet

    fleet = Fleet(config, seed=seed, start=START, sample_interval_s=sample_interval_s, failure_rate=failure_rate)
    buffer: list[Reading] = []
    for readings, evs in fleet.run(weeks * 7 * 86400.0):
        buffer += readings
        events += evs
        if len(buffer) >= chunk:
            yield _frame(buffer)
            buffer = []
    if buffer:
        yield _frame(buffer)


def _frame(readings: list[Reading]) -> Frame:
    n = len(readings)
    return Frame(
        np.array([r.machine_id for r in readings], dtype=object),
        np.array([r.sensor for r in readings], dtype=object),
        np.fromiter((r.ts.timestamp() for r in readings), dtype=np.float64, count=n),
        np.fromiter((np.nan if r.value is None else r.value for r in readings), dtype=np.float64, count=n),
        np.fromiter((r.status_code for r in readings), dtype=np.uint32, count=n),
    )


def evaluate(
    config: VigilConfig,
    *,
    seed: int,
    weeks: float,
    sample_interval_s: float = 60.0,
    burn_in_days: float = 2.0,
    failure_rate: float = 1.0,
    margin_pct: float = 5.0,
) -> Backtest:
    """``weeks`` of the configured fleet, simulated with ``seed``, through the backtest."""
    events: list[MaintenanceEvent] = []
    frames = simulate(
        config,
        seed=seed,
        weeks=weeks,
        sample_interval_s=sample_interval_s,
        failure_rate=failure_rate,
        events=events,
    )
    # The simulator's records come with its readings: read them all before the run sorts and replays them.
    materialised = list(frames)
    return run(config, materialised, events, Settings(margin_pct=margin_pct, burn_in_days=burn_in_days))


def main(argv: list[str]) -> int:
    """``vigil evaluate``: score the models and the rule baselines on the simulated fleet."""
    parser = argparse.ArgumentParser(prog="vigil evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--config", default=None, help="plant configuration (default: $VIGIL_CONFIG, the example)")
    parser.add_argument("--sample-interval", type=float, default=60.0, help="simulated seconds between samples")
    parser.add_argument("--burn-in-days", type=float, default=2.0)
    parser.add_argument("--failure-rate", type=float, default=1.0)
    parser.add_argument("--margin-pct", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="also write backtest.json and backtest.html here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        bt = evaluate(
            config,
            seed=args.seed,
            weeks=args.weeks,
            sample_interval_s=args.sample_interval,
            burn_in_days=args.burn_in_days,
            failure_rate=args.failure_rate,
            margin_pct=args.margin_pct,
        )
    except VigilError as exc:
        print(f"vigil evaluate: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    extra: dict[str, Any] = {"command": "vigil evaluate " + " ".join(argv), "seed": args.seed, "weeks": args.weeks}
    res = finite(result(bt, extra))
    if args.out is not None:
        from backtest.report import write_report

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "backtest.json").write_text(json.dumps(res, indent=1, allow_nan=False) + "\n")
        write_report(res, args.out / "backtest.html")
    print(json.dumps(res) if args.json else render(res))  # noqa: T201
    return 0
