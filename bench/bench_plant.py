"""Plant-scale load: N machines x S sensors at R Hz through Kafka -> features -> models -> alerts -> InfluxDB.

A generated plant (one machine type of ``--sensors`` sensors, one with a hard limit, one the running sensor) is fed
in real time by a load generator in its own process, on the collectors' own path (:class:`ingest.publisher.
KafkaPublisher`: per-machine batches, write-ahead spool, idempotent producer; readings built without validation so
the generator is not the bottleneck), into the real Kafka. The feature worker, the models service and the alerts
service (which writes to the real InfluxDB) run as their own processes, on topics, groups and a database of this run.

Reported (JSON on stdout):

* the rate offered and sustained: readings the feature worker consumed per second over the run, and whether its
  lag stayed bounded (the last third of the run does not grow and ends under ``--hz`` x 5 s of input);
* per stage (and the generator): CPU seconds per second (1.0 = one core) and RSS, sampled from ``/proc``;
* consumer lag of each stage's group over time (records, sampled every 2 s; transactional topics count their
  commit markers, so a drained group shows a few);
* latency percentiles from every record (:class:`vigil.latency.LatencyRecorder`): window close (end + grace) ->
  feature vector, prediction and alert transition produced (``*_out``) and visible downstream (``*_visible``).

    python bench/bench_plant.py                       # 1,000 machines x 20 sensors at 1 Hz, 10 minutes
    python bench/bench_plant.py --seconds 120 --hz 2  # 40,000 readings/s for 2 minutes
    python bench/bench_plant.py --smoke               # 50 machines x 20 sensors, 20 s: that it works

Run it on a quiet machine: every number depends on what else shares the cores (the report carries the load average
before and after).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
LIMITED = "s01"
RUNNING = "speed"


def plant_toml(machines: int, sensors: int) -> str:
    """One site, one line, one machine type of ``sensors`` sensors (``s01`` limited, ``speed`` the running one)."""
    lines = [
        'plant = "Bench plant"',
        '[[sites]]\nid = "site"\nname = "Site"',
        '[[lines]]\nid = "line"\nsite = "site"\nname = "Line"',
        "[machine_types.unit]",
        'description = "Generated machine"',
        f'running_sensor = "{RUNNING}"',
        "off_below = 100.0",
        "[machine_types.unit.sensors]",
        f'{LIMITED} = {{ unit = "degC", range = {{ min = -20, max = 200 }}, limits = {{ high = 120 }}, key = true }}',
        f'{RUNNING} = {{ unit = "rpm", range = {{ min = 0, max = 3600 }} }}',
    ]
    lines += [f's{i:02d} = {{ unit = "u", range = {{ min = -1000, max = 1000 }} }}' for i in range(2, sensors)]
    lines += [f'[[machines]]\nid = "M{m:05d}"\ntype = "unit"\nline = "line"' for m in range(machines)]
    return "\n".join(lines) + "\n"


def generate(
    env: dict[str, str], machines: range, sensors: int, hz: float, start: float, seconds: float, out: Any
) -> None:
    """One load generator (its own process, like one collector): every 1/hz s from ``start``, one reading of every
    sensor of its ``machines``, stamped with the tick's time, into the collectors' publisher; until ``seconds``
    of wall clock have passed (a generator that falls behind offers less, and says how far behind it was)."""
    os.environ.update(env)
    from ingest.publisher import KafkaPublisher
    from vigil.config import load_config
    from vigil.contracts import Reading

    config = load_config()
    names = [LIMITED, RUNNING, *(f"s{i:02d}" for i in range(2, sensors))]
    ids = [f"M{m:05d}" for m in machines]
    rng = random.Random(7)
    base = {name: rng.uniform(10.0, 90.0) for name in names}
    base[RUNNING] = 1500.0
    source = f"bench-{machines.start}"  # its own spool
    publisher = KafkaPublisher(config.kafka, config.topics, config.spool, config.publish, source=source)
    publisher.start()
    started = start
    cpu0 = time.process_time()
    tick = 0
    behind = 0.0
    try:
        while True:
            due = started + tick / hz
            if due - started >= seconds or time.time() - started >= seconds:
                break
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            else:
                behind = max(behind, -wait)
            ts = datetime.fromtimestamp(due, UTC)
            jitter = rng.random()
            for machine in ids:
                for name in names:
                    # Built without validation (the generator must not be the bottleneck); the values are valid.
                    publisher.add(
                        Reading.model_construct(machine_id=machine, sensor=name, ts=ts, value=base[name] + jitter)
                    )
            tick += 1
        publisher.flush(60)
    finally:
        publisher.close(60)
    out.put(
        {
            "readings": publisher.counters.added,
            "ticks": tick,
            "seconds": round(time.time() - started, 1),
            "cpu_s": round(time.process_time() - cpu0, 1),
            "max_behind_s": round(behind, 3),
        }
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes of a process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0, 0
    return (int(stat[11]) + int(stat[12])) / TICKS, rss_pages * os.sysconf("SC_PAGE_SIZE")


class Sampler:
    """Every 2 s: CPU and RSS of each process, and each group's lag on its input topics."""

    def __init__(self, kafka: Any, pids: dict[str, int], groups: dict[str, tuple[str, list[str]]]) -> None:
        self.kafka = kafka
        self.pids = pids
        self.groups = groups
        self.rows: list[dict[str, Any]] = []
        self.consumed: list[tuple[float, int]] = []
        """(seconds since start, readings-topic offsets committed by the feature group), for the sustained rate."""
        self.messages = 0
        """Messages on the readings topic (its end offsets) at the last sample."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import OffsetSpec

        admin = KafkaAdminClient(**self.kafka.client_kwargs(), client_id="vigil-bench-lag")
        names = [group for group, _ in self.groups.values()]
        try:
            while not self._stop.wait(2.0):
                row: dict[str, Any] = {"t": round(time.monotonic() - self.started, 1)}
                for name, pid in self.pids.items():
                    cpu, rss = _proc(pid)
                    row[f"{name}_cpu_s"] = round(cpu, 2)
                    row[f"{name}_rss_mb"] = round(rss / 2**20, 1)
                try:
                    offsets = admin.list_group_offsets(names)
                except Exception as exc:  # the broker busy: a gap in the series
                    row["lag_error"] = type(exc).__name__
                    self.rows.append(row)
                    continue
                for stage, (group, topics) in self.groups.items():
                    committed = {tp: m for tp, m in offsets.get(group, {}).items() if tp.topic in topics}
                    if not committed:
                        row[f"{stage}_lag"] = None  # nothing committed yet
                        continue
                    ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in committed})
                    row[f"{stage}_lag"] = sum(max(0, ends[tp].offset - m.offset) for tp, m in committed.items())
                    if stage == "features":
                        self.consumed.append((row["t"], sum(m.offset for m in committed.values())))
                        self.messages = sum(ends[tp].offset for tp in committed)
                self.rows.append(row)
        finally:
            admin.close()


def _bounded(rows: list[dict[str, Any]], key: str, limit: float) -> bool:
    """Whether a lag series stayed bounded: its last third does not grow beyond noise and ends under ``limit``."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if len(values) < 3:
        return False
    tail = values[len(values) * 2 // 3 :]
    return tail[-1] <= limit and tail[-1] <= max(tail[0] * 1.5, limit / 4)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from vigil.config import load_config
    from vigil.latency import LatencyRecorder

    run_id = f"{int(time.time())}-{os.getpid()}"
    prefix = f"vigil.bench.plant.{run_id}."
    rate = args.machines * args.sensors * args.hz
    with tempfile.TemporaryDirectory() as tmp:
        plant = Path(tmp) / "plant.toml"
        plant.write_text(plant_toml(args.machines, args.sensors))
        # The connections (where the services are, their credentials) from the environment; the rest is this run's.
        keep = ("VIGIL_KAFKA__", "VIGIL_INFLUX__", "VIGIL_MQTT__", "VIGIL_LOG")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_") or k.startswith(keep)}
        env.update(
            {
                "VIGIL_CONFIG": str(plant),
                "PYTHONPATH": str(ROOT),
                "VIGIL_LOG_LEVEL": os.environ.get("VIGIL_LOG_LEVEL", "WARNING"),
                "VIGIL_KAFKA__PARTITIONS": str(args.partitions),
                "VIGIL_WINDOWS__SIZE_S": str(args.window_s),
                "VIGIL_WINDOWS__GRACE_S": str(args.grace_s),
                "VIGIL_WINDOWS__GROUP_ID": f"bench-features-{run_id}",
                # The short commit budget the latency numbers were measured with (the default is 5 s, see
                # docs/latency.md: one worker per stage here, so no rebalance).
                "VIGIL_WINDOWS__COMMIT_LATENCY_S": "0.25",
                "VIGIL_PUBLISH__BATCH_FORMAT": args.format,
                "VIGIL_SPOOL__PATH": str(Path(tmp) / "spool.sqlite"),
                "VIGIL_INFLUX__DATABASE": f"vigil_bench_plant_{run_id.replace('-', '_')}",
                "VIGIL_ALERTS__HTTP_PORT": str(_free_port()),
                "VIGIL_ALERTS__OUTBOX_PATH": str(Path(tmp) / "outbox.sqlite3"),
                "VIGIL_METRICS_PORT": "-1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for key in ("readings", "maintenance", "features", "predictions", "drift", "alerts", "audit"):
            env[f"VIGIL_TOPICS__{key.upper()}"] = f"{prefix}{key}"
        env["VIGIL_TOPICS__DEAD_LETTER"] = f"{prefix}dead-letter"
        env["VIGIL_TOPICS__CHANGELOG_PREFIX"] = f"{prefix}changelog."
        config = load_config(environ=env)
        from vigil.bus import ensure_topics, pipeline_topics

        ensure_topics(config.kafka, pipeline_topics(config.kafka, config.topics))
        cli = [sys.executable, "-m", "vigil.cli"]
        groups = {
            "features": (config.windows.group_id, [config.topics.readings]),
            "models": (f"bench-models-{run_id}", [config.topics.features]),
            "alerts": (f"bench-alerts-{run_id}", [config.topics.predictions, config.topics.features]),
        }
        commands = {
            "alerts": [*cli, "alerts", "--group", groups["alerts"][0]],
            "models": [*cli, "models", "--group", groups["models"][0]],
            "features": [*cli, "features"],
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        log_dir = ROOT / ".vigil" / f"bench-plant-{run_id}"  # kept: what each service said
        log_dir.mkdir(parents=True, exist_ok=True)
        logs = {name: open(log_dir / f"{name}.log", "wb") for name in commands}  # noqa: SIM115
        recorder = LatencyRecorder(
            config.kafka, [config.topics.features, config.topics.predictions, config.topics.alerts], args.grace_s
        )
        load_before = os.getloadavg()
        try:
            for name, command in commands.items():
                procs[name] = subprocess.Popen(command, env=env, cwd=ROOT, stdout=logs[name], stderr=subprocess.STDOUT)
            time.sleep(args.warmup_s)  # the groups form and the producers start before the load begins
            recorder.start()
            queue: Any = multiprocessing.Queue()
            # Ticks on the epoch's 1/hz grid (as windows are aligned): a reading lands exactly at a window's end +
            # grace, so what is measured from the close is the pipeline, not the wait for the next sample.
            start = math.ceil(time.time() * args.hz + 2) / args.hz
            n = args.generators
            shares = [range(args.machines * i // n, args.machines * (i + 1) // n) for i in range(n)]
            generators = [
                multiprocessing.Process(
                    target=generate, args=(env, share, args.sensors, args.hz, start, args.seconds, queue)
                )
                for share in shares
            ]
            for g in generators:
                g.start()
            pids = {name: p.pid for name, p in procs.items()}
            pids.update({f"generator{i}": g.pid for i, g in enumerate(generators) if g.pid is not None})
            sampler = Sampler(config.kafka, pids, groups)
            sampler.start()
            reports = []
            for g in generators:
                g.join(args.seconds + 180)
            while not queue.empty() and len(reports) < n:
                reports.append(queue.get(timeout=10))
            gen: dict[str, Any] = {
                "processes": n,
                "readings": sum(r["readings"] for r in reports),
                "seconds": max((r["seconds"] for r in reports), default=0.0),
                "cpu_s": round(sum(r["cpu_s"] for r in reports), 1),
                "max_behind_s": max((r["max_behind_s"] for r in reports), default=0.0),
                **({} if len(reports) == n else {"error": f"{n - len(reports)} generator(s) gave no report"}),
            }
            time.sleep(args.window_s + args.grace_s + 3)  # the last windows close and flow through
            sampler.stop()
            recorder.stop()
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for f in logs.values():
                f.close()
        exits = {name: proc.returncode for name, proc in procs.items()}
        tails = {
            name: (log_dir / f"{name}.log").read_text(errors="replace")[-1500:]
            for name, code in exits.items()
            if code not in (0, -15)
        }
    rows = sampler.rows
    measured = [r for r in rows if r["t"] <= args.seconds]
    span = (measured[-1]["t"] - measured[0]["t"]) if len(measured) > 1 else 0.0
    cpu: dict[str, Any] = {}
    for name in [*commands, *(f"generator{i}" for i in range(args.generators))]:
        series = [(r["t"], r[f"{name}_cpu_s"]) for r in measured if r.get(f"{name}_cpu_s")]
        if len(series) > 1 and series[-1][0] > series[0][0]:
            cpu[name] = {
                "cpu_cores": round((series[-1][1] - series[0][1]) / (series[-1][0] - series[0][0]), 3),
                "rss_mb_max": max(r.get(f"{name}_rss_mb", 0) for r in measured),
            }
    consumed = [c for c in sampler.consumed if c[0] <= args.seconds]
    sustained = (
        (consumed[-1][1] - consumed[0][1]) / (consumed[-1][0] - consumed[0][0])
        if len(consumed) > 1 and consumed[-1][0] > consumed[0][0]
        else None
    )
    # The readings topic carries one message per machine batch: committed offsets (messages) to readings.
    per_message = gen.get("readings", 0) / sampler.messages if sampler.messages else None
    return {
        "conditions": {
            "machines": args.machines,
            "sensors": args.sensors,
            "hz": args.hz,
            "offered_readings_per_s": rate,
            "seconds": args.seconds,
            "window_s": args.window_s,
            "grace_s": args.grace_s,
            "partitions": args.partitions,
            "format": args.format,
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "generator": gen,
        "generated_readings_per_s": round(gen.get("readings", 0) / max(gen.get("seconds", 1), 1e-9), 1),
        "sustained_readings_per_s": None
        if sustained is None or per_message is None
        else round(sustained * per_message, 1),
        "readings_per_message": None if per_message is None else round(per_message, 1),
        "lag_bounded": {stage: _bounded(measured, f"{stage}_lag", args.hz * 5 * args.machines) for stage in groups},
        "cpu_and_rss": cpu,
        "latency_after_window_close_s": recorder.summary(),
        "lag_over_time": [{k: v for k, v in r.items() if k == "t" or "_lag" in k} for r in rows],
        "sampled_s": round(span, 1),
        "exits": exits,
        "logs": str(log_dir),
        **({"failed_logs": tails} if tails else {}),
        **({"recorder_error": repr(recorder.error)} if recorder.error else {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--hz", type=float, default=1.0, help="readings per sensor per second")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--grace-s", type=float, default=2.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--format", default="packed", choices=("rows", "columns", "packed"))
    parser.add_argument("--generators", type=int, default=2, help="load generator processes (machines split)")
    parser.add_argument("--warmup-s", type=float, default=8.0, help="seconds for the services to start first")
    parser.add_argument("--smoke", action="store_true", help="50 machines for 20 s: that it works")
    args = parser.parse_args()
    if args.smoke:
        args.machines, args.seconds, args.window_s, args.grace_s = 50, 20.0, 5.0, 1.0
    out = run(args)
    print(json.dumps(out, indent=2))
    failed = [name for name, code in out["exits"].items() if code not in (0, -15)]
    flowed = out["latency_after_window_close_s"].get("prediction_visible", {}).get("n", 0) > 0
    if not flowed:
        print("no prediction reached the predictions topic", file=sys.stderr)
    return 1 if failed or "error" in out["generator"] or not flowed else 0


if __name__ == "__main__":
    sys.exit(main())
