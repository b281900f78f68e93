"""The alert lifecycle: a pure, single-threaded state machine over predictions, features, drift and maintenance.

An *episode* is one problem on one machine: ``(machine, kind)``. The model's decision is the verdict:
``failure_risk`` opens after ``open_after`` consecutive predictions the classifier decided as alerts and holds while
p_failure stays at or above ``close_threshold`` (hysteresis); ``anomaly`` likewise for alerts decided by degradation
or anomaly signals (held while the score is above the threshold scaled by close/open); ``hard_limit`` while a
fail-safe rule fires outside warm-up, ``startup_limit`` (informational) while it fires only for a crossing during a
machine's warm-up; ``drift`` and ``sensor_fault`` from drift events. Every change is a *transition*: an
:class:`~vigil.contracts.Alert` message (the audit history) plus the receivers to notify, if any.

Rules that keep planners from being spammed:

- hysteresis and ``open_after`` (no flapping around one threshold);
- ``resolve_after_s``: an episode resolves only after that much *operating* time without its condition (the
  running windows of its predictions; while the machine is off nothing counts), or at a repair; stops, duty
  cycles and short recoveries stay one episode, whose severity and summary follow the condition;
- ``cooldown_s``: a condition that returns within the cooldown after a resolve *reopens the same episode*
  (same id, audited) instead of starting a new one, and notifies again only if it got more severe;
- silences (planned maintenance) and inhibition (machine off, line down) record transitions as ``silenced`` /
  ``inhibited`` without notifying; when they end and the condition persists, the planner is told then, except
  when only the machine ran again (a duty cycle) and the planner already knows at that severity;
- acknowledgement stops escalation and reminders.

Observation timestamps are event time (a replay gives the same episodes and ids); escalation and reminders run
on wall-clock time (``now``), because they are about people not having reacted.

>>> from datetime import datetime, timedelta, timezone
>>> from vigil.config import AlertConfig
>>> from vigil.contracts import Prediction
>>> t = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)
>>> life = Lifecycle(AlertConfig(open_after=2, resolve_after_s=1800))
>>> def p(i, prob):
...     end = t + timedelta(minutes=10 * i)
...     return Prediction(machine_id="PMP-001", machine_type="pump", ts=end, window_start=end - timedelta(minutes=10),
...                       model="m", p_failure=prob, horizon_s=172800, decision="alert" if prob >= 0.5 else "ok")
>>> probs = [0.6, 0.7, 0.9, 0.2, 0.2, 0.7, 0.2, 0.2, 0.2]
>>> [(i, tr.alert.state.value) for i, prob in enumerate(probs) for tr in life.observe(p(i, prob), 0.0)]
[(1, 'open'), (2, 'updated'), (5, 'updated'), (8, 'resolved')]

The dip at 3-4 was 20 minutes of operation, shorter than ``resolve_after_s``: the same episode went on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.episodes import Episode, PlantInfo, Silence, Track, Transition
from alerts.exceptions import UnknownAlertError
from alerts.render import SEVERITY_RANK, checks_for, summarize
from alerts.routing import Router
from models.rules import split_warmup
from vigil.config import AlertConfig
from vigil.config.alerting import SilenceSpec
from vigil.contracts import (
    Alert,
    AlertState,
    Contribution,
    Decision,
    DriftEvent,
    FeatureVector,
    MachineState,
    MaintenanceEvent,
    MaintenanceKind,
    Prediction,
    Severity,
)
from vigil.influx import MachineTags

__all__ = ["Episode", "Lifecycle", "PlantInfo", "Router", "Silence", "Track", "Transition", "alert_id_for"]

log = logging.getLogger(__name__)

ACTOR = "vigil"


@dataclass(frozen=True)
class _Signal:
    """One observation of one condition, normalised across kinds."""

    machine_id: str
    kind: str
    ts: datetime
    opening: bool
    holding: bool
    severity: Severity
    summary: str
    p_failure: float | None = None
    horizon_s: float | None = None
    contributions: tuple[Contribution, ...] = ()
    rule_violations: tuple[str, ...] = ()
    open_after: int = 1
    tags: MachineTags = field(default_factory=MachineTags)
    operating_s: float | None = None
    """Running time this observation covers (the prediction's window); None: not known (see ``_operating_s``)."""
    sustained: bool = True
    """Resolve only after ``resolve_after_s`` of operation without the condition; False: at once (drift outcomes)."""


def alert_id_for(machine_id: str, kind: str, opened_at: datetime) -> str:
    """Deterministic: a replay from scratch gives the same ids (and InfluxDB points)."""
    return f"{machine_id}.{kind}.{opened_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"


class Lifecycle:
    """All episodes of a deployment. Not thread-safe: the service calls it from its one loop."""

    def __init__(self, config: AlertConfig, plant: PlantInfo | None = None) -> None:
        self.config = config
        self.plant = plant or PlantInfo()
        self.router = Router(config)
        self.tracks: dict[tuple[str, str], Track] = {}
        self.silences: dict[str, Silence] = {
            f"config-{i}": Silence(f"config-{i}", s) for i, s in enumerate(config.silences)
        }
        self.machines_off: set[str] = set()
        self.lines_down: set[str] = set()
        self.dirty: set[tuple[str, str]] = set()
        self.dirty_flags = False

    # ------------------------------------------------------------------------------------------- observations

    def observe(self, prediction: Prediction, now: float) -> list[Transition]:
        """A prediction: evaluates failure risk, hard limits and anomaly for its machine."""
        p = prediction
        tags = self._machine_tags(p.machine_id, p.machine_type, p.site, p.line)
        out: list[Transition] = []
        if p.decision == Decision.OFF:
            out += self._set_machine_off(p.machine_id, True, p.ts, now)
        elif p.machine_id in self.machines_off:
            out += self._set_machine_off(p.machine_id, False, p.ts, now)
        if p.decision == Decision.OFF:
            return out
        base = _Signal(
            machine_id=p.machine_id,
            kind="",
            ts=p.ts,
            opening=False,
            holding=False,
            severity=Severity.WARNING,
            summary="",
            contributions=p.contributions,
            tags=tags,
            operating_s=(p.ts - p.window_start).total_seconds() if p.window_start is not None else None,
        )
        # The model's decision is the verdict (it already weighs the classifier, degradation, trends and anomaly
        # scores, with its gates and fail-safes); the probability and the anomaly score only hold an episode open
        # (hysteresis). Who decided names the episode: the classifier -> failure_risk, degradation/anomaly ->
        # anomaly; the hard limits are their own episode below.
        c = self.config
        alerting = p.decision == Decision.ALERT
        severity = (
            Severity.CRITICAL if p.p_failure is not None and p.p_failure >= c.critical_threshold else Severity.WARNING
        )
        by_model = alerting and p.decided_by == "model"
        if by_model or p.p_failure is not None:
            out += self._step(
                replace(
                    base,
                    kind="failure_risk",
                    opening=by_model,
                    holding=by_model or (p.p_failure is not None and p.p_failure >= c.close_threshold),
                    severity=severity,
                    summary=summarize("failure_risk", p_failure=p.p_failure, horizon_s=p.horizon_s),
                    p_failure=p.p_failure,
                    horizon_s=p.horizon_s,
                    open_after=c.open_after,
                ),
                now,
            )
        # A crossing that persisted outside warm-up is a critical hard limit at once; one that persisted only during
        # warm-up (a compressor pumping back up after a restart) is start-up physics: an informational episode of
        # its own, for the digest (models.rules.split_warmup). An open hard-limit episode is one problem across
        # restarts: a warm-up crossing then holds it (it never opens one) instead of starting a start-up episode.
        outside, during = split_warmup(p.rule_violations)
        hard = self.tracks.get((p.machine_id, "hard_limit"))
        startup = () if hard is not None and hard.episode is not None else during
        for kind, opens, holds, level in (
            ("hard_limit", outside, outside if startup else p.rule_violations, Severity.CRITICAL),
            ("startup_limit", startup, startup, Severity.WARNING),
        ):
            out += self._step(
                replace(
                    base,
                    kind=kind,
                    opening=bool(opens),
                    holding=bool(holds),
                    severity=level,
                    summary=summarize(kind, rule_violations=holds),
                    rule_violations=holds,
                    p_failure=p.p_failure,
                ),
                now,
            )
        by_anomaly = alerting and p.decided_by == "anomaly"
        if by_anomaly or (p.anomaly_score is not None and p.anomaly_threshold is not None):
            ratio = c.close_threshold / c.open_threshold
            holding = by_anomaly or (
                p.anomaly_score is not None
                and p.anomaly_threshold is not None
                and p.anomaly_score >= p.anomaly_threshold * ratio
            )
            out += self._step(
                replace(
                    base,
                    kind="anomaly",
                    opening=by_anomaly,
                    holding=holding,
                    severity=Severity.WARNING,
                    summary=summarize("anomaly", detail="; ".join(p.reasons))
                    if p.reasons
                    else summarize("anomaly", anomaly_score=p.anomaly_score),
                    open_after=c.open_after,
                ),
                now,
            )
        return out

    def observe_features(self, fv: FeatureVector, now: float) -> list[Transition]:
        """Feature windows carry the machine state: ``off`` inhibits the machine's alerts, ``running`` lifts it."""
        if fv.state == MachineState.OFF:
            return self._set_machine_off(fv.machine_id, True, fv.window_end, now)
        # With sensors missing, "running" may be a stopped machine whose speed stays 0 and so is not re-sent by a
        # report-by-exception source; the model holds the last value and its prediction of this window decides.
        if fv.state == MachineState.RUNNING and fv.machine_id in self.machines_off and not fv.missing:
            return self._set_machine_off(fv.machine_id, False, fv.window_end, now)
        return []

    def observe_drift(self, event: DriftEvent, now: float) -> list[Transition]:
        """Drift and sensor faults open episodes; a retraining outcome (promoted/kept/rolled back) resolves them."""
        subject = event.machine_id or f"type:{event.machine_type}"
        kind = "sensor_fault" if event.event == "sensor_fault" else "drift"
        tags = self._machine_tags(event.machine_id or "", event.machine_type, None, None)
        if event.event in ("drift", "sensor_fault"):
            active = True
        elif event.event in ("promoted", "kept", "rolled_back"):
            active = False
        else:
            return []
        detail = f"{event.detector} on {event.target}" + (f": {event.detail}" if event.detail else "")
        signal = _Signal(
            machine_id=subject,
            kind=kind,
            ts=event.ts,
            opening=active,
            holding=active,
            severity=Severity.WARNING if kind == "sensor_fault" else Severity.INFO,
            summary=summarize(kind, detail=detail),
            tags=tags,
            sustained=False,  # a retraining outcome is a verdict, not a reading that may come back
        )
        return self._step(signal, now)

    def observe_maintenance(self, event: MaintenanceEvent, now: float) -> list[Transition]:
        """A repair closes the machine's open episodes (the condition was dealt with); a problem after it is a new
        episode, never one reopened within the cooldown."""
        if event.event != MaintenanceKind.REPAIR:
            return []
        out = []
        for key, track in sorted(self.tracks.items()):
            if key[0] != event.machine_id:
                continue
            if track.episode is not None and event.ts >= track.episode.opened_at:
                note = f"repair recorded: {event.text}".strip(": ")
                out += self._resolve(track, key, event.ts, note, reopenable=False)
            elif track.resolved is not None and event.ts >= track.resolved.last_ts:
                track.resolved = None
                self.dirty.add(key)
        return out

    # ------------------------------------------------------------------------------------------- planner actions

    def acknowledge(self, alert_id: str, by: str, note: str | None, now: float) -> list[Transition]:
        key, ep = self._find(alert_id)
        ep.acknowledged_by = by
        ep.state = AlertState.ACKNOWLEDGED
        self.dirty.add(key)
        alert = self._alert(ep, AlertState.ACKNOWLEDGED, _wall(now), actor=by, note=note)
        return [Transition(alert, ep.notified)]

    def assign(self, alert_id: str, to: str, by: str, now: float) -> list[Transition]:
        key, ep = self._find(alert_id)
        ep.assignee = to
        self.dirty.add(key)
        alert = self._alert(ep, AlertState.UPDATED, _wall(now), actor=by, note=f"assigned to {to}")
        return [Transition(alert, ep.notified)]

    def add_silence(self, silence: Silence, now: float) -> list[Transition]:
        self.silences[silence.id] = silence
        self.dirty_flags = True
        at = _wall(now)
        out = []
        for key, track in sorted(self.tracks.items()):
            ep = track.episode
            if ep is not None and not ep.suppressed and self._silence_for(ep.machine_id, at):
                out.append(self._suppress(key, ep, AlertState.SILENCED, at, f"silence {silence.id}"))
        return out

    def remove_silence(self, silence_id: str) -> bool:
        self.dirty_flags = True
        return self.silences.pop(silence_id, None) is not None

    def set_line_down(self, line: str, down: bool, now: float) -> list[Transition]:
        """A line-down condition (operator or upstream signal) inhibits the line's machines' alerts."""
        (self.lines_down.add if down else self.lines_down.discard)(line)
        self.dirty_flags = True
        at = _wall(now)
        out = []
        for key, track in sorted(self.tracks.items()):
            ep = track.episode
            if ep is not None and self._machine_tags(ep.machine_id, None, None, None).line == line:
                out += self._reconsider(key, ep, at, now)
        return out

    def tick(self, now: float) -> list[Transition]:
        """Wall-clock duties: escalate unacknowledged episodes, remind, expire silences."""
        out: list[Transition] = []
        at = _wall(now)
        for sid in [sid for sid, s in self.silences.items() if s.spec.ends_at <= at]:
            del self.silences[sid]
            self.dirty_flags = True
        for key, track in sorted(self.tracks.items()):
            ep = track.episode
            if ep is None:
                continue
            if ep.suppressed:
                out += self._reconsider(key, ep, at, now)
                continue
            if ep.acknowledged_by is not None:
                continue
            route = self.router.route(self._alert(ep, ep.state, at, record=False))
            if (
                route is not None
                and route.escalate_to is not None
                and route.escalate_after_s is not None
                and not ep.escalated
                and now - ep.opened_wall >= route.escalate_after_s
            ):
                ep.escalated = True
                ep.state = AlertState.ESCALATED
                ep.notified = (*ep.notified, route.escalate_to)
                ep.last_notified_wall = now
                self.dirty.add(key)
                note = f"not acknowledged within {route.escalate_after_s:g}s; escalated to {route.escalate_to}"
                out.append(Transition(self._alert(ep, AlertState.ESCALATED, at, note=note), (route.escalate_to,)))
                continue
            repeat = route.repeat_interval_s if route else 4 * 3600.0
            if ep.notified and ep.last_notified_wall is not None and now - ep.last_notified_wall >= repeat:
                ep.last_notified_wall = now
                self.dirty.add(key)
                note = "reminder: not acknowledged"
                out.append(Transition(self._alert(ep, AlertState.UPDATED, at, note=note), ep.notified))
        return out

    # ------------------------------------------------------------------------------------------- queries

    def open_episodes(self) -> list[Episode]:
        return [t.episode for _, t in sorted(self.tracks.items()) if t.episode is not None]

    def get(self, alert_id: str) -> Episode | None:
        for t in self.tracks.values():
            if t.episode is not None and t.episode.alert_id == alert_id:
                return t.episode
        return None

    def current_alert(self, ep: Episode) -> Alert:
        return self._alert(ep, ep.state, ep.last_ts, record=False)

    # ------------------------------------------------------------------------------------------- persistence

    def export_dirty(self) -> dict[str, dict[str, Any]]:
        out = {f"{m}|{k}": self.tracks[(m, k)].to_json() for m, k in self.dirty if (m, k) in self.tracks}
        self.dirty.clear()
        return out

    def export_flags(self) -> dict[str, Any]:
        self.dirty_flags = False
        return {
            "machines_off": sorted(self.machines_off),
            "lines_down": sorted(self.lines_down),
            "silences": {sid: s.spec.model_dump(mode="json") for sid, s in self.silences.items()},
        }

    def restore(self, tracks: Mapping[str, Mapping[str, Any]], flags: Mapping[str, Any] | None) -> None:
        for key, data in tracks.items():
            machine, _, kind = key.partition("|")
            self.tracks[(machine, kind)] = Track.from_json(data)
        if flags:
            self.machines_off = set(flags.get("machines_off", ()))
            self.lines_down = set(flags.get("lines_down", ()))
            for sid, spec in flags.get("silences", {}).items():
                self.silences[sid] = Silence(sid, SilenceSpec.model_validate(spec))

    # ------------------------------------------------------------------------------------------- internals

    def _machine_tags(self, machine_id: str, type_: str | None, site: str | None, line: str | None) -> MachineTags:
        known = self.plant.machines.get(machine_id, MachineTags())
        return MachineTags(type_ or known.type, site or known.site, line or known.line)

    def _find(self, alert_id: str) -> tuple[tuple[str, str], Episode]:
        for key, t in self.tracks.items():
            if t.episode is not None and t.episode.alert_id == alert_id:
                return key, t.episode
        raise UnknownAlertError(f"no open alert {alert_id!r}")

    def _silence_for(self, machine_id: str, at: datetime) -> Silence | None:
        tags = self._machine_tags(machine_id, None, None, None)
        for s in self.silences.values():
            if s.matches(machine_id, tags, at):
                return s
        return None

    def _inhibition_for(self, machine_id: str) -> str | None:
        if machine_id in self.machines_off:
            return "machine off"
        line = self._machine_tags(machine_id, None, None, None).line
        if line is not None and line in self.lines_down:
            return f"line {line} down"
        return None

    def _suppression(self, machine_id: str, at: datetime) -> tuple[AlertState, str] | None:
        inhibition = self._inhibition_for(machine_id)
        if inhibition:
            return AlertState.INHIBITED, inhibition
        silence = self._silence_for(machine_id, at)
        if silence:
            comment = f": {silence.spec.comment}" if silence.spec.comment else ""
            return AlertState.SILENCED, f"silence {silence.id}{comment}"
        return None

    def _set_machine_off(self, machine_id: str, off: bool, ts: datetime, now: float) -> list[Transition]:
        if off == (machine_id in self.machines_off):
            return []
        (self.machines_off.add if off else self.machines_off.discard)(machine_id)
        self.dirty_flags = True
        out = []
        for key, track in sorted(self.tracks.items()):
            if key[0] == machine_id and track.episode is not None:
                out += self._reconsider(key, track.episode, ts, now, quiet=not off)
        return out

    def _reconsider(
        self, key: tuple[str, str], ep: Episode, at: datetime, now: float, *, quiet: bool = False
    ) -> list[Transition]:
        """Suppression may have started or ended: record it, and tell planners once it ended.

        ``quiet`` (the machine runs again): planners already told about the episode are not told again unless it got
        more severe; a pump that stops and starts with its duty cycle is not news."""
        suppression = self._suppression(ep.machine_id, at)
        if suppression is not None:
            state, why = suppression
            if ep.state != state:
                return [self._suppress(key, ep, state, at, why)]
            return []
        if not ep.suppressed:
            return []
        ep.state = AlertState.OPEN if not ep.notified else AlertState.UPDATED
        if quiet and ep.notified and not self._more_severe(ep):
            self.dirty.add(key)
            return [Transition(self._alert(ep, ep.state, at, note="machine running again"))]
        return [self._notify(key, ep, ep.state, at, "no longer silenced or inhibited", now)]

    @staticmethod
    def _more_severe(ep: Episode) -> bool:
        """More severe than what planners were last told (never told: yes)."""
        return ep.notified_severity is None or SEVERITY_RANK[ep.severity] > SEVERITY_RANK[ep.notified_severity]

    def _suppress(self, key: tuple[str, str], ep: Episode, state: AlertState, at: datetime, why: str) -> Transition:
        ep.state = state
        self.dirty.add(key)
        return Transition(self._alert(ep, state, at, note=why))

    def _notify(
        self, key: tuple[str, str], ep: Episode, state: AlertState, at: datetime, note: str | None, now: float
    ) -> Transition:
        alert = self._alert(ep, state, at, note=note)
        receivers = tuple(dict.fromkeys((*ep.notified, *self.router.receivers(alert))))
        ep.notified = receivers
        ep.notified_severity = ep.severity
        ep.last_notified_wall = now
        self.dirty.add(key)
        return Transition(alert, receivers)

    def _step(self, s: _Signal, now: float) -> list[Transition]:
        key = (s.machine_id, s.kind)
        track = self.tracks.get(key)
        if track is None:
            if not s.opening:
                return []  # nothing to remember about a machine that never alerted
            track = self.tracks[key] = Track()
        previous = track.last_ts
        if previous is not None and s.ts <= previous:
            return []  # already seen: a replay after a restart must not repeat transitions
        track.last_ts = s.ts
        self.dirty.add(key)
        ep = track.episode
        if ep is None:
            track.above = track.above + 1 if s.opening else 0
            if track.above < s.open_after:
                return []
            return [self._open(key, track, s, now)]
        if not s.holding:
            return self._recover(track, key, s, previous)
        track.clear_s, track.clear_since = 0.0, None
        return self._update(key, ep, s, now)

    def _recover(self, track: Track, key: tuple[str, str], s: _Signal, previous: datetime | None) -> list[Transition]:
        """The open episode's condition did not hold: it resolves after ``resolve_after_s`` of *operation* without
        it. Time while the machine is off (or its line down) is not counted, so stops and duty cycles never end an
        episode; a return of the condition before then resets the count (the same episode goes on)."""
        after = self.config.resolve_after_s if s.sustained else 0.0
        if track.clear_since is None:
            track.clear_since = s.ts
        if self._inhibition_for(s.machine_id) is None:
            track.clear_s += _operating_s(s, previous)
        if track.clear_s < after:
            return []
        note = None
        if after > 0:
            note = f"condition clear for {track.clear_s / 3600:.1f} h of operation since {_hhmm(track.clear_since)}"
        return self._resolve(track, key, s.ts, note)

    def _open(self, key: tuple[str, str], track: Track, s: _Signal, now: float) -> Transition:
        previous = track.resolved
        cooldown = timedelta(seconds=self.config.cooldown_s)
        reopened = previous is not None and s.ts - previous.last_ts < cooldown
        if reopened and previous is not None:
            ep = previous
            ep.acknowledged_by = None
            ep.escalated = False
            note: str | None = "reopened within cooldown"
        else:
            ep = Episode(
                alert_id=alert_id_for(s.machine_id, s.kind, s.ts),
                machine_id=s.machine_id,
                kind=s.kind,
                opened_at=s.ts,
                opened_wall=now,
                last_ts=s.ts,
                severity=s.severity,
                state=AlertState.OPEN,
                summary=s.summary,
            )
            note = None
        self._absorb(ep, s)
        ep.reported_p = ep.p_failure
        track.episode, track.resolved, track.above = ep, None, 0
        track.clear_s, track.clear_since = 0.0, None
        suppression = self._suppression(s.machine_id, s.ts)
        if suppression is not None:
            return self._suppress(key, ep, suppression[0], s.ts, suppression[1])
        ep.state = AlertState.OPEN
        if (
            reopened
            and ep.notified_severity is not None
            and SEVERITY_RANK[ep.severity] <= SEVERITY_RANK[ep.notified_severity]
        ):
            self.dirty.add(key)
            return Transition(self._alert(ep, AlertState.OPEN, s.ts, note=note))
        return self._notify(key, ep, AlertState.OPEN, s.ts, note, now)

    def _update(self, key: tuple[str, str], ep: Episode, s: _Signal, now: float) -> list[Transition]:
        old_p, old_severity = ep.reported_p, ep.severity
        self._absorb(ep, s)
        suppression = self._suppression(s.machine_id, s.ts)
        if ep.suppressed or suppression is not None:
            return self._reconsider(key, ep, s.ts, now)
        moved = (
            old_p is not None and s.p_failure is not None and abs(s.p_failure - old_p) >= self.config.update_min_delta
        )
        worse = SEVERITY_RANK[s.severity] > SEVERITY_RANK[ep.notified_severity or old_severity]
        if worse:
            if ep.state != AlertState.ACKNOWLEDGED:
                ep.state = AlertState.UPDATED
            ep.reported_p = ep.p_failure
            return [self._notify(key, ep, AlertState.UPDATED, s.ts, f"severity now {s.severity.value}", now)]
        if moved or s.severity != old_severity:
            ep.reported_p = ep.p_failure
            return [Transition(self._alert(ep, AlertState.UPDATED, s.ts))]
        return []

    def _absorb(self, ep: Episode, s: _Signal) -> None:
        ep.last_ts = s.ts
        ep.severity = s.severity
        ep.summary = s.summary
        ep.p_failure = s.p_failure
        ep.horizon_s = s.horizon_s
        if s.contributions:
            ep.contributions = s.contributions[:5]
        checks = self.plant.what_to_check.get(s.tags.type or "", {})
        ep.what_to_check = checks_for(ep.contributions, s.rule_violations, checks) or ep.what_to_check

    def _resolve(
        self, track: Track, key: tuple[str, str], ts: datetime, note: str | None, *, reopenable: bool = True
    ) -> list[Transition]:
        """``reopenable``: the cooldown may reopen it; not after a repair (a problem after it is a new one)."""
        ep = track.episode
        assert ep is not None
        receivers = () if ep.suppressed else ep.notified
        ep.state = AlertState.RESOLVED
        ep.last_ts = max(ep.last_ts, ts)
        track.episode, track.resolved, track.above = None, ep if reopenable else None, 0
        track.clear_s, track.clear_since = 0.0, None
        self.dirty.add(key)
        return [Transition(self._alert(ep, AlertState.RESOLVED, ts, note=note), receivers)]

    def _alert(
        self,
        ep: Episode,
        state: AlertState,
        ts: datetime,
        *,
        actor: str = ACTOR,
        note: str | None = None,
        record: bool = True,
    ) -> Alert:
        """The Alert message for a transition (``record``: a new one, numbered) or for a look at the episode."""
        if record:
            ep.seq += 1
        tags = self._machine_tags(ep.machine_id, None, None, None)
        return Alert(
            alert_id=ep.alert_id,
            machine_id=ep.machine_id,
            machine_type=tags.type,
            site=tags.site,
            line=tags.line,
            alert_kind=ep.kind,
            state=state,
            severity=ep.severity,
            ts=ts,
            opened_at=ep.opened_at,
            p_failure=ep.p_failure,
            horizon_s=ep.horizon_s,
            summary=ep.summary,
            contributions=ep.contributions,
            what_to_check=ep.what_to_check,
            actor=actor,
            assignee=ep.assignee,
            note=note,
            seq=ep.seq,
        )


def _wall(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


_MAX_STEP_S = 3600.0
"""A prediction without its window counts the time since the condition's previous observation, at most this (a
longer gap is a stop or an outage, not operation)."""


def _operating_s(s: _Signal, previous: datetime | None) -> float:
    if s.operating_s is not None:
        return max(0.0, s.operating_s)
    if previous is None:
        return 0.0
    return min(max(0.0, (s.ts - previous).total_seconds()), _MAX_STEP_S)


def _hhmm(ts: datetime) -> str:
    return f"{ts.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def transitions_alerts(transitions: Iterable[Transition]) -> list[Alert]:
    return [t.alert for t in transitions]
