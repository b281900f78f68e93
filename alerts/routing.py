"""Routing: which receiver hears about an alert (first matching route by site, line, type, kind, minimum severity).

Drift, sensor-fault and startup-limit (a hard limit crossed only during warm-up) episodes are informational: they go
to InfluxDB, the alerts topic and the digest (:mod:`alerts.digest`), and to a receiver only through a route that asks
for them (``kinds = ["drift"]`` or ``include_informational = true``). Without routes every receiver hears about every paged kind.

>>> from datetime import datetime, timezone
>>> from vigil.config import AlertConfig
>>> t = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)
>>> config = AlertConfig.model_validate({
...     "receivers": [{"name": "pager", "url": "http://pager"}, {"name": "reliability", "url": "http://rel"}],
...     "routes": [{"receiver": "pager"}, {"receiver": "reliability", "kinds": ["drift", "sensor_fault"]}],
... })
>>> def alert(kind):
...     return Alert(alert_id="a", machine_id="PMP-001", alert_kind=kind, state="open", severity="info", ts=t,
...                  opened_at=t, summary="")
>>> Router(config).receivers(alert("anomaly")), Router(config).receivers(alert("drift"))
(('pager',), ('reliability',))
"""

from __future__ import annotations

from alerts.render import SEVERITY_RANK
from vigil.config import AlertConfig, Route
from vigil.config.alerting import INFORMATIONAL_KINDS
from vigil.contracts import Alert, Severity


def informational(kind: str) -> bool:
    """Drift, sensor faults and limits crossed during warm-up: findings for the digest, not for the pager."""
    return kind in INFORMATIONAL_KINDS


def wants(route: Route, kind: str) -> bool:
    """Whether a route takes this kind of episode: the kinds it names, else every paged kind (and the
    informational ones only with ``include_informational``)."""
    if route.kinds:
        return kind in route.kinds
    return route.include_informational or not informational(kind)


class Router:
    """First matching route wins (sites, lines, machine types, kinds, minimum severity); no routes: every receiver
    for the paged kinds, none for the informational ones."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config

    def route(self, alert: Alert) -> Route | None:
        for r in self.config.routes:
            if r.sites and alert.site not in r.sites:
                continue
            if r.lines and alert.line not in r.lines:
                continue
            if r.machine_types and alert.machine_type not in r.machine_types:
                continue
            if not wants(r, alert.alert_kind):
                continue
            if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[Severity(r.min_severity)]:
                continue
            return r
        return None

    def receivers(self, alert: Alert) -> tuple[str, ...]:
        if not self.config.routes:
            if informational(alert.alert_kind):
                return ()
            return tuple(r.name for r in self.config.receivers)
        route = self.route(alert)
        return (route.receiver,) if route else ()
