"""The start-up diagnosis of a secured Kafka: configuration problems are named, weather is left to the retries."""

from __future__ import annotations

import socket

from vigil.config.connections import KafkaSettings
from vigil.kafka_access import diagnose, require_access


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_plaintext_and_unreachable_brokers_are_weather_not_configuration() -> None:
    assert diagnose(KafkaSettings(bootstrap_servers=f"127.0.0.1:{_closed_port()}")) is None
    secured = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{_closed_port()}",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="features",
        sasl_password="not-used",
    )
    assert diagnose(secured, timeout_s=2) is None


def test_a_server_that_is_not_tls_is_not_blamed_on_a_setting() -> None:
    # A plain TCP listener that closes at once: the handshake fails, but no certificate was refused.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SSL")
        assert diagnose(kafka, timeout_s=2) is None


def test_acl_check_is_only_for_sasl() -> None:
    # No broker is contacted without SASL (the ACLs are the broker's business only when users are known).
    require_access(KafkaSettings(bootstrap_servers="127.0.0.1:1"), write=[("topics.readings", "x")])
