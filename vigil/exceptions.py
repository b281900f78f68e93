"""One root exception for everything Vigil raises on purpose; callers catch types, not strings."""

from __future__ import annotations


class VigilError(Exception):
    """Root of every error Vigil raises deliberately."""


class ContractError(VigilError):
    """A payload does not satisfy its message contract.

    ``reason`` is a short machine-readable category (``json``, ``schema``, ``version``, ``kind``), and the
    message says what exactly is wrong, so a dead letter can carry both.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ConfigError(VigilError):
    """The plant configuration or the settings are invalid.

    ``problems`` lists ``(key path, reason)`` pairs, for example
    ``("machines[3].sensors.bearing_temp.range", "min 90 > max 80")``.
    """

    def __init__(self, problems: list[tuple[str, str]], source: str = "configuration") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {path}: {reason}" for path, reason in problems)
        super().__init__(f"invalid {source} ({len(problems)} problem(s)):\n{lines}")


class BusError(VigilError):
    """Kafka did not answer what a stage needs to start (a topic's metadata)."""


class KafkaRefused(BusError):
    """A secured Kafka refused this service: its credentials, the broker's certificate, or the ACLs. Retrying with
    the same settings cannot help; the message names the setting."""


class ServiceError(VigilError):
    """A managed service (Kafka, InfluxDB, Mosquitto) could not be installed, started or stopped."""


class TransactionAborted(BusError):
    """A Kafka transaction did not commit and was aborted: nothing of it is visible to read_committed readers.

    The caller throws away what it did since its last commit (restore state, seek back) and goes on.
    """


class ProducerFenced(BusError):
    """Another producer with the same transactional id (a newer owner of the partitions) took over: this worker
    is a zombie and must stop writing (exit; a supervisor restarts it and it rejoins the group)."""
