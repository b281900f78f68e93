"""What a new user meets when starting ``vigil alerts``: a database that does not exist yet, a retention policy
that does not exist, and a second service on the same host (every port 0). Real Kafka and InfluxDB."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts import service as alerts_service
from alerts.service import AlertService
from vigil.bus import machine_key, make_producer
from vigil.config import AlertConfig, InfluxSettings, KafkaSettings, Topics, VigilConfig
from vigil.contracts import Prediction, encode
from vigil.influx import parse_influxql

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+)) \((metrics|alerts API)\)")


def _influxql(url: str, q: str, db: str = "") -> dict[str, Any]:
    data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ns"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


@pytest.fixture
def fresh_database(influx_url: str) -> Iterator[str]:
    """A database name nobody created: the service must."""
    db = f"fresh_{uuid.uuid4().hex[:10]}"
    yield db
    _influxql(influx_url, f'DROP DATABASE "{db}"')


def test_alerts_service_creates_a_missing_database_and_writes_to_it(
    example_config: VigilConfig,
    kafka_settings: KafkaSettings,
    topics: Topics,
    influx_url: str,
    fresh_database: str,
    tmp_path: Path,
    unique: str,
    wait_for: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    names = {str(r["name"]) for r in parse_influxql(_influxql(influx_url, "SHOW DATABASES"))}
    assert fresh_database not in names
    config = example_config.model_copy(
        update={
            "kafka": kafka_settings,
            "topics": topics,
            "influx": InfluxSettings(url=influx_url, database=fresh_database),
            "alerts": AlertConfig(http_port=0, outbox_path=str(tmp_path / "outbox.sqlite3")),
        }
    )
    service = AlertService(config, group_id=f"alerts-{unique}")
    with caplog.at_level("INFO", logger="vigil.influx"):
        service.setup(http=False)
    try:
        assert f"created InfluxDB database {fresh_database!r} at {influx_url}" in caplog.messages
        producer = make_producer(kafka_settings)
        for i, p in enumerate((0.1, 0.2, 0.3)):
            prediction = Prediction(
                machine_id="PMP-001", machine_type="pump", ts=T0 + timedelta(minutes=i), model="m", p_failure=p
            )
            producer.send(topics.predictions, key=machine_key("PMP-001"), value=encode(prediction))
        producer.flush(timeout=30)
        producer.close()

        def written() -> int:
            rows = parse_influxql(_influxql(influx_url, 'SELECT count("p_failure") FROM "predictions"', fresh_database))
            return int(rows[0]["count"]) if rows else 0

        wait_for(lambda: written() == 3, step=service.run_once, describe=written)
    finally:
        service.close()


def _env(kafka: KafkaSettings, topics: Topics, influx: InfluxSettings, tmp: Path, name: str) -> dict[str, str]:
    env = {f"VIGIL_TOPICS__{k.upper()}": v for k, v in topics.model_dump().items() if isinstance(v, str)}
    env.update(
        {
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "VIGIL_INFLUX__URL": influx.url,
            "VIGIL_INFLUX__DATABASE": influx.database,
            "VIGIL_ALERTS__HTTP_PORT": "0",
            "VIGIL_ALERTS__OUTBOX_PATH": str(tmp / f"{name}.sqlite3"),
        }
    )
    return env


def test_vigil_alerts_exits_naming_a_missing_retention_policy(
    kafka_settings: KafkaSettings,
    topics: Topics,
    influx: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in _env(kafka_settings, topics, influx.settings(), tmp_path, "a").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VIGIL_INFLUX__RETENTION_POLICY", "ninety_days")
    assert alerts_service.main(["--metrics-port", "-1", "--group", f"g-{topics.alerts}"]) == 1
    err = capsys.readouterr().err
    assert (
        "vigil alerts: influx.retention_policy: retention policy 'ninety_days' does not exist on database "
        f"{influx.database!r}"
    ) in err


class _Service:
    """One ``vigil alerts`` process; its stderr is collected by a thread so that the pipe never fills."""

    def __init__(self, env: dict[str, str], group: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "alerts", "--group", group, "--metrics-port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def urls(self) -> dict[str, str]:
        return {m.group(3): m.group(1) for line in list(self.lines) if (m := LISTENING.search(line))}

    def started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"vigil alerts exited {self.proc.returncode}:\n" + "\n".join(self.lines[-30:]))
        return any("alerts service running" in line for line in list(self.lines)) and len(self.urls()) == 2

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)


def _get(url: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(resp.status), json.loads(resp.read())


def test_two_alerts_services_on_one_host_with_every_port_0(
    kafka_settings: KafkaSettings,
    topics: Topics,
    influx: Any,
    tmp_path: Path,
    unique: str,
    wait_for: Any,
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    services = [
        _Service({**base, **_env(kafka_settings, topics, influx.settings(), tmp_path, name)}, f"alerts-{unique}-{name}")
        for name in ("a", "b")
    ]
    try:
        for s in services:
            wait_for(s.started, describe=lambda s=s: "\n".join(s.lines[-20:]))
        urls = [s.urls() for s in services]
        ports = {int(u[kind].rsplit(":", 1)[1]) for u in urls for kind in ("metrics", "alerts API")}
        assert len(ports) == 4, f"four distinct ports bound: {urls}"
        assert not ports & {8470, 9468}, "port 0 took a free port, not the default"
        for u in urls:
            status, health = _get(f"{u['metrics']}/healthz")
            assert (status, health["service"], health["alive"]) == (200, "alerts", True)
            status, api = _get(f"{u['alerts API']}/health")
            assert status == 200 and api["blocked"] is False
    finally:
        codes = [s.stop() for s in services]
    assert codes == [0, 0], "\n".join(line for s in services for line in s.lines[-10:])
