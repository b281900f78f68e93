"""The window engine's output is the same whether a collector sends packed, JSON-column or row messages: the same
readings (duplicates, nulls, bad quality, out of order) give the same feature vectors."""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.vector import window_engine
from ingest.publisher import encode_batch, encode_columns, encode_packed
from streaming.decoding import ReadingDecoder
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import FeatureVector, Quality, Reading

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _config() -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    return load_config(environ={}, data={**plant, "windows": {"size_s": 60, "grace_s": 5}})


_CONFIG = _config()
_reading = st.builds(
    lambda sensor, ms, value, quality: Reading(
        machine_id="PMP-001", sensor=sensor, ts=T0 + timedelta(milliseconds=ms), value=value, quality=quality
    ),
    sensor=st.sampled_from(["flow", "speed", "pressure", "not_configured"]),
    ms=st.one_of(st.integers(0, 200_000), st.sampled_from([0, 1000, 60_000])),  # repeats: duplicates
    value=st.one_of(st.none(), st.floats(-1e3, 1e3), st.sampled_from([math.nan, math.inf, -0.0])),
    quality=st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.BAD, Quality.UNCERTAIN]),
)


def _vectors(payloads: list[bytes]) -> list[dict[str, Any]]:
    engine = window_engine(_CONFIG)
    decoder = ReadingDecoder()
    out: list[FeatureVector] = []
    for payload in payloads:
        d = decoder.decode(payload)
        if d.columns is not None:
            c = d.columns
            out += engine.add_columns(d.machine_id, c.sensors, c.lengths, c.ts, c.values)
        else:
            out += engine.add_samples(d.machine_id, d.samples)
    out += engine.flush()
    # NaN-free comparison: repr of every feature.
    return [
        {**v.model_dump(exclude={"features"}), "features": {k: repr(x) for k, x in v.features.items()}} for v in out
    ]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(_reading, min_size=1, max_size=30), min_size=1, max_size=4))
def test_packed_json_columns_and_rows_give_the_same_feature_vectors(batches: list[list[Reading]]) -> None:
    packed = _vectors([encode_packed("PMP-001", b) for b in batches])
    assert packed == _vectors([encode_columns("PMP-001", b) for b in batches])
    assert packed == _vectors([encode_batch("PMP-001", b) for b in batches])
