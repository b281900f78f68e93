"""The worker's fast vector encoding decodes to the same FeatureVector as the contract's own encoder."""

from __future__ import annotations

import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from features.vector import encode_vector, window_engine
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config
from vigil.contracts import FeatureVector, Gap, decode_as, encode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "streaming"))
import streaming_oracle as oracle


def config(**windows: object) -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    return load_config(environ={}, data={**plant, "windows": {"size_s": 60, "grace_s": 10, **windows}})


def vectors(cfg: VigilConfig) -> list[FeatureVector]:
    """Real vectors: bad, late and duplicate readings, a sensor missing, a gap, windows closed at shutdown."""
    engine = window_engine(cfg)
    # CMP-001's other sensors never report: missing (and imputed where configured).
    readings = oracle.stream(9, {"PMP-001": ["flow", "speed"], "CMP-001": ["speed"]}, seconds=400)
    out = [v for r in readings[: len(readings) // 2] for v in engine.add(r)]
    gap_start = datetime.fromtimestamp(oracle.T0 + 250, UTC)
    engine.add_gap(
        Gap(machine_id="PMP-001", start=gap_start, end=datetime.fromtimestamp(oracle.T0 + 280, UTC), reason="test")
    )
    out += [v for r in readings[len(readings) // 2 :] for v in engine.add(r)]
    return out + engine.flush()


def test_fast_encoding_decodes_to_the_same_vector() -> None:
    for cfg in (config(), config(impute="last")):
        got = vectors(cfg)
        assert len(got) > 10
        assert any(v.missing for v in got) and any(v.gap for v in got)
        assert {v.closed_by for v in got} >= {"watermark", "shutdown"}
        assert any(value is None for v in got for value in v.features.values())
        for vector in got:
            fast = decode_as(encode_vector(vector), FeatureVector)
            assert fast == vector == decode_as(encode(vector), FeatureVector)
            assert fast.window_start == vector.window_start and fast.window_start.tzinfo is not None


def test_a_value_orjson_cannot_write_falls_back_to_the_contract_encoder() -> None:
    vector = vectors(config())[0]
    odd = vector.model_copy(update={"features": {"flow.mean": np.float64(1.25), "flow.max": None}})
    decoded = decode_as(encode_vector(odd), FeatureVector)
    assert decoded.features == {"flow.mean": 1.25, "flow.max": None}
