"""``vigil collect sparkplug``: Sparkplug B over the ``[mqtt]`` broker into the readings topic."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

from ingest.exceptions import SourceError
from ingest.mqtt import make_client
from ingest.publisher import KafkaPublisher
from ingest.sparkplug import SparkplugDecoder
from ingest.validation import Validator
from vigil.config import MqttSettings, SparkplugSource, VigilConfig
from vigil.contracts import Gap

log = logging.getLogger(__name__)


class SparkplugCollector:
    """Subscribes to one Sparkplug group and hands its readings (validated) and gaps to the publisher."""

    def __init__(
        self,
        broker: MqttSettings,
        source: SparkplugSource,
        config: VigilConfig,
        publisher: KafkaPublisher,
        validator: Validator,
    ) -> None:
        self.broker = broker
        self.source = source
        self.publisher = publisher
        self.validator = validator
        self.decoder = SparkplugDecoder(source, config)
        self.counters = self.decoder.counters
        self._client: Any = None
        self._subscribed = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        client = make_client(self.broker, f"vigil-spb-{self.source.name}-{uuid.uuid4().hex[:8]}")
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as exc:
            raise SourceError(f"MQTT broker {self.broker.host}:{self.broker.port} unreachable: {exc}") from exc
        self._client = client
        client.loop_start()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            log.error("MQTT %s refused the connection: %s", self.broker.host, reason_code)
            return
        client.subscribe([(topic, self.source.qos) for topic in self.decoder.topics()])

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self._subscribed.clear()
        with self._lock:
            self.decoder.connection_lost()
        if reason_code.is_failure:
            log.warning("sparkplug %s: broker connection lost (%s); paho reconnects", self.source.name, reason_code)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            with self._lock:
                events = self.decoder.handle(message.topic, message.payload)
            for event in events:
                if isinstance(event, Gap):
                    self.publisher.add_gap(event)
                    continue
                checked = self.validator.check(event)
                if checked is not None:
                    self.publisher.add(checked)
        except Exception:  # a collector never dies of one message
            self.counters["internal_error"] += 1
            log.exception("sparkplug message on %s could not be handled", message.topic)


def main(argv: list[str]) -> int:
    """``vigil collect sparkplug``: run the configured Sparkplug B groups until interrupted (or ``--duration``)."""
    from ingest.collector_cli import open_collector

    run = open_collector("sparkplug", argv, main.__doc__)
    if isinstance(run, int):
        return run
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    collectors = [SparkplugCollector(run.config.mqtt, s, run.config, run.publisher, run.validator) for s in run.sources]
    try:
        for c in collectors:
            c.start()
        run.metrics.set_ready(True)
        deadline = None if run.args.duration is None else time.monotonic() + run.args.duration
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(5.0 if deadline is None else min(5.0, max(deadline - time.monotonic(), 0.01)))
            run.ingest_metrics.update(run.publisher, run.validator.counters, None)
            run.metrics.heartbeat()
    except SourceError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 1
    finally:
        for c in collectors:
            c.stop()
        run.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    run.summary({c.source.name: Counter(c.counters) for c in collectors})
    return 0
