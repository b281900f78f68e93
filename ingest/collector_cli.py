"""What every ``vigil collect <source>`` command does around its collectors.

Arguments, configuration, the topics, the validator, the publisher and the metrics endpoint are the same for
every source kind; only how readings are produced differs. :func:`open_collector` sets all of it up (or explains
on stderr why it cannot and returns the exit code), :meth:`CollectorRun.close` flushes the publisher and
:meth:`CollectorRun.summary` prints the one JSON line every collector ends with.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ingest.publisher import IngestMetrics, KafkaPublisher
from ingest.validation import Validator
from vigil.bus import TopicSpec, ensure_topics
from vigil.config import VigilConfig, load_config
from vigil.exceptions import VigilError
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
