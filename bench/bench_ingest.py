"""How many readings per second one collector process publishes to the real Kafka, and where the time goes.

Run by hand against the broker ``vigil services up`` started (never in the test suite)::

    python bench/bench_ingest.py                 # 400k readings, 12 machines x 6 sensors
    python bench/bench_ingest.py --smoke         # tiny, to check it runs
    python bench/bench_ingest.py --compression none --readings 1000000 --profile

Stages, each timed alone on the same readings (per-reading microseconds and the rate they would allow):

* ``build``: constructing validated :class:`Reading` objects (what a collector does per value it receives);
* ``validate``: :meth:`Validator.check` (ranges, quality, unknown machines);
* ``encode``: batching into per-machine :class:`ReadingBatch` JSON (:func:`encode_batch`);
* ``publish``: :meth:`KafkaPublisher.add` of pre-built readings until every one is acknowledged by Kafka
  (batching + encoding + producer + compression + network; the number the goal is about);
* ``collector``: build + validate + publish, the whole path of one collector process;
* ``spool``: ``add()`` with Kafka unreachable, until every batch is committed to the on-disk spool.

``--profile`` adds a cProfile of the publish stage grouped into encoding / publisher / producer (kafka-python,
caller thread only; compression and the network run on the producer's I/O thread).
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import os
import pstats
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest.publisher import KafkaPublisher, encode_batch
from ingest.validation import Validator
from vigil.bus import TopicSpec, ensure_topics
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics, VigilConfig, load_config
from vigil.contracts import Reading


def make_raw(config: VigilConfig, n: int) -> list[tuple[str, str, datetime, float, str]]:
    """``n`` plausible values: every sensor of every machine, 10 ms apart, mid-range."""
    points = [
        (m.id, name, spec.unit, (spec.range.min + spec.range.max) / 2)
        for m in config.machines_by_id.values()
        for name, spec in m.sensors.items()
    ]
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        machine, sensor, unit, mid = points[i % len(points)]
        out.append((machine, sensor, t0 + timedelta(milliseconds=10 * (i // len(points))), mid + (i % 7) * 0.01, unit))
    return out


def build(raw: list[tuple[str, str, datetime, float, str]]) -> list[Reading]:
    return [Reading(machine_id=m, sensor=s, ts=t, value=v, unit=u, source="bench") for m, s, t, v, u in raw]


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process (every thread, so the producer's I/O thread too), result."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def publish(readings: list[Reading], kafka: KafkaSettings, topics: Topics, spool: Path, batch: int) -> KafkaPublisher:
    publisher = KafkaPublisher(
        kafka, topics, SpoolSettings(path=spool), PublishSettings(batch_max_samples=batch), source="bench"
    )
    publisher.start()
    for r in readings:
        publisher.add(r)
    publisher.close(timeout_s=300)
    return publisher


def bench_mqtt(config: VigilConfig, kafka: KafkaSettings, topics: Topics, tmp: Path, n: int) -> None:
    """JSON readings pushed through the real broker, mapped, validated and published, single and in arrays of 50."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    from ingest.mqtt import MqttCollector
    from vigil.config import MqttSource

    raw = make_raw(config, n)
    payloads = [{"machine": m, "sensor": s, "ts": t.isoformat(), "value": v, "unit": u} for m, s, t, v, u in raw]
    for label, per_message in (("1 reading/message", 1), ("50 readings/message", 50)):
        run = uuid.uuid4().hex[:8]
        source = MqttSource(name=f"bench-{run}", topics=[f"vigil-bench/{run}/#"], qos=1)
        publisher = KafkaPublisher(kafka, topics, SpoolSettings(path=tmp / f"spool-mqtt-{run}.sqlite"))
        publisher.start()
        collector = MqttCollector(config.mqtt, source, publisher, Validator(config))
        collector.start()
        collector.wait_subscribed(30)
        sender = Client(CallbackAPIVersion.VERSION2)
        sender.max_queued_messages_set(0)
        sender.max_inflight_messages_set(1000)
        sender.connect(config.mqtt.host, config.mqtt.port)
        sender.loop_start()
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, n, per_message):
            chunk = payloads[i : i + per_message]
            body = json.dumps(chunk if per_message > 1 else chunk[0]).encode()
            sender.publish(f"vigil-bench/{run}/{chunk[0]['machine']}", body, qos=1)
            # Closed loop: at most ~500 messages ahead of the collector. Mosquitto drops QoS 1 messages for a
            # subscriber whose queue (max_queued_messages, 1000 by default) is full, so an open-loop sender
            # would measure the broker's drops, not the collector.
            while (i // per_message) - collector.counters["received"] > 500:
                time.sleep(0.001)
        deadline = time.monotonic() + 300
        while collector.counters["accepted"] < n and time.monotonic() < deadline:
            time.sleep(0.01)
        collector.stop()
        publisher.close(timeout_s=120)
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        sender.disconnect()
        sender.loop_stop()
        ok = "" if publisher.counters.sent == n else f"  ERROR: sent {publisher.counters.sent} of {n}"
        print(
            f"mqtt {label:<22} {n:,} readings in {wall:.2f} s: {n / wall:,.0f} readings/s "
            f"(cpu {used / n * 1e6:.1f} us/reading, sender included){ok}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=500, help="batch_max_samples")
    parser.add_argument("--compression", default=None, help="gzip | zstd | none (default: the configuration's)")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: the configuration's)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="5,000 readings: checks that the bench runs")
    parser.add_argument(
        "--mqtt", type=int, default=0, metavar="N", help="also push N JSON readings through the MQTT broker"
    )
    args = parser.parse_args(argv)
    n = 5_000 if args.smoke else args.readings

    config = load_config()
    kafka = config.kafka
    updates: dict[str, Any] = {"client_id": "vigil-bench"}
    if args.bootstrap:
        updates["bootstrap_servers"] = args.bootstrap
    if args.compression:
        updates["compression"] = args.compression
    kafka = kafka.model_copy(update=updates)
    run = uuid.uuid4().hex[:8]
    topics = Topics(readings=f"bench-{run}.readings", dead_letter=f"bench-{run}.dead-letter")
    ensure_topics(kafka, [TopicSpec(topics.readings, kafka.partitions)])
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))

    raw = make_raw(config, n)
    rows: list[tuple[str, float, float]] = []

    t, cpu, readings = timed(lambda: build(raw))
    rows.append(("build (Reading validation)", t, cpu))
    validator = Validator(config)
    t, cpu, _ = timed(lambda: [validator.check(r) for r in readings])
    rows.append(("validate (Validator.check)", t, cpu))
    by_machine: dict[str, list[Reading]] = {}
    for r in readings:
        by_machine.setdefault(r.machine_id, []).append(r)
    chunks = [(m, rs[i : i + args.batch]) for m, rs in by_machine.items() for i in range(0, len(rs), args.batch)]
    t, cpu, encoded = timed(lambda: [encode_batch(m, c, "bench") for m, c in chunks])
    rows.append(("encode (ReadingBatch JSON)", t, cpu))

    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    t, cpu, publisher = timed(lambda: publish(readings, kafka, topics, tmp / "spool-1.sqlite", args.batch))
    if profiler:
        profiler.disable()
    rows.append(("publish (add -> acked by Kafka)", t, cpu))
    c = publisher.counters
    if c.sent != n:
        print(f"ERROR: sent {c.sent} of {n} (spooled {c.spooled}, dropped {c.dropped})", file=sys.stderr)
        return 1

    def collector() -> KafkaPublisher:
        built = build(raw)
        checked = [x for x in (validator.check(r) for r in built) if x is not None]
        return publish(checked, kafka, topics, tmp / "spool-2.sqlite", args.batch)

    t, cpu, _ = timed(collector)
    rows.append(("collector (build+validate+publish)", t, cpu))

    # Spooling: Kafka unreachable (a closed port), every batch goes to the on-disk spool.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    down = kafka.model_copy(update={"bootstrap_servers": closed})
    spooler = KafkaPublisher(
        down,
        topics,
        SpoolSettings(path=tmp / "spool-3.sqlite", retry_interval_s=600),
        PublishSettings(batch_max_samples=args.batch, connect_timeout_s=0.5),
    )
    spooler.start()

    def spool_all() -> None:
        for r in readings:
            spooler.add(r)
        spooler.flush(0.1)

    t, cpu, _ = timed(spool_all)
    rows.append(("spool (Kafka down, add -> on disk)", t, cpu))
    spooled, backlog, spool_bytes = spooler.counters.spooled, spooler.backlog, spooler.backlog_bytes
    spooler.close(timeout_s=1)
    if spooled != n or backlog != n:
        print(f"ERROR: spooled {spooled}, backlog {backlog} of {n}", file=sys.stderr)
        return 1

    sizes = [len(e) for e in encoded]
    sample = encoded[len(encoded) // 2]
    print(f"readings: {n:,}  machines: {len(by_machine)}  batch: {args.batch}  compression: {kafka.compression}")
    print(f"{'stage':<38}{'wall s':>8}{'readings/s':>12}{'cpu s':>8}{'cpu us/rd':>10}{'readings/cpu-s':>16}")
    for name, seconds, cpu in rows:
        print(
            f"{name:<38}{seconds:>8.2f}{n / seconds:>12,.0f}{cpu:>8.2f}{cpu / n * 1e6:>10.2f}{n / max(cpu, 1e-9):>16,.0f}"
        )
    print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
    print(
        f"messages: {c.messages_sent:,}  readings/message: {n / c.messages_sent:.0f}  "
        f"message size: {sum(sizes) / len(sizes) / 1024:.1f} KiB JSON, "
        f"{len(sample) / args.batch:.0f} B/reading, gzip level {config.publish.gzip_level} "
        f"{len(gzip.compress(sample, config.publish.gzip_level)) / args.batch:.1f} B/reading; "
        f"spool {spool_bytes / n:.1f} B/reading on disk"
    )
    if profiler:
        stats = pstats.Stats(profiler)
        groups = {"encoding": 0.0, "publisher (buffering)": 0.0, "producer (kafka-python)": 0.0, "other": 0.0}
        encoding_names = ("encode_batch", "isoformat", "repr", "dumps", "encode", "join", "isfinite")
        for (file, _, func), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
            if "kafka/" in file or "socket" in func:
                groups["producer (kafka-python)"] += tottime
            elif any(name in func for name in encoding_names) or "json" in file:
                groups["encoding"] += tottime
            elif file.endswith("publisher.py") or "lock" in func or "append" in func or "get' of 'dict" in func:
                groups["publisher (buffering)"] += tottime
            else:
                groups["other"] += tottime
        total = sum(groups.values())
        print("profile of the publish stage (caller thread, self time):")
        for name, seconds in groups.items():
            print(f"  {name:<26}{seconds:>7.2f}s {seconds / total:>6.1%}")
        stats.sort_stats("tottime").print_stats(12)
    if args.mqtt:
        bench_mqtt(config, kafka, topics, tmp, 500 if args.smoke else args.mqtt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
