"""End to end at a fixed load on the demo stack: readings/s and latency from source time to each stage.

Runs ``vigil demo`` in real time (``--speed 1 --start now``): the simulator serves the example plant over OPC UA
at a fixed sample interval, and every service runs as its own process against the real Kafka and InfluxDB
(``vigil services up`` first). While it runs, the services' ``/metrics`` endpoints are scraped; the latency
histograms ``vigil_source_latency_seconds{stage=prediction|alert}`` measure from the source timestamp of the
event (the window end for predictions, the triggering window end for alerts) to the moment the stage published it.
With windows of ``--window-s`` and a grace of ``--grace-s``, the floor of the prediction latency is the grace
(a window is closed only when the watermark passes its end plus the grace).

    python bench/bench_e2e.py                 # 12 machines, 0.2 s samples (~360 readings/s), 5 s windows, 4 min
    python bench/bench_e2e.py --smoke         # 60 s, for CI-like checks that it still works
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vigil.metrics import Scrape, scrape

PORTS = {"features": 9466, "models": 9467, "alerts": 9468}
TIGHT_LIMITS = {
    "VIGIL_MACHINE_TYPES__PUMP__SENSORS__BEARING_TEMP__LIMITS__HIGH": "60",
    "VIGIL_MACHINE_TYPES__MOTOR__SENSORS__WINDING_TEMP__LIMITS__HIGH": "85",
    "VIGIL_MACHINE_TYPES__COMPRESSOR__SENSORS__DISCHARGE_TEMP__LIMITS__HIGH": "85",
}
"""Environment overrides of the configuration: limits a healthy fleet crosses now and then (alert latency)."""


def percentile(scr: Scrape, stage: str, q: float) -> float | None:
    """A quantile from a Prometheus histogram (linear inside the bucket, as histogram_quantile does)."""
    buckets = sorted(
        (float(dict(lbls)["le"]), value)
        for name, lbls, value in scr.samples
        if name == "vigil_source_latency_seconds_bucket" and dict(lbls).get("stage") == stage
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            width = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width else 0.0)
        prev_le, prev_count = le, count
    return prev_le


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=240.0, help="real (= simulated) seconds to run")
    parser.add_argument("--interval", type=float, default=0.2, help="sample interval per sensor, seconds")
    parser.add_argument("--window-s", type=float, default=5.0)
    parser.add_argument("--grace-s", type=float, default=1.0)
    parser.add_argument(
        "--failure-rate", type=float, default=1.0, help="simulator failure rate (higher: alerts within minutes)"
    )
    parser.add_argument(
        "--tight-limits",
        action="store_true",
        help="hard limits just above normal operation, so fail-safe alerts fire and the alert latency is measured",
    )
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 60.0
    last: dict[str, Scrape] = {}
    stop = threading.Event()

    def scraper() -> None:
        while not stop.wait(2.0):
            for name, port in PORTS.items():
                with contextlib.suppress(OSError):  # a service not up yet, or already stopped
                    last[name] = scrape(f"http://127.0.0.1:{port}/metrics")

    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.json"
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "vigil.cli",
                "demo",
                "--speed",
                "1",
                "--start",
                "now",
                "--days",
                str(args.seconds / 86400),
                "--interval",
                str(args.interval),
                "--window-s",
                str(args.window_s),
                "--grace-s",
                str(args.grace_s),
                "--drain-s",
                "5",
                "--failure-rate",
                str(args.failure_rate),
                "--no-live",
                "--quiet",
                "--state-dir",
                str(Path(tmp) / "state"),
                "--summary-json",
                str(summary_file),
                "--timeout-s",
                str(args.seconds + 180),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "VIGIL_LOG_LEVEL": "WARNING", **(TIGHT_LIMITS if args.tight_limits else {})},
            check=False,
        )
        elapsed = time.monotonic() - started
        stop.set()
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-2000:], file=sys.stderr)
            return 1
        summary = json.loads(summary_file.read_text())
    out: dict[str, object] = {
        "machines": 12,
        "sample_interval_s": args.interval,
        "window_s": args.window_s,
        "grace_s": args.grace_s,
        "run_s": round(elapsed, 1),
        "readings": summary["readings"],
        "readings_per_s": round(summary["readings"] / args.seconds, 1),
        "predictions": summary["predictions"],
        "alert_transitions": summary["alert_transitions"],
        "failure_rate": args.failure_rate,
        "tight_limits": args.tight_limits,
    }
    for stage, service in (("prediction", "models"), ("alert", "alerts")):
        scr = last.get(service)
        if scr is None:
            continue
        count = scr.total("vigil_source_latency_seconds_count", stage=stage)
        out[f"{stage}_latency_n"] = int(count)
        for q in (0.5, 0.9, 0.99):
            value = percentile(scr, stage, q)
            out[f"{stage}_latency_p{int(q * 100)}_s"] = None if value is None else round(value, 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
