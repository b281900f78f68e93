"""Delivery from the durable outbox: in order per receiver, retried with backoff until the receiver takes it.

A receiver that is down keeps its notifications queued (sqlite, so a restart keeps them too) and gets all of
them, in order, when it returns. An entry is marked delivered right after the receiver acknowledged it; the only
window for a duplicate is a crash between the two, and then the receiver sees the same idempotency id
(``webhook-id``, e-mail ``Message-ID``) again and can drop it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from alerts.exceptions import DeliveryError
from alerts.receivers import Sender
from alerts.store import AlertStore

log = logging.getLogger(__name__)


@dataclass
class _Backoff:
    delay: float = 0.0
    next_try: float = 0.0


@dataclass
class OutboxStats:
    delivered: int = 0
    failures: int = 0
    dead: int = 0
    by_receiver: dict[str, int] = field(default_factory=dict)


class Outbox:
    def __init__(
        self,
        store: AlertStore,
        senders: Mapping[str, Sender],
        *,
        retry_initial_s: float = 5.0,
        retry_max_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        observe: Callable[[str, str], None] | None = None,
    ) -> None:
        """``observe(receiver, outcome)`` is told every attempt's outcome (``delivered``, ``retry``, ``dead``)."""
        self.store = store
        self.senders = senders
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.observe = observe or (lambda receiver, outcome: None)
        self.stats = OutboxStats()
        self._backoff: dict[str, _Backoff] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    def drain_once(self) -> int:
        """Try every receiver whose backoff has expired; returns how many notifications were delivered."""
        delivered = 0
        for receiver in self.store.receivers_pending():
            backoff = self._backoff.setdefault(receiver, _Backoff())
            if self.clock() < backoff.next_try:
                continue
            sender = self.senders.get(receiver)
            if sender is None:
                log.error("outbox has notifications for unknown receiver %r; they wait for its configuration", receiver)
                continue
            delivered += self._drain_receiver(sender, backoff)
        return delivered

    def _drain_receiver(self, sender: Sender, backoff: _Backoff) -> int:
        delivered = 0
        for entry in self.store.pending(sender.name):
            try:
                sender.send(entry.notification)
            except DeliveryError as exc:
                self.stats.failures += 1
                self.observe(sender.name, "dead" if exc.permanent else "retry")
                if exc.permanent:
                    self.stats.dead += 1
                    log.error("receiver %s refused %s for good: %s", sender.name, entry.notification.id, exc)
                    self.store.mark_failed(entry.seq, str(exc), dead=True)
                    continue
                backoff.delay = min(max(backoff.delay * 2, self.retry_initial_s), self.retry_max_s)
                backoff.next_try = self.clock() + backoff.delay
                self.store.mark_failed(entry.seq, str(exc), dead=False)
                log.warning(
                    "receiver %s failed (%s); %s kept, retry in %.0fs",
                    sender.name,
                    exc,
                    entry.notification.id,
                    backoff.delay,
                )
                return delivered
            self.store.mark_delivered(entry.seq, self.clock())
            self.observe(sender.name, "delivered")
            backoff.delay = 0.0
            delivered += 1
            self.stats.delivered += 1
            self.stats.by_receiver[sender.name] = self.stats.by_receiver.get(sender.name, 0) + 1
        return delivered

    def wake(self) -> None:
        """New notifications were committed: deliver now instead of at the next poll."""
        self._wake.set()

    def start(self, interval_s: float = 1.0) -> None:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.drain_once()
                except Exception:
                    log.exception("outbox delivery loop failed; retrying")
                self._wake.wait(interval_s)
                self._wake.clear()

        self._stop.clear()
        self._thread = threading.Thread(target=run, name="vigil-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
