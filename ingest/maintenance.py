"""Maintenance records in: a CMMS export (CSV or Parquet) or JSON records as maintenance events, the models' labels.

``vigil collect maintenance FILE [FILE...] [--source NAME] [--config plant.toml] [--dry-run]``

A ``[[sources.maintenance]]`` entry (:class:`~vigil.config.mapping.MaintenanceMapping`) says which column holds
the machine, the time, the kind code, and optionally the failure mode, the work order and free text. Each row
becomes a :class:`~vigil.contracts.MaintenanceEvent`, or a refusal naming the row (as a spreadsheet numbers it:
the header is row 1), the column and one reason:

===================  ===========================================================================================
``missing_field``    machine, time or kind is empty
``unknown_kind``     the kind code is not in ``kinds`` (codes mapped to ``ignore`` are counted, not refused)
``unknown_machine``  the machine (after ``machines`` renames it) is not in ``[[machines]]``
``bad_timestamp``    the time cannot be read as ``time.format`` says (or is a local time that does not exist)
``implausible_time`` before 1970 or more than a day after now
``oversized``        text longer than ``max_text_chars`` (or a work order longer than 200 characters)
===================  ===========================================================================================

The event id is ``<source name>:<work order>`` with a work-order column, else a digest of machine, time, kind and
failure mode, so an export imported twice gives the same ids: an id seen earlier in the file, or already on the
maintenance topic (read from its beginning before publishing), is counted ``duplicate`` and not sent again.
Events are published in time order, keyed by machine; refused rows go to the dead-letter topic.

>>> from datetime import UTC, datetime
>>> reader = MaintenanceReader(MaintenanceMapping(work_order="wo"), {"PMP-001"}, source="sap",
...                            now=datetime(2026, 6, 1, tzinfo=UTC))
>>> result = reader.read([(2, {"machine": "PMP-001", "ts": "2026-05-02T08:00:00Z", "kind": "Breakdown", "wo": "4711"}),
...                       (3, {"machine": "PMP-009", "ts": "2026-05-01T08:00:00Z", "kind": "PM", "wo": "4712"})])
>>> [(e.event_id, e.event.value) for e in result.events], [(r.row, r.column, r.reason) for r in result.refusals]
([('sap:4711', 'failure')], [(3, 'machine', 'unknown_machine')])
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest.exceptions import PayloadError, SourceError
from ingest.timeparse import parse_time
from vigil.bus import dead_letter, machine_key, send_dead_letter
from vigil.config import KafkaSettings, Topics, VigilConfig
from vigil.config.mapping import MaintenanceMapping, MaintenanceSource
from vigil.contracts import DeadLetter, MaintenanceEvent, MaintenanceKind, decode, encode
from vigil.exceptions import ContractError

log = logging.getLogger(__name__)

SERVICE = "ingest.maintenance"
REASONS = ("missing_field", "unknown_kind", "unknown_machine", "bad_timestamp", "implausible_time", "oversized")
MAX_WORK_ORDER_CHARS = 200
FUTURE_TOLERANCE = timedelta(days=1)
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)

DEFAULT_SOURCE = MaintenanceSource(
    name="maintenance",
    mapping=MaintenanceMapping(failure_mode="failure_mode", work_order="work_order", text="text"),
)
"""Used when no ``[[sources.maintenance]]`` is configured; its optional columns may be absent from a file."""


def mapped_columns(mapping: MaintenanceMapping) -> dict[str, str]:
    """Mapping key -> column, for the columns the mapping uses (``failure_mode`` etc. only when set).

    >>> mapped_columns(MaintenanceMapping(text="Description"))
    {'machine': 'machine', 'time.column': 'ts', 'kind': 'kind', 'text': 'Description'}
    """
    columns = {"machine": mapping.machine, "time.column": mapping.time.column, "kind": mapping.kind}
    for key in ("failure_mode", "work_order", "text"):
        column = getattr(mapping, key)
        if column is not None:
            columns[key] = column
    return columns


@dataclass(frozen=True)
class Refusal:
    """A row that did not become an event: where (row, column), why (reason, detail) and the row itself."""

    row: int
    column: str
    reason: str
    detail: str
    record: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason, "detail": self.detail}

    def dead_letter(self, origin: str) -> DeadLetter:
        return dead_letter(
            service=SERVICE,
            reason=self.reason,
            error=f"row {self.row}, column {self.column}: {self.detail}",
            raw=json.dumps(self.record, default=str, ensure_ascii=False).encode(),
            source_topic=origin,
            offset=self.row,
        )


@dataclass
class ReadResult:
    """What :meth:`MaintenanceReader.read` made of some rows: events in time order, refusals in row order."""

    events: list[MaintenanceEvent] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    """``rows``, ``ignored``, ``duplicate`` (within these rows), ``repair_assumed``, ``repair_not_due``."""

    def summary(self, file: str, *, imported: int, already_published: int = 0) -> dict[str, Any]:
        """The summary ``vigil collect maintenance`` prints and ``POST /maintenance`` answers."""
        refused = Counter(r.reason for r in self.refusals)
        return {
            "file": file,
            "rows": self.counters["rows"],
            "imported": imported,
            "duplicate": self.counters["duplicate"] + already_published,
            "ignored": self.counters["ignored"],
            "refused": dict(sorted(refused.items())),
            "refusals": [r.as_dict() for r in self.refusals[:20]],
            "repairs_assumed": self.counters["repair_assumed"],
            "repairs_not_yet_due": self.counters["repair_not_due"],
        }


class _Refused(Exception):
    def __init__(self, column: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.column, self.reason, self.detail = column, reason, detail


class MaintenanceReader:
    """Turns records (column -> raw value) into maintenance events or refusals, as ``mapping`` says.

    Pure: no I/O; ``now`` (default: the wall clock when :meth:`read` runs) bounds plausible times. ``source``
    prefixes work-order ids. An assumed repair (``failure_repair_s``) later than ``now`` is not made: a label from
    the future would reset the machine's model today; importing the export again once it is due adds it.
    """

    def __init__(
        self,
        mapping: MaintenanceMapping,
        known_machines: Collection[str],
        *,
        source: str = "maintenance",
        now: datetime | None = None,
    ) -> None:
        self.mapping = mapping
        self.known_machines = known_machines
        self.source = source
        self.now = now

    def read(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> ReadResult:
        """Every ``(row number, record)``; the events come back sorted by time (stable for equal times)."""
        now = self.now or datetime.now(UTC)
        result = ReadResult()
        seen: set[str] = set()
        for number, record in rows:
            result.counters["rows"] += 1
            try:
                event = self._event(record, now)
            except _Refused as exc:
                result.refusals.append(Refusal(number, exc.column, exc.reason, exc.detail, record))
                continue
            if event is None:
                result.counters["ignored"] += 1
                continue
            if event.event_id in seen:
                result.counters["duplicate"] += 1
                continue
            seen.add(event.event_id)
            result.events.append(event)
            repair_s = self.mapping.failure_repair_s
            if repair_s is not None and event.event == MaintenanceKind.FAILURE:
                repair = event.model_copy(
                    update={
                        "event_id": f"{event.event_id}:repair",
                        "ts": event.ts + timedelta(seconds=repair_s),
                        "event": MaintenanceKind.REPAIR,
                        "text": f"assumed {repair_s:g} s after failure {event.event_id}",
                    }
                )
                if repair.ts > now:
                    result.counters["repair_not_due"] += 1
                elif repair.event_id not in seen:
                    seen.add(repair.event_id)
                    result.events.append(repair)
                    result.counters["repair_assumed"] += 1
        result.events.sort(key=lambda e: e.ts)
        return result

    def _event(self, record: Mapping[str, Any], now: datetime) -> MaintenanceEvent | None:
        m = self.mapping
        code = _text(record.get(m.kind))
        if code is None:
            raise _Refused(m.kind, "missing_field", "no kind")
        kind = m.kinds.get(code.lower())
        if kind is None:
            raise _Refused(m.kind, "unknown_kind", f"kind {code[:60]!r} is not in the mapping's kinds")
        if kind == "ignore":
            return None
        name = _text(record.get(m.machine))
        if name is None:
            raise _Refused(m.machine, "missing_field", "no machine")
        machine = m.machines.get(name, name)
        if machine not in self.known_machines:
            renamed = f" (renamed from {name[:60]!r})" if machine != name else ""
            raise _Refused(m.machine, "unknown_machine", f"machine {machine[:60]!r}{renamed} is not configured")
        raw_ts = record.get(m.time.column)
        if _text(raw_ts) is None:
            raise _Refused(m.time.column, "missing_field", "no time")
        try:
            ts = parse_time(raw_ts, m.time)
        except PayloadError as exc:
            raise _Refused(m.time.column, exc.reason, exc.detail) from None
        if ts < _EARLIEST or ts > now + FUTURE_TOLERANCE:
            raise _Refused(m.time.column, "implausible_time", f"{ts.isoformat()} is before 1970 or after tomorrow")
        text = _text(record.get(m.text)) if m.text is not None else None
        if text is not None and len(text) > m.max_text_chars:
            raise _Refused(
                m.text or "", "oversized", f"text of {len(text)} characters (max_text_chars {m.max_text_chars})"
            )
        failure_mode = _text(record.get(m.failure_mode)) if m.failure_mode is not None else None
        if failure_mode is not None and len(failure_mode) > MAX_WORK_ORDER_CHARS:
            raise _Refused(m.failure_mode or "", "oversized", f"failure mode of {len(failure_mode)} characters")
        work_order = _text(record.get(m.work_order)) if m.work_order is not None else None
        if work_order is not None:
            if len(work_order) > MAX_WORK_ORDER_CHARS:
                raise _Refused(m.work_order or "", "oversized", f"work order of {len(work_order)} characters")
            event_id = f"{self.source}:{work_order}"
        else:
            key = f"{machine}|{ts.isoformat()}|{kind}|{failure_mode or ''}"
            event_id = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()
        return MaintenanceEvent(
            event_id=event_id,
            machine_id=machine,
            ts=ts,
            event=MaintenanceKind(kind),
            failure_mode=failure_mode,
            text=text or "",
        )


def _text(value: Any) -> str | None:
    """A cell as stripped text; empty, missing and NaN (a pandas-written Parquet null) are ``None``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = value.strip() if isinstance(value, str) else str(value)
    return text or None


# ----------------------------------------------------------------------------------------------- files


def read_records(
    path: Path, source: MaintenanceSource, *, optional: Collection[str] = ()
) -> tuple[MaintenanceMapping, Iterator[tuple[int, dict[str, Any]]]]:
    """The mapping fitted to the file and its records (row 2 is the first after the header), streamed.

    Every mapped column must be in the file (:class:`SourceError` naming column and mapping key, before any row is
    read), except the mapping keys in ``optional``: those are dropped from the mapping when their column is absent.
    """
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"cannot read {path}: {exc}") from exc
        mapping = _fit(path, source, set(file.schema_arrow.names), optional)
        return mapping, _parquet_rows(path, file)
    if suffix in (".csv", ".txt", ".tsv"):
        try:
            handle = path.open(newline="", encoding=source.encoding)
        except (OSError, LookupError) as exc:
            raise SourceError(f"cannot read {path}: {exc}") from exc
        try:
            header = next(csv.reader(handle, delimiter=source.delimiter), [])
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            handle.close()
            raise SourceError(f"cannot read {path} as {source.encoding} (the source's encoding): {exc}") from exc
        header = [h.lstrip("\ufeff").strip() for h in header]
        try:
            mapping = _fit(path, source, set(header), optional)
        except SourceError:
            handle.close()
            raise
        return mapping, _csv_rows(path, handle, header, source)
    raise SourceError(f"{path}: unknown file type {suffix!r} (use .csv or .parquet)")


def read_file(
    path: Path, source: MaintenanceSource, known_machines: Collection[str], *, now: datetime | None = None
) -> ReadResult:
    """A whole export read through ``source``'s mapping (the default source's optional columns may be absent);
    raises :class:`SourceError` for a file that cannot be read or lacks a mapped column."""
    mapping, rows = read_records(path, source, optional=optional_keys(source))
    return MaintenanceReader(mapping, known_machines, source=source.name, now=now).read(rows)


def _fit(path: Path, source: MaintenanceSource, names: set[str], optional: Collection[str]) -> MaintenanceMapping:
    mapping = source.mapping
    drop: dict[str, None] = {}
    for key, column in mapped_columns(mapping).items():
        if column in names:
            continue
        if key in optional:
            drop[key] = None
            continue
        raise SourceError(
            f"{path}: no column {column!r} (mapping.{key} of [[sources.maintenance]] {source.name!r}); "
            f"the file has {', '.join(sorted(names)) or 'no columns'}"
        )
    return mapping.model_copy(update=drop) if drop else mapping


def _csv_rows(
    path: Path, handle: Any, header: list[str], source: MaintenanceSource
) -> Iterator[tuple[int, dict[str, Any]]]:
    number = 1
    try:
        with handle:
            for number, cells in enumerate(csv.reader(handle, delimiter=source.delimiter), start=2):
                if cells:  # a blank line keeps its number but is no record
                    yield number, dict(zip(header, cells, strict=False))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: cannot read after row {number} as {source.encoding}: {exc}") from exc


def _parquet_rows(path: Path, file: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa

    number = 1
    try:
        for batch in file.iter_batches(batch_size=50_000):
            for record in batch.to_pylist():
                number += 1
                yield number, record
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {path} after row {number}: {exc}") from exc


# ----------------------------------------------------------------------------------------------- Kafka


def published_event_ids(kafka: KafkaSettings, topic: str, timeout_s: float = 60.0) -> set[str]:
    """The event ids already on the maintenance topic, read from its beginning to its current end."""
    from kafka import TopicPartition

    from vigil.bus import make_consumer

    consumer = make_consumer(kafka, None, client_id=f"{kafka.client_id}-maintenance-ids")
    ids: set[str] = set()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return ids
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise SourceError(f"{topic}: nothing read for {timeout_s:g}s before its end")
            batch = consumer.poll(timeout_ms=500)
            if batch:
                deadline = time.monotonic() + timeout_s
            for records in batch.values():
                for record in records:
                    try:
                        message = decode(record.value)
                    except ContractError:
                        continue  # not ours to judge here; the consumers of the topic dead-letter it
                    if isinstance(message, MaintenanceEvent):
                        ids.add(message.event_id)
    finally:
        consumer.close(autocommit=False)
    return ids


def publish(producer: Any, topics: Topics, result: ReadResult, published: set[str], origin: str) -> tuple[int, int]:
    """Send the events whose id is not in ``published`` (which gains them) and the refusals as dead letters;
    waits for every acknowledgement. Returns (imported, already published)."""
    futures = []
    already = 0
    for event in result.events:
        if event.event_id in published:
            already += 1
            continue
        published.add(event.event_id)
        futures.append(producer.send(topics.maintenance, key=machine_key(event.machine_id), value=encode(event)))
    imported = len(futures)
    futures += [send_dead_letter(producer, topics, r.dead_letter(origin)) for r in result.refusals]
    producer.flush(timeout=60)
    for future in futures:
        future.get(timeout=60)
    return imported, already


def pick_source(config: VigilConfig, name: str | None) -> MaintenanceSource:
    """``--source NAME``, else the only ``[[sources.maintenance]]``, else :data:`DEFAULT_SOURCE`; or SourceError."""
    configured = config.sources.maintenance
    names = ", ".join(s.name for s in configured) or "none"
    if name is not None:
        for source in configured:
            if source.name == name:
                return source
        raise SourceError(f"no [[sources.maintenance]] named {name!r} (configured: {names})")
    if len(configured) > 1:
        raise SourceError(f"several [[sources.maintenance]] are configured ({names}): choose one with --source")
    return configured[0] if configured else DEFAULT_SOURCE


def optional_keys(source: MaintenanceSource) -> tuple[str, ...]:
    """Mapping keys whose column a file may lack: only the default mapping's optional columns."""
    return ("failure_mode", "work_order", "text") if source is DEFAULT_SOURCE else ()


# ----------------------------------------------------------------------------------------------- command


def main(argv: list[str]) -> int:
    """``vigil collect maintenance FILE...``: import a CMMS export's failures, repairs and inspections."""
    from ingest.collector_cli import load_or_explain

    parser = argparse.ArgumentParser(prog="vigil collect maintenance", description=main.__doc__)
    parser.add_argument("files", nargs="*", type=Path, help=".csv or .parquet exports")
    parser.add_argument("--mqtt", action="store_true", help="subscribe to the source's mqtt_topics instead of files")
    parser.add_argument("--duration", type=float, default=None, help="with --mqtt: stop after this many seconds")
    parser.add_argument("--source", help="the [[sources.maintenance]] entry (default: the only one)")
    parser.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example)")
    parser.add_argument("--dry-run", action="store_true", help="read and check only: nothing is sent to Kafka")
    args = parser.parse_args(argv)
    config = load_or_explain(args.config)
    if config is None:
        return 2
    if args.mqtt:
        return _subscribe(config, args.source, args.duration)
    if not args.files:
        parser.error("give export files, or --mqtt")
    known = {m.id for m in config.machines}
    # Every file is read before anything is published: an unreadable second file publishes nothing.
    results: list[tuple[Path, ReadResult]] = []
    try:
        source = pick_source(config, args.source)
        for path in args.files:
            results.append((path, read_file(path, source, known)))
    except SourceError as exc:
        print(f"vigil collect maintenance: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    published: set[str] = set()
    producer = None
    if not args.dry_run:
        from vigil.bus import TopicSpec, ensure_topics, make_producer

        try:
            names = (config.topics.maintenance, config.topics.dead_letter)
            ensure_topics(config.kafka, [TopicSpec(t, config.kafka.partitions) for t in names])
            published = published_event_ids(config.kafka, config.topics.maintenance)
            producer = make_producer(config.kafka)
        except Exception as exc:  # Kafka unreachable: nothing was sent, the import can simply run again
            print(f"vigil collect maintenance: Kafka at {config.kafka.bootstrap_servers}: {exc}", file=sys.stderr)  # noqa: T201
            return 1
    try:
        for path, result in results:
            if producer is None:  # a dry run: duplicates across the files given, not against the topic
                new = {e.event_id for e in result.events} - published
                imported, already = len(new), len(result.events) - len(new)
                published |= new
            else:
                imported, already = publish(producer, config.topics, result, published, f"file:{path.name}")
            summary = result.summary(str(path), imported=imported, already_published=already)
            print(json.dumps(summary, ensure_ascii=False))  # noqa: T201
            refused = sum(summary["refused"].values())
            verb = "would import" if args.dry_run else "imported"
            print(  # noqa: T201
                f"{path.name}: {summary['rows']} rows, {verb} {imported} event(s), {summary['duplicate']} duplicate, "
                f"{summary['ignored']} ignored, {refused} refused"
                + (f" ({', '.join(f'{k} {v}' for k, v in summary['refused'].items())})" if refused else ""),
                file=sys.stderr,
            )
    except Exception as exc:  # a send not acknowledged: what was acknowledged stays, a re-import completes it
        print(f"vigil collect maintenance: publishing failed: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        if producer is not None:
            producer.close(timeout=30)
    return 0


def _subscribe(config: VigilConfig, source_name: str | None, duration: float | None) -> int:
    """``--mqtt``: import records pushed to the source's MQTT topics until SIGTERM/Ctrl-C (or ``duration``)."""
    import signal

    from ingest.maintenance_mqtt import MaintenanceSubscriber
    from vigil.bus import TopicSpec, ensure_topics, make_producer

    try:
        source = pick_source(config, source_name)
        names = (config.topics.maintenance, config.topics.dead_letter)
        ensure_topics(config.kafka, [TopicSpec(t, config.kafka.partitions) for t in names])
        published = published_event_ids(config.kafka, config.topics.maintenance)
        producer = make_producer(config.kafka)
        known = {m.id for m in config.machines}
        subscriber = MaintenanceSubscriber(source, config.mqtt, producer, config.topics, known, published)
    except SourceError as exc:
        print(f"vigil collect maintenance: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        subscriber.start()
        log.info("maintenance source %s: subscribed to %s", source.name, ", ".join(source.mqtt_topics))
        stop.wait(duration)
    except SourceError as exc:
        print(f"vigil collect maintenance: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        subscriber.stop()
        producer.close(timeout=30)
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(json.dumps({"source": source.name, "mqtt": dict(subscriber.counters)}))  # noqa: T201
    return 0
