"""What the pages read of the lifecycle: an immutable snapshot the service loop publishes after each commit.

The lifecycle belongs to the service loop's thread; pages never touch it. The loop builds a :class:`View` after it
has stored a batch (so a page shows what is stored: an acknowledgement appears once it is in Kafka and InfluxDB)
and swaps it in with one assignment, which readers on other threads see whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alerts.lifecycle import Lifecycle
from alerts.render import SEVERITY_RANK, why_lines
from alerts.web.api import episode_json


@dataclass(frozen=True)
class View:
    at: float = 0.0
    """Wall clock (UTC seconds) of the snapshot."""
    episodes: tuple[dict[str, Any], ...] = ()
    """Open episodes, most severe and oldest first: :func:`episode_json` plus type, site, line, why."""
    silences: tuple[dict[str, Any], ...] = ()
    lines_down: tuple[str, ...] = ()
    machines_off: tuple[str, ...] = ()
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, life: Lifecycle, now: float) -> View:
        rows = []
        for ep in life.open_episodes():
            tags = life.plant.machines.get(ep.machine_id)
            row = episode_json(ep)
            row.update(
                type=tags.type if tags else None,
                site=tags.site if tags else None,
                line=tags.line if tags else None,
                why=why_lines(ep.contributions, top=3),
                horizon_s=ep.horizon_s,
                opened_wall=ep.opened_wall,
                notified=list(ep.notified),
                seq=ep.seq,
            )
            rows.append(row)
        rows.sort(key=lambda r: (-SEVERITY_RANK.get(_sev(r["severity"]), 0), r["opened_at"], r["alert_id"]))
        silences = tuple({"id": sid, **s.spec.model_dump(mode="json")} for sid, s in sorted(life.silences.items()))
        return cls(
            at=now,
            episodes=tuple(rows),
            silences=silences,
            lines_down=tuple(sorted(life.lines_down)),
            machines_off=tuple(sorted(life.machines_off)),
            by_id={r["alert_id"]: r for r in rows},
        )


def _sev(value: str) -> Any:
    from vigil.contracts import Severity

    return Severity(value)
