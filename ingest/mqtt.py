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

paho-mqtt runs its own network thread and calls back per message; the collector is therefore a (synchronous)
context manager around that thread rather than an async iterator, and every callback catches everything, so a
bad message can never kill paho's loop.

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
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

from ingest.exceptions import PayloadError, SourceError
from ingest.publisher import KafkaPublisher
from ingest.records import RecordMapper
from ingest.validation import Validator
from vigil.bus import dead_letter
from vigil.config.connections import MqttSettings
from vigil.config.security import certificate_refusal
from vigil.config.sources import MqttSource
from vigil.contracts import Reading

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


class MqttCollector:
    """Subscribes to one MQTT source's topics and publishes what arrives.

    ``counters`` counts ``received`` payloads, ``accepted`` readings, and each rejection reason (payload
    reasons here, validation reasons in the validator's counters).
    """

    def __init__(
        self,
        broker: MqttSettings,
        source: MqttSource,
        publisher: KafkaPublisher,
        validator: Validator,
        client_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.source = source
        self.publisher = publisher
        self.validator = validator
        self.client_id = client_id or f"vigil-{source.name}-{uuid.uuid4().hex[:8]}"
        self.mapper = PayloadMapper(source.mapping, source=f"mqtt:{source.name}")
        self.counters: Counter[str] = Counter()
        self._client: Any = None
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.refusal: str | None = None
        """Why the broker refused the login (then retrying with the same settings is futile)."""

    def start(self) -> None:
        """Connect and subscribe (again after every reconnect); raises :class:`SourceError` when unreachable."""
        client = make_client(self.broker, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            refusal = certificate_refusal("mqtt", exc)
            if refusal is not None:
                raise SourceError(refusal) from exc
            raise SourceError(f"MQTT broker {self.broker.host}:{self.broker.port} unreachable: {exc}") from exc
        self._client = client
        client.loop_start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait until the broker acknowledged the subscriptions (after a reconnect too); raises
        :class:`SourceError` naming ``mqtt.username``/``mqtt.password`` when the broker refused the login."""
        deadline = time.monotonic() + timeout_s
        while not self._subscribed.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if self.refusal is not None:
                raise SourceError(self.refusal)
            if time.monotonic() >= deadline:
                return False
        return True

    @property
    def subscribed(self) -> bool:
        """False from a lost connection until the broker acknowledged the new subscriptions."""
        return self._subscribed.is_set()

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def __enter__(self) -> MqttCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ paho callbacks (its network thread)
    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            if str(reason_code) in ("Bad user name or password", "Not authorized"):
                self.refusal = (
                    f"mqtt.username/mqtt.password: MQTT broker {self.broker.host}:{self.broker.port} refused the "
                    f"login of {self.broker.username!r} ({reason_code})"
                )
                log.error("%s", self.refusal)
            else:
                log.error("MQTT %s refused the connection: %s", self.broker.host, reason_code)
            return
        client.subscribe([(topic, self.source.qos) for topic in self.source.topics])

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: int, reason_codes: Any, _props: Any) -> None:
        # Only the broker's SUBACK means messages will flow; anything published before it is not ours.
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("MQTT source %s: subscription refused (%s)", self.source.name, ", ".join(refused))
            return
        log.info("MQTT source %s subscribed to %s", self.source.name, ", ".join(self.source.topics))
        self._subscribed.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self._subscribed.clear()
        if reason_code.is_failure:
            log.warning("MQTT source %s disconnected (%s); paho reconnects", self.source.name, reason_code)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            self.handle(message.topic, message.payload)
        except Exception:
            # A collector never dies of one message; the failure is counted and logged with its stack.
            self.counters["internal_error"] += 1
            log.exception("MQTT message on %s could not be handled", message.topic)

    # ------------------------------------------------------------------ the work
    def handle(self, topic: str, payload: bytes) -> None:
        """Map, validate and publish one payload; bad items are counted and dead-lettered."""
        with self._lock:
            self.counters["received"] += 1
        readings, errors = self.mapper.parse_all(payload, topic)
        for error in errors:
            with self._lock:
                self.counters[error.reason] += 1
            self.publisher.add_dead_letter(
                dead_letter(
                    service=f"ingest.mqtt.{self.source.name}",
                    reason=error.reason,
                    error=error.detail,
                    raw=payload,
                    source_topic=f"mqtt:{topic}",
                )
            )
        for reading in readings:
            checked = self.validator.check(reading)
            if checked is not None:
                self.publisher.add(checked)
                with self._lock:
                    self.counters["accepted"] += 1


def main(argv: list[str]) -> int:
    """``vigil collect mqtt``: run the configured MQTT sources until interrupted (or ``--duration``)."""
    from ingest.collector_cli import open_collector

    run = open_collector("mqtt", argv, main.__doc__)
    if isinstance(run, int):
        return run
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    validator, publisher, metrics = run.validator, run.publisher, run.metrics
    collectors = [MqttCollector(run.config.mqtt, s, publisher, validator) for s in run.sources]
    try:
        for c in collectors:
            c.start()
        metrics.set_ready(True)
        duration = run.args.duration
        deadline = None if duration is None else time.monotonic() + duration
        last_log = time.monotonic()
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(5.0 if deadline is None else min(5.0, max(deadline - time.monotonic(), 0.01)))
            payload_counters: Counter[str] = sum((c.counters for c in collectors), Counter())
            run.ingest_metrics.update(publisher, validator.counters, payload_counters)
            metrics.heartbeat()
            if time.monotonic() - last_log >= 30:
                last_log = time.monotonic()
                log.info(
                    "mqtt: %s; validation %s; publisher %s",
                    {c.source.name: dict(c.counters) for c in collectors},
                    dict(validator.counters),
                    publisher.counters.as_dict(),
                )
    except SourceError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 1
    finally:
        for c in collectors:
            c.stop()
        run.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    run.summary({c.source.name: c.counters for c in collectors})
    return 0
