"""The Kafka side of the publisher: producers, their closing, errors no retry fixes, the gzip level, and the
reconciliation that finds spooled messages Kafka already holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ingest.exceptions import PublishError
from vigil.bus import make_consumer, make_producer
from vigil.config.connections import KafkaSettings
from vigil.config.ingest import PublishSettings

log = logging.getLogger(__name__)

SPOOL_HEADER = "vigil-spool"
"""Kafka header of every message the publisher sends: ``<spool id>:<sequence>`` (ASCII), its write-ahead entry."""

Partition = tuple[str, int]
ABSENT = -1
"""The partition number of a mark that says "this topic had no partitions when marked": scan it from its start."""


def spool_header(spool_id: str, seq: int) -> list[tuple[str, bytes]]:
    """The headers of one sent message.

    >>> spool_header("ab12", 7)
    [('vigil-spool', b'ab12:7')]
    """
    return [(SPOOL_HEADER, f"{spool_id}:{seq}".encode())]


def new_producer(kafka: KafkaSettings, publish: PublishSettings) -> Any:
    """An idempotent producer with the publisher's timeouts; raises ``KafkaError`` when Kafka does not answer."""
    if kafka.compression == "gzip":
        set_gzip_level(publish.gzip_level)
    timeout_ms = int(publish.delivery_timeout_s * 1000)
    return make_producer(
        kafka,
        delivery_timeout_ms=timeout_ms,
        request_timeout_ms=max(timeout_ms // 3, 1000),
        max_block_ms=max(timeout_ms // 3, 1000),
        bootstrap_timeout_ms=int(publish.connect_timeout_s * 1000),
    )


def find_sent(
    kafka: KafkaSettings,
    topics: Iterable[str],
    marks: Mapping[Partition, int],
    spool_id: str,
    timeout_s: float,
) -> tuple[set[int], dict[Partition, int]]:
    """Which spooled sequences Kafka already holds, and every partition's end offset (the new marks).

    Reads each partition of ``topics`` from its mark to its current end and collects the sequences in this
    spool's headers. A topic without any mark is only marked (nothing of this spool can be there: the publisher
    marks every topic before its first send); a partition without a mark of a marked topic is read from its start
    (it appeared since). Raises :class:`PublishError` when Kafka does not answer within ``timeout_s``.
    """
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    prefix = f"{spool_id}:".encode()
    deadline = time.monotonic() + timeout_s
    timeout_ms = max(int(timeout_s * 1000), 1000)
    marked_topics = {t for t, _ in marks}
    try:
        consumer = make_consumer(
            kafka,
            None,
            client_id=f"{kafka.client_id}-spool",
            isolation_level="read_uncommitted",
            allow_auto_create_topics=False,  # a topic this collector never wrote to is not created by looking
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise PublishError(f"reconciliation: Kafka unavailable ({exc})") from exc
    try:
        ends: dict[Partition, int] = {}
        scan: dict[Any, int] = {}
        for topic in sorted(set(topics)):
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                ends[(topic, ABSENT)] = 0
                continue
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            end = consumer.end_offsets(tps)
            for tp in tps:
                ends[(topic, tp.partition)] = int(end[tp])
                if topic not in marked_topics:
                    continue
                start = marks.get((topic, tp.partition), 0)
                if start < end[tp]:
                    scan[tp] = start
        found: set[int] = set()
        if scan:
            consumer.assign(list(scan))
            begin = consumer.beginning_offsets(list(scan))
            for tp, start in scan.items():
                consumer.seek(tp, max(start, int(begin[tp])))
            pending = set(scan)
            while pending:
                if time.monotonic() > deadline:
                    raise PublishError(f"reconciliation: {len(pending)} partition(s) not read within {timeout_s:g}s")
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        for name, value in record.headers or ():
                            if name == SPOOL_HEADER and value.startswith(prefix):
                                found.add(int(value[len(prefix) :]))
                pending = {tp for tp in pending if consumer.position(tp) < ends[(tp.topic, tp.partition)]}
        log.info(
            "reconciled the spool with Kafka: %d partition(s) read from their marks, %d spooled message(s) found",
            len(scan),
            len(found),
        )
        return found, ends
    except KafkaError as exc:
        raise PublishError(f"reconciliation: {type(exc).__name__}: {exc}") from exc
    finally:
        consumer.close(autocommit=False)


def permanent(exc: BaseException | None) -> bool:
    """A message too large for Kafka: no retry fixes it. Everything else (timeouts, connections, authorisation, a
    closed producer) is spooled and retried."""
    from kafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

    return isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError)


def set_gzip_level(level: int) -> None:
    """Make kafka-python's record batches use this gzip level (it hard-codes 9, with no setting).

    Process-wide, by replacing the encoder its record builder looks up at call time; idempotent. kafka-python is
    pinned below 4 in pyproject, and a build whose module layout differs is left alone (level 9, just slower).
    """
    try:
        from kafka.record import default_records
    except ImportError:  # pragma: no cover - a different kafka-python layout
        return
    current = getattr(default_records, "gzip_encode", None)
    if current is None or getattr(current, "vigil_level", None) == level:
        return
    original = getattr(current, "vigil_original", current)

    def gzip_encode(payload: bytes, compresslevel: int | None = None) -> bytes:
        return bytes(original(payload, compresslevel or level))

    gzip_encode.vigil_level = level  # type: ignore[attr-defined]
    gzip_encode.vigil_original = original  # type: ignore[attr-defined]
    default_records.gzip_encode = gzip_encode


def close_producer(producer: Any, timeout_s: float) -> None:
    """Close a producer, failing (into the spool, via the errbacks) whatever it could not deliver in time.

    kafka-python's ``close()`` flushes first and raises when that flush times out, which would leave the I/O
    thread running with our messages; force-closing the sender aborts every incomplete batch, so each pending
    future fails and its errback spools the message.
    """
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=timeout_s)
    except KafkaError:
        sender = producer._sender
        sender.force_close()
        sender.join(timeout=60)
        producer.close(timeout=0)
