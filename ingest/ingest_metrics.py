"""Prometheus mirror of a collector's publisher, validation and source counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.publisher import KafkaPublisher
    from vigil.metrics import ServiceMetrics


class IngestMetrics:
    """Mirrors a collector's counters into the standard Prometheus families of :mod:`vigil.metrics`.

    The ingest counters stay plain integers on the hot path; ``update()`` (called every few seconds by a
    collector's ``main``) adds what changed since the last call. Families: ``vigil_readings_total`` (readings
    acknowledged by Kafka), ``vigil_messages_out_total{topic}``, ``vigil_dropped_total{reason}``,
    ``vigil_dead_letters_total{reason}`` (bad payloads/rows), plus ``vigil_ingest_input_total{reason}``
    (validation: flags and rejections), ``vigil_ingest_spooled_readings_total{reason}``,
    ``vigil_ingest_spool_backlog_readings`` and ``vigil_ingest_spooling`` (1 while Kafka is away).
    """

    _NOT_REASONS = frozenset({"received", "accepted", "rows", "rejected", "connects"})

    def __init__(self, metrics: ServiceMetrics) -> None:
        from prometheus_client import Counter as PromCounter
        from prometheus_client import Gauge

        self.metrics = metrics
        r = metrics.registry
        self.input = PromCounter(
            "vigil_ingest_input", "Readings flagged or rejected by validation", ["reason"], registry=r
        )
        self.spooled = PromCounter(
            "vigil_ingest_spooled_readings", "Readings written to the spool", ["reason"], registry=r
        )
        self.backlog = Gauge("vigil_ingest_spool_backlog_readings", "Readings waiting in the spool", registry=r)
        self.spooling = Gauge("vigil_ingest_spooling", "1 while Kafka is unavailable and readings spool", registry=r)
        self._seen: dict[tuple[str, str], int] = {}

    def update(
        self,
        publisher: KafkaPublisher,
        validator_counters: Mapping[str, int] | None = None,
        collector_counters: Mapping[str, int] | None = None,
    ) -> None:
        c = publisher.counters
        self._inc(("sent", ""), c.sent, self.metrics.readings.inc)
        for topic, n in list(c.messages_by_topic.items()):
            self._inc(("topic", topic), n, self.metrics.messages_out.labels(topic).inc)
        for reason, n in list(c.by_reason.items()):
            kind, _, detail = reason.partition(":")
            family = self.metrics.dropped if kind == "drop" else self.spooled
            self._inc(("reason", reason), n, family.labels(detail).inc)
        for reason, n in list((validator_counters or {}).items()):
            self._inc(("input", reason), n, self.input.labels(reason).inc)
        for reason, n in list((collector_counters or {}).items()):
            if reason == "internal_error":
                self._inc(("error", reason), n, self.metrics.errors.labels(reason).inc)
            elif reason not in self._NOT_REASONS:
                self._inc(("dead", reason), n, self.metrics.dead_letters.labels(reason).inc)
        self.backlog.set(publisher.backlog)
        self.spooling.set(1 if publisher.spooling else 0)

    def _inc(self, key: tuple[str, str], total: int, inc: Callable[[float], None]) -> None:
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            inc(delta)
            self._seen[key] = total


class SourceMetrics:
    """The standard ingest metrics plus ``vigil_ingest_<kind>_total{source, counter}``: every collector's own
    counters (readings, gaps, connects, lost:<reason>, ...), mirrored by deltas. ``connect_failed`` also counts
    as ``vigil_errors_total{kind="<kind>_connect_failed"}``, ``dropped_overflow`` as
    ``vigil_dropped_total{reason="<kind>_queue_overflow"}``; for a push protocol whose counters are payload
    refusals (``dead_letters``), those are ``vigil_dead_letters_total{reason}`` as well."""

    def __init__(self, kind: str, metrics: ServiceMetrics, ingest: IngestMetrics, dead_letters: bool = False) -> None:
        from prometheus_client import Counter as PromCounter

        self.kind = kind
        self.metrics = metrics
        self.ingest = ingest
        self.dead_letters = dead_letters
        self.family = PromCounter(
            f"vigil_ingest_{kind}",
            f"{kind} collector events by source and counter",
            ["source", "counter"],
            registry=metrics.registry,
        )
        self._seen: dict[tuple[str, str], int] = {}

    def update(
        self, publisher: KafkaPublisher, validation: Mapping[str, int], live: Mapping[str, Mapping[str, int]]
    ) -> None:
        merged: Counter[str] = Counter()
        for counters in list(live.values()):
            merged.update(dict(counters))
        self.ingest.update(publisher, validation, merged if self.dead_letters else None)
        for source, counters in list(live.items()):
            for name, total in list(counters.items()):
                delta = total - self._seen.get((source, name), 0)
                if delta <= 0:
                    continue
                self.family.labels(source, name).inc(delta)
                self._seen[(source, name)] = total
                if name == "connect_failed":
                    self.metrics.errors.labels(f"{self.kind}_connect_failed").inc(delta)
                elif name == "dropped_overflow":
                    self.metrics.dropped.labels(f"{self.kind}_queue_overflow").inc(delta)
