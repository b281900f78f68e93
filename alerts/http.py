"""The planners' HTTP API on ``alerts.http_port`` (JSON in, JSON out).

=======  =================================  ==============================================================
GET      ``/alerts``                        open episodes
GET      ``/alerts/{id}``                   one open episode
POST     ``/alerts/{id}/ack``               ``{"by": "NAME", "note": "..."}``
POST     ``/alerts/{id}/assign``            ``{"to": "NAME", "by": "NAME"}``
GET      ``/silences``                      active silences
POST     ``/silences``                      ``{"machines"|"lines"|"sites": [...], "starts_at", "ends_at", ...}``
DELETE   ``/silences/{id}``                 end a silence
POST     ``/lines/{id}/down`` / ``/up``     line-down inhibition on/off
POST     ``/maintenance[?source=NAME]``     maintenance records (an object or an array): :mod:`alerts.maintenance`
GET      ``/health``                        outbox and service counters
=======  =================================  ==============================================================

With ``alerts.api_token`` set, every POST/DELETE needs ``Authorization: Bearer <token>`` (401 otherwise).

Each request becomes a command run on the service loop's thread; the answer comes after the resulting
transitions are stored (InfluxDB, alerts topic, sqlite). If that takes longer than 15 s (InfluxDB down), the
answer is ``202 Accepted``: the command is applied and will be stored when the write succeeds.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from alerts.exceptions import UnknownAlertError
from alerts.lifecycle import Episode, Lifecycle, Silence, Transition
from vigil.config.alerting import SilenceSpec

if TYPE_CHECKING:
    from alerts.service import AlertService, Command

log = logging.getLogger(__name__)
WAIT_S = 15.0


def episode_json(ep: Episode) -> dict[str, Any]:
    return {
        "alert_id": ep.alert_id,
        "machine_id": ep.machine_id,
        "kind": ep.kind,
        "state": ep.state.value,
        "severity": ep.severity.value,
        "summary": ep.summary,
        "p_failure": ep.p_failure,
        "opened_at": ep.opened_at.isoformat(),
        "last_ts": ep.last_ts.isoformat(),
        "acknowledged_by": ep.acknowledged_by,
        "assignee": ep.assignee,
        "escalated": ep.escalated,
        "what_to_check": list(ep.what_to_check),
    }


class _ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _command(method: str, parts: list[str], body: dict[str, Any]) -> Command:
    """Translate a request into a lifecycle command (raises _ClientError for a bad request)."""

    def need(key: str) -> str:
        value = body.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _ClientError(400, f"body needs a non-empty string {key!r}")
        return value.strip()

    if method == "GET" and parts == ["alerts"]:
        return lambda life, now: ([episode_json(e) for e in life.open_episodes()], [])
    if method == "GET" and len(parts) == 2 and parts[0] == "alerts":
        alert_id = parts[1]

        def get(life: Lifecycle, now: float) -> tuple[Any, list[Transition]]:
            ep = life.get(alert_id)
            if ep is None:
                raise UnknownAlertError(f"no open alert {alert_id!r}")
            return episode_json(ep), []

        return get
    if method == "POST" and len(parts) == 3 and parts[0] == "alerts" and parts[2] == "ack":
        alert_id, by, note = parts[1], need("by"), body.get("note")
        return lambda life, now: ({"acknowledged": alert_id, "by": by}, life.acknowledge(alert_id, by, note, now))
    if method == "POST" and len(parts) == 3 and parts[0] == "alerts" and parts[2] == "assign":
        alert_id, to, by = parts[1], need("to"), need("by")
        return lambda life, now: ({"assigned": alert_id, "to": to}, life.assign(alert_id, to, by, now))
    if method == "GET" and parts == ["silences"]:
        return lambda life, now: ({sid: s.spec.model_dump(mode="json") for sid, s in life.silences.items()}, [])
    if method == "POST" and parts == ["silences"]:
        try:
            spec = SilenceSpec.model_validate(body)
        except ValidationError as exc:
            raise _ClientError(400, str(exc)) from exc
        silence = Silence(f"sil-{uuid.uuid4().hex[:10]}", spec)
        return lambda life, now: ({"silence": silence.id}, life.add_silence(silence, now))
    if method == "DELETE" and len(parts) == 2 and parts[0] == "silences":
        sid = parts[1]
        return lambda life, now: ({"removed": life.remove_silence(sid)}, [])
    if method == "POST" and len(parts) == 3 and parts[0] == "lines" and parts[2] in ("down", "up"):
        line, down = parts[1], parts[2] == "down"
        return lambda life, now: ({"line": line, "down": down}, life.set_line_down(line, down, now))
    raise _ClientError(404, f"no route {method} /{'/'.join(parts)}")


def start_api(service: AlertService, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: %s", format % args)

        def _reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            try:
                if parts == ["health"]:
                    stats = service.store.stats()
                    self._reply(200, {"blocked": service.blocked, "outbox": stats, **vars(service.stats)})
                    return
                token = service.config.alerts.api_token
                if method != "GET" and token is not None:
                    given = self.headers.get("Authorization", "")
                    if not hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode()):
                        raise _ClientError(401, "this change needs Authorization: Bearer <alerts.api_token>")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                if method == "POST" and parts == ["maintenance"]:
                    from urllib.parse import parse_qs, urlsplit

                    from alerts.maintenance import post_maintenance

                    source = parse_qs(urlsplit(self.path).query).get("source", [None])[0]
                    self._reply(*post_maintenance(service, body, source))
                    return
                if not isinstance(body, dict):
                    raise _ClientError(400, "body must be a JSON object")
                future = service.submit(_command(method, parts, body))
                try:
                    self._reply(200, future.result(timeout=WAIT_S))
                except FutureTimeout:
                    self._reply(202, {"accepted": True, "detail": "applied; waiting for InfluxDB/Kafka to store it"})
            except _ClientError as exc:
                self._reply(exc.status, {"error": str(exc)})
            except UnknownAlertError as exc:
                self._reply(404, {"error": str(exc)})
            except ValueError as exc:
                self._reply(400, {"error": f"invalid JSON: {exc}"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="vigil-alerts-http", daemon=True).start()
    # alerts.http_port = 0 binds a free port: this line (and server.server_port) tells which.
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    log.info("listening on http://%s:%d (alerts API)", shown, server.server_port)
    return server
