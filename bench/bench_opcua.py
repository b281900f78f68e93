"""Throughput of the fleet model and of the OPC UA path (simulator server -> collector), no Kafka.

    python bench/bench_opcua.py            # ~1 minute
    python bench/bench_opcua.py --smoke    # a few seconds

Prints samples/s of the pure fleet model, and readings/s the collector delivers from the asyncua server
(server and collector share one process and event loop, so this is a lower bound for the collector).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from datetime import UTC, datetime

from ingest.opcua.collector import OpcUaCollector
from ingest.simulator.fleet import Fleet
from ingest.simulator.server import SimulatorServer
from vigil.config import OpcUaSource, load_config

START = datetime(2026, 1, 1, tzinfo=UTC)


def bench_fleet(days: float) -> None:
    fleet = Fleet(load_config(), seed=1, start=START, sample_interval_s=10)
    started = time.perf_counter()
    samples = sum(len(r) for r, _ in fleet.run(days * 86400))
    elapsed = time.perf_counter() - started
    print(
        f"fleet model: {samples:,} samples in {elapsed:.1f} s = {samples / elapsed:,.0f} samples/s "
        f"({days * 86400 / elapsed / 86400 * 60:.1f} simulated days per minute, 12 machines, 10 s)"
    )


async def bench_opcua(seconds: float, speed: float) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = load_config()
    source = OpcUaSource(
        name="bench",
        endpoint=f"opc.tcp://127.0.0.1:{port}/vigil/",
        publishing_interval_ms=100,
        sampling_interval_ms=0,
        queue_size=1000,
        patterns=config.sources.opcua[0].patterns,
    )
    fleet = Fleet(config, seed=1, start=START, sample_interval_s=10)
    async with SimulatorServer(fleet, port, speed=speed) as server, OpcUaCollector(source, config) as collector:
        await collector.wait_connected(30)
        serving = asyncio.create_task(server.run())
        written0, started, received = server.written, time.perf_counter(), 0
        async for _ in collector:
            received += 1
            if time.perf_counter() - started >= seconds:
                break
        elapsed = time.perf_counter() - started
        written = server.written - written0
        serving.cancel()
    print(
        f"opcua speed {speed:g} (server + collector, one process): written {written / elapsed:,.0f}/s, "
        f"collected {received / elapsed:,.0f} readings/s, queue overflow dropped "
        f"{collector.counters['dropped_overflow']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run")
    args = parser.parse_args()
    bench_fleet(0.05 if args.smoke else 1.0)
    for speed in (600.0, 1200.0, 2400.0):
        asyncio.run(bench_opcua(2.0 if args.smoke else 15.0, speed))


if __name__ == "__main__":
    main()
