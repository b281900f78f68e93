"""Errors of the alerts stage; all derive from :class:`AlertsError` (itself a :class:`vigil.exceptions.VigilError`)."""

from __future__ import annotations

from vigil.exceptions import VigilError


class AlertsError(VigilError):
    """Root of the alerts stage's errors."""


class UnknownAlertError(AlertsError):
    """No open alert episode has this id (it never existed or is already resolved)."""


class DeliveryError(AlertsError):
    """A receiver did not accept a notification; the outbox keeps it and retries with backoff.

    ``permanent`` marks answers that retrying cannot fix (HTTP 4xx other than 408/429, a refused recipient).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class SignatureError(AlertsError):
    """A webhook signature is missing, malformed, stale or does not match."""


class StoreError(AlertsError):
    """The durable state/outbox database cannot be opened or written."""
