"""File replay into the real Kafka: a CSV through ``main()`` (as fast as possible) and a Parquet file, paced."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.publisher import KafkaPublisher
from ingest.replay import Replayer, main
from ingest.validation import Validator
from vigil.bus import ensure_topics, pipeline_topics
from vigil.config import KafkaSettings, PublishSettings, SpoolSettings, Topics, VigilConfig
from vigil.contracts import DeadLetter, ReadingBatch
from vigil.testing import consume

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _readings(messages: list[Any]) -> list[Any]:
    return [r for m in messages if isinstance(m, ReadingBatch) for r in m.readings()]


def test_csv_replay_through_main_is_count_exact_and_dead_letters_bad_rows(
    kafka_settings: KafkaSettings,
    topics: Topics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    path = tmp_path / "history.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "machine", "sensor", "value", "unit", "quality", "comment"])
        for i in range(600):
            machine = ("PMP-001", "PMP-002", "MTR-001")[i % 3]
            ts = (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
            w.writerow([ts, machine, "vibration_rms", f"{(i % 40) / 10:.1f}", "mm/s", "good" if i % 50 else "bad", "x"])
        w.writerow([T0.isoformat(), "PMP-001", "vibration_rms", "loud", "mm/s", "", ""])  # wrong_type
        w.writerow(["last tuesday", "PMP-001", "vibration_rms", "1.0", "mm/s", "", ""])  # bad_timestamp
        w.writerow([T0.isoformat(), "", "vibration_rms", "1.0", "mm/s", "", ""])  # missing_field
        w.writerow([T0.isoformat(), "PMP-777", "vibration_rms", "1.0", "mm/s", "", ""])  # unknown machine
        w.writerow(["2026-05-01T00:00:00", "MTR-001", "speed", "", "rpm", "", ""])  # naive = UTC, no value
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("VIGIL_TOPICS__READINGS", topics.readings)
    monkeypatch.setenv("VIGIL_TOPICS__DEAD_LETTER", topics.dead_letter)
    monkeypatch.setenv("VIGIL_SPOOL__PATH", str(tmp_path / "spool.sqlite"))
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)

    assert main([str(path), "--speed", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 605
    assert summary["replay"]["accepted"] == 601
    assert summary["replay"]["rejected"] == 1
    assert {k: summary["replay"][k] for k in ("wrong_type", "bad_timestamp", "missing_field")} == dict.fromkeys(
        ("wrong_type", "bad_timestamp", "missing_field"), 1
    )
    assert summary["validation"]["unknown_machine"] == 1
    assert summary["validation"]["bad_quality"] == 12
    assert summary["publisher"]["sent"] == 601

    messages = consume(
        kafka_settings,
        [topics.readings, topics.dead_letter],
        lambda out: len(_readings(out)) >= 601 and sum(isinstance(m, DeadLetter) for m in out) >= 3,
        settle_s=2,
    )
    readings = _readings(messages)
    assert len(readings) == 601
    assert max(Counter((r.machine_id, r.sensor, r.ts) for r in readings).values()) == 1
    [no_value] = [r for r in readings if r.sensor == "speed"]
    assert no_value.value is None
    assert no_value.ts == T0
    assert all(r.source == "replay:history.csv" for r in readings)
    letters = [m for m in messages if isinstance(m, DeadLetter)]
    assert sorted(m.reason for m in letters) == ["bad_timestamp", "missing_field", "wrong_type"]


def test_parquet_replay_is_paced_by_source_timestamps(
    kafka_settings: KafkaSettings, topics: Topics, example_config: VigilConfig, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    n = 240
    table = pa.table(
        {
            "machine": ["CMP-002"] * n,
            "sensor": ["discharge_pressure"] * n,
            "ts": pa.array([T0 + timedelta(seconds=i) for i in range(n)], type=pa.timestamp("ms", tz="UTC")),
            "value": [7.0 + (i % 10) / 10 for i in range(n)],
            "unit": ["bar"] * n,
        }
    )
    path = tmp_path / "history.parquet"
    pq.write_table(table, path)
    publisher = KafkaPublisher(
        kafka_settings, topics, SpoolSettings(path=tmp_path / "spool.sqlite"), PublishSettings(batch_max_ms=100)
    )
    # 239 s of history at 120x real time: at least ~2 s of wall time.
    replayer = Replayer(path, publisher, Validator(example_config), speed=120)
    started = time.monotonic()
    with publisher:
        counters = replayer.run()
    elapsed = time.monotonic() - started
    assert counters["accepted"] == n
    assert elapsed >= 1.9
    assert publisher.counters.sent == n
    readings = _readings(consume(kafka_settings, [topics.readings], lambda out: len(_readings(out)) >= n, settle_s=2))
    assert [r.ts for r in readings] == [T0 + timedelta(seconds=i) for i in range(n)]


def test_a_file_with_the_contracts_column_names_replays_without_a_mapping(
    kafka_settings: KafkaSettings,
    topics: Topics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An export that says ``machine_id`` and ``time`` (the contract's names) instead of ``machine`` and ``ts``."""
    ensure_topics(kafka_settings, pipeline_topics(kafka_settings, topics))
    path = tmp_path / "export.csv"
    path.write_text(
        "machine_id,sensor,time,value\n"
        + "".join(f"PMP-001,vibration_rms,{(T0 + timedelta(minutes=i)).isoformat()},{i / 10}\n" for i in range(50))
        + "PMP-001,vibration_rms,yesterday,1\n"
    )
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("VIGIL_TOPICS__READINGS", topics.readings)
    monkeypatch.setenv("VIGIL_TOPICS__DEAD_LETTER", topics.dead_letter)
    monkeypatch.setenv("VIGIL_SPOOL__PATH", str(tmp_path / "spool.sqlite"))
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    assert main([str(path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["readings"] == 50 and summary["refused"] == {"bad_timestamp": 1}
    assert summary["refusals"][0]["row"] == 52 and summary["refusals"][0]["column"] == "time"
    messages = consume(kafka_settings, [topics.readings], lambda out: len(_readings(out)) >= 50, settle_s=1)
    assert sorted(r.value for r in _readings(messages)) == [i / 10 for i in range(50)]
