"""Benchmark: what a feature worker's checkpoints write, whole state against incremental (base + deltas).

    python bench/bench_checkpoint.py            # 200 machines x 6 sensors at 1 Hz, 600 s windows, 30 min
    python bench/bench_checkpoint.py --smoke    # tiny, a second

A window engine is fed every machine's next ``--every`` seconds of readings (noisy values, as a real sensor
gives), then every machine is checkpointed, round after round, as the worker does every ``checkpoint_interval_s``
in real time. Two engines on the same data: one writes each machine's whole state every time (what the worker did
before incremental checkpoints: ``machine_state`` + ``encode_checkpoint``), the other what the worker writes now
(``checkpoint_state``: a delta of the new readings, or a base after a window closed or every ``--max-deltas``).
Reported per checkpoint, scaled to 1,000 machines: bytes written and CPU. Kafka-free: the changelog's records are
encoded, not sent.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from typing import Any

import numpy as np

from features.vector import window_engine
from streaming.changelog import MAX_DELTAS, encode_checkpoint
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config

SENSORS = ["bearing_temp", "vibration_rms", "motor_current", "pressure", "flow", "speed"]
T0 = 1_764_000_000.0


def plant(machines: int, size_s: float) -> VigilConfig:
    data = tomllib.loads(EXAMPLE_CONFIG.read_text())
    data["machines"] = [{"id": f"PMP-{i:05d}", "type": "pump", "line": "north-1"} for i in range(machines)]
    data["sources"] = {}
    data["windows"] = {"size_s": size_s, "grace_s": 5, "idle_timeout_s": 3600}
    return load_config(data=data, environ={})


def run(config: VigilConfig, machines: int, seconds: int, every: int, incremental: bool, max_deltas: int) -> Any:
    engine = window_engine(config)
    rng = np.random.default_rng(3)
    ids = [f"PMP-{m:05d}" for m in range(machines)]
    chain = dict.fromkeys(ids, -1)  # deltas since the machine's base (-1: no base yet)
    written = records = bases = tombstones = 0
    cpu = 0.0
    for t0 in range(0, seconds, every):
        for mid in ids:
            ts = np.concatenate([T0 + np.arange(t0, t0 + every) + 0.001 * k for k in range(len(SENSORS))])
            engine.add_columns(mid, SENSORS, [every] * len(SENSORS), ts, 50 + rng.normal(0, 1, len(ts)))
        started = time.process_time()
        for mid in ids:
            if not incremental:
                value = encode_checkpoint({"readings:0": t0}, engine.machine_state(mid, raw=True) or {})
                bases += 1
            else:
                got = engine.checkpoint_state(mid, full=chain[mid] < 0 or chain[mid] >= max_deltas)
                assert got is not None
                state, is_delta = got
                if not is_delta:
                    tombstones += max(chain[mid], 0)  # the previous base's deltas are removed after a new base
                chain[mid] = chain[mid] + 1 if is_delta else 0
                bases += not is_delta
                value = encode_checkpoint({"readings:0": t0}, state, lineage="0" * 16, delta=max(chain[mid], 0))
            written += len(value)
            records += 1
        cpu += time.process_time() - started
    rounds = seconds // every
    return written / rounds * 1000 / machines, cpu / rounds * 1000 / machines, records, bases, tombstones


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark runs")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=30, help="event time fed")
    parser.add_argument("--every", type=int, default=5, help="seconds of readings between checkpoints")
    parser.add_argument("--size-s", type=float, default=600.0, help="window length")
    parser.add_argument("--max-deltas", type=int, default=MAX_DELTAS)
    args = parser.parse_args()
    if args.smoke:
        args.machines, args.minutes = 5, 3
    config = plant(args.machines, args.size_s)
    print(
        f"vigil checkpoint benchmark ({'smoke' if args.smoke else 'full'}): {args.machines} machines x "
        f"{len(SENSORS)} sensors at 1 Hz, {args.size_s:g}s windows, a checkpoint every {args.every}s, "
        f"{args.minutes} min; per checkpoint, scaled to 1,000 machines"
    )
    for incremental in (False, True):
        size, cpu, records, bases, tombstones = run(
            config, args.machines, args.minutes * 60, args.every, incremental, args.max_deltas
        )
        label = "incremental (deltas)" if incremental else "whole state"
        print(
            f"  {label:<22} {size / 1e6:7.2f} MB written, {cpu * 1000:6.0f} ms CPU "
            f"({records} records, {bases} of them whole; {tombstones} tombstones of old deltas, key only)"
        )


if __name__ == "__main__":
    main()
