"""Receivers: where notifications go. Each sender has one verb, ``send(notification)``, and raises
:class:`~alerts.exceptions.DeliveryError` (``permanent`` when retrying cannot help) so the outbox keeps it.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from typing import Protocol

from alerts.exceptions import DeliveryError
from alerts.render import Notification
from alerts.signing import sign
from vigil.config import AlertConfig, ChatReceiver, EmailReceiver, WebhookReceiver

log = logging.getLogger(__name__)

# Statuses worth retrying: timeouts, rate limits and the server's own trouble.
_RETRYABLE = {408, 425, 429}


class Sender(Protocol):
    name: str

    def send(self, notification: Notification) -> None: ...


def _post_json(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> None:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 409:
            return  # the receiver already has this idempotency id: delivered before
        detail = exc.read()[:300].decode(errors="replace")
        permanent = 400 <= exc.code < 500 and exc.code not in _RETRYABLE
        raise DeliveryError(f"HTTP {exc.code} from receiver: {detail}", permanent=permanent) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"receiver unreachable: {exc}") from exc


class WebhookSender:
    """JSON POST, signed in the Standard Webhooks style when a secret is configured."""

    def __init__(self, config: WebhookReceiver) -> None:
        self.config = config
        self.name = config.name

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.as_json(), separators=(",", ":")).encode()
        timestamp = int(time.time())
        # webhook-id (Standard Webhooks) and Idempotency-Key carry the same key: stable across redeliveries.
        headers = {
            "webhook-id": notification.id,
            "Idempotency-Key": notification.id,
            "webhook-timestamp": str(timestamp),
        }
        if self.config.secret is not None:
            headers["webhook-signature"] = sign(self.config.secret.get_secret_value(), notification.id, timestamp, body)
        _post_json(self.config.url, body, headers, self.config.timeout_s)


class ChatSender:
    """Slack incoming webhook (``text`` + blocks) or Teams MessageCard."""

    def __init__(self, config: ChatReceiver) -> None:
        self.config = config
        self.name = config.name

    def send(self, notification: Notification) -> None:
        payload = notification.slack() if self.config.flavor == "slack" else notification.teams()
        # Slack and Teams ignore the header; a relay in between can use it to drop a redelivery.
        headers = {"webhook-id": notification.id, "Idempotency-Key": notification.id}
        _post_json(self.config.url, json.dumps(payload).encode(), headers, self.config.timeout_s)


class EmailSender:
    """SMTP with optional STARTTLS and authentication (``smtplib``)."""

    def __init__(self, config: EmailReceiver) -> None:
        self.config = config
        self.name = config.name

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.ca_file)

    def send(self, notification: Notification) -> None:
        c = self.config
        message = notification.email(c.sender, c.to)
        try:
            with smtplib.SMTP(c.host, c.port, timeout=c.timeout_s) as smtp:
                smtp.ehlo()
                if c.starttls:
                    smtp.starttls(context=self._tls_context())
                    smtp.ehlo()
                if c.username is not None and c.password is not None:
                    smtp.login(c.username, c.password.get_secret_value())
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"recipients refused: {sorted(exc.recipients)}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            # 5xx is the server's final word (except auth, which an operator can fix: keep and retry).
            permanent = exc.smtp_code >= 500 and not isinstance(exc, smtplib.SMTPAuthenticationError)
            raise DeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=permanent) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP server unreachable: {exc}") from exc


def build_senders(config: AlertConfig) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    for r in config.receivers:
        if isinstance(r, WebhookReceiver):
            senders[r.name] = WebhookSender(r)
        elif isinstance(r, ChatReceiver):
            senders[r.name] = ChatSender(r)
        else:
            senders[r.name] = EmailSender(r)
    return senders
