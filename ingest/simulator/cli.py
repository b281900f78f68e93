"""``vigil simulate``: serve the degrading fleet over OPC UA and publish its failures and repairs to Kafka."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import re
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge

from ingest.simulator.fleet import Fleet
from ingest.simulator.server import ServerSecurity, SimulatorServer
from vigil.contracts import MaintenanceEvent, Reading

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"`` or plain seconds.

    >>> parse_duration("7d"), parse_duration("1.5h"), parse_duration("90")
    (604800.0, 5400.0, 90.0)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 7d, 12h, 30m, 45s)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _start(text: str) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class _Digest:
    """A running fingerprint of every sample and event: two runs with one seed print the same digest."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.readings = 0
        self.events: Counter[str] = Counter()

    def readings_seen(self, readings: list[Reading]) -> None:
        for r in readings:
            self._hash.update(f"{r.machine_id}|{r.sensor}|{r.ts.isoformat()}|{r.value!r}|{r.status_code}\n".encode())
        self.readings += len(readings)

    def events_seen(self, events: list[MaintenanceEvent]) -> None:
        for e in events:
            self._hash.update(e.model_dump_json().encode())
            self.events[f"{e.event.value}:{e.failure_mode}"] += 1

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigil simulate", description=__doc__)
    p.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--speed", type=float, default=600.0, help="simulated seconds per real second (default 600)")
    p.add_argument("--duration", type=parse_duration, default=None, help="simulated time, e.g. 7d (default: forever)")
    p.add_argument("--start", type=_start, default=None, help="simulated start (ISO 8601; default: now, whole minute)")
    p.add_argument("--interval", type=float, default=10.0, help="sample interval in simulated seconds (default 10)")
    p.add_argument("--failure-rate", type=float, default=1.0, help="scale how often failures start (default 1)")
    p.add_argument("--machines", help="comma-separated machine ids (default: every configured machine)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4840)
    p.add_argument("--no-kafka", action="store_true", help="do not publish maintenance events to Kafka")
    p.add_argument("--certificate", type=Path, help="server certificate (enables security)")
    p.add_argument("--private-key", type=Path)
    p.add_argument(
        "--policy",
        action="append",
        help="POLICY:MODE offered, e.g. Basic256Sha256:SignAndEncrypt (repeatable; None:None allows no security)",
    )
    p.add_argument("--user", action="append", help="USER:PASSWORD accepted (repeatable; refuses anonymous)")
    return p


def main(argv: list[str]) -> int:
    from ingest.publisher import KafkaPublisher
    from vigil.bus import TopicSpec, ensure_topics
    from vigil.config import load_config
    from vigil.exceptions import VigilError
    from vigil.metrics import ServiceMetrics, add_metrics_arguments, start_http

    parser = _parser()
    add_metrics_arguments(parser, "simulate")
    args = parser.parse_args(argv)
    # asyncua narrates every request and publish at INFO; keep its warnings and errors only.
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
        security = None
        if args.certificate is not None:
            policies = tuple(tuple(p.split(":", 1)) for p in (args.policy or ["Basic256Sha256:SignAndEncrypt"]))
            users = dict(u.split(":", 1) for u in (args.user or []))
            security = ServerSecurity(args.certificate, args.private_key, policies, users)
        start = args.start or datetime.now(UTC).replace(second=0, microsecond=0)
        machines = args.machines.split(",") if args.machines else None
        fleet = Fleet(config, args.seed, start, args.interval, failure_rate=args.failure_rate, machines=machines)
    except (VigilError, ValueError) as exc:
        print(f"vigil simulate: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    publisher: Any = None
    if not args.no_kafka:
        try:
            ensure_topics(config.kafka, [TopicSpec(config.topics.maintenance, config.kafka.partitions)])
        except Exception as exc:  # the publisher spools until Kafka is back
            log.warning("could not ensure the maintenance topic (%s); continuing", exc)
        # Its own spool file: a spool belongs to one process, and a collector may run next to the simulator.
        spool = config.spool.model_copy(
            update={"path": config.spool.path.with_name(f"{config.spool.path.stem}-simulator.sqlite")}
        )
        publisher = KafkaPublisher(config.kafka, config.topics, spool, config.publish, source="simulator")
        publisher.start()
    digest = _Digest()
    metrics = ServiceMetrics("simulate")
    sim_events = PromCounter(
        "vigil_simulator_events", "Simulated maintenance events", ["event", "failure_mode"], registry=metrics.registry
    )
    sim_time = Gauge("vigil_simulator_time_seconds", "Simulated time (Unix seconds)", registry=metrics.registry)
    try:
        http = start_http(metrics, args.metrics_port, args.metrics_host)
    except OSError as exc:  # a metrics port in use must not stop the simulation
        log.warning("metrics endpoint not started (%s)", exc)
        http = None

    def on_step(readings: list[Reading], events: list[MaintenanceEvent]) -> None:
        digest.readings_seen(readings)
        digest.events_seen(events)
        metrics.readings.inc(len(readings))
        sim_time.set(fleet.now.timestamp())
        metrics.heartbeat()
        for e in events:
            log.info("%s %s at %s (%s)", e.machine_id, e.event.value, e.ts.isoformat(), e.failure_mode)
            sim_events.labels(e.event.value, e.failure_mode or "").inc()
            if publisher is not None:
                publisher.add_event(e)

    server = SimulatorServer(fleet, args.port, args.host, args.speed, security, on_step)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            metrics.set_ready(True)
            print(f"serving {len(fleet.machine_ids)} machines at {server.endpoint}", flush=True)  # noqa: T201
            runner = asyncio.create_task(server.run(args.duration))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in (runner, stopper):
                t.cancel()
            if runner.done() and not runner.cancelled() and runner.exception() is not None:
                raise runner.exception()  # type: ignore[misc]

    try:
        asyncio.run(run())
    except VigilError as exc:
        print(f"vigil simulate: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        if publisher is not None:
            publisher.close()
        if http is not None:
            http.close()
    summary = {
        "seed": args.seed,
        "start": start.isoformat(),
        "end": fleet.now.isoformat(),
        "steps": server.steps,
        "readings": digest.readings,
        "events": dict(digest.events),
        "digest": digest.hexdigest,
        "publisher": publisher.counters.as_dict() if publisher is not None else None,
    }
    print(json.dumps(summary), flush=True)  # noqa: T201
    return 0
