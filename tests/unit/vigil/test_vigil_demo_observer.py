"""The demo's observer counts readings in every batch form a collector may be configured for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.publisher import encode_batch, encode_columns, encode_packed
from vigil.config import Topics
from vigil.contracts import Reading
from vigil.demo import Observed


def test_rows_columns_and_packed_batches_all_count_their_readings() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    readings = [
        Reading(machine_id="PMP-001", sensor=s, ts=t + timedelta(seconds=i), value=float(i))
        for i in range(5)
        for s in ("flow", "speed")
    ]
    observed = Observed()
    for encoder in (encode_batch, encode_columns, encode_packed):
        observed.see("readings", Topics(), encoder("PMP-001", readings, "test"))
    assert observed.reading_messages == 3 and observed.readings == 30
    assert observed.last_reading_ts == t + timedelta(seconds=4)
    assert not observed.dead_letters
