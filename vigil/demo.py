"""``vigil demo``: the whole pipeline on the simulated fleet, end to end, with a live view and a summary.

It starts every service as its own process, exactly as a plant would run them (the OPC UA simulator, the OPC UA
collector, a feature worker, the model service, the alert service), on topics and an InfluxDB database of this
run, shows a live terminal view while the simulated days pass, waits until the pipeline has drained, stops
everything, and prints what a plant manager would ask: failures caught and missed, lead times, false alarms,
where the data is and how to explore it. Ctrl-C stops everything cleanly and still prints the summary.
After the summary the alert service stays up with the planners' console (its address is printed) until Ctrl-C;
``--exit`` stops it with the rest (scripts and CI).

Like every entry point it loads the configuration once; the services get the run's settings as ``VIGIL_``
environment overrides, so nothing here is special-cased inside a stage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from vigil.bus import ensure_topics, make_consumer, pipeline_topics
from vigil.config import Topics, VigilConfig, load_config
from vigil.contracts import (
    Alert,
    AlertState,
    DeadLetter,
    Decision,
    MaintenanceEvent,
    MaintenanceKind,
    Prediction,
    ReadingBatch,
    ReadingColumns,
    decode,
)
from vigil.exceptions import ConfigError, ContractError
from vigil.outcomes import Episode, Failure, Outcome, Repair, confirmable, score

log = logging.getLogger(__name__)

SIM_START = datetime(2026, 1, 5, tzinfo=UTC)
"""The simulated fleet starts on a fixed Monday, so the same seed writes the same points (replays overwrite)."""


@dataclass
class Observed:
    """What the demo's observer has seen on the pipeline's topics."""

    readings: int = 0
    reading_messages: int = 0
    last_reading_ts: datetime | None = None
    predictions: int = 0
    failures: list[Failure] = field(default_factory=list)
    repairs: int = 0
    repair_events: list[Repair] = field(default_factory=list)
    running_predictions: int = 0
    """Predictions of running machines (decision other than ``off``): operating windows."""
    episodes: list[Episode] = field(default_factory=list)
    closed: dict[str, datetime] = field(default_factory=dict)
    """Alert id -> when its latest ``resolved`` transition happened (absent: open)."""
    episode_ids: set[str] = field(default_factory=set)
    open_alerts: dict[str, Alert] = field(default_factory=dict)
    alert_transitions: Counter[str] = field(default_factory=Counter)
    latest: dict[str, Prediction] = field(default_factory=dict)
    dead_letters: Counter[str] = field(default_factory=Counter)
    first_alert_ts: datetime | None = None

    def see(self, topic: str, topics: Topics, value: bytes) -> None:
        try:
            message = decode(value)
        except ContractError:
            self.dead_letters["undecodable-on-" + topic] += 1
            return
        if isinstance(message, ReadingBatch | ReadingColumns):
            # Any batch form the collectors may be configured for (publish.batch_format).
            self.reading_messages += 1
            if isinstance(message, ReadingBatch):
                self.readings += len(message.samples)
                ts = message.samples[-1].ts
            else:
                self.readings += sum(len(c.ts) for c in message.columns)
                ts = datetime.fromtimestamp(max(max(c.ts) for c in message.columns), UTC)
            if self.last_reading_ts is None or ts > self.last_reading_ts:
                self.last_reading_ts = ts
        elif isinstance(message, MaintenanceEvent):
            if message.event is MaintenanceKind.FAILURE:
                self.failures.append(Failure(message.machine_id, message.ts, message.failure_mode))
            elif message.event is MaintenanceKind.REPAIR:
                self.repairs += 1
                self.repair_events.append(Repair(message.machine_id, message.ts))
        elif isinstance(message, Prediction):
            self.predictions += 1
            self.running_predictions += message.decision != Decision.OFF
            self.latest[message.machine_id] = message
        elif isinstance(message, Alert):
            self.alert_transitions[message.state.value] += 1
            if message.state is AlertState.OPEN:
                # An episode reopened within its cooldown keeps its id: one episode, not two.
                if message.alert_id not in self.episode_ids:
                    self.episode_ids.add(message.alert_id)
                    self.episodes.append(
                        Episode(message.machine_id, message.opened_at, message.alert_kind, alert_id=message.alert_id)
                    )
                self.open_alerts[message.alert_id] = message
                self.closed.pop(message.alert_id, None)
            elif message.state is AlertState.RESOLVED:
                self.open_alerts.pop(message.alert_id, None)
                self.closed[message.alert_id] = message.ts
            elif message.alert_id in self.open_alerts:
                self.open_alerts[message.alert_id] = message
        elif isinstance(message, DeadLetter):
            self.dead_letters[f"{message.service}:{message.reason}"] += 1


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]


def _services(args: argparse.Namespace, config_path: str) -> list[Service]:
    """The processes of the pipeline, sinks first so nothing is produced before its consumer exists."""
    vigil = [sys.executable, "-m", "vigil.cli"]
    conf = ["--config", config_path]
    return [
        Service("alerts", [*vigil, "alerts", *conf]),
        Service("models", [*vigil, "models", *conf]),
        Service("features", [*vigil, "features", *conf]),
        Service("collector", [*vigil, "collect", "opcua", *conf]),
        Service(
            "simulator",
            [
                *vigil,
                "simulate",
                *conf,
                "--seed",
                str(args.seed),
                "--speed",
                str(args.speed),
                "--duration",
                f"{args.days}d",
                "--port",
                str(args.opcua_port),
                "--start",
                args.start.isoformat(),
                "--failure-rate",
                str(args.failure_rate),
                "--interval",
                str(args.interval),
            ],
        ),
    ]


def _stop_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the demo dies, even by SIGKILL, so no service outlives it
    holding its ports (the services flush and exit on SIGTERM)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    """Starts the services as process groups, watches them, and stops them all (TERM, then KILL)."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, service: Service) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{service.name}.log").open("ab") as out:
            self.procs[service.name] = subprocess.Popen(
                service.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
                preexec_fn=_stop_with_parent,
            )

    def failed(self) -> dict[str, int]:
        """Services that exited with an error (the simulator's clean exit is how a run ends)."""
        return {n: rc for n, p in self.procs.items() if (rc := p.poll()) is not None and rc != 0}

    def exited(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is not None

    def stop(self, timeout_s: float = 30.0, keep: Iterable[str] = ()) -> None:
        """Stop every service but those in ``keep``."""
        for name in reversed(list(self.procs)):  # sources first, sinks last: they flush what they hold
            if name in keep:
                continue
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop within %.0fs; killing it", name, timeout_s)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class LagProbe:
    """Messages each consumer group still has to read on this run's topics (end minus committed offsets).

    On a topic written in Kafka transactions (``transactional``: what the feature worker and the model service
    write) the last offset of a partition is the commit marker of the last transaction, which no consumer reads:
    a committed offset one short of the end there is read to the end."""

    def __init__(self, config: VigilConfig, groups: list[str], prefix: str, transactional: Iterable[str] = ()) -> None:
        self.config = config
        self.groups = groups
        self.prefix = prefix
        self.transactional = frozenset(transactional)
        self._admin: Any = None

    def __call__(self) -> dict[str, int]:
        from kafka import KafkaAdminClient
        from kafka.admin import OffsetSpec
        from kafka.errors import KafkaError

        if self._admin is None:
            self._admin = KafkaAdminClient(**self.config.kafka.client_kwargs(), client_id="vigil-demo-lag")
        try:
            offsets = self._admin.list_group_offsets(self.groups)
            lags: dict[str, int] = {}
            for group in self.groups:
                committed = {tp: m for tp, m in offsets.get(group, {}).items() if tp.topic.startswith(self.prefix)}
                if not committed:
                    lags[group] = -1  # nothing committed yet: unknown, not zero
                    continue
                ends = self._admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in committed})
                lags[group] = sum(self._lag(tp.topic, ends[tp].offset, m.offset) for tp, m in committed.items())
            return lags
        except KafkaError as exc:
            log.debug("lag probe failed: %s", exc)
            return {g: -1 for g in self.groups}

    def _lag(self, topic: str, end: int, committed: int) -> int:
        lag = max(0, end - max(0, committed))
        return 0 if lag == 1 and topic in self.transactional else lag

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()


def _render(
    obs: Observed, config: VigilConfig, lags: dict[str, int], rate: float, args: argparse.Namespace, started: float
) -> Any:
    from rich.console import Group
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    progress = 0.0
    if obs.last_reading_ts is not None:
        progress = min(1.0, (obs.last_reading_ts - args.start).total_seconds() / (args.days * 86400))
    sim_now = obs.last_reading_ts.strftime("%a %d %b %H:%M") if obs.last_reading_ts else "starting"
    head.add_row(
        f"[b]simulated[/b] {sim_now}  {progress:6.1%} of {args.days:g} days",
        f"[b]readings[/b] {obs.readings:,} ({rate:,.0f}/s)",
        f"[b]predictions[/b] {obs.predictions:,}",
        "[b]lag[/b] " + " ".join(f"{g.rsplit('-', 1)[-1]}={v}" for g, v in lags.items()),
        f"[b]failures[/b] {len(obs.failures)}  [b]open alerts[/b] {len(obs.open_alerts)}",
        f"{time.monotonic() - started:,.0f}s",
    )
    table = Table(expand=True, title="machines")
    for col in ("machine", "type", "line", "state", "p(failure)", "anomaly", "decided by", "alert", "why"):
        table.add_column(col, no_wrap=col != "why")
    open_by_machine = {a.machine_id: a for a in obs.open_alerts.values()}
    for machine in config.machines:
        p = obs.latest.get(machine.id)
        alert = open_by_machine.get(machine.id)
        why = ", ".join(f"{c.feature}={c.value:.3g}" for c in (p.contributions[:2] if p else ()) if c.value is not None)
        pf = f"{p.p_failure:.2f}" if p and p.p_failure is not None else "-"
        style = "red" if alert else ("yellow" if p and p.decision is Decision.ALERT else "")
        table.add_row(
            machine.id,
            machine.type,
            machine.line,
            p.decision.value if p else "-",
            pf,
            f"{p.anomaly_score:.2f}" if p and p.anomaly_score is not None else "-",
            p.decided_by if p else "-",
            f"{alert.alert_kind} ({alert.severity.value})" if alert else "",
            why,
            style=style,
        )
    return Group(head, table)


def _summary(
    obs: Observed, config: VigilConfig, topics: Topics, database: str, span_s: float, elapsed: float
) -> dict[str, Any]:
    end = obs.last_reading_ts or datetime.now(UTC)
    failure_episodes = [
        replace(e, closed_at=obs.closed.get(e.alert_id or "", end))
        for e in obs.episodes
        if e.kind in ("failure_risk", "anomaly", "hard_limit")
    ]
    horizon_s = config.models.horizon_s
    unconfirmed, scored_s = 0, span_s
    if obs.last_reading_ts is not None and span_s > horizon_s:
        # Same rule as `vigil evaluate`: an episode of the last horizon is false only once no failure followed it.
        failure_episodes, unconfirmed = confirmable(
            failure_episodes, obs.failures, end=obs.last_reading_ts, horizon_s=horizon_s
        )
        scored_s = span_s - horizon_s
    outcome: Outcome = score(
        obs.failures,
        failure_episodes,
        min_lead_s=config.models.min_lead_s,
        horizon_s=horizon_s,
        machines=len(config.machines),
        span_s=scored_s,
        repairs=obs.repair_events,
        # Operating time as the backtest counts it, cut like the calendar time at the last horizon.
        operating_s=obs.running_predictions * config.windows.size_s * (scored_s / span_s) if span_s > 0 else None,
    )
    return {
        "simulated_days": span_s / 86400,
        "elapsed_s": round(elapsed, 1),
        "readings": obs.readings,
        "predictions": obs.predictions,
        "repairs": obs.repairs,
        "alert_transitions": dict(obs.alert_transitions),
        "dead_letters": dict(obs.dead_letters),
        "outcome": outcome.as_dict(),
        "unconfirmed_episodes": unconfirmed,
        "missed": [f"{f.machine_id} {f.ts:%a %H:%M} ({f.failure_mode})" for f in outcome.missed_failures],
        "kafka": config.kafka.bootstrap_servers,
        "topics": topics.model_dump(),
        "influx": {"url": config.influx.url, "database": database},
    }


def _print_summary(summary: dict[str, Any]) -> None:
    o = summary["outcome"]
    out = [
        "",
        f"Vigil demo: {summary['simulated_days']:g} simulated days in {summary['elapsed_s']:.0f} s",
        f"  readings {summary['readings']:,}, predictions {summary['predictions']:,}, "
        f"alert transitions {summary['alert_transitions']}",
        f"  failures {o['failures']}: caught {o['caught']} at least the minimum lead time ahead, "
        f"missed {o['missed']} (of which alerted too late: {o['late']})",
        f"  recall {o['recall']:.0%}; lead time median {o['lead_time_median_h']:.1f} h, p10 {o['lead_time_p10_h']:.1f} h",
        f"  alert episodes {o['episodes']}, false alarms {o['false_alarms']} "
        f"({o['false_alarms_per_machine_month']:.2f} per operating machine-month); "
        f"{summary['unconfirmed_episodes']} opened in the last horizon not counted (no failure could follow yet)",
    ]
    if summary["missed"]:
        out.append("  missed: " + "; ".join(summary["missed"]))
    out.append(f"  dead letters: {summary['dead_letters'] or 'none'}")
    influx = summary["influx"]
    out += [
        "",
        f"Where the data is: Kafka {summary['kafka']} topics {summary['topics']['readings']} ... "
        f"{summary['topics']['alerts']}; InfluxDB {influx['url']} database {influx['database']!r}.",
        "Explore it:",
        f"  vigil query open-alerts --database {influx['database']}",
        f"  vigil query failures --database {influx['database']}",
        f"  influx -host 127.0.0.1 -port {influx['url'].rsplit(':', 1)[-1]} -database {influx['database']} "
        '-execute "SELECT * FROM alerts ORDER BY time DESC LIMIT 20"',
    ]
    print("\n".join(out))


def run(args: argparse.Namespace) -> int:
    config_path = str(Path(args.config or os.environ.get("VIGIL_CONFIG") or "config/plant.example.toml").resolve())
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    prefix = f"vigil.demo.{run_id}."
    topics = Topics(
        readings=f"{prefix}readings",
        maintenance=f"{prefix}maintenance",
        features=f"{prefix}features",
        predictions=f"{prefix}predictions",
        drift=f"{prefix}drift",
        alerts=f"{prefix}alerts",
        dead_letter=f"{prefix}dead-letter",
        audit=f"{prefix}audit",
        changelog_prefix=f"{prefix}changelog.",
    )
    database = args.database or f"vigil_demo_{run_id.replace('-', '_')}"
    state_dir = Path(args.state_dir or Path(".vigil") / "demo" / run_id).resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_TOPICS__")}
    env.update({f"VIGIL_TOPICS__{k.upper()}": str(v) for k, v in topics.model_dump().items() if isinstance(v, str)})
    env.update(
        {
            "VIGIL_INFLUX__DATABASE": database,
            "VIGIL_ALERTS__OUTBOX_PATH": str(state_dir / "outbox.sqlite3"),
            # Simulated time runs `speed` times faster than the network's jitter: a second of delivery delay is
            # `speed` simulated seconds, so the grace period scales with it (otherwise readings arrive "late").
            "VIGIL_WINDOWS__GRACE_S": str(
                args.grace_s if args.grace_s is not None else max(config.windows.grace_s, 2.0 * args.speed)
            ),
            "VIGIL_SPOOL__PATH": str(state_dir / "spool" / "ingest.sqlite"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Each child takes a free metrics port unless one was asked for: a second demo on the host must not collide.
    env.setdefault("VIGIL_METRICS_PORT", "0")
    if args.window_s is not None:
        env["VIGIL_WINDOWS__SIZE_S"] = str(args.window_s)
    skew = config.windows.max_clock_skew_s
    ahead = (args.start + timedelta(days=args.days) - datetime.now(UTC)).total_seconds()
    if math.isfinite(skew) and ahead > skew:
        # Faster than real time from 'now': the simulated clock runs ahead of the wall clock by design, so the
        # feature worker's clock-skew refusal would drop the fleet's own readings.
        env["VIGIL_WINDOWS__MAX_CLOCK_SKEW_S"] = "inf"
    if not config.sources.opcua:
        print("the demo needs an OPC UA source for the simulator in the configuration", file=sys.stderr)
        return 1
    # The simulator serves where the configuration's first OPC UA source expects it.
    args.opcua_port = urllib.parse.urlsplit(config.sources.opcua[0].endpoint).port or 4840
    ensure_topics(config.kafka, pipeline_topics(config.kafka, topics))
    _create_database(config, database)

    supervisor = Supervisor(state_dir / "logs", env)
    stop_requested = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    observer = _observer(
        config, [topics.readings, topics.maintenance, topics.predictions, topics.alerts, topics.dead_letter]
    )
    obs = Observed()
    started = time.monotonic()
    lag_probe = LagProbe(
        config,
        [f"vigil-{name}" for name in ("features", "models", "alerts")],
        prefix,
        transactional=(topics.features, topics.predictions, topics.drift),
    )
    rate = 0.0
    last_count, last_t = 0, time.monotonic()
    drained_since: float | None = None
    exit_code = 0
    live_ctx: Any = contextlib.nullcontext()
    if args.live and sys.stdout.isatty():
        from rich.live import Live

        live_ctx = Live(refresh_per_second=2, transient=False)
    try:
        for service in _services(args, config_path):
            supervisor.start(service)
        with live_ctx as live:
            next_view = 0.0
            while not stop_requested:
                for tp, records in observer.poll(timeout_ms=250, max_records=5000).items():
                    for r in records:
                        obs.see(tp.topic, topics, r.value)
                failed = supervisor.failed()
                if failed:
                    name = next(iter(failed))
                    print(
                        f"service {name} exited with {failed[name]}; last lines:\n{supervisor.tail(name)}",
                        file=sys.stderr,
                    )
                    exit_code = 1
                    break
                now = time.monotonic()
                if now >= next_view:
                    rate = (obs.readings - last_count) / max(1e-6, now - last_t)
                    last_count, last_t = obs.readings, now
                    lags = lag_probe()
                    next_view = now + 2.0
                    if live is not None:
                        live.update(_render(obs, config, lags, rate, args, started))
                    elif not args.quiet:
                        progress = 0.0
                        if obs.last_reading_ts is not None:
                            progress = (obs.last_reading_ts - args.start).total_seconds() / (args.days * 86400)
                        print(
                            f"[{now - started:6.0f}s] simulated {progress:6.1%}  readings {obs.readings:,} "
                            f"({rate:,.0f}/s)  predictions {obs.predictions:,}  failures {len(obs.failures)}  "
                            f"open alerts {len(obs.open_alerts)}  lag {lags}",
                            flush=True,
                        )
                    if supervisor.exited("simulator"):
                        # The fleet is done; wait until every stage has read everything (and once more).
                        if all(v == 0 for v in lags.values()):
                            drained_since = drained_since or now
                            if now - drained_since > args.drain_s:
                                break
                        else:
                            drained_since = None
                if args.timeout_s and now - started > args.timeout_s:
                    print(f"demo timeout after {args.timeout_s:.0f}s", file=sys.stderr)
                    exit_code = 1
                    break
    finally:
        keep_console = not args.exit and exit_code == 0 and not stop_requested
        supervisor.stop(keep=("alerts",) if keep_console else ())
        # Read what the services flushed on their way out.
        for _ in range(8):
            batch = observer.poll(timeout_ms=250)
            if not batch:
                break
            for tp, records in batch.items():
                for r in records:
                    obs.see(tp.topic, topics, r.value)
        observer.close()
        lag_probe.close()
    span_s = args.days * 86400.0
    if obs.last_reading_ts is not None:
        span_s = min(span_s, max(3600.0, (obs.last_reading_ts - args.start).total_seconds()))
    summary = _summary(obs, config, topics, database, span_s, time.monotonic() - started)
    _print_summary(summary)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, default=str))
    if keep_console and not supervisor.exited("alerts"):
        url = _console_url(supervisor.tail("alerts", 400))
        print(f"Console: {url or 'see ' + str(state_dir / 'logs' / 'alerts.log')} (Ctrl-C stops it)", flush=True)
        try:
            while not stop_requested and not supervisor.exited("alerts"):
                time.sleep(0.5)
        finally:
            supervisor.stop()
    return exit_code


_LISTENING = re.compile(r"listening on (http://\S+) \(alerts API\)")


def _console_url(log_text: str) -> str | None:
    """The alert service's address, from its start-up line (its port may be any free one).

    >>> _console_url("... INFO alerts.http: listening on http://127.0.0.1:8470 (alerts API)")
    'http://127.0.0.1:8470/'
    """
    found = _LISTENING.findall(log_text)
    return found[-1] + "/" if found else None


def _observer(config: VigilConfig, names: list[str]) -> Any:
    """A consumer reading every partition of the run's topics from the start.

    Assigned by hand rather than through a group: topics created a moment ago may have no partition metadata
    yet when a group assigns, and kafka-python does not rebalance when it arrives, so the view stayed empty.
    """
    from kafka import TopicPartition

    consumer = make_consumer(config.kafka, None)
    partitions: list[Any] = []
    deadline = time.monotonic() + 30
    for name in names:
        found = consumer.partitions_for_topic(name)
        while not found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = consumer.partitions_for_topic(name)
        if not found:
            raise RuntimeError(f"topic {name} has no partitions after 30 s")
        partitions += [TopicPartition(name, p) for p in sorted(found)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return consumer


def _create_database(config: VigilConfig, database: str) -> None:
    """The services' own start-up check, once before they start, so the run's database is there for the view."""
    from vigil.influx import InfluxError, ensure_target

    try:
        ensure_target(config.influx.model_copy(update={"database": database}))
    except InfluxError as exc:
        print(f"vigil demo: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vigil demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default=None, help="plant configuration (default: the example plant)")
    parser.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    parser.add_argument("--speed", type=float, default=3000.0, help="simulated seconds per real second (default 3000)")
    parser.add_argument("--fast", action="store_true", help="a simulated week in a few minutes (speed 3000)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--start",
        default=SIM_START.isoformat(),
        help="simulated start, ISO 8601 or 'now' (default: a fixed Monday, so a rerun overwrites its points)",
    )
    parser.add_argument("--failure-rate", type=float, default=1.0, help="scale how often failures start")
    parser.add_argument("--window-s", type=float, default=None, help="window size (default: the configuration's)")
    parser.add_argument("--grace-s", type=float, default=None, help="grace period (default: scaled with --speed)")
    parser.add_argument(
        "--interval", type=float, default=None, help="simulated seconds between samples (default 10; --fast: 60)"
    )
    parser.add_argument("--run-id", default=None, help="names this run's topics and database (default: a timestamp)")
    parser.add_argument("--database", default=None, help="InfluxDB database (default: vigil_demo_<run id>)")
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--drain-s", type=float, default=15.0, help="quiet time after the fleet ends before stopping")
    parser.add_argument("--timeout-s", type=float, default=0.0, help="give up after this long (0: never)")
    parser.add_argument("--summary-json", default=None, help="also write the summary as JSON here")
    parser.add_argument(
        "--no-live", dest="live", action="store_false", help="plain progress lines instead of the live view"
    )
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--exit",
        action="store_true",
        help="exit after the summary (default: keep the planners' console up until Ctrl-C); for scripts and CI",
    )
    args = parser.parse_args(argv)
    if args.fast:
        args.speed = max(args.speed, 3000.0)
    args.start = datetime.now(UTC).replace(microsecond=0) if args.start == "now" else datetime.fromisoformat(args.start)
    if args.start.tzinfo is None:
        parser.error("--start needs a time zone (e.g. 2026-01-05T00:00:00+00:00) or 'now'")
    if args.interval is None:
        args.interval = 60.0 if args.fast else 10.0
    return run(args)
