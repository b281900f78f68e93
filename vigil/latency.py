"""Latency from per-record timestamps: how long after a window closed (or a reading was taken) each stage's output
was produced and became visible to a ``read_committed`` reader. Percentiles are computed from every record, not
interpolated inside histogram buckets.

For every record of the watched topics a :class:`LatencyRecorder` keeps, per stage, seconds measured from the
record's *event*:

* a feature vector or a prediction: its window's close, ``window end + grace`` (the earliest it can exist);
* an alert transition the data caused (opened, updated, escalated, resolved): its ``ts`` (the triggering window's end for prediction-driven alerts) plus the grace,
  or, for an alert raised per reading (``alert_kind`` in :data:`PER_READING_KINDS`), the reading's source time;

to two moments: ``<stage>_out``, the record's Kafka timestamp (set by the producing stage at ``send()``, i.e. its
output time, before the transaction commits) and ``<stage>_visible``, the wall clock when the recorder received
it (after the commit; includes the recorder's own fetch, a few ms). Both clocks are this host's (the stages run
here), so no clock skew enters, unless the *source* clock runs apart from the wall clock: a simulator paced from
its own start stamps readings seconds behind it. When the readings topic is watched too, :attr:`source_behind`
collects, per reading batch, how far its newest source time was behind its collection (``ingest_ts``): its median
is that offset plus the collection delay, the correction :meth:`summary` reports beside the raw numbers.

>>> percentiles([0.1, 0.2, 0.3, 0.4, 1.0])
{'n': 5, 'p50': 0.3, 'p90': 1.0, 'p99': 1.0, 'max': 1.0}
>>> percentiles([])
{'n': 0}
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from vigil.config.connections import KafkaSettings
from vigil.contracts import Alert, AlertState, FeatureVector, Prediction, Reading, ReadingBatch, decode
from vigil.exceptions import ContractError

log = logging.getLogger(__name__)

PER_READING_KINDS = frozenset({"fail_safe"})
"""Alert kinds raised per reading (their ``ts`` is the reading's source time, no window to wait for)."""
PIPELINE_STATES = frozenset({AlertState.OPEN, AlertState.UPDATED, AlertState.ESCALATED, AlertState.RESOLVED})
"""Transitions the data causes (timed); a planner's acknowledgement or silence is a wall-clock event (not timed)."""


def percentiles(samples: Sequence[float], qs: Iterable[float] = (0.5, 0.9, 0.99)) -> dict[str, float]:
    """Nearest-rank percentiles of ``samples`` (each one an observed value, no interpolation) and the maximum."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    out: dict[str, float] = {"n": len(ordered)}
    for q in qs:
        rank = max(1, math.ceil(q * len(ordered)))
        out[f"p{round(q * 100):d}"] = round(ordered[rank - 1], 4)
    out["max"] = round(ordered[-1], 4)
    return out


class LatencyRecorder:
    """Reads ``topics`` (every partition, from the start, ``read_committed``) on its own thread and records each
    record's latencies (see the module docstring). ``start()``, then ``stop()`` and :meth:`summary`."""

    def __init__(self, kafka: KafkaSettings, topics: Sequence[str], grace_s: float) -> None:
        self.kafka = kafka
        self.topics = list(topics)
        self.grace_s = grace_s
        self.samples: dict[str, list[float]] = {}
        self.records = 0
        self.source_behind: list[float] = []
        self.undecodable = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="latency-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {stage: percentiles(values) for stage, values in sorted(self.samples.items())}
        if self.source_behind:
            out["source_behind_collection"] = percentiles(self.source_behind)
        return out

    def observe(self, value: bytes, kafka_ts_ms: int, received: float) -> None:
        """One record's latencies (public for tests: ``received`` is the wall clock in epoch seconds)."""
        self.records += 1
        try:
            message = decode(value)
        except ContractError:
            self.undecodable += 1
            return
        if isinstance(message, ReadingBatch) and message.samples:
            newest = max(sample.ts for sample in message.samples)
            self.source_behind.append((message.ingest_ts - newest).total_seconds())
        elif isinstance(message, Reading):
            self.source_behind.append((message.ingest_ts - message.ts).total_seconds())
        elif isinstance(message, FeatureVector):
            self._add("features", _epoch(message.window_end) + self.grace_s, kafka_ts_ms, received)
        elif isinstance(message, Prediction):
            self._add("prediction", _epoch(message.ts) + self.grace_s, kafka_ts_ms, received)
        elif isinstance(message, Alert) and message.state in PIPELINE_STATES:
            per_reading = message.alert_kind in PER_READING_KINDS
            event = _epoch(message.ts) + (0.0 if per_reading else self.grace_s)
            self._add("fail_safe_alert" if per_reading else "alert", event, kafka_ts_ms, received)

    def _add(self, stage: str, event: float, kafka_ts_ms: int, received: float) -> None:
        self.samples.setdefault(f"{stage}_out", []).append(kafka_ts_ms / 1000.0 - event)
        self.samples.setdefault(f"{stage}_visible", []).append(received - event)

    def _run(self) -> None:
        from kafka import TopicPartition

        from vigil.transactions import make_read_committed_consumer

        try:
            consumer = make_read_committed_consumer(self.kafka, None, fetch_max_wait_ms=50)
            partitions: list[Any] = []
            for name in self.topics:
                found = consumer.partitions_for_topic(name)
                while not found and not self._stop.wait(0.2):
                    found = consumer.partitions_for_topic(name)
                partitions += [TopicPartition(name, p) for p in sorted(found or ())]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            while not self._stop.is_set():
                for batch in consumer.poll(timeout_ms=100).values():
                    received = time.time()
                    for record in batch:
                        self.observe(record.value, record.timestamp, received)
            consumer.close(autocommit=False)
        except BaseException as exc:  # reported by the bench, not lost in a thread
            self.error = exc
            log.exception("latency recorder failed")


def _epoch(ts: datetime) -> float:
    return ts.timestamp()
