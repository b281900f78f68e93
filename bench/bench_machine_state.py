"""How well the feature vectors' ``state`` matches the simulated plant when the readings come by exception.

    python bench/bench_machine_state.py                 # the example plant (12 machines), 7 simulated days
    python bench/bench_machine_state.py --smoke         # 2 machines, 1 day: a few seconds

The seeded :class:`~ingest.simulator.fleet.Fleet` is sampled every ``--interval`` seconds and turned into what an
OPC UA subscription without deadband delivers: a reading only when its value (or quality) differs from the last one
sent for that sensor. A stopped machine's speed, flow and current are exactly 0, so they are sent once and then
nothing; its temperatures keep cooling and keep coming. The readings go through the real window engine
(:func:`features.vector.window_engine`), and each window whose machine was not running (off or down for repair)
for the whole window, or running for the whole window, is compared with the vector's ``state``:

* ``now``: the vector's state (the running sensor's last value held across windows, ``windows.max_state_hold_s``);
* ``window only``: the rule before the held value, i.e. the window's own running-sensor readings decide and a
  window without any is ``running`` (computed from the same vectors: their state unless ``state_held`` decided it).

No Kafka, no clock; the numbers are counts, not timings.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from features.vector import window_engine
from ingest.simulator.fleet import Fleet
from vigil.config import VigilConfig, load_config
from vigil.contracts import FeatureVector, MachineState, Reading

START = datetime(2026, 1, 5, tzinfo=UTC)


def plant(machines: int | None, hold_s: float) -> VigilConfig:
    config = load_config(environ={})
    data: dict[str, Any] = config.model_dump(mode="python")
    if machines is not None:
        data["machines"] = data["machines"][:machines]
    data["windows"] = {**data["windows"], "max_state_hold_s": hold_s, "idle_timeout_s": 10 * 86400.0}
    return load_config(environ={}, data=data)


def by_exception(readings: list[Reading], sent: dict[tuple[str, str], tuple[Any, Any]]) -> list[Reading]:
    """The readings a subscription would deliver: only those whose value or quality changed."""
    out = []
    for r in readings:
        key, now = (r.machine_id, r.sensor), (r.value, r.quality)
        if sent.get(key) != now:
            sent[key] = now
            out.append(r)
    return out


def run(config: VigilConfig, days: float, interval_s: float, seed: int) -> dict[str, Counter[str]]:
    fleet = Fleet(config, seed=seed, start=START, sample_interval_s=interval_s)
    engine = window_engine(config)
    size = config.windows.size_s
    status: dict[tuple[str, int], set[str]] = {}
    sent: dict[tuple[str, str], tuple[Any, Any]] = {}
    vectors: list[FeatureVector] = []
    delivered = sampled = 0
    for _ in range(int(days * 86400 / interval_s)):
        now = fleet.now
        k = int(now.timestamp() // size)
        for machine in fleet.machine_ids:
            status.setdefault((machine, k), set()).add(fleet.health(machine).status)
        readings, _events = fleet.step()
        sampled += len(readings)
        for r in by_exception(readings, sent):
            delivered += 1
            vectors += engine.add(r)
    vectors += engine.flush()
    result: dict[str, Counter[str]] = {"now": Counter(), "window only": Counter(), "readings": Counter()}
    result["readings"].update(sampled=sampled, delivered=delivered)
    for v in vectors:
        seen = status.get((v.machine_id, int(v.window_start.timestamp() // size)), set())
        if seen == {"running"}:
            truth = "running"
        elif seen and "running" not in seen:
            truth = "stopped"
        else:
            continue  # started or stopped inside the window
        before = MachineState.RUNNING if v.state_held is not None else v.state
        result["now"][f"{truth} -> {v.state.value}"] += 1
        result["window only"][f"{truth} -> {before.value}"] += 1
        if v.state_held is not None:
            result["now"]["decided by a held value"] += 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--machines", type=int, default=None, help="the first N machines of the example plant")
    parser.add_argument("--interval", type=float, default=30.0, help="sample interval of the simulator (s)")
    parser.add_argument("--hold", type=float, default=86400.0, help="windows.max_state_hold_s")
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.days, args.machines = 1.0, 2
    config = plant(args.machines, args.hold)
    started = time.monotonic()
    result = run(config, args.days, args.interval, args.seed)
    took = time.monotonic() - started
    print(
        f"{len(config.machines)} machines, {args.days:g} simulated days from {START:%Y-%m-%d} "
        f"(+{timedelta(days=args.days)}), seed {args.seed}, samples every {args.interval:g} s, "
        f"windows {config.windows.size_s:g} s, max_state_hold_s {args.hold:g}; {took:.0f} s"
    )
    readings = result.pop("readings")
    print(f"readings sampled {readings['sampled']:,}, delivered by exception {readings['delivered']:,}")
    for rule, counts in result.items():
        print(f"\n{rule}:")
        for key in sorted(counts):
            print(f"  {key:28s} {counts[key]:8,d}")
        stopped = sum(n for k, n in counts.items() if k.startswith("stopped ->"))
        if stopped:
            print(f"  stopped windows labelled off: {counts['stopped -> off'] / stopped:.1%}")


if __name__ == "__main__":
    main()
