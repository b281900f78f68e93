"""The alerts service end to end with real Kafka, InfluxDB and an HTTP receiver: predictions in; InfluxDB points,
the alerts topic, signed webhooks and the acknowledge API out; a restart continues the episode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts import ctl
from alerts.query import Window, failures_report, false_alarms_report, machine_history, open_alerts
from alerts.service import AlertService
from vigil.bus import machine_key, make_producer
from vigil.config import AlertConfig, KafkaSettings, Topics, VigilConfig
from vigil.contracts import (
    Alert,
    AlertState,
    Contribution,
    DeadLetter,
    FeatureVector,
    MaintenanceEvent,
    Prediction,
    encode,
)
from vigil.influx import InfluxSink, parse_influxql

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""The documented example secret (docs/alerts.md)."""

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
T0 = NOW - timedelta(days=2)
STEP = timedelta(minutes=10)


def build_config(
    example: VigilConfig,
    kafka: KafkaSettings,
    topics: Topics,
    influx: Any,
    tmp: Path,
    url: str,
    token: str | None = None,
) -> VigilConfig:
    alerts = AlertConfig.model_validate(
        {
            "open_after": 2,
            "cooldown_s": 0,
            "resolve_after_s": 0,  # resolve at the first clear prediction (sustained recovery: unit tests)
            "http_port": 0,
            "outbox_path": str(tmp / "outbox.sqlite3"),
            "retry_initial_s": 0.2,
            # Hand-made input: predictions without the vectors they would be made from. Decided as they arrive
            # (the event-time order waits for the counterpart; tests/unit/alerts/test_alerts_ordering.py).
            "input_wait_s": 0,
            "api_token": token,
            "receivers": [
                {"type": "webhook", "name": "planners", "url": f"{url}/planners", "secret": SECRET},
                {"type": "chat", "name": "boss", "url": f"{url}/boss", "flavor": "teams"},
            ],
            "routes": [{"receiver": "planners", "escalate_to": "boss", "escalate_after_s": 1800}],
        }
    )
    return example.model_copy(update={"kafka": kafka, "topics": topics, "influx": influx.settings(), "alerts": alerts})


def prediction(i: int, p: float, machine: str = "PMP-001", base: datetime = T0) -> Prediction:
    return Prediction(
        machine_id=machine,
        machine_type="pump",
        site="north",
        line="north-1",
        ts=base + i * STEP,
        model="logistic",
        p_failure=p,
        horizon_s=172800.0,
        decision="alert" if p >= 0.5 else "ok",  # as the model service decides at its threshold
        decided_by="model",
        contributions=(
            Contribution(feature="bearing_temp.mean", value=96.5, normal=70.2, normal_std=2.9, contribution=1.7),
            Contribution(feature="vibration_rms.max", value=6.0, normal=4.1, contribution=0.4),
        ),
    )


def send(kafka: KafkaSettings, topic: str, messages: list[Any], raw: list[bytes] = ()) -> None:  # type: ignore[assignment]
    producer = make_producer(kafka)
    for m in messages:
        producer.send(topic, key=machine_key(m.machine_id), value=encode(m))
    for r in raw:
        producer.send(topic, key=b"PMP-001", value=r)
    producer.flush(timeout=30)
    producer.close()


def verify_standard_webhook(r: Any) -> None:
    """Independent of alerts.signing: the receiver side as the documentation describes it."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{r.headers['webhook-id']}.{r.headers['webhook-timestamp']}.".encode() + r.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert r.headers["webhook-signature"] == expected


def alert_states(reader: Any, machine: str = "PMP-001") -> list[str]:
    return [m.state.value for m in reader.read() if isinstance(m, Alert) and m.machine_id == machine]


def test_alerts_service_end_to_end(
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
    clock = [NOW.timestamp()]
    config = build_config(example_config, kafka_settings, topics, influx, tmp_path, http_receiver.url)
    service = AlertService(config, group_id=f"alerts-{unique}", clock=lambda: clock[0])
    service.setup()
    alerts_topic = topic_reader(topics.alerts)
    try:
        fv = FeatureVector(
            machine_id="PMP-001",
            machine_type="pump",
            window_start=T0 - STEP,
            window_end=T0,
            features={"bearing_temp.mean": 90.0},
            count=10,
        )
        send(kafka_settings, topics.features, [fv])
        send(
            kafka_settings,
            topics.predictions,
            [prediction(i, p) for i, p in enumerate([0.2, 0.6, 0.7, 0.9])],
            raw=[b"{not json"],
        )
        wait_for(lambda: alert_states(alerts_topic) == ["open", "updated"], step=service.run_once)
        wait_for(lambda: len(http_receiver.snapshot()) >= 1, step=service.run_once)

        # The webhook: signed, idempotency id, what/where/how likely/how soon/why/what to check/how to ack.
        hooks = http_receiver.snapshot()
        for r in hooks:
            assert r.path == "/planners"
            verify_standard_webhook(r)
        first = hooks[0].json()
        # One batch, one machine: the open and the severity update are grouped into one notification.
        assert first["type"] == "vigil.alert.group"
        assert [a["state"] for a in first["data"]["alerts"]] == ["open", "updated"]
        text = first["data"]["text"]
        for needle in (
            "PMP-001",
            "site north",
            "70%",
            "within 48 h",
            "bearing_temp.mean = 96.5 (normal 70.2",
            "Bearing lubrication",
            "vigil alert ack",
        ):
            assert needle in text, needle
        alert_id = first["data"]["alerts"][0]["alert_id"]
        assert alert_id == f"PMP-001.failure_risk.{(T0 + 2 * STEP):%Y%m%dT%H%M%SZ}"

        # InfluxDB has the predictions, the features and every transition.
        def influx_count(q: str) -> int:
            r = parse_influxql(influx.query(q))
            return int(r[0]["count"]) if r else 0

        wait_for(lambda: influx_count('SELECT count("status") FROM "alerts"') == 2, step=service.run_once)
        assert influx_count('SELECT count("p_failure") FROM "predictions"') == 4
        assert influx_count('SELECT count("count") FROM "features"') == 1

        # The undecodable message went to the dead-letter topic with its reason.
        dead = topic_reader(topics.dead_letter)
        wait_for(lambda: any(isinstance(m, DeadLetter) for m in dead.read()))
        letter = next(m for m in dead.messages if isinstance(m, DeadLetter))
        assert letter.reason == "json" and base64.b64decode(letter.raw) == b"{not json"

        # Escalation: 30 min of wall-clock without acknowledgement -> the boss's Teams card.
        clock[0] += 1801
        wait_for(lambda: "escalated" in alert_states(alerts_topic), step=service.run_once)
        wait_for(lambda: any(r.path == "/boss" for r in http_receiver.snapshot()), step=service.run_once)
        card = next(r for r in http_receiver.snapshot() if r.path == "/boss").json()
        assert card["@type"] == "MessageCard" and "escalated" in card["title"]

        # A planner acknowledges with the CLI (over the HTTP API) while the service loop runs.
        clock[0] += 60
        result: dict[str, int] = {}
        worker = threading.Thread(
            target=lambda: result.update(
                rc=ctl.main(["--url", service.ack_url, "ack", alert_id, "--by", "Ann", "--note", "parts ordered"])
            )
        )
        worker.start()
        wait_for(lambda: not worker.is_alive(), step=lambda: service.run_once(0.2))
        assert result["rc"] == 0
        wait_for(lambda: "acknowledged" in alert_states(alerts_topic), step=service.run_once)
        acked = next(m for m in alerts_topic.messages if isinstance(m, Alert) and m.state == AlertState.ACKNOWLEDGED)
        assert acked.actor == "Ann" and acked.note == "parts ordered"
        with urllib.request.urlopen(f"{service.ack_url}/health", timeout=10) as resp:
            health = json.loads(resp.read())
        assert health["blocked"] is False and health["outbox"]["dead"] == 0

        open_rows = open_alerts(
            InfluxSink(influx.settings()), Window(NOW - timedelta(days=30), NOW + timedelta(days=1))
        )
        assert [(r["alert_id"], r["status"]) for r in open_rows] == [(alert_id, "acknowledged")]
    finally:
        service.close()

    # A restart continues the episode: same id, resolved, nothing resent.
    delivered_before = http_receiver.ids()
    again = AlertService(config, group_id=f"alerts-{unique}", clock=lambda: clock[0])
    again.setup(http=False)
    try:
        assert again.lifecycle.get(alert_id) is not None
        failure = MaintenanceEvent(machine_id="PMP-001", ts=T0 + 36 * STEP, event="failure", failure_mode="bearing")
        send(kafka_settings, topics.predictions, [prediction(4, 0.95), prediction(5, 0.1)])
        send(kafka_settings, topics.maintenance, [failure])
        wait_for(lambda: "resolved" in alert_states(alerts_topic), step=again.run_once)
        resolved = [m for m in alerts_topic.messages if isinstance(m, Alert) and m.state == AlertState.RESOLVED]
        assert [m.alert_id for m in resolved] == [alert_id]
        wait_for(
            lambda: any(
                "resolved" in r.json().get("title", r.json().get("data", {}).get("title", ""))
                for r in http_receiver.snapshot()
                if r.path == "/planners"
            ),
            step=again.run_once,
        )
        wait_for(
            lambda: parse_influxql(influx.query('SELECT count("event_id") FROM "maintenance"')) != [],
            step=again.run_once,
        )
    finally:
        again.close()

    ids = http_receiver.ids()
    assert all(n == 1 for n in ids.values()), f"a notification was delivered twice: {ids}"
    assert set(delivered_before) <= set(ids)
    everything = topic_reader(topics.alerts)
    wait_for(lambda: "resolved" in alert_states(everything))
    assert alert_states(everything) == ["open", "updated", "escalated", "acknowledged", "resolved"]

    # The reliability engineer's questions.
    sink = InfluxSink(influx.settings())
    window = Window(NOW - timedelta(days=30), NOW + timedelta(days=1))
    assert open_alerts(sink, window) == []
    outcome, rows = failures_report(config, sink, window)
    assert outcome.failures == 1 and outcome.caught == 1
    assert rows[0]["verdict"] == "caught" and rows[0]["lead_time_h"] == pytest.approx(340 / 60, abs=0.01)
    history = machine_history(sink, "PMP-001", window)
    assert "failure" in [r.get("event_kind") for r in history]
    assert sorted(r["seq"] for r in history if r.get("status")) == [1, 2, 3, 4, 5]
    assert {r.get("status") for r in history} >= {"open", "acknowledged", "resolved"}
    per_type = {r["type"]: r for r in false_alarms_report(config, sink, window)}
    assert per_type["pump"]["episodes"] == 1 and per_type["pump"]["false_alarms"] == 0


def api(
    service: AlertService, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = "t0ken"
) -> tuple[int, Any]:
    """Call the HTTP API from a thread while this thread drives the service loop (which answers it)."""
    out: dict[str, Any] = {}

    def call() -> None:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"{service.ack_url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                out["status"], out["body"] = resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            out["status"], out["body"] = exc.code, json.loads(exc.read())

    worker = threading.Thread(target=call)
    worker.start()
    while worker.is_alive():
        service.run_once(0.1)
    return out["status"], out["body"]


def test_alerts_silence_inhibit_assign_over_http(
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
    config = build_config(example_config, kafka_settings, topics, influx, tmp_path, http_receiver.url, token="t0ken")
    service = AlertService(config, group_id=f"alerts-{unique}")
    service.setup()
    alerts_topic = topic_reader(topics.alerts)
    try:
        # Planned maintenance on PMP-002 for the next hour (silences expire on wall-clock time; they match
        # alerts by the event time of what triggers them).
        tb = NOW - 3 * STEP
        status, answer = api(
            service,
            "POST",
            "/silences",
            {
                "machines": ["PMP-002"],
                "starts_at": tb.isoformat(),
                "ends_at": (NOW + 6 * STEP).isoformat(),
                "comment": "seal change",
            },
        )
        assert status == 200
        silence_id = answer["silence"]
        assert silence_id in api(service, "GET", "/silences")[1]
        # Line north-2 is down (an operator says so).
        assert api(service, "POST", "/lines/north-2/down")[0] == 200
        send(
            kafka_settings,
            topics.predictions,
            [prediction(i, 0.7, "PMP-002", tb) for i in range(2)]
            + [prediction(i, 0.7, "PMP-001", tb) for i in range(2)]
            + [
                prediction(i, 0.7, "MTR-002", tb).model_copy(update={"machine_type": "motor", "line": "north-2"})
                for i in range(2)
            ],
        )
        # PMP-001 then stops (a feature window says it is off): its open episode is inhibited.
        off = FeatureVector(
            machine_id="PMP-001",
            machine_type="pump",
            window_start=tb + STEP,
            window_end=tb + 2 * STEP,
            features={},
            state="off",
        )
        send(kafka_settings, topics.features, [off])

        def notified() -> set[str]:
            return {a["machine_id"] for r in http_receiver.snapshot() for a in r.json()["data"]["alerts"]}

        wait_for(
            lambda: (
                alert_states(alerts_topic, "PMP-002") == ["silenced"]
                and alert_states(alerts_topic, "PMP-001") == ["open", "inhibited"]
                and alert_states(alerts_topic, "MTR-002") == ["inhibited"]
                and notified() == {"PMP-001"}
            ),
            step=service.run_once,
            describe=lambda: ([(m.machine_id, m.state.value, m.note) for m in alerts_topic.messages], notified()),
        )
        notes = {m.machine_id: m.note for m in alerts_topic.messages if isinstance(m, Alert)}
        assert (
            "seal change" in (notes["PMP-002"] or "")
            and notes["PMP-001"] == "machine off"
            and notes["MTR-002"] == "line north-2 down"
        )
        for _ in range(10):
            service.run_once(0.1)
        assert notified() == {"PMP-001"}, "silenced and inhibited episodes notify nobody"

        # After the silence the still-risky pump is announced; the line comes back up and its motor is announced.
        send(kafka_settings, topics.predictions, [prediction(10, 0.75, "PMP-002", tb)])
        wait_for(lambda: alert_states(alerts_topic, "PMP-002") == ["silenced", "open"], step=service.run_once)
        assert api(service, "POST", "/lines/north-2/up")[0] == 200
        wait_for(lambda: alert_states(alerts_topic, "MTR-002") == ["inhibited", "open"], step=service.run_once)
        wait_for(lambda: notified() == {"PMP-001", "PMP-002", "MTR-002"}, step=service.run_once)

        listed = api(service, "GET", "/alerts")[1]
        assert {a["machine_id"] for a in listed} == {"PMP-001", "PMP-002", "MTR-002"}
        pump = next(a for a in listed if a["machine_id"] == "PMP-002")
        status, _ = api(service, "POST", f"/alerts/{pump['alert_id']}/assign", {"to": "Fitter Fred", "by": "Ann"})
        assert status == 200
        wait_for(
            lambda: any(isinstance(m, Alert) and m.assignee == "Fitter Fred" for m in alerts_topic.read()),
            step=service.run_once,
        )
        assert api(service, "GET", f"/alerts/{pump['alert_id']}")[1]["assignee"] == "Fitter Fred"

        assert api(service, "POST", "/alerts/nope/ack", {"by": "Ann"})[0] == 404
        assert api(service, "POST", f"/alerts/{pump['alert_id']}/ack", {})[0] == 400
        assert api(service, "DELETE", f"/silences/{silence_id}")[1] == {"removed": True}
        assert api(service, "GET", "/nowhere")[0] == 404
        assert api(service, "POST", "/lines/north-1/down", token=None)[0] == 401, "changes need the API token"
        assert api(service, "POST", "/lines/north-1/down", token="wrong")[0] == 401
        assert api(service, "GET", "/alerts", token=None)[0] == 200, "reading does not"
    finally:
        service.close()


def test_alerts_crash_before_the_state_commit_loses_and_doubles_no_notification(
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
    """The process dies before the batch is recorded in sqlite: nothing of it reached the alerts topic, the
    alert points or the outbox; the restarted service decides the batch again, and everything holds it once."""
    config = build_config(example_config, kafka_settings, topics, influx, tmp_path, http_receiver.url)
    crashing = AlertService(config, group_id=f"alerts-{unique}")
    crashing.setup(http=False)
    alerts_topic = topic_reader(topics.alerts)

    def die(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt("simulated crash")

    crashing.store.commit = die  # type: ignore[method-assign]
    send(kafka_settings, topics.predictions, [prediction(i, 0.7) for i in range(2)])
    with pytest.raises(KeyboardInterrupt):
        while True:
            crashing.run_once(0.2)
    crashing.close()  # the consumer leaves without committing; nothing reached sqlite or the outbox
    assert http_receiver.snapshot() == []
    assert crashing.store.path.exists()

    again = AlertService(config, group_id=f"alerts-{unique}")
    again.setup(http=False)
    try:
        wait_for(lambda: len(http_receiver.snapshot()) == 1, step=again.run_once)
        for _ in range(10):
            again.run_once(0.1)
    finally:
        again.close()
    assert len(http_receiver.snapshot()) == 1 and set(http_receiver.ids().values()) == {1}
    wait_for(lambda: len(alert_states(alerts_topic)) >= 1)
    opened = [m for m in alerts_topic.read() if isinstance(m, Alert)]
    assert [(m.alert_id, m.seq, m.state.value) for m in opened] == [(opened[0].alert_id, 1, "open")]
    rows = parse_influxql(influx.query('SELECT count("status") FROM "alerts"'))
    assert int(rows[0]["count"]) == 1
