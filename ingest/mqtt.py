"""MQTT collector: sensors push JSON, a configured mapping turns it into readings, the publisher sends them.

A payload is one JSON object or an array of them. ``[[sources.mqtt]]`` names the topics (wildcards allowed) and
the mapping: a :class:`~vigil.config.mapping.ReadingMapping` (the model files and foreign Kafka topics use, read
by :class:`~ingest.records.RecordMapper`): dotted fields for the machine, sensor or tag, time, value, unit and
quality, long or wide layout, tags with unit conversion, renames, the time format and zone. ``machine_from_name``
is matched against the MQTT topic (``plant/(?P<machine>[^/]+)/telemetry``). A payload that cannot become a
reading is counted by reason (``json``, ``not_object``, ``missing_field``, ``bad_timestamp``, ``wrong_type``,
``unknown_tag``, ``invalid``) and sent to the dead-letter topic with its raw bytes; it never stops the
collector. Readings then go through the :class:`Validator` (unknown machines are rejected, out-of-range values
flagged).

paho-mqtt runs its own network thread and calls back per message; the collector is therefore a
:class:`~ingest.collector_core.PahoCollector` (a synchronous context manager around that thread, or ``run()``
under :func:`~ingest.collector_cli.serve`) rather than an async iterator, and every callback catches everything,
so a bad message can never kill paho's loop.

>>> from vigil.config import MqttMapping
>>> mapping = MqttMapping.model_validate({"machine": "meta.machine", "ts_format": "epoch_ms"})
>>> mapper = PayloadMapper(mapping, source="mqtt:test")
>>> [(r.machine_id, r.sensor, r.value, r.ts.isoformat()) for r in mapper.parse(
...     b'{"meta": {"machine": "PMP-001"}, "sensor": "flow", "ts": 1767225600000, "value": 12.5}')]
[('PMP-001', 'flow', 12.5, '2026-01-01T00:00:00+00:00')]
>>> mapper.parse(b'{"sensor": "flow", "ts": 1767225600000, "value": 1}')
Traceback (most recent call last):
...
ingest.exceptions.PayloadError: missing_field: field 'meta.machine': absent or empty (mapping machine = 'meta.machine')
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from ingest.collector_core import Delivery, PahoCollector
from ingest.exceptions import PayloadError
from ingest.records import RecordMapper
from vigil.bus import dead_letter
from vigil.config.connections import MqttSettings
from vigil.config.sources import MqttSource
from vigil.contracts import Reading

if TYPE_CHECKING:
    from ingest.publisher import KafkaPublisher
    from ingest.validation import Validator

log = logging.getLogger(__name__)


class PayloadMapper(RecordMapper):
    """A :class:`RecordMapper` for whole payloads; :meth:`parse` raises the first refusal."""

    def parse(self, payload: bytes, topic: str | None = None) -> list[Reading]:
        """Every reading of a payload (an object or an array of objects); the first bad item fails it all."""
        readings, errors = self.parse_all(payload, topic)
        if errors:
            raise errors[0]
        return readings

    def parse_all(self, payload: bytes, topic: str | None = None) -> tuple[list[Reading], list[PayloadError]]:
        """The readings of every good item and the error of every bad one (an array may be partly good)."""
        return self.map_payload(payload, topic)


def make_client(broker: MqttSettings, client_id: str, *, manual_ack: bool = False) -> Any:
    """A paho client for ``[mqtt]``: login, TLS, reconnect backoff (1-30 s); callbacks and connect are the caller's."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, manual_ack=manual_ack)
    if broker.username is not None:
        password = broker.password.get_secret_value() if broker.password else None
        client.username_pw_set(broker.username, password)
    if broker.tls is not None:
        client.tls_set_context(broker.tls.ssl_context())
    client.reconnect_delay_set(1, 30)
    return client


class MqttCollector(PahoCollector):
    """Subscribes to one MQTT source's topics and publishes what arrives.

    ``counters`` counts ``received`` payloads, ``accepted`` readings, ``connects``, and each rejection reason
    (payload reasons here, each a dead letter; validation reasons in the validator's counters).
    """

    kind = "mqtt"
    counts_dead_letters = True
    source: MqttSource

    def __init__(
        self,
        broker: MqttSettings,
        source: MqttSource,
        publisher: KafkaPublisher | None = None,
        validator: Validator | None = None,
        client_id: str | None = None,
    ) -> None:
        delivery = None if publisher is None or validator is None else Delivery(publisher, validator)
        super().__init__(broker, source, delivery, client_id or f"vigil-{source.name}-{uuid.uuid4().hex[:8]}")
        self.mapper = PayloadMapper(source.mapping, source=f"mqtt:{source.name}")

    def topics(self) -> list[str]:
        return list(self.source.topics)

    def handle(self, topic: str, payload: bytes) -> None:
        """Map, validate and publish one payload; bad items are counted and dead-lettered."""
        delivery = self.delivery
        assert delivery is not None, "start the collector with a delivery"
        with self._lock:
            self.counters["received"] += 1
        readings, errors = self.mapper.parse_all(payload, topic)
        for error in errors:
            with self._lock:
                self.counters[error.reason] += 1
            delivery.dead_letter(
                dead_letter(
                    service=f"ingest.mqtt.{self.source.name}",
                    reason=error.reason,
                    error=error.detail,
                    raw=payload,
                    source_topic=f"mqtt:{topic}",
                )
            )
        for reading in readings:
            if delivery(reading):
                with self._lock:
                    self.counters["accepted"] += 1


def main(argv: list[str]) -> int:
    """``vigil collect mqtt``: run the configured MQTT sources until interrupted (or ``--duration``)."""
    from ingest.collector_cli import CollectorRun, serve

    def make(run: CollectorRun, source: Any) -> MqttCollector:
        return MqttCollector(run.config.mqtt, source)

    return serve("mqtt", argv, main.__doc__, make)
