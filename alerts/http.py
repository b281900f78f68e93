"""The alerts service's web application on ``alerts.http_port``: the planners' console (HTML pages under ``/``),
the JSON API (:mod:`alerts.web.api`, described at ``/openapi.json`` and ``/docs``), and ``/metrics``, ``/healthz``,
``/readyz``.

The application is FastAPI/Starlette served by uvicorn on its own thread and asyncio loop; the lifecycle stays on
the service loop's thread (a change becomes a command handed to it, see :meth:`AlertService.submit`), and pages
read the snapshot the loop publishes after every commit (:class:`alerts.web.view.View`).
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

__all__ = ["WebServer", "episode_json", "start_api"]

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


def start_api(service: AlertService, host: str, port: int) -> WebServer:
    import uvicorn

    from alerts.web.app import create_app

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AlertsError(f"alerts.http_port: cannot listen on {host}:{port} ({exc})") from exc
    sock.listen(128)
    config = uvicorn.Config(
        create_app(service),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="vigil-alerts-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    web = WebServer(server, sock, thread)
    # alerts.http_port = 0 binds a free port: this line (and server_port) tells which.
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    log.info("listening on http://%s:%d (alerts API)", shown, web.server_port)  # scripts match this line
    return web
