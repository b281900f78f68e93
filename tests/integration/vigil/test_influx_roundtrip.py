"""InfluxDB over the v1 HTTP API: line protocol in, InfluxQL out; same points twice leave one copy."""

from __future__ import annotations

import urllib.parse
import urllib.request

import pytest

from tests.conftest import InfluxV1

pytestmark = pytest.mark.integration

LINES = "\n".join(
    [
        'readings,machine=PMP-001,sensor=bearing_temp,site=north value=61.5,quality="good" 1767225600000000000',
        'readings,machine=PMP-001,sensor=bearing_temp,site=north value=62.0,quality="good" 1767225610000000000',
        'readings,machine=PMP-002,sensor=bearing_temp,site=north value=55.25,quality="uncertain" 1767225600000000000',
    ]
)


def write(server: InfluxV1, body: str) -> int:
    url = f"{server.url}/write?" + urllib.parse.urlencode({"db": server.database, "precision": "ns"})
    with urllib.request.urlopen(urllib.request.Request(url, data=body.encode(), method="POST"), timeout=30) as resp:
        return int(resp.status)


def test_line_protocol_round_trip_and_idempotent_rewrite(influx: InfluxV1) -> None:
    assert write(influx, LINES) == 204
    assert write(influx, LINES) == 204  # a replay with the same source timestamps
    result = influx.query("SELECT value, quality FROM readings WHERE machine = 'PMP-001' ORDER BY time")
    series = result["results"][0]["series"][0]  # type: ignore[index]
    assert series["columns"] == ["time", "value", "quality"]
    assert series["values"] == [[1767225600000000000, 61.5, "good"], [1767225610000000000, 62.0, "good"]]
    count = influx.query("SELECT count(value) FROM readings")
    assert count["results"][0]["series"][0]["values"][0][1] == 3  # type: ignore[index]


def test_rewrite_with_a_new_value_overwrites_the_point(influx: InfluxV1) -> None:
    write(influx, LINES)
    write(
        influx, 'readings,machine=PMP-001,sensor=bearing_temp,site=north value=70.0,quality="good" 1767225600000000000'
    )
    result = influx.query("SELECT value FROM readings WHERE machine = 'PMP-001' ORDER BY time LIMIT 1")
    assert result["results"][0]["series"][0]["values"] == [[1767225600000000000, 70.0]]  # type: ignore[index]
