"""Throughput of the Modbus TCP collector against a real pymodbus server in another process, no Kafka.

    python bench/bench_modbus.py                 # ~20 s
    python bench/bench_modbus.py --smoke         # a few seconds

The server (pymodbus' SimDevice, 10,000 holding registers) runs in its own process so that it does not share
the collector's event loop. The collector polls ``--values`` float32 values of one device, in groups of 62
(one 124-register request each), as fast as it can (``interval_ms = 1``), and each value goes through the
Validator as in ``vigil collect modbus``. Prints values/s and requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import socket
import time
from typing import Any

from ingest.modbus import ModbusCollector
from ingest.validation import Validator
from vigil.config import VigilConfig, load_config
from vigil.contracts import Reading


def _serve(port: int) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    regs = [SimData(0, values=[(i * 37) % 65536 for i in range(10_000)], datatype=DataType.REGISTERS)]
    device = SimDevice(
        id=1,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            regs,
            [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
        ),
    )

    async def main() -> None:
        await ModbusTcpServer(device, address=("127.0.0.1", port)).serve_forever()

    asyncio.run(main())


def _config(port: int, values: int) -> VigilConfig:
    data: dict[str, Any] = load_config().model_dump(mode="json", exclude={"sources"})
    machines = [m for m in data["machines"]]
    sensors = [(m["id"], s) for m in machines for s in data["machine_types"][m["type"]]["sensors"]]
    registers = [
        {
            "machine": sensors[i % len(sensors)][0],
            "sensor": sensors[i % len(sensors)][1],
            "address": 2 * i,
            "type": "float32",
        }
        for i in range(values)
    ]
    groups = [
        {"name": f"g{g}", "interval_ms": 1, "registers": registers[g * 62 : (g + 1) * 62]}
        for g in range((values + 61) // 62)
    ]
    data["sources"] = {"modbus": [{"name": "bench", "host": "127.0.0.1", "port": port, "groups": groups}]}
    return load_config(data=data, environ={})


async def bench(config: VigilConfig, seconds: float) -> None:
    validator = Validator(config)
    async with ModbusCollector(config.sources.modbus[0], config) as collector:
        await collector.wait_connected(30)
        started, values = time.perf_counter(), 0
        requests0 = collector.counters["requests"]
        async for event in collector:
            if isinstance(event, Reading):
                validator.check(event)
                values += 1
            if values % 1000 == 0 and time.perf_counter() - started >= seconds:
                break
        elapsed = time.perf_counter() - started
        requests = collector.counters["requests"] - requests0
    print(
        f"modbus: {values:,} values in {elapsed:.1f} s = {values / elapsed:,.0f} values/s "
        f"({requests / elapsed:,.0f} requests/s of 62 float32 each, validated; server in another process)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=1240)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    seconds = 3.0 if args.smoke else args.seconds
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its frame dumps at shutdown are noise here
        asyncio.run(bench(_config(port, args.values), seconds))
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
