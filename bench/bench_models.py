"""Models stage benchmark: predictions per second and memory per 1,000 machines.

Runs the pure :class:`~models.pipeline.FleetModel` (what the service runs per record, without Kafka) over
synthetic pump windows and reports:

* predictions per second (predict + learn + label bookkeeping per window);
* memory of the learnt state per 1,000 machines: traced Python allocations of the model (per-machine normals,
  sensor health, smoothing, type models, pending labels), the pending-label count, and the checkpoint size.

    python bench/bench_models.py                 # 250 machines x 320 windows (53 h of 10-min windows each,
                                                 # past the 48 h horizon: pending labels at steady state),
                                                 # memory scaled to 1,000 machines (it is linear in machines)
    python bench/bench_models.py --smoke         # seconds, for CI
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from datetime import UTC, datetime

from models.checkpoint import dumps, feature_schema
from models.pipeline import FleetModel
from models.synthetic import pump_fleet
from vigil.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=250)
    parser.add_argument("--windows", type=int, default=320, help="windows per machine (10 min each)")
    parser.add_argument("--smoke", action="store_true", help="tiny run: 20 machines x 60 windows")
    args = parser.parse_args()
    machines, windows = (20, 60) if args.smoke else (args.machines, args.windows)
    config = load_config(environ={})
    vectors = list(pump_fleet(machines, datetime(2026, 3, 2, tzinfo=UTC), windows, seed=1))

    warm = FleetModel(config.models, config.machines_by_id, config.machine_types)
    for fv in vectors[: machines * 2]:
        warm.process(fv)  # imports (River, scipy) happen here, not inside the measured state
    del warm
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model = FleetModel(config.models, config.machines_by_id, config.machine_types)
    started = time.perf_counter()
    for fv in vectors:
        model.process(fv)
    elapsed = time.perf_counter() - started
    gc.collect()
    state_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()

    header, chunks = dumps(model, {}, feature_schema(config))
    checkpoint = sum(len(c) for c in chunks) + len(header)
    per_k = 1000.0 / machines
    pending = model.pending.count()
    # Throughput without tracemalloc's overhead, on a fresh model.
    fresh = FleetModel(config.models, config.machines_by_id, config.machine_types)
    started = time.perf_counter()
    for fv in vectors:
        fresh.process(fv)
    fast = time.perf_counter() - started
    print(f"machines {machines}, windows per machine {windows}, predictions {len(vectors)}")
    print(f"predictions per second: {len(vectors) / fast:,.0f} ({fast:.1f} s; {len(vectors) / elapsed:,.0f} traced)")
    print(f"state memory per 1,000 machines: {state_bytes * per_k / 2**20:,.1f} MiB (traced allocations)")
    print(
        f"pending labels: {pending} ({pending / machines:.0f} per machine; sampling skipped {model.pending.skipped_by_sampling})"
    )
    print(f"checkpoint per 1,000 machines: {checkpoint * per_k / 2**20:,.2f} MiB compressed in {len(chunks)} chunk(s)")


if __name__ == "__main__":
    main()
