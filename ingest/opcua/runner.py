"""``vigil collect opcua``: the OPC UA collector in the one collector shape (:mod:`ingest.collector_core`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from ingest.collector_core import Delivery, collect_all
from ingest.opcua.collector import OpcUaCollector
from ingest.publisher import KafkaPublisher
from ingest.validation import Validator
from vigil.config import OpcUaSource, VigilConfig


async def run_sources(
    sources: list[OpcUaSource],
    config: VigilConfig,
    publisher: KafkaPublisher,
    validator: Validator,
    stop: asyncio.Event,
    duration_s: float | None = None,
) -> dict[str, Counter[str]]:
    """Run every source concurrently until ``stop`` (or ``duration_s``); the first failure stops all."""
    collectors = [OpcUaCollector(s, config) for s in sources]
    return await collect_all(collectors, Delivery(publisher, validator), stop, duration_s)


def main(argv: list[str]) -> int:
    """``vigil collect opcua``: run the configured OPC UA sources until interrupted (or ``--duration``)."""
    from ingest.collector_cli import CollectorRun, serve

    def make(run: CollectorRun, source: Any) -> OpcUaCollector:
        return OpcUaCollector(source, run.config)

    # asyncua narrates every request and publish at INFO; keep its warnings and errors only.
    return serve("opcua", argv, main.__doc__, make, quiet=("asyncua",))
