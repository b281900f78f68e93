"""Another team's Kafka topic as a source: their JSON, mapped by a ReadingMapping, into Vigil's readings topic.

``vigil collect kafka --source NAME`` consumes the ``[[sources.kafka]]`` topic in its consumer group
(``group_id``, default ``vigil-collect-<name>``, manual commits). Each record's value is a JSON object or an
array of objects, mapped by :class:`~ingest.records.RecordMapper` (the mapping model of files and MQTT; a wide
layout with ``machine_from_name`` matches the record's key), checked by the :class:`~ingest.validation.Validator`
and published by the :class:`~ingest.publisher.KafkaPublisher`. A record that is not JSON, or an item or field
that cannot become a reading (reason and field as in :mod:`ingest.records`, plus ``unknown_machine`` /
``unknown_sensor``), goes to the dead-letter topic with its raw bytes and the source topic, partition and offset;
the rest of the record is kept.

Offsets are at-least-once: after each poll the publisher is flushed, and the offsets are committed only when
Kafka acknowledged every reading and dead letter handed to the publisher so far (nothing spooled, nothing in
flight). While the readings topic does not acknowledge (the publisher spools), nothing is committed: a restart
reads those records again, so they may be published twice, never lost.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import ConsumerRebalanceListener

from ingest.publisher import KafkaPublisher
from ingest.records import RecordMapper
from ingest.validation import Validator
from vigil.bus import dead_letter, make_consumer
from vigil.config.connections import KafkaSettings
from vigil.config.mapping import KafkaSource

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, collector: TopicCollector) -> None:
        self.collector = collector

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self.collector.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        log.info("kafka source %s assigned %s", self.collector.source.name, sorted(str(tp) for tp in assigned))

    def on_partitions_lost(self, lost: Iterable[Any]) -> None:
        # Another member owns them now; what we did not commit it reads again.
        self.collector.forget(set(lost))


class TopicCollector:
    """Consumes one ``[[sources.kafka]]`` topic into the publisher; ``setup()`` connects, ``step()`` polls once.

    ``counters``: ``received`` records, ``accepted`` readings, ``rejected`` (by the validator) and one per refusal
    reason (each a dead letter); ``offsets``: ``commits``, ``commit_deferred`` (Kafka had not acknowledged
    everything yet), ``commit_failed``.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        source: KafkaSource,
        publisher: KafkaPublisher,
        validator: Validator,
        machines: Mapping[str, Iterable[str]],
        flush_timeout_s: float = 30.0,
    ) -> None:
        self.kafka = kafka
        self.source = source
        self.publisher = publisher
        self.validator = validator
        self.flush_timeout_s = flush_timeout_s
        self.group_id = source.group_id or f"vigil-collect-{source.name}"
        self.mapper = RecordMapper(source.mapping, source=f"kafka:{source.name}", machines=machines)
        self.counters: Counter[str] = Counter()
        self.offsets: Counter[str] = Counter()
        self._consumer: Any = None
        self._pending: dict[Any, int] = {}
        """Next offset per partition of the records handled since the last commit."""
        self._dead_letters = 0

    # ------------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        """Create the consumer and subscribe (the group is joined by the first poll)."""
        consumer = make_consumer(self.kafka, self.group_id, client_id=f"{self.kafka.client_id}-{self.source.name}")
        consumer.partitions_for_topic(self.source.topic)  # metadata before joining, as make_consumer does
        consumer.subscribe([self.source.topic], listener=_Rebalance(self))
        self._consumer = consumer

    def close(self) -> None:
        """Commit what Kafka acknowledged and leave the group."""
        if self._consumer is None:
            return
        try:
            self.commit()
        finally:
            self._consumer.close(autocommit=False)
            self._consumer = None

    # ------------------------------------------------------------------ the work
    def step(self, timeout_ms: int = 500) -> int:
        """Poll once, handle every record, then flush and commit; returns the number of records handled."""
        batch = self._consumer.poll(timeout_ms=timeout_ms)
        n = 0
        for records in batch.values():
            for record in records:
                self.handle(record)
                n += 1
        if self._pending:
            self.commit()
        return n

    def handle(self, record: Any) -> None:
        """Map, validate and hand one consumer record to the publisher; refusals become dead letters."""
        from kafka import TopicPartition

        self.counters["received"] += 1
        key = None if record.key is None else record.key.decode(errors="replace")
        value = record.value if record.value is not None else b""
        readings, errors = self.mapper.map_payload(value, key)
        for error in errors:
            self.counters[error.reason] += 1
            self._dead_letters += 1
            self.publisher.add_dead_letter(
                dead_letter(
                    service=f"ingest.kafka.{self.source.name}",
                    reason=error.reason,
                    error=error.detail,
                    raw=value,
                    source_topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                )
            )
        for reading in readings:
            checked = self.validator.check(reading)
            if checked is None:
                self.counters["rejected"] += 1
                continue
            self.publisher.add(checked)
            self.counters["accepted"] += 1
        self._pending[TopicPartition(record.topic, record.partition)] = record.offset + 1

    # ------------------------------------------------------------------ offsets
    def acknowledged(self) -> bool:
        """Kafka acknowledged every reading and dead letter handed to the publisher (nothing spooled or in flight)."""
        p = self.publisher
        c = p.counters
        return (
            not p.spooling
            and p.backlog == 0
            and c.added == c.sent + c.dropped
            and c.messages_by_topic[p.topics.dead_letter] >= self._dead_letters
        )

    def commit(self, only: set[Any] | None = None, blocking: bool = True) -> bool:
        """Flush the publisher, then commit the handled records' offsets if everything was acknowledged."""
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata

        offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in self._pending.items() if only is None or tp in only}
        if not offsets:
            return True
        self.publisher.flush(self.flush_timeout_s)
        if not self.acknowledged():
            self.offsets["commit_deferred"] += 1
            log.warning(
                "kafka source %s: readings not yet acknowledged by Kafka (spooling: %s); offsets not committed",
                self.source.name,
                self.publisher.spooling,
            )
            return False
        try:
            if blocking:
                self._consumer.commit(offsets)
            else:
                self._consumer.commit_async(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved the partitions on; their new owner reads the uncommitted records again.
            self.offsets["commit_failed"] += 1
            log.warning("kafka source %s: offset commit failed (%s); records may be read again", self.source.name, exc)
            return False
        self.offsets["commits"] += 1
        for tp in offsets:
            if self._pending.get(tp) == offsets[tp].offset:
                del self._pending[tp]
        return True

    def on_revoked(self, revoked: set[Any]) -> None:
        """Rebalance (inside ``poll()``): commit what we handled of the partitions we give up, then forget them."""
        try:
            # No blocking commit on the consumer's own rebalance path (see features.service).
            self.commit(revoked, blocking=False)
        except Exception:
            log.exception("kafka source %s: commit on revocation failed", self.source.name)
        self.forget(revoked)

    def forget(self, partitions: set[Any]) -> None:
        for tp in partitions:
            self._pending.pop(tp, None)


def main(argv: list[str]) -> int:
    """``vigil collect kafka --source NAME``: map another team's topic into the readings topic until stopped."""
    from kafka.errors import KafkaError

    from ingest.collector_cli import open_collector

    run = open_collector("kafka", argv, main.__doc__, one_source=True)
    if isinstance(run, int):
        return run
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    config, publisher, validator, metrics = run.config, run.publisher, run.validator, run.metrics
    machines = {m.id: set(m.sensors) for m in config.machines_by_id.values()}
    collector = TopicCollector(config.kafka, run.sources[0], publisher, validator, machines)
    try:
        try:
            collector.setup()
        except KafkaError as exc:
            name, topic = collector.source.name, collector.source.topic
            print(f"kafka source {name}: cannot consume {topic}: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        metrics.set_ready(True)
        duration = run.args.duration
        deadline = None if duration is None else time.monotonic() + duration
        last_metrics = last_log = time.monotonic()
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            collector.step()
            now = time.monotonic()
            if now - last_metrics >= 5:
                last_metrics = now
                run.ingest_metrics.update(publisher, validator.counters, collector.counters)
                metrics.heartbeat()
            if now - last_log >= 30:
                last_log = now
                log.info(
                    "kafka source %s: %s; offsets %s; validation %s; publisher %s",
                    collector.source.name,
                    dict(collector.counters),
                    dict(collector.offsets),
                    dict(validator.counters),
                    publisher.counters.as_dict(),
                )
    finally:
        try:
            collector.close()  # flush, commit what was acknowledged, leave the group
        finally:
            run.ingest_metrics.update(publisher, validator.counters, collector.counters)
            run.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    run.summary({collector.source.name: collector.counters + collector.offsets})
    return 0
