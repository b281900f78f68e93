"""Kafka plumbing every stage shares: producer and consumer factories, topic creation, dead letters.

Producers are idempotent with ``acks=all``; consumers never auto-commit (a stage commits offsets only after
everything derived from them is safely written downstream).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vigil.config.connections import KafkaSettings, Topics
from vigil.contracts import DeadLetter, encode
from vigil.exceptions import BusError, KafkaRefused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None


def pipeline_topics(kafka: KafkaSettings, topics: Topics) -> list[TopicSpec]:
    """Every topic the pipeline uses, with the configured partition count (state topics are created per stage)."""
    names = [
        *topics.reading_topics(),
        topics.maintenance,
        topics.features,
        topics.predictions,
        topics.drift,
        topics.alerts,
        topics.dead_letter,
    ]
    return [TopicSpec(n, kafka.partitions) for n in dict.fromkeys(names)]


def changelog_topic(topics: Topics, service: str) -> TopicSpec:
    """A compacted topic for one stage's state (windows, models, pending labels)."""
    return TopicSpec(f"{topics.changelog_prefix}{service}", partitions=1, compacted=True)


def make_producer(kafka: KafkaSettings, **overrides: Any) -> Any:
    """An idempotent ``acks=all`` producer (keys and values are bytes)."""
    from kafka import KafkaProducer

    config: dict[str, Any] = {
        **kafka.client_kwargs(),
        "client_id": kafka.client_id,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": None if kafka.compression == "none" else kafka.compression,
        "linger_ms": kafka.linger_ms,
        "batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(kafka: KafkaSettings, group_id: str | None, topics: Iterable[str] = (), **overrides: Any) -> Any:
    """A consumer with manual commits, reading from the earliest offset when the group has none."""
    from kafka import KafkaConsumer

    config: dict[str, Any] = {
        **kafka.client_kwargs(),
        "client_id": kafka.client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": 2000,
        # A topic or partition that appears after the group formed is noticed (and rebalanced onto) within
        # 30 s instead of kafka-python's default 5 minutes.
        "metadata_max_age_ms": 30_000,
    }
    config.update(overrides)
    names = list(topics)
    consumer = KafkaConsumer(*names, **config)
    if group_id is not None:
        # Load the subscribed topics' metadata before the first poll joins the group: a topic created moments
        # ago would otherwise be assigned to nobody ("No partition metadata") until the next metadata refresh.
        # (Not without a group: kafka-python assigns a group-less subscription on a metadata *update*, which
        # this early fetch would pre-empt.)
        for name in names:
            consumer.partitions_for_topic(name)
    return consumer


def partition_count(kafka: KafkaSettings, topic: str, timeout_s: float = 30.0) -> int:
    """How many partitions ``topic`` has (waiting up to ``timeout_s`` for its metadata)."""
    consumer = make_consumer(kafka, None, client_id=f"{kafka.client_id}-meta")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                return len(partitions)
            if time.monotonic() > deadline:
                raise BusError(f"no metadata for topic {topic} within {timeout_s:g}s")
            time.sleep(0.5)
    finally:
        consumer.close(autocommit=False)


def ensure_topics(
    kafka: KafkaSettings,
    specs: Iterable[TopicSpec],
    *,
    stop: threading.Event | None = None,
    max_wait_s: float | None = None,
    initial_backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Existing topics are left alone.

    A broker that cannot be reached (or times out) is weather, not a configuration mistake: the call retries with
    exponential backoff until it succeeds, ``stop`` is set or ``max_wait_s`` has passed (then :class:`BusError`),
    logging the first failure and then one line a minute. Errors retrying cannot fix (a replication factor the
    cluster cannot meet, a refused authorisation) raise at once.
    """
    from kafka.errors import KafkaError

    wanted = list(specs)
    started = time.monotonic()
    delay = initial_backoff_s
    attempts = 0
    last_logged = float("-inf")
    while True:
        try:
            created = _create_missing_topics(kafka, wanted)
        except (KafkaError, OSError) as exc:
            if attempts == 0 or time.monotonic() - last_logged >= 60.0:
                # A refused login or certificate is configuration, not weather: fail at once, naming the key.
                from vigil.kafka_access import diagnose

                problem = diagnose(kafka)
                if problem is not None:
                    raise KafkaRefused(problem) from exc
            if isinstance(exc, KafkaError) and not exc.retriable:
                raise BusError(f"kafka: cannot create topics: {type(exc).__name__}: {exc}") from exc
            attempts += 1
            waited = time.monotonic() - started
            if stop is not None and stop.is_set():
                raise BusError(f"kafka: stopped while waiting for {kafka.bootstrap_servers} ({exc})") from exc
            if max_wait_s is not None and waited >= max_wait_s:
                raise BusError(
                    f"kafka.bootstrap_servers: {kafka.bootstrap_servers} unreachable for {waited:.0f}s ({exc})"
                ) from exc
            if time.monotonic() - last_logged >= 60.0:
                last_logged = time.monotonic()
                log.warning(
                    "kafka at %s unreachable (%s: %s); creating topics again in %.1fs (attempt %d)",
                    kafka.bootstrap_servers,
                    type(exc).__name__,
                    exc,
                    delay,
                    attempts,
                )
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
            continue
        if attempts:
            log.info("kafka at %s reachable again after %d failed attempt(s)", kafka.bootstrap_servers, attempts)
        return created


def _create_missing_topics(kafka: KafkaSettings, specs: list[TopicSpec]) -> list[str]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    # A short bootstrap: ensure_topics retries an unreachable broker itself, and a refused login or certificate
    # (which kafka-python would retry for the default 30 s) is reported sooner.
    admin = KafkaAdminClient(**kafka.client_kwargs(), client_id=f"{kafka.client_id}-admin", bootstrap_timeout_ms=8000)
    try:
        existing = set(admin.list_topics())
        wanted = [s for s in specs if s.name not in existing]
        new = []
        for s in wanted:
            configs: dict[str, str] = {}
            if s.compacted:
                configs["cleanup.policy"] = "compact"
                configs["min.compaction.lag.ms"] = "0"
                configs["segment.ms"] = "600000"
            if s.retention_ms is not None:
                configs["retention.ms"] = str(s.retention_ms)
            new.append(NewTopic(s.name, s.partitions, kafka.replication_factor, topic_configs=configs or None))
        if new:
            # Another worker may have created one in between; that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new, timeout_ms=30_000, wait_for_metadata=True)
        return [t.name for t in new]
    finally:
        admin.close()


def machine_key(machine_id: str) -> bytes:
    """Message key: the machine id, so one machine's messages stay in one partition, in order."""
    return machine_id.encode()


def dead_letter(
    *,
    service: str,
    reason: str,
    error: str,
    raw: bytes | None,
    source_topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> DeadLetter:
    """A dead letter carrying the original bytes (base64), the reason and where the message came from.

    A payload longer than :data:`DEAD_LETTER_RAW_MAX` keeps its first bytes only (``raw_size`` says how long it
    was, and the source topic/partition/offset where the whole is): base64 grows it by a third, and a dead letter
    over the broker's message size (1 MiB by default) would be refused - the service could then neither use the
    message nor set it aside, and would stop on it again after every restart.
    """
    raw = raw or b""
    if len(raw) > DEAD_LETTER_RAW_MAX:
        error = f"{error[:1800]} [raw payload of {len(raw)} bytes cut to its first {DEAD_LETTER_RAW_MAX}]"
    return DeadLetter(
        service=service,
        reason=reason,
        error=error[:2000],
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key.decode(errors="replace") if key is not None else None,
        raw=base64.b64encode(raw[:DEAD_LETTER_RAW_MAX]).decode(),
        raw_size=len(raw),
    )


DEAD_LETTER_RAW_MAX = 600 * 1024
"""Most payload bytes a dead letter carries (~800 KiB in base64: under Kafka's default 1 MiB message size)."""


_dead_letter_counts: dict[tuple[str, str], int] = {}


def send_dead_letter(producer: Any, topics: Topics, letter: DeadLetter) -> Any:
    """Send a dead letter keyed by its original key; returns the send future (callers check it).

    The first dead letter of each (service, reason) is logged in full, then one line every 1,000, so a burst of
    bad input shows up in the log without flooding it (the dead-letter topic and the metrics have them all).
    """
    seen = _dead_letter_counts.get((letter.service, letter.reason), 0) + 1
    _dead_letter_counts[(letter.service, letter.reason)] = seen
    if seen == 1 or seen % 1000 == 0:
        log.warning(
            "dead letter #%d from %s: %s (%s) topic=%s partition=%s offset=%s",
            seen,
            letter.service,
            letter.reason,
            letter.error[:200],
            letter.source_topic,
            letter.partition,
            letter.offset,
        )
    return producer.send(topics.dead_letter, key=(letter.key or "").encode() or None, value=encode(letter))
