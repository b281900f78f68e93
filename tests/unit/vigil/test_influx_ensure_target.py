"""``ensure_target`` on the v2 API against recorded InfluxDB 2.x answers (no 2.x runs here without Docker):
a local HTTP server replays them to influxdb-client, so the client's own request and error paths are used."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from vigil.config import InfluxSettings
from vigil.influx import InfluxError, ensure_target

TOKEN = "tok-3c9d0e-secret"

# The shape of InfluxDB 2.x's /api/v2/buckets answers (as in influxdata/influxdb-client-csharp#85).
BUCKET = {
    "id": "0592c9a126ed3001",
    "orgID": "0592c9a126ed3000",
    "type": "user",
    "name": "vigil",
    "retentionRules": [],
    "createdAt": "2020-04-21T05:14:56.0279264Z",
    "updatedAt": "2020-04-21T05:14:56.02794Z",
    "links": {
        "labels": "/api/v2/buckets/0592c9a126ed3001/labels",
        "members": "/api/v2/buckets/0592c9a126ed3001/members",
        "org": "/api/v2/orgs/0592c9a126ed3000",
        "owners": "/api/v2/buckets/0592c9a126ed3001/owners",
        "self": "/api/v2/buckets/0592c9a126ed3001",
        "write": "/api/v2/write?org=0592c9a126ed3000&bucket=0592c9a126ed3001",
    },
}
LINKS = {"self": "/api/v2/buckets?descending=false&limit=20&offset=0"}
ANSWERS: dict[str, tuple[int, str, dict[str, Any] | str]] = {
    "present": (200, "application/json", {"links": LINKS, "buckets": [BUCKET]}),
    "absent": (200, "application/json", {"links": LINKS, "buckets": []}),
    "no_org": (404, "application/json", {"code": "not found", "message": 'organization name "acme" not found'}),
    "bad_token": (401, "application/json", {"code": "unauthorized", "message": "unauthorized access"}),
}


class _Recorded:
    def __init__(self) -> None:
        self.answer = "present"
        self.requests: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[str, _Recorded]]:
    state = _Recorded()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            state.requests.append(self.path)
            status, content_type, body = ANSWERS[state.answer]
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", state
    httpd.shutdown()
    httpd.server_close()


def _settings(url: str) -> InfluxSettings:
    return InfluxSettings(url=url, api="v2", token=SecretStr(TOKEN), org="acme", bucket="vigil", timeout_s=5)


def test_an_existing_bucket_is_found_in_the_org(server: tuple[str, _Recorded]) -> None:
    url, state = server
    assert ensure_target(_settings(url)) == f"InfluxDB bucket 'vigil' exists in org 'acme' at {url}"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(state.requests[0]).query)
    assert query["name"] == ["vigil"] and query["org"] == ["acme"], "looked up in the configured org only"


def test_a_missing_bucket_names_bucket_and_org_and_is_not_created(server: tuple[str, _Recorded]) -> None:
    url, state = server
    state.answer = "absent"
    with pytest.raises(InfluxError) as caught:
        ensure_target(_settings(url))
    message = str(caught.value)
    assert message.startswith("influx.bucket: bucket 'vigil' does not exist in org 'acme' (influx.org)")
    assert "Vigil does not create buckets" in message and TOKEN not in message
    assert all(r.startswith("/api/v2/buckets?") for r in state.requests), "only looked up, nothing posted"


def test_an_unknown_org_is_named(server: tuple[str, _Recorded]) -> None:
    url, state = server
    state.answer = "no_org"
    with pytest.raises(InfluxError) as caught:
        ensure_target(_settings(url))
    assert str(caught.value).startswith(
        "influx.bucket/influx.org: cannot find bucket 'vigil' in org 'acme' at "
    ) and 'organization name "acme" not found' in str(caught.value)


def test_a_refused_token_is_named_without_the_token(server: tuple[str, _Recorded]) -> None:
    url, state = server
    state.answer = "bad_token"
    with pytest.raises(InfluxError) as caught:
        ensure_target(_settings(url))
    assert str(caught.value).startswith("influx.token: InfluxDB at ")
    assert "HTTP 401: unauthorized access" in str(caught.value) and TOKEN not in str(caught.value)


def test_v2_needs_token_org_and_bucket() -> None:
    with pytest.raises(InfluxError, match=r"^influx\.token, influx\.org and influx\.bucket are required"):
        ensure_target(InfluxSettings(api="v2", token=SecretStr(TOKEN), bucket="vigil"))
