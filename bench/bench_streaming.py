"""Benchmark: the feature worker against a bare kafka-python consumer on the same topic, and window memory.

    python bench/bench_streaming.py            # full run (a few minutes)
    python bench/bench_streaming.py --smoke    # tiny, seconds

Throughput: one topic partition is filled with readings, then read three times in the same run: by a bare
``KafkaConsumer`` (poll and count, nothing else), by a decoding consumer (the same, plus the worker's own
``ReadingDecoder`` on every message) and by one :class:`features.service.FeatureService` (decode with
validation, per-machine windows, features, feature vectors produced, checkpoints and offset commits). Each is
reported in readings/s, with the worker's ratio to the bare consumer (the issue's goal) and to the decoding one
(what the stream processing adds to reading and validating the messages), for messages carrying batches of
readings and for one reading per message. Memory: resident set size of a :class:`streaming.windows.WindowEngine` holding one full open window for
1,000 machines (6 sensors each, ``--rate-hz`` readings per sensor per second, ``--window-s`` long).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
import tomllib
import uuid
from datetime import UTC, datetime
from typing import Any

from features.service import FeatureService
from features.vector import window_engine
from ingest.publisher import encode_batch, encode_columns, encode_packed
from streaming.decoding import ReadingDecoder
from vigil.bus import TopicSpec, ensure_topics, make_consumer, make_producer
from vigil.config import EXAMPLE_CONFIG, KafkaSettings, Topics, VigilConfig, load_config
from vigil.contracts import Reading, is_packed, unpack_columns

SENSORS = ["bearing_temp", "vibration_rms", "motor_current", "pressure", "flow", "speed"]
LEVELS = [60.0, 3.0, 120.0, 6.0, 150.0, 1480.0]
"""A healthy pump's values, inside the example plant's valid ranges (the worker flags values outside them)."""
T0 = 1_764_000_000.0  # 2025-11-24: past event times, as a plant sends (see windows.max_clock_skew_s)


def plant(machines: int, windows: dict[str, Any], kafka: KafkaSettings, topics: Topics) -> VigilConfig:
    data = tomllib.loads(EXAMPLE_CONFIG.read_text())
    data["machines"] = [{"id": f"PMP-{i:05d}", "type": "pump", "line": "north-1"} for i in range(machines)]
    data["sources"] = {}
    data["kafka"] = kafka.model_dump()
    data["topics"] = topics.model_dump()
    data["windows"] = windows
    return load_config(data=data, environ={})


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def messages(machines: int, readings: int, per_message: int, form: str = "rows") -> list[tuple[bytes, bytes]]:
    """(key, value): each machine's sensors at 1 Hz, ``per_message`` readings per message (1 = single readings),
    as ``reading_batch`` (``form="rows"``) or ``reading_columns`` (``form="columns"``) messages."""
    out: list[tuple[bytes, bytes]] = []
    per_machine = max(1, readings // machines)
    seconds = max(1, per_machine // len(SENSORS))
    samples: dict[int, list[tuple[str, float, float]]] = {m: [] for m in range(machines)}
    for s in range(seconds):
        for m in range(machines):
            for k, sensor in enumerate(SENSORS):
                value = LEVELS[k] + (s % 17) * 0.1 + m * 0.001
                samples[m].append((sensor, T0 + s + 0.001 * k, value))
                if len(samples[m]) >= per_message:
                    out.append(_encode(m, samples[m], per_message, form))
                    samples[m] = []
    return out


def _encode(machine: int, samples: list[tuple[str, float, float]], per_message: int, form: str) -> tuple[bytes, bytes]:
    key = f"PMP-{machine:05d}".encode()
    doc: dict[str, Any]
    if per_message == 1:
        sensor, t, value = samples[0]
        doc = {"v": 1, "kind": "reading", "machine_id": key.decode(), "sensor": sensor, "ts": iso(t), "value": value}
    elif form.startswith("publisher-"):
        # What a collector sends: the publisher's own encoders, every reading with a unit and a server timestamp.
        readings = [
            Reading(
                machine_id=key.decode(),
                sensor=sensor,
                ts=datetime.fromtimestamp(t, UTC),
                value=value,
                unit="u",
                server_ts=datetime.fromtimestamp(t + 0.05, UTC),
            )
            for sensor, t, value in samples
        ]
        encoder = {"publisher-columns": encode_columns, "publisher-packed": encode_packed}.get(form, encode_batch)
        return key, encoder(key.decode(), readings, "opcua:bench")
    elif form == "columns":
        columns: dict[str, dict[str, Any]] = {}
        for sensor, t, value in samples:
            column = columns.setdefault(sensor, {"sensor": sensor, "ts": [], "value": []})
            column["ts"].append(t)
            column["value"].append(value)
        doc = {"v": 1, "kind": "reading_columns", "machine_id": key.decode(), "columns": list(columns.values())}
    else:
        rows = [{"sensor": sensor, "ts": iso(t), "value": value} for sensor, t, value in samples]
        doc = {"v": 1, "kind": "reading_batch", "machine_id": key.decode(), "samples": rows}
    return key, json.dumps(doc).encode()


def fill(kafka: KafkaSettings, topic: str, data: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(kafka, linger_ms=50)
    for key, value in data:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def bare(kafka: KafkaSettings, topic: str, expected: int, decode: bool = False) -> tuple[float, float]:
    """Seconds (wall, CPU of the process) for a bare consumer (same settings as the worker's) to read ``expected``
    messages; with ``decode``, every message is also decoded with the worker's own decoder (validation included):
    the baseline for what windowing, features, checkpoints and commits add on top of reading the messages."""
    consumer = make_consumer(
        kafka, f"bench-bare-{uuid.uuid4().hex[:8]}", [topic], max_poll_records=2000, max_partition_fetch_bytes=8 << 20
    )
    decoder = ReadingDecoder().decode_record
    seen, started, cpu = 0, None, 0.0
    while seen < expected:
        # The clock starts at the poll that returns the first records (group join and metadata excluded).
        t, c = time.perf_counter(), time.process_time()
        records = consumer.poll(timeout_ms=1000)
        if records and started is None:
            started, cpu = t, c
        for msgs in records.values():
            for msg in msgs:
                seen += 1
                if decode:
                    decoder(msg.value)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    cpu = time.process_time() - cpu
    consumer.close(autocommit=False)
    return elapsed, cpu


def worker(config: VigilConfig, expected: int) -> tuple[float, float, FeatureService]:
    service = FeatureService(config, worker_id="bench", report_interval_s=1e9)
    service.setup()
    started, cpu = None, 0.0
    last_cp = time.monotonic()
    while service.stats.messages < expected:
        t, c = time.perf_counter(), time.process_time()
        service.step()
        if service.stats.messages and started is None:
            started, cpu = t, c
        if time.monotonic() - last_cp >= config.windows.checkpoint_interval_s:
            service.checkpoint()
            last_cp = time.monotonic()
    service.checkpoint()
    elapsed = time.perf_counter() - (started or time.perf_counter())
    cpu = time.process_time() - cpu
    service.close()
    return elapsed, cpu, service


def count_readings(value: bytes) -> int:
    if is_packed(value):
        return sum(len(c.ts) for c in unpack_columns(value).columns)
    doc = json.loads(value)
    if doc["kind"] == "reading_columns":
        return sum(len(c["ts"]) for c in doc["columns"])
    return len(doc.get("samples", [1]))


def throughput(
    kafka: KafkaSettings,
    machines: int,
    readings: int,
    per_message: int,
    repeat: int,
    form: str = "rows",
    size_s: int = 60,
) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    topics = Topics(
        readings=f"bench-{run}.readings",
        features=f"bench-{run}.features",
        dead_letter=f"bench-{run}.dead-letter",
        changelog_prefix=f"bench-{run}.changelog.",
    )
    ensure_topics(kafka, [TopicSpec(topics.readings, 1)])
    data = messages(machines, readings, per_message, form)
    total = sum(count_readings(v) for _, v in data)
    fill(kafka, topics.readings, data)
    bare_rates, worker_rates, ratios, vectors = [], [], [], 0
    bare_cpu, worker_cpu = [], []
    decode_rates: list[float] = []
    decode_ratios: list[float] = []
    decode_cpu: list[float] = []
    # Alternating runs on the same data, medians reported: the machine's load drifts between runs.
    for i in range(repeat):
        windows = {"size_s": size_s, "grace_s": 5, "idle_timeout_s": 3600, "group_id": f"bench-{run}-{i}"}
        # Each pass restores from its own (empty) changelog: the passes measure steady-state throughput, not
        # reading the previous passes' checkpoints.
        config = plant(machines, windows, kafka, topics.model_copy(update={"changelog_prefix": f"bench-{run}-{i}."}))
        t_bare, c_bare = bare(kafka, topics.readings, len(data))
        t_decode, c_decode = bare(kafka, topics.readings, len(data), decode=True)
        t_worker, c_worker, service = worker(config, len(data))
        decode_rates.append(total / t_decode)
        decode_ratios.append(t_decode / t_worker)
        decode_cpu.append(c_decode / total * 1e6)
        bare_cpu.append(c_bare / total * 1e6)
        worker_cpu.append(c_worker / total * 1e6)
        bare_rates.append(total / t_bare)
        worker_rates.append(total / t_worker)
        ratios.append(t_bare / t_worker)
        vectors = service.stats.vectors
    return {
        "messages": len(data),
        "readings": total,
        "bare_readings_per_s": statistics.median(bare_rates),
        "worker_readings_per_s": statistics.median(worker_rates),
        "ratio": statistics.median(ratios),
        "bare_cpu_us": statistics.median(bare_cpu),
        "worker_cpu_us": statistics.median(worker_cpu),
        "decoding_readings_per_s": statistics.median(decode_rates),
        "decoding_ratio": statistics.median(decode_ratios),
        "decoding_cpu_us": statistics.median(decode_cpu),
        "vectors": vectors,
    }


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory(machines: int, window_s: int, rate_hz: float) -> dict[str, float]:
    kafka = KafkaSettings()
    config = plant(machines, {"size_s": window_s, "grace_s": 0, "idle_timeout_s": 3600}, kafka, Topics())
    engine = window_engine(config)
    gc.collect()
    before = rss_bytes()
    per_sensor = int(window_s * rate_hz)
    for m in range(machines):
        mid = f"PMP-{m:05d}"
        engine.add_samples(
            mid, ((sensor, T0 + i / rate_hz, 1.0 + i) for i in range(per_sensor - 1) for sensor in SENSORS)
        )
    gc.collect()
    after = rss_bytes()
    held = engine.open_readings()
    return {
        "machines": machines,
        "open_readings": held,
        "rss_mb": (after - before) / 2**20,
        "rss_mb_per_1000_machines": (after - before) / 2**20 * 1000 / machines,
        "bytes_per_reading": (after - before) / max(held, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark runs")
    parser.add_argument("--bootstrap", default=os.environ.get("VIGIL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    parser.add_argument("--readings", type=int, default=2_000_000, help="readings in the batched run")
    parser.add_argument("--single-readings", type=int, default=200_000, help="readings in the one-per-message run")
    parser.add_argument("--batch", type=int, default=120, help="readings per message in the batched run")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="alternating bare/worker runs; medians are reported")
    parser.add_argument("--size-s", type=int, default=60, help="throughput: window length (60 s: windows close often)")
    parser.add_argument(
        "--cases",
        default="rows,columns,publisher-rows,publisher-columns,publisher-packed,single",
        help="comma-separated: rows, columns (3 keys per reading, as in the first benchmark), publisher-rows, "
        "publisher-columns, publisher-packed (the collectors' encodings, with unit and server timestamp), single",
    )
    parser.add_argument("--window-s", type=int, default=600, help="memory: window length")
    parser.add_argument("--rate-hz", type=float, default=1.0, help="memory: readings per sensor per second")
    args = parser.parse_args()
    if args.smoke:
        args.readings, args.single_readings, args.machines, args.window_s, args.repeat = 24_000, 3_000, 20, 60, 1
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, client_id="vigil-bench")
    print(
        f"vigil streaming benchmark ({'smoke' if args.smoke else 'full'}), Kafka {args.bootstrap}, "
        f"{args.machines} machines x {len(SENSORS)} sensors at 1 Hz, {args.size_s}s tumbling windows"
    )
    # Memory first, in a process that has not allocated (and freed) the throughput runs' data yet.
    m = memory(1000 if not args.smoke else 50, args.window_s, args.rate_hz)
    cases = {
        "rows": (f"rows, batches of {args.batch}", args.readings, args.batch, "rows"),
        "columns": (f"columns, batches of {args.batch}", args.readings, args.batch, "columns"),
        "publisher-rows": (f"publisher rows, {args.batch}", args.readings, args.batch, "publisher-rows"),
        "publisher-columns": (f"publisher columns, {args.batch}", args.readings, args.batch, "publisher-columns"),
        "publisher-packed": (f"publisher packed, {args.batch}", args.readings, args.batch, "publisher-packed"),
        "single": ("one reading per message", args.single_readings, 1, "rows"),
    }
    for name in args.cases.split(","):
        label, readings, per_message, form = cases[name]
        r = throughput(kafka, args.machines, readings, per_message, args.repeat, form, args.size_s)
        print(
            f"  {label:<28} {int(r['readings']):>9} readings in {int(r['messages']):>7} messages: "
            f"bare consumer {r['bare_readings_per_s']:>10,.0f}/s, worker {r['worker_readings_per_s']:>10,.0f}/s, "
            f"ratio {r['ratio']:.2f} (medians of {args.repeat}), {int(r['vectors'])} feature vectors per run; "
            f"CPU per reading: bare {r['bare_cpu_us']:.2f} us, worker {r['worker_cpu_us']:.2f} us\n"
            f"  {'':<28} decoding consumer (bare + the worker's decoder) {r['decoding_readings_per_s']:>10,.0f}/s, "
            f"worker/decoding ratio {r['decoding_ratio']:.2f}, CPU per reading {r['decoding_cpu_us']:.2f} us"
        )
    print(
        f"  memory: {int(m['machines'])} machines x {len(SENSORS)} sensors x {args.window_s}s at {args.rate_hz:g} Hz "
        f"= {int(m['open_readings']):,} open readings: {m['rss_mb']:.1f} MB RSS "
        f"({m['rss_mb_per_1000_machines']:.1f} MB per 1,000 machines, {m['bytes_per_reading']:.1f} B/reading)"
    )


if __name__ == "__main__":
    main()
