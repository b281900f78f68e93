"""An independent reference for window features (pandas/numpy/scipy), and a seeded stream to feed it.

Shared by the unit and integration tests of the streaming stage (loaded by path: test modules do not import each
other). It re-derives the semantics from the documentation, not from the engine's code: tumbling windows aligned
to the epoch, watermark = largest event time of accepted readings per machine, a reading is late when its
window's end + grace <= the watermark before it arrived, duplicates (machine, sensor, time) keep the first,
unusable readings count only in bad_share.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from vigil.contracts import Quality, Reading

T0 = 1_764_000_000.0  # 2025-11-24, aligned to 600 s; in the past, as real plant data is (see max_clock_skew_s)


def stream(
    seed: int,
    machines: dict[str, list[str]],
    seconds: float = 600.0,
    period: float = 2.0,
    *,
    disorder: float = 6.0,
    duplicates: float = 0.05,
    bad: float = 0.05,
    late: float = 0.02,
) -> list[Reading]:
    """Readings in arrival order: jittered times, bounded disorder, re-sent duplicates, bad ones, late ones."""
    rng = random.Random(seed)
    events: list[tuple[float, Reading]] = []
    for machine, sensors in machines.items():
        for s_i, sensor in enumerate(sensors):
            t = T0 + rng.uniform(0, period)
            level = 50.0 + 10 * s_i
            while t < T0 + seconds:
                value: float | None = level + 0.01 * (t - T0) + rng.gauss(0, 2)
                quality = Quality.GOOD
                if rng.random() < bad:
                    quality, value = rng.choice(
                        [(Quality.BAD, value), (Quality.GOOD, None), (Quality.UNCERTAIN, value)]
                    )
                ts = datetime.fromtimestamp(round(t, 3), UTC)
                reading = Reading(machine_id=machine, sensor=sensor, ts=ts, value=value, quality=quality)
                arrival = t + rng.uniform(0, disorder)
                events.append((arrival, reading))
                if rng.random() < duplicates:
                    events.append((arrival + rng.uniform(0, 3 * disorder), reading))
                if rng.random() < late:
                    events.append((arrival + rng.uniform(80, 200), reading))
                t += period * rng.uniform(0.5, 1.5)
    events.sort(key=lambda e: e[0])
    return [r for _, r in events]


def reference(
    readings: list[Reading] | list[list[Reading]], sensors_of: dict[str, list[str]], size: float, grace: float
) -> dict[Any, Any]:
    """(machine, window start) -> {"count", "bad_share", "missing", "features"} for every window with readings.

    ``readings`` in arrival order, or a list of messages (lists of one machine's readings) that arrive together:
    a message's readings are judged late against the watermark before the message.
    """
    messages: list[list[Reading]] = [r if isinstance(r, list) else [r] for r in readings]
    rows = []
    watermark: dict[str, float] = {}
    for message in messages:
        before = dict(watermark)
        for r in message:
            ts = r.ts.timestamp()
            end = math.floor(ts / size) * size + size
            if end + grace <= before.get(r.machine_id, -math.inf):
                continue  # late
            watermark[r.machine_id] = max(watermark.get(r.machine_id, -math.inf), ts)
            good = r.value is not None and math.isfinite(r.value) and r.quality == Quality.GOOD
            rows.append((r.machine_id, r.sensor, ts, r.value if good else np.nan))
    df = pd.DataFrame(rows, columns=["machine", "sensor", "ts", "value"])
    df = df.drop_duplicates(subset=["machine", "sensor", "ts"], keep="first")
    df["start"] = np.floor(df["ts"] / size) * size
    out: dict[Any, Any] = {}
    for (machine, start), window in df.groupby(["machine", "start"]):
        end = start + size
        features: dict[str, float | None] = {}
        missing = []
        for sensor in sensors_of[machine]:
            rows_s = window[window["sensor"] == sensor].sort_values("ts")
            good = rows_s.dropna(subset=["value"])
            v, t = good["value"], good["ts"]
            features[f"{sensor}.bad_share"] = (len(rows_s) - len(good)) / len(rows_s) if len(rows_s) else None
            if len(good) == 0:
                missing.append(sensor)
                continue
            centred = v - v.mean()
            features.update(
                {
                    f"{sensor}.count": float(len(v)),
                    f"{sensor}.mean": float(v.mean()),
                    f"{sensor}.std": float(v.std(ddof=0)),
                    f"{sensor}.min": float(v.min()),
                    f"{sensor}.max": float(v.max()),
                    f"{sensor}.last": float(v.iloc[-1]),
                    f"{sensor}.slope": float(np.polyfit(t - start, v, 1)[0]) if len(v) > 1 else 0.0,
                    f"{sensor}.rms": float(np.sqrt((v**2).mean())),
                    f"{sensor}.p2p": float(v.max() - v.min()),
                    f"{sensor}.skew": float(stats.skew(v, bias=True)) if (centred**2).sum() > 0 else 0.0,
                    f"{sensor}.kurtosis": float(stats.kurtosis(v, bias=True)) if (centred**2).sum() > 0 else 0.0,
                    f"{sensor}.since_last": float(end - t.iloc[-1]),
                }
            )
        total = len(window)
        out[(machine, float(start))] = {
            "count": total,
            "bad_share": float(window["value"].isna().sum()) / total,
            "missing": missing,
            "features": features,
        }
    return out


def assert_matches(vectors: list[Any], expected: dict[Any, Any]) -> None:
    got = {(v.machine_id, v.window_start.timestamp()): v for v in vectors}
    assert len(got) == len(vectors), "a window was emitted twice"
    assert sorted(got) == sorted(expected)
    for key, ref in expected.items():
        v = got[key]
        assert v.count == ref["count"], key
        assert v.bad_quality_share == pytest_approx(ref["bad_share"]), key
        assert sorted(v.missing) == sorted(ref["missing"]), key
        for name, value in ref["features"].items():
            assert v.features[name] == pytest_approx(value), (key, name)
        for sensor in ref["missing"]:
            assert v.features[f"{sensor}.mean"] is None


def pytest_approx(value: float | None) -> Any:
    import pytest

    return value if value is None else pytest.approx(value, rel=1e-6, abs=1e-6)
