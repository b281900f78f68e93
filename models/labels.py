"""Delayed labels: a feature vector's label is known only when a failure follows within the horizon, or the
horizon passes without one.

Every usable vector waits here until its label resolves. A failure of the machine at ``tf`` makes every pending
vector in ``[tf - H, tf]`` positive; a vector older than ``H`` behind the machine's newest event time resolves
negative; a repair drops what is still pending (those windows describe a broken machine, not a healthy one).
Memory is bounded twice: an unremarkable vector is kept with probability ``sample_rate`` (a deterministic
hash, so a replay keeps the same ones) and learns with weight ``1 / sample_rate``, while a vector whose live
score is at least ``keep_above`` (likely degradation, so likely a future positive) is always kept with weight
1 -- importance sampling that keeps the estimate unbiased and the rare positives intact; and each machine
holds at most ``max_per_machine`` (the oldest resolve early as negatives when the cap is hit).

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> pending = PendingLabels(horizon_s=3600, sample_rate=1.0, max_per_machine=100)
>>> for i in range(6):
...     _ = pending.add("m1", t0 + timedelta(minutes=20 * i), {"a": float(i)}, score=0.1)
>>> [(round(r.x["a"]), r.positive) for r in pending.advance("m1", t0 + timedelta(minutes=100))]
[(0, False), (1, False)]
>>> [(round(r.x["a"]), r.positive) for r in pending.failure("m1", t0 + timedelta(minutes=110))]
[(2, False), (3, True), (4, True), (5, True)]
"""

from __future__ import annotations

import hashlib
from array import array
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(slots=True)
class Pending:
    """One vector waiting for its label: the model inputs used at prediction time and what was predicted.

    The inputs are stored compactly (a shared key tuple and an array of doubles): this is most of the stage's
    memory, one per kept window per machine for a whole horizon."""

    ts: datetime
    keys: tuple[str, ...]
    values: array[float]
    score: float
    """What the live model said (probability or normalised anomaly score), for prequential evaluation."""
    weight: float
    anomaly: float = 0.0
    """The raw anomaly score, so the threshold can learn from windows known to be healthy."""


@dataclass(slots=True, frozen=True)
class Resolved:
    machine_id: str
    ts: datetime
    x: dict[str, float]
    score: float
    weight: float
    positive: bool
    lead_s: float | None
    """For positives: how long before the failure the vector was."""
    anomaly: float = 0.0


class PendingLabels:
    """Vectors waiting for their delayed label, per machine, bounded."""

    def __init__(
        self, horizon_s: float, sample_rate: float = 0.25, max_per_machine: int = 5000, keep_above: float = 0.5
    ) -> None:
        self.horizon_s = horizon_s
        self.sample_rate = sample_rate
        self.max_per_machine = max_per_machine
        self.keep_above = keep_above
        self._pending: dict[str, deque[Pending]] = {}
        self._failures: dict[str, list[datetime]] = {}
        self.dropped_by_cap = 0
        self._keys: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.skipped_by_sampling = 0

    def _keep(self, machine_id: str, ts: datetime) -> bool:
        if self.sample_rate >= 1.0:
            return True
        # A hash, not a random draw, so a replay after a restart keeps exactly the same vectors.
        digest = hashlib.blake2b(f"{machine_id}|{ts.isoformat()}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.sample_rate

    def add(
        self, machine_id: str, ts: datetime, x: dict[str, float], score: float, anomaly: float = 0.0
    ) -> list[Resolved]:
        """Queue one vector; returns what resolved because of it (a known later failure, the per-machine cap)."""
        horizon = timedelta(seconds=self.horizon_s)
        # The failure may have been read before this vector (two topics, two lags): label it right away.
        for tf in self._failures.get(machine_id, ()):
            if tf - horizon <= ts <= tf:
                return [Resolved(machine_id, ts, x, score, 1.0, True, (tf - ts).total_seconds(), anomaly)]
        weight = 1.0
        if score < self.keep_above:
            if not self._keep(machine_id, ts):
                self.skipped_by_sampling += 1
                return []
            weight = 1.0 / self.sample_rate
        queue = self._pending.setdefault(machine_id, deque())
        keys = tuple(x)
        keys = self._keys.setdefault(keys, keys)  # one tuple per distinct feature set, shared
        queue.append(Pending(ts, keys, array("d", x.values()), score, weight, anomaly))
        out: list[Resolved] = []
        while len(queue) > self.max_per_machine:
            self.dropped_by_cap += 1
            old = queue.popleft()
            out.append(Resolved(machine_id, old.ts, _x(old), old.score, old.weight, False, None, old.anomaly))
        return out

    def advance(self, machine_id: str, now: datetime) -> list[Resolved]:
        """Resolve as negative every vector of the machine whose horizon has passed by event time ``now``."""
        queue = self._pending.get(machine_id)
        out: list[Resolved] = []
        if not queue:
            return out
        cutoff = now - timedelta(seconds=self.horizon_s)
        while queue and queue[0].ts < cutoff:
            p = queue.popleft()
            out.append(Resolved(machine_id, p.ts, _x(p), p.score, p.weight, False, None, p.anomaly))
        return out

    def failure(self, machine_id: str, ts: datetime) -> list[Resolved]:
        """A failure at ``ts``: pending vectors within the horizon before it are positive, older ones negative."""
        failures = self._failures.setdefault(machine_id, [])
        failures.append(ts)
        # Only the latest few failures matter for vectors that arrive late; keep the list bounded.
        del failures[:-4]
        out = self.advance(machine_id, ts)
        queue = self._pending.get(machine_id)
        keep: deque[Pending] = deque()
        while queue:
            p = queue.popleft()
            if p.ts <= ts:
                lead = (ts - p.ts).total_seconds()
                out.append(Resolved(machine_id, p.ts, _x(p), p.score, p.weight, True, lead, p.anomaly))
            else:
                keep.append(p)
        if queue is not None:
            self._pending[machine_id] = keep
        return out

    def repair(self, machine_id: str) -> int:
        """A repair resets the machine: what is still pending is dropped; returns how many."""
        queue = self._pending.pop(machine_id, None)
        return len(queue) if queue else 0

    # ------------------------------------------------------------------ one machine's share (follows its partition)
    def export_machine(self, machine_id: str) -> tuple[list[Pending], list[datetime]]:
        """What waits for one machine's labels, and its recent failures (for a per-machine checkpoint)."""
        return list(self._pending.get(machine_id, ())), list(self._failures.get(machine_id, ()))

    def import_machine(self, machine_id: str, pending: list[Pending], failures: list[datetime]) -> None:
        """Take over one machine's share exported by :meth:`export_machine` (replaces what was held)."""
        for p in pending:
            p.keys = self._keys.setdefault(p.keys, p.keys)
        self._pending[machine_id] = deque(pending)
        self._failures[machine_id] = list(failures)

    def drop_machine(self, machine_id: str) -> None:
        self._pending.pop(machine_id, None)
        self._failures.pop(machine_id, None)

    def count(self, machine_id: str | None = None) -> int:
        if machine_id is not None:
            return len(self._pending.get(machine_id, ()))
        return sum(len(q) for q in self._pending.values())

    def machines(self) -> list[str]:
        return list(self._pending)


def _x(pending: Pending) -> dict[str, float]:
    return dict(zip(pending.keys, pending.values, strict=True))
