"""The alerts service dies at each point of its commit: inside the Kafka transaction, and after Kafka committed but
before sqlite noted it. The restarted service publishes each recorded transition exactly once, with the sequence
number it was recorded with; InfluxDB and the webhook agree. Real Kafka, InfluxDB and an HTTP receiver."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertService
from tests.integration.alerts.test_alerts_service import build_config, prediction, send
from vigil.config import KafkaSettings, Topics, VigilConfig
from vigil.contracts import Alert
from vigil.influx import parse_influxql

pytestmark = pytest.mark.integration


class _DiesAtCommit:
    """A transactional producer whose process 'dies' (KeyboardInterrupt) where the transaction would commit."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer

    def commit_transaction(self) -> None:
        self._producer.flush(timeout=30)  # the records reached the broker, uncommitted
        raise KeyboardInterrupt("simulated crash inside the Kafka transaction")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


def _crash(service: AlertService) -> None:
    with pytest.raises(KeyboardInterrupt):
        for _ in range(600):
            service.run_once(0.2)
    service.close()


def _finish(again: AlertService, alerts_topic: Any, wait_for: Any) -> list[tuple[str, int, str]]:
    try:
        wait_for(lambda: len([m for m in alerts_topic.read() if isinstance(m, Alert)]) >= 2, step=again.run_once)
        for _ in range(15):
            again.run_once(0.1)
    finally:
        again.close()
    return [(m.alert_id, m.seq, m.state.value) for m in alerts_topic.read() if isinstance(m, Alert)]


@pytest.mark.parametrize("where", ["inside the Kafka transaction", "after Kafka committed, before sqlite noted it"])
def test_a_crash_in_the_commit_publishes_each_transition_once(
    where: str,
    example_config: VigilConfig,
    kafka_settings: KafkaSettings,
    topics: Topics,
    influx: Any,
    tmp_path: Path,
    http_receiver: Any,
    unique: str,
    wait_for: Any,
    topic_reader: Any,
) -> None:
    config = build_config(example_config, kafka_settings, topics, influx, tmp_path, http_receiver.url)
    alerts_topic = topic_reader(topics.alerts)
    crashing = AlertService(config, group_id=f"alerts-{unique}")
    crashing.setup(http=False)
    if where.startswith("inside"):
        txn = crashing._txn_producer()
        txn._producer = _DiesAtCommit(txn.producer)
    else:

        def die(batch: int) -> None:
            raise KeyboardInterrupt("simulated crash after the Kafka commit")

        crashing.store.published = die  # type: ignore[method-assign]
    send(kafka_settings, topics.predictions, [prediction(0, 0.7), prediction(1, 0.7), prediction(2, 0.1)])
    _crash(crashing)

    again = AlertService(config, group_id=f"alerts-{unique}")
    again.setup(http=False)
    assert again.store.unpublished() == [], "the recorded batch was settled at start-up"
    seen = _finish(again, alerts_topic, wait_for)

    alert_id = seen[0][0]
    assert seen == [(alert_id, 1, "open"), (alert_id, 2, "resolved")], f"{where}: {seen}"
    rows = parse_influxql(influx.query('SELECT "seq", "status" FROM "alerts"'))
    assert sorted((int(r["seq"]), r["status"]) for r in rows) == [(1, "open"), (2, "resolved")]
    wait_for(lambda: len(http_receiver.snapshot()) >= 1)
    delivered = Counter(
        (a["alert_id"], a["seq"], r.headers["idempotency-key"])
        for r in http_receiver.snapshot()
        for a in r.json()["data"]["alerts"]
    )
    assert {(i, s) for i, s, _ in delivered} == {(alert_id, 1), (alert_id, 2)}, "the resolution was announced"
    assert len(delivered) == 2 and set(delivered.values()) == {1}, "one delivery, one key per transition"
