"""Errors raised by the streaming stage; callers catch these types, never strings."""

from __future__ import annotations

from vigil.exceptions import VigilError


class StreamingError(VigilError):
    """Root of every error the streaming stage raises on purpose."""


class StateError(StreamingError):
    """Window state could not be snapshotted or restored (corrupt or from an incompatible version)."""


class DeliveryError(StreamingError):
    """Kafka did not acknowledge feature vectors, dead letters or state; offsets are not committed."""
