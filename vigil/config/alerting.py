"""Alert lifecycle, receivers and routing."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, Discriminator, Field, SecretStr, Tag, field_validator, model_validator

from vigil.config._base import Section


class WebhookReceiver(Section):
    type: Literal["webhook"] = "webhook"
    name: str
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = None
    """Standard Webhooks signing secret (``whsec_`` + base64); HMAC-SHA256 signatures when set."""
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value()
            if not raw.startswith("whsec_"):
                raise ValueError("must start with 'whsec_' followed by the base64 key (Standard Webhooks)")
            try:
                key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
            except binascii.Error as exc:
                raise ValueError("the part after 'whsec_' is not valid base64") from exc
            if not 24 <= len(key) <= 64:
                raise ValueError(f"the key must be 24 to 64 bytes (got {len(key)})")
        return value


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
    ca_file: str | None = None
    """PEM CA bundle that signs the SMTP server's certificate (a private CA); default: the system store."""

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if "@" not in a or any(c.isspace() for c in a)]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(repr(a) for a in bad)}")
        return value

    @model_validator(mode="after")
    def _auth(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


_RECEIVER_TAGS = {"webhook": "WebhookReceiver", "chat": "ChatReceiver", "email": "EmailReceiver"}


def _receiver_kind(value: Any) -> str | None:
    kind = value.get("type", "webhook") if isinstance(value, dict) else getattr(value, "type", None)
    return _RECEIVER_TAGS.get(str(kind))


# Dispatch on ``type`` (default webhook) so a mistake is reported for the one receiver kind meant, not for all
# three; the tags are the class names, which format_loc leaves out of key paths.
Receiver = Annotated[
    Annotated[WebhookReceiver, Tag("WebhookReceiver")]
    | Annotated[ChatReceiver, Tag("ChatReceiver")]
    | Annotated[EmailReceiver, Tag("EmailReceiver")],
    Discriminator(
        _receiver_kind,
        custom_error_type="receiver_type",
        custom_error_message="type must be 'webhook', 'chat' or 'email'",
    ),
]


ALERT_KINDS = ("failure_risk", "hard_limit", "anomaly", "drift", "sensor_fault", "startup_limit")
"""Every episode kind the lifecycle opens."""
INFORMATIONAL_KINDS = ("drift", "sensor_fault", "startup_limit")
"""Findings for the digest, not the pager: a route hears about them only when it asks (``kinds``/``include_informational``).
``startup_limit`` is a hard limit crossed only during a machine's warm-up (expected start-up physics, such as a
compressor pumping back up after a restart); a crossing that persists past the warm-up is a critical ``hard_limit``."""

AlertKind = Literal["failure_risk", "hard_limit", "anomaly", "drift", "sensor_fault", "startup_limit"]


class Route(Section):
    """First matching route wins; an empty matcher matches everything, except informational kinds (drift, sensor
    faults, limits crossed during warm-up), which a route matches only when it names them in ``kinds`` or sets
    ``include_informational``."""

    receiver: str
    sites: list[str] = []
    lines: list[str] = []
    machine_types: list[str] = []
    kinds: list[AlertKind] = []
    """Only these episode kinds (empty: every paged kind: failure_risk, hard_limit, anomaly)."""
    include_informational: bool = False
    """Also drift, sensor-fault and startup-limit episodes (which otherwise go to the digest only)."""
    min_severity: Literal["info", "warning", "critical"] = "info"
    escalate_to: str | None = None
    escalate_after_s: float | None = Field(default=None, gt=0)
    repeat_interval_s: float = Field(default=4 * 3600.0, gt=0)

    @model_validator(mode="after")
    def _escalation(self) -> Self:
        if (self.escalate_to is None) != (self.escalate_after_s is None):
            raise ValueError("escalate_to and escalate_after_s go together")
        if self.escalate_to is not None and self.escalate_to == self.receiver:
            raise ValueError("escalate_to must name a different receiver than receiver")
        return self


class SilenceSpec(Section):
    """A planned-maintenance window: alerts of the matching machines are recorded as silenced, not notified.

    An empty matcher list matches nothing (a silence must say what it silences)."""

    machines: list[str] = []
    lines: list[str] = []
    sites: list[str] = []
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    comment: str = ""
    created_by: str = "config"

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if not (self.machines or self.lines or self.sites):
            raise ValueError("a silence needs at least one of machines, lines, sites")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


_CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class DigestConfig(Section):
    """Informational findings (drift, sensor faults) collected per shift or per day into one notification."""

    enabled: bool = True
    interval: Literal["shift", "day"] = "day"
    """``shift``: one digest per shift (periods start at each of ``shift_starts``); ``day``: one per day, the day
    starting at the first of ``shift_starts``."""
    shift_starts: list[Annotated[str, Field(pattern=_CLOCK)]] = Field(default=["06:00", "14:00", "22:00"], min_length=1)
    """Local times (``HH:MM``, in ``timezone``) at which shifts start."""
    timezone: str = "UTC"
    """IANA time zone of ``shift_starts`` (e.g. ``Europe/Berlin``); DST changes move the boundaries with the clock."""
    receivers: list[str] = []
    """Who gets the digest (empty: every configured receiver)."""
    send_empty: bool = False
    """Send a digest for a period without findings too (default: nothing to say, nothing sent)."""
    keep_days: float = Field(default=30.0, gt=0)
    """How long findings already sent in a digest are kept in the store."""

    @field_validator("shift_starts")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("shift start times must be distinct")
        return sorted(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Europe/Berlin')") from exc
        return value


class ConsoleUser(Section):
    """A person who logs in to the console (``[[alerts.users]]``); the password is stored hashed only."""

    name: str = Field(pattern=r"^[^\x00-\x1f]{1,100}$")
    password_hash: str = Field(pattern=r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")
    """``scrypt$n$r$p$salt$hash`` (base64), as printed by ``vigil alert hash-password``."""
    role: Literal["planner", "viewer"] = "planner"
    """``viewer``: reads every page, changes nothing."""


class AlertConfig(Section):
    open_threshold: float = Field(default=0.5, gt=0, lt=1)
    close_threshold: float = Field(default=0.3, gt=0, lt=1)
    """Hysteresis: an episode resolves only when the probability falls below this."""
    open_after: int = Field(default=2, ge=1)
    """Consecutive predictions above the threshold before an episode opens."""
    cooldown_s: float = Field(default=3600.0, ge=0)
    """After an episode resolved: a condition returning within this much event time reopens the same episode."""
    resolve_after_s: float = Field(default=6 * 3600.0, ge=0)
    """Operating seconds (running windows; stops do not count) without the condition before an episode resolves:
    one episode per problem across stops and duty cycles. 0 resolves at the first window without it. 6 h: the
    longest that kept recall on the tuning fleets (docs/alerts.md, "One episode per problem")."""
    critical_threshold: float = Field(default=0.8, gt=0, le=1)
    group_by: Literal["machine", "line", "site"] = "machine"
    receivers: list[Receiver] = []
    routes: list[Route] = []
    http_port: int = Field(default=8470, ge=0, le=65535)
    """Acknowledge/assign API; 0 picks a free port."""
    outbox_path: str = ".vigil/outbox.sqlite3"
    """The durable outbox and the alert lifecycle state (one sqlite file: a restart continues episodes)."""
    http_host: str = "127.0.0.1"
    api_token: SecretStr | None = None
    """When set, changes through the HTTP API (ack, assign, silence, line down) need ``Authorization: Bearer``."""
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    """Base URL planners use to acknowledge (shown in notifications); default ``http://<http_host>:<http_port>``."""
    update_min_delta: float = Field(default=0.1, gt=0, le=1)
    """An open episode records an ``updated`` transition when its probability moved at least this much."""
    kafka_session_timeout_s: float = Field(default=10.0, ge=6, le=1800)
    """How long a crashed alert service keeps its partitions (a restarted one waits for this too: its dead
    predecessor is still a member of the group until then). 10 s: kafka-python's default."""
    retry_initial_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    """Outbox retry backoff per receiver: starts at ``retry_initial_s``, doubles up to this."""
    silences: list[SilenceSpec] = []
    """Planned maintenance known in advance (more can be added at run time through the HTTP API/CLI)."""
    digest: DigestConfig = DigestConfig()
    users: list[ConsoleUser] = []
    """Console logins besides the API token (which logs in as a planner); no token and no users: the console is open."""
    session_secret: SecretStr | None = None
    """Signs the console's session cookies (at least 32 characters); unset: a random one per start (logins end at a
    restart)."""
    session_max_age_s: float = Field(default=12 * 3600.0, gt=0)
    """A console login lasts this long."""
    """Drift and sensor-fault findings, per shift or per day (they page nobody unless a route asks for them)."""
    input_wait_s: float = Field(default=120.0, ge=0)
    """How long a machine's input record waits for its counterpart (a vector for its prediction, a prediction for
    its vector) before it is decided on anyway (alerts/ordering.py). Above the model service's commit delay
    (``models.checkpoint_interval_s`` and a restart), two runs over the same input decide the same. 0: decide in
    arrival order (one poll's records sorted by event time per machine), for a plant without the whole chain."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.close_threshold >= self.open_threshold:
            raise ValueError(
                f"close_threshold {self.close_threshold:g} must be < open_threshold {self.open_threshold:g}"
            )
        if self.session_secret is not None and len(self.session_secret.get_secret_value()) < 32:
            raise ValueError("session_secret: at least 32 characters")
        logins = [u.name for u in self.users]
        if len(set(logins)) != len(logins):
            raise ValueError("users: each name once")
        names = {r.name for r in self.receivers}
        unknown = [r for r in self.digest.receivers if r not in names]
        if unknown:
            raise ValueError(f"digest.receivers: unknown receiver(s) {', '.join(repr(r) for r in unknown)}")
        return self
