"""Collectors' configuration: OPC UA endpoints with node mappings and patterns, MQTT payload mappings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator

from vigil.config._base import Section
from vigil.config.mapping import FileSource, KafkaSource, MaintenanceSource, ReadingMapping


class OpcUaSecurity(Section):
    """Transport security. When a policy other than ``None`` is set the client never falls back to None."""

    policy: Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    """Client certificate (DER or PEM)."""
    private_key: Path | None = None
    server_certificate: Path | None = None
    """The trusted (pinned) server certificate; a server presenting another one is refused."""
    username: str | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(f"policy {self.policy!r} and mode {self.mode!r} must both be None or both be set")
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError("a security policy needs certificate and private_key")
        if self.policy != "None" and self.server_certificate is None:
            raise ValueError("a security policy needs server_certificate (the trusted, pinned server certificate)")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class OpcUaNode(Section):
    """One variable, by NodeId (``ns=2;s=Pump1.Flow``) or by browse path (``0:Objects/2:Pump1/2:Flow``)."""

    machine: str
    sensor: str
    node_id: str | None = None
    browse_path: str | None = None
    sampling_interval_ms: float | None = Field(default=None, ge=0)
    deadband_abs: float | None = Field(default=None, ge=0)
    deadband_pct: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_address(self) -> Self:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("give exactly one of node_id or browse_path")
        return self


class OpcUaPattern(Section):
    """Every object under ``folder`` whose browse name matches ``glob`` is a machine of ``machine_type``.

    Its child variables are matched to the type's sensors by browse name (``sensor_names`` maps a browse name
    to a sensor when they differ); the machine id is the object's browse name, or ``id_template`` formatted with
    ``{name}``. Only machines listed in ``[[machines]]`` are accepted: an unknown node never creates a machine.
    """

    folder: str
    glob: str = "*"
    machine_type: str
    id_template: str = "{name}"
    sensor_names: dict[str, str] = {}


class OpcUaSource(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: float = Field(default=500, gt=0)
    sampling_interval_ms: float = Field(default=250, ge=0)
    queue_size: int = Field(default=10, ge=1, le=10_000)
    discard_oldest: bool = True
    deadband: Literal["none", "absolute", "percent"] = "none"
    deadband_value: float = Field(default=0.0, ge=0)
    poll_interval_ms: float = Field(default=1000, gt=0)
    event_time: Literal["source", "server"] = "source"
    security: OpcUaSecurity = OpcUaSecurity()
    nodes: list[OpcUaNode] = []
    patterns: list[OpcUaPattern] = []
    watchdog_s: float = Field(default=30.0, gt=0)
    """A subscription silent for this long is treated as lost: reconnect and mark a gap."""
    reconnect_initial_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    queue_maxsize: int = Field(default=10_000, ge=1, le=1_000_000)
    """Bound of the collector's output queue (readings and gaps waiting for the publisher)."""
    overflow: Literal["block", "drop_oldest"] = "block"
    """Full output queue: ``block`` (back-pressure) or ``drop_oldest`` (counted as ``dropped_overflow``)."""


class MqttMapping(ReadingMapping):
    """A :class:`~vigil.config.mapping.ReadingMapping` for pushed JSON payloads, with MQTT's earlier defaults.

    The same model as files and foreign Kafka topics (layouts, tags, renames, time zones); MQTT keeps its
    ``unit = "unit"`` default, and the keys of the earlier MQTT-only mapping still work: ``ts = "t"`` and
    ``ts_format = "epoch_ms"`` mean ``time = {column = "t", format = "epoch_ms"}``.

    >>> MqttMapping.model_validate({"ts": "t", "ts_format": "epoch_ms"}).time
    TimeSpec(column='t', format='epoch_ms', zone='UTC')
    """

    unit: str | None = "unit"

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not ({"ts", "ts_format"} & data.keys()):
            return data
        data = dict(data)
        legacy = {"column": data.pop("ts", None), "format": data.pop("ts_format", None)}
        legacy = {k: v for k, v in legacy.items() if v is not None}
        time = data.get("time")
        if time is None:
            data["time"] = legacy
        elif isinstance(time, dict):
            clash = sorted(k for k in legacy if k in time)
            if clash:
                raise ValueError(f"give the time as time.{clash[0]} or the older ts/ts_format key, not both")
            data["time"] = {**time, **legacy}
        else:
            raise ValueError("give the time as time = {...} or the older ts/ts_format keys, not both")
        return data


class MqttSource(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    topics: list[str] = Field(min_length=1)
    qos: Literal[0, 1, 2] = 1
    mapping: MqttMapping = MqttMapping()


class Sources(Section):
    opcua: list[OpcUaSource] = []
    mqtt: list[MqttSource] = []
    file: list[FileSource] = []
    kafka: list[KafkaSource] = []
    maintenance: list[MaintenanceSource] = []
