"""``POST /maintenance`` on the running alerts service, with real Kafka and InfluxDB: the bearer token, records to
the maintenance topic and refusals to the dead-letter topic, a repeated post counted duplicate, a post with nothing
usable answered 400; the service then consumes its own import into InfluxDB like any maintenance event."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertService
from vigil.config import AlertConfig, KafkaSettings, Topics, VigilConfig
from vigil.contracts import DeadLetter, MaintenanceEvent
from vigil.testing import consume

pytestmark = pytest.mark.integration

TOKEN = "t0ken"
DAY = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)


def post(service: AlertService, body: Any, path: str = "/maintenance", token: str | None = TOKEN) -> tuple[int, Any]:
    """The route answers on the HTTP thread without the service loop, so a plain call from the test's thread."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(
        f"{service.ack_url}{path}", data=json.dumps(body).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def record(machine: str, hours: float, kind: str, work_order: str, **extra: Any) -> dict[str, Any]:
    ts = (DAY + timedelta(hours=hours)).isoformat()
    return {"machine": machine, "ts": ts, "kind": kind, "work_order": work_order, **extra}


def test_post_maintenance_publishes_refuses_and_is_idempotent(
    example_config: VigilConfig,
    kafka_settings: KafkaSettings,
    topics: Topics,
    influx: Any,
    tmp_path: Path,
    unique: str,
) -> None:
    alerts = AlertConfig.model_validate(
        {"http_port": 0, "outbox_path": str(tmp_path / "outbox.sqlite3"), "api_token": TOKEN}
    )
    config = example_config.model_copy(
        update={"kafka": kafka_settings, "topics": topics, "influx": influx.settings(), "alerts": alerts}
    )
    service = AlertService(config, group_id=f"alerts-{unique}")
    service.setup()
    try:
        records = [
            record("PMP-001", 2, "breakdown", "WO-2", failure_mode="bearing", text="seized"),
            record("PMP-001", 1, "PM", "WO-1"),
            record("PMP-404", 3, "repair", "WO-3"),  # record 3: unknown machine
        ]
        assert post(service, records, token=None)[0] == 401
        assert post(service, records, token="wrong")[0] == 401

        status, summary = post(service, records)
        assert status == 200, summary
        assert (summary["rows"], summary["imported"], summary["duplicate"]) == (3, 2, 0)
        assert summary["refusals"] == [
            {
                "row": 3,
                "column": "machine",
                "reason": "unknown_machine",
                "detail": "machine 'PMP-404' is not configured",
            }
        ]
        out = consume(
            kafka_settings,
            [topics.maintenance, topics.dead_letter],
            lambda got: (
                sum(isinstance(m, MaintenanceEvent) for m in got) >= 2 and any(isinstance(m, DeadLetter) for m in got)
            ),
        )
        events = [m for m in out if isinstance(m, MaintenanceEvent)]
        assert [(e.event_id, e.event.value) for e in events] == [
            ("maintenance:WO-1", "inspection"),
            ("maintenance:WO-2", "failure"),
        ]
        assert events[1].failure_mode == "bearing" and events[1].text == "seized"
        [letter] = [m for m in out if isinstance(m, DeadLetter)]
        assert (letter.service, letter.reason, letter.source_topic, letter.offset) == (
            "ingest.maintenance",
            "unknown_machine",
            "http:/maintenance",
            3,
        )
        assert json.loads(base64.b64decode(letter.raw))["work_order"] == "WO-3"

        # the same records again (a client retrying): nothing new, counted duplicate; one object alone works too
        status, again = post(service, records[:2])
        assert (status, again["imported"], again["duplicate"]) == (200, 0, 2)
        status, single = post(service, record("MTR-001", 4, "inspection", "WO-4"))
        assert (status, single["imported"]) == (200, 1)

        # nothing usable: 400 with the same summary, and the refusal is dead-lettered all the same
        status, bad = post(service, [record("MTR-001", 5, "scrapped", "WO-5")])
        assert status == 400 and bad["refused"] == {"unknown_kind": 1} and bad["imported"] == 0
        for body, path in (("x", "/maintenance"), ([], "/maintenance"), ([1], "/maintenance")):
            status, answer = post(service, body, path)
            assert status == 400 and "JSON object or a non-empty array" in answer["error"]
        status, answer = post(service, records, "/maintenance?source=sap")
        assert status == 400 and "no [[sources.maintenance]] named 'sap'" in answer["error"]

        out = consume(
            kafka_settings,
            [topics.maintenance, topics.dead_letter],
            lambda got: (
                sum(isinstance(m, MaintenanceEvent) for m in got) >= 3
                and sum(isinstance(m, DeadLetter) for m in got) >= 2
            ),
            settle_s=3,
        )
        assert sorted(m.event_id for m in out if isinstance(m, MaintenanceEvent)) == [
            "maintenance:WO-1",
            "maintenance:WO-2",
            "maintenance:WO-4",
        ]
        assert sorted(m.reason for m in out if isinstance(m, DeadLetter)) == ["unknown_kind", "unknown_machine"]

        # the service consumes the maintenance topic: its own import reaches InfluxDB like any maintenance event
        def stored() -> int:
            series = influx.query('SELECT count("event_id") FROM "maintenance"')["results"][0].get("series")
            return int(series[0]["values"][0][1]) if series else 0

        for _ in range(300):
            service.run_once(0.2)
            if stored() >= 3:
                break
        assert stored() == 3
    finally:
        service.close()
