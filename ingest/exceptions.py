"""Errors the ingest stage raises on purpose; callers catch these types, not strings."""

from __future__ import annotations

from vigil.exceptions import VigilError


class IngestError(VigilError):
    """Root of every error raised by ``ingest``."""


class SourceError(IngestError):
    """A source (OPC UA server, broker, file) could not be used; the message says which and why."""


class OpcUaError(SourceError):
    """An OPC UA server could not be reached or used."""


class OpcUaSecurityError(OpcUaError):
    """A secure connection was refused: untrusted, pinned-mismatch or expired certificate, bad policy or login.

    Never retried silently and never downgraded to security mode None.
    """


class MappingError(IngestError):
    """Configured nodes, browse paths or patterns do not resolve on the server."""


class SimulatorError(IngestError):
    """The fleet simulator was configured with something it cannot simulate."""


class PublishError(IngestError):
    """Readings could not be handed to Kafka or to the spool (the publisher is not started or is closed)."""


class SpoolError(PublishError):
    """The on-disk spool could not be opened, written or read."""


class PayloadError(IngestError):
    """A pushed or replayed record cannot become a Reading; ``reason`` is the counter/dead-letter category."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
