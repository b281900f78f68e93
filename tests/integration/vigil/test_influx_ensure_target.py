"""``ensure_target``: the start-up check of the database (v1) or bucket (v2) every InfluxDB writer makes.

Against the real servers: the shared InfluxDB 1.6 (a fresh database is created, an existing one left alone, a
missing retention policy named), an InfluxDB 1.6 of this module's own with ``auth-enabled = true`` (what a user
without the admin privilege sees), and the InfluxDB 1.8 that serves the v2 API (no buckets API there: a bucket
is database/retention policy, and nothing is created).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from vigil.config import InfluxSettings
from vigil.influx import InfluxError, InfluxSink, Point, ensure_target, parse_influxql, ts_ns

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def _databases(url: str, auth: tuple[str, str] | None = None) -> set[str]:
    return {str(r["name"]) for r in parse_influxql(_influxql(url, "SHOW DATABASES", auth))}


def _influxql(url: str, q: str, auth: tuple[str, str] | None = None, db: str = "") -> dict[str, Any]:
    params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
    request = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode(params).encode(), method="POST")
    if auth is not None:
        request.add_header("Authorization", "Basic " + _basic(*auth))
    with urllib.request.urlopen(request, timeout=30) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _write_and_count(settings: InfluxSettings, url: str, auth: tuple[str, str] | None = None) -> int:
    sink = InfluxSink(settings)
    sink.setup()
    sink.add(Point("predictions", {"machine": "PMP-001"}, {"p_failure": 0.25}, ts_ns(T0)))
    assert sink.flush().written == 1
    rows = parse_influxql(_influxql(url, 'SELECT count("p_failure") FROM "predictions"', auth, settings.database))
    return int(rows[0]["count"]) if rows else 0


# ---------------------------------------------------------------------------------------------- v1, no auth


def test_a_fresh_database_is_created_once_and_written(influx_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = f"fresh_{uuid.uuid4().hex[:10]}"
    settings = InfluxSettings(url=influx_url, database=db)
    assert db not in _databases(influx_url)
    try:
        with caplog.at_level(logging.INFO, logger="vigil.influx"):
            assert ensure_target(settings) == f"created InfluxDB database {db!r} at {influx_url}"
            assert ensure_target(settings) == f"InfluxDB database {db!r} exists at {influx_url}"
        assert [r.levelno for r in caplog.records if db in r.getMessage()] == [logging.INFO, logging.INFO]
        assert db in _databases(influx_url)
        assert _write_and_count(settings, influx_url) == 1
    finally:
        _influxql(influx_url, f'DROP DATABASE "{db}"')


def test_a_database_name_with_quotes_is_quoted(influx_url: str) -> None:
    db = f'odd "name" {uuid.uuid4().hex[:6]}'
    try:
        ensure_target(InfluxSettings(url=influx_url, database=db))
        assert db in _databases(influx_url)
    finally:
        _influxql(influx_url, 'DROP DATABASE "' + db.replace('"', '\\"') + '"')


def test_a_missing_retention_policy_is_named(influx: Any) -> None:
    settings = influx.settings().model_copy(update={"retention_policy": "one_year"})
    with pytest.raises(InfluxError) as caught:
        ensure_target(settings)
    message = str(caught.value)
    assert message.startswith("influx.retention_policy: retention policy 'one_year' does not exist on database")
    assert f'CREATE RETENTION POLICY "one_year" ON "{influx.database}"' in message
    influx.query(f'CREATE RETENTION POLICY "one_year" ON "{influx.database}" DURATION 52w REPLICATION 1')
    assert ensure_target(settings).endswith("retention policy 'one_year' exists")
    assert _write_and_count(settings, influx.url) == 0, "the point went to one_year, not the default policy"
    rows = influx.query('SELECT count("p_failure") FROM "one_year"."predictions"')
    assert parse_influxql(rows)[0]["count"] == 1


def test_an_unreachable_server_names_influx_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InfluxError, match=r"^influx\.url: InfluxDB at http://127\.0\.0\.1:\d+ does not answer"):
        ensure_target(InfluxSettings(url=f"http://127.0.0.1:{port}", database="x", timeout_s=2))


# ---------------------------------------------------------------------------------------------- v1 with auth


@dataclass(frozen=True)
class AuthInflux:
    url: str
    admin: tuple[str, str] = ("admin", "admin-pw-4f1c")
    writer: tuple[str, str] = ("writer", "writer-pw-9b2e")
    granted: str = "granted_db"

    def settings(self, user: tuple[str, str], database: str) -> InfluxSettings:
        return InfluxSettings(url=self.url, database=database, username=user[0], password=SecretStr(user[1]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthInflux]:
    """Debian's InfluxDB 1.6 (the same binary `vigil services up` runs) with authentication on, on free ports:
    an admin, a user with ALL on one database and nothing else. Starts in well under a second."""
    influxd = shutil.which("influxd")
    if influxd is None:
        reason = "influxd (Debian's influxdb) is not installed: run `vigil services up`"
        if os.environ.get("VIGIL_REQUIRE_SERVICES") == "1":
            pytest.fail(f"VIGIL_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("influx-auth")
    http_port, rpc_port = _free_port(), _free_port()
    conf = home / "influxdb.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc_port}"\n'
        f'[meta]\n  dir = "{home / "meta"}"\n'
        f'[data]\n  dir = "{home / "data"}"\n  wal-dir = "{home / "wal"}"\n  index-version = "inmem"\n'
        f'[http]\n  enabled = true\n  bind-address = "127.0.0.1:{http_port}"\n  auth-enabled = true\n'
        "  log-enabled = false\n"
        "[monitor]\n  store-enabled = false\n[continuous_queries]\n  enabled = false\n"
        '[logging]\n  level = "warn"\n'
    )
    server = AuthInflux(f"http://127.0.0.1:{http_port}")
    with (home / "influxd.log").open("w") as log_file:
        proc = subprocess.Popen([influxd, "-config", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_ping(server.url, proc, home / "influxd.log")
        admin, writer = server.admin, server.writer
        # With auth on and no user yet, InfluxDB 1.x accepts exactly this statement unauthenticated.
        _influxql(server.url, f"CREATE USER {admin[0]} WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES")
        for q in (
            f"CREATE USER {writer[0]} WITH PASSWORD '{writer[1]}'",
            f'CREATE DATABASE "{server.granted}"',
            f'GRANT ALL ON "{server.granted}" TO "{writer[0]}"',
        ):
            _influxql(server.url, q, admin)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _wait_ping(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"influxd exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                if resp.status == 204:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"influxd did not answer /ping: {log_path.read_text()[-2000:]}")


def test_a_user_without_admin_privilege_is_told_what_an_admin_should_run(auth_influx: AuthInflux) -> None:
    settings = auth_influx.settings(auth_influx.writer, "plant_north")
    with pytest.raises(InfluxError) as caught:
        ensure_target(settings)
    message = str(caught.value)
    assert message.startswith("influx.database: database 'plant_north' does not exist at ")
    assert "writer may not create it (HTTP 403: error authorizing query: writer not authorized" in message
    assert 'An administrator should run: CREATE DATABASE "plant_north"; GRANT ALL ON "plant_north" TO "writer"' in (
        message
    )
    assert auth_influx.writer[1] not in message
    assert "plant_north" not in _databases(auth_influx.url, auth_influx.admin), "nothing was created"


def test_a_user_with_privileges_on_an_existing_database_needs_no_admin(auth_influx: AuthInflux) -> None:
    settings = auth_influx.settings(auth_influx.writer, auth_influx.granted)
    # InfluxDB 1.x answers 403 to a non-admin's CREATE DATABASE even when the database exists: not sent.
    assert ensure_target(settings) == f"InfluxDB database {auth_influx.granted!r} exists at {auth_influx.url}"
    assert _write_and_count(settings, auth_influx.url, auth_influx.admin) == 1


def test_an_admin_creates_the_database(auth_influx: AuthInflux) -> None:
    settings = auth_influx.settings(auth_influx.admin, "made_by_admin")
    assert ensure_target(settings).startswith("created InfluxDB database 'made_by_admin'")
    assert "made_by_admin" in _databases(auth_influx.url, auth_influx.admin)


@pytest.mark.parametrize("user", [("writer", "wrong-pw-1"), None])
def test_refused_credentials_name_the_credential_keys(auth_influx: AuthInflux, user: tuple[str, str] | None) -> None:
    settings = (
        auth_influx.settings(user, auth_influx.granted)
        if user
        else InfluxSettings(url=auth_influx.url, database=auth_influx.granted)
    )
    with pytest.raises(InfluxError) as caught:
        ensure_target(settings)
    message = str(caught.value)
    assert message.startswith(f"influx.username/influx.password: InfluxDB at {auth_influx.url} refused the credentials")
    assert ("HTTP 401: authorization failed" if user else "HTTP 401") in message
    assert "wrong-pw-1" not in message


# ---------------------------------------------------------------------------------------------- v2 API (1.8)


def test_influxdb_18_has_no_buckets_api(influx_v2api: Any) -> None:
    """What the v2 path relies on to tell 1.8 from 2.x: a plain-text 404 (2.x answers JSON, even for a 404)."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{influx_v2api.url}/api/v2/buckets?name=x", timeout=10)
    assert caught.value.code == 404
    assert caught.value.read().decode().strip() == "404 page not found"


def test_v2_bucket_as_database_and_policy_on_18(influx_v2api: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings = influx_v2api.settings_v2()
    with caplog.at_level(logging.INFO, logger="vigil.influx"):
        found = ensure_target(settings)
    assert found == (
        f"InfluxDB at {influx_v2api.url} is 1.8+ (v2 compatibility API): bucket "
        f"'{influx_v2api.database}/autogen' exists as database/policy"
    )
    assert found in caplog.messages
    assert ensure_target(settings.model_copy(update={"bucket": influx_v2api.database})) is not None


def test_v2_missing_database_is_named_and_not_created(influx_v2api: Any) -> None:
    db = f"absent_{uuid.uuid4().hex[:8]}"
    settings = influx_v2api.settings_v2().model_copy(update={"bucket": f"{db}/autogen"})
    with pytest.raises(InfluxError) as caught:
        ensure_target(settings)
    message = str(caught.value)
    assert message.startswith(f"influx.bucket: bucket '{db}/autogen' is not there: database '{db}' does not exist")
    assert f'an administrator should run CREATE DATABASE "{db}"' in message
    assert "vigil:unused" not in message, "the token never appears"
    assert db not in _databases(influx_v2api.url)


def test_v2_missing_retention_policy_is_named(influx_v2api: Any) -> None:
    settings = influx_v2api.settings_v2().model_copy(update={"bucket": f"{influx_v2api.database}/short"})
    with pytest.raises(InfluxError) as caught:
        ensure_target(settings)
    message = str(caught.value)
    assert "influx.bucket" in message and "retention policy 'short' does not exist" in message
    assert f'CREATE RETENTION POLICY "short" ON "{influx_v2api.database}"' in message
