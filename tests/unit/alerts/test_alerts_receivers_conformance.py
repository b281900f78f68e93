"""Every receiver kind, discovered from the configuration union: built by ``build_senders``, named after its
configuration, and turning an unreachable peer into a retryable DeliveryError (never another exception)."""

from __future__ import annotations

import socket
import typing
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.exceptions import DeliveryError
from alerts.receivers import build_senders
from alerts.render import Notification
from vigil.config import AlertConfig
from vigil.config.alerting import Receiver
from vigil.contracts import Alert


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connections are refused


def _receiver_classes() -> list[type[Any]]:
    union = typing.get_args(Receiver)[0]
    return [typing.get_args(member)[0] for member in typing.get_args(union)]


def _minimal(cls: type[Any], port: int) -> dict[str, Any]:
    kind = cls.model_fields["type"].default
    if kind == "email":
        return {
            "type": kind,
            "name": kind,
            "host": "127.0.0.1",
            "port": port,
            "sender": "v@x.example",
            "to": ["p@x.example"],
            "timeout_s": 2,
        }
    return {"type": kind, "name": kind, "url": f"http://127.0.0.1:{port}/x", "timeout_s": 2}


def test_every_receiver_kind_is_discovered() -> None:
    assert {c.model_fields["type"].default for c in _receiver_classes()} == {"webhook", "chat", "email"}


@pytest.mark.parametrize("cls", _receiver_classes(), ids=lambda c: c.__name__)
def test_receiver_conformance(cls: type[Any]) -> None:
    config = AlertConfig.model_validate({"receivers": [_minimal(cls, _closed_port())]})
    ((name, sender),) = build_senders(config).items()
    assert sender.name == name == config.receivers[0].name
    t = datetime(2026, 11, 26, tzinfo=UTC)
    alert = Alert(
        alert_id="a",
        machine_id="M",
        alert_kind="failure_risk",
        state="open",
        severity="warning",
        ts=t,
        opened_at=t,
        summary="s",
    )
    with pytest.raises(DeliveryError) as info:
        sender.send(Notification("msg_1", name, "M", (alert,), "http://x"))
    assert not info.value.permanent, "an unreachable receiver is retried, not given up"
