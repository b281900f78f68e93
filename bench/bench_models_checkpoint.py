"""Models stage durable state: checkpoint size per 1,000 machines and restore time, against the real broker.

Builds the state of ``--machines`` pumps with :class:`~models.pipeline.FleetModel` (synthetic windows, past the
48 h horizon by default so the pending labels are at steady state), then:

* sizes: each machine's record (:func:`models.checkpoint.dump_machine`), the shared per-type models
  (:func:`models.checkpoint.dumps_shared`) and, for comparison, the whole model in one checkpoint;
* writes 1,000 machine records (the built states, repeated under new ids up to 1,000) and a marker per partition
  to a fresh ``models.machines`` changelog topic with ``--partitions`` partitions, acknowledged (write time);
* restore: what a worker does on assignment of every partition -- read the changelog partitions to their end,
  check and unpickle every record, import it into a model (restore time, and per partition);
* revocation: what runs on kafka-python's IO thread (no heartbeats meanwhile, the whole group waits) when a
  worker's partitions are revoked: a marker per partition (now), versus serialising and writing every machine
  handled since the last checkpoint (before);
* ``--rounds N``: the records written N times (N checkpoints of every machine) before the restore, to see what
  the restore reads before and after the broker compacts (``--segment-ms`` small to let it compact during the
  run; ``--wait-compaction`` seconds to wait for it).

    python bench/bench_models_checkpoint.py            # 250 machines x 320 windows, 1,000 records, 4 partitions
    python bench/bench_models_checkpoint.py --smoke    # seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime

from models.changelog import MARKER, MachineChangelog, encode_marker
from models.checkpoint import dump_machine, dumps, dumps_shared, feature_schema, load_machine
from models.pipeline import FleetModel
from models.synthetic import pump_fleet
from vigil.bus import make_producer
from vigil.config import VigilConfig, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=250, help="distinct machine states built")
    parser.add_argument("--windows", type=int, default=320, help="windows per machine (10 min each)")
    parser.add_argument("--records", type=int, default=1000, help="machine records written and restored")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="times every record is written (checkpoints)")
    parser.add_argument("--segment-ms", type=int, default=None, help="segment.ms of the bench topic")
    parser.add_argument("--wait-compaction", type=float, default=0.0, help="seconds to wait, then restore again")
    parser.add_argument("--smoke", action="store_true", help="tiny run: 20 machines x 60 windows, 100 records")
    args = parser.parse_args()
    machines, windows, records = (20, 60, 100) if args.smoke else (args.machines, args.windows, args.records)
    config = load_config(environ={})
    schema = feature_schema(config)
    model = FleetModel(config.models, config.machines_by_id, config.machine_types)
    started = time.perf_counter()
    for fv in pump_fleet(machines, datetime(2026, 3, 2, tzinfo=UTC), windows, seed=1):
        model.process(fv)
    print(f"state of {machines} machines x {windows} windows built in {time.perf_counter() - started:.1f}s")

    ids = model.machine_ids()
    started = time.perf_counter()
    values = []
    for i in range(records):
        state = model.export_machine(ids[i % len(ids)])
        assert state is not None
        values.append(dump_machine(f"M-{i:05d}", state, {"features:0": i, "maintenance:0": 0}, schema, None))
    dump_s = time.perf_counter() - started
    sizes = [len(v) for v in values]
    header, chunks = dumps_shared(model, schema)
    shared = len(header) + sum(len(c) for c in chunks)
    whole_header, whole_chunks = dumps(model, {}, schema)
    whole = (len(whole_header) + sum(len(c) for c in whole_chunks)) * 1000 / machines
    per_k = sum(sizes) * 1000 / records
    print(
        f"machine record: mean {statistics.mean(sizes) / 1024:.1f} KiB, median {statistics.median(sizes) / 1024:.1f}"
        f" KiB, max {max(sizes) / 1024:.1f} KiB; {model.pending.count() / machines:.0f} pending labels per machine"
    )
    print(f"per 1,000 machines: {per_k / 2**20:.1f} MiB of machine records, dumped in {dump_s * 1000 / records:.2f}s")
    print(f"shared per-type models (per worker): {shared / 1024:.1f} KiB")
    print(f"for comparison, the whole model as one checkpoint: {whole / 2**20:.1f} MiB per 1,000 machines")

    run = uuid.uuid4().hex[:8]
    log = MachineChangelog(config.kafka, f"bench-{run}.changelog.models.machines", f"bench-{run}")
    log.ensure(args.partitions)
    if args.segment_ms is not None:
        from kafka import KafkaAdminClient
        from kafka.admin import ConfigResource, ConfigResourceType

        admin = KafkaAdminClient(**config.kafka.client_kwargs(), client_id="bench-admin")
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, log.topic, {"segment.ms": str(args.segment_ms)})
            admin.alter_configs([resource])
        finally:
            admin.close()
    producer = make_producer(config.kafka, max_request_size=16 * 1024 * 1024)
    try:
        started = time.perf_counter()
        for _ in range(args.rounds):
            futures = [
                log.send(producer, i % args.partitions, log.key(f"M-{i:05d}"), value) for i, value in enumerate(values)
            ]
            futures += [
                log.send(producer, p, log.key(MARKER), encode_marker({f"features:{p}": records}, "bench"))
                for p in range(args.partitions)
            ]
            for future in futures:
                future.get(timeout=120)
        write_s = (time.perf_counter() - started) / args.rounds
        started = time.perf_counter()
        markers = [
            log.send(producer, p, log.key(MARKER), encode_marker({f"features:{p}": records}, "bench"))
            for p in range(args.partitions)
        ]
        producer.flush(timeout=60)
        for future in markers:
            future.get(timeout=60)
        mark_s = time.perf_counter() - started
    finally:
        producer.close()
    print(f"write {records} records + {args.partitions} markers, acknowledged: {write_s:.2f}s (per round)")
    print(
        f"revocation on the IO thread: {mark_s:.3f}s for {args.partitions} markers (now); serialising and writing "
        f"{records} machines handled since the last checkpoint (before): {dump_s + write_s:.2f}s"
    )
    restore(log, config, schema, args.partitions, records)
    if args.wait_compaction > 0:
        print(f"waiting {args.wait_compaction:.0f}s for the log cleaner ...")
        time.sleep(args.wait_compaction)
        restore(log, config, schema, args.partitions, records)
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**config.kafka.client_kwargs(), client_id="bench-admin")
    try:
        admin.delete_topics([log.topic])
    finally:
        admin.close()


def restore(log: MachineChangelog, config: VigilConfig, schema: str, partitions: int, records: int) -> None:
    target = FleetModel(config.models, config.machines_by_id, config.machine_types)
    started = time.perf_counter()
    stored = log.read(set(range(partitions)))
    read_s = time.perf_counter() - started
    restored = 0
    for partition in stored.values():
        for machine, value in partition.machines.items():
            target.import_machine(machine, load_machine(value, schema).state)
            restored += 1
    restore_s = time.perf_counter() - started
    assert restored == records, (restored, records)
    print(
        f"restore {restored} machines from {partitions} partitions ({sum(p.records for p in stored.values())} "
        f"records read): {restore_s:.2f}s (read {read_s:.2f}s, check+unpickle+import {restore_s - read_s:.2f}s); "
        f"per 1,000 machines {restore_s * 1000 / restored:.2f}s"
    )


if __name__ == "__main__":
    main()
