"""Receivers against real peers: an HTTP server in a thread (webhook, Slack, Teams) and aiosmtpd (e-mail with
STARTTLS and AUTH); the outbox against a receiver that is down for an hour."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import socket
import ssl
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.exceptions import DeliveryError, SignatureError
from alerts.outbox import Outbox
from alerts.receivers import ChatSender, EmailSender, WebhookSender
from alerts.render import Notification
from alerts.signing import verify
from alerts.store import AlertStore, notification_id
from vigil.config import ChatReceiver, EmailReceiver, WebhookReceiver
from vigil.contracts import Alert, Contribution

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
T = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)


def notification(i: int = 0, receiver: str = "hook") -> Notification:
    a = Alert(
        alert_id=f"PMP-00{i % 4 + 1}.failure_risk.{i:04d}",
        machine_id=f"PMP-00{i % 4 + 1}",
        machine_type="pump",
        site="north",
        line="north-1",
        alert_kind="failure_risk",
        state="open",
        severity="critical",
        ts=T + dt.timedelta(minutes=i),
        opened_at=T,
        p_failure=0.83,
        horizon_s=86400.0,
        summary="Failure risk 83% within 24 h",
        contributions=(Contribution(feature="bearing_temp.mean", value=98.0, normal=70.0, contribution=1.1),),
        what_to_check=("Bearing lubrication",),
        seq=1,
    )
    return Notification(notification_id(receiver, [a]), receiver, a.machine_id, (a,), "http://vigil:8470")


def test_alerts_webhook_signature_verifies_with_the_documented_secret(http_receiver: Any) -> None:
    sender = WebhookSender(WebhookReceiver(name="hook", url=f"{http_receiver.url}/hook", secret=SecretStr(SECRET)))
    n = notification()
    sender.send(n)
    (r,) = http_receiver.snapshot()
    assert r.headers["content-type"] == "application/json" and r.headers["webhook-id"] == n.id
    # The receiver's side, with nothing but the documented recipe: HMAC-SHA256(key, "id.timestamp.body").
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{r.headers['webhook-id']}.{r.headers['webhook-timestamp']}.".encode() + r.body
    assert (
        r.headers["webhook-signature"]
        == "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    )
    verify(SECRET, r.headers, r.body)
    with pytest.raises(SignatureError):
        verify(SECRET, r.headers, r.body.replace(b"83", b"13"))
    with pytest.raises(SignatureError):
        verify("whsec_" + base64.b64encode(b"another key of 24 bytes!").decode(), r.headers, r.body)
    body = r.json()
    assert body["type"] == "vigil.alert.open" and body["data"]["alerts"][0]["machine_id"] == "PMP-001"


def test_alerts_chat_slack_and_teams(http_receiver: Any) -> None:
    ChatSender(ChatReceiver(name="slack", url=f"{http_receiver.url}/slack")).send(notification())
    ChatSender(ChatReceiver(name="teams", url=f"{http_receiver.url}/teams", flavor="teams")).send(notification())
    slack, teams = (r.json() for r in http_receiver.snapshot())
    assert "Failure risk 83%" in slack["text"] and "Bearing lubrication" in slack["blocks"][1]["text"]["text"]
    assert teams["@type"] == "MessageCard" and teams["sections"][0]["activityTitle"] == "Failure risk 83% within 24 h"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_alerts_outbox_receiver_down_then_up_drains_exactly_once(tmp_path: Path, make_http_receiver: Any) -> None:
    port = _free_port()
    store = AlertStore(tmp_path / "outbox.sqlite3")
    store.open()
    sent = [notification(i) for i in range(30)]
    store.commit({}, None, sent, 0.0)
    clock = [0.0]
    sender = WebhookSender(
        WebhookReceiver(name="hook", url=f"http://127.0.0.1:{port}/hook", secret=SecretStr(SECRET), timeout_s=5)
    )
    outbox = Outbox(store, {"hook": sender}, retry_initial_s=5, retry_max_s=300, clock=lambda: clock[0])

    # Nobody listens for an hour (the outbox's clock runs an hour; the receiver is really absent).
    attempts = 0
    while clock[0] < 3600:
        assert outbox.drain_once() == 0
        attempts += 1
        clock[0] += 30
    assert outbox.stats.failures >= 12, "it kept retrying, with backoff capped at retry_max_s"
    assert outbox.stats.failures < attempts, "but not on every tick"
    assert store.stats()["pending"] == 30

    receiver = make_http_receiver(port)
    try:
        clock[0] += 300
        assert outbox.drain_once() == 30
        assert [r.headers["webhook-id"] for r in receiver.snapshot()] == [n.id for n in sent], "all, in order"
        assert store.stats() == {"pending": 0, "delivered": 30, "dead": 0}
        store.close()

        # A restart: nothing is delivered again.
        reopened = AlertStore(tmp_path / "outbox.sqlite3")
        reopened.open()
        assert Outbox(reopened, {"hook": sender}).drain_once() == 0
        assert set(receiver.ids().values()) == {1}
        reopened.close()
    finally:
        receiver.stop()


def test_alerts_outbox_retries_errors_and_drops_only_permanent_refusals(tmp_path: Path, http_receiver: Any) -> None:
    store = AlertStore(tmp_path / "outbox.sqlite3")
    store.open()
    store.commit({}, None, [notification(i) for i in range(3)], 0.0)
    clock = [0.0]
    outbox = Outbox(
        store,
        {"hook": WebhookSender(WebhookReceiver(name="hook", url=f"{http_receiver.url}/hook"))},
        retry_initial_s=1,
        clock=lambda: clock[0],
    )
    http_receiver.status = 503
    assert outbox.drain_once() == 0 and store.stats()["pending"] == 3
    http_receiver.status = 400  # a permanent refusal: recorded as dead, the rest is not blocked
    clock[0] += 2
    assert outbox.drain_once() == 0 and store.stats() == {"pending": 0, "delivered": 0, "dead": 3}
    store.close()


# ------------------------------------------------------------------------------------------------ e-mail


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def test_alerts_email_with_starttls_and_auth(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (b"vigil", b"s3cret")
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    mailbox = _Mailbox()
    port = _free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        config = EmailReceiver(
            name="mail",
            host="127.0.0.1",
            port=port,
            starttls=True,
            ca_file=str(cert),
            username="vigil",
            password=SecretStr("s3cret"),
            sender="vigil@plant.example",
            to=["planners@plant.example", "shift@plant.example"],
            timeout_s=20,
        )
        n = notification()
        EmailSender(config).send(n)
        assert mailbox.envelopes == [("vigil@plant.example", ["planners@plant.example", "shift@plant.example"])]
        msg = message_from_bytes(mailbox.messages[0])
        assert msg["Subject"] == n.title() and msg["Message-ID"] == f"<{n.id}@vigil>"
        body = msg.get_payload(decode=True).decode()
        assert "83% probability" in body and "Bearing lubrication" in body and "vigil alert ack" in body

        wrong = config.model_copy(update={"password": SecretStr("nope")})
        with pytest.raises(DeliveryError) as info:
            EmailSender(wrong).send(n)
        assert not info.value.permanent, "a wrong password is kept and retried (an operator can fix it)"
        untrusted = config.model_copy(update={"ca_file": None})
        with pytest.raises(DeliveryError):
            EmailSender(untrusted).send(n)
        assert len(mailbox.messages) == 1
    finally:
        controller.stop()


def test_alerts_email_plain_without_auth(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    mailbox = _Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = EmailReceiver(
            name="mail", host="127.0.0.1", port=port, starttls=False, sender="v@x.example", to=["p@x.example"]
        )
        EmailSender(config).send(notification())
        assert len(mailbox.messages) == 1
    finally:
        controller.stop()
