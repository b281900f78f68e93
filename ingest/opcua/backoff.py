"""Reconnect delays: exponential backoff with full jitter, capped, reset after a healthy connection."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``initial * 2**n`` capped at ``maximum``, each scaled by a random factor in ``[1 - jitter, 1]``.

    Jitter spreads the reconnects of many collectors after a server restart, so they do not arrive together.

    >>> b = Backoff(1.0, 8.0, jitter=0.0)
    >>> [b.next() for _ in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    >>> b.reset(); b.next()
    1.0
    """

    def __init__(self, initial: float, maximum: float, jitter: float = 0.5, seed: int | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.seed = seed
        self._attempt = 0
        self._rng = random.Random(seed)

    @property
    def attempt(self) -> int:
        return self._attempt

    def next(self) -> float:
        base = min(self.initial * 2.0**self._attempt, self.maximum)
        self._attempt += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self._attempt = 0
