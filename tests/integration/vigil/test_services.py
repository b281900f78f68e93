"""`vigil services`: up, up again, status, down, and nothing left listening (a private set on other ports)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vigil.services import ServicesConfig

pytestmark = pytest.mark.integration


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_up_twice_status_down_leaves_nothing_listening(tmp_path: Path) -> None:
    kafka, controller, influx, rpc, mqtt, v2 = _free_ports(6)
    cfg = ServicesConfig(
        state_dir=tmp_path / "state",
        kafka_port=kafka,
        kafka_controller_port=controller,
        influx_port=influx,
        influx_rpc_port=rpc,
        mqtt_port=mqtt,
        influx_v2_port=v2,
    )
    # Drive the real command line with this private configuration (ports through a tiny launcher).
    launcher = (
        "import sys; from pathlib import Path; from vigil import services as s; "
        f"cfg = s.ServicesConfig(state_dir=Path({str(cfg.state_dir)!r}), kafka_port={kafka}, "
        f"kafka_controller_port={controller}, influx_port={influx}, influx_rpc_port={rpc}, mqtt_port={mqtt}, "
        f"influx_v2_port={v2}); "
        "s.ServicesConfig = lambda: cfg; sys.exit(s.main(sys.argv[1:]))"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        return subprocess.run(
            [sys.executable, "-c", launcher, *args], capture_output=True, text=True, timeout=240, env=env
        )

    try:
        first = run("up")
        assert first.returncode == 0, first.stderr
        assert f"export VIGIL_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:{kafka}" in first.stdout
        assert f"export VIGIL_INFLUX__URL=http://127.0.0.1:{influx}" in first.stdout
        assert (cfg.state_dir / "services.env").read_text().strip() == first.stdout.strip()
        pids = {p.name: p.read_text() for p in cfg.state_dir.rglob("*.pid")}
        assert len(pids) == 3

        second = run("up")  # idempotent: the same processes keep running
        assert second.returncode == 0, second.stderr
        assert {p.name: p.read_text() for p in cfg.state_dir.rglob("*.pid")} == pids

        status = run("status")
        assert status.returncode == 0
        assert status.stdout.count("ready at") == 3, status.stdout
        assert "influxdb-v2api: stopped" in status.stdout, "started only when named"
        assert all(_listening(p) for p in (kafka, controller, influx, mqtt))
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert not any(_listening(p) for p in (kafka, controller, influx, rpc, mqtt))
    assert list(cfg.state_dir.rglob("*.pid")) == []
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    status = run("status")
    assert status.stdout.count("stopped") == 4, status.stdout
