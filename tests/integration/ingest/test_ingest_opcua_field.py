"""OPC UA in the field: a server killed and restarted, a network outage with and without server history.

Servers are real asyncua servers on free ports (a subprocess for kill -9, in-process behind a TCP proxy for a
network outage); namespaces are named by URI (the server puts them at index 3). The measured delays are printed
(``-s``) and not asserted beyond generous timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.opcua.collector import OpcUaCollector
from tests.integration.ingest._opcua_field_server import URI, serve
from vigil.config import OpcUaSource, VigilConfig
from vigil.contracts import Gap, Reading, utcnow

pytestmark = pytest.mark.integration

SERVER = Path(__file__).with_name("_opcua_field_server.py")
PERIOD_S = 0.05


def _source(port: int, **extra: Any) -> OpcUaSource:
    return OpcUaSource.model_validate(
        {
            "name": "field",
            "endpoint": f"opc.tcp://127.0.0.1:{port}/field/",
            "publishing_interval_ms": 50,
            "sampling_interval_ms": 0,
            "queue_size": 100,
            "watchdog_s": 2.0,
            "timeout_s": 3.0,
            "nodes": [
                {"machine": "PMP-001", "sensor": "flow", "node_id": f"nsu={URI};s=PMP-001.flow"},
                {
                    "machine": "PMP-001",
                    "sensor": "speed",
                    "browse_path": f"0:Objects/nsu={URI};Plant/nsu={URI};PMP-001/nsu={URI};speed",
                },
            ],
            **extra,
        }
    )


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(port: int, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port), *args], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _port_open(port):
        assert proc.poll() is None and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    return proc


def test_server_killed_and_restarted_data_resumes_fast_and_the_gap_is_on_the_collectors_clock(
    example_config: VigilConfig, free_port: int
) -> None:
    source = _source(free_port)
    procs = [_start(free_port)]
    measured: dict[str, float] = {}

    async def scenario() -> list[Reading | Gap]:
        events: list[Reading | Gap] = []
        async with OpcUaCollector(source, example_config) as collector:
            await collector.wait_connected(30)
            killed_at = back_at = None
            async for event in collector:
                events.append(event)
                if killed_at is None and sum(isinstance(e, Reading) for e in events) >= 40:
                    procs[0].kill()  # SIGKILL: no goodbye to the client
                    procs[0].wait()
                    killed_at, killed_wall = time.monotonic(), utcnow()
                    measured["killed_wall"] = killed_wall.timestamp()
                    await asyncio.sleep(3.0)
                    procs.append(await asyncio.to_thread(_start, free_port))
                    back_at = time.monotonic()
                    events.append(Gap(machine_id="PMP-001", start=killed_wall, end=killed_wall, reason="test:kill"))
                elif back_at is not None and isinstance(event, Reading) and "resumed_s" not in measured:
                    assert killed_at is not None
                    measured["resumed_s"] = time.monotonic() - back_at
                    measured["since_kill_s"] = time.monotonic() - killed_at
                    break
            measured["connects"] = collector.counters["connects"]
        return events

    try:
        events = asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(
        f"\nkill -9 + 3 s: data again {measured['resumed_s']:.2f} s after the server listened again "
        f"({measured['since_kill_s']:.2f} s after the kill)"
    )
    assert measured["connects"] == 2
    marker = next(i for i, e in enumerate(events) if isinstance(e, Gap) and e.reason == "test:kill")
    gaps = [e for e in events[marker:] if isinstance(e, Gap) and e.reason != "test:kill"]
    assert len(gaps) == 1, gaps
    gap = gaps[0]
    assert gap.reason == "connection_lost" and gap.machine_id == "PMP-001" and gap.sensor is None
    kill = events[marker]
    assert isinstance(kill, Gap)
    assert gap.start <= kill.start < gap.end <= utcnow()  # the outage, on the collector's clock
    assert gap.end - gap.start >= timedelta(seconds=3)
    after = events[events.index(gap) + 1 :]
    assert after and all(isinstance(e, Reading) for e in after)  # the Gap precedes the first new value


class _Proxy:
    """A TCP proxy that can black-hole its connections (no close, no data) and refuse new ones for a while."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.blackholed = False
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if self.blackholed:
                        continue  # swallowed: the peer sees a silent, open connection
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def outage(self, seconds: float) -> None:
        """Black-hole every connection, refuse new ones, then cut the old ones and listen again."""
        assert self.server is not None
        self.blackholed = True
        self.server.close()
        await asyncio.sleep(seconds)
        for w in self._writers:
            w.close()
        self._writers.clear()
        self.blackholed = False
        await self.start(self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self._writers:
            w.close()


async def _until_lost(collector: OpcUaCollector) -> float:
    started = time.monotonic()
    # The counters are plain numbers, not events: look at them often.
    while not any(k.startswith("lost:") for k in collector.counters):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("history", [True, False], ids=["history", "no-history"])
def test_network_outage_is_backfilled_from_history_or_marked_as_a_gap(
    example_config: VigilConfig, free_port: int, history: bool
) -> None:
    async def scenario() -> tuple[list[Reading | Gap], dict[str, int], float]:
        ready = asyncio.Event()
        serving = asyncio.create_task(serve(free_port, history, PERIOD_S, ready))
        await asyncio.wait_for(ready.wait(), 30)
        proxy = _Proxy(free_port)
        await proxy.start()
        events: list[Reading | Gap] = []
        try:
            async with OpcUaCollector(_source(proxy.port), example_config) as collector:
                await collector.wait_connected(30)
                outage: asyncio.Task[None] | None = None
                watch: asyncio.Task[float] | None = None
                async for event in collector:
                    events.append(event)
                    live = [e for e in events if isinstance(e, Reading) and "backfilled" not in e.flags]
                    if outage is None and len(live) >= 40:
                        outage = asyncio.create_task(proxy.outage(6.0))
                        watch = asyncio.create_task(_until_lost(collector))
                    if (
                        outage is not None
                        and outage.done()
                        and collector.counters["connects"] == 2
                        and len(live) >= 160
                    ):
                        break
                counters = dict(collector.counters)
                assert watch is not None
                detected = await watch
        finally:
            await proxy.stop()
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        return events, counters, detected

    events, counters, detected = asyncio.run(asyncio.wait_for(scenario(), 120))
    print(f"\nblack-holed connection: judged lost after {detected:.2f} s (watchdog_s = 2); counters {counters}")
    assert counters["connects"] == 2, counters
    assert any(k.startswith("lost:") for k in counters), counters
    readings = [e for e in events if isinstance(e, Reading)]
    gaps = [e for e in events if isinstance(e, Gap)]
    for sensor in ("flow", "speed"):
        ticks = [int(r.value) for r in readings if r.sensor == sensor and r.value is not None]
        ticks = ticks[1:]  # the first is the value the server held when the subscription started
        assert ticks == sorted(ticks) and len(ticks) == len(set(ticks)), f"{sensor}: in order, each once"
        holes = [(a, b) for a, b in itertools.pairwise(ticks) if b != a + 1]
        if history:
            assert holes == [], f"{sensor}: nothing lost across the outage with history: {holes}"
        else:
            assert len(holes) == 1 and holes[0][1] - holes[0][0] > 6.0 / PERIOD_S / 2, holes
    backfilled = [r for r in readings if "backfilled" in r.flags]
    if history:
        assert gaps == [] and len(backfilled) >= 2 * 6.0 / PERIOD_S / 2, (len(backfilled), gaps)
        assert counters["backfilled"] == len(backfilled)
        # Published before any new live value of the same sensor.
        first_backfilled = events.index(backfilled[0])
        lost_tick = max(int(r.value or 0) for r in readings[:first_backfilled] if r.sensor == backfilled[0].sensor)
        assert int(backfilled[0].value or 0) == lost_tick + 1
    else:
        assert backfilled == []
        assert len(gaps) == 1 and gaps[0].reason == "connection_lost" and gaps[0].sensor is None
        assert gaps[0].end - gaps[0].start >= timedelta(seconds=5)


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
def test_every_node_that_cannot_be_used_is_named_with_its_status(
    example_config: VigilConfig, free_port: int, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = _source(
        free_port,
        mode=mode,
        poll_interval_ms=50,
        nodes=[
            {"machine": "PMP-001", "sensor": "flow", "node_id": f"nsu={URI};s=PMP-001.flow"},
            {"machine": "PMP-001", "sensor": "pressure", "node_id": f"nsu={URI};s=PMP-001.nope"},
            {"machine": "PMP-001", "sensor": "bearing_temp", "node_id": "nsu=urn:nope;s=PMP-001.flow"},
            {"machine": "PMP-001", "sensor": "vibration_rms", "browse_path": f"0:Objects/nsu={URI};Plant/nsu={URI};X"},
        ],
        patterns=[
            {"folder": f"0:Objects/nsu={URI};Plant", "glob": "PMP-*", "machine_type": "pump"},
            {"folder": f"0:Objects/nsu={URI};Plant", "glob": "MTR-*", "machine_type": "motor"},
        ],
    )

    async def scenario() -> tuple[list[Reading], dict[str, int]]:
        ready = asyncio.Event()
        serving = asyncio.create_task(serve(free_port, False, PERIOD_S, ready))
        await asyncio.wait_for(ready.wait(), 30)
        out: list[Reading] = []
        try:
            async with OpcUaCollector(source, example_config) as collector:
                async for event in collector:
                    if isinstance(event, Reading):
                        out.append(event)
                    if len(out) >= 20:
                        break
                return out, dict(collector.counters)
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving

    readings, counters = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert {r.sensor for r in readings} == {"flow", "speed"}  # the nodes that exist; no Bad reading per poll
    log = "\n".join(caplog.messages)
    assert f"PMP-001/pressure (node nsu={URI};s=PMP-001.nope): BadNodeIdUnknown" in log, log
    assert "PMP-001/bearing_temp at nsu=urn:nope;s=PMP-001.flow: the server has no namespace 'urn:nope'" in log
    assert f"PMP-001/vibration_rms at 0:Objects/nsu={URI};Plant/nsu={URI};X: BadNoMatch" in log, log
    assert f"pattern 0:Objects/nsu={URI};Plant/MTR-* (machine type motor) matches no configured machine" in log
    assert counters["pattern_empty"] == 1 and counters["missing_node"] == 2
    assert counters["subscribe_failed" if mode == "subscribe" else "unreadable"] == 1, counters
