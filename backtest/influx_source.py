"""A time range already stored in InfluxDB as the backtest's input: the ``readings`` and ``maintenance`` measurements
of Vigil's schema (docs/influx-schema.md), read one day at a time with InfluxQL (v1 API, or the v1 compatibility
API of InfluxDB 2.x/3.x).

A reading's stored ``value`` is the validated one (absent where the source had no usable value) with its OPC UA
``status_code``; the backtest then treats it exactly as it treats a file's readings.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from ingest.tabular import Frame
from vigil.config import InfluxSettings
from vigil.contracts import MaintenanceEvent
from vigil.influx import MAINTENANCE, READINGS, InfluxSink, from_ns


def _where(start: datetime, end: datetime) -> str:
    return f"time >= '{start.astimezone(UTC).isoformat()}' AND time < '{end.astimezone(UTC).isoformat()}'"


def readings(
    settings: InfluxSettings, start: datetime, end: datetime, step: timedelta = timedelta(days=1)
) -> Iterator[Frame]:
    """The stored readings of ``[start, end)``, one frame per ``step``."""
    sink = InfluxSink(settings)
    t = start
    while t < end:
        stop = min(t + step, end)
        rows = sink.query(
            f'SELECT "value", "status_code" FROM "{READINGS}" WHERE {_where(t, stop)} GROUP BY "machine", "sensor"'
        )
        if rows:
            yield Frame(
                np.array([r["machine"] for r in rows], dtype=object),
                np.array([r["sensor"] for r in rows], dtype=object),
                np.array([int(r["time"]) / 1e9 for r in rows], dtype=np.float64),
                np.array([np.nan if r.get("value") is None else float(r["value"]) for r in rows], dtype=np.float64),
                np.array([int(r.get("status_code") or 0) for r in rows], dtype=np.uint32),
            )
        t = stop


def maintenance(settings: InfluxSettings, start: datetime, end: datetime) -> list[MaintenanceEvent]:
    """The stored maintenance events of ``[start, end)``, in time order."""
    rows = InfluxSink(settings).query(
        f'SELECT "event_id", "event_kind", "failure_mode", "text" FROM "{MAINTENANCE}" WHERE {_where(start, end)} '
        'GROUP BY "machine"'
    )
    events = [
        MaintenanceEvent(
            event_id=str(r.get("event_id") or f"{r['machine']}:{r['time']}"),
            machine_id=r["machine"],
            ts=from_ns(int(r["time"])),
            event=r["event_kind"],
            failure_mode=r.get("failure_mode"),
            text=r.get("text") or "",
        )
        for r in rows
        if r.get("event_kind") in ("failure", "repair", "inspection")
    ]
    return sorted(events, key=lambda e: e.ts)
