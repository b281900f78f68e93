"""Backtest benchmark: a plant's history through ``vigil backtest``, wall time and peak memory.

Writes a fleet with the independent pump generator (``tests/generators/pumps.py``: a wide historian CSV and a CMMS
export), then runs ``vigil backtest`` on it as a user would, in a child process measured with ``/usr/bin/time``-like
``resource`` accounting, and prints the time per stage (reading, the run), readings/s, windows/s and peak RSS.

    python bench/bench_backtest.py                    # 30 pumps x 90 days at 1-minute samples (the issue's size)
    python bench/bench_backtest.py --machines 6 --days 14
    python bench/bench_backtest.py --smoke            # 2 pumps x 2 days, for CI
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=30)
    parser.add_argument("--days", type=float, default=90)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    machines, days = (2, 2.0) if args.smoke else (args.machines, args.days)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plant"
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "tests.generators.pumps", "--out", str(out), "--seed", str(args.seed),
             "--machines", str(machines), "--days", str(days)],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip
        generated = time.monotonic() - started
        size_mb = (out / "historian.csv").stat().st_size / 1e6
        started = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-m", "vigil.cli", "backtest", "--config", str(out / "plant.toml"), "--out",
             str(out / "report"), "--json"],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = json.loads((out / "report" / "backtest.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        json.dumps(
            {
                "machines": machines,
                "days": days,
                "historian_csv_mb": round(size_mb, 1),
                "generate_s": round(generated, 1),
                "readings": res["readings"],
                "windows": res["windows"],
                "backtest_wall_s": round(wall, 1),
                "backtest_cpu_s": round(cpu, 1),
                "readings_per_s": round(res["readings"] / wall),
                "windows_per_s": round(res["windows"] / wall),
                "peak_rss_mb": round(after.ru_maxrss / 1024),
                "failures": res["scores"]["vigil"]["failures"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
