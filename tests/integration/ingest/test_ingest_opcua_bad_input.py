"""Bad input from an OPC UA server is counted per reason and flagged, never crashes the collector.

(A value of the wrong type cannot be served here: asyncua refuses to write a String into a Double variable;
``to_reading`` handles it and is unit-tested in ``test_ingest_opcua_units.py``.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.opcua.collector import OpcUaCollector
from ingest.publisher import KafkaPublisher
from ingest.simulator.fleet import Fleet
from ingest.simulator.server import SimulatorServer
from ingest.validation import Validator
from vigil.bus import ensure_topics, pipeline_topics
from vigil.config import KafkaSettings, OpcUaSource, PublishSettings, SpoolSettings, Topics, VigilConfig
from vigil.contracts import Quality, Reading, ReadingBatch
from vigil.testing import consume

pytestmark = pytest.mark.integration

T0 = datetime(2030, 8, 1, tzinfo=UTC)  # after the server's own initial values

# (value written, status code) -> what the reading must look like
CASES: list[tuple[Any, int, float | None, Quality, set[str]]] = [
    (12.5, 0, 12.5, Quality.GOOD, set()),
    (float("nan"), 0, None, Quality.GOOD, {"not_finite"}),
    (float("inf"), 0, None, Quality.GOOD, {"not_finite"}),
    (900.0, 0, 900.0, Quality.GOOD, {"out_of_range"}),  # flow range is 0..600
    (5.0, 0x808C0000, None, Quality.BAD, {"bad_quality"}),  # BadSensorFailure: asyncua serves no value
    (7.0, 0x40930000, 7.0, Quality.UNCERTAIN, {"uncertain_quality"}),  # UncertainSensorNotAccurate
    (13.0, 0, 13.0, Quality.GOOD, set()),
]


def test_bad_values_are_flagged_counted_and_published(
    example_config: VigilConfig, kafka_settings: KafkaSettings, topics: Topics, free_port: int, tmp_path: Path
) -> None:
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    source = OpcUaSource(
        name="bad",
        endpoint=f"opc.tcp://127.0.0.1:{free_port}/vigil/",
        publishing_interval_ms=50,
        sampling_interval_ms=0,
        queue_size=50,
        nodes=[{"machine": "PMP-001", "sensor": "flow", "node_id": "ns=2;s=PMP-001.flow"}],
    )
    validator = Validator(example_config)
    publisher = KafkaPublisher(
        kafka_settings, topics, SpoolSettings(path=tmp_path / "spool.sqlite"), PublishSettings(batch_max_ms=50)
    )
    publisher.start()

    async def scenario() -> list[Reading]:
        fleet = Fleet(example_config, seed=1, start=T0, machines=["PMP-001"])
        got: list[Reading] = []
        async with SimulatorServer(fleet, free_port) as server, OpcUaCollector(source, example_config) as collector:
            await collector.wait_connected(30)
            await asyncio.sleep(0.5)
            for i, (value, code, *_) in enumerate(CASES):
                await server.inject("PMP-001", "flow", value, code, T0 + timedelta(seconds=10 * (i + 1)))
                await asyncio.sleep(0.15)  # one value per publishing interval: each is its own sample
            async for event in collector:
                assert isinstance(event, Reading)
                if event.ts <= T0:
                    continue  # the initial value (never written)
                checked = validator.check(event)
                assert checked is not None
                publisher.add(checked)
                got.append(checked)
                if len(got) == len(CASES):
                    break
            assert collector.counters["not_finite"] >= 2  # plus any initial (never written) value
        return got

    try:
        got = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        publisher.close()
    for reading, (_, code, value, quality, flags) in zip(got, CASES, strict=True):
        assert reading.value == value, reading
        assert reading.quality is quality and reading.status_code == code
        assert set(reading.flags) == flags, reading
    assert validator.counters["not_finite"] == 2
    assert validator.counters["out_of_range"] == 1
    assert validator.counters["bad_quality"] == 1
    assert validator.counters["uncertain_quality"] == 1

    batches = consume(kafka_settings, [topics.readings], lambda got: sum(len(b.samples) for b in got) >= len(CASES))
    assert all(isinstance(b, ReadingBatch) for b in batches)
    published = [r for b in batches for r in b.readings()]
    assert [(r.ts, r.value, r.flags) for r in published] == [(r.ts, r.value, r.flags) for r in got]
