"""A broker outage is weather: the alerts service keeps running through it (no traceback from the lag metric or a
held commit), reports itself not ready while Kafka does not answer, a service started during the outage waits for
the broker instead of exiting, and after it every transition is on the topic once.

Uses a PRIVATE Kafka broker on free ports (the shared one is never stopped) and the shared InfluxDB.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertService
from tests.integration.alerts.conftest import TopicReader
from tests.integration.alerts.test_alerts_service import build_config, prediction, send
from vigil.config import KafkaSettings, Topics, VigilConfig
from vigil.contracts import Alert
from vigil.metrics import ServiceMetrics
from vigil.services import Kafka

pytestmark = pytest.mark.integration


def test_alerts_ride_out_a_broker_outage(
    example_config: VigilConfig,
    private_kafka: Kafka,
    topics: Topics,
    influx: Any,
    tmp_path: Path,
    http_receiver: Any,
    unique: str,
    wait_for: Any,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=private_kafka.cfg.kafka_bootstrap, client_id="alerts-outage", linger_ms=5)
    config = build_config(example_config, kafka, topics, influx, tmp_path, http_receiver.url)
    metrics = ServiceMetrics("alerts", process_metrics=False, lag_interval_s=0.5)
    service = AlertService(config, group_id=f"alerts-{unique}", metrics=metrics)
    service.setup(http=False)
    alerts_topic = TopicReader(kafka, topics.alerts)
    late: AlertService | None = None
    try:
        send(kafka, topics.predictions, [prediction(0, 0.7), prediction(1, 0.7)])
        wait_for(
            lambda: [m.state.value for m in alerts_topic.read() if isinstance(m, Alert)] == ["open"],
            step=service.run_once,
        )
        assert metrics.readiness()[0]

        private_kafka.down()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and metrics.readiness()[0]:
            service.run_once(0.2)  # must not raise: the lag metric fails quietly
        ready, details = metrics.readiness()
        assert not ready and "kafka" in details["reason"], details
        assert metrics.registry.get_sample_value("vigil_errors_total", {"kind": "consumer_lag"})

        # A second deployment started while the broker is down waits in setup() instead of exiting.
        late = AlertService(
            config.model_copy(
                update={"alerts": config.alerts.model_copy(update={"outbox_path": str(tmp_path / "late.sqlite3")})}
            ),
            group_id=f"alerts-{unique}-late",
        )
        failed: list[BaseException] = []

        def start_late() -> None:
            try:
                assert late is not None
                late.setup(http=False)
            except BaseException as exc:
                failed.append(exc)

        starter = threading.Thread(target=start_late, daemon=True)
        starter.start()
        for _ in range(10):
            service.run_once(0.2)
        assert starter.is_alive() and not failed, "setup waits for the broker"

        private_kafka.up()
        starter.join(timeout=120)
        assert not starter.is_alive() and not failed, failed
        send(kafka, topics.predictions, [prediction(2, 0.1)])
        wait_for(
            lambda: [m.state.value for m in alerts_topic.read() if isinstance(m, Alert)] == ["open", "resolved"],
            step=service.run_once,
            timeout=120,
        )
        wait_for(lambda: metrics.readiness()[0], step=service.run_once, timeout=60)
        for _ in range(10):
            service.run_once(0.1)
        transitions = [(m.alert_id, m.seq) for m in alerts_topic.read() if isinstance(m, Alert)]
        assert len(transitions) == len(set(transitions)) == 2
    finally:
        alerts_topic.close()
        service.close()
        if late is not None:
            late.stop.set()
            late.close()
