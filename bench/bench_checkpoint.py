"""Benchmark: what a feature worker's checkpoints write, whole state against incremental (base + deltas).

    python bench/bench_checkpoint.py            # 200 machines x 6 sensors at 1 Hz, 600 s windows, 30 min
    python bench/bench_checkpoint.py --smoke    # tiny, a few seconds (with --restore: needs the broker)
    python bench/bench_checkpoint.py --restore  # also: restore from the real broker (vigil services up kafka)

A window engine is fed every machine's next ``--every`` seconds of readings (noisy values, as a real sensor
gives), then every machine is checkpointed, round after round, as the worker does every ``checkpoint_interval_s``
in real time. Two engines on the same data: one writes each machine's whole state every time (what the worker did
before incremental checkpoints: ``machine_state`` + ``encode_checkpoint``), the other what the worker writes now
(``checkpoint_state``: a delta of the new readings, or a base after a window closed or every ``--max-deltas``).
Reported per checkpoint, scaled to 1,000 machines: bytes written and CPU. Kafka-free: the changelog's records are
encoded, not sent.

``--restore`` then sends the incremental run's records (bases, deltas and the tombstones of old deltas, with the
worker's keys) to a fresh compacted topic on a real broker and times what a worker taking over does: read the
changelog to its end (``Changelog.read``: keep the latest record per key, decode, merge each base with its deltas)
and load every machine into a window engine. Twice: with every record of the run still in the topic (the
uncompacted tail a restore reads until the log cleaner has run; the active segment is never compacted), and with
only the records compaction keeps (the latest per key, no tombstones). Then once more with the changelog in 4
partitions, as the worker lays it out for 4 reading partitions: what one of 4 workers restores.
"""

from __future__ import annotations

import argparse
import os
import time
import tomllib
from typing import Any

import numpy as np

from features.vector import window_engine
from streaming.changelog import MAX_DELTAS, Changelog, encode_checkpoint
from vigil.bus import TopicSpec, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, VigilConfig, load_config

SENSORS = ["bearing_temp", "vibration_rms", "motor_current", "pressure", "flow", "speed"]
T0 = 1_764_000_000.0


def plant(machines: int, size_s: float) -> VigilConfig:
    data = tomllib.loads(EXAMPLE_CONFIG.read_text())
    data["machines"] = [{"id": f"PMP-{i:05d}", "type": "pump", "line": "north-1"} for i in range(machines)]
    data["sources"] = {}
    data["windows"] = {"size_s": size_s, "grace_s": 5, "idle_timeout_s": 3600}
    return load_config(data=data, environ={})


GROUP = "bench"


def key(machine: str, delta: int = 0) -> bytes:
    return f"{GROUP}/{machine}#{delta}".encode() if delta else f"{GROUP}/{machine}".encode()


def run(
    config: VigilConfig,
    machines: int,
    seconds: int,
    every: int,
    incremental: bool,
    max_deltas: int,
    sent: list[tuple[bytes, bytes | None]] | None = None,
) -> Any:
    engine = window_engine(config)
    rng = np.random.default_rng(3)
    ids = [f"PMP-{m:05d}" for m in range(machines)]
    chain = dict.fromkeys(ids, -1)  # deltas since the machine's base (-1: no base yet)
    lineages = dict.fromkeys(ids, "")
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
                old = max(chain[mid], 0) if not is_delta else 0  # a new base removes the previous base's deltas
                tombstones += old
                chain[mid] = chain[mid] + 1 if is_delta else 0
                bases += not is_delta
                lineage = f"{t0:016d}" if not is_delta else lineages[mid]
                lineages[mid] = lineage
                value = encode_checkpoint({"readings:0": t0}, state, lineage=lineage, delta=chain[mid])
                if sent is not None:
                    sent.append((key(mid, chain[mid]), value))
                    sent += [(key(mid, k), None) for k in range(1, old + 1)]
            written += len(value)
            records += 1
        cpu += time.process_time() - started
    rounds = seconds // every
    return written / rounds * 1000 / machines, cpu / rounds * 1000 / machines, records, bases, tombstones


def restore(
    config: VigilConfig,
    kafka: KafkaSettings,
    sent: list[tuple[bytes, bytes | None]],
    machines: int,
    compacted: bool,
    partitions: int = 1,
) -> None:
    """Send ``sent`` to a fresh changelog topic of ``partitions`` partitions (machine ``i`` in partition
    ``i % partitions``, as the worker places a machine by its readings partition), then time a restore of
    partition 0 (read, decode, merge, load): what one of ``partitions`` workers reads after a rebalance."""
    if compacted:
        latest = dict(sent)
        sent = [(k, v) for k, v in latest.items() if v is not None]
    topic = TopicSpec(f"bench-changelog-{time.time_ns()}", partitions=partitions, compacted=True)
    changelog = Changelog(kafka, topic, GROUP)
    changelog.ensure(partitions)
    producer = make_producer(kafka, linger_ms=20)
    for k, v in sent:
        index = int(k.split(b"-")[-1].split(b"#")[0])
        producer.send(topic.name, key=k, value=v, partition=changelog.partition(index))
    producer.flush(timeout=300)
    producer.close()
    wall, cpu = time.perf_counter(), time.process_time()
    checkpoints = changelog.read({0}, timeout_s=600)
    read_wall, read_cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine = window_engine(config)
    for machine, checkpoint in checkpoints.items():
        engine.load_machine_state(machine, checkpoint.machine)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    owned = len(range(0, machines, partitions))
    assert len(checkpoints) == owned, (len(checkpoints), owned)
    size = sum(len(v or b"") for _, v in sent) / partitions
    label = ("compacted" if compacted else "uncompacted") + (
        f", 1 of {partitions} partitions" if partitions > 1 else ""
    )
    print(
        f"  restore, {label:<30} {changelog.records_read:7d} records, {size / 1e6:6.1f} MB: read + merge "
        f"{read_wall:5.2f} s ({read_cpu:5.2f} s CPU), with loading {owned} machines {wall:5.2f} s ({cpu:5.2f} s CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark runs")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=30, help="event time fed")
    parser.add_argument("--every", type=int, default=5, help="seconds of readings between checkpoints")
    parser.add_argument("--size-s", type=float, default=600.0, help="window length")
    parser.add_argument("--max-deltas", type=int, default=MAX_DELTAS)
    parser.add_argument("--restore", action="store_true", help="also time a restore from a real broker")
    parser.add_argument("--bootstrap", default=os.environ.get("VIGIL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    args = parser.parse_args()
    if args.smoke:
        args.machines, args.minutes, args.restore = 5, 3, True
    config = plant(args.machines, args.size_s)
    print(
        f"vigil checkpoint benchmark ({'smoke' if args.smoke else 'full'}): {args.machines} machines x "
        f"{len(SENSORS)} sensors at 1 Hz, {args.size_s:g}s windows, a checkpoint every {args.every}s, "
        f"{args.minutes} min; per checkpoint, scaled to 1,000 machines"
    )
    sent: list[tuple[bytes, bytes | None]] = []
    for incremental in (False, True):
        size, cpu, records, bases, tombstones = run(
            config, args.machines, args.minutes * 60, args.every, incremental, args.max_deltas, sent
        )
        label = "incremental (deltas)" if incremental else "whole state"
        print(
            f"  {label:<22} {size / 1e6:7.2f} MB written, {cpu * 1000:6.0f} ms CPU "
            f"({records} records, {bases} of them whole; {tombstones} tombstones of old deltas, key only)"
        )
    if args.restore:
        kafka = KafkaSettings(bootstrap_servers=args.bootstrap, client_id="vigil-bench")
        for compacted in (False, True):
            restore(config, kafka, sent, args.machines, compacted)
        restore(config, kafka, sent, args.machines, True, partitions=4)


if __name__ == "__main__":
    main()
