"""Console access: who is logged in (signed session cookie), what they may do, and the CSRF token of every form.

* A login is either a configured user (``[[alerts.users]]``, scrypt-hashed password, role ``planner`` or
  ``viewer``) or anyone holding ``alerts.api_token`` (a planner, under the name they give).
* With neither configured the console is open, as the JSON API is without a token: everyone is a planner.
* Every form carries the session's CSRF token; a POST without it (or with another session's) is refused (403).
* Secrets never reach a page: the token and the password hashes are only compared, never rendered.

>>> h = hash_password("correct horse", n=2**10)
>>> verify_password("correct horse", h), verify_password("wrong", h)
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from vigil.config.alerting import AlertConfig

ROLES = ("planner", "viewer")


def hash_password(password: str, *, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """``scrypt$n$r$p$salt$hash`` (the format ``alerts.users[].password_hash`` takes)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@dataclass(frozen=True)
class Login:
    name: str
    role: str

    @property
    def can_change(self) -> bool:
        return self.role == "planner"


class Access:
    """The console's access rules for one configuration (``alerts``)."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config

    @property
    def open(self) -> bool:
        return self.config.api_token is None and not self.config.users

    def login(self, name: str, password: str) -> Login | None:
        """A configured user with their password, or any name with the API token; None otherwise."""
        name = name.strip()
        if not name or not password:
            return None
        for user in self.config.users:
            if hmac.compare_digest(user.name.encode(), name.encode()):
                return Login(user.name, user.role) if verify_password(password, user.password_hash) else None
        token = self.config.api_token
        if token is not None and hmac.compare_digest(password.encode(), token.get_secret_value().encode()):
            return Login(name, "planner")
        return None

    def current(self, session: dict[str, Any]) -> Login | None:
        """Who the session belongs to (an open console: an anonymous planner)."""
        user = session.get("user")
        role = session.get("role")
        if isinstance(user, str) and role in ROLES:
            return Login(user, str(role))
        return Login("", "planner") if self.open else None


def csrf_token(session: dict[str, Any]) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(session: dict[str, Any], given: str | None) -> bool:
    expected = session.get("csrf")
    return isinstance(expected, str) and given is not None and hmac.compare_digest(expected.encode(), given.encode())
