"""Micro-benchmark: the window engine's CPU per reading, without Kafka and without decoding.

    python bench/bench_engine.py            # 200 machines x 6 sensors at 1 Hz, 600 s windows, 500 per message
    python bench/bench_engine.py --smoke    # tiny, a second or two

The inputs of :meth:`streaming.windows.WindowEngine.add_columns` are built with numpy up front (what the decoder
hands over for a ``reading_columns`` message: per sensor a run of event times and values, plus the span), then fed
to one engine in the order a plant sends them (every machine's next message, round after round). Reported, in
microseconds of CPU (``time.process_time``) per reading fed:

* ``add``: :meth:`add_columns` without the windows it closes;
* ``close``: closing windows (``WindowEngine._close``: selecting, de-duplicating and grouping the window's
  readings, keeping the rest) without the builder;
* ``build``: :meth:`features.vector.FeatureBuilder.build_columns` (every aggregation, the FeatureVector);
* ``checkpoint``: ``machine_state(raw=True)`` + :func:`streaming.changelog.encode_checkpoint` of every machine
  that received readings, every ``--checkpoint-every`` readings (the worker checkpoints every
  ``checkpoint_interval_s``; 1 M readings is ~1-2 s of a worker), also per held reading and in bytes.

A digest of the vectors is printed so that two versions of the engine can be checked to compute the same thing.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
import tomllib
from typing import Any

import numpy as np

from features.vector import window_engine
from streaming.changelog import encode_checkpoint
from streaming.windows import WindowEngine
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import FeatureVector

SENSORS = ["bearing_temp", "vibration_rms", "motor_current", "pressure", "flow", "speed"]
T0 = 1_764_000_000.0
Message = tuple[str, list[str], list[int], Any, Any, tuple[float, float]]


def plant(machines: int, size_s: float, grace_s: float, hop_s: float | None) -> VigilConfig:
    data = tomllib.loads(EXAMPLE_CONFIG.read_text())
    data["machines"] = [{"id": f"PMP-{i:05d}", "type": "pump", "line": "north-1"} for i in range(machines)]
    data["sources"] = {}
    windows: dict[str, Any] = {"size_s": size_s, "grace_s": grace_s, "idle_timeout_s": 3600}
    if hop_s:
        windows.update(kind="hopping", hop_s=hop_s)
    data["windows"] = windows
    return load_config(data=data, environ={})


def messages(machines: int, readings: int, per_message: int, values: str, seed: int = 7) -> list[Message]:
    """Every machine's sensors at 1 Hz, cut into messages of ``per_message`` readings grouped by sensor (the
    columns form); ``values``: ``regular`` (a slow saw tooth, as bench_streaming.py) or ``noise`` (full
    precision Gaussian noise around a level, what a real sensor gives)."""
    rng = np.random.default_rng(seed)
    per_sensor = max(1, per_message // len(SENSORS))
    seconds = max(per_sensor, readings // (machines * len(SENSORS)))
    out: list[Message] = []
    for lo in range(0, seconds - per_sensor + 1, per_sensor):
        t = T0 + np.arange(lo, lo + per_sensor, dtype=np.float64)
        for m in range(machines):
            ts = np.concatenate([t + 0.001 * k for k in range(len(SENSORS))])
            if values == "noise":
                level = np.repeat(50.0 + np.arange(len(SENSORS)), per_sensor)
                vals = level + rng.normal(0.0, 0.5, len(ts))
            else:
                base = 50.0 + ((np.arange(lo, lo + per_sensor) % 17) * 0.1) + m * 0.001
                vals = np.concatenate([base + k for k in range(len(SENSORS))])
            span = (float(ts.min()), float(ts.max()))
            out.append((f"PMP-{m:05d}", SENSORS, [per_sensor] * len(SENSORS), ts, vals, span))
    return out


class Clock:
    """CPU seconds spent inside one wrapped callable (the wrapper costs ~1 us per call)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t = time.process_time()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - t
            self.calls += 1


def run(config: VigilConfig, data: list[Message], checkpoint_every: int) -> dict[str, float]:
    engine: WindowEngine = window_engine(config)
    build = Clock(engine.builder.build_columns)
    engine.builder.build_columns = build  # type: ignore[method-assign]
    close = Clock(engine._close)
    engine._close = close  # type: ignore[method-assign]
    vectors: list[FeatureVector] = []
    add_s = checkpoint_s = 0.0
    readings = held = checkpoints = state_bytes = 0
    dirty: set[str] = set()
    since = 0
    for machine, sensors, lengths, ts, values, span in data:
        t = time.process_time()
        vectors += engine.add_columns(machine, sensors, lengths, ts, values, span)
        add_s += time.process_time() - t
        readings += len(ts)
        since += len(ts)
        dirty.add(machine)
        if since >= checkpoint_every:
            since = 0
            t = time.process_time()
            for mid in sorted(dirty):
                state = engine.machine_state(mid, raw=True)
                if state is not None:
                    state_bytes += len(encode_checkpoint({"readings:0": readings}, state))
            checkpoint_s += time.process_time() - t
            held += engine.open_readings()
            checkpoints += 1
            dirty.clear()
    per = 1e6 / readings
    return {
        "readings": readings,
        "vectors": len(vectors),
        "add": (add_s - close.seconds) * per,
        "close": (close.seconds - build.seconds) * per,
        "build": build.seconds * per,
        "checkpoint": checkpoint_s * per,
        "checkpoint_per_held": checkpoint_s / held * 1e6 if held else 0.0,
        "checkpoint_bytes_per_held": state_bytes / held if held else 0.0,
        "checkpoints": checkpoints,
        "close_us_per_window": (close.seconds - build.seconds) / max(1, close.calls) * 1e6,
        "build_us_per_window": build.seconds / max(1, build.calls) * 1e6,
        "digest": int(_digest(vectors), 16),
    }


def _digest(vectors: list[FeatureVector]) -> str:
    h = hashlib.sha256()
    for v in vectors:
        # The window, its counts and its features (not fields another version of the contract may add).
        h.update(
            repr((v.machine_id, v.window_start, v.count, v.bad_quality_share, sorted(v.features.items()))).encode()
        )
    return h.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny run (seconds)")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--readings", type=int, default=3_000_000)
    parser.add_argument("--per-message", type=int, default=500)
    parser.add_argument("--size-s", type=float, default=600.0)
    parser.add_argument("--hop-s", type=float, default=None, help="hopping windows with this hop")
    parser.add_argument("--grace-s", type=float, default=60.0)
    parser.add_argument("--values", choices=["regular", "noise"], default="noise")
    parser.add_argument("--checkpoint-every", type=int, default=1_000_000, help="readings between checkpoints")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.smoke:
        args.machines, args.readings, args.size_s, args.repeat, args.checkpoint_every = 10, 60_000, 300.0, 1, 20_000
    config = plant(args.machines, args.size_s, args.grace_s, args.hop_s)
    data = messages(args.machines, args.readings, args.per_message, args.values)
    runs = [run(config, data, args.checkpoint_every) for _ in range(args.repeat)]
    first = runs[0]
    print(
        f"{first['readings']:,} readings, {args.machines} machines x {len(SENSORS)} sensors, {args.per_message} per "
        f"message, {args.size_s:g} s windows{f' hop {args.hop_s:g} s' if args.hop_s else ''}, values {args.values}, "
        f"{first['vectors']:,} vectors (digest {first['digest']:x}), {first['checkpoints']} checkpoints; "
        f"median and best of {len(runs)} runs, CPU us per reading:"
    )
    keys = ["add", "close", "build", "checkpoint"]
    med = {k: statistics.median(r[k] for r in runs) for k in [*keys, *first] if k != "digest"}
    for k in keys:
        runs_k = ", ".join(f"{r[k]:.4f}" for r in runs)
        print(f"  {k:<11} {med[k]:.4f}   best {min(r[k] for r in runs):.4f}   (runs: {runs_k})")
    best = min(sum(r[k] for k in keys) for r in runs)
    print(f"  {'total':<11} {sum(med[k] for k in keys):.4f}   best {best:.4f}")
    print(f"  add + close + checkpoint (without build): {med['add'] + med['close'] + med['checkpoint']:.4f}")
    print(
        f"  per window: close {med['close_us_per_window']:.0f} us, build {med['build_us_per_window']:.0f} us; "
        f"checkpoint {med['checkpoint_per_held']:.4f} us and {med['checkpoint_bytes_per_held']:.2f} bytes per held reading"
    )


if __name__ == "__main__":
    main()
