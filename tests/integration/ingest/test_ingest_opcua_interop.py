"""Interop: the collector against node-opcua, an OPC UA stack independent of asyncua (issue 16, item 3).

The server (``interop/node_opcua_server.js``) runs as a Node.js process; node-opcua is installed once with npm
into ``~/.cache/vigil/node-opcua-<version>`` (outside the repository). Security SignAndEncrypt with the server
certificate pinned and a client certificate made by ``vigil opcua cert``'s function, namespaces by URI, and a
kill -9 + restart with server history: a Gap up to the server's restart, the values since backfilled.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.opcua.collector import OpcUaCollector
from ingest.opcua.security import make_client_certificate
from vigil.config import OpcUaSource, VigilConfig
from vigil.contracts import Gap, Reading, utcnow

pytestmark = pytest.mark.integration

VERSION = "2.186.4"
SCRIPT = Path(__file__).with_name("interop") / "node_opcua_server.js"
URI = "urn:vigil:nodeopcua"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the interop tests need Node.js and npm (node-opcua is a Node.js OPC UA stack)"
    prefix = Path.home() / ".cache" / "vigil" / f"node-opcua-{VERSION}"
    if not (prefix / "node_modules" / "node-opcua").is_dir():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), f"node-opcua@{VERSION}"],
            check=True,
            timeout=900,
            capture_output=True,
        )
    return prefix / "node_modules"


class NodeServer:
    def __init__(self, modules: Path, port: int, pki: Path) -> None:
        self.modules, self.port, self.pki = modules, port, pki
        self.proc: subprocess.Popen[str] | None = None
        self.certificate: Path | None = None

    def start(self) -> None:
        env = {**os.environ, "NODE_PATH": str(self.modules)}
        self.proc = subprocess.Popen(
            ["node", str(SCRIPT), str(self.port), str(self.pki)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in self.proc.stdout:
            if line.startswith("READY "):
                self.certificate = Path(line.split(" ", 1)[1].strip())
                return
            assert time.monotonic() < deadline, "node-opcua server did not start"
        raise AssertionError(f"node-opcua server exited with {self.proc.wait()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL
            self.proc.wait()


@pytest.fixture
def node_server(node_modules: Path, free_port: int, tmp_path: Path) -> Iterator[NodeServer]:
    server = NodeServer(node_modules, free_port, tmp_path / "server-pki")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_node_opcua_signed_and_encrypted_restart_gap_and_backfill(
    example_config: VigilConfig, node_server: NodeServer, tmp_path: Path
) -> None:
    cert, key = tmp_path / "client.der", tmp_path / "client.key.pem"
    make_client_certificate(cert, key, "urn:vigil:collector")
    assert node_server.certificate is not None
    source = OpcUaSource.model_validate(
        {
            "name": "node",
            "endpoint": f"opc.tcp://127.0.0.1:{node_server.port}/field",
            "publishing_interval_ms": 50,
            "sampling_interval_ms": 0,
            "queue_size": 100,
            "watchdog_s": 2.0,
            "timeout_s": 5.0,
            "patterns": [{"folder": f"0:Objects/nsu={URI};Plant", "glob": "PMP-*", "machine_type": "pump"}],
            "security": {
                "policy": "Basic256Sha256",
                "mode": "SignAndEncrypt",
                "certificate": str(cert),
                "private_key": str(key),
                "server_certificate": str(node_server.certificate),
            },
        }
    )
    measured: dict[str, float] = {}

    async def scenario() -> tuple[list[Reading | Gap], dict[str, int]]:
        events: list[Reading | Gap] = []
        async with OpcUaCollector(source, example_config) as collector:
            await collector.wait_connected(60)
            restarted, mark = False, 0
            async for event in collector:
                events.append(event)
                live = [e for e in events if isinstance(e, Reading) and "backfilled" not in e.flags]
                if not restarted and len(live) >= 40:
                    node_server.kill()
                    killed = utcnow()
                    measured["killed"] = killed.timestamp()
                    await asyncio.sleep(3.0)
                    await asyncio.to_thread(node_server.start)
                    measured["back"] = time.monotonic()
                    restarted = True
                    mark = len(events)
                elif restarted and "resumed_s" not in measured and isinstance(event, Reading):
                    measured["resumed_s"] = time.monotonic() - measured["back"]
                fresh = [e for e in events[mark:] if isinstance(e, Reading) and "backfilled" not in e.flags]
                if restarted and len(fresh) >= 40:
                    break
            return events, dict(collector.counters)

    events, counters = asyncio.run(asyncio.wait_for(scenario(), 240))
    print(f"\nnode-opcua kill -9 + 3 s: data again {measured['resumed_s']:.2f} s after it was ready; {counters}")
    assert counters["connects"] == 2, counters
    gaps = [e for e in events if isinstance(e, Gap)]
    assert len(gaps) == 1 and gaps[0].reason == "connection_lost" and gaps[0].sensor is None, gaps
    gap = gaps[0]
    assert gap.start.timestamp() <= measured["killed"] < gap.end.timestamp()  # up to the server's restart
    after = [e for e in events[events.index(gap) + 1 :] if isinstance(e, Reading)]
    assert after and any("backfilled" in r.flags for r in after), "the values since the restart came from history"
    for sensor in ("flow", "speed"):
        ticks = [int(r.value) for r in after if r.sensor == sensor and r.value is not None and r.value > 1e9]
        assert ticks == sorted(set(ticks)), f"{sensor}: once each and in order"
        # The history holds every value the server wrote since its restart, so the backfill has no hole. (Live,
        # node-opcua samples: when its timer, late under load, writes two ticks at once it reports the last one.)
        backfilled = [int(r.value) for r in after if r.sensor == sensor and "backfilled" in r.flags and r.value]
        backfilled = [t for t in backfilled if t > 1e9]
        holes = [(a, b) for a, b in itertools.pairwise(backfilled) if b != a + 1]
        assert backfilled and holes == [], f"{sensor}: the backfill since the restart is whole: {holes[:5]}"
        live = [t for t in ticks if t > backfilled[-1]]
        assert live and live[0] <= backfilled[-1] + 2, f"{sensor}: live values follow the backfill"
