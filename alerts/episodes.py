"""What the lifecycle remembers: episodes, the per-(machine, kind) tracks, silences, and its output (transitions).

Plain dataclasses with JSON round trips, so the state goes into sqlite and comes back after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from vigil.config import VigilConfig
from vigil.config.alerting import SilenceSpec
from vigil.contracts import Alert, AlertState, Contribution, Severity
from vigil.influx import MachineTags

_SUPPRESSED = (AlertState.SILENCED, AlertState.INHIBITED)


@dataclass(frozen=True)
class PlantInfo:
    """What the lifecycle needs to know about the plant: where machines are, what to check per type."""

    machines: Mapping[str, MachineTags] = field(default_factory=dict)
    what_to_check: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: VigilConfig) -> PlantInfo:
        return cls(
            machines={m.id: MachineTags(m.type, m.site, m.line) for m in config.machines_by_id.values()},
            what_to_check={name: t.what_to_check for name, t in config.machine_types.items()},
        )


@dataclass(frozen=True)
class Silence:
    id: str
    spec: SilenceSpec

    def matches(self, machine_id: str, tags: MachineTags, at: datetime) -> bool:
        s = self.spec
        hit = machine_id in s.machines or (tags.line in s.lines) or (tags.site in s.sites)
        return hit and s.active(at)


@dataclass(frozen=True)
class Transition:
    """One lifecycle change: the audit record and the receivers to tell (empty: record only)."""

    alert: Alert
    receivers: tuple[str, ...] = ()


@dataclass
class Episode:
    alert_id: str
    machine_id: str
    kind: str
    opened_at: datetime
    opened_wall: float
    last_ts: datetime
    severity: Severity
    state: AlertState
    summary: str
    p_failure: float | None = None
    horizon_s: float | None = None
    contributions: tuple[Contribution, ...] = ()
    what_to_check: tuple[str, ...] = ()
    acknowledged_by: str | None = None
    assignee: str | None = None
    escalated: bool = False
    notified: tuple[str, ...] = ()
    """Receivers told about this episode (they also get its resolve)."""
    notified_severity: Severity | None = None
    last_notified_wall: float | None = None
    reported_p: float | None = None
    """p_failure at the last recorded transition: slow drifts add up to an update too."""
    seq: int = 0
    """Transitions recorded so far (the next one gets ``seq + 1``)."""

    @property
    def suppressed(self) -> bool:
        return self.state in _SUPPRESSED

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["contributions"] = [c.model_dump(mode="json") for c in self.contributions]
        for key in ("opened_at", "last_ts"):
            data[key] = data[key].isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Episode:
        d = dict(data)
        d["contributions"] = tuple(Contribution.model_validate(c) for c in d["contributions"])
        d["what_to_check"] = tuple(d["what_to_check"])
        d["notified"] = tuple(d["notified"])
        d["opened_at"] = datetime.fromisoformat(d["opened_at"])
        d["last_ts"] = datetime.fromisoformat(d["last_ts"])
        d["severity"] = Severity(d["severity"])
        d["state"] = AlertState(d["state"])
        d["notified_severity"] = Severity(d["notified_severity"]) if d["notified_severity"] else None
        return cls(**d)


@dataclass
class Track:
    """Per (machine, kind): the hysteresis counter, the last event time seen, the open episode and its recovery, the
    last resolved episode (the cooldown)."""

    above: int = 0
    last_ts: datetime | None = None
    episode: Episode | None = None
    resolved: Episode | None = None
    """The last resolved episode (reopened when the condition returns within the cooldown)."""
    clear_s: float = 0.0
    """Operating seconds the open episode's condition has not held (since ``clear_since``); it resolves at
    ``resolve_after_s``. Back to 0 whenever the condition holds again."""
    clear_since: datetime | None = None
    """Event time of the first observation without the condition in the current recovery (None: not recovering)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "above": self.above,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "episode": self.episode.to_json() if self.episode else None,
            "resolved": self.resolved.to_json() if self.resolved else None,
            "clear_s": self.clear_s,
            "clear_since": self.clear_since.isoformat() if self.clear_since else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Track:
        """Also reads the state saved before recovery was tracked (no ``clear_s``: not recovering)."""
        since = data.get("clear_since")
        return cls(
            above=int(data["above"]),
            last_ts=datetime.fromisoformat(data["last_ts"]) if data["last_ts"] else None,
            episode=Episode.from_json(data["episode"]) if data["episode"] else None,
            resolved=Episode.from_json(data["resolved"]) if data["resolved"] else None,
            clear_s=float(data.get("clear_s", 0.0)),
            clear_since=datetime.fromisoformat(since) if since else None,
        )
