"""Port 0 means "any free port" for the metrics endpoint and the alerts API: two services on one host never
collide, the port actually bound is logged on one parseable line and readable as an attribute."""

from __future__ import annotations

import argparse
import json
import logging
import re
import urllib.request

import pytest

from vigil.config import AlertConfig
from vigil.metrics import DEFAULT_PORTS, ServiceMetrics, add_metrics_arguments, start_http

LISTENING = re.compile(r"^listening on http://127\.0\.0\.1:(\d+) \(metrics\)$")


def test_two_metrics_servers_on_port_0_both_answer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vigil.metrics"):
        first = start_http(ServiceMetrics("a", process_metrics=False), 0)
        second = start_http(ServiceMetrics("b", process_metrics=False), 0)
    assert first is not None and second is not None
    with first, second:
        assert first.port != second.port and 0 not in (first.port, second.port)
        logged = [int(m.group(1)) for r in caplog.records if (m := LISTENING.match(r.getMessage()))]
        assert logged == [first.port, second.port]
        for server, name in ((first, "a"), (second, "b")):
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as resp:
                assert resp.status == 200 and json.loads(resp.read())["service"] == name


def test_metrics_port_0_is_accepted_and_defaults_are_unchanged() -> None:
    parser = argparse.ArgumentParser()
    add_metrics_arguments(parser, "alerts", environ={})
    assert parser.parse_args([]).metrics_port == 9468
    assert parser.parse_args(["--metrics-port", "0"]).metrics_port == 0
    env_parser = argparse.ArgumentParser()
    add_metrics_arguments(env_parser, "alerts", environ={"VIGIL_METRICS_PORT": "0"})
    assert env_parser.parse_args([]).metrics_port == 0
    assert DEFAULT_PORTS == {
        "simulate": 9464,
        "collect": 9465,
        "features": 9466,
        "models": 9467,
        "alerts": 9468,
        "demo": 9469,
    }


def test_alerts_http_port_0_is_valid_and_8470_stays_the_default() -> None:
    assert AlertConfig().http_port == 8470
    assert AlertConfig(http_port=0).http_port == 0
