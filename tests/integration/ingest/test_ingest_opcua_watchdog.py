"""A subscription that goes silent while the connection stays up: the watchdog reconnects and marks a gap."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ingest.opcua.collector import OpcUaCollector
from ingest.simulator.fleet import Fleet
from ingest.simulator.server import SimulatorServer
from vigil.config import OpcUaSource, VigilConfig
from vigil.contracts import Gap, Reading

pytestmark = pytest.mark.integration


def test_silent_subscription_is_recreated_and_the_gap_marked(example_config: VigilConfig, free_port: int) -> None:
    source = OpcUaSource(
        name="wd",
        endpoint=f"opc.tcp://127.0.0.1:{free_port}/vigil/",
        publishing_interval_ms=100,
        sampling_interval_ms=0,
        watchdog_s=2.0,
        reconnect_initial_s=0.2,
        reconnect_max_s=1.0,
        patterns=[{"folder": "0:Objects/2:Plant", "glob": "MTR-*", "machine_type": "motor"}],
    )

    async def scenario() -> tuple[list[Gap], int, dict[str, int]]:
        fleet = Fleet(example_config, seed=2, start=datetime(2026, 9, 1, tzinfo=UTC), machines=["MTR-003"])
        gaps: list[Gap] = []
        after = 0
        async with SimulatorServer(fleet, free_port, speed=100.0) as server:
            serving = asyncio.create_task(server.run())
            async with OpcUaCollector(source, example_config) as collector:
                readings = 0
                async for event in collector:
                    if isinstance(event, Gap):
                        gaps.append(event)
                    elif isinstance(event, Reading):
                        readings += 1
                        if readings == 30:
                            assert await server.drop_subscriptions() == 1
                        if gaps:
                            after += 1
                            if after >= 20:
                                break
                counters = dict(collector.counters)
            serving.cancel()
        return gaps, after, counters

    gaps, after, counters = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert after >= 20
    assert len(gaps) == 1 and gaps[0].machine_id == "MTR-003" and gaps[0].start < gaps[0].end
    assert gaps[0].reason == "connection_lost", gaps  # how it was noticed is counted: lost:subscription_silent
    assert counters["lost:subscription_silent"] == 1, counters
    assert counters["connects"] == 2, counters
