"""The console's pages: Now, Episode, Machine, Fleet, Quality, and the login; forms post to ``/ui/...``.

Pages read the service's :class:`~alerts.web.view.View` (open episodes, silences, lines down) and InfluxDB
(:mod:`alerts.web.data`); a form becomes the same lifecycle command as the JSON API's, run on the service loop,
and answers with a redirect once its transitions are stored.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from alerts.exceptions import UnknownAlertError
from alerts.web import api, data
from alerts.web.auth import Login, csrf_ok, csrf_token
from alerts.web.view import View
from vigil.config.alerting import SilenceSpec
from vigil.influx import InfluxError

if TYPE_CHECKING:
    from alerts.service import AlertService, Command

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)
DAYS = (1.0, 3.0, 7.0, 30.0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(max(0, seconds))
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif isinstance(value, int | float):
        value = datetime.fromtimestamp(value / 1e9 if value > 1e14 else value, UTC)
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _pct(p: Any) -> str:
    return f"{p * 100:.0f}%" if isinstance(p, int | float) else ""


templates.env.filters.update(duration=_duration, when=_when, pct=_pct)


def _service(request: Request) -> AlertService:
    service: AlertService = request.app.state.service
    return service


def _login(request: Request) -> Login | None:
    login: Login | None = request.app.state.access.current(request.session)
    return login


def _view(request: Request) -> View:
    return _service(request).view


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    login = _login(request)
    context.update(
        login=login,
        csrf=csrf_token(request.session),
        open_console=request.app.state.access.open,
        path=request.url.path,
        flash=request.session.pop("flash", None),
        now=time.time(),
        query=request.url.query,
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status, status=status, message=message)


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here)}", 303)


def _safe_next(value: str | None) -> str:
    r"""Where to go after a login or a form: a path of this console only (never another site).

    >>> [_safe_next(v) for v in ("/episodes/A.b", "//evil.example", "/\\evil.example", "https://evil.example", None)]
    ['/episodes/A.b', '/', '/', '/', '/']
    """
    ok = value is not None and value.startswith("/") and value[1:2] not in ("/", "\\") and "\n" not in value
    return value if ok and value is not None else "/"


# ------------------------------------------------------------------------------------------------ login


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", next=_safe_next(next), failed=False)


@router.post("/login")
async def login_post(request: Request) -> Response:
    form = await _form(request)
    if not csrf_ok(request.session, form.get("csrf")):
        return error_page(request, 403, "This form has expired or did not come from this console; reload the page.")
    login = request.app.state.access.login(form.get("name", ""), form.get("password", ""))
    if login is None:
        return render(request, "login.html", 401, next=_safe_next(form.get("next")), failed=True)
    request.session.clear()
    request.session.update(user=login.name, role=login.role)
    csrf_token(request.session)  # a fresh token for the new session
    return RedirectResponse(_safe_next(form.get("next")), 303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    if csrf_ok(request.session, form.get("csrf")):
        request.session.clear()
    return RedirectResponse("/login", 303)


# ------------------------------------------------------------------------------------------------ pages


def _filtered(view: View, request: Request) -> list[dict[str, Any]]:
    q = request.query_params
    rows = list(view.episodes)
    for key in ("site", "line", "severity", "machine_id"):
        if q.get(key):
            rows = [r for r in rows if r.get(key) == q[key]]
    return rows


@router.get("/")
async def now_page(request: Request) -> Response:
    if (login := _login(request)) is None:
        return _to_login(request)
    view = _view(request)
    config = _service(request).config
    return render(
        request,
        "now.html",
        view=view,
        rows=_filtered(view, request),
        sites=sorted({m.site for m in config.machines_by_id.values()}),
        lines=sorted({m.line for m in config.machines_by_id.values()}),
        machines=sorted(config.machines_by_id),
        filters=dict(request.query_params),
        can_change=login.can_change,
    )


@router.get("/now/table")
async def now_table(request: Request) -> Response:
    """The Now page's episode table alone: the page polls it (live update without a reload)."""
    if (login := _login(request)) is None:
        return Response(status_code=401)
    view = _view(request)
    return render(request, "_episodes.html", view=view, rows=_filtered(view, request), can_change=login.can_change)


@router.get("/episodes/{alert_id}")
async def episode_page(request: Request, alert_id: str) -> Response:
    if (login := _login(request)) is None:
        return _to_login(request)
    service = _service(request)
    current = _view(request).by_id.get(alert_id)
    problem = None
    try:
        history = await asyncio.to_thread(data.episode_history, request.app.state.sink, alert_id)
    except InfluxError as exc:
        history, problem = [], f"InfluxDB did not answer ({type(exc).__name__})"
    notifications = await asyncio.to_thread(service.store.notifications_for, alert_id)
    if current is None and not history:
        return error_page(request, 404, f"No episode {alert_id!r} is open or recorded.")
    for n in notifications:
        n["last_error"] = data.scrub(n["last_error"])
    first = history[0] if history else {}
    return render(
        request,
        "episode.html",
        alert_id=alert_id,
        current=current,
        history=history,
        notifications=notifications,
        machine=(current or {}).get("machine_id") or first.get("machine"),
        problem=problem,
        can_change=login.can_change,
    )


def _machine_or_404(request: Request, machine: str) -> Response | None:
    if machine not in _service(request).config.machines_by_id:
        return error_page(request, 404, f"No machine {machine!r} in this plant's configuration.")
    return None


async def _series(request: Request, machine: str, days: float) -> dict[str, Any]:
    service = _service(request)
    return await asyncio.to_thread(
        data.machine_page, request.app.state.sink, service.config, machine, days, datetime.now(UTC)
    )


@router.get("/machines/{machine:path}/series.json")
async def machine_series(request: Request, machine: str, days: float = 3.0) -> Response:
    if _login(request) is None:
        return JSONResponse({"error": "log in first"}, 401)
    if (missing := _machine_or_404(request, machine)) is not None:
        return missing
    return JSONResponse(await _series(request, machine, min(max(days, 0.1), 90.0)))


@router.get("/machines/{machine:path}")
async def machine_page(request: Request, machine: str, days: float = 3.0) -> Response:
    if _login(request) is None:
        return _to_login(request)
    if (missing := _machine_or_404(request, machine)) is not None:
        return missing
    days = min(max(days, 0.1), 90.0)
    problem = None
    try:
        series: dict[str, Any] | None = await _series(request, machine, days)
    except InfluxError as exc:
        series, problem = None, f"InfluxDB did not answer ({type(exc).__name__})"
    resolved = _service(request).config.machines_by_id[machine]
    view = _view(request)
    return render(
        request,
        "machine.html",
        machine=resolved,
        series=series,
        days=days,
        day_choices=DAYS,
        open_episodes=[r for r in view.episodes if r["machine_id"] == machine],
        off=machine in view.machines_off,
        line_down=resolved.line in view.lines_down,
        problem=problem,
    )


@router.get("/fleet")
async def fleet_page(request: Request) -> Response:
    if _login(request) is None:
        return _to_login(request)
    service = _service(request)
    problem = None
    try:
        ids = sorted(service.config.machines_by_id)
        latest = await asyncio.to_thread(
            request.app.state.cache.get,
            "fleet",
            lambda: request.app.state.fleet(request.app.state.sink, ids, datetime.now(UTC)),
        )
    except InfluxError as exc:
        latest, problem = {}, f"InfluxDB did not answer ({type(exc).__name__})"
    view = _view(request)
    worst: dict[str, dict[str, Any]] = {}
    for r in view.episodes:  # most severe first: the first per machine is its worst
        worst.setdefault(r["machine_id"], r)
    q = request.query_params
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for m in sorted(service.config.machines_by_id.values(), key=lambda m: m.id):
        row = {"id": m.id, "type": m.type, "site": m.site, "line": m.line, **latest.get(m.id, {})}
        row["episode"] = worst.get(m.id)
        row["state"] = "off" if m.id in view.machines_off else row.get("state") or "no data"
        if (q.get("site") and m.site != q["site"]) or (q.get("line") and m.line != q["line"]):
            continue
        if (q.get("type") and m.type != q["type"]) or (q.get("state") and row["state"] != q["state"]):
            continue
        if q.get("risk") == "1" and row["episode"] is None:
            continue
        groups.setdefault((m.site, m.line), []).append(row)
    machines = service.config.machines_by_id.values()
    return render(
        request,
        "fleet.html",
        groups=sorted(groups.items()),
        lines_down=view.lines_down,
        sites=sorted({m.site for m in machines}),
        lines=sorted({m.line for m in machines}),
        types=sorted({m.type for m in machines}),
        filters=dict(q),
        problem=problem,
    )


@router.get("/quality")
async def quality_page(request: Request, days: float = 30.0) -> Response:
    if _login(request) is None:
        return _to_login(request)
    days = min(max(days, 1.0), 365.0)
    problem = None
    try:
        q = await asyncio.to_thread(
            request.app.state.cache.get,
            ("quality", days),
            lambda: data.quality(request.app.state.sink, datetime.now(UTC), days),
        )
    except InfluxError as exc:
        q, problem = {"segments": [], "drift": []}, f"InfluxDB did not answer ({type(exc).__name__})"
    return render(request, "quality.html", quality=q, metrics=data.QUALITY_METRICS, days=days, problem=problem)


# ------------------------------------------------------------------------------------------------ forms


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def _change(request: Request, make: Any) -> Response:
    """Check the session and the CSRF token, build the command from the form, run it, go back."""
    form = await _form(request)
    if not csrf_ok(request.session, form.get("csrf")):
        return error_page(request, 403, "This form has expired or did not come from this console; reload the page.")
    login = _login(request)
    if login is None:
        return _to_login(request)
    if not login.can_change:
        return error_page(request, 403, f"{login.name} may look but not change anything (viewer).")
    try:
        command: Command = make(form, login)
    except (ValueError, ValidationError) as exc:
        return error_page(request, 400, f"Not done: {_reason(exc)}")
    try:
        response = await api.run_command(_service(request), command)
    except UnknownAlertError as exc:
        return error_page(request, 404, f"Not done: {exc}")
    if response.status_code == 202:
        request.session["flash"] = "Applied; it is stored as soon as InfluxDB and Kafka answer."
    return RedirectResponse(_safe_next(form.get("next")), 303)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(e.get("msg")) for e in exc.errors())
    return str(exc)


def _name(form: dict[str, str], key: str, login: Login) -> str:
    value = (login.name or form.get(key, "")).strip() if key == "by" else form.get(key, "").strip()
    if not value or len(value) > 200:
        raise ValueError(f"{'your name' if key == 'by' else key} is needed")
    return value


@router.post("/ui/alerts/{alert_id}/ack")
async def ui_ack(request: Request, alert_id: str) -> Response:
    return await _change(
        request, lambda f, login: api.acknowledge(alert_id, _name(f, "by", login), f.get("note") or None)
    )


@router.post("/ui/alerts/{alert_id}/assign")
async def ui_assign(request: Request, alert_id: str) -> Response:
    return await _change(request, lambda f, login: api.assign(alert_id, _name(f, "to", login), _name(f, "by", login)))


def _silence(form: dict[str, str], login: Login) -> Command:
    target = form.get("target", "")
    what, _, value = target.partition(":")
    if what not in ("machines", "lines", "sites") or not value:
        raise ValueError("choose a machine, line or site to silence")
    try:
        hours = float(form.get("hours") or "8")
    except ValueError as exc:
        raise ValueError("hours must be a number") from exc
    if not 0 < hours <= 24 * 30:
        raise ValueError("hours must be between 0 and 720")
    now = datetime.now(UTC)
    spec = SilenceSpec.model_validate(
        {
            what: [value],
            "starts_at": now,
            "ends_at": now + timedelta(hours=hours),
            "comment": form.get("comment", "")[:500],
            "created_by": _name(form, "by", login),
        }
    )
    return api.add_silence(spec)


@router.post("/ui/silences")
async def ui_silence(request: Request) -> Response:
    return await _change(request, _silence)


@router.post("/ui/silences/{silence_id}/end")
async def ui_unsilence(request: Request, silence_id: str) -> Response:
    return await _change(request, lambda f, login: api.remove_silence(silence_id))


@router.post("/ui/lines")
async def ui_line(request: Request) -> Response:
    def command(form: dict[str, str], login: Login) -> Command:
        line, direction = form.get("line", "").strip(), form.get("dir", "")
        if not line or direction not in ("down", "up"):
            raise ValueError("choose a line and down or up")
        return api.line_down(line, direction == "down")

    return await _change(request, command)
