"""The planners' JSON API (token rules as before the console; described at ``/openapi.json``).

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

Each change becomes a command run on the service loop's thread; the answer comes after the resulting
transitions are stored (InfluxDB, alerts topic, sqlite). If that takes longer than 15 s (InfluxDB down), the
answer is ``202 Accepted``: the command is applied and will be stored when the write succeeds.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, StringConstraints, ValidationError

from alerts.exceptions import UnknownAlertError
from alerts.lifecycle import Episode, Lifecycle, Silence, Transition
from vigil.config.alerting import SilenceSpec

if TYPE_CHECKING:
    from alerts.service import AlertService, Command

WAIT_S = 15.0
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


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


class ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Ack(BaseModel):
    by: Name
    note: str | None = None


class Assign(BaseModel):
    to: Name
    by: Name


M = TypeVar("M", bound=BaseModel)


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON itself (whatever the Content-Type says, as before)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ClientError(400, f"invalid JSON: {exc}") from exc


async def read_body(request: Request, model: type[M]) -> M:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ClientError(400, "body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ClientError(400, f"bad request: {where}") from exc


def token_ok(service: AlertService, authorization: str) -> bool:
    token = service.config.alerts.api_token
    if token is None:
        return True
    return hmac.compare_digest(authorization.encode(), f"Bearer {token.get_secret_value()}".encode())


def require_token(request: Request) -> None:
    if not token_ok(request.app.state.service, request.headers.get("Authorization", "")):
        raise ClientError(401, "this change needs Authorization: Bearer <alerts.api_token>")


async def run_command(service: AlertService, command: Command) -> JSONResponse:
    """Hand a command to the service loop and answer once its transitions are stored (202 after ``WAIT_S``)."""
    future = service.submit(command)
    try:
        # shield: a timeout must not cancel the loop's future (the loop resolves it later)
        result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), WAIT_S)
    except TimeoutError:
        return JSONResponse({"accepted": True, "detail": "applied; waiting for InfluxDB/Kafka to store it"}, 202)
    return JSONResponse(result)


def acknowledge(alert_id: str, by: str, note: str | None) -> Command:
    return lambda life, now: ({"acknowledged": alert_id, "by": by}, life.acknowledge(alert_id, by, note, now))


def assign(alert_id: str, to: str, by: str) -> Command:
    return lambda life, now: ({"assigned": alert_id, "to": to}, life.assign(alert_id, to, by, now))


def add_silence(spec: SilenceSpec) -> Command:
    silence = Silence(f"sil-{uuid.uuid4().hex[:10]}", spec)
    return lambda life, now: ({"silence": silence.id}, life.add_silence(silence, now))


def remove_silence(silence_id: str) -> Command:
    return lambda life, now: ({"removed": life.remove_silence(silence_id)}, [])


def line_down(line: str, down: bool) -> Command:
    return lambda life, now: ({"line": line, "down": down}, life.set_line_down(line, down, now))


router = APIRouter(tags=["alerts API"])
changes = APIRouter(tags=["alerts API"], dependencies=[Depends(require_token)])


def _service(request: Request) -> AlertService:
    service: AlertService = request.app.state.service
    return service


@router.get("/alerts", summary="Open alert episodes")
async def list_alerts(request: Request) -> JSONResponse:
    return await run_command(_service(request), lambda life, now: ([episode_json(e) for e in life.open_episodes()], []))


@router.get("/alerts/{alert_id}", summary="One open episode")
async def get_alert(request: Request, alert_id: str) -> JSONResponse:
    def get(life: Lifecycle, now: float) -> tuple[Any, list[Transition]]:
        ep = life.get(alert_id)
        if ep is None:
            raise UnknownAlertError(f"no open alert {alert_id!r}")
        return episode_json(ep), []

    return await run_command(_service(request), get)


@changes.post(
    "/alerts/{alert_id}/ack", summary="Acknowledge (stops escalation and reminders)", openapi_extra=_json_body(Ack)
)
async def post_ack(request: Request, alert_id: str) -> JSONResponse:
    body = await read_body(request, Ack)
    return await run_command(_service(request), acknowledge(alert_id, body.by, body.note))


@changes.post("/alerts/{alert_id}/assign", summary="Assign to someone", openapi_extra=_json_body(Assign))
async def post_assign(request: Request, alert_id: str) -> JSONResponse:
    body = await read_body(request, Assign)
    return await run_command(_service(request), assign(alert_id, body.to, body.by))


@router.get("/silences", summary="Active silences")
async def list_silences(request: Request) -> JSONResponse:
    return await run_command(
        _service(request),
        lambda life, now: ({sid: s.spec.model_dump(mode="json") for sid, s in life.silences.items()}, []),
    )


@changes.post(
    "/silences", summary="Silence machines, lines or sites for a while", openapi_extra=_json_body(SilenceSpec)
)
async def post_silence(request: Request) -> JSONResponse:
    body = await read_body(request, SilenceSpec)
    return await run_command(_service(request), add_silence(body))


@changes.delete("/silences/{silence_id}", summary="End a silence")
async def delete_silence(request: Request, silence_id: str) -> JSONResponse:
    return await run_command(_service(request), remove_silence(silence_id))


@changes.post("/lines/{line}/down", summary="Line down: inhibit the line's alerts")
async def post_line_down(request: Request, line: str) -> JSONResponse:
    return await run_command(_service(request), line_down(line, True))


@changes.post("/lines/{line}/up", summary="Line up again")
async def post_line_up(request: Request, line: str) -> JSONResponse:
    return await run_command(_service(request), line_down(line, False))


@changes.post("/maintenance", summary="Maintenance records (an object or an array), as the CMMS import reads them")
async def post_maintenance_records(request: Request, source: str | None = None) -> JSONResponse:
    from alerts.maintenance import post_maintenance

    body = await read_json(request)
    # Kafka round trips: off the event loop
    status, answer = await asyncio.to_thread(post_maintenance, _service(request), body, source)
    return JSONResponse(answer, status)


@router.get("/health", summary="Outbox and service counters")
async def health(request: Request) -> JSONResponse:
    service = _service(request)
    stats = await asyncio.to_thread(service.store.stats)
    return JSONResponse({"blocked": service.blocked, "outbox": stats, **vars(service.stats)})


router.include_router(changes)
