"""Couples OPC UA collectors to the Validator and the KafkaPublisher; ``vigil collect opcua``."""

from __future__ import annotations

import asyncio
import contextlib
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
from vigil.exceptions import VigilError

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
    from ingest.collector_cli import open_collector

    # asyncua narrates every request and publish at INFO; keep its warnings and errors only.
    logging.getLogger("asyncua").setLevel(logging.WARNING)
    run = open_collector("opcua", argv, main.__doc__)
    if isinstance(run, int):
        return run
    validator, publisher, metrics = run.validator, run.publisher, run.metrics
    exporter = OpcUaMetrics(metrics, run.ingest_metrics)
    live: dict[str, Counter[str]] = {}

    async def report(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
            exporter.update(publisher, validator.counters, live)
            metrics.heartbeat()

    async def collect() -> dict[str, Counter[str]]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reporter = asyncio.create_task(report(stop))
        metrics.set_ready(True)
        try:
            return await run_sources(run.sources, run.config, publisher, validator, stop, run.args.duration, live)
        finally:
            stop.set()
            await reporter

    try:
        counters = asyncio.run(collect())
    except VigilError as exc:
        print(f"vigil collect opcua: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        run.close()
        exporter.update(publisher, validator.counters, live)
    run.summary(counters)
    never = sorted(name for name, c in counters.items() if not c.get("connects"))
    if never:  # a run that never reached its server did not collect: say so in the exit code
        print(f"vigil collect opcua: never connected: {', '.join(never)}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
