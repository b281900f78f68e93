"""Alert lifecycle, receivers and routing."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from vigil.config._base import Section


class WebhookReceiver(Section):
    type: Literal["webhook"] = "webhook"
    name: str
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = None
    """Standard Webhooks signing secret (``whsec_`` + base64); HMAC-SHA256 signatures when set."""
    timeout_s: float = Field(default=10.0, gt=0)


class ChatReceiver(Section):
    type: Literal["chat"] = "chat"
    name: str
    url: str = Field(pattern=r"^https?://")
    flavor: Literal["slack", "teams"] = "slack"
    timeout_s: float = Field(default=10.0, gt=0)


class EmailReceiver(Section):
    type: Literal["email"] = "email"
    name: str
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=30.0, gt=0)


Receiver = WebhookReceiver | ChatReceiver | EmailReceiver


class Route(Section):
    """First matching route wins; an empty matcher matches everything."""

    receiver: str
    sites: list[str] = []
    lines: list[str] = []
    machine_types: list[str] = []
    min_severity: Literal["info", "warning", "critical"] = "info"
    escalate_to: str | None = None
    escalate_after_s: float | None = Field(default=None, gt=0)
    repeat_interval_s: float = Field(default=4 * 3600.0, gt=0)

    @model_validator(mode="after")
    def _escalation(self) -> Self:
        if (self.escalate_to is None) != (self.escalate_after_s is None):
            raise ValueError("escalate_to and escalate_after_s go together")
        return self


class AlertConfig(Section):
    open_threshold: float = Field(default=0.5, gt=0, lt=1)
    close_threshold: float = Field(default=0.3, gt=0, lt=1)
    """Hysteresis: an episode resolves only when the probability falls below this."""
    open_after: int = Field(default=2, ge=1)
    """Consecutive predictions above the threshold before an episode opens."""
    cooldown_s: float = Field(default=3600.0, ge=0)
    critical_threshold: float = Field(default=0.8, gt=0, le=1)
    group_by: Literal["machine", "line", "site"] = "machine"
    receivers: list[WebhookReceiver | ChatReceiver | EmailReceiver] = []
    routes: list[Route] = []
    http_port: int = Field(default=8470, ge=0, le=65535)
    """Acknowledge/assign API; 0 picks a free port."""
    outbox_path: str = ".vigil/outbox.sqlite3"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.close_threshold >= self.open_threshold:
            raise ValueError(
                f"close_threshold {self.close_threshold:g} must be < open_threshold {self.open_threshold:g}"
            )
        return self
