"""``vigil backtest --from-influx START END`` scores a time range already in InfluxDB (the real 1.x server) exactly
as it scores the same history from files."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from backtest.cli import main
from backtest.cli import maintenance as read_maintenance
from backtest.cli import readings as read_readings
from tests.generators import pumps
from vigil.config import load_config
from vigil.influx import InfluxSink, MachineTags, Schema

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_a_stored_time_range_scores_like_the_files_it_came_from(
    tmp_path: Path, influx: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = tmp_path / "plant"
    assert pumps.main(["--out", str(plant), "--seed", "11", "--machines", "2", "--days", "3"]) == 0
    capsys.readouterr()
    config = load_config(plant / "plant.toml", environ={})
    events, _ = read_maintenance(config, config.sources.maintenance[0], [plant / "workorders.csv"])
    assert events
    _, frames = read_readings(config, config.sources.file[0], [plant / "historian.csv"])
    schema = Schema({m.id: MachineTags(m.type, m.site, m.line) for m in config.machines_by_id.values()})
    sink = InfluxSink(influx.settings())
    first = last = None
    for frame in frames:
        for reading in frame.readings("test"):
            sink.add(schema.reading(reading))
            first = reading.ts if first is None or reading.ts < first else first
            last = reading.ts if last is None or reading.ts > last else last
    for event in events:
        sink.add_all(schema.points(event))
    sink.flush()
    assert first is not None and last is not None

    monkeypatch.setenv("VIGIL_INFLUX__URL", influx.url)
    monkeypatch.setenv("VIGIL_INFLUX__DATABASE", influx.database)
    monkeypatch.setenv("VIGIL_INFLUX__API", "v1")
    args = ["--config", str(plant / "plant.toml")]
    assert main([*args, "--out", str(tmp_path / "files")]) == 0
    span = [first.isoformat(), (last + timedelta(seconds=1)).isoformat()]
    assert main([*args, "--from-influx", *span, "--out", str(tmp_path / "influx")]) == 0, capsys.readouterr().err
    from_files, from_influx = (json.loads((tmp_path / d / "backtest.json").read_text()) for d in ("files", "influx"))
    assert from_influx["readings"] == from_files["readings"] > 0
    assert from_influx["windows"] == from_files["windows"]
    assert from_influx["scores"] == from_files["scores"]
    assert from_influx["false_alarms"] == from_files["false_alarms"]
