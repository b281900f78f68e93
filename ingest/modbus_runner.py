"""Couples Modbus TCP collectors to the Validator and the KafkaPublisher; ``vigil collect modbus``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections import Counter

from ingest.modbus import ModbusCollector
from ingest.publisher import KafkaPublisher
from ingest.validation import Validator
from vigil.config import ModbusSource, VigilConfig
from vigil.contracts import Gap, Reading

log = logging.getLogger(__name__)


async def run_source(
    source: ModbusSource,
    config: VigilConfig,
    publisher: KafkaPublisher,
    validator: Validator,
    stop: asyncio.Event,
    live: dict[str, Counter[str]] | None = None,
) -> Counter[str]:
    """Collect one source until ``stop`` is set; readings are validated, gaps pass through. Returns its counters."""
    collector = ModbusCollector(source, config)
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
    for event in collector.drain():  # accepted before the stop: still published
        handle(event)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    return collector.counters


async def run_sources(
    sources: list[ModbusSource],
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


def main(argv: list[str]) -> int:
    """``vigil collect modbus``: poll the configured Modbus TCP devices until interrupted (or ``--duration``)."""
    from ingest.collector_cli import open_collector

    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    run = open_collector("modbus", argv, main.__doc__)
    if isinstance(run, int):
        return run
    live: dict[str, Counter[str]] = {}

    async def report(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
            run.ingest_metrics.update(run.publisher, run.validator.counters, None)
            run.metrics.heartbeat()

    async def collect() -> dict[str, Counter[str]]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reporter = asyncio.create_task(report(stop))
        run.metrics.set_ready(True)
        try:
            return await run_sources(
                run.sources, run.config, run.publisher, run.validator, stop, run.args.duration, live
            )
        finally:
            stop.set()
            await reporter

    try:
        counters = asyncio.run(collect())
    finally:
        run.close()
    run.summary(counters)
    never = sorted(name for name, c in counters.items() if not c.get("connects"))
    if never:
        print(f"vigil collect modbus: never connected: {', '.join(never)}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
