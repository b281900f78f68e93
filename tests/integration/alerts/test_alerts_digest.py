"""The digest end to end: drift and sensor-fault events through the real Kafka into the real alerts service page
nobody, and reach the reliability engineer's webhook (a real HTTP server) once, at the end of the shift, grouped
by machine; a restarted service does not send that shift again. The service's wall clock is injected, so the
shift ends when the test says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertService
from vigil.bus import machine_key, make_producer
from vigil.config import AlertConfig, KafkaSettings, Topics, VigilConfig
from vigil.contracts import Alert, DriftEvent, Prediction, encode

pytestmark = pytest.mark.integration

SHIFT_START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 06:00 in Berlin
SHIFT_END = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 14:00 in Berlin
EVENTS = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def build_config(
    example: VigilConfig, kafka: KafkaSettings, topics: Topics, influx: Any, tmp: Path, url: str
) -> VigilConfig:
    alerts = AlertConfig.model_validate(
        {
            "open_after": 1,
            "http_port": 0,
            "outbox_path": str(tmp / "outbox.sqlite3"),
            "retry_initial_s": 0.2,
            "receivers": [
                {"type": "webhook", "name": "planners", "url": f"{url}/planners"},
                {"type": "webhook", "name": "reliability", "url": f"{url}/reliability"},
            ],
            "routes": [{"receiver": "planners"}],
            "digest": {"interval": "shift", "timezone": "Europe/Berlin", "receivers": ["reliability"]},
        }
    )
    return example.model_copy(update={"kafka": kafka, "topics": topics, "influx": influx.settings(), "alerts": alerts})


def finding(machine: str, event: str, target: str, minutes: int) -> DriftEvent:
    return DriftEvent(
        ts=EVENTS + timedelta(minutes=minutes),
        machine_type="pump",
        machine_id=machine,
        detector="sensor_fault" if event == "sensor_fault" else "level_shift",
        target=target,
        event=event,
        detail="stuck: flow unchanged at 212.5 for 2 windows while speed changed" if event == "sensor_fault" else "",
    )


def alert_prediction(i: int) -> Prediction:
    return Prediction(
        machine_id="PMP-003",
        machine_type="pump",
        ts=EVENTS + timedelta(minutes=10 * i),
        model="logistic",
        p_failure=0.9,
        horizon_s=172800.0,
        decision="alert",
        decided_by="model",
    )


def send(kafka: KafkaSettings, topic: str, messages: list[Any]) -> None:
    producer = make_producer(kafka)
    for m in messages:
        producer.send(topic, key=machine_key(m.machine_id), value=encode(m))
    producer.flush(timeout=30)
    producer.close()


def paths(receiver: Any, path: str) -> list[Any]:
    return [r for r in receiver.snapshot() if r.path == path]


def test_alerts_digest_reaches_the_webhook_once_per_shift_and_pages_nobody(
    example_config: VigilConfig,
    kafka_settings: KafkaSettings,
    topics: Topics,
    influx: Any,
    tmp_path: Path,
    http_receiver: Any,
    unique: str,
    wait_for: Any,
) -> None:
    clock = [(SHIFT_START + timedelta(hours=2)).timestamp()]
    config = build_config(example_config, kafka_settings, topics, influx, tmp_path, http_receiver.url)
    service = AlertService(config, group_id=f"alerts-{unique}", clock=lambda: clock[0])
    service.setup(http=False)
    try:
        send(
            kafka_settings,
            topics.drift,
            [
                finding("PMP-001", "sensor_fault", "flow", 0),
                finding("PMP-002", "drift", "bearing_temp.mean", 10),
                finding("PMP-001", "drift", "vibration_rms.mean", 20),
            ],
        )
        send(kafka_settings, topics.predictions, [alert_prediction(0)])
        # The paged kind reaches the planners; the informational ones are recorded for the digest only.
        wait_for(lambda: len(paths(http_receiver, "/planners")) >= 1, step=service.run_once)
        wait_for(lambda: len(service.store.unsent_findings()) == 3, step=service.run_once)
        for _ in range(5):
            service.run_once(0.1)
        planners = [a for r in paths(http_receiver, "/planners") for a in r.json()["data"]["alerts"]]
        assert {a["alert_kind"] for a in planners} == {"failure_risk"}, "nobody is paged for drift or sensor faults"
        assert paths(http_receiver, "/reliability") == [], "the shift has not ended"

        clock[0] = SHIFT_END.timestamp() + 30
        wait_for(lambda: len(paths(http_receiver, "/reliability")) == 1, step=service.run_once)
        for _ in range(5):
            service.run_once(0.1)
    finally:
        service.close()

    (hook,) = paths(http_receiver, "/reliability")
    body = hook.json()
    assert body["type"] == "vigil.digest" and hook.headers["webhook-id"].startswith("dig_")
    data = body["data"]
    assert data["period"]["start"] == SHIFT_START.isoformat() and data["period"]["end"] == SHIFT_END.isoformat()
    grouped = {m["machine_id"]: sorted(e["kind"] for e in m["episodes"]) for m in data["machines"]}
    assert grouped == {"PMP-001": ["drift", "sensor_fault"], "PMP-002": ["drift"]}
    assert data["title"].startswith("Vigil digest, shift 2026-03-02 06:00-14:00 Europe/Berlin: 3 informational")
    assert "stuck: flow unchanged at 212.5" in data["text"]
    assert all(Alert.model_validate(a).alert_kind in ("drift", "sensor_fault") for a in data["alerts"])

    # A restart after the shift's digest went out: the same shift is not sent again.
    clock[0] += 60
    again = AlertService(config, group_id=f"alerts-{unique}", clock=lambda: clock[0])
    again.setup(http=False)
    try:
        for _ in range(10):
            again.run_once(0.1)
        assert again.store.digest_sent_until() == SHIFT_END.timestamp()
        # The next shift has no findings: nothing is sent (send_empty is off).
        clock[0] = (SHIFT_END + timedelta(hours=8, minutes=1)).timestamp()
        for _ in range(10):
            again.run_once(0.1)
        assert again.store.digest_sent_until() == (SHIFT_END + timedelta(hours=8)).timestamp()
    finally:
        again.close()
    assert len(paths(http_receiver, "/reliability")) == 1
