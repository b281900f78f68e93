"""InfluxDB killed mid-stream: the alerts service holds its Kafka offsets until InfluxDB is back; nothing is lost,
nothing is doubled.

Uses a PRIVATE InfluxDB on free ports (the shared one is never stopped) and the shared Kafka.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertService
from vigil.bus import machine_key, make_producer
from vigil.config import AlertConfig, InfluxSettings, KafkaSettings, Topics, VigilConfig
from vigil.contracts import Alert, Prediction, encode
from vigil.services import InfluxDB

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MACHINES = ("PMP-001", "PMP-002", "MTR-001", "CMP-003")


def _count(url: str, q: str) -> int:
    data = urllib.parse.urlencode({"q": q, "db": "vigil"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=10) as resp:
        result = json.loads(resp.read())
    series = result["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def _predictions(start: int, count: int) -> list[Prediction]:
    """Distinct (machine, ts); every 25th window of PMP-001 is risky, so alerts open and resolve along the way."""
    out = []
    for i in range(start, start + count):
        machine = MACHINES[i % len(MACHINES)]
        k = i // len(MACHINES)
        risky = machine == "PMP-001" and k % 25 in (10, 11, 12)
        out.append(
            Prediction(
                machine_id=machine,
                machine_type=machine[:3].lower(),
                ts=T0 + timedelta(minutes=10 * k),
                model="logistic",
                p_failure=0.8 if risky else 0.05,
                horizon_s=172800.0,
                decision="alert" if risky else "ok",
                decided_by="model",
            )
        )
    return out


def _send(kafka: KafkaSettings, topic: str, messages: list[Prediction]) -> None:
    producer = make_producer(kafka)
    for m in messages:
        producer.send(topic, key=machine_key(m.machine_id), value=encode(m))
    producer.flush(timeout=30)
    producer.close()


def _committed(service: AlertService) -> int:
    return service.committed().get(service.config.topics.predictions, 0)


def _drive(service: AlertService, condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        service.run_once(0.2)


def test_influx_killed_mid_stream_nothing_lost_offsets_held(
    private_influx: InfluxDB,
    example_config: VigilConfig,
    kafka_settings: KafkaSettings,
    topics: Topics,
    tmp_path: Path,
    unique: str,
) -> None:
    url = private_influx.cfg.influx_url
    influx = InfluxSettings(url=url, database="vigil", max_retries=1, retry_backoff_s=0.1, timeout_s=3, batch_size=50)
    alerts = AlertConfig(open_after=2, cooldown_s=0, resolve_after_s=0, outbox_path=str(tmp_path / "outbox.sqlite3"))
    config = example_config.model_copy(
        update={"kafka": kafka_settings, "topics": topics, "influx": influx, "alerts": alerts}
    )
    service = AlertService(config, group_id=f"outage-{unique}")
    service.setup(http=False)
    try:
        first, second = _predictions(0, 400), _predictions(400, 400)
        _send(kafka_settings, topics.predictions, first)
        _drive(service, lambda: _committed(service) == 400)
        assert _count(url, 'SELECT count("p_failure") FROM "predictions"') == 400

        private_influx.down()  # killed mid-stream
        _send(kafka_settings, topics.predictions, second)
        _drive(service, lambda: service.blocked)
        # Keep the service running against the dead database for a while: offsets do not move.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            service.run_once(0.2)
        assert service.blocked and _committed(service) == 400

        private_influx.up()
        _drive(service, lambda: _committed(service) == 800 and not service.blocked)
    finally:
        service.close()

    # Nothing lost. (A rewritten point overwrites itself in InfluxDB, so doubles cannot show here; the alerts
    # topic below is where a repeated transition would show.)
    assert _count(url, 'SELECT count("p_failure") FROM "predictions"') == 800, "nothing lost"
    transitions = _count(url, 'SELECT count("status") FROM "alerts"')
    # Every risky stretch of PMP-001 (3 windows) opens once and resolves once: 8 stretches in 200 windows.
    assert transitions == 16
    assert service.stats.blocked_s > 0

    from vigil.bus import make_consumer

    consumer = make_consumer(kafka_settings, None, [topics.alerts])
    seen: list[Alert] = []
    deadline = time.monotonic() + 60
    while len(seen) < 16 and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            seen += [Alert.model_validate_json(r.value) for r in batch]
    consumer.close()
    keys = [(a.alert_id, a.seq) for a in seen]
    assert len(keys) == 16 and len(set(keys)) == 16, "each transition published exactly once"
