"""Per-machine event-time windows: readings in, feature vectors out. Pure: no Kafka, no clock, no I/O.

Offline use (a replay, a notebook, the models engineer's training set)::

    engine = window_engine(config)          # features.vector: WindowEngine(config, FeatureBuilder(config))
    vectors = []
    for reading in readings:                 # Reading, ReadingBatch or Gap, in arrival order
        vectors += engine.add_message(reading)
    vectors += engine.flush()                # close what is still open (closed_by="shutdown")

The Kafka worker (:mod:`features.service`) wraps exactly this object.

Semantics:

* **Windows** are aligned to the epoch: tumbling ``[k*size, (k+1)*size)`` or hopping ``[k*hop, k*hop+size)``
  (``windows.kind``/``size_s``/``hop_s``). Only windows that received a reading are emitted.
* **Watermark per machine**: the largest event time seen for the machine. A window closes when the watermark
  passes its end plus ``grace_s``. Per machine rather than per partition because machines sharing a partition
  have unrelated clocks and collector delays: a lagging site must not turn another machine's readings late,
  and the state moves with the machine's key anyway.
* **One message, one moment**: the samples of a message (a :class:`ReadingBatch`) arrive together; they are
  judged against the watermark before the message, and the watermark advances after it.
* **Late readings** (every window they belong to is already closed) are counted in :attr:`stats` and kept for
  the caller in :meth:`drain_late` (the worker routes them to the dead-letter topic); never silently dropped.
* **Clock skew**: once the engine knows the wall clock (:meth:`set_clock`, :meth:`tick`), a reading more than
  ``windows.max_clock_skew_s`` ahead of it is refused (counted in ``stats.clock_skew``, handed out by
  :meth:`drain_late` with reason ``clock_skew``) and never moves the watermark.
* **Duplicates** (same machine, sensor and event time) count once: the first to arrive wins.
* **Unusable readings** (bad quality, ``None``/NaN, flagged ``out_of_range``/``not_finite``/``bad_quality``; and
  ``uncertain`` unless ``windows.accept_uncertain``) are kept out of every value feature but counted in
  ``bad_share``.
* **Idle machines**: :meth:`tick` with the wall clock closes the open windows of a machine that sent nothing
  for ``idle_timeout_s`` (``closed_by="wall_clock"``, state ``stale``).
* **Closing a window** builds all its sensors at once: the machine's buffer is one set of columns (sensor code,
  event time, value), a window's readings are selected, de-duplicated and grouped with a few numpy calls and the
  builder computes every aggregation for every sensor together (:class:`~streaming.window_types.WindowColumns`).
* **State** is per machine: :meth:`snapshot_machine` / :meth:`restore_machine` (and the whole engine with
  :meth:`snapshot` / :meth:`restore`); a restored engine continues open windows exactly.

A runnable example is in the docstring of :func:`features.vector.window_engine`, which wires the builder.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streaming.exceptions import StateError
from streaming.window_types import Array, ClosedBy, SensorFeatures, VectorBuilder, WindowColumns
from vigil.config import VigilConfig
from vigil.contracts import FeatureVector, Gap, Quality, Reading, ReadingBatch, ReadingColumns, Sample

UNUSABLE_FLAGS = frozenset({"out_of_range", "not_finite", "bad_quality"})
_STATE_VERSION = 1
_INF = math.inf
_NAN = math.nan
_NO_CODES: npt.NDArray[np.int16] = np.empty(0, dtype=np.int16)
_NO_FLOATS: Array = np.empty(0, dtype=np.float64)
_UNCOUNTED = 256
"""Messages whose unusable readings are counted together (:attr:`WindowEngine.stats`)."""


_LAST_EPOCH = 253402300799.0
"""9999-12-31T23:59:59Z: a window may not end later (a FeatureVector's times are datetimes)."""
_FIRST_EPOCH = -62135596800.0
"""0001-01-01T00:00:00Z: a window may not start earlier."""


@dataclass(frozen=True)
class LateReading:
    """A reading the engine refused: it arrived after every window it belongs to had closed (``late``), or its
    event time was too far ahead of the wall clock (``clock_skew``)."""

    machine_id: str
    sensor: str
    ts: float
    value: float
    """NaN when the reading was unusable."""
    closed_upto: float
    """``late``: the machine's windows were closed up to this event time; ``clock_skew``: the wall clock then
    (epoch seconds)."""
    reason: str = "late"


@dataclass
class EngineStats:
    """Counters since the engine was created (not part of the durable state)."""

    readings: int = 0
    unusable: int = 0
    late: int = 0
    clock_skew: int = 0
    """Readings refused because their event time was more than ``max_clock_skew_s`` ahead of the wall clock."""
    late_unrouted: int = 0
    duplicates: int = 0
    gaps: int = 0
    late_gaps: int = 0
    windows: int = 0
    wall_clock_windows: int = 0
    unknown_machines: Counter[str] = field(default_factory=Counter)
    unknown_sensors: Counter[str] = field(default_factory=Counter)
    """Keyed ``<machine>/<sensor>``."""


class _Machine:
    """One machine's readings of the open windows, plus its clocks.

    The readings are three parallel numpy columns (sensor code, event time, value; NaN marks an unusable value) in
    which each sensor's readings keep their arrival order (sensors may be interleaved or grouped by sensor: only
    the order within a sensor decides which of two duplicates wins), followed by what arrived since the columns
    were last joined: whole messages as they came (their sensor runs and their arrays, by reference) and single
    readings (``tail_*``). Joining costs a few numpy calls whatever the number of messages, so it happens when a
    window closes or the state is read, not once per message (:meth:`WindowEngine._join`).
    """

    __slots__ = (
        "closed_upto",
        "codes",
        "earliest",
        "epoch",
        "gaps",
        "last_wall",
        "next_close",
        "pending_ts",
        "pending_values",
        "previous",
        "run_codes",
        "run_lengths",
        "saved",
        "saved_epoch",
        "tail_codes",
        "tail_ts",
        "tail_values",
        "ts",
        "values",
        "watermark",
    )

    def __init__(self) -> None:
        self.codes: npt.NDArray[np.int16] = _NO_CODES
        self.ts: Array = _NO_FLOATS
        self.values: Array = _NO_FLOATS
        self.run_codes: list[int] = []
        """Sensor code of each run of the pending messages (a run: consecutive readings of one sensor)."""
        self.run_lengths: list[int] = []
        self.pending_ts: list[Array] = []
        self.pending_values: list[Array] = []
        self.tail_codes = array("h")
        self.tail_ts = array("d")
        self.tail_values = array("d")
        self.watermark = -_INF
        self.closed_upto = -_INF
        self.earliest = _INF
        """Smallest event time held (inf when nothing is)."""
        self.next_close = _INF
        """The watermark at which the first open window closes."""
        self.gaps: list[tuple[float, float]] = []
        self.previous: dict[str, SensorFeatures] = {}
        self.last_wall: float | None = None
        self.epoch = 0
        """Bumped whenever readings leave the joined columns or are reordered (a window closing, the state read
        whole): the columns are then no longer what was saved plus readings appended after it."""
        self.saved = -1
        """Length of the joined columns when :meth:`WindowEngine.checkpoint_state` last ran (-1: never)."""
        self.saved_epoch = 0

    def held(self) -> int:
        return len(self.ts) + sum(self.run_lengths) + len(self.tail_ts)


def usable(quality: str, value: float | None, flags: Iterable[str], accept_uncertain: bool) -> bool:
    """Whether a reading may feed value features (it always counts in ``bad_share``)."""
    if value is None or not math.isfinite(value):
        return False
    if quality == Quality.BAD or (quality == Quality.UNCERTAIN and not accept_uncertain):
        return False
    return not any(f in UNUSABLE_FLAGS for f in flags)


def column_arrays(message: ReadingColumns, accept_uncertain: bool) -> tuple[list[str], list[int], Array, Array]:
    """A :class:`ReadingColumns` as :meth:`WindowEngine.add_columns` takes it (unusable values as NaN)."""
    sensors: list[str] = []
    lengths: list[int] = []
    ts: list[float] = []
    values: list[float] = []
    for c in message.columns:
        sensors.append(c.sensor)
        lengths.append(len(c.ts))
        ts += c.ts
        for i, value in enumerate(c.value):
            quality = c.quality[i] if c.quality is not None else Quality.GOOD
            flags = c.flags[i] if c.flags is not None else ()
            ok = value is not None and usable(quality, value, flags, accept_uncertain)
            values.append(float(value) if ok and value is not None else _NAN)
    return sensors, lengths, np.array(ts, dtype=np.float64), np.array(values, dtype=np.float64)


class WindowEngine:
    """Event-time windows for every machine of a configuration. See the module docstring."""

    def __init__(self, config: VigilConfig, builder: VectorBuilder, max_late: int = 10_000) -> None:
        self.config = config
        # Injected rather than constructed here: the builder lives downstream in ``features``.
        self.builder = builder
        self.max_late = max_late
        self._stats = EngineStats()
        self._uncounted: list[Array] = []
        """Value columns of recent messages whose unusable readings are not counted yet (see :attr:`stats`)."""
        w = config.windows
        self._size = w.size_s
        self._hop = w.hop_s if w.kind == "hopping" and w.hop_s else w.size_s
        self._per_reading = math.ceil(self._size / self._hop - 1e-9)
        self._grace = w.grace_s
        self._idle = w.idle_timeout_s
        self._max_skew = w.max_clock_skew_s
        self._horizon = _LAST_EPOCH - self._size
        """Event times above this are refused (wall clock + ``max_clock_skew_s``; until the clock is known, only
        what no window could hold: its window would end after year 9999)."""
        self._floor = _FIRST_EPOCH + self._size
        """Event times below this are refused as late: a window holding them would start before year 1."""
        self._accept_uncertain = w.accept_uncertain
        self._machines: dict[str, _Machine] = {}
        self._sensors: dict[str, dict[str, int]] | None = None
        """Per machine: sensor -> code (its index in the machine's configured sensors)."""
        self._names: dict[str, tuple[str, ...]] = {}
        self._late: list[LateReading] = []
        self._now: float | None = None

    @property
    def stats(self) -> EngineStats:
        """Counters since the engine was created (not part of the durable state)."""
        if self._uncounted:
            self._count_unusable()
        return self._stats

    def _count_unusable(self) -> None:
        # Once for many messages: one numpy pass instead of two calls per message.
        values = np.concatenate(self._uncounted) if len(self._uncounted) > 1 else self._uncounted[0]
        self._uncounted = []
        self._stats.unusable += int(np.count_nonzero(np.isnan(values)))

    # ------------------------------------------------------------------ input
    def add_message(self, message: Reading | ReadingBatch | ReadingColumns | Gap) -> list[FeatureVector]:
        """Any message of a readings topic."""
        if isinstance(message, Gap):
            self.add_gap(message)
            return []
        if isinstance(message, ReadingBatch):
            return self.add_batch(message)
        if isinstance(message, ReadingColumns):
            sensors, lengths, ts, values = column_arrays(message, self._accept_uncertain)
            return self.add_columns(message.machine_id, sensors, lengths, ts, values)
        return self.add(message)

    def add(self, reading: Reading) -> list[FeatureVector]:
        ok = usable(reading.quality, reading.value, reading.flags, self._accept_uncertain)
        value = float(reading.value) if ok and reading.value is not None else _NAN
        return self.add_samples(reading.machine_id, ((reading.sensor, reading.ts.timestamp(), value),))

    def add_batch(self, batch: ReadingBatch) -> list[FeatureVector]:
        return self.add_samples(batch.machine_id, (self._sample(s) for s in batch.samples))

    def _sample(self, s: Sample) -> tuple[str, float, float]:
        ok = usable(s.quality, s.value, s.flags, self._accept_uncertain)
        return s.sensor, s.ts.timestamp(), float(s.value) if ok and s.value is not None else _NAN

    def add_samples(self, machine_id: str, samples: Iterable[tuple[str, float, float]]) -> list[FeatureVector]:
        """The hot path: ``(sensor, event time in epoch seconds, value or NaN when unusable)`` of one machine."""
        out: list[FeatureVector] = []
        stats = self._stats
        # Dictionary lookups first, the method calls only for a machine's first reading: with one reading per
        # record this runs once per reading.
        m = self._machines.get(machine_id)
        if m is None:
            m = self._machine(machine_id)
            if m is None:
                for _ in samples:
                    stats.unknown_machines[machine_id] += 1
                return out
        known = (self._sensors or self._known_sensors())[machine_id]
        codes, times, values_ = m.tail_codes, m.tail_ts, m.tail_values
        readings = unusable = 0
        # The samples of one message arrive together: each is judged late against the watermark as it was
        # before the message, and the watermark moves once, after it. A collector's batch may list its
        # sensors one after the other, each spanning minutes; sample order inside it must not make data late.
        watermark = m.watermark
        newest = watermark
        horizon = self._horizon
        floor = self._floor
        # One loop, locals only: this runs once per reading.
        for sensor, ts, value in samples:
            code = known.get(sensor)
            if code is None:
                stats.unknown_sensors[f"{machine_id}/{sensor}"] += 1
                continue
            readings += 1
            if value != value:  # NaN: unusable
                unusable += 1
            if ts > horizon:
                self._refuse_future(machine_id, sensor, ts, value)
                continue
            if ts < floor:
                self._refuse_ancient(machine_id, sensor, ts, value)
                continue
            if (ts < watermark or ts < m.closed_upto) and self._late_check(machine_id, m, sensor, ts, value):
                continue
            codes.append(code)
            times.append(ts)
            values_.append(value)
            if ts > newest:
                newest = ts
            if ts < m.earliest:
                m.earliest = ts
                m.next_close = self._window_end(self._first_open(m)) + self._grace
        m.watermark = newest
        if newest >= m.next_close:
            self._advance(machine_id, m, out)
        stats.readings += readings
        stats.unusable += unusable
        m.last_wall = self._now
        return out

    def add_sample(self, machine_id: str, sensor: str, ts: float, value: float) -> Sequence[FeatureVector]:
        """One reading: the same as ``add_samples(machine_id, [(sensor, ts, value)])``, without the loop's set-up.

        With one reading per Kafka record this runs once per record, and the set-up of :meth:`add_samples` (the
        generator, the locals, the list) cost as much as the reading itself. Returns an empty tuple, not a new
        list, when no window closed. ``test_windows`` checks it against :meth:`add_samples` reading by reading.
        """
        m = self._machines.get(machine_id)
        if m is None:
            return self.add_samples(machine_id, ((sensor, ts, value),))  # first reading, or an unknown machine
        code = (self._sensors or self._known_sensors())[machine_id].get(sensor)
        stats = self._stats
        if code is None:
            stats.unknown_sensors[f"{machine_id}/{sensor}"] += 1
        else:
            stats.readings += 1
            if value != value:
                stats.unusable += 1
            if ts > self._horizon:
                self._refuse_future(machine_id, sensor, ts, value)
            elif ts < self._floor:
                self._refuse_ancient(machine_id, sensor, ts, value)
            elif not ((ts < m.watermark or ts < m.closed_upto) and self._late_check(machine_id, m, sensor, ts, value)):
                m.tail_codes.append(code)
                m.tail_ts.append(ts)
                m.tail_values.append(value)
                if ts > m.watermark:
                    m.watermark = ts
                if ts < m.earliest:
                    m.earliest = ts
                    m.next_close = self._window_end(self._first_open(m)) + self._grace
        m.last_wall = self._now
        if m.watermark >= m.next_close:
            out: list[FeatureVector] = []
            self._advance(machine_id, m, out)
            return out
        return ()

    def add_columns(
        self,
        machine_id: str,
        sensors: Sequence[str],
        lengths: Sequence[int],
        ts: Array,
        values: Array,
        span: tuple[float, float] | None = None,
    ) -> list[FeatureVector]:
        """The bulk path: one message of one machine as columns. ``ts``/``values`` (float64) hold ``lengths[0]``
        readings of ``sensors[0]``, then ``lengths[1]`` of ``sensors[1]``, ...; values are NaN where unusable.
        ``span`` is ``(ts.min(), ts.max())`` when the caller knows it already.

        Same semantics as :meth:`add_samples` (one message, one moment), vectorised with numpy. The arrays are
        kept as given, not copied, until their window closes: the caller must not modify them afterwards.
        """
        out: list[FeatureVector] = []
        stats = self._stats
        m = self._machine(machine_id)
        if m is None:
            stats.unknown_machines[machine_id] += len(ts)
            return out
        if ts.dtype != np.float64 or values.dtype != np.float64:
            ts, values = ts.astype(np.float64), values.astype(np.float64)
        known = self._known_sensors()[machine_id]
        run_codes = [known.get(sensor, -1) for sensor in sensors]
        run_lengths = list(lengths)
        if sum(run_lengths) != len(ts) or len(values) != len(ts):
            # The runs are only expanded when the window closes: a mismatch must not surface there, misaligned.
            raise ValueError(
                f"{len(ts)} times and {len(values)} values for {sum(run_lengths)} readings of {machine_id}"
            )
        # The sensor code of every reading is only spelled out when some readings must be taken out: the normal
        # message goes to the buffer as its runs (sensor, length), expanded once per window (_join).
        codes: npt.NDArray[np.int16] | None = None
        if -1 in run_codes:
            for sensor, code, n in zip(sensors, run_codes, run_lengths, strict=True):
                if code < 0 and n:
                    stats.unknown_sensors[f"{machine_id}/{sensor}"] += n
            codes = _expand(run_codes, run_lengths)
            keep = codes >= 0
            codes, ts, values = codes[keep], ts[keep], values[keep]
            span = None
        if not len(ts):
            m.last_wall = self._now
            return out
        stats.readings += len(ts)
        self._uncounted.append(values)
        if len(self._uncounted) >= _UNCOUNTED:
            self._count_unusable()
        lowest, newest = span if span is not None else (float(ts.min()), float(ts.max()))
        if newest > self._horizon or lowest < self._floor:
            # Too far ahead of the wall clock (clock_skew) or before any window could start (late).
            if codes is None:
                codes = _expand(run_codes, run_lengths)
            refused = (ts > self._horizon) | (ts < self._floor)
            names = self._names[machine_id]
            for i in np.flatnonzero(refused).tolist():
                t = float(ts[i])
                refuse = self._refuse_future if t > self._horizon else self._refuse_ancient
                refuse(machine_id, names[codes[i]], t, float(values[i]))
            keep = ~refused
            codes, ts, values = codes[keep], ts[keep], values[keep]
            if not len(ts):
                m.last_wall = self._now
                return out
            lowest, newest = float(ts.min()), float(ts.max())
        if lowest < m.watermark or lowest < m.closed_upto:
            self._update_closed(m)
            late = np.floor(ts / self._hop) * self._hop + self._size <= m.closed_upto
            if late.any():
                if codes is None:
                    codes = _expand(run_codes, run_lengths)
                names = self._names[machine_id]
                for i in np.flatnonzero(late).tolist():
                    self._record_late(machine_id, m, names[codes[i]], ts, values, i)
                keep = ~late
                codes, ts, values = codes[keep], ts[keep], values[keep]
                if not len(ts):
                    m.last_wall = self._now
                    return out
                lowest, newest = float(ts.min()), float(ts.max())
        if codes is not None:
            run_codes, run_lengths = _runs(codes)
        if m.tail_ts:
            _flush_tail(m)  # single readings that arrived before this message stay before it
        m.run_codes += run_codes
        m.run_lengths += run_lengths
        m.pending_ts.append(ts)
        m.pending_values.append(values)
        if lowest < m.earliest:
            m.earliest = lowest
            m.next_close = self._window_end(self._first_open(m)) + self._grace
        if newest > m.watermark:
            m.watermark = newest
        if m.watermark >= m.next_close:
            self._advance(machine_id, m, out)
        m.last_wall = self._now
        return out

    def _refuse_future(self, machine_id: str, sensor: str, ts: float, value: float) -> None:
        self._stats.clock_skew += 1
        if len(self._late) < self.max_late:
            now = self._now if self._now is not None else _NAN
            self._late.append(LateReading(machine_id, sensor, ts, value, now, "clock_skew"))
        else:
            self._stats.late_unrouted += 1

    def _refuse_ancient(self, machine_id: str, sensor: str, ts: float, value: float) -> None:
        self._stats.late += 1
        if len(self._late) < self.max_late:
            self._late.append(LateReading(machine_id, sensor, ts, value, self._floor))
        else:
            self._stats.late_unrouted += 1

    def _record_late(self, machine_id: str, m: _Machine, sensor: str, ts: Array, values: Array, i: int) -> None:
        self._stats.late += 1
        if len(self._late) < self.max_late:
            self._late.append(LateReading(machine_id, sensor, float(ts[i]), float(values[i]), m.closed_upto))
        else:
            self._stats.late_unrouted += 1

    def _update_closed(self, m: _Machine) -> None:
        if m.watermark != -_INF:
            # Every window the watermark has passed is closed (those with data were closed eagerly), so a
            # window that was empty until now cannot reopen for one straggler.
            passed = math.floor((m.watermark - self._grace - self._size) / self._hop) * self._hop + self._size
            if passed > m.closed_upto:
                m.closed_upto = passed

    def _late_check(self, machine_id: str, m: _Machine, sensor: str, ts: float, value: float) -> bool:
        """For a reading behind the watermark or the closed windows: is it late? (records it if so)."""
        self._update_closed(m)
        if math.floor(ts / self._hop) * self._hop + self._size > m.closed_upto:
            return False
        self._stats.late += 1
        if len(self._late) < self.max_late:
            self._late.append(LateReading(machine_id, sensor, ts, value, m.closed_upto))
        else:
            self._stats.late_unrouted += 1
        return True

    def add_gap(self, gap: Gap) -> None:
        """Mark the windows a :class:`Gap` overlaps (``gap=True``); it adds no readings."""
        m = self._machine(gap.machine_id)
        if m is None:
            self._stats.unknown_machines[gap.machine_id] += 1
            return
        start, end = gap.start.timestamp(), gap.end.timestamp()
        if end <= m.closed_upto:
            self._stats.late_gaps += 1
            return
        self._stats.gaps += 1
        m.gaps.append((start, end))

    # ------------------------------------------------------------------ closing
    def set_clock(self, wall_now: float) -> None:
        """The wall clock now (epoch seconds), without closing anything: readings after it are judged against it
        for ``max_clock_skew_s``. Offline use without a clock (replays) skips that check."""
        self._now = wall_now
        self._horizon = min(wall_now + self._max_skew, _LAST_EPOCH - self._size)

    def tick(self, wall_now: float) -> list[FeatureVector]:
        """Advance the wall clock; close the windows of machines idle for ``idle_timeout_s``."""
        self.set_clock(wall_now)
        out: list[FeatureVector] = []
        for machine_id, m in self._machines.items():
            if m.last_wall is None:
                m.last_wall = wall_now
            elif m.earliest != _INF and wall_now - m.last_wall >= self._idle:
                self._close_all(machine_id, m, "wall_clock", out)
        return out

    def flush(self) -> list[FeatureVector]:
        """Close every open window now (end of a replay, or a shutdown that will not resume)."""
        out: list[FeatureVector] = []
        for machine_id, m in self._machines.items():
            self._close_all(machine_id, m, "shutdown", out)
        return out

    @property
    def late_pending(self) -> bool:
        """Whether :meth:`drain_late` has something (cheap; the worker asks after every record)."""
        return bool(self._late)

    def drain_late(self) -> list[LateReading]:
        """The late readings since the last call (for routing), oldest first."""
        late, self._late = self._late, []
        return late

    def _window_end(self, k: int) -> float:
        return k * self._hop + self._size

    def _first_open(self, m: _Machine) -> int:
        # The earliest window that holds buffered data and has not been closed yet.
        k = math.floor(m.earliest / self._hop) - self._per_reading + 1
        while self._window_end(k) <= m.earliest:
            k += 1
        if m.closed_upto != -_INF:
            while self._window_end(k) <= m.closed_upto:
                k += 1
        return k

    def _advance(self, machine_id: str, m: _Machine, out: list[FeatureVector]) -> None:
        while m.earliest != _INF:
            k = self._first_open(m)
            if self._window_end(k) + self._grace > m.watermark:
                m.next_close = self._window_end(k) + self._grace
                return
            self._close(machine_id, m, k, "watermark", out)
        m.next_close = _INF

    def _close_all(self, machine_id: str, m: _Machine, closed_by: ClosedBy, out: list[FeatureVector]) -> None:
        while m.earliest != _INF:
            self._close(machine_id, m, self._first_open(m), closed_by, out)
        m.next_close = _INF

    def _close(self, machine_id: str, m: _Machine, k: int, closed_by: ClosedBy, out: list[FeatureVector]) -> None:
        start, end = k * self._hop, self._window_end(k)
        # Readings before ``cut`` are in no window after this one: they are forgotten once it is built.
        cut = start + self._hop
        _join(m)
        m.epoch += 1
        # Normally every buffered reading is at or after the window's start (older ones left with older windows).
        if m.earliest >= start:
            window = self._take_grouped(machine_id, m, end, cut)
        else:
            window = self._take(machine_id, m, start, end, cut)
        if window is not None:
            gap = any(s < end and e > start for s, e in m.gaps)
            result = self.builder.build_columns(
                machine_id, start, end, window, gap=gap, closed_by=closed_by, previous=m.previous
            )
            if result.latest:
                # What the builder keeps for later windows: the running sensor's held value, and with
                # ``impute = "last"`` every sensor's last features. Checkpointed with the machine.
                m.previous.update(result.latest)
            out.append(result.vector)
            self._stats.windows += 1
            if closed_by == "wall_clock":
                self._stats.wall_clock_windows += 1
        m.closed_upto = end
        m.gaps = [(s, e) for s, e in m.gaps if e > cut]

    def _take_grouped(self, machine_id: str, m: _Machine, end: float, cut: float) -> WindowColumns | None:
        """The window ending at ``end`` when it holds every buffered reading before ``end`` (none is older than
        its start); the readings before ``cut`` leave the buffer, the rest stays (grouped by sensor)."""
        codes, ts, values = m.codes, m.ts, m.values
        later = ts >= end
        n_later = int(np.count_nonzero(later))
        n_in = len(ts) - n_later
        # One stable sort on a small integer key (numpy's radix sort) puts the window first, grouped by sensor,
        # then the rest, grouped by sensor; each sensor keeps its arrival order (which duplicate wins).
        key = codes + later * np.int16(len(self._names[machine_id])) if n_later else codes
        order = np.argsort(key, kind="stable")
        codes, ts, values = codes[order], ts[order], values[order]
        if cut != end:  # hopping: the window's readings after ``cut`` are in the next windows too
            keep = ts >= cut
            m.codes, m.ts, m.values = codes[keep], ts[keep], values[keep]
        elif n_later:
            m.codes, m.ts, m.values = codes[n_in:].copy(), ts[n_in:].copy(), values[n_in:].copy()
        else:
            m.codes, m.ts, m.values = _NO_CODES, _NO_FLOATS, _NO_FLOATS
        m.earliest = float(m.ts.min()) if len(m.ts) else _INF
        if not n_in:
            return None
        return self._grouped(machine_id, codes[:n_in], ts[:n_in], values[:n_in], cut)

    def _grouped(
        self, machine_id: str, codes: npt.NDArray[np.int16], ts: Array, values: Array, cut: float
    ) -> WindowColumns:
        """A window's readings grouped by sensor, each sensor in arrival order: when each sensor's event times
        rise strictly (the normal case), they are already sorted and free of duplicates; otherwise :meth:`_window`
        sorts and de-duplicates them."""
        if len(ts) > 1:
            rising = np.diff(ts) > 0
            rising |= codes[1:] != codes[:-1]
            if not rising.all():
                return self._window(machine_id, codes, ts, values, np.arange(len(ts)), cut)
        names = self._names[machine_id]
        bounds = np.searchsorted(codes, _edges(len(names)))
        totals = np.diff(bounds)
        # One reduction tells whether any value is NaN (unusable), which the features must not see.
        if math.isnan(values.sum()):
            return self._usable(names, codes, ts, values, totals)
        return WindowColumns(sensors=names, ts=ts, values=values, bounds=bounds, totals=totals)

    def _take(self, machine_id: str, m: _Machine, start: float, end: float, cut: float) -> WindowColumns | None:
        """The window ``[start, end)`` when readings older than ``start`` are held (rare: a window with none of
        its own readings left them behind); the readings before ``cut`` leave the buffer."""
        ts = m.ts
        before_end = ts < end
        before_cut = before_end if cut == end else ts < cut
        inside_mask = before_end if m.earliest >= start else before_end & (ts >= start)
        inside = np.flatnonzero(inside_mask)
        window = None
        if len(inside):
            window = self._window(machine_id, m.codes[inside], ts[inside], m.values[inside], inside, cut)
        if before_cut.any():
            keep = ~before_cut
            m.codes, m.ts, m.values = m.codes[keep], ts[keep], m.values[keep]
            m.earliest = float(m.ts.min()) if len(m.ts) else _INF
        return window

    def _window(
        self,
        machine_id: str,
        wcodes: npt.NDArray[np.int16],
        wts: Array,
        wvalues: Array,
        arrival: npt.NDArray[np.intp],
        cut: float,
    ) -> WindowColumns:
        """A window's readings (``arrival`` rises with arrival within a sensor) sorted, de-duplicated and grouped by
        sensor; counts the duplicates among those before ``cut`` (they are forgotten after this window, so each
        counts once)."""
        # By sensor, then event time, then arrival: the first arrival of a duplicate comes first and wins.
        order = np.lexsort((arrival, wts, wcodes))
        wts, wcodes, wvalues = wts[order], wcodes[order], wvalues[order]
        if len(wts) > 1:
            first = np.empty(len(wts), dtype=bool)
            first[0] = True
            np.logical_or(wts[1:] != wts[:-1], wcodes[1:] != wcodes[:-1], out=first[1:])
            if not first.all():
                self._stats.duplicates += int(np.count_nonzero(~first & (wts < cut)))
                wts, wcodes, wvalues = wts[first], wcodes[first], wvalues[first]
        names = self._names[machine_id]
        totals = np.bincount(wcodes, minlength=len(names))
        if not math.isnan(wvalues.sum()):
            bounds = np.zeros(len(names) + 1, dtype=np.intp)
            np.cumsum(totals, out=bounds[1:])
            return WindowColumns(sensors=names, ts=wts, values=wvalues, bounds=bounds, totals=totals)
        return self._usable(names, wcodes, wts, wvalues, totals)

    @staticmethod
    def _usable(
        names: tuple[str, ...], codes: npt.NDArray[np.int16], ts: Array, values: Array, totals: npt.NDArray[np.intp]
    ) -> WindowColumns:
        """A sorted, de-duplicated window without its unusable (NaN) readings, which still count in ``totals``."""
        good = values == values
        ts, codes, values = ts[good], codes[good], values[good]
        bounds = np.zeros(len(names) + 1, dtype=np.intp)
        np.cumsum(np.bincount(codes, minlength=len(names)), out=bounds[1:])
        return WindowColumns(sensors=names, ts=ts, values=values, bounds=bounds, totals=totals)

    # ------------------------------------------------------------------ machines
    def _known_sensors(self) -> dict[str, dict[str, int]]:
        if self._sensors is None:
            machines = self.config.machines_by_id.items()
            self._names = {mid: tuple(m.sensors) for mid, m in machines}
            self._sensors = {mid: {s: i for i, s in enumerate(names)} for mid, names in self._names.items()}
        return self._sensors

    def _machine(self, machine_id: str) -> _Machine | None:
        m = self._machines.get(machine_id)
        if m is None and machine_id in self._known_sensors():
            m = self._machines[machine_id] = _Machine()
        return m

    @property
    def machines(self) -> list[str]:
        """Machines with state in this engine."""
        return list(self._machines)

    def open_readings(self) -> int:
        """Readings held for open windows (all machines)."""
        return sum(m.held() for m in self._machines.values())

    def drop_machine(self, machine_id: str) -> None:
        """Forget a machine (its partition moved to another worker; its state lives in the changelog)."""
        self._machines.pop(machine_id, None)

    # ------------------------------------------------------------------ durable state
    def machine_state(self, machine_id: str, *, raw: bool = False) -> dict[str, Any] | None:
        """One machine's state as a JSON-able dict; ``raw=True`` gives each sensor's buffers as float64 bytes
        instead of base64 text (for a binary encoding such as the changelog's; :meth:`load_machine_state` takes
        either)."""
        m = self._machines.get(machine_id)
        if m is None:
            return None
        return {
            "watermark": m.watermark,
            "closed_upto": m.closed_upto,
            "gaps": m.gaps,
            "previous": m.previous,
            "buffers": self._buffers_state(machine_id, m, raw),
        }

    def _buffers_state(self, machine_id: str, m: _Machine, raw: bool) -> dict[str, list[Any]]:
        # Per sensor, in arrival order: the checkpoint format does not depend on how the engine holds readings.
        _join(m)
        if not len(m.ts):
            return {}
        # Grouped by sensor, each in arrival order, and kept so: equivalent for the engine, less to sort later.
        order = np.argsort(m.codes, kind="stable")
        m.codes, m.ts, m.values = m.codes[order], m.ts[order], m.values[order]
        m.epoch += 1
        return _per_sensor(self._names[machine_id], m.codes, m.ts, m.values, raw, grouped=True)

    def checkpoint_state(self, machine_id: str, *, full: bool = False) -> tuple[dict[str, Any], bool] | None:
        """The machine's state for an incremental checkpoint, and whether it is a delta.

        When only readings were added since the last call (no window closed, nothing reordered) and ``full`` is
        false, ``buffers`` holds just those readings, per sensor in arrival order; appended to the buffers of the
        previous calls' states, sensor by sensor, they give the buffers of :meth:`machine_state` (the other keys
        are the machine's current ones, whole). Otherwise the whole state, as :meth:`machine_state` with
        ``raw=True``. Either way the call marks what it returned as saved."""
        m = self._machines.get(machine_id)
        if m is None:
            return None
        _join(m)
        delta = not full and m.saved >= 0 and m.saved_epoch == m.epoch
        if delta:
            n = m.saved
            buffers = _per_sensor(self._names[machine_id], m.codes[n:], m.ts[n:], m.values[n:], raw=True)
        else:
            buffers = self._buffers_state(machine_id, m, raw=True) if len(m.ts) else {}
        m.saved, m.saved_epoch = len(m.ts), m.epoch
        state = {
            "watermark": m.watermark,
            "closed_upto": m.closed_upto,
            "gaps": m.gaps,
            "previous": m.previous,
            "buffers": buffers,
        }
        return state, delta

    def load_machine_state(self, machine_id: str, state: dict[str, Any]) -> None:
        try:
            m = _Machine()
            m.watermark = float(state["watermark"])
            m.closed_upto = float(state["closed_upto"])
            m.gaps = [(float(s), float(e)) for s, e in state["gaps"]]
            m.previous = {k: dict(v) for k, v in state["previous"].items()}
            known = self._known_sensors().get(machine_id, {})
            codes: list[int] = []
            times: list[Array] = []
            values: list[Array] = []
            for sensor, (ts, vals) in state["buffers"].items():
                t = np.frombuffer(ts if isinstance(ts, bytes) else base64.b64decode(ts), dtype=np.float64)
                v = np.frombuffer(vals if isinstance(vals, bytes) else base64.b64decode(vals), dtype=np.float64)
                if len(t) != len(v):
                    raise ValueError(f"sensor {sensor!r}: {len(t)} times but {len(v)} values")
                code = known.get(sensor)
                if code is None or not len(t):
                    continue  # a sensor no longer configured: its readings would be ignored anyway
                codes.append(code)
                times.append(t)
                values.append(v)
            if times:
                m.codes = _expand(codes, [len(t) for t in times])
                m.ts, m.values = np.concatenate(times), np.concatenate(values)
                m.earliest = float(m.ts.min())
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"window state of machine {machine_id!r} is invalid: {exc}") from exc
        if m.earliest != _INF:
            m.next_close = self._window_end(self._first_open(m)) + self._grace
        m.last_wall = self._now
        m.saved = len(m.ts)  # what was loaded is what the changelog holds: the next checkpoint may be a delta
        self._machines[machine_id] = m

    def snapshot_machine(self, machine_id: str) -> bytes | None:
        """One machine's window state as compact bytes (``None`` if the engine has none)."""
        state = self.machine_state(machine_id)
        if state is None:
            return None
        return zlib.compress(json.dumps({"v": _STATE_VERSION, "machine": state}).encode(), 1)

    def restore_machine(self, machine_id: str, data: bytes) -> None:
        self.load_machine_state(machine_id, _load(data)["machine"])

    def snapshot(self) -> bytes:
        """Every machine's window state (the late queue and the counters are not state)."""
        machines = {mid: self.machine_state(mid) for mid in self._machines}
        return zlib.compress(json.dumps({"v": _STATE_VERSION, "machines": machines}).encode(), 1)

    @classmethod
    def restore(cls, config: VigilConfig, data: bytes, builder: VectorBuilder) -> WindowEngine:
        engine = cls(config, builder)
        for machine_id, state in _load(data)["machines"].items():
            engine.load_machine_state(machine_id, state)
        return engine


def _expand(codes: Sequence[int], lengths: Sequence[int]) -> npt.NDArray[np.int16]:
    """Runs (sensor code, length) as one code per reading."""
    return np.repeat(np.array(codes, dtype=np.int16), lengths)


def _runs(codes: npt.NDArray[np.int16]) -> tuple[list[int], list[int]]:
    """One code per reading (non-empty) as runs: the inverse of :func:`_expand`."""
    bounds = [0, *(np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist(), len(codes)]
    return codes[bounds[:-1]].tolist(), np.diff(bounds).tolist()


def _per_sensor(
    names: Sequence[str],
    codes: npt.NDArray[np.int16],
    ts: Array,
    values: Array,
    raw: bool,
    grouped: bool = False,
) -> dict[str, list[Any]]:
    """``{sensor: [event times, values]}`` as float64 bytes (base64 text unless ``raw``), each sensor's readings in
    the order given (``grouped``: already sorted by sensor code)."""
    if not len(ts):
        return {}
    if not grouped:
        order = np.argsort(codes, kind="stable")
        codes, ts, values = codes[order], ts[order], values[order]
    bounds = np.searchsorted(codes, _edges(len(names))).tolist()
    ts_b, values_b = ts.tobytes(), values.tobytes()
    out: dict[str, list[Any]] = {}
    for code, name in enumerate(names):
        lo, hi = 8 * bounds[code], 8 * bounds[code + 1]
        if hi > lo:
            pair = [ts_b[lo:hi], values_b[lo:hi]]
            out[name] = pair if raw else [base64.b64encode(b).decode() for b in pair]
    return out


def _flush_tail(m: _Machine) -> None:
    """The single readings received since the last message, as one more pending message."""
    m.run_codes += m.tail_codes.tolist()
    m.run_lengths += [1] * len(m.tail_codes)
    m.pending_ts.append(np.array(m.tail_ts, dtype=np.float64))
    m.pending_values.append(np.array(m.tail_values, dtype=np.float64))
    m.tail_codes, m.tail_ts, m.tail_values = array("h"), array("d"), array("d")


def _join(m: _Machine) -> None:
    """Append what arrived since the last join to the machine's columns (see :class:`_Machine`)."""
    if m.tail_ts:
        _flush_tail(m)
    if not m.pending_ts:
        return
    codes = _expand(m.run_codes, m.run_lengths)
    if len(m.ts):
        m.codes = np.concatenate((m.codes, codes))
        m.ts = np.concatenate((m.ts, *m.pending_ts))
        m.values = np.concatenate((m.values, *m.pending_values))
    elif len(m.pending_ts) == 1:
        m.codes, m.ts, m.values = codes, m.pending_ts[0], m.pending_values[0]
    else:
        m.codes, m.ts, m.values = codes, np.concatenate(m.pending_ts), np.concatenate(m.pending_values)
    m.run_codes, m.run_lengths, m.pending_ts, m.pending_values = [], [], [], []


_EDGES: dict[int, npt.NDArray[np.int16]] = {}


def _edges(n: int) -> npt.NDArray[np.int16]:
    """``0..n`` as int16: ``searchsorted`` of codes sorted ascending gives each code's bounds."""
    edges = _EDGES.get(n)
    if edges is None:
        edges = _EDGES[n] = np.arange(n + 1, dtype=np.int16)
    return edges


def _load(data: bytes) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(zlib.decompress(data))
    except (zlib.error, ValueError) as exc:
        raise StateError(f"window state is not readable: {exc}") from exc
    if doc.get("v") != _STATE_VERSION:
        raise StateError(f"window state version {doc.get('v')!r} is not {_STATE_VERSION}")
    return doc
