"""Standard Webhooks signatures: HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}``.

Headers: ``webhook-id`` (the idempotency id: a receiver that saw it already can drop the message),
``webhook-timestamp`` (Unix seconds), ``webhook-signature: v1,<base64>``. The secret is ``whsec_`` followed by
the base64 of the key. The example is the Standard Webhooks specification's own test vector:

>>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
>>> sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
>>> headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
...            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
>>> verify(secret, headers, b'{"test": 2432232314}', now=1614265330)
>>> verify(secret, headers, b'{"test": 1}', now=1614265330)
Traceback (most recent call last):
...
alerts.exceptions.SignatureError: no signature matches
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from alerts.exceptions import SignatureError

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise SignatureError("a webhook secret starts with 'whsec_'")
    return base64.b64decode(secret.removeprefix(PREFIX))


def generate_secret() -> str:
    """A new random secret in the documented format (32-byte key)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = 300.0, now: float | None = None
) -> None:
    """Raise :class:`SignatureError` unless one of the ``v1`` signatures matches and the timestamp is fresh."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, stamp, signatures = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
    except KeyError as exc:
        raise SignatureError(f"missing header {exc.args[0]}") from exc
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("webhook-timestamp is outside the tolerance (replayed or clock skew)")
    expected = sign(secret, msg_id, timestamp, body).encode()
    # Several space-separated signatures are allowed (key rotation).
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("no signature matches")
