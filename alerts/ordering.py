"""The alert service's input order: its four topics merged by event time, per machine, the same in every run.

The lifecycle's decisions depend on the order in which it sees a machine's feature vectors (running or off),
predictions, drift events and maintenance. The four topics arrive in whatever order their upstream commits
(features every ``windows.checkpoint_interval_s``, predictions and drift every ``models.checkpoint_interval_s``)
and the consumer's fetches interleave them, so without an order of its own two runs over the same input, or a run
and its restart after ``kill -9``, decide differently.

:class:`InputOrder` holds each decoded record and releases a machine's records in event-time order up to its
*horizon*: the older of the newest prediction and the newest feature vector seen for the machine. The model
service writes a machine's prediction for a window after the feature worker committed that window's vector, and
its drift events for the window in the same transaction as the prediction; each topic carries a machine's records
in event-time order. So once both the prediction and the vector for ``T`` arrived, the machine's inputs up to
``T`` are complete, and their order is a function of the data: ``(event time, topic rank, topic, partition,
offset)``, features before predictions before drift at equal times (the vector is what the prediction was made
from). Maintenance records are released at once (they come from people, not from the chain).

The bounded wait: a record held longer than ``wait_s`` (``alerts.input_wait_s``) of wall time (a window the
models made no prediction for, or the model service down) moves its machine's horizon up to the record's event
time, releasing it and every older record of the machine in order. Within that wait the order does not depend on
timing; a model service down for longer makes it depend on when it comes back, as before. What is left to
timing: a drift event fetched after a later prediction of its machine (the drift topic lagging the predictions
topic by a whole checkpoint of the model service), and the records of a machine before its first vector ever (a
plant that sends no vectors to the alert service is decided in arrival order; the horizons are stored, so this is
only the start of a new deployment, not a restart).

Held records are part of the alert service's decided state: :meth:`take_changes` hands the records added and
released since the last call to the sqlite transaction that decides a batch, with the horizons, so the consumer
offsets commit past held records and a restart holds exactly what the crashed instance held
(:meth:`load`).

>>> from datetime import datetime, timedelta, timezone
>>> from vigil.contracts import FeatureVector, Prediction
>>> t = datetime(2026, 1, 5, tzinfo=timezone.utc)
>>> def fv(i):
...     return FeatureVector(machine_id="PMP-001", machine_type="pump", window_start=t + timedelta(minutes=10 * i),
...                          window_end=t + timedelta(minutes=10 * (i + 1)), features={})
>>> def p(i):
...     return Prediction(machine_id="PMP-001", machine_type="pump", ts=t + timedelta(minutes=10 * (i + 1)),
...                       model="m", p_failure=0.1, horizon_s=3600, decision="ok")
>>> order = InputOrder(wait_s=60.0)
>>> for i, m in enumerate([fv(0), fv(1), fv(2)]):
...     order.add(Held("features", 0, i, b"", m), now=0.0)
>>> order.release(now=1.0)
[]
>>> order.add(Held("predictions", 0, 0, b"", p(1)), now=2.0)
>>> [(h.topic, h.offset) for h in order.release(now=2.0)]
[('features', 0), ('features', 1), ('predictions', 0)]
>>> [(h.topic, h.offset) for h in order.release(now=100.0)]
[('features', 2)]
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vigil.contracts import DriftEvent, FeatureVector, Prediction, decode

RANK = {"features": 0, "predictions": 1, "drift": 2}
"""At equal event times: the vector, then the prediction made from it, then the drift found with it."""
_AT_ONCE = datetime.min.replace(tzinfo=UTC)
_FOREVER = datetime.max.replace(tzinfo=UTC)


def event_time(message: Any) -> datetime | None:
    """The event time a message is ordered by; None for what is released at once (maintenance, unknown)."""
    if isinstance(message, FeatureVector):
        return message.window_end
    if isinstance(message, Prediction | DriftEvent):
        return message.ts
    return None  # maintenance: from people, not from the chain; released at once


def kind_of(message: Any) -> str | None:
    if isinstance(message, FeatureVector):
        return "features"
    if isinstance(message, Prediction):
        return "predictions"
    if isinstance(message, DriftEvent):
        return "drift"
    return None


@dataclass
class Held:
    """One decoded input record and where it came from."""

    topic: str
    partition: int
    offset: int
    raw: bytes
    message: Any
    since: float = 0.0
    """Wall-clock time it was first held (the bounded wait counts from here, also across restarts)."""

    @property
    def key(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def sort_key(self, at: datetime) -> tuple[datetime, int, str, int, int]:
        return (at, RANK.get(kind_of(self.message) or "", 3), self.topic, self.partition, self.offset)

    def dump(self) -> str:
        return f"{self.topic}\t{self.partition}\t{self.offset}\t{self.since!r}\t{base64.b64encode(self.raw).decode()}"

    @classmethod
    def load(cls, data: str) -> Held:
        topic, partition, offset, since, raw = data.split("\t")
        body = base64.b64decode(raw)
        return cls(topic, int(partition), int(offset), body, decode(body), float(since))


@dataclass
class Changes:
    """What changed since the last :meth:`InputOrder.take_changes`: for the batch's sqlite transaction."""

    added: dict[str, str] = field(default_factory=dict)
    """``{key: dumped record}`` held now."""
    removed: set[str] = field(default_factory=set)
    """Keys released (of records held before the last call)."""
    horizons: dict[str, list[str | None]] = field(default_factory=dict)
    """``{machine: [ISO time or None] * 3}`` of the horizons that moved."""

    def empty(self) -> bool:
        return not (self.added or self.removed or self.horizons)


class InputOrder:
    """A per-machine event-time reorder buffer with a bounded wait (see the module docstring).

    A vector is released once the machine's prediction for its window arrived; a prediction once its vector did
    (the vector precedes it upstream, but a consumer with a backlog can fetch the predictions topic ahead of the
    features topic); a drift event once both did. Each topic carries a machine's records in event-time order, so
    nothing arrives below what was released, and the released sequence is one sort of the input.
    """

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._held: dict[str, list[Held]] = {}
        self._horizon: dict[str, list[datetime | None]] = {}
        """``{machine: [newest prediction, newest vector, forced by the wait]}``."""
        self._changes = Changes()
        self.timed_out = 0
        """Times the bounded wait moved a machine's horizon (a record waited ``wait_s`` for its counterpart)."""

    def __len__(self) -> int:
        return sum(len(v) for v in self._held.values())

    def load(self, held: list[str], horizons: dict[str, list[str | None]]) -> None:
        """What the store holds (after a restart)."""
        for data in held:
            h = Held.load(data)
            self._held.setdefault(_machine(h.message), []).append(h)
        self._horizon = {
            m: [None if t is None else datetime.fromisoformat(t) for t in times] for m, times in horizons.items()
        }

    def add(self, held: Held, now: float) -> None:
        """Hold a decoded record until its turn (see :meth:`release`)."""
        message = held.message
        held.since = now
        machine = _machine(message)
        if isinstance(message, Prediction):
            self._advance(machine, 0, message.ts)
        elif isinstance(message, FeatureVector):
            self._advance(machine, 1, message.window_end)
        self._held.setdefault(machine, []).append(held)
        self._changes.added[held.key] = held.dump()

    def release(self, now: float) -> list[Held]:
        """Every record whose turn came, in order: per machine (sorted by id) by event time, topic rank, topic,
        partition, offset. Maintenance and records of no machine go at once."""
        out: list[Held] = []
        for machine in sorted(self._held):
            held = self._held[machine]
            waited = [at for h in held if now - h.since >= self.wait_s and (at := event_time(h.message)) is not None]
            if waited:
                self.timed_out += 1
                self._advance(machine, 2, max(waited))
            ready: list[tuple[tuple[datetime, int, str, int, int], Held]] = []
            keep: list[Held] = []
            for h in held:
                at = event_time(h.message)
                if at is None or not machine:
                    ready.append((h.sort_key(_AT_ONCE), h))
                elif (limit := self._limit(machine, h.message)) is not None and at <= limit:
                    ready.append((h.sort_key(at), h))
                else:
                    keep.append(h)
            if not ready:
                continue
            ready.sort(key=lambda pair: pair[0])
            for _, h in ready:
                out.append(h)
                if self._changes.added.pop(h.key, None) is None:
                    self._changes.removed.add(h.key)
            if keep:
                self._held[machine] = keep
            else:
                del self._held[machine]
        return out

    def take_changes(self) -> Changes:
        """The records held and released and the horizons moved since the last call (for the batch's sqlite
        transaction)."""
        changes, self._changes = self._changes, Changes()
        return changes

    def _limit(self, machine: str, message: Any) -> datetime | None:
        """Up to which event time a record of ``machine`` like ``message`` may go (None: not yet).

        A vector waits for the prediction of its window; a prediction or drift event waits for the vector of its
        window and a drift event for its prediction, but only once the machine has had vectors (predictions):
        a plant that sends the alert service only predictions, or only drift, is decided as it arrives."""
        prediction, vector, forced = self._horizon.get(machine, (None, None, None))
        if isinstance(message, FeatureVector):
            limit = prediction
        else:
            limit = _min(vector, prediction if isinstance(message, DriftEvent) else None) or _FOREVER
        if forced is not None and (limit is None or forced > limit):
            return forced
        return limit

    def _advance(self, machine: str, which: int, at: datetime) -> None:
        times = self._horizon.setdefault(machine, [None, None, None])
        current = times[which]
        if current is None or at > current:
            times[which] = at
            self._changes.horizons[machine] = [None if t is None else t.isoformat() for t in times]


def _machine(message: Any) -> str:
    machine = getattr(message, "machine_id", None)
    return machine if isinstance(machine, str) else ""


def _min(*times: datetime | None) -> datetime | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None
