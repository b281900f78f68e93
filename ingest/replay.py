"""File replay collector: a CSV or Parquet history into Kafka, as fast as possible or paced by its timestamps.

Columns (by name, any order; extra columns are ignored):

========  ========  =====================================================================================
column    required  content
========  ========  =====================================================================================
machine   yes       machine id, as in ``[[machines]]`` (unknown machines are rejected and counted)
sensor    yes       sensor name of the machine's type
ts        yes       ISO 8601 (a timestamp without zone is taken as UTC), epoch seconds (``--epoch-unit ms``
                    for milliseconds), or a Parquet timestamp column (naive = UTC)
value     yes       number; empty = no value; text that is not a number is rejected as ``wrong_type``
unit      no        unit as the source reports it (a mismatch with the configuration is flagged)
quality   no        ``good`` / ``uncertain`` / ``bad`` or an OPC UA status code; empty = good
========  ========  =====================================================================================

``speed`` 0 replays as fast as the publisher takes it; ``speed`` 60 replays one hour of history in one minute,
pacing each reading by its source timestamp relative to the first one (rows are expected in time order; an
earlier row than the last is sent at once). Bad rows are counted by reason and sent to the dead-letter topic.

With ``--source NAME`` (or a configured ``[[sources.file]]``) the file is read by that mapping instead
(:mod:`ingest.tabular`: long or wide, any column names, time formats and zones, unit conversion), sorted by event
time, and ``--maintenance FILE`` interleaves a CMMS export's records (``[[sources.maintenance]]``) with the
readings: each record is published once the readings have passed it by a window and its grace
(:func:`label_due`), so labels reach the models after the readings they label, as in a live plant and as
``vigil backtest`` delivers them.

**Resume** (both forms): the spool stores, in the same commit as each batch, how far the file is covered
(:class:`ReplayPosition`: the row below which every row's output is in the spool, plus per machine the row after
its last spooled reading). A restarted replay of the same input (same path, size, modification time, first 64 KiB
and ``--epoch-unit``) skips exactly those rows and logs ``resuming <file> at row N``: after ``kill -9`` nothing
is lost (the rows of the batches still in memory are read again) and nothing is sent twice. Another input starts
from its first row; ``--from-start`` forces that. ``--speed`` paces from the first row replayed. The mapped form
(:class:`MappedReplayer`) numbers its rows in publishing order (refused rows, then the readings merged by event
time) and compares every file and the mapping.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ingest.exceptions import PayloadError, SourceError
from ingest.publisher import KafkaPublisher
from ingest.tabular import Frame, Refusal, TableReader
from ingest.validation import Validator, coerce_quality, coerce_ts, coerce_value
from vigil.bus import dead_letter, machine_key
from vigil.config import VigilConfig
from vigil.config.mapping import FileSource, ReadingMapping, TimeSpec
from vigil.config.windows import WindowConfig
from vigil.contracts import MaintenanceEvent, Reading, encode

log = logging.getLogger(__name__)

REQUIRED = ("machine", "sensor", "ts", "value")
OPTIONAL = ("unit", "quality")


def read_rows(path: Path, batch_rows: int = 50_000) -> Iterator[dict[str, list[Any]]]:
    """Column chunks of a CSV or Parquet file (by suffix), streamed: a history larger than memory is fine."""
    import pyarrow as pa

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            file = pq.ParquetFile(path)
            names = set(file.schema_arrow.names)
            _check_columns(path, names)
            wanted = [c for c in (*REQUIRED, *OPTIONAL) if c in names]
            for batch in file.iter_batches(batch_size=batch_rows, columns=wanted):
                yield {name: _to_python(batch.column(name)) for name in wanted}
        elif suffix in (".csv", ".txt"):
            import pyarrow.csv as pcsv

            # Every column as text: type inference on the first block would fail on a later odd row, and a
            # bad row must be counted, not abort the replay.
            header = path.open().readline().strip().split(",")
            _check_columns(path, set(header))
            convert = pcsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                include_columns=[c for c in (*REQUIRED, *OPTIONAL) if c in header],
                strings_can_be_null=True,
            )
            reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=4 << 20), convert_options=convert)
            for batch in reader:
                yield {name: batch.column(name).to_pylist() for name in batch.schema.names}
        else:
            raise SourceError(f"{path}: unknown file type {suffix!r} (use .csv or .parquet)")
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc


def _to_python(column: Any) -> list[Any]:
    """A column as Python values; timestamps as naive UTC datetimes, 4x faster to convert than zone-aware ones."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type):
        # Python datetimes stop at microseconds; nanoseconds are truncated, not an error.
        column = pc.cast(column, pa.timestamp("us"), safe=False)
    return list(column.to_pylist())


def _check_columns(path: Path, names: set[str]) -> None:
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise SourceError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")


def input_identity(path: Path, epoch_unit: str = "s") -> dict[str, Any]:
    """What makes a replay's rows the same rows: the file (path, size, modification time, a digest of its first
    64 KiB) and the options that change what is read from it."""
    stat = path.stat()
    with path.open("rb") as handle:
        head = hashlib.sha256(handle.read(1 << 16)).hexdigest()
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "head_sha256": head,
        "epoch_unit": epoch_unit,
    }


class ReplayPosition:
    """How far a replay's output is in the spool, as the publisher stores it with each message.

    Rows are numbered from 0 in file order. A reading's row waits in :attr:`pending` (per machine, the publisher
    batches per machine) until its batch is emitted; a refused row's dead letter is emitted at once (stream
    :attr:`REJECTED`). :meth:`emitted` (called by the publisher under its routing lock, just before writing the
    message ahead) returns the position committed with that message: ``row``, below which every row is done, and
    ``done``, per stream the row after its last emitted one (only those beyond ``row``). A resumed replay skips a
    row when it is below ``row`` or below its stream's ``done``: exactly the rows whose output is in the spool.

    >>> p = ReplayPosition({"path": "h.csv"})
    >>> p.added("A", 0); p.added("B", 1); p.added("A", 2); p.next_row = 3
    >>> stored = p.emitted("A", 2)  # A's batch (rows 0 and 2) is written ahead; B's row 1 is still in memory
    >>> stored
    '{"input": {"path": "h.csv"}, "row": 1, "done": {"A": 3}}'
    >>> q = ReplayPosition({"path": "h.csv"}, stored)  # killed here: row 1 (B) is read again, row 2 (A) is not
    >>> (q.start, q.skip(1, "B"), q.skip(2, "A"))
    (1, False, True)
    >>> ReplayPosition({"path": "h.csv"}, p.emitted("B", 1)).start
    3
    >>> ReplayPosition({"path": "other.csv"}, p.emitted("B", 0)).start  # another input: from the first row
    0
    """

    REJECTED = ""
    """The stream of rows refused with a dead letter (a machine id is never empty)."""

    def __init__(self, identity: dict[str, Any], stored: str | None = None) -> None:
        self.identity = identity
        self.pending: dict[str, deque[int]] = {}
        self.done: dict[str, int] = {}
        self.start = 0
        """The first row a resumed replay reads (0: from the start)."""
        self.resumed_from: dict[str, Any] | None = None
        """The stored position when it was for another input (and so ignored), for the log."""
        if stored:
            saved = json.loads(stored)
            if saved.get("input") == identity:
                self.start = int(saved["row"])
                self.done = {str(k): int(v) for k, v in saved.get("done", {}).items()}
            else:
                self.resumed_from = saved.get("input")
        self.next_row = self.start
        """Every row before it has been handled (its output added to the publisher, or it had none)."""

    def skip(self, row: int, stream: str) -> bool:
        """Whether this row's output is already in the spool."""
        return row < self.start or row < self.done.get(stream, 0)

    def added(self, stream: str, row: int) -> None:
        """A row's output goes to the publisher (call before handing it over)."""
        pending = self.pending.get(stream)
        if pending is None:
            pending = self.pending[stream] = deque()
        pending.append(row)

    def emitted(self, stream: str, readings: int) -> str:
        """The publisher writes a message of ``stream`` ahead (``readings`` rows; a dead letter is one): the
        position to commit with it."""
        pending = self.pending.get(stream)
        for _ in range(max(readings, 1)):
            if pending:
                self.done[stream] = pending.popleft() + 1
        # The replay thread may add rows meanwhile: a snapshot of the queues (list() runs under the GIL).
        row = min([self.next_row, *(q[0] for q in list(self.pending.values()) if q)])
        done = {k: v for k, v in list(self.done.items()) if v > row}
        return json.dumps({"input": self.identity, "row": row, "done": done})


class Replayer:
    """Replays one file through a validator into a publisher; ``counters`` counts rows by outcome.

    With ``resume`` the publisher stores a :class:`ReplayPosition` with every message, and :meth:`run` starts
    after the rows whose output the spool already holds (``resume`` needs a started :class:`KafkaPublisher`)."""

    def __init__(
        self,
        path: Path,
        publisher: KafkaPublisher,
        validator: Validator,
        speed: float = 0.0,
        epoch_unit: str = "s",
        source: str | None = None,
        resume: bool = False,
    ) -> None:
        self.path = path
        self.publisher = publisher
        self.validator = validator
        self.speed = speed
        self.epoch_unit = epoch_unit
        self.epoch_fmt = "epoch_ms" if epoch_unit == "ms" else "epoch_s"
        self.source = source or f"replay:{path.name}"
        self.resume = resume
        self.position: ReplayPosition | None = None
        self.counters: Counter[str] = Counter()

    def _track(self) -> ReplayPosition | None:
        if not self.resume:
            return None
        try:
            identity = input_identity(self.path, self.epoch_unit)
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc}") from exc
        position = ReplayPosition(identity, self.publisher.stored_position())
        if position.start or position.done:
            log.info("resuming %s at row %d (its earlier rows are in the spool or on Kafka)", self.path, position.start)
        elif position.resumed_from is not None:
            log.info(
                "%s is not the input of the stored position (%s): replaying from row 0",
                self.path,
                position.resumed_from,
            )
        self.publisher.track_position(position.emitted)
        self.counters["resumed_at_row"] = position.start
        return position

    def run(self, stop: threading.Event | None = None, limit: int | None = None) -> Counter[str]:
        """Replay until the end of the file, ``limit`` rows, or ``stop``; returns the counters."""
        first_ts: datetime | None = None
        started = time.monotonic()
        position = self.position = self._track()
        start = position.start if position is not None else 0
        index = 0  # the file's row number
        for chunk in read_rows(self.path):
            n = len(chunk["machine"])
            if index + n <= start:  # wholly before the resume row: not even parsed
                index += n
                continue
            missing = [None] * n
            columns = [chunk.get(name, missing) for name in (*REQUIRED, *OPTIONAL)]
            for row in zip(*columns, strict=True):
                i, index = index, index + 1
                if position is not None:
                    position.next_row = i
                    if i < start:
                        continue
                if (stop is not None and stop.is_set()) or (limit is not None and self.counters["rows"] >= limit):
                    return self.counters
                self.counters["rows"] += 1
                try:
                    reading = self.to_reading(*row)
                except PayloadError as exc:
                    if position is not None and position.skip(i, position.REJECTED):
                        self.counters["resume_skipped"] += 1
                        continue
                    self._reject(dict(zip((*REQUIRED, *OPTIONAL), row, strict=True)), exc, i)
                    continue
                if position is not None and position.skip(i, reading.machine_id):
                    self.counters["resume_skipped"] += 1
                    continue
                if self.speed > 0:
                    first_ts = first_ts or reading.ts
                    due = started + (reading.ts - first_ts).total_seconds() / self.speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        if stop is not None:
                            stop.wait(delay)
                        else:
                            time.sleep(delay)
                checked = self.validator.check(reading)
                if checked is None:
                    self.counters["rejected"] += 1
                    continue
                if position is not None:
                    position.added(checked.machine_id, i)
                self.publisher.add(checked)
                self.counters["accepted"] += 1
        if position is not None:
            position.next_row = index
        return self.counters

    def to_reading(
        self, machine: Any, sensor: Any, raw_ts: Any, raw_value: Any, unit: Any = None, raw_quality: Any = None
    ) -> Reading:
        """One row (the columns in :data:`REQUIRED` + :data:`OPTIONAL` order) as a Reading, or PayloadError."""
        if not machine or not sensor:
            raise PayloadError("missing_field", "machine and sensor must not be empty")
        fmt = "iso" if isinstance(raw_ts, str) and not _looks_numeric(raw_ts) else self.epoch_fmt
        ts = coerce_ts(raw_ts, fmt, naive_utc=True)
        quality, status = coerce_quality(raw_quality)
        try:
            return Reading(
                machine_id=str(machine),
                sensor=str(sensor),
                ts=ts,
                value=coerce_value(raw_value),
                unit=str(unit) if unit else None,
                quality=quality,
                status_code=status,
                source=self.source,
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            raise PayloadError("invalid", f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None

    def _reject(self, row: dict[str, Any], exc: PayloadError, index: int) -> None:
        self.counters[exc.reason] += 1
        raw = json.dumps(row, default=str).encode()
        letter = dead_letter(
            service="ingest.replay",
            reason=exc.reason,
            error=exc.detail,
            raw=raw,
            source_topic=f"file:{self.path.name}",
            offset=index,
        )
        if self.position is None:
            self.publisher.add_dead_letter(letter)
        else:
            self.position.added(ReplayPosition.REJECTED, index)
            self.publisher.add_dead_letter(letter, stream=ReplayPosition.REJECTED)


def _looks_numeric(text: str) -> bool:
    """An epoch number rather than ISO 8601 (no exception on the common ISO path: this runs per row)."""
    body = text.strip().lstrip("-")
    return body.replace(".", "", 1).isdigit()


def label_due(event: MaintenanceEvent, windows: WindowConfig) -> float:
    """When (event time, epoch seconds) a maintenance record is delivered in a replay or a backtest: one window
    after the window holding it has closed (its end plus the grace), so every window it labels was predicted first
    (the extra window leaves the feature worker time to hand the closing window on, as a record written after a
    failure comes later than the failure's last readings)."""
    return event.ts.timestamp() + 2 * windows.size_s + windows.grace_s


class MappedReplayer:
    """Replays files read by a ``[[sources.file]]`` mapping, in event-time order, with maintenance records.

    With ``resume`` it resumes like :class:`Replayer`: rows are numbered in the order they are published (the
    files' refused rows first, as dead letters, then the readings of all files merged by event time, a stable
    sort: the same inputs give the same numbers), and the spool's stored position covers the same inputs when
    every file (path, size, modification time, first 64 KiB), the source's name and its mapping are the same.
    Maintenance records due before the resumed row are sent again (the model service applies a record once)."""

    def __init__(
        self,
        config: VigilConfig,
        source: FileSource,
        publisher: KafkaPublisher,
        validator: Validator,
        speed: float = 0.0,
        maintenance: list[MaintenanceEvent] | None = None,
        producer: Any = None,
        resume: bool = False,
    ) -> None:
        self.config = config
        self.source = source
        self.publisher = publisher
        self.validator = validator
        self.speed = speed
        self.maintenance = sorted(maintenance or [], key=lambda e: e.ts)
        self.producer = producer
        self.resume = resume
        machines = {m.id: set(m.sensors) for m in config.machines_by_id.values()}
        self.reader = TableReader(source.mapping, machines, delimiter=source.delimiter, encoding=source.encoding)
        self.counters: Counter[str] = Counter()
        self._last = -math.inf

    def _track(self, paths: list[Path]) -> ReplayPosition | None:
        if not self.resume:
            return None
        try:
            files = [input_identity(p) for p in paths]
        except OSError as exc:
            raise SourceError(f"cannot read {exc.filename}: {exc}") from exc
        identity = {"files": files, "source": self.source.name, "mapping": self.source.model_dump(mode="json")}
        # JSON-normal, as it comes back from the spool (tuples become lists).
        position = ReplayPosition(json.loads(json.dumps(identity)), self.publisher.stored_position())
        names = ", ".join(str(p) for p in paths)
        if position.start or position.done:
            log.info("resuming %s at row %d (its earlier rows are in the spool or on Kafka)", names, position.start)
        elif position.resumed_from is not None:
            log.info("%s are not the input of the stored position: replaying from row 0", names)
        self.publisher.track_position(position.emitted)
        self.counters["resumed_at_row"] = position.start
        return position

    def run(self, paths: list[Path], stop: threading.Event | None = None, limit: int | None = None) -> Counter[str]:
        """Replay ``paths`` (at most ``limit`` readings) with the maintenance records; returns the counters."""
        frames: list[Frame] = []
        letters: list[Any] = []
        for path in paths:
            for frame, refusals in self.reader.read(path):
                frames.append(frame)
                letters += [self._refusal_letter(path, r) for r in refusals]
        order_source = f"replay:{self.source.name}"
        if frames:
            machine = np.concatenate([f.machine for f in frames])
            sensor = np.concatenate([f.sensor for f in frames])
            ts = np.concatenate([f.ts for f in frames])
            value = np.concatenate([f.value for f in frames])
            status = np.concatenate([f.status for f in frames])
            order = np.argsort(ts, kind="stable")
            merged = Frame(machine[order], sensor[order], ts[order], value[order], status[order])
        else:
            merged = Frame(*(np.empty(0, dtype=d) for d in (object, object, np.float64, np.float64, np.uint32)))
        position = self._track(paths)
        row = 0
        for letter in letters:
            i, row = row, row + 1
            if position is None:
                self.publisher.add_dead_letter(letter)
                continue
            position.next_row = i
            if position.skip(i, ReplayPosition.REJECTED):
                self.counters["resume_skipped"] += 1
                continue
            position.added(ReplayPosition.REJECTED, i)
            self.publisher.add_dead_letter(letter, stream=ReplayPosition.REJECTED)
        pending = list(self.maintenance)
        started = time.monotonic()
        first: float | None = None
        for reading in merged.readings(order_source):
            i, row = row, row + 1
            if position is not None:
                position.next_row = i
            if (stop is not None and stop.is_set()) or (limit is not None and self.counters["readings"] >= limit):
                break
            self.counters["readings"] += 1
            t = self._last = reading.ts.timestamp()
            while pending and label_due(pending[0], self.config.windows) <= t:
                self._send_maintenance(pending.pop(0))
            if position is not None and position.skip(i, reading.machine_id):
                self.counters["resume_skipped"] += 1
                continue
            if self.speed > 0:
                first = t if first is None else first
                delay = started + (t - first) / self.speed - time.monotonic()
                if delay > 0:
                    (stop.wait if stop is not None else time.sleep)(delay)
            checked = self.validator.check(reading)
            if checked is None:
                self.counters["rejected"] += 1
                continue
            if position is not None:
                position.added(checked.machine_id, i)
            self.publisher.add(checked)
            self.counters["accepted"] += 1
        else:
            if position is not None:
                position.next_row = row
        if not (stop is not None and stop.is_set()):
            self.publisher.flush()
            for event in pending if limit is None else [e for e in pending if e.ts.timestamp() <= self._last]:
                self._send_maintenance(event)
        if self.producer is not None:
            self.producer.flush(timeout=60)
        return self.counters

    def _refusal_letter(self, path: Path, r: Refusal) -> Any:
        return dead_letter(
            service="ingest.replay",
            reason=r.reason,
            error=f"row {r.row}, column {r.column}: {r.detail}",
            raw=r.raw_bytes(),
            source_topic=f"file:{path.name}",
            offset=r.row,
        )

    def _send_maintenance(self, event: MaintenanceEvent) -> None:
        if self.producer is None:
            return
        # The readings before it must be on their topic first: the record labels them.
        self.publisher.flush()
        self.producer.send(self.config.topics.maintenance, key=machine_key(event.machine_id), value=encode(event))
        self.counters["maintenance"] += 1


def main(argv: list[str]) -> int:
    """``vigil collect replay FILE``: replay a CSV/Parquet history into Kafka."""
    from ingest.collector_cli import ensure_reading_topics, load_or_explain

    parser = argparse.ArgumentParser(prog="vigil collect replay", description=main.__doc__)
    parser.add_argument(
        "file", type=Path, nargs="+", help=".csv or .parquet files (columns machine, sensor, ts, value, ...)"
    )
    parser.add_argument("--source", help="read the files with this [[sources.file]] mapping (default: the first one)")
    parser.add_argument("--maintenance", type=Path, nargs="*", default=[], help="CMMS exports replayed in time order")
    parser.add_argument("--maintenance-source", help="the [[sources.maintenance]] entry (default: the only one)")
    parser.add_argument("--config", help="plant configuration (default: $VIGIL_CONFIG, then the example)")
    parser.add_argument("--speed", type=float, default=0.0, help="0 = as fast as possible; 60 = 60x real time")
    parser.add_argument("--epoch-unit", choices=("s", "ms"), default="s", help="unit of numeric timestamps")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many rows")
    parser.add_argument(
        "--from-start", action="store_true", help="replay from the first row, not from the spool's stored position"
    )
    args = parser.parse_args(argv)
    if args.speed < 0:
        parser.error("--speed must be >= 0")
    config = load_or_explain(args.config)
    if config is None:
        return 2
    ensure_reading_topics(config)
    validator = Validator(config)
    if args.source is not None or config.sources.file or args.maintenance or _contract_names(args.file[0]):
        return _mapped(args, config, validator)
    if len(args.file) > 1:
        parser.error("several files need a [[sources.file]] mapping (--source)")
    args.file = args.file[0]
    publisher = KafkaPublisher(
        config.kafka, config.topics, config.spool, config.publish, source=f"replay:{args.file.name}"
    )
    replayer = Replayer(
        args.file, publisher, validator, speed=args.speed, epoch_unit=args.epoch_unit, resume=not args.from_start
    )
    started = time.monotonic()
    publisher.start()
    try:
        counters = replayer.run(limit=args.limit)
    except SourceError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 1
    finally:
        publisher.close()
    elapsed = time.monotonic() - started
    if counters["resumed_at_row"] and not counters["rows"]:
        log.warning(
            "%s was replayed to its end before (resume position: row %d): nothing was published; "
            "--from-start replays it again",
            args.file,
            counters["resumed_at_row"],
        )
    print(  # noqa: T201
        json.dumps(
            {
                "file": str(args.file),
                "rows": counters["rows"],
                "seconds": round(elapsed, 3),
                "rows_per_s": round(counters["rows"] / elapsed, 1) if elapsed > 0 else None,
                "replay": dict(counters),
                "validation": dict(validator.counters),
                "publisher": publisher.counters.as_dict(),
            }
        )
    )
    return 0


def _mapped(args: argparse.Namespace, config: VigilConfig, validator: Validator) -> int:
    """The replay through a ``[[sources.file]]`` mapping, with maintenance records interleaved."""
    from ingest.maintenance import pick_source, read_file
    from vigil.bus import TopicSpec, ensure_topics, make_producer

    try:
        source = _file_source(config, args.source, args.file[0])
        events: list[MaintenanceEvent] = []
        letters: list[Any] = []
        msummary: Counter[str] = Counter()
        if args.maintenance:
            msource = pick_source(config, args.maintenance_source)
            for path in args.maintenance:
                got = read_file(path, msource, set(config.machines_by_id))
                events += got.events
                msummary.update(r.reason for r in got.refusals)
                letters += [r.dead_letter(f"file:{path.name}") for r in got.refusals]
    except SourceError as exc:
        print(f"vigil collect replay: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    ensure_topics(config.kafka, [TopicSpec(config.topics.maintenance, config.kafka.partitions)])
    producer = make_producer(config.kafka) if events else None
    publisher = KafkaPublisher(
        config.kafka, config.topics, config.spool, config.publish, source=f"replay:{source.name}"
    )
    replayer = MappedReplayer(
        config, source, publisher, validator, args.speed, events, producer, resume=not args.from_start
    )
    started = time.monotonic()
    publisher.start()
    for letter in letters:
        publisher.add_dead_letter(letter)
    try:
        counters = replayer.run(list(args.file), limit=args.limit)
    except SourceError as exc:
        print(f"vigil collect replay: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        publisher.close()
        if producer is not None:
            producer.close()
    refused = {k: v for k, v in replayer.reader.counters.items() if k not in ("rows", "readings")}
    print(  # noqa: T201
        json.dumps(
            {
                "files": [str(p) for p in args.file],
                "source": source.name,
                "rows": replayer.reader.counters["rows"],
                "readings": replayer.reader.counters["readings"],
                "refused": refused,
                "refusals": [r.as_dict() for r in replayer.reader.refusals[:20]],
                "seconds": round(time.monotonic() - started, 3),
                "replay": dict(counters),
                "maintenance": {"events": len(events), "refused": dict(msummary)},
                "validation": dict(validator.counters),
                "publisher": publisher.counters.as_dict(),
            }
        )
    )
    return 0


def _contract_names(path: Path) -> ReadingMapping | None:
    """A long CSV that names its columns as the contract does (``machine_id``, ``sensor``, ``ts``/``time``,
    ``value``) rather than this collector's ``machine``: read it by the mapping those names imply."""
    if path.suffix.lower() not in (".csv", ".txt"):
        return None
    try:
        with path.open() as handle:
            header = {h.strip() for h in handle.readline().split(",")}
    except OSError:
        return None
    if "machine" in header or "machine_id" not in header:
        return None
    ts = next((c for c in ("ts", "time", "timestamp") if c in header), "ts")
    quality = "quality" if "quality" in header else None
    return ReadingMapping(machine="machine_id", time=TimeSpec(column=ts), quality=quality)


def _file_source(config: VigilConfig, name: str | None, path: Path | None = None) -> FileSource:
    configured = config.sources.file
    if name is None:
        if configured:
            return configured[0]
        implied = _contract_names(path) if path is not None else None
        return FileSource(name="default", mapping=implied) if implied is not None else FileSource(name="default")
    for source in configured:
        if source.name == name:
            return source
    names = ", ".join(s.name for s in configured) or "none"
    raise SourceError(f"no [[sources.file]] named {name!r} (configured: {names})")
