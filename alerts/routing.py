"""Routing: which receiver hears about an alert (first matching route by site, line, type, minimum severity)."""

from __future__ import annotations

from alerts.render import SEVERITY_RANK
from vigil.config import AlertConfig, Route
from vigil.contracts import Alert, Severity


class Router:
    """First matching route wins (sites, lines, machine types, minimum severity); no routes: every receiver."""

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
            if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[Severity(r.min_severity)]:
                continue
            return r
        return None

    def receivers(self, alert: Alert) -> tuple[str, ...]:
        if not self.config.routes:
            return tuple(r.name for r in self.config.receivers)
        route = self.route(alert)
        return (route.receiver,) if route else ()
