"""The chaos suite: ``kill -9`` each component of the running chain at random moments, then compare every output
with a clean run of the same input: lost, duplicated, different.

The whole chain runs on services of its own, never the shared ones (``vigil services up`` and its ``.vigil/``
state are not touched): a private Kafka broker and InfluxDB on free loopback ports with their state in
``--state-dir`` (default ``.vigil/chaos/<run>``), started with :mod:`vigil.services`; the collector (``vigil
collect replay`` of a simulated fleet written to CSV with a fixed seed), ``vigil features``, ``vigil models`` and
``vigil alerts`` as processes; a real webhook receiver (an HTTP server in this process) behind the alerts'
route. The same input goes through twice, on topics and InfluxDB databases of each pass:

1. **clean**: nothing killed;
2. **chaos**: under load, each component in ``--components`` is killed with SIGKILL ``--kills`` times at random
   (seeded) moments and restarted 1 s later (the broker and influxd after ``--outage-s``, 3 s); a service that
   exits on its own is counted and restarted too.

Then, per output, keyed by what it is about (never by offsets): readings on the readings topic (machine, sensor,
event time), feature vectors (machine, window start), predictions (machine, window end), alert transitions
(episode, sequence), notifications the webhook accepted (episode, sequence, state), and InfluxDB points per
measurement (series, time). Topics are read ``read_committed``. An output is *lost* when the clean run has it and
the chaos run does not, *duplicated* for every extra copy of a key, *different* when the key is in both but a
value is not. The table is printed; ``--json`` writes it with the details. Exit status 1 when anything is lost,
duplicated or different.

    python bench/chaos.py                             # 3 kills of each component, 2 simulated days
    python bench/chaos.py --kills 5 --days 3          # more
    python bench/chaos.py --components features,models --kills 20
    python bench/chaos.py --baseline                  # two clean runs compared first: is the chain deterministic?
    python bench/chaos.py --short                     # CI's short form: one kill of each, a small input

Determinism: windows close by event time only (the idle timeout is set far beyond any outage, and the input ends
with one reading per machine a few windows later, so every real window closes on its watermark); windows at or
after the input's end are left out of the comparison. The maintenance records are not replayed: the order in
which labels meet feature vectors from another topic is not reproducible run to run. Three hard limits are
lowered into normal operation (as ``bench/bench_e2e.py --tight-limits`` does) so alerts open and resolve.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vigil.config import Topics, VigilConfig, load_config  # noqa: E402
from vigil.services import InfluxDB, Kafka, ServicesConfig  # noqa: E402

COMPONENTS = ("collector", "broker", "influxd", "features", "models", "alerts")
PROCESSES = ("alerts", "models", "features", "collector")
"""The pipeline's processes, sinks first (nothing is produced before its consumer exists)."""
OUTPUTS = ("readings", "features", "predictions", "alert transitions", "notifications", "influx")
START = datetime(2026, 1, 5, tzinfo=UTC)
"""The simulated fleet starts on a fixed Monday (in the past: the feature worker refuses readings from the future)."""
TIGHT_LIMITS = {
    "VIGIL_MACHINE_TYPES__PUMP__SENSORS__BEARING_TEMP__LIMITS__HIGH": "60",
    "VIGIL_MACHINE_TYPES__MOTOR__SENSORS__WINDING_TEMP__LIMITS__HIGH": "85",
    "VIGIL_MACHINE_TYPES__COMPRESSOR__SENSORS__DISCHARGE_TEMP__LIMITS__HIGH": "85",
}


# --------------------------------------------------------------------------------------------- the private services
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServices:
    """A Kafka broker and an InfluxDB of this chaos run only: free ports, state under ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.cfg = ServicesConfig(
            state_dir=state_dir,
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            kafka_heap="512m",
            influx_port=free_port(),
            influx_rpc_port=free_port(),
            influx_database="chaos",
        )
        self.kafka = Kafka(self.cfg)
        self.influx = InfluxDB(self.cfg)

    def up(self) -> None:
        """Both at once: each start is mostly waiting (the broker's JVM takes tens of seconds on a loaded machine)."""
        with ThreadPoolExecutor(2, thread_name_prefix="chaos-up") as pool:
            for started in [pool.submit(self.kafka.up), pool.submit(self.influx.up)]:
                started.result()

    def by_name(self, component: str) -> Kafka | InfluxDB:
        return self.kafka if component == "broker" else self.influx

    def kill(self, component: str) -> None:
        """SIGKILL the whole process group, and reap it (it is this process's child: a zombie looks alive)."""
        svc = self.by_name(component)
        try:
            pid = int(svc.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.05)
        svc.pid_file.unlink(missing_ok=True)

    def restart(self, component: str) -> None:
        """Start it again; a broker slower than ``up()``'s wait to become ready (under load: > 90 s) is waited for
        twice more instead of ending the run."""
        from vigil.exceptions import ServiceError

        for attempt in range(3):
            try:
                self.by_name(component).up()
                return
            except ServiceError as exc:
                if attempt == 2:
                    raise
                print(f"  {component} not ready yet ({str(exc)[:120]}); waiting again", flush=True)

    def down(self) -> None:
        for svc in (self.influx, self.kafka):
            with contextlib.suppress(Exception):
                svc.down()

    def env(self) -> dict[str, str]:
        return {
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": self.cfg.kafka_bootstrap,
            "VIGIL_INFLUX__URL": self.cfg.influx_url,
            "VIGIL_INFLUX__API": "v1",
        }


# --------------------------------------------------------------------------------------------- the input
@dataclass(frozen=True)
class Input:
    path: Path
    readings: int
    end: datetime
    """Windows starting at or after this are not compared (the closing readings' windows)."""


def write_input(config: VigilConfig, path: Path, seed: int, days: float, interval_s: float) -> Input:
    """The simulated fleet as a CSV for ``vigil collect replay``, ending with one reading per machine three windows
    later so that every window of the real data closes on its watermark (no wall-clock close)."""
    from ingest.simulator.fleet import Fleet

    fleet = Fleet(config, seed=seed, start=START, sample_interval_s=interval_s)
    last: dict[str, tuple[str, float]] = {}
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["machine", "sensor", "ts", "value", "quality"])
        for readings, _events in fleet.run(days * 86400.0):
            for r in readings:
                out.writerow(
                    [
                        r.machine_id,
                        r.sensor,
                        repr(r.ts.timestamp()),
                        "" if r.value is None else repr(r.value),
                        r.quality,
                    ]
                )
                n += 1
                if r.value is not None:
                    last[r.machine_id] = (r.sensor, r.value)
        end = START + timedelta(seconds=days * 86400.0)
        close_at = end + timedelta(seconds=3 * config.windows.size_s + 2 * config.windows.grace_s)
        for machine, (sensor, value) in sorted(last.items()):
            out.writerow([machine, sensor, repr(close_at.timestamp()), repr(value), "good"])
            n += 1
    return Input(path, n, end)


# --------------------------------------------------------------------------------------------- the webhook receiver
class Webhook:
    """A real HTTP receiver: every accepted body, with its ``webhook-id``."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with contextlib.suppress(ValueError), hook.lock:
                    hook.bodies.append((self.headers.get("webhook-id", ""), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notifications(self) -> list[tuple[tuple[Any, ...], Any]]:
        """One entry per alert transition a notification carried: ((alert id, seq, state), the transition)."""
        out: list[tuple[tuple[Any, ...], Any]] = []
        with self.lock:
            for _wid, body in self.bodies:
                for a in (body.get("data") or {}).get("alerts") or []:
                    out.append(((a.get("alert_id", ""), str(a.get("seq")), a.get("state", "")), a))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------- one pass of the chain
@dataclass
class Kill:
    at_s: float
    component: str
    done: bool = False
    down_s: float = 0.0
    """How long the component was gone (kill to ready again)."""


@dataclass
class Pass:
    name: str
    topics: Topics
    database: str
    groups: dict[str, str]
    kills: list[Kill] = field(default_factory=list)
    exits: Counter[str] = field(default_factory=Counter)
    """Processes that exited on their own (not killed by us), by component, with their last log lines kept."""
    exit_tails: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    load_s: float = 0.0
    dead_letters: Counter[str] = field(default_factory=Counter)
    stuck: dict[str, int] = field(default_factory=dict)
    """Consumer groups whose lag did not go down at the end (group -> lag, -1: nothing committed)."""


STUCK_S = 90.0
"""Nothing written and no lag moved for this long after the load: the pass ends with the stuck groups named."""


class Chain:
    """The pipeline's processes of one pass: started, killed, restarted, watched, stopped."""

    def __init__(
        self,
        run: Pass,
        config_path: Path,
        input_: Input,
        env: dict[str, str],
        log_dir: Path,
        speed: float,
        tree: Path = ROOT,
    ):
        self.run = run
        self.tree = tree
        self.log_dir = log_dir
        self.env = env
        vigil = [sys.executable, "-m", "vigil.cli"]
        conf = ["--config", str(config_path)]
        self.argv = {
            "alerts": [*vigil, "alerts", *conf, "--group", run.groups["alerts"]],
            "models": [*vigil, "models", *conf, "--group", run.groups["models"]],
            "features": [*vigil, "features", *conf],
            "collector": [*vigil, "collect", "replay", str(input_.path), *conf, "--speed", str(speed)],
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.collector_done = False

    def start(self, name: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as out:
            out.write(f"\n=== start {datetime.now(UTC).isoformat()}\n".encode())
            out.flush()
            self.procs[name] = subprocess.Popen(
                self.argv[name],
                cwd=self.tree,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def watch(self) -> None:
        """Restart a process that exited on its own (counted); notice the collector's clean end."""
        for name, proc in list(self.procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            if name == "collector" and rc == 0:
                self.collector_done = True
                continue
            if name == "collector" and self.collector_done:
                continue
            self.run.exits[name] += 1
            self.run.exit_tails.append(f"{name} exited with {rc}: {self.tail(name, 6)}")
            print(f"  [{self.run.name}] {name} exited with {rc} on its own; restarting it", flush=True)
            time.sleep(1.0)
            self.start(name)

    def stop(self, timeout_s: float = 30.0) -> None:
        for name in reversed(PROCESSES):  # sources first, sinks last: they flush what they hold
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return " | ".join(t.strip() for t in text)


def _lags(config: VigilConfig, groups: Iterable[str], prefix: str) -> dict[str, int]:
    """Messages each group still has to read on this pass's topics (-1: nothing committed yet), not counting the
    last offset of each partition (a transaction's commit marker, where the writer is transactional)."""
    from kafka import KafkaAdminClient
    from kafka.admin import OffsetSpec

    out: dict[str, int] = {}
    try:
        admin = KafkaAdminClient(**config.kafka.client_kwargs(), client_id="vigil-chaos-lag", request_timeout_ms=5000)
    except Exception:
        return dict.fromkeys(groups, -1)
    try:
        offsets = admin.list_group_offsets(list(groups))
        for group in groups:
            committed = {tp: m for tp, m in offsets.get(group, {}).items() if tp.topic.startswith(prefix)}
            if not committed:
                out[group] = -1
                continue
            ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in committed})
            # One record short of the end per partition is read: a transaction's commit marker takes an offset.
            out[group] = sum(max(0, ends[tp].offset - max(0, m.offset) - 1) for tp, m in committed.items())
    except Exception:
        return dict.fromkeys(groups, -1)
    finally:
        admin.close()
    return out


def _ends(config: VigilConfig, names: list[str]) -> int:
    """The sum of the end offsets of ``names`` (a change means something was written)."""
    from kafka import TopicPartition

    from vigil.bus import make_consumer

    consumer = make_consumer(config.kafka, None, request_timeout_ms=10_000)
    try:
        tps = [TopicPartition(n, p) for n in names for p in sorted(consumer.partitions_for_topic(n) or ())]
        return int(sum(consumer.end_offsets(tps).values())) if tps else 0
    finally:
        consumer.close(autocommit=False)


def run_pass(
    run: Pass,
    services: PrivateServices,
    config: VigilConfig,
    config_path: Path,
    input_: Input,
    base_env: dict[str, str],
    state: Path,
    speed: float,
    outage_s: float,
    quiet_s: float,
    timeout_s: float,
    tree: Path = ROOT,
) -> None:
    """One pass of the input through the chain, with ``run.kills`` applied at their moments, until drained."""
    from vigil.bus import ensure_topics, pipeline_topics
    from vigil.influx import ensure_target

    cfg = config.model_copy(update={"topics": run.topics})
    ensure_topics(cfg.kafka, pipeline_topics(cfg.kafka, run.topics))
    ensure_target(cfg.influx.model_copy(update={"database": run.database}))
    pass_dir = state / run.name
    env = {
        **base_env,
        **{f"VIGIL_TOPICS__{k.upper()}": str(v) for k, v in run.topics.model_dump().items() if isinstance(v, str)},
        "VIGIL_INFLUX__DATABASE": run.database,
        "VIGIL_WINDOWS__GROUP_ID": run.groups["features"],
        "VIGIL_ALERTS__OUTBOX_PATH": str(pass_dir / "outbox.sqlite3"),
        "VIGIL_SPOOL__PATH": str(pass_dir / "spool" / "ingest.sqlite"),
    }
    chain = Chain(run, config_path, input_, env, pass_dir / "logs", speed, tree)
    started = time.monotonic()
    for name in PROCESSES:
        chain.start(name)
    load_started = time.monotonic()
    pending = sorted(run.kills, key=lambda k: k.at_s)
    print(f"  [{run.name}] chain started; {len(pending)} kills planned", flush=True)
    while not chain.collector_done:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"{run.name}: the collector did not finish within {timeout_s:.0f}s")
        now = time.monotonic() - load_started
        due = next((k for k in pending if not k.done and k.at_s <= now), None)
        if due is not None:
            killed = time.monotonic()
            if due.component in ("broker", "influxd"):
                services.kill(due.component)
                time.sleep(outage_s)
                services.restart(due.component)
            else:
                chain.kill(due.component)
                time.sleep(1.0)
                chain.start(due.component)
            due.done = True
            due.down_s = time.monotonic() - killed
            print(f"  [{run.name}] t={now:6.1f}s kill -9 {due.component}: back after {due.down_s:.1f}s", flush=True)
            continue
        chain.watch()
        time.sleep(0.2)
    run.load_s = time.monotonic() - load_started
    for k in pending:
        if not k.done:
            print(f"  [{run.name}] kill of {k.component} at {k.at_s:.0f}s not done: the load ended first", flush=True)
    # Drained: every group has committed up to the end of its input topics (a record short per partition is
    # allowed: a transaction's commit marker, or a record a stage holds), and nothing was written for quiet_s. A
    # group that has committed nothing yet is waited for (a restarted consumer may wait out its dead
    # predecessor's session before it is assigned anything); one whose lag and outputs have not moved for
    # STUCK_S is reported stuck and the pass ends.
    prefix = run.topics.readings.rsplit(".", 1)[0] + "."
    outputs = [run.topics.features, run.topics.predictions, run.topics.alerts, run.topics.dead_letter]
    last_change, last_state = time.monotonic(), None
    while True:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"{run.name}: not drained within {timeout_s:.0f}s")
        chain.watch()
        try:
            total = _ends(cfg, outputs) + _influx_count(cfg, run.database)
        except Exception:
            total = -1
        lags = _lags(cfg, run.groups.values(), prefix)
        state_now = (total, tuple(sorted(lags.items())))
        if state_now != last_state:
            last_state, last_change = state_now, time.monotonic()
        quiet = time.monotonic() - last_change
        if total >= 0 and all(v == 0 for v in lags.values()) and quiet >= quiet_s:
            break
        if quiet >= STUCK_S:
            run.stuck = {g: v for g, v in lags.items() if v != 0}
            print(f"  [{run.name}] nothing moved for {STUCK_S:.0f}s; lags {lags}: stuck, ending the pass", flush=True)
            break
        time.sleep(1.0)
    chain.stop()
    run.wall_s = time.monotonic() - started
    print(f"  [{run.name}] done: load {run.load_s:.0f}s, wall {run.wall_s:.0f}s, exits {dict(run.exits)}", flush=True)


# --------------------------------------------------------------------------------------------- reading the outputs
Keyed = list[tuple[tuple[Any, ...], Any]]


def read_topic(config: VigilConfig, topic: str) -> list[bytes]:
    """Every committed record of ``topic`` (read_committed), from the beginning to its end."""
    from kafka import TopicPartition

    from vigil.bus import make_consumer

    consumer = make_consumer(config.kafka, None, max_poll_records=5000)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[bytes] = []
        deadline = time.monotonic() + 300
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out += [r.value for r in records]
        return out
    finally:
        consumer.close(autocommit=False)


def _ts(value: datetime) -> int:
    return round(value.timestamp() * 1e6)


def readings_of(values: list[bytes]) -> Keyed:
    from vigil.contracts import ReadingBatch, ReadingColumns, decode

    out: Keyed = []
    for raw in values:
        with contextlib.suppress(Exception):
            message = decode(raw)
            if isinstance(message, ReadingBatch | ReadingColumns):
                for r in message.readings():
                    out.append(((r.machine_id, r.sensor, _ts(r.ts)), (r.value, str(r.quality), tuple(r.flags))))
    return out


def features_of(values: list[bytes], end: datetime) -> Keyed:
    from vigil.contracts import FeatureVector, decode

    out: Keyed = []
    for raw in values:
        with contextlib.suppress(Exception):
            v = decode(raw)
            if isinstance(v, FeatureVector) and v.window_start < end:
                out.append(((v.machine_id, _ts(v.window_start)), v.model_dump(mode="json")))
    return out


def predictions_of(values: list[bytes], end: datetime) -> Keyed:
    from vigil.contracts import Prediction, decode

    out: Keyed = []
    for raw in values:
        with contextlib.suppress(Exception):
            p = decode(raw)
            if isinstance(p, Prediction) and (p.window_start or p.ts) < end:
                out.append(((p.machine_id, _ts(p.ts)), p.model_dump(mode="json")))
    return out


def alerts_of(values: list[bytes]) -> Keyed:
    from vigil.contracts import Alert, decode

    out: Keyed = []
    for raw in values:
        with contextlib.suppress(Exception):
            a = decode(raw)
            if isinstance(a, Alert):
                out.append(((a.alert_id, a.seq), a.model_dump(mode="json")))
    return out


def dead_letters_of(values: list[bytes]) -> Counter[str]:
    from vigil.contracts import DeadLetter, decode

    out: Counter[str] = Counter()
    for raw in values:
        with contextlib.suppress(Exception):
            d = decode(raw)
            if isinstance(d, DeadLetter):
                out[f"{d.service}:{d.reason}"] += 1
    return out


def _influx(config: VigilConfig, database: str, query: str) -> dict[str, Any]:
    params = urllib.parse.urlencode({"db": database, "q": query, "epoch": "ns"})
    with urllib.request.urlopen(f"{config.influx.url}/query?{params}", timeout=60) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


def _influx_count(config: VigilConfig, database: str) -> int:
    total = 0
    for m in _measurements(config, database):
        body = _influx(config, database, f'SELECT count(*) FROM "{m}"')
        for series in body.get("results", [{}])[0].get("series", []) or []:
            total += sum(int(v or 0) for v in series["values"][0][1:])
    return total


def _measurements(config: VigilConfig, database: str) -> list[str]:
    body = _influx(config, database, "SHOW MEASUREMENTS")
    series = body.get("results", [{}])[0].get("series", []) or []
    return [row[0] for s in series for row in s.get("values", [])]


def influx_of(config: VigilConfig, database: str, end: datetime) -> dict[str, Keyed]:
    """Points per measurement, keyed by (tag set, time); a point's fields are its value. Points at or after the
    input's end (the closing readings' windows) are left out."""
    end_ns = round(end.timestamp() * 1e9)
    out: dict[str, Keyed] = {}
    for m in _measurements(config, database):
        body = _influx(config, database, f'SELECT * FROM "{m}" GROUP BY *')
        points: Keyed = []
        for series in body.get("results", [{}])[0].get("series", []) or []:
            tags = tuple(sorted((series.get("tags") or {}).items()))
            cols = series["columns"]
            for row in series["values"]:
                values = dict(zip(cols, row, strict=True))
                t = values.pop("time")
                if t < end_ns:
                    points.append(((tags, t), tuple(sorted(values.items()))))
        out[m] = points
    return out


@dataclass
class Outputs:
    readings: Keyed
    features: Keyed
    predictions: Keyed
    alerts: Keyed
    notifications: Keyed
    influx: dict[str, Keyed]
    dead_letters: Counter[str]


def collect(config: VigilConfig, run: Pass, end: datetime, hook: Webhook) -> Outputs:
    t = run.topics
    dead = dead_letters_of(read_topic(config, t.dead_letter))
    run.dead_letters = dead
    return Outputs(
        readings=readings_of(read_topic(config, t.readings)),
        features=features_of(read_topic(config, t.features), end),
        predictions=predictions_of(read_topic(config, t.predictions), end),
        alerts=alerts_of(read_topic(config, t.alerts)),
        notifications=hook.notifications(),
        influx=influx_of(config, run.database, end),
        dead_letters=dead,
    )


# --------------------------------------------------------------------------------------------- the comparison
@dataclass
class Row:
    output: str
    clean: int
    chaos: int
    lost: int
    duplicated: int
    different: int
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.different == 0


IGNORED = {"ingest_ts"}
"""Fields that say when something was processed, not what: left out of the comparison."""


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in IGNORED}
    return value


def compare(output: str, clean: Keyed, chaos: Keyed) -> Row:
    """Lost: keys of the clean run missing from the chaos run. Duplicated: every copy of a key beyond the clean
    run's count. Different: keys in both where a chaos copy's value is not one of the clean run's values."""
    a: dict[Any, list[Any]] = {}
    b: dict[Any, list[Any]] = {}
    for k, v in clean:
        a.setdefault(k, []).append(_strip(v))
    for k, v in chaos:
        b.setdefault(k, []).append(_strip(v))
    row = Row(output, len(clean), len(chaos), 0, 0, 0)
    for k, vs in a.items():
        if k not in b:
            row.lost += len(vs)
            if len(row.examples) < 3:
                row.examples.append(f"lost {k}")
    for k, vs in b.items():
        if k not in a:
            row.duplicated += len(vs)  # nothing like it in the clean run: an extra record
            if len(row.examples) < 6:
                row.examples.append(f"extra {k}")
            continue
        extra = max(0, len(vs) - len(a[k]))
        row.duplicated += extra
        if extra and len(row.examples) < 6:
            row.examples.append(f"{extra + len(a[k])} copies of {k}")
        row.lost += max(0, len(a[k]) - len(vs))
        if any(v not in a[k] for v in vs):
            row.different += 1
            if len(row.examples) < 6:
                diff = _diff(a[k][0], next(v for v in vs if v not in a[k]))
                row.examples.append(f"different {k}: {diff}")
    return row


def _diff(x: Any, y: Any) -> str:
    if isinstance(x, dict) and isinstance(y, dict):
        keys = [k for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
        return "; ".join(f"{k}: {str(x.get(k))[:60]} -> {str(y.get(k))[:60]}" for k in keys[:4])
    return f"{str(x)[:120]} -> {str(y)[:120]}"


def compare_all(clean: Outputs, chaos: Outputs) -> list[Row]:
    rows = [
        compare("readings (topic)", clean.readings, chaos.readings),
        compare("feature vectors (topic)", clean.features, chaos.features),
        compare("predictions (topic)", clean.predictions, chaos.predictions),
        compare("alert transitions (topic)", clean.alerts, chaos.alerts),
        compare("notifications (webhook)", clean.notifications, chaos.notifications),
    ]
    for m in sorted(set(clean.influx) | set(chaos.influx)):
        rows.append(compare(f"influx: {m}", clean.influx.get(m, []), chaos.influx.get(m, [])))
    return rows


def episodes_row(clean: Outputs, chaos: Outputs) -> Row:
    """Per episode, the sequence of states on the alerts topic; an episode whose sequence differs is different."""

    def seqs(keyed: Keyed) -> dict[str, list[str]]:
        out: dict[str, list[tuple[int, str]]] = {}
        for (alert_id, seq), v in keyed:
            out.setdefault(alert_id, []).append((seq, v["state"]))
        return {k: [s for _, s in sorted(v)] for k, v in out.items()}

    a, b = seqs(clean.alerts), seqs(chaos.alerts)
    row = Row("alert episodes (states in order)", len(a), len(b), 0, 0, 0)
    for k in a:
        if k not in b:
            row.lost += 1
        elif a[k] != b[k]:
            row.different += 1
            if len(row.examples) < 4:
                row.examples.append(f"{k}: {a[k]} -> {b[k]}")
    row.duplicated = sum(1 for k in b if k not in a)
    return row


def render(rows: list[Row]) -> str:
    head = f"{'output':<36} {'clean':>9} {'chaos':>9} {'lost':>8} {'duplicated':>11} {'different':>10}  "
    lines = [head, "-" * len(head)]
    for r in rows:
        mark = "ok" if r.ok else "FAIL"
        lines.append(
            f"{r.output:<36} {r.clean:>9,} {r.chaos:>9,} {r.lost:>8,} {r.duplicated:>11,} {r.different:>10,}  {mark}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- the plan and main
def plan_kills(components: list[str], kills: int, load_s: float, seed: int) -> list[Kill]:
    """``kills`` of each component at random moments (seeded) in the load's first ~85 %, one per slot so that one
    component is back before the next goes (each kill happens under load, not during another's outage)."""
    rng = random.Random(seed)
    order = [c for c in components for _ in range(kills)]
    rng.shuffle(order)
    if not order:
        return []
    slot = 0.85 * load_s / len(order)
    return [Kill(at_s=0.05 * load_s + i * slot + rng.uniform(0, 0.5 * slot), component=c) for i, c in enumerate(order)]


def export_tree(ref: str, where: Path) -> Path:
    """The committed tree of ``ref`` (``git archive``), so that edits in progress in the work tree are not run."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def write_config(tree: Path, state: Path, hook_url: str) -> Path:
    """The example plant with a webhook receiver and a route to it (the ``[alerts]`` table ends the file)."""
    text = (tree / "config" / "plant.example.toml").read_text()
    if "receivers" in text.split("[alerts]", 1)[-1] or not text.rstrip().split("\n[")[-1].startswith("alerts]"):
        raise SystemExit("chaos: config/plant.example.toml must end with an [alerts] table without receivers")
    path = state / f"plant-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(
        text.rstrip()
        + f'\nreceivers = [{{ type = "webhook", name = "chaos", url = "{hook_url}" }}]\n'
        + 'routes = [{ receiver = "chaos" }]\n'
    )
    return path


@dataclass
class Report:
    rows: list[Row]
    """The chaos pass vs the clean pass (with ``separately``: the first component's pass)."""
    passes: list[Pass]
    baseline: list[Row] | None = None
    input_readings: int = 0
    wall_s: float = 0.0
    by_pass: dict[str, list[Row]] = field(default_factory=dict)
    """Every chaos pass's rows, by pass name (``chaos``, or ``chaos-<component>`` with ``separately``)."""

    @property
    def ok(self) -> bool:
        return all(r.ok for rows in (self.by_pass or {"chaos": self.rows}).values() for r in rows)

    def as_dict(self) -> dict[str, Any]:
        def rows(rs: list[Row]) -> list[dict[str, Any]]:
            return [{**r.__dict__, "ok": r.ok} for r in rs]

        return {
            "ok": self.ok,
            "wall_s": round(self.wall_s, 1),
            "input_readings": self.input_readings,
            "rows": rows(self.rows),
            "by_pass": {name: rows(rs) for name, rs in self.by_pass.items()},
            "baseline": rows(self.baseline) if self.baseline is not None else None,
            "passes": [
                {
                    "name": p.name,
                    "load_s": round(p.load_s, 1),
                    "wall_s": round(p.wall_s, 1),
                    "kills": [k.__dict__ for k in p.kills],
                    "exits": dict(p.exits),
                    "exit_tails": p.exit_tails,
                    "stuck": p.stuck,
                    "dead_letters": dict(p.dead_letters),
                }
                for p in self.passes
            ],
        }


def chaos(
    *,
    kills: int = 3,
    components: list[str] | None = None,
    days: float = 2.0,
    interval_s: float = 60.0,
    seed: int = 11,
    load_s: float = 180.0,
    outage_s: float = 3.0,
    quiet_s: float = 8.0,
    baseline: bool = False,
    state_dir: Path | None = None,
    keep: bool = False,
    timeout_s: float = 1800.0,
    partitions: int = 1,
    ref: str | None = None,
    separately: bool = False,
    log: Callable[[str], None] = print,
) -> Report:
    """Run the suite and return its report (CI's short form: :func:`short`).

    ``partitions`` 1 (default) makes a clean run reproducible: with several partitions a stage interleaves
    machines in arrival order, and state shared by a machine type (its normal, its model) learns in that order.
    ``ref`` runs the services from ``git archive <ref>`` instead of the work tree (a tree others are editing).
    ``separately``: one chaos pass per component, only that one killed, so that what fails is attributed."""
    components = list(components or COMPONENTS)
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; choose from {', '.join(COMPONENTS)}")
    started = time.monotonic()
    run_id = datetime.now(UTC).strftime("%H%M%S") + uuid.uuid4().hex[:4]
    state = (state_dir or ROOT / ".vigil" / "chaos" / run_id).resolve()
    state.mkdir(parents=True, exist_ok=True)
    tree = ROOT if ref is None else export_tree(ref, state / "tree")
    config = load_config(tree / "config" / "plant.example.toml")
    speed = days * 86400.0 / load_s
    services = PrivateServices(state / "services")
    hooks: list[Webhook] = []
    passes: list[Pass] = []
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(1, thread_name_prefix="chaos-services") as pool:
            up = pool.submit(services.up)  # waiting for the JVM while the input is written
            input_ = write_input(config, state / "input.csv", seed, days, interval_s)
            log(
                f"chaos: {input_.readings:,} readings ({days:g} days, seed {seed}) at {speed:,.0f}x (~{load_s:.0f}s of load)"
            )
            up.result()
        log(f"chaos: private Kafka {services.cfg.kafka_bootstrap}, InfluxDB {services.cfg.influx_url} in {state}")
        log(f"chaos: input written and services up in {time.monotonic() - t0:.0f}s")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update(services.env())
        env["VIGIL_KAFKA__PARTITIONS"] = str(partitions)
        if ref is not None:
            env["PYTHONPATH"] = str(tree)
        env.update(TIGHT_LIMITS)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "VIGIL_METRICS_PORT": "0",
                "VIGIL_ALERTS__HTTP_PORT": "0",
                # Windows close on event time only: no wall-clock close during an outage or a restart.
                "VIGIL_WINDOWS__IDLE_TIMEOUT_S": "1000000",
                # A restarted worker waits out its killed predecessor's session before it is assigned its
                # partitions: 6 s, the least allowed, for each (the defaults: features and models 45, alerts 10).
                "VIGIL_WINDOWS__SESSION_TIMEOUT_S": "6",
                "VIGIL_MODELS__SESSION_TIMEOUT_S": "6",
                "VIGIL_ALERTS__KAFKA_SESSION_TIMEOUT_S": "6",
                # Batches leave the collector when full, not on a timer: the order of machines on the readings
                # topic (and so of windows closing, and of what a machine type's shared normal learns first) is
                # the file's, whatever the pace. On the default 200 ms timer an unpaced and a paced run differ.
                "VIGIL_PUBLISH__BATCH_MAX_SAMPLES": "120",
                "VIGIL_PUBLISH__BATCH_MAX_MS": "60000",
            }
        )
        cfg = config.model_copy(
            update={
                "kafka": config.kafka.model_copy(
                    update={"bootstrap_servers": services.cfg.kafka_bootstrap, "partitions": partitions}
                )
            }
        )
        cfg = cfg.model_copy(update={"influx": cfg.influx.model_copy(update={"url": services.cfg.influx_url})})
        chaos_passes = {f"chaos-{c}": [c] for c in components} if separately else {"chaos": components}
        names = ["clean", *(["clean2"] if baseline else []), *chaos_passes]
        outputs: dict[str, Outputs] = {}
        for name in names:
            prefix = f"chaos.{run_id}.{name}."
            run = Pass(
                name=name,
                topics=Topics(
                    readings=f"{prefix}readings",
                    maintenance=f"{prefix}maintenance",
                    features=f"{prefix}features",
                    predictions=f"{prefix}predictions",
                    drift=f"{prefix}drift",
                    alerts=f"{prefix}alerts",
                    dead_letter=f"{prefix}dead-letter",
                    audit=f"{prefix}audit",
                    changelog_prefix=f"{prefix}changelog.",
                ),
                database=f"chaos_{run_id}_{name}",
                groups={s: f"chaos-{run_id}-{name}-{s}" for s in ("features", "models", "alerts")},
            )
            if name in chaos_passes:
                run.kills = plan_kills(chaos_passes[name], kills, load_s, seed)
            hook = Webhook()
            hooks.append(hook)
            config_path = write_config(tree, state, hook.url)
            # The clean run as fast as the chain takes it (event time decides every output); the others paced.
            pace = 0.0 if name == "clean" else speed
            log(f"chaos: pass {name} ({'unpaced' if pace == 0 else f'{pace:,.0f}x'})")
            run_pass(run, services, cfg, config_path, input_, env, state, pace, outage_s, quiet_s, timeout_s, tree)
            passes.append(run)
            outputs[name] = collect(cfg, run, input_.end, hook)
        base = None
        if baseline:
            base = [
                *compare_all(outputs["clean"], outputs["clean2"]),
                episodes_row(outputs["clean"], outputs["clean2"]),
            ]
        by_pass = {
            name: [*compare_all(outputs["clean"], outputs[name]), episodes_row(outputs["clean"], outputs[name])]
            for name in chaos_passes
        }
        first = next(iter(by_pass.values()))
        return Report(first, passes, base, input_.readings, time.monotonic() - started, by_pass)
    finally:
        for hook in hooks:
            hook.close()
        services.down()
        if not keep:
            # The input and the services' data; the logs stay for a failed run's post-mortem.
            with contextlib.suppress(OSError):
                (state / "input.csv").unlink()
            shutil.rmtree(state / "services" / "kafka" / "data", ignore_errors=True)
            shutil.rmtree(state / "services" / "influxdb" / "data", ignore_errors=True)
            shutil.rmtree(state / "services" / "influxdb" / "wal", ignore_errors=True)


def print_report(report: Report, log: Callable[[str], None] = print) -> None:
    if report.baseline is not None:
        log("\nbaseline: clean run vs a second clean run (must be all zero for the comparison to mean anything)")
        log(render(report.baseline))
    clean = report.passes[0]
    by_pass = report.by_pass or {report.passes[-1].name: report.rows}
    passes = {p.name: p for p in report.passes}
    for name, rows in by_pass.items():
        run = passes[name]
        kills = Counter(k.component for k in run.kills if k.done)
        missed = Counter(k.component for k in run.kills if not k.done)
        log(
            f"\n{name} vs clean: kills {dict(kills)}{f' (not done, the load ended first: {dict(missed)})' if missed else ''}"
            f"; exits on their own {dict(run.exits) or 'none'}; load {run.load_s:.0f}s, wall {run.wall_s:.0f}s"
        )
        log(render(rows))
        if run.stuck:
            log(f"  stuck at the end (consumer group -> lag; -1: nothing committed): {run.stuck}")
        for r in rows:
            for e in r.examples[:3]:
                log(f"  {r.output}: {e[:300]}")
        for tail in run.exit_tails[:6]:
            log(f"  exit: {tail[:400]}")
        log(f"  dead letters: {dict(run.dead_letters) or 'none'} (clean: {dict(clean.dead_letters) or 'none'})")
    if len(by_pass) > 1:
        log("\nsummary, lost/duplicated/different per output (columns: the component killed)")
        names = list(by_pass)
        head = f"{'output':<36} " + " ".join(f"{n.removeprefix('chaos-'):>16}" for n in names)
        log(head)
        log("-" * len(head))
        outputs = list(dict.fromkeys(r.output for rows in by_pass.values() for r in rows))
        for output in outputs:
            cells = []
            for n in names:
                row = next((r for r in by_pass[n] if r.output == output), None)
                cells.append(f"{row.lost}/{row.duplicated}/{row.different}" if row is not None else "-")
            log(f"{output:<36} " + " ".join(f"{c:>16}" for c in cells))
    log(f"\nwall {report.wall_s:.0f}s; verdict: {'OK' if report.ok else 'LOSS, DUPLICATES OR DIFFERENCES'}")


SHORT = {"kills": 1, "days": 0.5, "load_s": 45.0, "quiet_s": 6.0}
"""CI's short form: one kill of each component in ~45 s of load over half a simulated day (~49k readings)."""


def short(state_dir: Path | None = None, log: Callable[[str], None] = print) -> Report:
    """The short form CI runs (``tests/chaos/test_chaos_short.py``)."""
    return chaos(**SHORT, state_dir=state_dir, log=log)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=3, help="kills of each component (default 3)")
    parser.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated (default: all six)")
    parser.add_argument("--days", type=float, default=2.0, help="simulated days of input (default 2)")
    parser.add_argument("--interval", type=float, default=60.0, help="sample interval, simulated seconds (60)")
    parser.add_argument("--seed", type=int, default=11, help="the fleet's seed and the kill schedule's (11)")
    parser.add_argument("--load-s", type=float, default=None, help="seconds the replay takes (default: 20 s per kill)")
    parser.add_argument("--outage-s", type=float, default=3.0, help="broker/influxd down before restarting (3)")
    parser.add_argument("--quiet-s", type=float, default=8.0, help="nothing written this long: drained (8)")
    parser.add_argument("--partitions", type=int, default=1, help="partitions per topic (1: reproducible)")
    parser.add_argument("--baseline", action="store_true", help="also compare two clean runs (determinism)")
    parser.add_argument(
        "--separately", action="store_true", help="one chaos pass per component (attributes what fails)"
    )
    parser.add_argument("--short", action="store_true", help="CI's short form: one kill of each, half a day")
    parser.add_argument("--ref", default=None, help="run the services from this commit (git archive), e.g. HEAD")
    parser.add_argument("--state-dir", type=Path, default=None, help="default: .vigil/chaos/<run>")
    parser.add_argument("--keep", action="store_true", help="keep the input and the services' data")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    components = [c.strip() for c in args.components.split(",") if c.strip()]
    if args.short:
        args.kills, args.days, args.load_s, args.quiet_s = (
            SHORT["kills"],
            SHORT["days"],
            SHORT["load_s"],
            SHORT["quiet_s"],
        )
    per_pass = 1 if args.separately else len(components)
    load_s = args.load_s if args.load_s is not None else max(60.0, 25.0 * args.kills * per_pass)
    report = chaos(
        kills=int(args.kills),
        components=components,
        days=args.days,
        interval_s=args.interval,
        seed=args.seed,
        load_s=load_s,
        outage_s=args.outage_s,
        quiet_s=args.quiet_s,
        baseline=args.baseline,
        state_dir=args.state_dir,
        keep=args.keep,
        partitions=args.partitions,
        ref=args.ref,
        separately=args.separately,
    )
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
