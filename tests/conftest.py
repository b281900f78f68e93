"""Fixtures shared by every test.

Integration tests get their real services, in this order:
1. the settings ``vigil services up`` printed (``VIGIL_KAFKA__BOOTSTRAP_SERVERS`` etc. in the environment, or
   the ``services.env`` file it writes under ``$VIGIL_STATE_DIR``/``.vigil``), when those services answer;
2. testcontainers, where a Docker engine is available;
3. otherwise the test is skipped with the reason, except when ``VIGIL_REQUIRE_SERVICES=1`` (CI sets it):
   then a missing service fails the test, so CI cannot pass with integration tests skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from vigil.config import InfluxSettings, KafkaSettings, Topics, VigilConfig, load_config
from vigil.services import InfluxDB, Kafka, ServicesConfig

ROOT = Path(__file__).resolve().parents[1]


def _services_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("VIGIL_")}
    state = Path(os.environ.get("VIGIL_STATE_DIR", ROOT / ".vigil"))
    env_file = state / "services.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, value = line.removeprefix("export ").split("=", 1)
                env.setdefault(key, value)
    return env


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=20).returncode == 0


def _unavailable(what: str) -> None:
    reason = f"{what} is not available: run `vigil services up` (or provide a Docker engine for testcontainers)"
    if os.environ.get("VIGIL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"VIGIL_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def services_env() -> dict[str, str]:
    return _services_env()


@pytest.fixture(scope="session")
def kafka_settings(services_env: dict[str, str]) -> Iterator[KafkaSettings]:
    bootstrap = services_env.get("VIGIL_KAFKA__BOOTSTRAP_SERVERS")
    if bootstrap:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        if _port_open(host, int(port)):
            yield KafkaSettings(bootstrap_servers=bootstrap, client_id="vigil-test", linger_ms=5)
            return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield KafkaSettings(bootstrap_servers=container.get_bootstrap_server(), client_id="vigil-test")
            return
    _unavailable("Kafka")


@dataclass(frozen=True)
class InfluxV1:
    """A real InfluxDB answering the v1 HTTP API, with a fresh database per test."""

    url: str
    database: str

    def query(self, q: str) -> dict[str, object]:
        import json

        data = urllib.parse.urlencode({"q": q, "db": self.database, "epoch": "ns"}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as resp:
            result: dict[str, object] = json.loads(resp.read())
        return result

    def settings(self) -> InfluxSettings:
        return InfluxSettings(url=self.url, api="v1", database=self.database)

    def settings_v2(self) -> InfluxSettings:
        """The v2 API of InfluxDB 1.8+: any token while auth is off, bucket = database/retention policy."""
        return InfluxSettings(
            url=self.url,
            api="v2",
            database=self.database,
            token=SecretStr("vigil:unused"),
            org="-",
            bucket=f"{self.database}/autogen",
        )


@pytest.fixture(scope="session")
def influx_url(services_env: dict[str, str]) -> Iterator[str]:
    url = services_env.get("VIGIL_INFLUX__URL")
    if url:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                if resp.status == 204:
                    yield url
                    return
        except OSError:
            pass
    if _docker_available():
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        with DockerContainer("influxdb:1.8").with_exposed_ports(8086) as container:
            wait_for_logs(container, "Listening on HTTP")
            yield f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8086)}"
            return
    _unavailable("InfluxDB")


@pytest.fixture
def influx(influx_url: str) -> Iterator[InfluxV1]:
    db = f"test_{uuid.uuid4().hex[:12]}"
    server = InfluxV1(influx_url, db)
    server.query(f'CREATE DATABASE "{db}"')
    yield server
    server.query(f'DROP DATABASE "{db}"')


@pytest.fixture
def influx_v2api(services_env: dict[str, str]) -> Iterator[InfluxV1]:
    """A fresh database on the InfluxDB 1.8 that serves the v2 API (`vigil services up influxdb-v2api`);
    ``.settings_v2()`` addresses it as influxdb-client does: bucket ``<database>/autogen``."""
    url = services_env.get("VIGIL_INFLUX_V2_URL", "")
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
            ok = resp.status == 204
    except (OSError, ValueError):
        ok = False
    if not ok:
        _unavailable("InfluxDB with the v2 API (`vigil services up influxdb-v2api`)")
    db = f"test_{uuid.uuid4().hex[:12]}"
    server = InfluxV1(url, db)
    server.query(f'CREATE DATABASE "{db}"')
    yield server
    server.query(f'DROP DATABASE "{db}"')


@pytest.fixture(scope="session")
def mqtt_address(services_env: dict[str, str]) -> tuple[str, int]:
    host = services_env.get("VIGIL_MQTT__HOST", "127.0.0.1")
    port = int(services_env.get("VIGIL_MQTT__PORT", "0") or 0)
    if port and _port_open(host, port):
        return host, port
    _unavailable("Mosquitto (MQTT)")
    raise AssertionError("unreachable")


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Iterator[str]:
    """A short unique suffix for topic, group and database names, so tests never see each other's data. A Kafka
    test's topics named ``t-<unique>.*`` are deleted afterwards, so that a broker living across many runs (a
    developer's) does not pile up partitions until it runs out of file handles (seen at ~20,000)."""
    suffix = uuid.uuid4().hex[:10]
    yield suffix
    if "kafka_settings" in request.fixturenames:
        _delete_topics(request.getfixturevalue("kafka_settings"), f"t-{suffix}.")


@pytest.fixture
def topics(unique: str) -> Topics:
    """Pipeline topic names unique to one test."""
    return Topics(
        readings=f"t-{unique}.readings",
        maintenance=f"t-{unique}.maintenance",
        features=f"t-{unique}.features",
        predictions=f"t-{unique}.predictions",
        drift=f"t-{unique}.drift",
        alerts=f"t-{unique}.alerts",
        dead_letter=f"t-{unique}.dead-letter",
        audit=f"t-{unique}.audit",
        changelog_prefix=f"t-{unique}.changelog.",
    )


def _delete_topics(kafka: KafkaSettings, prefix: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(**kafka.client_kwargs(), client_id="vigil-test-cleanup")
    except KafkaError:  # the test stopped the broker; nothing to clean
        return
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names, timeout_ms=30_000)
    except KafkaError:
        pass  # cleaning up is best effort: the next run uses fresh names anyway
    finally:
        admin.close()


@pytest.fixture
def free_port() -> int:
    return _free_port()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[Kafka]:
    """A Kafka broker of this test's own, on free ports, for outage tests (the shared one is never stopped)."""
    kafka = Kafka(
        ServicesConfig(state_dir=tmp_path / "kafka-state", kafka_port=_free_port(), kafka_controller_port=_free_port())
    )
    kafka.up()
    try:
        yield kafka
    finally:
        kafka.down()


@pytest.fixture
def private_influx(tmp_path: Path) -> Iterator[InfluxDB]:
    """An InfluxDB of this test's own, on free ports, for outage tests."""
    influx = InfluxDB(
        ServicesConfig(state_dir=tmp_path / "influx-state", influx_port=_free_port(), influx_rpc_port=_free_port())
    )
    influx.up()
    try:
        yield influx
    finally:
        influx.down()


@pytest.fixture(scope="session")
def example_config() -> VigilConfig:
    return load_config(ROOT / "config" / "plant.example.toml", environ={})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With ``VIGIL_REQUIRE_SERVICES=1`` (CI) an integration test that skipped, for any reason, fails.

    Tests marked ``docker`` (testcontainers-only paths) are exempt: they need a Docker engine CI here lacks.
    """
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("VIGIL_REQUIRE_SERVICES") == "1"
        and item.get_closest_marker("integration") is not None
        and item.get_closest_marker("docker") is None
    ):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"integration test skipped while VIGIL_REQUIRE_SERVICES=1: {reason}"
