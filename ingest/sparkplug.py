"""Sparkplug B over MQTT: births, aliases, data, deaths and sequence numbers turned into Readings and Gaps.

:class:`SparkplugDecoder` is the protocol state of one ``[[sources.sparkplug]]`` (group), fed one MQTT message at
a time (``handle(topic, payload, now)`` -> events); it needs no broker, so it is tested without one.
:class:`SparkplugCollector` is that decoder on the ``[mqtt]`` broker, in the one collector shape
(:class:`~ingest.collector_core.PahoCollector`); ``vigil collect sparkplug`` runs one per group.

- Payloads are Sparkplug B protobuf (the Eclipse Tahu ``sparkplug_b.proto`` field numbers, built at import with
  Google's ``protobuf`` library: :data:`Payload`).
- ``NBIRTH`` starts an edge node's session (its ``bdSeq`` and ``seq = 0``); ``DBIRTH`` declares a device's
  metrics with their aliases and current values; ``DDATA`` carries values by alias (or name). A device maps to a
  machine (``devices``, default: the device id) and a metric to a sensor (``metrics``, default: its name); only
  machines and sensors in the plant file are accepted, everything else is counted, never created.
- ``seq`` (0..255, per edge node, across all its messages) is checked: a skipped number means messages were
  lost, so every device of the node gets a Gap from its last message to this one (``seq_gap``).
- ``DDEATH`` ends a device, ``NDEATH`` (with the session's ``bdSeq``; a stale one is ignored) every device of
  the node; at the device's next birth a :class:`Gap` (reason ``connection_lost``) covers the time since its last
  value, on the collector's clock, before the birth's values. Messages of a node without a birth are counted
  (``no_birth``) and dropped: their aliases cannot be known.
- **Rebirth** (``rebirth = true``, the default): data of a node without a birth (the collector started after it),
  an unknown alias or a skipped ``seq`` makes the collector publish ``NCMD`` ``Node Control/Rebirth`` = true to
  that node (at most once per ``rebirth_interval_s`` until its NBIRTH), counted as ``rebirth_requests``.
- **Primary host STATE** (``host_id``): ``spBv1.0/STATE/<host_id>``, retained, QoS 1, JSON
  ``{"online": true, "timestamp": ms}`` on every connect; ``online: false`` when the collector stops, and as
  its will when it dies, so edge nodes that wait for their primary host know whether it listens.
- Event time: the metric's timestamp, else the payload's (ms since the epoch), else the collector's clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped]

from ingest.collector_core import Delivery, PahoCollector
from vigil.config import MqttSettings, SparkplugSource, VigilConfig
from vigil.contracts import Gap, Reading, utcnow

if TYPE_CHECKING:
    from ingest.publisher import KafkaPublisher
    from ingest.validation import Validator

log = logging.getLogger(__name__)

Event = Reading | Gap


def _build_payload_class() -> Any:
    f = descriptor_pb2.FileDescriptorProto(
        name="vigil_sparkplug_b.proto", package="org.eclipse.tahu.protobuf", syntax="proto2"
    )
    payload = f.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    t = descriptor_pb2.FieldDescriptorProto
    optional, repeated = t.LABEL_OPTIONAL, t.LABEL_REPEATED
    for name, number, kind in [
        ("name", 1, t.TYPE_STRING),
        ("alias", 2, t.TYPE_UINT64),
        ("timestamp", 3, t.TYPE_UINT64),
        ("datatype", 4, t.TYPE_UINT32),
        ("is_historical", 5, t.TYPE_BOOL),
        ("is_transient", 6, t.TYPE_BOOL),
        ("is_null", 7, t.TYPE_BOOL),
        ("int_value", 10, t.TYPE_UINT32),
        ("long_value", 11, t.TYPE_UINT64),
        ("float_value", 12, t.TYPE_FLOAT),
        ("double_value", 13, t.TYPE_DOUBLE),
        ("boolean_value", 14, t.TYPE_BOOL),
        ("string_value", 15, t.TYPE_STRING),
        ("bytes_value", 16, t.TYPE_BYTES),
    ]:
        metric.field.add(name=name, number=number, type=kind, label=optional)
    payload.field.add(name="timestamp", number=1, type=t.TYPE_UINT64, label=optional)
    payload.field.add(
        name="metrics",
        number=2,
        type=t.TYPE_MESSAGE,
        label=repeated,
        type_name=".org.eclipse.tahu.protobuf.Payload.Metric",
    )
    payload.field.add(name="seq", number=3, type=t.TYPE_UINT64, label=optional)
    payload.field.add(name="uuid", number=4, type=t.TYPE_STRING, label=optional)
    payload.field.add(name="body", number=5, type=t.TYPE_BYTES, label=optional)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload"))


Payload: Any = _build_payload_class()
"""The Sparkplug B ``Payload`` message class (metadata, properties, datasets and templates are not decoded)."""

# Sparkplug B data types (spec 6.4.16) that carry a number.
_SIGNED_INT = {1: 8, 2: 16, 3: 32}  # Int8, Int16, Int32 travel in int_value (uint32) as two's complement
INT64, FLOAT, DOUBLE, BOOLEAN = 4, 9, 10, 11
_UNSIGNED = {5, 6, 7}  # UInt8, UInt16, UInt32 in int_value
UINT64 = 8


def metric_value(metric: Any) -> float | None:
    """A metric's number (signed integers decoded from their two's complement), or None (null or not a number).

    >>> m = Payload.Metric(datatype=2, int_value=0xFFFE)      # Int16 -2
    >>> metric_value(m), metric_value(Payload.Metric(datatype=10, double_value=2.5)), metric_value(Payload.Metric(datatype=12, string_value="x"))
    (-2.0, 2.5, None)
    """
    kind = metric.datatype
    if metric.is_null:
        return None
    if kind in _SIGNED_INT:
        bits = _SIGNED_INT[kind]
        raw = metric.int_value & ((1 << bits) - 1)
        return float(raw - (1 << bits) if raw >= 1 << (bits - 1) else raw)
    if kind in _UNSIGNED:
        return float(metric.int_value)
    if kind == INT64:
        raw = metric.long_value
        return float(raw - (1 << 64) if raw >= 1 << 63 else raw)
    if kind == UINT64:
        return float(metric.long_value)
    if kind == FLOAT:
        return float(metric.float_value)
    if kind == DOUBLE:
        return float(metric.double_value)
    if kind == BOOLEAN:
        return float(metric.boolean_value)
    return None


def rebirth_command(now_ms: int) -> bytes:
    """An NCMD payload asking an edge node to publish its births again (``Node Control/Rebirth`` = true).

    >>> p = Payload.FromString(rebirth_command(1767225600000))
    >>> [(m.name, m.datatype, m.boolean_value) for m in p.metrics]
    [('Node Control/Rebirth', 11, True)]
    """
    payload = Payload(timestamp=now_ms)
    payload.metrics.add(name="Node Control/Rebirth", timestamp=now_ms, datatype=BOOLEAN, boolean_value=True)
    return bytes(payload.SerializeToString())


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, UTC)


@dataclass
class _Node:
    bd_seq: int | None = None
    seq: int | None = None
    online: bool = False
    aliases: dict[int, tuple[str | None, str, int]] = field(default_factory=dict)
    """alias -> (device or None for the node, metric name, datatype)."""
    devices: set[str] = field(default_factory=set)


class SparkplugDecoder:
    """The Sparkplug B state of one source (one group): see the module docstring."""

    def __init__(self, source: SparkplugSource, config: VigilConfig) -> None:
        self.source = source
        self.config = config
        self.counters: Counter[str] = Counter()
        """``messages``, ``readings``, ``gaps``, ``births``, ``deaths``, ``seq_gap``, ``no_birth``, ``stale_death``,
        ``unknown_alias``, ``unknown_machine``, ``unknown_sensor``, ``not_a_number``, ``undecodable``."""
        self._nodes: dict[str, _Node] = {}
        self._received: dict[str, datetime] = {}
        """Collector clock of each machine's last value."""
        self._dead: dict[str, datetime] = {}
        """Machines whose device died, with the collector clock of their last value: a Gap at the next birth."""
        self._logged: set[tuple[str, str]] = set()
        self._asked: dict[str, float] = {}
        """Edge node -> clock (s) of its last rebirth request, until its NBIRTH."""
        self._rebirths: list[str] = []

    def topics(self) -> list[str]:
        return [
            f"spBv1.0/{self.source.group_id}/{kind}/#"
            for kind in ("NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "DDATA", "NDATA")
        ]

    def _once(self, reason: str, what: str) -> None:
        self.counters[reason] += 1
        if (reason, what) not in self._logged:
            self._logged.add((reason, what))
            log.warning("sparkplug %s: %s (%s)", self.source.name, what, reason)

    def machine(self, edge: str, device: str) -> str | None:
        machine = self.source.devices.get(f"{edge}/{device}", self.source.devices.get(device, device))
        if machine not in self.config.machines_by_id:
            self._once("unknown_machine", f"device {edge}/{device} maps to no configured machine ({machine!r})")
            return None
        return machine

    def take_rebirths(self) -> list[str]:
        """The edge nodes to ask for a rebirth now (each once per ``rebirth_interval_s`` until it is reborn)."""
        out, self._rebirths = self._rebirths, []
        return out

    def _ask_rebirth(self, edge: str, now: datetime) -> None:
        if not self.source.rebirth:
            return
        clock = now.timestamp()
        asked = self._asked.get(edge)
        if asked is not None and clock - asked < self.source.rebirth_interval_s:
            return
        self._asked[edge] = clock
        self.counters["rebirth_requests"] += 1
        self._rebirths.append(edge)

    def handle(self, topic: str, data: bytes, now: datetime | None = None) -> list[Event]:
        now = now or utcnow()
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[0] != "spBv1.0" or parts[1] != self.source.group_id:
            return []
        kind, edge = parts[2], parts[3]
        device = parts[4] if len(parts) == 5 else None
        self.counters["messages"] += 1
        try:
            payload = Payload.FromString(data)
        except Exception:  # protobuf raises its own DecodeError; a bad payload must not stop the collector
            self._once("undecodable", f"{topic}: not a Sparkplug B payload")
            return []
        node = self._nodes.setdefault(edge, _Node())
        if kind == "NBIRTH":
            self._asked.pop(edge, None)
            return self._nbirth(edge, node, payload)
        if kind == "NDEATH":
            return self._ndeath(edge, node, payload)
        if not node.online:
            self._once("no_birth", f"{kind} from edge node {edge} before its NBIRTH; dropped")
            if kind in ("DDATA", "NDATA", "DBIRTH"):
                self._ask_rebirth(edge, now)
            return []
        out = self._check_seq(edge, node, payload, now)
        if kind == "DBIRTH" and device is not None:
            out += self._dbirth(edge, node, device, payload, now)
        elif kind == "DDEATH" and device is not None:
            self._device_dead(edge, node, device)
        elif kind == "DDATA" and device is not None:
            out += self._values(edge, node, device, payload, now)
        return out

    def _nbirth(self, edge: str, node: _Node, payload: Any) -> list[Event]:
        bd = [m for m in payload.metrics if m.name == "bdSeq"]
        node.bd_seq = int(bd[0].long_value) if bd else None
        node.seq = int(payload.seq)
        node.online = True
        node.aliases = {int(m.alias): (None, m.name, int(m.datatype)) for m in payload.metrics if m.HasField("alias")}
        self.counters["births"] += 1
        return []

    def _ndeath(self, edge: str, node: _Node, payload: Any) -> list[Event]:
        bd = [m for m in payload.metrics if m.name == "bdSeq"]
        if node.online and bd and node.bd_seq is not None and int(bd[0].long_value) != node.bd_seq:
            self.counters["stale_death"] += 1  # the will of an earlier session, after the node was reborn
            return []
        self.counters["deaths"] += 1
        node.online = False
        for device in list(node.devices):
            self._device_dead(edge, node, device)
        return []

    def connection_lost(self) -> None:
        """The broker connection broke: messages may have been missed. Every device's next value follows a Gap,
        and the next seq of each node is not judged (it cannot be known what was missed)."""
        for edge, node in self._nodes.items():
            node.seq = None
            for device in list(node.devices):
                machine = self.source.devices.get(f"{edge}/{device}", self.source.devices.get(device, device))
                if machine in self._received:
                    self._dead.setdefault(machine, self._received[machine])

    def _device_dead(self, edge: str, node: _Node, device: str) -> None:
        node.devices.discard(device)
        machine = self.source.devices.get(f"{edge}/{device}", self.source.devices.get(device, device))
        if machine in self._received:
            self._dead.setdefault(machine, self._received[machine])

    def _check_seq(self, edge: str, node: _Node, payload: Any, now: datetime) -> list[Event]:
        seq = int(payload.seq)
        expected = None if node.seq is None else (node.seq + 1) % 256
        node.seq = seq
        if expected is None or seq == expected:
            return []
        self._once("seq_gap", f"edge node {edge}: seq {seq} after {(expected - 1) % 256}: messages were lost")
        self._ask_rebirth(edge, now)  # a lost birth would leave aliases unknown: the node states them again
        out: list[Event] = []
        for device in node.devices:
            machine = self.source.devices.get(f"{edge}/{device}", self.source.devices.get(device, device))
            if machine in self._received:
                out.append(self._gap(machine, self._received[machine], now))
        return out

    def _gap(self, machine: str, start: datetime, end: datetime) -> Gap:
        self.counters["gaps"] += 1
        return Gap(
            machine_id=machine, start=start, end=max(start, end), reason="connection_lost", source=self.source.name
        )

    def _dbirth(self, edge: str, node: _Node, device: str, payload: Any, now: datetime) -> list[Event]:
        self.counters["births"] += 1
        node.devices.add(device)
        for m in payload.metrics:
            if m.HasField("alias"):
                node.aliases[int(m.alias)] = (device, m.name, int(m.datatype))
        machine = self.machine(edge, device)
        if machine is None:
            return []
        return self._values(edge, node, device, payload, now, machine)

    def _values(
        self, edge: str, node: _Node, device: str, payload: Any, now: datetime, machine: str | None = None
    ) -> list[Event]:
        machine = machine or self.machine(edge, device)
        if machine is None:
            return []
        sensors = self.config.machines_by_id[machine].sensors
        out: list[Event] = []
        if machine in self._dead:  # values again after a death or a lost broker connection
            out.append(self._gap(machine, self._dead.pop(machine), now))
        for m in payload.metrics:
            name, datatype = m.name, int(m.datatype)
            if not name:
                known = node.aliases.get(int(m.alias)) if m.HasField("alias") else None
                if known is None or known[0] != device:
                    self._once("unknown_alias", f"{edge}/{device}: alias {m.alias} was not in its DBIRTH")
                    self._ask_rebirth(edge, now)
                    continue
                name, datatype = known[1], known[2]
            sensor = self.source.metrics.get(name, name)
            if sensor not in sensors:
                self._once("unknown_sensor", f"{edge}/{device} metric {name!r}: machine {machine} has no such sensor")
                continue
            if not m.HasField("datatype"):
                m.datatype = datatype
            value = metric_value(m)
            if value is None and not m.is_null:
                self._once("not_a_number", f"{edge}/{device} metric {name!r} (datatype {datatype}) is not a number")
                continue
            ts = _ms(m.timestamp) if m.timestamp else _ms(payload.timestamp) if payload.timestamp else now
            self.counters["readings"] += 1
            self._received[machine] = now
            out.append(
                Reading(
                    machine_id=machine,
                    sensor=sensor,
                    ts=ts,
                    value=value,
                    unit=sensors[sensor].unit,
                    source=self.source.name,
                    flags=("historical",) if m.is_historical else (),
                )
            )
        return out


class SparkplugCollector(PahoCollector):
    """Subscribes to one Sparkplug group and hands its readings (validated) and gaps to the publisher."""

    kind = "sparkplug"
    source: SparkplugSource

    def __init__(
        self,
        broker: MqttSettings,
        source: SparkplugSource,
        config: VigilConfig,
        publisher: KafkaPublisher | None = None,
        validator: Validator | None = None,
    ) -> None:
        delivery = None if publisher is None or validator is None else Delivery(publisher, validator)
        super().__init__(broker, source, delivery, f"vigil-spb-{source.name}-{uuid.uuid4().hex[:8]}")
        self.decoder = SparkplugDecoder(source, config)
        self.counters = self.decoder.counters

    def topics(self) -> list[str]:
        return self.decoder.topics()

    def connection_lost(self) -> None:
        with self._lock:
            self.decoder.connection_lost()

    def handle(self, topic: str, payload: bytes) -> None:
        assert self.delivery is not None, "start the collector with a delivery"
        with self._lock:
            events = self.decoder.handle(topic, payload)
            rebirths = self.decoder.take_rebirths()
        for event in events:
            self.delivery(event)
        for edge in rebirths:
            self._ask_rebirth(edge)

    def _ask_rebirth(self, edge: str) -> None:
        client = self._client
        if client is None:
            return
        topic = f"spBv1.0/{self.source.group_id}/NCMD/{edge}"
        client.publish(topic, rebirth_command(int(time.time() * 1000)), qos=0)
        log.info("sparkplug %s: asked edge node %s to rebirth (%s)", self.name, edge, topic)

    # ------------------------------------------------------------------ primary host STATE (Sparkplug 3.0)
    def _state(self, online: bool) -> tuple[str, bytes]:
        body = json.dumps({"online": online, "timestamp": int(time.time() * 1000)})
        return f"spBv1.0/STATE/{self.source.host_id}", body.encode()

    def prepare(self, client: Any) -> None:
        if self.source.host_id is not None:
            topic, body = self._state(False)
            client.will_set(topic, body, qos=1, retain=True)

    def connected(self, client: Any) -> None:
        if self.source.host_id is not None:
            topic, body = self._state(True)
            client.publish(topic, body, qos=1, retain=True)

    def stopping(self, client: Any) -> None:
        if self.source.host_id is not None:
            topic, body = self._state(False)
            with contextlib.suppress(Exception):  # a broker that is gone gets the will instead
                client.publish(topic, body, qos=1, retain=True).wait_for_publish(2.0)


def main(argv: list[str]) -> int:
    """``vigil collect sparkplug``: run the configured Sparkplug B groups until interrupted (or ``--duration``)."""
    from ingest.collector_cli import CollectorRun, serve

    def make(run: CollectorRun, source: Any) -> SparkplugCollector:
        return SparkplugCollector(run.config.mqtt, source, run.config)

    return serve("sparkplug", argv, main.__doc__, make)
