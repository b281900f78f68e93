"""The digest: informational findings (drift, sensor faults, limits crossed during warm-up) per shift or per day.

Drift, sensor-fault and startup-limit episodes page nobody (see :mod:`alerts.routing`); a planner reads about them once a shift
or once a day instead. A *finding* is the opening or the resolution of an informational episode. The alerts
service records findings in its store in the same transaction as the lifecycle state, so a crash and the Kafka
replay that follows record each one once (they are keyed by alert id and transition number). When a period ends
(wall clock, shift starts in the configured time zone) one notification per digest receiver lists the findings
recorded before the boundary and not sent yet, grouped by machine; it goes into the durable outbox in the same
transaction that records the period as sent. A restart therefore never sends a period twice; after an outage
spanning several periods, the next digest carries everything not sent.

>>> from vigil.config.alerting import DigestConfig
>>> schedule = Schedule(DigestConfig(interval="shift", timezone="Europe/Berlin"))
>>> p = schedule.period_at(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))   # 13:00 in Berlin
>>> p.title()
'shift 2026-03-02 06:00-14:00 Europe/Berlin'
>>> schedule.last_ended(datetime(2026, 3, 2, 12, 0, tzinfo=UTC)).title()
'shift 2026-03-01 22:00-06:00 Europe/Berlin'
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from alerts.render import Notification
from alerts.routing import informational
from vigil.config.alerting import DigestConfig
from vigil.contracts import Alert, AlertState

if TYPE_CHECKING:
    from alerts.store import AlertStore

log = logging.getLogger(__name__)

FINDING_STATES = (AlertState.OPEN, AlertState.RESOLVED)
"""The transitions a digest lists: an informational episode opened (or reopened), or resolved."""


def is_finding(alert: Alert) -> bool:
    return informational(alert.alert_kind) and alert.state in FINDING_STATES


# --------------------------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    """One digest period, ``[start, end)`` (aware UTC), named in the plant's time zone."""

    start: datetime
    end: datetime
    interval: str
    timezone: str

    def title(self) -> str:
        zone = ZoneInfo(self.timezone)
        a, b = self.start.astimezone(zone), self.end.astimezone(zone)
        return f"{self.interval} {a:%Y-%m-%d %H:%M}-{b:%H:%M} {self.timezone}"

    def as_json(self) -> dict[str, str]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "interval": self.interval,
            "timezone": self.timezone,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Period:
        return cls(
            datetime.fromisoformat(data["start"]),
            datetime.fromisoformat(data["end"]),
            data["interval"],
            data["timezone"],
        )


class Schedule:
    """Period boundaries: every shift start (``shift``) or the first shift start of each day (``day``), local."""

    def __init__(self, config: DigestConfig) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        starts = config.shift_starts if config.interval == "shift" else config.shift_starts[:1]
        self.starts = [time(int(s[:2]), int(s[3:])) for s in starts]

    def _boundaries(self, around: datetime) -> list[datetime]:
        """Boundaries (UTC) from the day before to the day after ``around``'s local date."""
        day = around.astimezone(self.zone).date()
        out: list[datetime] = []
        for offset in (-1, 0, 1):
            d: date = day + timedelta(days=offset)
            # A start in a DST gap (02:30 on the spring change) resolves to the instant the clocks would show it.
            out += [datetime.combine(d, t, tzinfo=self.zone).astimezone(UTC) for t in self.starts]
        return sorted(set(out))

    def period_at(self, at: datetime) -> Period:
        """The period holding ``at``."""
        bounds = self._boundaries(at)
        at = at.astimezone(UTC)
        for a, b in pairwise(bounds):
            if a <= at < b:
                return Period(a, b, self.config.interval, self.config.timezone)
        raise AssertionError(f"no digest period holds {at}")  # pragma: no cover - three days of boundaries

    def last_ended(self, at: datetime) -> Period:
        """The most recent period that has ended at ``at``."""
        current = self.period_at(at)
        return self.period_at(current.start - timedelta(microseconds=1))


# --------------------------------------------------------------------------------------------- the message


@dataclass(frozen=True)
class _Entry:
    """One informational episode as the digest shows it: its first and last finding in the period."""

    first: Alert
    last: Alert


def _entries(alerts: Iterable[Alert]) -> dict[str, list[_Entry]]:
    """Findings grouped by machine (in order of appearance), one entry per episode."""
    by_episode: dict[str, list[Alert]] = {}
    for a in alerts:
        by_episode.setdefault(a.alert_id, []).append(a)
    out: dict[str, list[_Entry]] = {}
    for found in by_episode.values():
        out.setdefault(found[0].machine_id, []).append(_Entry(found[0], found[-1]))
    return out


def _where(a: Alert) -> str:
    if a.machine_id.startswith("type:"):
        return f"{a.machine_id} (every {a.machine_id.removeprefix('type:')} of the type)"
    details = [x for x in (a.machine_type, f"site {a.site}" if a.site else "", f"line {a.line}" if a.line else "") if x]
    return f"{a.machine_id} ({', '.join(details)})" if details else a.machine_id


def _entry_line(e: _Entry) -> str:
    last = e.last
    state = f"resolved {last.ts:%Y-%m-%d %H:%M} UTC" if last.state == AlertState.RESOLVED else "still open"
    note = f" ({last.note})" if last.note else ""
    return (
        f"[{last.severity.value.upper()}] {last.summary}: since {last.opened_at:%Y-%m-%d %H:%M} UTC, {state}{note}"
        f" [{last.alert_id}]"
    )


@dataclass(frozen=True)
class DigestNotification(Notification):
    """A digest: one period's informational findings for one receiver (``alerts`` in the order recorded)."""

    period: Period | None = None

    @property
    def machines(self) -> int:
        return len({a.machine_id for a in self.alerts})

    def title(self) -> str:
        what = self.period.title() if self.period is not None else "digest"
        episodes = len({a.alert_id for a in self.alerts})
        return f"Vigil digest, {what}: {episodes} informational finding(s) on {self.machines} machine(s)"

    def text(self) -> str:
        lines = [
            self.title(),
            "Drift and sensor faults: for the reliability engineer's review; nobody was paged for these.",
        ]
        if not self.alerts:
            lines.append("Nothing to report in this period.")
        for entries in _entries(self.alerts).values():
            lines += ["", _where(entries[0].last)] + [f"  - {_entry_line(e)}" for e in entries]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        """The webhook body: ``type`` ``vigil.digest``, the period, the findings grouped by machine."""
        machines = [
            {
                "machine_id": machine,
                "machine_type": entries[0].last.machine_type,
                "site": entries[0].last.site,
                "line": entries[0].last.line,
                "episodes": [
                    {
                        "alert_id": e.last.alert_id,
                        "kind": e.last.alert_kind,
                        "severity": e.last.severity.value,
                        "state": e.last.state.value,
                        "summary": e.last.summary,
                        "opened_at": e.last.opened_at.isoformat(),
                        "last_ts": e.last.ts.isoformat(),
                    }
                    for e in entries
                ],
            }
            for machine, entries in _entries(self.alerts).items()
        ]
        end = self.period.end if self.period is not None else max((a.ts for a in self.alerts), default=None)
        return {
            "type": "vigil.digest",
            "timestamp": end.isoformat() if end is not None else None,
            "data": {
                "id": self.id,
                "group": self.group,
                "title": self.title(),
                "text": self.text(),
                "period": self.period.as_json() if self.period is not None else None,
                "findings": len(self.alerts),
                "machines": machines,
                "alerts": [a.model_dump(mode="json") for a in self.alerts],
            },
        }

    def slack(self) -> dict[str, Any]:
        return {
            "text": self.title(),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.title()[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "```" + self.text()[:2900] + "```"}},
            ],
        }

    def teams(self) -> dict[str, Any]:
        sections = [
            {
                "activityTitle": _where(entries[0].last),
                "facts": [{"name": e.last.alert_kind, "value": _entry_line(e)} for e in entries],
                "markdown": False,
            }
            for entries in _entries(self.alerts).values()
        ]
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": self.title(),
            "themeColor": "1976D2",
            "title": self.title(),
            "sections": sections,
        }


def digest_id(receiver: str, period: Period) -> str:
    """Deterministic: one digest per receiver and period (the outbox ignores a second one)."""
    h = hashlib.sha256(f"digest|{receiver}|{period.start.isoformat()}|{period.end.isoformat()}".encode())
    return "dig_" + h.hexdigest()[:32]


def build(receiver: str, period: Period, findings: Sequence[Alert], ack_url: str) -> DigestNotification:
    return DigestNotification(digest_id(receiver, period), receiver, "digest", tuple(findings), ack_url, period=period)


# --------------------------------------------------------------------------------------------- the service's hook


class Digester:
    """Sends each ended period's digest once, through the store's outbox; called from the service's loop."""

    def __init__(self, config: DigestConfig, receivers: Sequence[str]) -> None:
        self.config = config
        self.receivers = tuple(receivers)
        self.schedule = Schedule(config)
        self._check_at = 0.0

    @classmethod
    def for_alerts(cls, config: DigestConfig, configured: Sequence[str]) -> Digester | None:
        """The digest of a deployment (``None`` when it is disabled or there is nobody to send it to)."""
        receivers = list(config.receivers) or list(configured)
        if not config.enabled or not receivers:
            return None
        return cls(config, receivers)

    def run(self, store: AlertStore, now: float, ack_url: Callable[[], str]) -> int:
        """Queue the digest of the period that ended last, unless it was sent; returns the notifications queued."""
        if now < self._check_at:
            return 0
        at = datetime.fromtimestamp(now, UTC)
        period = self.schedule.last_ended(at)
        sent_until = store.digest_sent_until()
        keep_s = self.config.keep_days * 86400.0
        added = 0
        if sent_until is None:
            # A new store: the digests start with the period running now (nothing was recorded before it).
            store.close_digest(period.end.timestamp(), lambda findings: [], now, keep_s)
        elif period.end.timestamp() > sent_until:
            url = ack_url()

            def notifications(findings: list[Alert]) -> list[Notification]:
                if not findings and not self.config.send_empty:
                    return []
                return [build(r, period, findings, url) for r in self.receivers]

            added = store.close_digest(period.end.timestamp(), notifications, now, keep_s)
            log.info("digest %s: %d notification(s) queued", period.title(), added)
        # Only once the period is recorded as sent: a failure above is retried on the next call.
        self._check_at = self.schedule.period_at(at).end.timestamp()
        return added
