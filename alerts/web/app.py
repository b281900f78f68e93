"""The alerts service's one web application: the JSON API, the console pages, ``/metrics``, ``/healthz``,
``/readyz`` and the vendored static files (no CDN at run time)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client.exposition import choose_encoder
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from alerts.exceptions import UnknownAlertError
from alerts.web import api, pages
from alerts.web.auth import Access
from alerts.web.data import Fleet, TTLCache
from vigil.influx import InfluxSink
from vigil.metrics import ServiceMetrics

if TYPE_CHECKING:
    from alerts.service import AlertService

HERE = Path(__file__).parent


def add_ops_routes(app: FastAPI, metrics: ServiceMetrics) -> None:
    """``/metrics`` (Prometheus text, or OpenMetrics when asked), ``/healthz`` (and ``/livez``), ``/readyz``."""

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encoder(metrics.registry), media_type=content_type)

    @app.get("/healthz", include_in_schema=False)
    @app.get("/livez", include_in_schema=False)
    async def healthz() -> JSONResponse:
        ok, details = metrics.health()
        return JSONResponse(details, 200 if ok else 503)

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ok, details = metrics.readiness()
        return JSONResponse(details, 200 if ok else 503)


def create_metrics_app(metrics: ServiceMetrics) -> FastAPI:
    """The service's metrics port (``--metrics-port``) on the same stack: probes and Prometheus only."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_ops_routes(app, metrics)
    return app


def create_app(service: AlertService) -> FastAPI:
    a = service.config.alerts
    app = FastAPI(
        title="Vigil alerts",
        summary="Open alert episodes: acknowledge, assign, silence, line down; maintenance records in.",
        version="1",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service
    app.state.access = Access(a)
    app.state.sink = InfluxSink(service.config.influx)
    app.state.cache = TTLCache(ttl_s=10.0)
    app.state.fleet = Fleet()
    secret = a.session_secret.get_secret_value() if a.session_secret else secrets.token_urlsafe(32)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="vigil_session",
        max_age=int(a.session_max_age_s),
        same_site="lax",  # a link from an e-mail opens the page logged in; POSTs need the CSRF token anyway
        https_only=bool(a.public_url and a.public_url.startswith("https://")),
    )

    @app.exception_handler(api.ClientError)
    async def client_error(request: Request, exc: api.ClientError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, exc.status)

    @app.exception_handler(UnknownAlertError)
    async def unknown_alert(request: Request, exc: UnknownAlertError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 404)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return JSONResponse({"error": f"bad request: {where}"}, 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if "text/html" in request.headers.get("Accept", ""):  # a browser: a page; anything else: JSON
            return pages.error_page(request, exc.status_code, str(exc.detail))
        return JSONResponse({"error": str(exc.detail)}, exc.status_code)

    add_ops_routes(app, service.metrics)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app
