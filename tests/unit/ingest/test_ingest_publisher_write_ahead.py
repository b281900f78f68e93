"""The publisher never waits for Kafka before writing batches ahead to its spool.

The "broker" is a socket that accepts connections and never answers, so the publisher's first connect attempt
hangs until its timeout; the socket notices when the client gives up. Readings added meanwhile must already be in
the spool while that attempt is still pending.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.publisher import KafkaPublisher
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics
from vigil.contracts import Gap, Reading

T = datetime(2026, 1, 1, tzinfo=UTC)


class SilentBroker:
    """Accepts connections, reads and never answers; ``given_up`` is set once a client closes its connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.connected = threading.Event()
        self.given_up = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.connected.set()
        with conn:
            while conn.recv(65536):
                pass
        self.given_up.set()


@pytest.fixture
def silent_broker() -> Iterator[SilentBroker]:
    broker = SilentBroker()
    yield broker
    broker.sock.close()


def test_batches_are_written_ahead_while_the_first_connect_to_kafka_still_hangs(
    tmp_path: Path, silent_broker: SilentBroker
) -> None:
    publisher = KafkaPublisher(
        KafkaSettings(bootstrap_servers=f"127.0.0.1:{silent_broker.port}"),
        Topics(readings="r", maintenance="m", dead_letter="d"),
        SpoolSettings(path=tmp_path / "spool.sqlite", retry_interval_s=600),
        PublishSettings(batch_max_samples=500, batch_max_ms=60_000, connect_timeout_s=8),
    )
    publisher.start()
    for i in range(10):
        publisher.add(Reading(machine_id="PMP-001", sensor="flow", ts=T + timedelta(seconds=i), value=float(i)))
    publisher.add_gap(Gap(machine_id="PMP-001", start=T, end=T + timedelta(seconds=20), reason="test"))
    assert publisher.backlog == 10, "the batch is on disk"
    assert publisher.spooling
    assert silent_broker.connected.wait(8), "the publisher is trying Kafka in the background"
    assert not silent_broker.given_up.is_set(), "and that first attempt is still pending: start() did not wait for it"
    publisher.close(timeout_s=1)
    assert publisher.counters.added == 10
    assert publisher.counters.spooled == 10
    assert publisher.backlog == 10
