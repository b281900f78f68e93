"""A real pymodbus Modbus TCP server on a port, for the Modbus tests and the benchmark.

Device (unit) 1: coils 0..63, discrete inputs 0..63 (all True), holding registers 0..199, input registers
0..99 (register i holds i). Values are written by clients (``write_registers``, ``write_coil``): the test
encodes them with pymodbus' own ``convert_to_registers``, independent of the collector's decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

logging.getLogger("pymodbus").setLevel(logging.ERROR)


def device(unit_id: int = 1) -> SimDevice:
    return SimDevice(
        id=unit_id,
        simdata=(
            [SimData(0, count=64, values=False, datatype=DataType.BITS)],
            [SimData(0, count=64, values=True, datatype=DataType.BITS)],
            [SimData(0, count=200, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, values=list(range(100)), datatype=DataType.REGISTERS)],
        ),
    )


class ModbusServer:
    """``async with ModbusServer(port):`` serves until the block ends (or :meth:`stop`)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.server = ModbusTcpServer(device(), address=("127.0.0.1", self.port))
        self._task = asyncio.create_task(self.server.serve_forever())
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise AssertionError(f"the Modbus server did not listen on {self.port}")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.server = self._task = None

    async def __aenter__(self) -> ModbusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@contextlib.contextmanager
def serving_in_thread(port: int) -> Iterator[None]:
    """Serve in a thread with its own event loop (for code under test that must own the main thread)."""
    loop = asyncio.new_event_loop()
    server = ModbusServer(port)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
