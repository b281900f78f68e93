"""The changelog record format: a machine's checkpoint restores to the same open windows, v1 records still read."""

from __future__ import annotations

import json
import sys
import tomllib
import zlib
from pathlib import Path
from typing import Any

import pytest

from features.vector import window_engine
from streaming.changelog import decode_checkpoint, encode_checkpoint
from streaming.exceptions import StateError
from vigil.config import EXAMPLE_CONFIG, VigilConfig, load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "streaming"))
import streaming_oracle as oracle


def config() -> VigilConfig:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    return load_config(environ={}, data={**plant, "windows": {"size_s": 60, "grace_s": 10}})


def _split_run(restore_state: Any) -> tuple[list[Any], list[Any]]:
    """Vectors of an uninterrupted run, and of a run checkpointed per machine halfway and restored."""
    cfg = config()
    readings = oracle.stream(5, {"PMP-001": ["flow", "speed"], "CMP-001": ["speed"]}, seconds=500)
    whole = window_engine(cfg)
    expected = [v for r in readings for v in whole.add(r)] + whole.flush()
    first = window_engine(cfg)
    got = [v for r in readings[: len(readings) // 2] for v in first.add(r)]
    second = window_engine(cfg)
    for machine in first.machines:
        restore_state(first, second, machine)
    got += [v for r in readings[len(readings) // 2 :] for v in second.add(r)] + second.flush()
    return got, expected


def test_a_binary_checkpoint_restores_the_same_windows_and_offsets() -> None:
    def via_record(first: Any, second: Any, machine: str) -> None:
        state = first.machine_state(machine, raw=True)
        checkpoint = decode_checkpoint(machine, encode_checkpoint({"readings:0": 42}, state))
        assert checkpoint.offsets == {"readings:0": 42}
        assert checkpoint.machine["buffers"] == state["buffers"]
        second.load_machine_state(machine, checkpoint.machine)

    got, expected = _split_run(via_record)
    assert got == expected


def test_base64_state_encodes_to_the_same_record_and_v1_records_still_restore() -> None:
    cfg = config()
    engine = window_engine(cfg)
    for r in oracle.stream(3, {"PMP-001": ["flow", "speed"]}, seconds=40):
        engine.add(r)
    raw, text = engine.machine_state("PMP-001", raw=True), engine.machine_state("PMP-001")
    assert encode_checkpoint({}, text) == encode_checkpoint({}, raw)
    v1 = zlib.compress(json.dumps({"v": 1, "offsets": {"t:0": 3}, "machine": text}).encode(), 1)
    restored = window_engine(cfg)
    restored.load_machine_state("PMP-001", decode_checkpoint("PMP-001", v1).machine)
    assert restored.machine_state("PMP-001", raw=True) == raw


def test_regular_event_times_shrink_well_below_the_raw_floats() -> None:
    engine = window_engine(config())
    for r in oracle.stream(7, {"PMP-001": ["flow", "speed"]}, seconds=50):
        engine.add(r)
    state = engine.machine_state("PMP-001", raw=True)
    assert state is not None
    raw_bytes = sum(len(ts) + len(v) for ts, v in state["buffers"].values())
    assert len(encode_checkpoint({}, state)) < raw_bytes


@pytest.mark.parametrize("value", [b"not state", b"VGS2" + zlib.compress(b"\x00\x00\x00\x02{}"), b"VGS2garbage"])
def test_unreadable_records_are_a_typed_error(value: bytes) -> None:
    with pytest.raises(StateError):
        decode_checkpoint("PMP-001", value)


def test_a_truncated_record_is_a_typed_error() -> None:
    engine = window_engine(config())
    for r in oracle.stream(2, {"PMP-001": ["flow"]}, seconds=20):
        engine.add(r)
    state = engine.machine_state("PMP-001", raw=True)
    assert state is not None
    with pytest.raises(StateError):
        decode_checkpoint("PMP-001", encode_checkpoint({}, state)[:-9])
