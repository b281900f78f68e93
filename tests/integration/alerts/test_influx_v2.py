"""The v2 transport (influxdb-client: token, org, bucket) against InfluxDB 2.7 in a container.

Needs a Docker engine: skipped (with the reason) where there is none, unless ``VIGIL_REQUIRE_DOCKER=1``, which
turns the skip into a failure so CI cannot pass without running it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from vigil.config.connections import InfluxSettings
from vigil.contracts import Prediction
from vigil.influx import InfluxSink, Point, Schema, V2Transport, ts_ns

pytestmark = [pytest.mark.integration, pytest.mark.docker]

TOKEN = "vigil-test-token-0123456789"
T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def influx_v2() -> Iterator[InfluxSettings]:
    if not _docker_engine():
        reason = "no Docker engine: the InfluxDB 2.7 testcontainer cannot start"
        if os.environ.get("VIGIL_REQUIRE_DOCKER") == "1":
            pytest.fail(f"VIGIL_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer("influxdb:2.7")
        .with_exposed_ports(8086)
        .with_env("DOCKER_INFLUXDB_INIT_MODE", "setup")
        .with_env("DOCKER_INFLUXDB_INIT_USERNAME", "vigil")
        .with_env("DOCKER_INFLUXDB_INIT_PASSWORD", "vigil-password")
        .with_env("DOCKER_INFLUXDB_INIT_ORG", "vigil")
        .with_env("DOCKER_INFLUXDB_INIT_BUCKET", "vigil")
        .with_env("DOCKER_INFLUXDB_INIT_ADMIN_TOKEN", TOKEN)
    )
    with container:
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8086)}"
        settings = InfluxSettings(url=url, api="v2", token=SecretStr(TOKEN), org="vigil", bucket="vigil")
        deadline = time.monotonic() + 120
        while True:
            try:
                InfluxSink(settings).setup()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield settings


def test_influx_v2_testcontainers(influx_v2: InfluxSettings) -> None:
    transport = V2Transport(influx_v2)
    sink = InfluxSink(influx_v2, transport=transport)
    sink.setup()
    schema = Schema()
    for i in range(50):
        p = Prediction(machine_id="PMP-001", machine_type="pump", ts=T0.replace(minute=i), model="m", p_failure=i / 100)
        sink.add_all(schema.points(p))
    sink.flush()
    sink.add_all(schema.points(Prediction(machine_id="PMP-001", machine_type="pump", ts=T0, model="m", p_failure=0.5)))
    sink.add(f'predictions,machine=PMP-001,model=m,type=pump p_failure="text" {ts_ns(T0) + 1}')
    result = sink.flush()
    assert len(result.rejected) == 1, "the type conflict is isolated on 2.x too"
    flux = (
        'from(bucket: "vigil") |> range(start: 2026-11-20T00:00:00Z, stop: 2026-11-21T00:00:00Z) '
        '|> filter(fn: (r) => r._measurement == "predictions" and r._field == "p_failure") |> count()'
    )
    records = transport.query_flux(flux)
    assert sum(int(r["_value"]) for r in records) == 50, "the replayed point overwrote, nothing duplicated"
    assert Point("m", {}, {"v": 1.0}, 1).line() == "m v=1.0 1"
    transport.close()
