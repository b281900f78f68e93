"""Fixtures for the alerts integration tests: a real HTTP receiver in a thread, config and Kafka helpers."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vigil.bus import make_consumer
from vigil.config import KafkaSettings
from vigil.contracts import decode

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""The documented example secret (docs/alerts.md), also the Standard Webhooks specification's test secret."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """A real HTTP server recording what it accepted; ``status`` makes it answer errors (a receiver that is down)."""

    port: int = 0
    status: int = 200
    accepted: list[Received] = field(default_factory=list)
    refused: int = 0
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    status = receiver.status
                    if status < 300:
                        receiver.accepted.append(
                            Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                        )
                    else:
                        receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(r.headers.get("webhook-id", "") for r in self.accepted)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.accepted)


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def make_http_receiver() -> Iterator[Callable[[int], HttpReceiver]]:
    """Start a receiver later, on a given port (one that was down until then)."""
    started: list[HttpReceiver] = []

    def make(port: int) -> HttpReceiver:
        started.append(HttpReceiver(port=port).start())
        return started[-1]

    yield make
    for r in started:
        r.stop()


@pytest.fixture
def wait_for() -> Callable[..., None]:
    return _wait_for


@pytest.fixture
def topic_reader(kafka_settings: KafkaSettings) -> Iterator[Callable[[str], TopicReader]]:
    readers: list[TopicReader] = []

    def make(topic: str) -> TopicReader:
        readers.append(TopicReader(kafka_settings, topic))
        return readers[-1]

    yield make
    for r in readers:
        r.close()


def _wait_for(
    condition: Callable[[], bool],
    timeout: float = 90.0,
    step: Callable[[], None] | None = None,
    describe: Callable[[], object] | None = None,
) -> None:
    """Poll until the condition holds, driving ``step`` (e.g. a service's run_once) in between."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in time: {describe() if describe else ''}")
        if step is not None:
            step()
        else:
            time.sleep(0.1)


class TopicReader:
    """Reads a topic from the beginning, accumulating decoded messages across calls."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.consumer = make_consumer(kafka, None, [topic])
        self.messages: list[Any] = []

    def read(self) -> list[Any]:
        for batch in self.consumer.poll(timeout_ms=200).values():
            self.messages += [decode(r.value) for r in batch]
        return self.messages

    def close(self) -> None:
        self.consumer.close()
