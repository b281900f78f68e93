"""Where Vigil connects: Kafka, topic names, InfluxDB, the MQTT broker. Secrets are ``SecretStr``."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from vigil.config._base import Section
from vigil.config.security import ReadableFile, SecretFiles, TlsSettings


class KafkaSettings(SecretFiles):
    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "vigil"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: ReadableFile = None
    tls: TlsSettings = TlsSettings()
    """CA, client certificate (mTLS) and hostname check; used with ``security_protocol`` SSL or SASL_SSL."""
    compression: Literal["gzip", "lz4", "zstd", "snappy", "none"] = "gzip"
    linger_ms: int = Field(default=20, ge=0, le=10_000)
    partitions: int = Field(default=4, ge=1, le=1024)
    """Partitions for topics Vigil creates; workers scale out up to this number."""
    replication_factor: int = Field(default=1, ge=1, le=7)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, sasl_username and "
                "sasl_password (or sasl_password_file)"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError(
                f"sasl_mechanism/sasl_username/sasl_password are set but security_protocol is "
                f"{self.security_protocol} (SASL_SSL to use them)"
            )
        if sasl and not tls and self.sasl_mechanism == "PLAIN":
            raise ValueError(
                "sasl_mechanism PLAIN over SASL_PLAINTEXT sends the password in clear; use security_protocol SASL_SSL"
            )
        if self.tls.configured and not tls:
            raise ValueError(f"tls is configured but security_protocol is {self.security_protocol} (SSL or SASL_SSL)")
        return self

    def client_kwargs(self) -> dict[str, object]:
        """Connection keyword arguments shared by kafka-python producers, consumers and admin clients."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.endswith("SSL"):
            kwargs["ssl_context"] = self.tls.ssl_context()
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


class InfluxSettings(SecretFiles):
    url: str = "http://127.0.0.1:18086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "vigil"
    """v1: database name (``db``); also the v1-compatibility DBRP mapping on 2.x/3.x."""
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: ReadableFile = None
    token: SecretStr | None = None
    token_file: ReadableFile = None
    tls: TlsSettings = TlsSettings()
    """CA (a private one), client certificate and hostname check for an ``https://`` url."""
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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.tls.configured and not self.url.startswith("https://"):
            raise ValueError(f"tls is configured but url {self.url} is not https://")
        return self

    @property
    def https(self) -> bool:
        return self.url.startswith("https://")

    def ssl_context(self) -> Any:
        """The TLS context for an https url (None for http)."""
        return self.tls.ssl_context() if self.https else None


class MqttSettings(SecretFiles):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: ReadableFile = None
    tls: TlsSettings | None = None
    """TLS to the broker: a ``[mqtt.tls]`` table (CA, client certificate, ...); ``true`` is TLS with the system's
    CAs, ``false`` or unset plain TCP."""

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_flag(cls, value: object) -> object:
        if value is True or value in ("true", "True", "1"):
            return {}
        if value is False or value in ("false", "False", "0", ""):
            return None
        return value
