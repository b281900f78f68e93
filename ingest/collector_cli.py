"""What every ``vigil collect <source>`` command does around its collectors.

Arguments, configuration, the topics, the validator, the publisher and the metrics endpoint are the same for
every source kind; only how readings are produced differs. :func:`open_collector` sets all of it up (or explains
on stderr why it cannot and returns the exit code), :meth:`CollectorRun.close` flushes the publisher and
:meth:`CollectorRun.summary` prints the one JSON line every collector ends with. :func:`serve` is the whole
``main`` of a live protocol (:mod:`ingest.collector_core`): its collectors run until SIGINT/SIGTERM or
``--duration``, metrics every 5 s, a log line every 30 s, the summary, and exit 1 if a source never connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ingest.collector_core import Collector, Delivery, collect_all
from ingest.ingest_metrics import SourceMetrics
from ingest.publisher import IngestMetrics, KafkaPublisher
from ingest.validation import Validator
from vigil.bus import TopicSpec, ensure_topics
from vigil.config import VigilConfig, load_config
from vigil.exceptions import KafkaRefused, VigilError
from vigil.kafka_access import require_access
from vigil.metrics import ServiceMetrics, add_metrics_arguments, start_http

log = logging.getLogger(__name__)

SourceKind = Literal["mqtt", "opcua", "modbus", "sparkplug", "kafka"]


@dataclass
class CollectorRun:
    """A configured collector process: its sources, validator, publisher (started) and metrics."""

    args: argparse.Namespace
    config: VigilConfig
    sources: list[Any]
    validator: Validator
    publisher: KafkaPublisher
    metrics: ServiceMetrics
    ingest_metrics: IngestMetrics
    server: Any

    def close(self) -> None:
        """Flush what is buffered (to Kafka, else to the spool) and stop the metrics endpoint."""
        try:
            self.publisher.close()
        finally:
            if self.server is not None:
                self.server.close()

    def summary(self, sources: Mapping[str, Mapping[str, int]]) -> None:
        print(  # noqa: T201
            json.dumps(
                {
                    "sources": {name: dict(c) for name, c in sources.items()},
                    "validation": dict(self.validator.counters),
                    "publisher": self.publisher.counters.as_dict(),
                }
            )
        )


def collector_parser(kind: SourceKind, description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"vigil collect {kind}", description=description)
    parser.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example)")
    parser.add_argument("--source", action="append", help=f"only this [[sources.{kind}]] name (repeatable)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    add_metrics_arguments(parser, "collect")
    return parser


def load_or_explain(path: str | None) -> VigilConfig | None:
    """The configuration, or None after printing why it is refused (the error names the key)."""
    try:
        return load_config(path)
    except VigilError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return None


def reading_topics(config: VigilConfig) -> list[TopicSpec]:
    """The readings and dead-letter topics every collector writes to."""
    return [TopicSpec(t, config.kafka.partitions) for t in (config.topics.readings, config.topics.dead_letter)]


def ensure_reading_topics(config: VigilConfig) -> None:
    """Create the readings and dead-letter topics now (waiting for Kafka up to its bootstrap timeout); Kafka being
    down is no reason not to go on (spool). Collectors leave this to their publisher instead (never waiting)."""
    try:
        ensure_topics(config.kafka, reading_topics(config))
        topics = config.topics
        require_access(
            config.kafka,
            write=[
                *(("topics.readings", t) for t in topics.reading_topics()),
                ("topics.dead_letter", topics.dead_letter),
            ],
        )
    except KafkaRefused:
        raise  # credentials, certificate or ACLs: spooling would only hide it
    except Exception as exc:  # Kafka may be down: the publisher spools until it is back.
        log.warning("could not ensure topics (%s); continuing", exc)


def open_collector(
    kind: SourceKind, argv: Sequence[str], description: str | None, one_source: bool = False
) -> CollectorRun | int:
    """Parse ``argv``, load and check the configuration, start the publisher and metrics; or an exit code.

    Never waits for Kafka (the publisher spools until it answers), so sources start collecting at once.
    ``one_source``: the process runs exactly one source (named by ``--source`` unless only one is configured),
    and its publisher (so its spool file) is named after it, so that two such processes never share a spool.
    """
    args = collector_parser(kind, description).parse_args(list(argv))
    config = load_or_explain(args.config)
    if config is None:
        return 2
    configured = getattr(config.sources, kind)
    sources = [s for s in configured if not args.source or s.name in args.source]
    if not sources:
        print(f"no [[sources.{kind}]] configured (or none matches --source)", file=sys.stderr)  # noqa: T201
        return 2
    if one_source and len(sources) > 1:
        names = ", ".join(s.name for s in sources)
        print(f"{len(sources)} [[sources.{kind}]] ({names}): name one with --source", file=sys.stderr)  # noqa: T201
        return 2
    metrics = ServiceMetrics(f"collect-{kind}")
    try:
        server = start_http(metrics, args.metrics_port, args.metrics_host)
    except OSError as exc:  # a metrics port in use must not stop data collection
        log.warning("metrics endpoint not started (%s)", exc)
        server = None
    publisher_source = f"{kind}:{sources[0].name}" if one_source else kind
    # Collecting starts at once, whatever Kafka is doing: the publisher writes every batch to its spool first, and
    # creates the topics, reconciles and replays in its own thread when Kafka answers.
    publisher = KafkaPublisher(
        config.kafka, config.topics, config.spool, config.publish, publisher_source, reading_topics(config)
    )
    publisher.start()
    return CollectorRun(args, config, sources, Validator(config), publisher, metrics, IngestMetrics(metrics), server)


def serve(
    kind: SourceKind,
    argv: Sequence[str],
    description: str | None,
    make: Callable[[CollectorRun, Any], Collector],
    quiet: Sequence[str] = (),
) -> int:
    """``vigil collect <kind>``: ``make(run, source)`` a collector per configured source and run them all.

    ``quiet``: loggers (client libraries) kept to warnings. Exit 0; 1 if a source failed (named on stderr) or
    never connected; 2 for a bad command line or configuration.
    """
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    run = open_collector(kind, argv, description)
    if isinstance(run, int):
        return run
    delivery = Delivery(run.publisher, run.validator)
    collectors = [make(run, source) for source in run.sources]
    dead_letters = any(c.counts_dead_letters for c in collectors)
    exporter = SourceMetrics(kind, run.metrics, run.ingest_metrics, dead_letters)
    live = {c.name: c.counters for c in collectors}
    code = 0

    def report() -> None:
        exporter.update(run.publisher, run.validator.counters, live)
        run.metrics.heartbeat()

    async def reporting(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        last_log = loop.time()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
            report()
            if loop.time() - last_log >= 30:
                last_log = loop.time()
                log.info(
                    "%s: %s; validation %s; publisher %s",
                    kind,
                    {name: dict(c) for name, c in live.items()},
                    dict(run.validator.counters),
                    run.publisher.counters.as_dict(),
                )

    async def collect() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reporter = asyncio.create_task(reporting(stop))
        run.metrics.set_ready(True)
        try:
            await collect_all(collectors, delivery, stop, run.args.duration)
        finally:
            stop.set()
            await reporter

    try:
        asyncio.run(collect())
    except VigilError as exc:
        print(f"vigil collect {kind}: {exc}", file=sys.stderr)  # noqa: T201
        code = 1
    finally:
        run.close()
        report()
    run.summary({name: Counter(c) for name, c in live.items()})
    never = sorted(c.name for c in collectors if not c.ever_connected)
    if never and not code:  # a run that never reached its server did not collect: say so in the exit code
        print(f"vigil collect {kind}: never connected: {', '.join(never)}", file=sys.stderr)  # noqa: T201
        code = 1
    return code
