"""Reconnect delays that grow with the length of the outage, not with the number of failed attempts.

A server that is down refuses a connection in milliseconds, so an attempt-count backoff (1, 2, 4, 8, 16, 32 s)
reaches its cap within a minute and a server back after 20 s waited up to half a minute more for the client
(measured: data again 48-50 s after a kill with ``reconnect_max_s = 60``). Here each wait is a fraction
(``ratio``, default 10 %) of the time since the connection was lost, at least ``initial`` and at most
``maximum``: the first attempts come within a second, a server back after 20 s is found within ~2 s of
returning, and a server down for an hour is tried once a minute.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """``max(initial, min(maximum, ratio * outage))``, each scaled by a random factor in ``[1 - jitter, 1]``.

    Jitter spreads the reconnects of many collectors after a server restart, so they do not arrive together.
    The outage starts at the first :meth:`next` after a :meth:`reset` (a connection that worked).

    >>> now = [0.0]
    >>> b = Backoff(0.5, 60.0, jitter=0.0, clock=lambda: now[0])
    >>> waits = []
    >>> for _ in range(6):
    ...     waits.append(b.next()); now[0] += waits[-1] + 5.0   # each failed attempt takes 5 s
    >>> waits
    [0.5, 0.55, 1.105, 1.7155, 2.38705, 3.125755]
    >>> now[0] = 1800.0; b.next()
    60.0
    >>> b.reset(); b.next()
    0.5
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        jitter: float = 0.25,
        ratio: float = 0.1,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.ratio = ratio
        self.seed = seed
        self.clock = clock
        self._attempt = 0
        self._since: float | None = None
        self._rng = random.Random(seed)

    @property
    def attempt(self) -> int:
        return self._attempt

    def next(self) -> float:
        now = self.clock()
        if self._since is None:
            self._since = now
        self._attempt += 1
        base = max(self.initial, min(self.maximum, self.ratio * (now - self._since)))
        return round(base * (1.0 - self.jitter * self._rng.random()), 6)

    def reset(self) -> None:
        self._attempt = 0
        self._since = None
