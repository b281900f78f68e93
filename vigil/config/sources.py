"""Collectors' configuration: OPC UA endpoints with node mappings and patterns, Modbus TCP register maps, MQTT
payload mappings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from vigil.config._base import Section
from vigil.config.mapping import FileSource, KafkaSource, MaintenanceSource, ReadingMapping

NODE_ID = re.compile(
    r"^(?:ns=\d+;|nsu=[^;]+;)?"
    r"(?:i=\d+|s=.+|g=[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|b=[A-Za-z0-9+/=]+)$"
)
"""OPC UA's NodeId string form: namespace by index (``ns=2;``) or by URI (``nsu=urn:x;``), then the identifier."""
BROWSE_PART = re.compile(r"(?:(\d+):|nsu=([^;]+);)([^/]+)")
"""One browse path part: ``<namespace index>:<name>`` or ``nsu=<namespace uri>;<name>`` (a URI may hold ``/``)."""


def check_node_id(node_id: str) -> str:
    """A NodeId string as OPC UA writes it, or ValueError saying what it should look like.

    >>> check_node_id("nsu=urn:vigil:simulator;s=PMP-001.flow")
    'nsu=urn:vigil:simulator;s=PMP-001.flow'
    >>> check_node_id("P-101.speed")
    Traceback (most recent call last):
    ...
    ValueError: 'P-101.speed' is not a NodeId: write ns=<index>;s=<name> or nsu=<namespace uri>;s=<name> (or i=, g=, b=)
    """
    if not NODE_ID.match(node_id):
        raise ValueError(
            f"{node_id!r} is not a NodeId: write ns=<index>;s=<name> or nsu=<namespace uri>;s=<name> (or i=, g=, b=)"
        )
    return node_id


def split_browse_path(path: str) -> list[tuple[int | str, str]]:
    """``"0:Objects/nsu=urn:x;Plant"`` -> ``[(0, "Objects"), ("urn:x", "Plant")]``: each part's namespace (index or
    URI) and name, or ValueError naming the first part without a namespace.

    >>> split_browse_path("/0:Objects/nsu=http://vigil.example/ns;Plant/2:PMP-001")
    [(0, 'Objects'), ('http://vigil.example/ns', 'Plant'), (2, 'PMP-001')]
    >>> split_browse_path("Objects/Plant")
    Traceback (most recent call last):
    ...
    ValueError: browse path 'Objects/Plant': part 'Objects' is not <namespace index>:<name> or nsu=<namespace uri>;<name> (e.g. 0:Objects)
    """
    parts: list[tuple[int | str, str]] = []
    pos, text = 0, path.strip("/")
    while pos < len(text):
        m = BROWSE_PART.match(text, pos)
        if m is None or (m.end() < len(text) and text[m.end()] != "/"):
            bad = text[pos:].split("/", 1)[0]
            raise ValueError(
                f"browse path {path!r}: part {bad!r} is not <namespace index>:<name> or nsu=<namespace uri>;<name>"
                f" (e.g. 0:{bad.rsplit(':', 1)[-1]})"
            )
        parts.append((int(m.group(1)) if m.group(1) is not None else m.group(2), m.group(3)))
        pos = m.end() + 1
    if not parts:
        raise ValueError(f"browse path {path!r} is empty")
    return parts


class OpcUaSecurity(Section):
    """Transport security. When a policy other than ``None`` is set the client never falls back to None."""

    policy: Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    """Client certificate (DER or PEM)."""
    private_key: Path | None = None
    server_certificate: Path | None = None
    """The trusted (pinned) server certificate; a server presenting another one is refused."""
    trust_dir: Path | None = None
    """Instead of pinning: a folder of trusted CA (or server) certificates (``.der``, ``.pem``, ``.crt``) and their
    CRLs (``.crl``); a server certificate is accepted when one of them issued it (or it is one of them), it is
    valid, and no CRL of its issuer revokes it."""
    username: str | None = None
    password: SecretStr | None = None
    application_uri: str = Field(default="urn:vigil:collector", pattern=r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
    """The client's ApplicationUri: announced in the session and written into the certificate by
    ``vigil opcua cert`` (servers refuse a certificate whose URI differs: ``BadCertificateUriInvalid``)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(f"policy {self.policy!r} and mode {self.mode!r} must both be None or both be set")
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError("a security policy needs certificate and private_key")
        if self.policy != "None" and self.server_certificate is None and self.trust_dir is None:
            raise ValueError(
                "a security policy needs server_certificate (the trusted, pinned server certificate) or trust_dir"
                " (a folder of trusted CA certificates and CRLs)"
            )
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

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        return None if value is None else check_node_id(value)

    @field_validator("browse_path")
    @classmethod
    def _browse_path(cls, value: str | None) -> str | None:
        if value is not None:
            split_browse_path(value)
        return value

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

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        split_browse_path(value)
        return value


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
    watchdog_s: float = Field(default=5.0, gt=0)
    """A dead connection is detected within this: the client probes the server every ``watchdog_s / 2`` (that
    long to answer), and a subscription without any publish response (data or keep-alive) for this long is lost."""
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    """Reconnect waits are 10 % of the outage so far, within ``reconnect_initial_s`` .. ``reconnect_max_s``."""
    backfill: bool = True
    """On reconnect, read what was missed with HistoryRead (raw) where the server historizes a node; published
    in order with the flag ``backfilled``. Nodes without history get a Gap (``connection_lost``)."""
    backfill_max_s: float = Field(default=3600.0, gt=0)
    """A node whose last value is older than this at the reconnect is not backfilled (it gets a Gap)."""
    timeout_s: float = Field(default=10.0, gt=0)
    queue_maxsize: int = Field(default=10_000, ge=1, le=1_000_000)
    """Bound of the collector's output queue (readings and gaps waiting for the publisher)."""
    overflow: Literal["block", "drop_oldest"] = "block"
    """Full output queue: ``block`` (back-pressure) or ``drop_oldest`` (counted as ``dropped_overflow``)."""


ModbusTable = Literal["holding", "input", "coil", "discrete"]
ModbusType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool"]
MODBUS_WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4, "bool": 1}
"""16-bit registers per value type (coils and discrete inputs: one bit each)."""


class ModbusRegister(Section):
    """One value of one sensor: where it is (table, 0-based address), how it is encoded and scaled.

    ``value = raw * scale + offset``. ``word_order`` is the order of the 16-bit registers of a 32/64-bit value
    (``big``: most significant register first, Modbus' usual), ``byte_order`` the order inside each register.
    """

    machine: str
    sensor: str
    table: ModbusTable = "holding"
    address: int = Field(ge=0, le=65535)
    type: ModbusType = "uint16"
    word_order: Literal["big", "little"] | None = None
    """Default: the source's ``word_order``."""
    byte_order: Literal["big", "little"] | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    """The unit the device delivers; default: the sensor's configured unit."""

    @model_validator(mode="after")
    def _type_fits_table(self) -> Self:
        bits = self.table in ("coil", "discrete")
        if bits != (self.type == "bool"):
            raise ValueError(
                f"table {self.table!r} holds {'bits: type must be bool' if bits else 'registers: type must not be bool'}"
            )
        if self.address + MODBUS_WORDS[self.type] - 1 > 65535:
            raise ValueError(f"a {self.type} at address {self.address} runs past register 65535")
        return self


class ModbusGroup(Section):
    """Registers polled together every ``interval_ms`` (contiguous ones in one request)."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.\-]+$")
    interval_ms: float = Field(default=1000, gt=0)
    unit_id: int | None = Field(default=None, ge=0, le=255)
    """Default: the source's ``unit_id`` (the device behind a gateway)."""
    registers: list[ModbusRegister] = Field(min_length=1)


class ModbusSource(Section):
    """One Modbus TCP device (or gateway): its register map in polling groups."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    timeout_s: float = Field(default=3.0, gt=0)
    """Per request; a request without an answer in this time ends the connection (reconnect, Gap)."""
    retries: int = Field(default=0, ge=0, le=5)
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    max_gap_registers: int = Field(default=8, ge=0, le=100)
    """Registers of one group less than this far apart are read in one request (the unused ones discarded)."""
    groups: list[ModbusGroup] = Field(min_length=1)


class SparkplugSource(Section):
    """One Sparkplug B group on the ``[mqtt]`` broker: its edge nodes' devices are machines, metrics sensors."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    group_id: str = Field(pattern=r"^[^/#+]+$")
    qos: Literal[0, 1] = 1
    devices: dict[str, str] = {}
    """``"<edge node>/<device>"`` or ``"<device>"`` -> machine id; default: the device id is the machine id."""
    metrics: dict[str, str] = {}
    """Metric name -> sensor; default: the metric name is the sensor."""
    rebirth: bool = True
    """Ask an edge node to rebirth (NCMD ``Node Control/Rebirth``) when its aliases cannot be known: data before
    its birth (the collector started later), an unknown alias, a skipped ``seq``."""
    rebirth_interval_s: float = Field(default=5.0, gt=0)
    """At most one rebirth request per edge node within this time (its NBIRTH may take a moment)."""
    host_id: str | None = Field(default=None, pattern=r"^[^/#+]+$")
    """Primary host application id: publishes ``spBv1.0/STATE/<host_id>`` (retained, QoS 1) online when it
    connects, and offline when it stops or as its will; none by default."""


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
    modbus: list[ModbusSource] = []
    sparkplug: list[SparkplugSource] = []
    mqtt: list[MqttSource] = []
    file: list[FileSource] = []
    kafka: list[KafkaSource] = []
    maintenance: list[MaintenanceSource] = []
