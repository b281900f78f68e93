"""Where Vigil connects: Kafka, topic names, InfluxDB, the MQTT broker. Secrets are ``SecretStr``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from vigil.config._base import Section


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "vigil"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    compression: Literal["gzip", "lz4", "zstd", "snappy", "none"] = "gzip"
    linger_ms: int = Field(default=20, ge=0, le=10_000)
    partitions: int = Field(default=4, ge=1, le=1024)
    """Partitions for topics Vigil creates; workers scale out up to this number."""
    replication_factor: int = Field(default=1, ge=1, le=7)

    def client_kwargs(self) -> dict[str, object]:
        """Connection keyword arguments shared by kafka-python producers, consumers and admin clients."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return kwargs


class Topics(Section):
    """Every topic name, in one place."""

    readings: str = "vigil.readings"
    extra_readings: list[str] = []
    """More reading topics a data engineer added (same contracts)."""
    readings_pattern: str | None = None
    """A regex; when set, every matching topic is consumed as a readings topic (instead of the list)."""
    maintenance: str = "vigil.maintenance"
    features: str = "vigil.features"
    predictions: str = "vigil.predictions"
    drift: str = "vigil.drift"
    alerts: str = "vigil.alerts"
    dead_letter: str = "vigil.dead-letter"
    audit: str = "vigil.audit"
    """The models stage's segment audit (prequential quality per machine type, site and line)."""
    changelog_prefix: str = "vigil.changelog."
    """Compacted state topics: ``<prefix><service>``."""

    def reading_topics(self) -> list[str]:
        return [self.readings, *self.extra_readings]


class InfluxSettings(Section):
    url: str = "http://127.0.0.1:18086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "vigil"
    """v1: database name (``db``); also the v1-compatibility DBRP mapping on 2.x/3.x."""
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=300)
    gzip: bool = True
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_retries: int = Field(default=5, ge=0, le=100)
    """Retries of a failed write (connection error, 5xx, 429) before ``flush()`` raises and offsets are held."""
    retry_backoff_s: float = Field(default=0.5, gt=0, le=60)
    """First retry delay; doubles per retry up to 30 s."""


class MqttSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
