"""Event times at the ends of what a datetime can hold (years 1 and 9999) are refused, never a crash (found in
review: a window ending in year 10000 or starting in year 0 cannot become a FeatureVector)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest

from features.vector import window_engine
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config

PLANT = tomllib.loads(EXAMPLE_CONFIG.read_text())
LAST_MINUTE_OF_9999 = datetime(9999, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp()


def _config(**windows: Any) -> VigilConfig:
    return load_config(environ={}, data={**PLANT, "windows": {"size_s": 60, "grace_s": 10, **windows}})


@pytest.mark.parametrize("bulk", [False, True])
def test_a_reading_in_the_last_window_of_year_9999_never_crashes_the_engine(bulk: bool) -> None:
    import numpy as np

    engine = window_engine(_config(max_clock_skew_s=float("inf")))
    engine.set_clock(1_764_000_000.0)
    if bulk:
        engine.add_columns("PMP-001", ["flow"], [1], np.array([LAST_MINUTE_OF_9999]), np.array([1.0]))
    else:
        engine.add_samples("PMP-001", [("flow", LAST_MINUTE_OF_9999, 1.0)])
    engine.flush()
    assert engine.stats.clock_skew == 1


def test_the_epoch_of_the_last_microsecond_of_9999_is_not_a_datetime() -> None:
    # Why features/service.py _dead_late (datetime.fromtimestamp(reading.ts, UTC)) can raise for a clock_skew
    # reading with the default max_clock_skew_s: the contract accepts 9999-12-31T23:59:59.999999Z, whose float
    # epoch rounds up to 253402300800.0. Fix there: clamp to 253402300799.999 before fromtimestamp (or catch
    # ValueError/OverflowError and write the raw epoch number into the dead letter).
    ts = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC).timestamp()
    assert ts == 253402300800.0
    with pytest.raises(ValueError):
        datetime.fromtimestamp(ts, UTC)


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_the_contract_refuses_timestamps_outside_years_1_to_9999_in_utc(ts: str) -> None:
    import json

    from vigil.contracts import decode
    from vigil.exceptions import ContractError

    payload = json.dumps({"v": 1, "kind": "reading", "machine_id": "PMP-001", "sensor": "flow", "ts": ts, "value": 1})
    with pytest.raises(ContractError):
        decode(payload)


@pytest.mark.parametrize("bulk", [False, True])
def test_a_reading_of_year_1_never_crashes_the_engine(bulk: bool) -> None:
    import numpy as np

    engine = window_engine(_config(kind="hopping", size_s=60, hop_s=20))
    ts = datetime(1, 1, 1, 0, 0, 10, tzinfo=UTC).timestamp()
    if bulk:
        engine.add_columns("PMP-001", ["flow", "flow"], [1, 1], np.array([ts, ts + 86400.0]), np.array([1.0, 2.0]))
    else:
        engine.add_samples("PMP-001", [("flow", ts, 1.0), ("flow", ts + 86400.0, 2.0)])
    vectors = engine.flush()
    assert engine.stats.late == 1 and [r.ts for r in engine.drain_late()] == [ts]
    assert vectors and all(v.window_start.year == 1 for v in vectors), "the next day's reading still counts"
