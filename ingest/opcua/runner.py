"""Couples OPC UA collectors to the Validator and the KafkaPublisher; ``vigil collect opcua``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections import Counter
from typing import TYPE_CHECKING

from ingest.opcua.collector import OpcUaCollector
from ingest.publisher import KafkaPublisher
from ingest.validation import Validator
from vigil.config import OpcUaSource, VigilConfig
from vigil.contracts import Gap, Reading

if TYPE_CHECKING:
    from ingest.publisher import IngestMetrics
    from vigil.metrics import ServiceMetrics

log = logging.getLogger(__name__)


async def run_source(
    source: OpcUaSource,
    config: VigilConfig,
    publisher: KafkaPublisher,
    validator: Validator,
    stop: asyncio.Event,
    live: dict[str, Counter[str]] | None = None,
) -> Counter[str]:
    """Collect one source until ``stop`` is set; readings are validated, gaps pass through. Returns its counters.

    ``live`` receives the collector's counters object (updated in place) for metrics while it runs.
    An :class:`~ingest.exceptions.OpcUaSecurityError` (or any collector failure) propagates.
    """
    collector = OpcUaCollector(source, config)
    if live is not None:
        live[source.name] = collector.counters

    def handle(event: Reading | Gap) -> None:
        if isinstance(event, Gap):
            publisher.add_gap(event)
            return
        checked = validator.check(event)
        if checked is not None:
            publisher.add(checked)

    async def pump() -> None:
        async for event in collector:
            handle(event)

    async with collector:
        task = asyncio.create_task(pump())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    # The collector has stopped; what it had already accepted still goes to the publisher (which flushes).
    for event in collector.drain():
        handle(event)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    return collector.counters


async def run_sources(
    sources: list[OpcUaSource],
    config: VigilConfig,
    publisher: KafkaPublisher,
    validator: Validator,
    stop: asyncio.Event,
    duration_s: float | None = None,
    live: dict[str, Counter[str]] | None = None,
) -> dict[str, Counter[str]]:
    """Run every source concurrently until ``stop`` (or ``duration_s``); the first failure stops all."""
    if duration_s is not None:
        asyncio.get_running_loop().call_later(duration_s, stop.set)
    tasks = [asyncio.create_task(run_source(s, config, publisher, validator, stop, live)) for s in sources]
    try:
        results = await asyncio.gather(*tasks)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
    return {s.name: counters for s, counters in zip(sources, results, strict=True)}


class OpcUaMetrics:
    """The standard ingest metrics plus ``vigil_ingest_opcua_total{source, counter}`` (the collector's counters:
    readings, gaps, connects, lost:<reason>, unknown_machine, ...), mirrored by deltas."""

    def __init__(self, metrics: ServiceMetrics, ingest: IngestMetrics) -> None:
        from prometheus_client import Counter as PromCounter

        self.metrics = metrics
        self.ingest = ingest
        self.opcua = PromCounter(
            "vigil_ingest_opcua",
            "OPC UA collector events by source and counter",
            ["source", "counter"],
            registry=metrics.registry,
        )
        self._seen: dict[tuple[str, str], int] = {}

    def update(self, publisher: KafkaPublisher, validation: Counter[str], live: dict[str, Counter[str]]) -> None:
        self.ingest.update(publisher, validation, None)
        for source, counters in list(live.items()):
            for name, total in list(counters.items()):
                delta = total - self._seen.get((source, name), 0)
                if delta > 0:
                    self.opcua.labels(source, name).inc(delta)
                    self._seen[(source, name)] = total
                    if name == "connect_failed":
                        self.metrics.errors.labels("opcua_connect_failed").inc(delta)
                    elif name == "dropped_overflow":
                        self.metrics.dropped.labels("opcua_queue_overflow").inc(delta)


def main(argv: list[str]) -> int:
    """``vigil collect opcua``: run the configured OPC UA sources until interrupted (or ``--duration``)."""
    from ingest.publisher import IngestMetrics
    from vigil.bus import TopicSpec, ensure_topics
    from vigil.config import load_config
    from vigil.exceptions import VigilError
    from vigil.metrics import ServiceMetrics, add_metrics_arguments, start_http

    parser = argparse.ArgumentParser(prog="vigil collect opcua", description=main.__doc__)
    parser.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example)")
    parser.add_argument("--source", action="append", help="only this [[sources.opcua]] name (repeatable)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    add_metrics_arguments(parser, "collect")
    args = parser.parse_args(argv)
    # asyncua narrates every request and publish at INFO; keep its warnings and errors only.
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except VigilError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 2
    sources = [s for s in config.sources.opcua if not args.source or s.name in args.source]
    if not sources:
        print("no [[sources.opcua]] configured (or none matches --source)", file=sys.stderr)  # noqa: T201
        return 2
    try:
        ensure_topics(config.kafka, [TopicSpec(config.topics.readings, config.kafka.partitions)])
    except Exception as exc:  # Kafka may be down: the publisher spools until it is back.
        log.warning("could not ensure topics (%s); continuing", exc)
    validator = Validator(config)
    publisher = KafkaPublisher(config.kafka, config.topics, config.spool, config.publish, source="opcua")
    metrics = ServiceMetrics("collect-opcua")
    exporter = OpcUaMetrics(metrics, IngestMetrics(metrics))
    try:
        server = start_http(metrics, args.metrics_port, args.metrics_host)
    except OSError as exc:  # a metrics port in use must not stop data collection
        log.warning("metrics endpoint not started (%s)", exc)
        server = None
    publisher.start()
    live: dict[str, Counter[str]] = {}

    async def report(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
            exporter.update(publisher, validator.counters, live)
            metrics.heartbeat()

    async def run() -> dict[str, Counter[str]]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reporter = asyncio.create_task(report(stop))
        metrics.set_ready(True)
        try:
            return await run_sources(sources, config, publisher, validator, stop, args.duration, live)
        finally:
            stop.set()
            await reporter

    try:
        counters = asyncio.run(run())
    except VigilError as exc:
        print(f"vigil collect opcua: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        publisher.close()
        exporter.update(publisher, validator.counters, live)
        if server is not None:
            server.close()
    summary = {
        "sources": {name: dict(c) for name, c in counters.items()},
        "validation": dict(validator.counters),
        "publisher": publisher.counters.as_dict(),
    }
    print(json.dumps(summary))  # noqa: T201
    return 0
