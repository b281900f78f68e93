"""End to end at a fixed load on the demo stack: readings/s and latency from source time to each stage.

Runs ``vigil demo`` in real time (``--speed 1 --start now``): the simulator serves the example plant over OPC UA
at a fixed sample interval, and every service runs as its own process against the real Kafka and InfluxDB
(``vigil services up`` first). While it runs, a :class:`~vigil.latency.LatencyRecorder` reads the run's features,
predictions and alerts topics (read_committed) and times every record from its window's close (window end +
``--grace-s``): when the stage produced it (its Kafka timestamp, ``*_out``) and when it became visible downstream
(its transaction committed and the recorder received it, ``*_visible``). The percentiles are exact, over every
record (nearest rank), not interpolated in histogram buckets (the services' ``vigil_source_latency_seconds``
histograms, buckets from 10 ms, are for dashboards).

    python bench/bench_e2e.py                 # 12 machines, 0.2 s samples (~360 readings/s), 5 s windows, 4 min
    python bench/bench_e2e.py --smoke         # 60 s, for CI-like checks that it still works
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vigil.config import EXAMPLE_CONFIG

TIGHT_LIMITS = {
    "VIGIL_MACHINE_TYPES__PUMP__SENSORS__BEARING_TEMP__LIMITS__HIGH": "60",
    "VIGIL_MACHINE_TYPES__MOTOR__SENSORS__WINDING_TEMP__LIMITS__HIGH": "85",
    "VIGIL_MACHINE_TYPES__COMPRESSOR__SENSORS__DISCHARGE_TEMP__LIMITS__HIGH": "85",
}
"""Environment overrides of the configuration: limits a healthy fleet crosses now and then (alert latency)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    from vigil.config import load_config
    from vigil.latency import LatencyRecorder

    run_id = f"e2e-{int(time.time())}-{os.getpid()}"
    prefix = f"vigil.demo.{run_id}."
    recorder = LatencyRecorder(
        load_config().kafka,
        [f"{prefix}readings", f"{prefix}features", f"{prefix}predictions", f"{prefix}alerts"],
        args.grace_s,
    )
    recorder.start()
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.json"
        # Free ports for the simulator's OPC UA server and the alerts API: another demo may run on this host.
        plant = Path(tmp) / "plant.toml"
        plant.write_text(EXAMPLE_CONFIG.read_text().replace(":4840/", f":{_free_port()}/"))
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
                "--exit",
                "--quiet",
                "--state-dir",
                str(Path(tmp) / "state"),
                "--summary-json",
                str(summary_file),
                "--timeout-s",
                str(args.seconds + 180),
                "--run-id",
                run_id,
                "--config",
                str(plant),
            ],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "VIGIL_LOG_LEVEL": "WARNING",
                "VIGIL_ALERTS__HTTP_PORT": str(_free_port()),
                **(TIGHT_LIMITS if args.tight_limits else {}),
            },
            check=False,
        )
        elapsed = time.monotonic() - started
        recorder.stop()
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
    # Exact, per record: seconds after the window's close (end + grace) in the simulator's clock, which runs
    # behind the wall clock (paced from its own start, and slower when a step is late): the median of how far a
    # reading's source time is behind its collection is that offset plus the collection delay. Subtracted, the
    # latencies are from the close as a source clocked like the wall would have it.
    summary_s = recorder.summary()
    out["after_window_close_s"] = summary_s
    behind = summary_s.get("source_behind_collection", {}).get("p50")
    if behind is not None:
        out["source_clock_behind_s"] = behind
        out["after_window_close_corrected_s"] = {
            stage: {k: (round(v - behind, 3) if k.startswith("p") or k == "max" else v) for k, v in values.items()}
            for stage, values in summary_s.items()
            if stage != "source_behind_collection"
        }
    if recorder.error is not None:
        out["recorder_error"] = repr(recorder.error)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
