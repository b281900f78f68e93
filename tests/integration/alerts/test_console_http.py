"""The alerts service's web application over plain HTTP: OpenAPI description, /metrics, /healthz, /readyz on the
API's port; a closed service frees its port."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from alerts.service import AlertService
from vigil.config import KafkaSettings, Topics, VigilConfig

from .test_console_browser import console_config

pytestmark = pytest.mark.integration


def get(url: str, accept: str = "*/*") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_openapi_metrics_health_and_pages_share_the_alerts_port(
    example_config: VigilConfig, kafka_settings: KafkaSettings, topics: Topics, influx: Any, tmp_path: Path, unique: str
) -> None:
    service = AlertService(console_config(example_config, kafka_settings, topics, influx, tmp_path), group_id=unique)
    service.setup()
    try:
        url = service.ack_url
        status, _, body = get(f"{url}/openapi.json")
        paths = json.loads(body)["paths"]
        assert status == 200
        assert {"/alerts", "/alerts/{alert_id}/ack", "/silences", "/lines/{line}/down", "/maintenance"} <= set(paths)
        ack_body = paths["/alerts/{alert_id}/ack"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert ack_body["required"] == ["by"]
        assert not any(p.startswith("/ui") for p in paths), "the console's forms are not the API"
        status, ctype, body = get(f"{url}/metrics")
        assert status == 200 and ctype.startswith("text/plain") and b"vigil_alerts_open" in body
        assert get(f"{url}/healthz")[0] == 200 and get(f"{url}/readyz")[0] == 200
        status, ctype, _ = get(f"{url}/", accept="text/html")
        assert status == 200 and ctype.startswith("text/html"), "the login page (a token is configured)"
        assert get(f"{url}/nowhere")[0] == 404 and b"<html" in get(f"{url}/nowhere", accept="text/html")[2]
        assert get(f"{url}/static/uPlot.iife.min.js")[0] == 200, "the chart library is served, not fetched from a CDN"
        port = service.http.server_port
    finally:
        service.close()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "closed: nothing listens on the port any more"
