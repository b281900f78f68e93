"""Maintenance records pushed over MQTT: the same reader, ids and refusals as the CMMS file import.

``vigil collect maintenance --mqtt [--source NAME]`` subscribes to the source's ``mqtt_topics`` on the ``[mqtt]``
broker. Each payload is a JSON object or an array of them, keyed like the export's columns; the records go through
:class:`~ingest.maintenance.MaintenanceReader`, events to the maintenance topic keyed by machine (an id already
published is a ``duplicate``), refusals to the dead-letter topic. A message is acknowledged to the broker (QoS 1,
manual acknowledgement) only after Kafka acknowledged what came of it: a crash in between redelivers it, and the
event ids make the redelivery harmless.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from typing import Any

from ingest.exceptions import SourceError
from ingest.maintenance import MaintenanceReader, ReadResult, publish
from vigil.bus import dead_letter, send_dead_letter
from vigil.config import MqttSettings, Topics
from vigil.config.mapping import MaintenanceSource

log = logging.getLogger(__name__)


class MaintenanceSubscriber:
    """Subscribes to one maintenance source's MQTT topics and publishes what arrives."""

    def __init__(
        self,
        source: MaintenanceSource,
        broker: MqttSettings,
        producer: Any,
        topics: Topics,
        known_machines: set[str],
        published: set[str],
    ) -> None:
        if not source.mqtt_topics:
            raise SourceError(f"[[sources.maintenance]] {source.name!r} has no mqtt_topics")
        self.source = source
        self.broker = broker
        self.producer = producer
        self.topics = topics
        self.reader = MaintenanceReader(source.mapping, known_machines, source=source.name)
        self.published = published
        self.counters: Counter[str] = Counter()
        self.subscribed = threading.Event()
        self._client: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        from ingest.mqtt import make_client

        client = make_client(
            self.broker, f"vigil-maintenance-{self.source.name}-{uuid.uuid4().hex[:8]}", manual_ack=True
        )
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_disconnect = lambda *_: self.subscribed.clear()
        client.on_message = self._on_message
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            raise SourceError(f"MQTT broker {self.broker.host}:{self.broker.port} unreachable: {exc}") from exc
        self._client = client
        client.loop_start()

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            log.error("MQTT %s refused the connection: %s", self.broker.host, reason_code)
            return
        client.subscribe([(topic, 1) for topic in self.source.mqtt_topics])

    def _on_message(self, client: Any, _userdata: Any, message: Any) -> None:
        try:
            self.handle(message.topic, message.payload)
        except Exception:
            # Not acknowledged: the broker redelivers it after a reconnect; the ids make that harmless.
            self.counters["not_acknowledged"] += 1
            log.exception("maintenance message on %s could not be published; left unacknowledged", message.topic)
            return
        client.ack(message.mid, message.qos)

    def handle(self, topic: str, payload: bytes) -> ReadResult | None:
        """One payload: read, publish, wait for Kafka's acknowledgement; an undecodable one is dead-lettered."""
        with self._lock:
            self.counters["messages"] += 1
            try:
                body = json.loads(payload)
            except (UnicodeDecodeError, ValueError) as exc:
                self.counters["json"] += 1
                letter = dead_letter(
                    service="ingest.maintenance",
                    reason="json",
                    error=str(exc)[:200],
                    raw=payload,
                    source_topic=f"mqtt:{topic}",
                )
                send_dead_letter(self.producer, self.topics, letter).get(timeout=60)
                return None
            records = body if isinstance(body, list) else [body]
            rows = [(i, r if isinstance(r, dict) else {"record": r}) for i, r in enumerate(records, start=1)]
            result = self.reader.read(rows)
            imported, already = publish(self.producer, self.topics, result, self.published, f"mqtt:{topic}")
            self.counters["imported"] += imported
            self.counters["duplicate"] += already + result.counters["duplicate"]
            self.counters["refused"] += len(result.refusals)
            return result
