"""The alerts service's web application on ``alerts.http_port``: the planners' console (HTML pages under ``/``),
the JSON API (:mod:`alerts.web.api`, described at ``/openapi.json`` and ``/docs``), and ``/metrics``, ``/healthz``,
``/readyz``.

The application is FastAPI/Starlette served by uvicorn on its own thread and asyncio loop; the lifecycle stays on
the service loop's thread (a change becomes a command handed to it, see :meth:`AlertService.submit`), and pages
read the snapshot the loop publishes after every commit (:class:`alerts.web.view.View`).

The service's separate metrics port (``--metrics-port``, for probes and Prometheus) runs on the same stack
(:func:`start_metrics`), so no hand-written HTTP server is left in the alerts service.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

from alerts.exceptions import AlertsError
from alerts.web.api import episode_json

if TYPE_CHECKING:
    from alerts.service import AlertService
    from vigil.metrics import ServiceMetrics

__all__ = ["WebServer", "episode_json", "start_api", "start_metrics"]

log = logging.getLogger(__name__)


class WebServer:
    """uvicorn on a daemon thread, bound before it starts (so a busy port fails :func:`start_api`, named)."""

    def __init__(self, server: object, sock: socket.socket, thread: threading.Thread) -> None:
        self._server = server
        self._sock = sock
        self._thread = thread
        self.server_port = int(sock.getsockname()[1])

    def shutdown(self) -> None:
        """Stop accepting, let requests in flight finish (at most 3 s), stop the thread."""
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(timeout=5)

    def server_close(self) -> None:
        self._sock.close()

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    @property
    def port(self) -> int:
        return self.server_port


def _serve(app: object, host: str, port: int, setting: str, what: str) -> WebServer:
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AlertsError(f"{setting}: cannot listen on {host}:{port} ({exc})") from exc
    sock.listen(128)
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"vigil-{what}-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    web = WebServer(server, sock, thread)
    # Port 0 binds a free port: this line (and server_port) tells which; scripts and tests match it.
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    log.info("listening on http://%s:%d (%s)", shown, web.server_port, what)
    return web


def start_api(service: AlertService, host: str, port: int) -> WebServer:
    from alerts.web.app import create_app

    return _serve(create_app(service), host, port, "alerts.http_port", "alerts API")


def start_metrics(metrics: ServiceMetrics, port: int, host: str = "127.0.0.1") -> WebServer | None:
    """The metrics port of ``vigil alerts`` on the same stack (``--metrics-port``; negative: none)."""
    if port < 0:
        log.info("metrics endpoint disabled for %s", metrics.service)
        return None
    from alerts.web.app import create_metrics_app

    return _serve(create_metrics_app(metrics), host, port, "--metrics-port", "metrics")
