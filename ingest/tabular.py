"""Historian exports (CSV/Parquet, long or wide) read by a :class:`~vigil.config.mapping.ReadingMapping` into columns.

A file is read in chunks of rows; each chunk becomes one :class:`Frame` (one reading per element: machine,
sensor, event time in epoch seconds, value, OPC UA status code) and the :class:`Refusal`\\ s of its bad cells and
rows, each naming the row (as a spreadsheet numbers it: the header is row 1), the column and the reason. Parsing
is vectorised with pandas, so a 90-day, 30-machine minute export reads in seconds; the replay collector turns a
frame into :class:`~vigil.contracts.Reading`\\ s, the backtest hands its columns straight to the window engine.

Refusals: ``bad_timestamp`` (the row's time cannot be read, or a local time that does not exist), ``wrong_type``
(a value that is not a number; the rest of the row is kept), ``unknown_tag`` (long layout: a tag not in
``tags``), ``unknown_machine``, ``unknown_sensor``, ``missing_field`` (no machine or sensor in the row). A wide
column that maps to nothing is counted once in ``unmapped_columns``, not per row.

>>> import tempfile, pathlib
>>> from vigil.config.mapping import ReadingMapping, TagSpec, TimeSpec
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "h.csv").write_text("Time;P1_T;P1_F;Note\\n01.03.2026 10:00:00;98.6;12,5;x\\nbad;99;#VALUE!;\\n")
>>> mapping = ReadingMapping(layout="wide", machine=None, sensor=None, decimal=",", ignore=["Note"],
...     time=TimeSpec(column="Time", format="%d.%m.%Y %H:%M:%S", zone="Europe/Berlin"),
...     tags={"P1_T": TagSpec(machine="PMP-001", sensor="bearing_temp", scale=5 / 9, offset=-160 / 9),
...           "P1_F": TagSpec(machine="PMP-001", sensor="flow")})
>>> reader = TableReader(mapping, {"PMP-001": {"bearing_temp", "flow"}}, delimiter=";")
>>> [(f.sensor.tolist(), f.ts.tolist(), f.value.round(2).tolist()) for f, _ in reader.read(d / "h.csv")]
[(['bearing_temp', 'flow'], [1772355600.0, 1772355600.0], [37.0, 12.5])]
>>> [(r.row, r.column, r.reason) for r in reader.refusals]
[(3, 'Time', 'bad_timestamp')]
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.exceptions import SourceError
from vigil.config.mapping import ReadingMapping, TagSpec, TimeSpec
from vigil.contracts import Quality, Reading

log = logging.getLogger(__name__)

_GOOD, _UNCERTAIN, _BAD = 0, 0x40000000, 0x80000000
_QUALITY_WORDS = {"good": _GOOD, "uncertain": _UNCERTAIN, "bad": _BAD}


@dataclass(frozen=True)
class Refusal:
    """One bad cell or row: where it is and why it was refused."""

    row: int
    column: str
    reason: str
    detail: str
    raw: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason, "detail": self.detail}

    def raw_bytes(self) -> bytes:
        return json.dumps(self.raw, default=str).encode()


@dataclass
class Frame:
    """Readings of one chunk as columns; ``value`` is NaN where the source had no number."""

    machine: npt.NDArray[np.object_]
    sensor: npt.NDArray[np.object_]
    ts: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]
    status: npt.NDArray[np.uint32]
    unit: npt.NDArray[np.object_] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def readings(self, source: str) -> Iterator[Reading]:
        """The frame as contract readings (the replay collector's path to Kafka)."""
        units = self.unit if self.unit is not None else [None] * len(self)
        for machine, sensor, ts, value, status, unit in zip(
            self.machine, self.sensor, self.ts, self.value, self.status, units, strict=True
        ):
            code = int(status)
            yield Reading.model_construct(
                machine_id=machine,
                sensor=sensor,
                ts=_utc(float(ts)),
                value=None if value != value else float(value),
                unit=unit,
                quality=Quality.from_status_code(code),
                status_code=code,
                source=source,
                flags=(),
                server_ts=None,
            )


def _utc(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


class TableReader:
    """Reads files by one mapping; ``refusals`` and ``counters`` accumulate over every file read."""

    def __init__(
        self,
        mapping: ReadingMapping,
        machines: Mapping[str, set[str]],
        *,
        delimiter: str = ",",
        encoding: str = "utf-8",
        chunk_rows: int = 100_000,
        chunk_cells: int = 1_000_000,
        keep_refusals: int = 1_000,
    ) -> None:
        self.mapping = mapping
        self.machines = {m: set(s) for m, s in machines.items()}
        self.delimiter = delimiter
        self.encoding = encoding
        self.chunk_rows = chunk_rows
        self.chunk_cells = chunk_cells
        self.keep_refusals = keep_refusals
        self.refusals: list[Refusal] = []
        """The first ``keep_refusals`` refusals (all are counted in ``counters``)."""
        self.counters: Counter[str] = Counter()
        self.unmapped_columns: set[str] = set()

    # ----------------------------------------------------------------------------------------------- reading

    def read(self, path: Path) -> Iterator[tuple[Frame, list[Refusal]]]:
        """Each chunk of ``path`` as a frame and its refusals (also added to ``self.refusals``)."""
        machine_from_name = self._machine_from_name(path)
        row0 = 2  # the first data row, as a spreadsheet numbers it
        self._skipped: list[int] = []
        for chunk in self._chunks(path):
            frame, refusals = self.parse(chunk, row0, machine_from_name)
            if self._skipped:
                refusals = [replace(r, row=self._line(r.row)) for r in refusals]
            row0 += len(chunk)
            self.counters["rows"] += len(chunk)
            self.counters["readings"] += len(frame)
            for r in refusals:
                self.counters[r.reason] += 1
                if len(self.refusals) < self.keep_refusals:
                    self.refusals.append(r)
            yield frame, refusals

    def _machine_from_name(self, path: Path) -> str | None:
        pattern = self.mapping.machine_from_name
        if pattern is None:
            return None
        match = re.search(pattern, path.name)
        if match is None:
            raise SourceError(f"{path.name}: machine_from_name {pattern!r} does not match the file name")
        return match.group("machine")

    def _chunks(self, path: Path) -> Iterator[Any]:
        import pyarrow as pa

        suffix = path.suffix.lower()
        try:
            if suffix in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                file = pq.ParquetFile(path)
                self._check_columns(path, list(file.schema_arrow.names))
                for batch in file.iter_batches(batch_size=self.chunk_rows):
                    yield batch.to_pandas()
            elif suffix in (".csv", ".txt"):
                yield from self._csv(path)
            else:
                raise SourceError(f"{path}: unknown file type {suffix!r} (use .csv or .parquet)")
        except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
            raise SourceError(f"cannot read {path}: {exc}") from exc

    def _csv(self, path: Path) -> Iterator[Any]:
        """Every column as text (type inference on a first block would fail on a later odd row); a row with too
        many fields is refused with its line (pandas reports it), not dropped silently."""
        import warnings

        import pandas as pd

        self._skipped = []
        columns = len(pd.read_csv(path, sep=self.delimiter, nrows=0, encoding=self.encoding).columns)
        # Every cell of a chunk is a Python string until parsed: bound the cells, not the rows (a wide export of
        # 30 pumps has 181 columns; 100,000 of its rows held ~1 GB of strings).
        rows = max(1_000, min(self.chunk_rows, self.chunk_cells // max(columns, 1)))
        with (
            warnings.catch_warnings(record=True) as caught,
            pd.read_csv(
                path,
                sep=self.delimiter,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding=self.encoding,
                chunksize=rows,
                on_bad_lines="warn",
                engine="c",
            ) as reader,
        ):
            warnings.simplefilter("always")
            first = True
            for frame in reader:
                if first:
                    self._check_columns(path, [str(c) for c in frame.columns])
                    first = False
                self._take_warnings(caught)
                yield frame
            self._take_warnings(caught)

    def _take_warnings(self, caught: list[Any]) -> None:
        broken: list[Refusal] = []
        for w in caught:
            for match in re.finditer(r"Skipping line (\d+): (.*)", str(w.message)):
                line = int(match.group(1))
                self._skipped.append(line)
                broken.append(Refusal(line, "", "malformed_row", match.group(2).strip()))
        caught.clear()
        self._skipped.sort()
        self._note(broken)

    def _line(self, row: int) -> int:
        """A data row number counted over the rows pandas kept, as the file's line number."""
        for skipped in self._skipped:
            if skipped <= row:
                row += 1
            else:
                break
        return row

    def _note(self, refusals: list[Refusal]) -> None:
        for r in refusals:
            self.counters[r.reason] += 1
            if len(self.refusals) < self.keep_refusals:
                self.refusals.append(r)

    def _check_columns(self, path: Path, names: list[str]) -> None:
        m = self.mapping
        wanted = {"time.column": m.time.column}
        if m.layout == "long":
            wanted["value"] = m.value
            if m.tag is not None:
                wanted["tag"] = m.tag
            else:
                wanted["sensor"] = m.sensor or ""
                if m.machine_from_name is None:
                    wanted["machine"] = m.machine or ""
        elif m.machine is not None and not m.tags and not m.tag_pattern:
            wanted["machine"] = m.machine
        missing = [f"{column!r} (mapping key {key})" for key, column in wanted.items() if column not in names]
        if missing:
            raise SourceError(f"{path}: missing column(s) {', '.join(missing)}; the file has {', '.join(names[:20])}")

    # ----------------------------------------------------------------------------------------------- parsing

    def parse(self, chunk: Any, row0: int, machine_from_name: str | None = None) -> tuple[Frame, list[Refusal]]:
        """One chunk (a pandas DataFrame of text or typed columns) as a frame and its refusals."""
        m = self.mapping
        refusals: list[Refusal] = []
        ts, bad_ts = parse_times(chunk[m.time.column], m.time)
        rows = np.arange(row0, row0 + len(chunk))
        for i in np.flatnonzero(bad_ts):
            raw = chunk[m.time.column].iloc[i]
            refusals.append(
                Refusal(
                    int(rows[i]),
                    m.time.column,
                    "bad_timestamp",
                    f"{str(raw)[:60]!r} is not a time in format {m.time.format!r} (zone {m.time.zone})",
                    _row(chunk, i),
                )
            )
        if m.layout == "wide":
            parts = self._wide(chunk, ts, ~bad_ts, rows, machine_from_name, refusals)
        else:
            parts = self._long(chunk, ts, ~bad_ts, rows, machine_from_name, refusals)
        refusals.sort(key=lambda r: r.row)
        if not parts:
            empty = np.empty(0)
            return Frame(empty.astype(object), empty.astype(object), empty, empty, empty.astype(np.uint32)), refusals
        frame = Frame(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
            np.concatenate([p[4] for p in parts]),
        )
        return frame, refusals

    def _wide(
        self,
        chunk: Any,
        ts: npt.NDArray[np.float64],
        ok: npt.NDArray[np.bool_],
        rows: npt.NDArray[np.int64],
        machine_from_name: str | None,
        refusals: list[Refusal],
    ) -> list[tuple[Any, ...]]:
        m = self.mapping
        skip = {m.time.column, *(m.ignore or ())}
        if m.machine is not None:
            skip.add(m.machine)
        if m.quality is not None:
            skip.add(m.quality)
        machines_col: npt.NDArray[np.object_] | None = None
        if m.machine is not None and m.machine in chunk.columns:
            raw = chunk[m.machine].astype(object).to_numpy()
            machines_col = np.array([m.machines.get(x, x) if isinstance(x, str) else None for x in raw], dtype=object)
        status = _status(chunk[m.quality]) if m.quality is not None and m.quality in chunk.columns else None
        parts: list[tuple[Any, ...]] = []
        for column in chunk.columns:
            if column in skip:
                continue
            spec: TagSpec | None = m.resolve_tag(str(column))
            if spec is not None:
                machine: Any = spec.machine
                sensor = spec.sensor
            elif machines_col is not None or machine_from_name is not None:
                machine = (
                    machines_col
                    if machines_col is not None
                    else m.machines.get(machine_from_name or "", machine_from_name)
                )
                sensor = m.sensors.get(column, column)
            else:
                if column not in self.unmapped_columns:
                    self.unmapped_columns.add(column)
                    self.counters["unmapped_columns"] += 1
                    log.warning("column %r maps to no machine and sensor (add it to tags or ignore)", column)
                continue
            values, present, wrong = _numbers(chunk[column], m.decimal)
            refusals += _not_numbers(chunk, column, wrong & ok, rows)
            keep = present & ok
            if spec is not None:
                values = values * spec.scale + spec.offset
            if isinstance(machine, np.ndarray):
                machine_arr = machine[keep]
            else:
                machine_arr = np.full(int(keep.sum()), machine, dtype=object)
            part = self._known(
                machine_arr,
                np.full(len(machine_arr), sensor, dtype=object),
                ts[keep],
                values[keep],
                status[keep] if status is not None else np.zeros(len(machine_arr), np.uint32),
                rows[keep],
                column,
                refusals,
            )
            if part is not None:
                parts.append(part)
        return parts

    def _long(
        self,
        chunk: Any,
        ts: npt.NDArray[np.float64],
        ok: npt.NDArray[np.bool_],
        rows: npt.NDArray[np.int64],
        machine_from_name: str | None,
        refusals: list[Refusal],
    ) -> list[tuple[Any, ...]]:
        m = self.mapping
        values, present, wrong = _numbers(chunk[m.value], m.decimal)
        refusals += _not_numbers(chunk, m.value, wrong & ok, rows)
        del present  # an empty value is a reading without a value (NaN), as the replay collector has always read it
        keep = ok & ~wrong
        n = len(chunk)
        if m.tag is not None:
            tags = chunk[m.tag].astype(object).to_numpy()
            machine = np.empty(n, dtype=object)
            sensor = np.empty(n, dtype=object)
            scale = np.ones(n)
            offset = np.zeros(n)
            for tag in set(tags[keep].tolist()):
                spec = m.resolve_tag(tag) if isinstance(tag, str) else None
                where = tags == tag
                if spec is None:
                    for i in np.flatnonzero(where & keep):
                        refusals.append(
                            Refusal(
                                int(rows[i]),
                                m.tag,
                                "unknown_tag",
                                f"tag {str(tag)[:60]!r} is not in mapping.tags",
                                _row(chunk, i),
                            )
                        )
                    keep &= ~where
                    continue
                machine[where], sensor[where], scale[where], offset[where] = (
                    spec.machine,
                    spec.sensor,
                    spec.scale,
                    spec.offset,
                )
            values = values * scale + offset
        else:
            if m.machine_from_name is not None and machine_from_name is not None:
                machine = np.full(n, m.machines.get(machine_from_name, machine_from_name), dtype=object)
            else:
                raw = chunk[m.machine].astype(object).to_numpy()
                machine = np.array([m.machines.get(x, x) if isinstance(x, str) else None for x in raw], dtype=object)
            raw_s = chunk[m.sensor].astype(object).to_numpy()
            sensor = np.array([m.sensors.get(x, x) if isinstance(x, str) else None for x in raw_s], dtype=object)
            missing = keep & ((machine == None) | (sensor == None))  # noqa: E711 - elementwise on object arrays
            for i in np.flatnonzero(missing):
                refusals.append(
                    Refusal(
                        int(rows[i]),
                        m.machine or m.sensor or "",
                        "missing_field",
                        "no machine or sensor",
                        _row(chunk, i),
                    )
                )
            keep &= ~missing
        status = (
            _status(chunk[m.quality])
            if m.quality is not None and m.quality in chunk.columns
            else np.zeros(n, np.uint32)
        )
        bad_quality = status == np.uint32(0xFFFFFFFF)
        for i in np.flatnonzero(bad_quality & keep):
            refusals.append(
                Refusal(
                    int(rows[i]),
                    m.quality or "",
                    "wrong_type",
                    f"quality {str(chunk[m.quality].iloc[i])[:40]!r} is not good/uncertain/bad or a status code",
                    _row(chunk, i),
                )
            )
        keep &= ~bad_quality
        part = self._known(
            machine[keep],
            sensor[keep],
            ts[keep],
            values[keep],
            status[keep],
            rows[keep],
            m.tag or m.sensor or "",
            refusals,
        )
        return [part] if part is not None else []

    def _known(
        self,
        machine: npt.NDArray[np.object_],
        sensor: npt.NDArray[np.object_],
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        status: npt.NDArray[np.uint32],
        rows: npt.NDArray[np.int64],
        column: str,
        refusals: list[Refusal],
    ) -> tuple[Any, ...] | None:
        """Keeps readings of configured machines and sensors; refuses the rest with the row."""
        if not len(machine):
            return None
        keep = np.ones(len(machine), dtype=bool)
        for name in set(machine.tolist()):
            where = machine == name
            sensors = self.machines.get(name)
            if sensors is None:
                for i in np.flatnonzero(where):
                    refusals.append(
                        Refusal(
                            int(rows[i]),
                            column,
                            "unknown_machine",
                            f"machine {str(name)[:60]!r} is not in [[machines]]",
                        )
                    )
                keep &= ~where
                continue
            for s in set(sensor[where].tolist()):
                if s not in sensors:
                    bad = where & (sensor == s)
                    for i in np.flatnonzero(bad):
                        refusals.append(
                            Refusal(
                                int(rows[i]),
                                column,
                                "unknown_sensor",
                                f"machine {name!r} has no sensor {str(s)[:60]!r}",
                            )
                        )
                    keep &= ~bad
        if not keep.any():
            return None
        return machine[keep], sensor[keep], ts[keep], values[keep], status[keep]


# ----------------------------------------------------------------------------------------------- vectorised cells


def parse_times(column: Any, spec: TimeSpec) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Epoch seconds of a column and a mask of the cells that could not be read (NaN there).

    >>> import pandas as pd
    >>> ts, bad = parse_times(pd.Series(["2026-03-29 02:30", "2026-03-29 03:30", "x"]),
    ...                       TimeSpec(format="%Y-%m-%d %H:%M", zone="Europe/Berlin"))
    >>> bad.tolist(), float(ts[1])
    ([True, False, True], 1774747800.0)
    """
    import pandas as pd

    n = len(column)
    if spec.format in ("epoch_s", "epoch_ms"):
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if spec.format == "epoch_ms":
            numbers = numbers / 1000.0
        bad = ~np.isfinite(numbers)
        return np.where(bad, np.nan, numbers), bad
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        parsed = (
            column
            if getattr(column.dt, "tz", None) is not None
            else column.dt.tz_localize(spec.zone, ambiguous=np.ones(n, bool), nonexistent="NaT")
        )
        return _epoch(parsed)
    text = column.astype(object).where(column.notna(), None)
    if spec.format == "iso":
        strings = text.astype(str)
        offset = strings.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True) & text.notna()
        out = np.full(n, np.nan)
        if offset.any():
            aware = pd.to_datetime(text[offset], format="ISO8601", utc=True, errors="coerce")
            out[offset.to_numpy()] = _epoch(aware)[0]
        naive = ~offset
        if naive.any():
            parsed = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
            local = parsed.dt.tz_localize(spec.zone, ambiguous=np.ones(int(naive.sum()), bool), nonexistent="NaT")
            out[naive.to_numpy()] = _epoch(local)[0]
        return out, ~np.isfinite(out)
    parsed = pd.to_datetime(text, format=spec.format, errors="coerce")
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize(spec.zone, ambiguous=np.ones(n, bool), nonexistent="NaT")
    return _epoch(parsed)


def _epoch(parsed: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    utc = parsed.dt.tz_convert("UTC").dt.as_unit("ns")
    nat = utc.isna().to_numpy()
    ns = utc.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    out = ns.astype(np.float64) / 1e9
    out[nat] = np.nan
    return out, nat


def _numbers(column: Any, decimal: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Values, a mask of cells holding something, and a mask of cells holding something that is not a number.

    Booleans are not numbers (a switch state is not a sensor reading)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column.dtype):
        present = column.notna().to_numpy()
        return np.full(len(column), np.nan), present, present
    if pd.api.types.is_numeric_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        present = column.notna().to_numpy()
        return values, present, np.zeros(len(column), dtype=bool)
    text = column.astype(object)
    present = text.notna().to_numpy() & (text.astype(str).str.strip() != "").to_numpy()
    cleaned = text.str.strip()
    if decimal == ",":
        cleaned = cleaned.str.replace(",", ".", regex=False)
    values = np.array(pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    lowered = cleaned.str.lower()
    spelled = lowered.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"]).to_numpy()
    wrong = present & np.isnan(values) & ~spelled
    boolean = lowered.isin(["true", "false"]).to_numpy()
    wrong |= present & boolean
    values[boolean] = np.nan
    return values, present & ~wrong, wrong


def _not_numbers(chunk: Any, column: str, where: npt.NDArray[np.bool_], rows: npt.NDArray[np.int64]) -> list[Refusal]:
    """``wrong_type`` refusals of the cells of ``column`` marked in ``where``."""
    return [
        Refusal(
            int(rows[i]), column, "wrong_type", f"{str(chunk[column].iloc[i])[:40]!r} is not a number", _row(chunk, i)
        )
        for i in np.flatnonzero(where)
    ]


def _status(column: Any) -> npt.NDArray[np.uint32]:
    """OPC UA status codes from words or numbers; 0xFFFFFFFF marks a cell that is neither (refused)."""
    out = np.zeros(len(column), dtype=np.uint32)
    for i, raw in enumerate(column.astype(object).to_numpy()):
        if raw is None or (isinstance(raw, float) and raw != raw) or raw == "":
            continue
        text = str(raw).strip().lower()
        if text in _QUALITY_WORDS:
            out[i] = _QUALITY_WORDS[text]
        elif text.isdigit() and int(text) < 0xFFFFFFFF:
            out[i] = int(text)
        else:
            out[i] = 0xFFFFFFFF
    return out


def _row(chunk: Any, i: Any) -> dict[str, Any]:
    return {str(k): v for k, v in chunk.iloc[i].to_dict().items() if not (isinstance(v, float) and v != v)}
