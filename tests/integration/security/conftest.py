"""The secured stack (``vigil services up --secure``) for the tests of this folder: where it is, its users."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vigil.config import InfluxSettings, KafkaSettings, MqttSettings, Topics
from vigil.services import ServicesConfig
from vigil.services_secure import SecureConfig, SecureInflux, SecureKafka

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class SecureStack:
    sc: SecureConfig

    @property
    def ca_file(self) -> Path:
        return self.sc.pki / "ca.crt"

    def secret(self, name: str) -> str:
        return self.sc.secret_value(name)

    def secrets(self) -> list[str]:
        """Every secret of the stack (what no output may contain)."""
        return [p.read_text().strip() for p in sorted(self.sc.secrets.iterdir())]

    def kafka_data(self, user: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
        """``[kafka]`` as a service ``user`` would configure it (the password as a file)."""
        return {
            "bootstrap_servers": f"{self.sc.host}:{self.sc.kafka_port}",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": mechanism,
            "sasl_username": user,
            "sasl_password_file": str(self.sc.secret(f"kafka-{user}")),
            "tls": {"ca_file": str(self.ca_file)},
            "partitions": 2,
        }

    def kafka(self, user: str, mechanism: str = "SCRAM-SHA-512", **changes: Any) -> KafkaSettings:
        return KafkaSettings(**{**self.kafka_data(user, mechanism), **changes})

    def admin_kwargs(self) -> dict[str, object]:
        return SecureKafka(self.sc).admin_kwargs()

    def influx_data(self, database: str) -> dict[str, Any]:
        return {
            "url": f"https://{self.sc.host}:{self.sc.influx_port}",
            "database": database,
            "username": "vigil",
            "password_file": str(self.sc.secret("influx-vigil")),
            "tls": {"ca_file": str(self.ca_file)},
            "batch_size": 500,
        }

    def influx(self, database: str, **changes: Any) -> InfluxSettings:
        return InfluxSettings(**{**self.influx_data(database), **changes})

    def influx_admin(self, statement: str) -> dict[str, object]:
        return SecureInflux(self.sc)._query(statement, "admin")

    def mqtt_data(self, user: str = "collector") -> dict[str, Any]:
        return {
            "host": self.sc.host,
            "port": self.sc.mqtt_port,
            "username": user,
            "password_file": str(self.sc.secret(f"mqtt-{user}")),
            "tls": {"ca_file": str(self.ca_file)},
        }

    def mqtt(self, user: str = "collector", **changes: Any) -> MqttSettings:
        return MqttSettings(**{**self.mqtt_data(user), **changes})


def _open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def secure() -> SecureStack:
    sc = SecureConfig(ServicesConfig(state_dir=Path(os.environ.get("VIGIL_STATE_DIR", ROOT / ".vigil")).resolve()))
    ports = (sc.kafka_port, sc.influx_port, sc.mqtt_port)
    if not (sc.home / "services.env").exists() or not all(_open(sc.host, p) for p in ports):
        reason = "the secured stack is not running: run `vigil services up --secure`"
        if os.environ.get("VIGIL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"VIGIL_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    return SecureStack(sc)


@pytest.fixture
def secure_topics(secure: SecureStack, unique: str) -> Iterator[Topics]:
    """Pipeline topic names unique to one test, with every service's ACLs on them; deleted afterwards."""
    from kafka import KafkaAdminClient

    from vigil.acls import apply_acls

    topics = Topics(
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
    apply_acls(secure.admin_kwargs(), topics)
    yield topics
    admin = KafkaAdminClient(**secure.admin_kwargs(), client_id="vigil-test-cleanup")
    try:
        names = [t for t in admin.list_topics() if t.startswith(f"t-{unique}.")]
        if names:
            with contextlib.suppress(Exception):
                admin.delete_topics(names, timeout_ms=30_000)
    finally:
        admin.close()
