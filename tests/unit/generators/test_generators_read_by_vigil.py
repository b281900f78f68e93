"""The generated exports read through Vigil's own readers with the generated plant.toml: what the tutorial promises.

Every clean row becomes readings in the configured units at the true UTC times, every broken row is refused at
the line truth.json names with the expected reason, and the CMMS export yields exactly the true failures and repairs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.maintenance import read_file
from ingest.tabular import TableReader
from tests.generators import motors, pumps
from vigil.config import VigilConfig, load_config

REASONS = {
    "bad_timestamp": "bad_timestamp",
    "value_text": "wrong_type",
    "unknown_tag": "unknown_tag",
    "oversized_text": "oversized",
    "unknown_asset": "unknown_machine",
    "unknown_equipment": "unknown_machine",
    "bad_date": "bad_timestamp",
    "unknown_type": "unknown_kind",
}
"""The generator's broken-row kind -> Vigil's refusal reason (a missing last cell is an empty cell: no refusal)."""


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def expected_refusals(truth: dict[str, Any], file: str) -> set[tuple[int, str]]:
    return {(b["line"], REASONS[b["kind"]]) for b in truth["broken_rows"][file] if b["kind"] in REASONS}


def read_historian(config: VigilConfig) -> tuple[dict[str, np.ndarray], set[tuple[int, str]]]:
    (source,) = config.sources.file
    assert source.path is not None
    sensors = {machine: set(m.sensors) for machine, m in config.machines_by_id.items()}
    reader = TableReader(source.mapping, sensors, delimiter=source.delimiter)
    parts: dict[str, list[np.ndarray]] = {"machine": [], "sensor": [], "ts": [], "value": [], "status": []}
    for frame, _ in reader.read(Path(source.path)):
        for key, values in parts.items():
            values.append(np.asarray(getattr(frame, key)))
    return {k: np.concatenate(v) for k, v in parts.items()}, {(r.row, r.reason) for r in reader.refusals}


@pytest.mark.parametrize(
    ("generator", "params"),
    [
        (pumps, pumps.FleetParams(healthy_share=0.0, mean_onset_h=12.0, short_life_share=1.0)),
        (motors, motors.MotorParams(healthy_share=0.0, mean_onset_h=12.0, short_life_share=1.0)),
    ],
    ids=["pumps", "motors"],
)
def test_the_exports_read_through_vigil_refuse_exactly_the_broken_rows(
    generator: Any, params: Any, tmp_path: Path
) -> None:
    fleet = generator.generate_fleet(6, machines=2, days=4, params=params)
    generator.write_exports(fleet, tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())
    config = load_config(tmp_path / "plant.toml", environ={})

    readings, refused = read_historian(config)
    assert refused == expected_refusals(truth, "historian.csv")
    assert set(np.unique(readings["ts"]).tolist()) <= set(fleet.time.astype(float).tolist())
    assert set(np.unique(readings["machine"]).tolist()) == set(truth["machines"])

    (cmms,) = config.sources.maintenance
    assert cmms.path is not None
    result = read_file(Path(cmms.path), cmms, set(config.machines_by_id))
    assert {(r.row, r.reason) for r in result.refusals} == expected_refusals(truth, "workorders.csv")
    failures = sorted((e.machine_id, e.ts.timestamp()) for e in result.events if e.event.value == "failure")
    assert [m for m, _ in failures] == [
        f["machine"] for f in sorted(truth["failures"], key=lambda f: (f["machine"], f["time"]))
    ]
    true_times = sorted((f["machine"], utc(f["time"])) for f in truth["failures"])
    assert all(0 <= ts - t <= 30 * 60 for (_, ts), (_, t) in zip(failures, true_times, strict=True))
    repairs = sorted((e.machine_id, e.ts.timestamp()) for e in result.events if e.event.value == "repair")
    assert repairs == sorted((r["machine"], utc(r["time"])) for r in truth["repairs"])
    assert truth["failures"] and truth["repairs"], (
        "seed 6: failing machines with short lives fail and restart within 4 days"
    )


def test_pump_bearing_temperature_arrives_in_degc_at_the_true_utc_time(tmp_path: Path) -> None:
    fleet = pumps.generate_fleet(8, machines=2, days=1)
    pumps.write_exports(fleet, tmp_path)
    readings, _ = read_historian(load_config(tmp_path / "plant.toml", environ={}))
    for p in fleet.pumps:
        for sensor in ("bearing_temp", "flow", "speed"):
            pick = (
                (readings["machine"] == p.machine_id) & (readings["sensor"] == sensor) & np.isfinite(readings["value"])
            )
            steps = np.searchsorted(fleet.time, readings["ts"][pick])
            # Written with 2 (degF), 1 and 0 decimals: the round trip is exact to that.
            np.testing.assert_allclose(readings["value"][pick], p.measured[sensor][steps], atol=0.51)
            if sensor == "bearing_temp":
                np.testing.assert_allclose(readings["value"][pick], p.measured[sensor][steps], atol=0.01)
