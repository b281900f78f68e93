"""Throughput of the OPC UA collector against a server in another process, and of the simulator's fleet model.

    python bench/bench_opcua.py            # ~1.5 minutes
    python bench/bench_opcua.py --smoke    # a few seconds

**Collector.** A load server in its own process holds ``--machines`` pumps of 6 sensors each (3,000 Double
variables by default) under ``Objects/Plant``, namespace ``urn:vigil:bench``, and changes them round-robin at a
target rate (values/s; value i = 1, 2, 3, ..., each with its own source timestamp). The server is node-opcua
(``opcua_load_server.js``, installed with npm into ``~/.cache/vigil`` on first use, as by the interop tests), so
that the collector, not the server, is measured; ``--server asyncua`` runs an asyncua one instead (``--serve``),
whose publishing falls behind from ~10,000 values/s on this machine. node-opcua samples a variable at its own
rate (~50 ms) even with sampling interval 0, so the load is spread over many nodes, each changing every 150 ms or
slower. The collector subscribes to all of them by one pattern (``nsu=`` folder + glob, sampling interval 0,
queue 100 per node, publishing every 100 ms), as ``vigil collect opcua`` does, and every value goes through the
Validator (no Kafka, as in ``bench_modbus.py`` and ``bench_sparkplug.py``). For each target rate it prints what
the server wrote, what the collector delivered (values/s, and the share of the values written that arrived:
100 % = none lost), and each process's CPU use. The collector's values per CPU-second is what one collector does
on a core of its own; a row where the collector's CPU is well below 100 % and nothing was lost did not reach it.

**Fleet model.** Samples/s of the simulator's physics alone (no OPC UA).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.opcua.collector import OpcUaCollector  # noqa: E402
from ingest.simulator.fleet import Fleet  # noqa: E402
from ingest.validation import Validator  # noqa: E402
from vigil.config import VigilConfig, load_config  # noqa: E402
from vigil.contracts import Reading  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
NAMESPACE = "urn:vigil:bench"
TICK_S = 0.01


def _machines(n: int) -> list[str]:
    return [f"BENCH-{i:04d}" for i in range(1, n + 1)]


# ---------------------------------------------------------------------------------------------- the load server
async def _serve(port: int, machines: int, sensors: list[str], rate: float) -> None:
    import logging

    from asyncua import Server, ua

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NAMESPACE)
    plant = await server.nodes.objects.add_folder(ua.NodeId("Plant", idx), ua.QualifiedName("Plant", idx))
    nodes: list[ua.NodeId] = []
    for machine in _machines(machines):
        obj = await plant.add_object(ua.NodeId(machine, idx), ua.QualifiedName(machine, idx))
        for sensor in sensors:
            var = await obj.add_variable(
                ua.NodeId(f"{machine}.{sensor}", idx), ua.QualifiedName(sensor, idx), 0.0, ua.VariantType.Double
            )
            nodes.append(var.nodeid)
    aspace = server.iserver.aspace
    value_attr = ua.AttributeIds.Value
    async with server:
        print("READY", flush=True)
        written, started, i = 0, time.perf_counter(), 0
        cpu0 = time.process_time()
        last_report = started
        while True:
            due = int((time.perf_counter() - started) * rate) - written
            for _ in range(max(due, 0)):
                i += 1
                now = datetime.now(UTC)  # each value its own source timestamp (the collector skips repeats)
                dv = ua.DataValue(ua.Variant(float(i), ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now)
                await aspace.write_attribute_value(nodes[i % len(nodes)], value_attr, dv)
            written += max(due, 0)
            t = time.perf_counter()
            if t - last_report >= 0.5:
                last_report = t
                print(f"W {written} {t - started:.3f} {time.process_time() - cpu0:.3f}", flush=True)
            await asyncio.sleep(TICK_S)


NODE_OPCUA = "2.186.4"
"""The node-opcua the interop tests use, installed with npm into ``~/.cache/vigil`` (outside the repository)."""


def node_modules() -> Path | None:
    """node-opcua's ``node_modules`` (installed with npm on first use), or None without Node.js and npm."""
    import shutil

    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        return None
    prefix = Path.home() / ".cache" / "vigil" / f"node-opcua-{NODE_OPCUA}"
    if not (prefix / "node_modules" / "node-opcua").is_dir():
        prefix.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), f"node-opcua@{NODE_OPCUA}"]
        subprocess.run(command, check=True, timeout=900, capture_output=True)
    return prefix / "node_modules"


class LoadServer:
    """The load server as a child process, node-opcua (``opcua_load_server.js``) or asyncua (``--serve``), and
    its last report."""

    def __init__(self, port: int, machines: int, sensors: list[str], rate: float, modules: Path | None) -> None:
        args = [str(port), str(machines), ",".join(sensors), str(rate)]
        if modules is not None:
            script = Path(__file__).with_name("opcua_load_server.js")
            env = {**os.environ, "NODE_PATH": str(modules)}
            command = ["node", str(script), *args]
        else:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            command = [sys.executable, __file__, "--serve", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self.report: tuple[int, float, float] = (0, 0.0, 0.0)
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("READY"):
                self._ready.set()
            elif line.startswith("W "):
                _, n, wall, cpu = line.split()
                self.report = (int(n), float(wall), float(cpu))

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the load server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("the load server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


# ---------------------------------------------------------------------------------------------- the collector
def _config(port: int, machines: int) -> VigilConfig:
    data: dict[str, Any] = load_config().model_dump(mode="json", exclude={"sources"})
    data["machines"] += [{"id": m, "type": "pump", "line": "north-1"} for m in _machines(machines)]
    folder = f"0:Objects/nsu={NAMESPACE};Plant"
    data["sources"] = {
        "opcua": [
            {
                "name": "bench",
                "endpoint": f"opc.tcp://127.0.0.1:{port}/bench/",
                "publishing_interval_ms": 100,
                "sampling_interval_ms": 0,
                "queue_size": 100,
                "queue_maxsize": 100_000,
                # A loaded 2-core machine can delay a publish response by seconds; a reconnect would measure that.
                "watchdog_s": 30.0,
                "timeout_s": 30.0,
                "patterns": [{"folder": folder, "glob": "BENCH-*", "machine_type": "pump"}],
            }
        ]
    }
    return load_config(data=data, environ={})


async def _collect(config: VigilConfig, server: LoadServer, seconds: float, nodes: int) -> dict[str, float]:
    validator = Validator(config)
    async with OpcUaCollector(config.sources.opcua[0], config) as collector:
        await collector.wait_connected(60)
        warm_until = time.perf_counter() + 1.0  # past the subscription's first burst (every node's current value)
        async for _event in collector:
            if time.perf_counter() >= warm_until:
                break
        values = 0
        spans: dict[tuple[str, str], list[float]] = {}  # per node: first, last value seen, count
        n0, w0, c0 = server.report
        cpu0, started = time.process_time(), time.perf_counter()
        async for event in collector:
            if isinstance(event, Reading) and event.value is not None:
                validator.check(event)
                values += 1
                span = spans.setdefault((event.machine_id, event.sensor), [event.value, event.value, 0.0])
                span[1] = event.value
                span[2] += 1
            if values % 500 == 0 and time.perf_counter() - started >= seconds:
                break
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
        n1, w1, c1 = server.report
        dropped = collector.counters["dropped_overflow"]
    server_wall = max(w1 - w0, 1e-9)
    return {
        "written_s": (n1 - n0) / server_wall,
        "server_cpu": (c1 - c0) / server_wall,
        "collected_s": values / elapsed,
        "collector_cpu": cpu / elapsed,
        "per_cpu_s": values / cpu if cpu > 0 else 0.0,
        "dropped": dropped,
        # the server writes 1, 2, 3, ... round-robin over the nodes: a node's values are n apart, so what a node
        # delivered of the span between its first and last value seen is whole (100 %) when none was lost
        "share": sum(c for _, _, c in spans.values()) / sum((b - a) / nodes + 1 for a, b, _ in spans.values())
        if spans
        else 0.0,
    }


def bench_collector(rates: list[float], machines: int, seconds: float, stack: str) -> None:
    sensors = list(load_config().machine_types["pump"].sensors)
    modules = node_modules() if stack == "node-opcua" else None
    if stack == "node-opcua" and modules is None:
        print("no Node.js/npm here: the load server is asyncua (the bottleneck from ~10,000 values/s)")
    print(
        f"opcua collector: {machines * len(sensors)} nodes ({machines} pumps x {len(sensors)}) on a "
        f"{'node-opcua' if modules else 'asyncua'} load server, "
        f"server and collector in separate processes, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} before"
    )
    print(
        f"{'target/s':>9} {'written/s':>10} {'server CPU':>10} {'collected/s':>12} "
        f"{'share':>6} {'collector CPU':>13} {'values/CPU-s':>13}"
    )
    for rate in rates:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = LoadServer(port, machines, sensors, rate, modules)
        try:
            server.wait_ready(120)
            r = asyncio.run(_collect(_config(port, machines), server, seconds, machines * len(sensors)))
        finally:
            server.stop()
        share = r["share"]
        print(
            f"{rate:>9,.0f} {r['written_s']:>10,.0f} {r['server_cpu']:>9.0%} {r['collected_s']:>12,.0f} "
            f"{share:>6.0%} {r['collector_cpu']:>12.0%} {r['per_cpu_s']:>13,.0f}"
            + (f"  dropped {r['dropped']:.0f}" if r["dropped"] else "")
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def bench_fleet(days: float) -> None:
    fleet = Fleet(load_config(), seed=1, start=START, sample_interval_s=10)
    started = time.perf_counter()
    samples = sum(len(r) for r, _ in fleet.run(days * 86400))
    elapsed = time.perf_counter() - started
    print(
        f"fleet model: {samples:,} samples in {elapsed:.1f} s = {samples / elapsed:,.0f} samples/s "
        f"({days * 86400 / elapsed / 86400 * 60:.1f} simulated days per minute, 12 machines, 10 s)"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        port, machines, sensors, rate = sys.argv[2:6]
        asyncio.run(_serve(int(port), int(machines), sensors.split(","), float(rate)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run")
    parser.add_argument("--machines", type=int, default=500, help="pumps on the load server (6 nodes each)")
    parser.add_argument("--rates", default="5000,10000,20000,40000", help="target values/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per rate")
    parser.add_argument(
        "--server", choices=("node-opcua", "asyncua"), default="node-opcua", help="the load server's OPC UA stack"
    )
    args = parser.parse_args()
    if args.smoke:
        bench_fleet(0.05)
        bench_collector([2000.0], 100, 2.0, args.server)
        return
    bench_fleet(1.0)
    bench_collector([float(r) for r in args.rates.split(",")], args.machines, args.seconds, args.server)


if __name__ == "__main__":
    main()
