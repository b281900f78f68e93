"""Changelog record format v3: byte planes of the held readings, the structured ones zlib'd, the noisy ones stored
as they are. Round trips for the kinds of data a plant sends, and v2 records (written by older workers) still
restore."""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import pytest

from streaming.changelog import decode_checkpoint, encode_checkpoint
from streaming.exceptions import StateError

T0 = 1_764_000_000.0


def _v2(offsets: dict[str, int], machine: dict[str, Any]) -> bytes:
    """The format-2 encoder as older workers ran it (byte-shuffled float64 per sensor behind a JSON header)."""

    def shuffle(data: bytes) -> bytes:
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, 8).T.tobytes()

    header_machine = dict(machine)
    header_machine["buffers"] = {s: len(ts) // 8 for s, (ts, _) in machine["buffers"].items()}
    planes = [shuffle(b) for ts, values in machine["buffers"].values() for b in (ts, values)]
    header = json.dumps({"v": 2, "offsets": offsets, "machine": header_machine}).encode()
    return b"VGS2" + zlib.compress(b"".join([len(header).to_bytes(4, "big"), header, *planes]), 1)


def _machine(n: int, times: str, values: str, sensors: int = 3, seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    buffers: dict[str, list[bytes]] = {}
    for k in range(sensors):
        ts = T0 + np.arange(n, dtype=np.float64) + 0.001 * k
        if times == "jitter":
            ts = np.round(ts + rng.uniform(0.0, 0.05, n), 3)
        v = {
            "noise": 50.0 + k + rng.normal(0.0, 0.5, n),
            "regular": 50.0 + k + (np.arange(n) % 17) * 0.1,
            "nan": np.where(np.arange(n) % 3 == 0, np.nan, 1e-13 * rng.normal(size=n)),
        }[values]
        buffers[f"s{k}"] = [ts.tobytes(), v.tobytes()]
    previous = {"s0": {"mean": 1.5, "count": 3.0}}
    return {"watermark": T0 + n, "closed_upto": T0, "gaps": [[T0, T0 + 1]], "previous": previous, "buffers": buffers}


@pytest.mark.parametrize("n", [0, 1, 7, 600, 3000])
@pytest.mark.parametrize(("times", "values"), [("regular", "noise"), ("jitter", "regular"), ("jitter", "nan")])
def test_a_record_restores_exactly(n: int, times: str, values: str) -> None:
    machine = _machine(n, times, values)
    if n == 0:
        machine["buffers"] = {}
    record = encode_checkpoint({"readings:3": 99}, machine)
    back = decode_checkpoint("PMP-001", record)
    assert back.offsets == {"readings:3": 99}
    assert back.machine["buffers"] == machine["buffers"]  # bit for bit, NaN payloads included
    assert {k: v for k, v in back.machine.items() if k != "buffers"} == {
        k: v for k, v in machine.items() if k != "buffers"
    }


def test_noisy_planes_are_stored_and_structured_ones_compressed() -> None:
    machine = _machine(3000, "regular", "noise")
    record = encode_checkpoint({}, machine)
    raw = sum(len(ts) + len(v) for ts, v in machine["buffers"].values())
    # The noisy low bytes of the values go as they are, the rest (times, exponents) nearly vanishes.
    assert raw * 0.3 < len(record) < raw * 0.55
    assert len(encode_checkpoint({}, _machine(3000, "regular", "regular"))) < raw * 0.5


def test_v2_records_still_restore() -> None:
    machine = _machine(500, "jitter", "noise")
    back = decode_checkpoint("PMP-001", _v2({"t:0": 5}, machine))
    assert back.offsets == {"t:0": 5}
    assert back.machine["buffers"] == machine["buffers"]


@pytest.mark.parametrize("cut", [1, 9, 2000, 20000])
def test_a_truncated_record_is_a_typed_error(cut: int) -> None:
    record = encode_checkpoint({}, _machine(3000, "jitter", "noise"))
    with pytest.raises(StateError):
        decode_checkpoint("PMP-001", record[:-cut])
    with pytest.raises(StateError):
        decode_checkpoint("PMP-001", record + b"\x00" * cut)


def test_unequal_columns_are_refused() -> None:
    with pytest.raises(StateError):
        encode_checkpoint({}, {"buffers": {"s": [b"\x00" * 16, b"\x00" * 8]}})
