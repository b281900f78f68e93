"""A small asyncua server for the field tests: wall-clock timestamps, optional history, namespace not at index 2.

Address space: ``Objects/Plant/PMP-001/{flow,speed}`` in namespace :data:`URI` (registered after another
namespace, so it is index 3: a configuration naming it by URI must still map). Every ``period_s`` each variable
gets the value ``tick = floor(wall clock / period_s)`` with that tick's time as its source timestamp, so a reader
can tell a missing value from the tick numbers alone. ``history``: the server historizes both variables
(``server.historize_node_data_change``, in memory).

Run as a process: ``python _opcua_field_server.py <port> [--history] [--period 0.05]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
from datetime import UTC, datetime, timedelta

from asyncua import Server, ua

URI = "urn:vigil:fieldtest"
SENSORS = ("flow", "speed")


def tick_time(tick: int, period_s: float) -> datetime:
    return datetime.fromtimestamp(tick * period_s, UTC)


async def serve(port: int, history: bool, period_s: float, ready: asyncio.Event | None = None) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/field/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    await server.register_namespace("urn:vigil:some-other-namespace")
    idx = await server.register_namespace(URI)
    plant = await server.nodes.objects.add_folder(idx, "Plant")
    pump = await plant.add_object(idx, "PMP-001")
    variables = [
        await pump.add_variable(ua.NodeId(f"PMP-001.{s}", idx), ua.QualifiedName(s, idx), 0.0) for s in SENSORS
    ]
    async with server:
        if history:
            for var in variables:
                await server.historize_node_data_change(var, period=timedelta(hours=1), count=0)
        if ready is not None:
            ready.set()
        tick = math.floor(time.time() / period_s)
        while True:
            now_tick = math.floor(time.time() / period_s)
            for t in range(max(tick + 1, now_tick - 100), now_tick + 1):
                ts = tick_time(t, period_s)
                for var in variables:
                    await var.write_value(
                        ua.DataValue(
                            ua.Variant(float(t), ua.VariantType.Double), SourceTimestamp=ts, ServerTimestamp=ts
                        )
                    )
            tick = now_tick
            await asyncio.sleep(period_s - (time.time() % period_s) + 0.001)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--history", action="store_true")
    parser.add_argument("--period", type=float, default=0.05)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.port, args.history, args.period))


if __name__ == "__main__":
    main()
