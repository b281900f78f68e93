"""Why a secured Kafka refuses this service, said at start-up with the setting to fix (never the secret).

kafka-python retries a refused login or certificate until its bootstrap times out and then raises a bare
``KafkaTimeoutError`` (with SSL it often loses the broker's SASL error to the closing socket). When a stage
cannot reach a broker that uses TLS or SASL, :func:`diagnose` asks the first bootstrap server itself, on one
blocking connection: the TLS handshake (an untrusted certificate, a hostname mismatch) and the SASL exchange
(invalid credentials). :func:`require_access` checks the ACLs against what the stage will read and write.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterable
from typing import Any

from vigil.config.connections import KafkaSettings
from vigil.config.security import certificate_refusal
from vigil.exceptions import KafkaRefused

_SASL_HANDSHAKE, _SASL_AUTHENTICATE = 17, 36


def diagnose(kafka: KafkaSettings, timeout_s: float = 10.0) -> str | None:
    """What makes the first bootstrap server refuse these settings (a message naming the key), or None when
    it accepts them or cannot be reached (weather: the caller retries)."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        raw = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError):
        return None
    with contextlib.ExitStack() as stack:
        sock: Any = stack.enter_context(raw)
        if kafka.security_protocol.endswith("SSL"):
            try:
                sock = stack.enter_context(kafka.tls.ssl_context().wrap_socket(raw, server_hostname=host))
            except OSError as exc:
                return certificate_refusal("kafka", exc)
        if kafka.security_protocol.startswith("SASL_"):
            try:
                return _sasl_refusal(kafka, sock)
            except (OSError, struct.error):
                return None
    return None


def _sasl_refusal(kafka: KafkaSettings, sock: Any) -> str | None:
    from kafka.net.sasl import get_sasl_mechanism

    mechanism = kafka.sasl_mechanism or "PLAIN"
    error, _ = _call(sock, _SASL_HANDSHAKE, 1, _string(mechanism))
    if error:
        return f"kafka.sasl_mechanism: the broker at {kafka.bootstrap_servers} does not offer {mechanism}"
    client = get_sasl_mechanism(mechanism)(
        host=None,
        sasl_mechanism=mechanism,
        sasl_plain_username=kafka.sasl_username,
        sasl_plain_password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
    )
    while not client.is_done():
        token = client.auth_bytes()
        error, body = _call(sock, _SASL_AUTHENTICATE, 0, struct.pack(">i", len(token)) + token)
        if error:
            return (
                f"kafka.sasl_username/kafka.sasl_password: the broker at {kafka.bootstrap_servers} refused the login "
                f"of {kafka.sasl_username!r} with {mechanism} (invalid credentials)"
            )
        length = struct.unpack(">h", body[:2])[0]  # error message (null here)
        rest = body[2 + max(length, 0) :]
        (size,) = struct.unpack(">i", rest[:4])
        client.receive(rest[4 : 4 + max(size, 0)])
    return None


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _call(sock: Any, api_key: int, version: int, body: bytes) -> tuple[int, bytes]:
    """One request of the Kafka protocol (non-flexible versions); returns the error code and the rest."""
    header = struct.pack(">hhi", api_key, version, 1) + _string("vigil-probe")
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    (size,) = struct.unpack(">i", _read(sock, 4))
    answer = _read(sock, size)
    (error,) = struct.unpack(">h", answer[4:6])  # after the correlation id
    return error, answer[6:]


def _read(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def require_access(
    kafka: KafkaSettings, *, read: Iterable[tuple[str, str]] = (), write: Iterable[tuple[str, str]] = ()
) -> None:
    """With SASL (where the broker enforces ACLs): fail at start-up when this user may not read or write a topic
    the service needs, naming the topic's setting and the user, instead of at the first record.

    ``read``/``write`` are ``(setting key, topic name)`` pairs, e.g. ``("topics.readings", "vigil.readings")``.
    """
    if not kafka.security_protocol.startswith("SASL_"):
        return
    from kafka import KafkaAdminClient

    wanted = [(key, topic, "READ") for key, topic in read] + [(key, topic, "WRITE") for key, topic in write]
    admin = KafkaAdminClient(**kafka.client_kwargs(), client_id=f"{kafka.client_id}-access")
    try:
        described = admin.describe_topics(sorted({topic for _, topic, _ in wanted}))
    finally:
        admin.close()
    allowed = {d["name"]: set(d.get("authorized_operations") or ()) for d in described if not d["error_code"]}
    missing = [(key, topic, op) for key, topic, op in wanted if op not in allowed.get(topic, set())]
    if missing:
        what = "; ".join(f"{key}: may not {op} topic {topic!r}" for key, topic, op in missing)
        raise KafkaRefused(
            f"kafka.sasl_username: the ACLs of Kafka user {kafka.sasl_username!r} refuse what this service needs "
            f"({what}); grant it (docs/security.md) or correct the topic setting"
        )
