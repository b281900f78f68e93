"""What a planner reads: what, where, how likely, how soon, why, what to check, how to acknowledge.

One :class:`Notification` (one or more alert transitions of one group, for one receiver) renders as plain text
(e-mail), JSON (webhook), Slack ``text``/blocks or a Teams MessageCard.

>>> from datetime import datetime, timezone
>>> from vigil.contracts import Alert, Contribution
>>> t = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)
>>> a = Alert(alert_id="PMP-001.failure_risk.20261126T100000Z", machine_id="PMP-001", machine_type="pump",
...           site="north", line="north-1", alert_kind="failure_risk", state="open", severity="critical", ts=t,
...           opened_at=t, p_failure=0.86, horizon_s=172800, summary="Failure risk 86% within 48 h",
...           contributions=(Contribution(feature="bearing_temp.mean", value=97.2, normal=71.0, normal_std=3.1,
...                                       contribution=1.8),),
...           what_to_check=("Bearing lubrication",))
>>> print(alert_text(a, "http://vigil:8470"))
[CRITICAL] OPEN: Failure risk 86% within 48 h
What:   failure_risk on PMP-001 (critical)
Where:  pump PMP-001, site north, line north-1
Likely: 86% probability of failure
When:   within 48 h
Why:
  - bearing_temp.mean = 97.2 (normal 71 +/- 3.1), contribution +1.8
Check:
  - Bearing lubrication
Ack:    vigil alert ack PMP-001.failure_risk.20261126T100000Z --by NAME
        or POST http://vigil:8470/alerts/PMP-001.failure_risk.20261126T100000Z/ack {"by": "NAME"}
Alert:  PMP-001.failure_risk.20261126T100000Z opened 2026-11-26 10:00 UTC
Page:   http://vigil:8470/episodes/PMP-001.failure_risk.20261126T100000Z
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from vigil.contracts import Alert, AlertState, Contribution, Severity

_KIND_TITLES = {
    "failure_risk": "Failure risk",
    "hard_limit": "Hard limit exceeded",
    "anomaly": "Anomalous behaviour",
    "drift": "Model drift",
    "sensor_fault": "Sensor fault",
    "startup_limit": "Limit crossed during warm-up",
}
SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def sensor_of(feature: str) -> str:
    """The sensor a feature is computed from: ``bearing_temp.mean`` -> ``bearing_temp``."""
    return feature.split(".", 1)[0]


def checks_for(
    contributions: Sequence[Contribution],
    rule_violations: Sequence[str],
    what_to_check: Mapping[str, Sequence[str]],
    limit: int = 6,
) -> tuple[str, ...]:
    """What to check, from the machine type's list, for the sensors that explain the alert (most important first).

    >>> checks_for([Contribution(feature="vibration_rms.max", value=9.0, contribution=1.0)], ["bearing_temp > 95"],
    ...            {"bearing_temp": ["Lubrication"], "vibration_rms": ["Alignment", "Foundation bolts"]})
    ('Lubrication', 'Alignment', 'Foundation bolts')
    """
    sensors: list[str] = []
    for violation in rule_violations:
        sensors += [s for s in what_to_check if s in violation]
    ranked = sorted(contributions, key=lambda c: -abs(c.contribution))
    sensors += [sensor_of(c.feature) for c in ranked]
    out: list[str] = []
    for s in dict.fromkeys(sensors):
        out += [c for c in what_to_check.get(s, ()) if c not in out]
    return tuple(out[:limit])


def _pct(p: float) -> str:
    return f"{p * 100:.0f}%"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.0f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def summarize(
    kind: str,
    *,
    p_failure: float | None = None,
    horizon_s: float | None = None,
    rule_violations: Sequence[str] = (),
    anomaly_score: float | None = None,
    detail: str = "",
) -> str:
    """One line: what is alerted and how bad.

    >>> summarize("failure_risk", p_failure=0.72, horizon_s=172800)
    'Failure risk 72% within 48 h'
    >>> summarize("hard_limit", rule_violations=["bearing_temp 97.1 > 95"])
    'Hard limit exceeded: bearing_temp 97.1 > 95'
    """
    title = _KIND_TITLES.get(kind, kind.replace("_", " ").capitalize())
    if kind == "failure_risk" and p_failure is not None:
        return f"{title} {_pct(p_failure)}" + (f" within {_hours(horizon_s)}" if horizon_s else "")
    if rule_violations:
        return f"{title}: {'; '.join(rule_violations)}"
    if anomaly_score is not None:
        return f"{title} (score {anomaly_score:.3g})"
    return f"{title}: {detail}" if detail else title


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def why_lines(contributions: Sequence[Contribution], top: int = 5) -> list[str]:
    out = []
    for c in sorted(contributions, key=lambda c: -abs(c.contribution))[:top]:
        normal = ""
        if c.normal is not None:
            normal = f" (normal {_num(c.normal)}" + (f" +/- {_num(c.normal_std)}" if c.normal_std else "") + ")"
        out.append(f"{c.feature} = {_num(c.value)}{normal}, contribution {c.contribution:+.2g}")
    return out


def ack_hint(alert_id: str, ack_url: str) -> list[str]:
    return [
        f"vigil alert ack {alert_id} --by NAME",
        f'or POST {ack_url.rstrip("/")}/alerts/{alert_id}/ack {{"by": "NAME"}}',
    ]


def episode_url(ack_url: str, alert_id: str) -> str:
    """The console's page of an episode (``alerts.public_url`` + ``/episodes/<id>``).

    >>> episode_url("https://vigil.example/", "PMP-001.failure_risk.20261207T000000Z")
    'https://vigil.example/episodes/PMP-001.failure_risk.20261207T000000Z'
    """
    return f"{ack_url.rstrip('/')}/episodes/{quote(alert_id, safe='')}"


def alert_text(alert: Alert, ack_url: str) -> str:
    where = ", ".join(
        x
        for x in (
            f"{alert.machine_type or 'machine'} {alert.machine_id}",
            f"site {alert.site}" if alert.site else "",
            f"line {alert.line}" if alert.line else "",
        )
        if x
    )
    lines = [
        f"[{alert.severity.value.upper()}] {alert.state.value.upper()}: {alert.summary}",
        f"What:   {alert.alert_kind} on {alert.machine_id} ({alert.severity.value})",
        f"Where:  {where}",
    ]
    if alert.p_failure is not None:
        lines.append(f"Likely: {_pct(alert.p_failure)} probability of failure")
    if alert.horizon_s:
        lines.append(f"When:   within {_hours(alert.horizon_s)}")
    why = why_lines(alert.contributions)
    if why:
        lines += ["Why:", *(f"  - {w}" for w in why)]
    if alert.what_to_check:
        lines += ["Check:", *(f"  - {c}" for c in alert.what_to_check)]
    if alert.actor and alert.state in (AlertState.ACKNOWLEDGED, AlertState.UPDATED) and alert.actor != "vigil":
        lines.append(f"By:     {alert.actor}" + (f" (assigned to {alert.assignee})" if alert.assignee else ""))
    if alert.note:
        lines.append(f"Note:   {alert.note}")
    if alert.state not in (AlertState.RESOLVED, AlertState.ACKNOWLEDGED):
        hint = ack_hint(alert.alert_id, ack_url)
        lines += [f"Ack:    {hint[0]}", f"        {hint[1]}"]
    lines.append(f"Alert:  {alert.alert_id} opened {alert.opened_at:%Y-%m-%d %H:%M} UTC")
    lines.append(f"Page:   {episode_url(ack_url, alert.alert_id)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Notification:
    """One message to one receiver about one or more alert transitions of one group (machine, line or site)."""

    id: str
    """Stable id: the webhook idempotency id (``webhook-id``) and the outbox key."""
    receiver: str
    group: str
    alerts: tuple[Alert, ...]
    ack_url: str

    @property
    def worst(self) -> Severity:
        return max((a.severity for a in self.alerts), key=lambda s: SEVERITY_RANK[s])

    def title(self) -> str:
        if len(self.alerts) == 1:
            a = self.alerts[0]
            return f"[{a.severity.value.upper()}] {a.state.value}: {a.summary} - {a.machine_id}"
        states = sorted({a.state.value for a in self.alerts})
        return (
            f"[{self.worst.value.upper()}] {len(self.alerts)} alert transitions on {self.group} ({', '.join(states)})"
        )

    def text(self) -> str:
        return "\n\n".join(alert_text(a, self.ack_url) for a in self.alerts)

    def as_json(self) -> dict[str, Any]:
        """The webhook body (Standard Webhooks shape: ``type``, ``timestamp``, ``data``)."""
        return {
            "type": f"vigil.alert.{self.alerts[0].state.value}" if len(self.alerts) == 1 else "vigil.alert.group",
            "timestamp": max(a.ts for a in self.alerts).isoformat(),
            "data": {
                "id": self.id,
                "group": self.group,
                "title": self.title(),
                "text": self.text(),
                "ack_url": self.ack_url,
                "alerts": [a.model_dump(mode="json") for a in self.alerts],
            },
        }

    def slack(self) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": self.title()[:150]}}]
        for a in self.alerts:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": "```" + alert_text(a, self.ack_url) + "```"}}
            )
        return {"text": self.title(), "blocks": blocks}

    def teams(self) -> dict[str, Any]:
        colour = {Severity.CRITICAL: "D32F2F", Severity.WARNING: "F9A825", Severity.INFO: "1976D2"}[self.worst]
        sections = []
        for a in self.alerts:
            facts = [
                {"name": "Machine", "value": f"{a.machine_id} ({a.machine_type or '?'})"},
                {"name": "Where", "value": f"site {a.site or '?'}, line {a.line or '?'}"},
                {"name": "State", "value": f"{a.state.value} ({a.severity.value})"},
            ]
            if a.p_failure is not None:
                facts.append({"name": "Probability", "value": _pct(a.p_failure)})
            if a.horizon_s:
                facts.append({"name": "Within", "value": _hours(a.horizon_s)})
            for w in why_lines(a.contributions, top=3):
                facts.append({"name": "Why", "value": w})
            for c in a.what_to_check:
                facts.append({"name": "Check", "value": c})
            facts.append({"name": "Acknowledge", "value": ack_hint(a.alert_id, self.ack_url)[0]})
            sections.append({"activityTitle": a.summary, "facts": facts, "markdown": False})
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": self.title(),
            "themeColor": colour,
            "title": self.title(),
            "sections": sections,
        }

    def email(self, sender: str, to: Sequence[str]) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = self.title()
        msg["From"] = sender
        msg["To"] = ", ".join(to)
        # Mail clients and relays use Message-ID to drop duplicates; it is our idempotency id.
        msg["Message-ID"] = f"<{self.id}@vigil>"
        msg.set_content(self.text())
        return msg
