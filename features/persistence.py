"""Hard-limit persistence: how long each limited sensor has stayed beyond its limit, judged sample by sample.

A window's mean mixes what happened in it: a 10-minute window that holds a stop has a mean flow below the flow
limit while the machine counts as running, and the cold first sample after a restart drags a short window across a
limit. So for every sensor with a hard limit, and every side it has one on, the builder adds:

* ``<sensor>.over_high_s`` / ``<sensor>.under_low_s``: the longest run, in seconds of event time (first to last
  sample of the run), of consecutive usable samples beyond the limit taken while the machine ran and was not
  warming up. A run that began in an earlier window counts from its first sample; a single sample is 0 s.
* ``<sensor>.warmup_over_high_s`` / ``<sensor>.warmup_under_low_s``: the same for samples inside the warm-up.

Both are 0.0 when no such sample is beyond the limit, ``None`` when the sensor sent no new usable sample.

* **Running** at a sample: the running sensor's latest usable reading at or before it is at or above the type's
  ``off_below`` (held across windows); without a running sensor, or before anything is known, the machine runs.
* **Start**: the running sensor going from below ``off_below`` to at or above it. **Resume**: a sensor's data
  continuing after more than the type's ``data_gap_s`` (and more than three of its previous sample intervals, so a
  slowly sampled sensor is not always resuming) without a usable sample; a sensor's first sample ever is one too
  (what came before is unknown). A run never spans a start or a resume.
* **Warm-up**: the type's ``warmup_s`` (``[models] warmup_s`` unless set) after the latest start, or after the
  sensor's latest resume, whichever is later.
* **Ramp**: in the warm-up after a start, a sample beyond a limit counts only once the sensor has been within
  that limit since the start. A machine at rest sits below its operating levels, so a discharge pressure building from
  zero after a start is below its low limit for minutes at every start: that is the start, not a crossing. A
  value that comes within and leaves again during the warm-up (an overshoot, a pressure that collapses) counts, and
  so does any sample beyond a limit when data resumes after a gap (the machine was running meanwhile).

The state this needs between windows is a few numbers per machine and limited sensor, kept in the window engine's
checkpointed per-machine memory (``previous``) under :data:`MACHINE_KEY` and ``SENSOR_KEY + sensor``.

>>> import numpy as np
>>> from vigil.config import Limits, Range, SensorSpec
>>> spec = SensorSpec(unit="degC", range=Range(min=0, max=150), limits=Limits(high=95))
>>> plan = LimitPlan(sensors=(("temp", None, 95.0),), running=None, off_below=0.0, warmup_s=600.0, gap_s=300.0)
>>> out: dict[str, float | None] = {}
>>> latest: dict[str, dict[str, float | None]] = {}
>>> ts = np.arange(0.0, 1800.0, 60.0)           # 30 samples; the first starts the warm-up (10 min)
>>> values = np.where(ts >= 1200.0, 97.0, 80.0)  # above the limit for the last 10 samples
>>> plan.measure({"temp": (ts, values)}, {}, out, latest)
>>> out["temp.over_high_s"], out["temp.warmup_over_high_s"], latest["@limits/temp"]["over_high"]
(540.0, 0.0, 1200.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streaming.window_types import SensorFeatures

Array = npt.NDArray[np.float64]
Segment = tuple[Array, Array]
"""One sensor's usable samples in the window: event times (ascending) and values."""

HELD = "@running"
"""The running sensor's last usable reading as :mod:`features.vector` keeps it (``{"value", "ts"}``)."""
MACHINE_KEY = "@limits"
"""``previous`` key of the machine's latest start (``{"start": epoch seconds or None}``)."""
SENSOR_KEY = "@limits/"
"""``previous`` key prefix of a limited sensor's state: its last sample's time and interval, its latest resume, and
the first sample of each open run (``over_high``, ``warmup_over_high``, ``under_low``, ``warmup_under_low``)."""
SIDES = ("over_high", "under_low")
_RESUME_FACTOR = 3.0
_NINF = -math.inf


@dataclass(frozen=True)
class LimitPlan:
    """What one machine's persistence features need from the configuration (built once per machine)."""

    sensors: tuple[tuple[str, float | None, float | None], ...]
    """``(sensor, low, high)`` of every sensor with a hard limit."""
    running: str | None
    off_below: float
    warmup_s: float
    gap_s: float

    def measure(
        self,
        segments: Mapping[str, Segment],
        previous: Mapping[str, SensorFeatures],
        features: MutableMapping[str, float | None],
        latest: MutableMapping[str, SensorFeatures],
        extremes: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """Adds the persistence features of one window to ``features`` and the state for the next windows to
        ``latest``. ``segments`` holds the sensors with usable samples; ``extremes`` (optional) their ``(min,
        max)`` when already known, which lets a window with nothing beyond a limit skip the run analysis."""
        machine = previous.get(MACHINE_KEY) or {}
        starts = self._starts(segments, previous, machine.get("start"))
        latest[MACHINE_KEY] = {"start": starts[-1] if starts else None}
        running_seg = segments.get(self.running) if self.running is not None else None
        stopped = self._stopped(running_seg, previous, extremes)
        for sensor, low, high in self.sensors:
            state = previous.get(SENSOR_KEY + sensor) or {}
            seg = segments.get(sensor)
            if seg is not None:
                last = state.get("last")
                ts, values = seg
                if last is not None and len(ts) and ts[0] <= last:
                    # Hopping windows overlap: what an earlier window judged is not judged again.
                    cut = int(np.searchsorted(ts, last, side="right"))
                    ts, values = ts[cut:], values[cut:]
                    extreme = None
                else:
                    extreme = extremes.get(sensor) if extremes is not None else None
                if len(ts):
                    if stopped:
                        extreme = (math.inf, _NINF)  # no sample was taken while running: none can be beyond
                    new = self._sensor(sensor, low, high, ts, values, state, starts, running_seg, previous, extreme)
                    features.update(new[0])
                    latest[SENSOR_KEY + sensor] = new[1]
                    continue
            for side, limit in zip(SIDES, (high, low), strict=True):
                if limit is not None:
                    features[f"{sensor}.{side}_s"] = None
                    features[f"{sensor}.warmup_{side}_s"] = None

    def _stopped(
        self,
        running_seg: Segment | None,
        previous: Mapping[str, SensorFeatures],
        extremes: Mapping[str, tuple[float, float]] | None,
    ) -> bool:
        """Whether the machine was off throughout the window (held off, and every running reading below
        ``off_below``): then no sample counts, whatever its value."""
        if self.running is None:
            return False
        held = (previous.get(HELD) or {}).get("value")
        if held is None or held >= self.off_below:
            return False
        if running_seg is None:
            return True
        extreme = extremes.get(self.running) if extremes is not None else None
        top = extreme[1] if extreme is not None else float(running_seg[1].max())
        return top < self.off_below

    def _starts(
        self, segments: Mapping[str, Segment], previous: Mapping[str, SensorFeatures], carried: float | None
    ) -> list[float]:
        """The machine's starts up to this window's newest running-sensor sample: the carried latest one, then the
        window's own, ascending (empty when none is known)."""
        out = [carried] if carried is not None else []
        if self.running is None or self.running not in segments:
            return out
        ts, values = segments[self.running]
        held = previous.get(HELD) or {}
        held_ts, held_value = held.get("ts"), held.get("value")
        if held_ts is not None and ts[0] <= held_ts:
            cut = int(np.searchsorted(ts, held_ts, side="right"))
            ts, values = ts[cut:], values[cut:]
        if not len(ts):
            return out
        held_on = held_value is None or held_value >= self.off_below
        if (held_on and float(values.min()) >= self.off_below) or float(values.max()) < self.off_below:
            return out  # ran throughout, or was off throughout: nothing rose through off_below
        on = values >= self.off_below
        if held_value is None:
            # Nothing known before: the first reading is not a start (a sensor's first sample is a resume anyway).
            rising = np.flatnonzero(on[1:] & ~on[:-1]) + 1
        else:
            before = np.empty(len(on), dtype=bool)
            before[0] = held_value >= self.off_below
            before[1:] = on[:-1]
            rising = np.flatnonzero(on & ~before)
        out.extend(ts[rising].tolist())
        return out

    def _sensor(
        self,
        sensor: str,
        low: float | None,
        high: float | None,
        ts: Array,
        values: Array,
        state: SensorFeatures,
        starts: list[float],
        running_seg: Segment | None,
        previous: Mapping[str, SensorFeatures],
        extreme: tuple[float, float] | None,
    ) -> tuple[dict[str, float | None], SensorFeatures]:
        last, interval, resume = state.get("last"), state.get("interval"), state.get("resume")
        # Resumes: the first sample ever, and samples after more than gap_s (and 3 sample intervals) of silence.
        resumes: list[float] = []
        n = len(ts)
        # A window no longer than gap_s cannot hold a gap: no diff over its samples needed.
        gaps = np.diff(ts) if n > 1 and float(ts[-1]) - float(ts[0]) > self.gap_s else None
        silent = ts[0] - last if last is not None else math.inf
        # With no interval known yet (a sensor's second sample) the silence is taken as its interval.
        if last is None or (interval is not None and silent > self.gap_s and silent > _RESUME_FACTOR * interval):
            resumes.append(float(ts[0]))
        if gaps is not None and float(gaps.max()) > self.gap_s:
            for i in np.flatnonzero(gaps > self.gap_s).tolist():
                before = gaps[i - 1] if i else (silent if not resumes else interval)
                if before is not None and gaps[i] > _RESUME_FACTOR * before:
                    resumes.append(float(ts[i + 1]))
        step = float(ts[-1]) - float(ts[-2]) if n > 1 else math.inf
        if step <= self.gap_s:
            new_interval: float | None = step
        elif last is not None and not resumes:
            new_interval = float(ts[0] - last)
        else:
            new_interval = interval
        if resumes:
            resume = resumes[-1]
        out_state: SensorFeatures = {"last": float(ts[-1]), "interval": new_interval, "resume": resume}
        features: dict[str, float | None] = {}
        lo, hi = extreme if extreme is not None else (float(values.min()), float(values.max()))
        beyond_any = (high is not None and hi > high) or (low is not None and lo < low)
        if not beyond_any:
            # The usual window: nothing beyond a limit, every run (if any was open) ends here.
            for side, limit in zip(SIDES, (high, low), strict=True):
                if limit is not None:
                    features[f"{sensor}.{side}_s"] = 0.0
                    features[f"{sensor}.warmup_{side}_s"] = 0.0
                    out_state[side] = out_state[f"warmup_{side}"] = None
                    out_state[f"within_{side}"] = float(ts[-1])
            return features, out_state
        # Since when each sample's stretch of operation counts: the later of the machine's latest start and the
        # sensor's latest resume. A run never spans two stretches.
        since = self._since(ts, starts, resumes, state.get("resume"))
        out_state["since"] = float(since[-1]) if since[-1] > _NINF else None
        warm = (ts - since) < self.warmup_s
        running = self._running(ts, running_seg, previous)
        fresh = np.empty(len(ts), dtype=bool)
        carried_since = state.get("since")
        fresh[0] = carried_since is None or since[0] != carried_since
        fresh[1:] = since[1:] != since[:-1]
        from_start = since == self._since(ts, starts, [], None)
        for side, limit in zip(SIDES, (high, low), strict=True):
            if limit is None:
                continue
            raw = (values > limit) if side == "over_high" else (values < limit)
            beyond = raw & running
            # The ramp of a start: a sensor that has not been within this limit since its stretch began (a
            # compressor's pressure building from zero) has not crossed it; only a warm-up sample after the sensor
            # was once within counts. After the warm-up every sample beyond counts, ramp or not.
            carried_within = state.get(f"within_{side}")
            within_ts = np.maximum.accumulate(np.where(raw, _NINF, ts))
            if carried_within is not None:
                np.maximum(within_ts, carried_within, out=within_ts)
            entered = (within_ts >= since) | ~from_start
            out_state[f"within_{side}"] = float(within_ts[-1]) if within_ts[-1] > _NINF else None
            for name, mask in ((side, beyond & ~warm), (f"warmup_{side}", beyond & warm & entered)):
                longest, carry = _longest(ts, mask, fresh, state.get(name))
                features[f"{sensor}.{name}_s"] = longest
                out_state[name] = carry
        return features, out_state

    def _since(self, ts: Array, starts: list[float], resumes: list[float], carried_resume: float | None) -> Array:
        """Per sample, the time its current stretch began: the latest start or resume at or before it."""
        since = np.full(len(ts), _or_ninf(carried_resume))
        for events in (starts, resumes):
            if events:
                marks = np.asarray(events, dtype=np.float64)
                idx = np.searchsorted(marks, ts, side="right") - 1
                np.maximum(since, np.where(idx >= 0, marks[np.maximum(idx, 0)], _NINF), out=since)
        return since

    def _running(
        self, ts: Array, running_seg: Segment | None, previous: Mapping[str, SensorFeatures]
    ) -> npt.NDArray[np.bool_]:
        """Per sample, whether the machine ran: the running sensor's latest reading at or before it decides."""
        if self.running is None:
            return np.ones(len(ts), dtype=bool)
        held = previous.get(HELD) or {}
        held_value = held.get("value")
        before = held_value is None or held_value >= self.off_below
        if running_seg is None:
            return np.full(len(ts), before, dtype=bool)
        rts, rvalues = running_seg
        idx = np.searchsorted(rts, ts, side="right") - 1
        on = rvalues[np.maximum(idx, 0)] >= self.off_below
        return np.where(idx >= 0, on, before)


def _or_ninf(value: float | None) -> float:
    return _NINF if value is None else value


def _longest(
    ts: Array, mask: npt.NDArray[np.bool_], fresh: npt.NDArray[np.bool_], carried: float | None
) -> tuple[float, float | None]:
    """The longest run of ``mask`` in seconds (a run breaks at a False sample and where ``fresh`` marks a new start
    or resume) and the first sample's time of the run still open at the end (``None`` when none is)."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return 0.0, None
    breaks = (np.diff(idx) != 1) | fresh[idx[1:]]
    first = np.empty(len(idx), dtype=bool)
    first[0] = True
    first[1:] = breaks
    last = np.empty(len(idx), dtype=bool)
    last[-1] = True
    last[:-1] = breaks
    begin = ts[idx[first]]
    end = ts[idx[last]]
    if carried is not None and idx[0] == 0 and not fresh[0]:
        begin[0] = carried
    longest = float((end - begin).max())
    carry = float(begin[-1]) if idx[-1] == len(ts) - 1 else None
    return longest, carry
