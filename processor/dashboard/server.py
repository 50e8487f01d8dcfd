"""The browser dashboard: one static page and the JSON state it polls, served from a thread.

The standard library's HTTP server is enough for a handful of viewers polling once a second (and
a Prometheus scraping now and then), and adds no dependency. The page (``page.html`` beside this
file) is self-contained, so it works on machines without internet access. Servers listen on
loopback unless told otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

__all__ = ["DEFAULT_DASHBOARD_PORT", "DashboardServer", "RouteServer"]

DEFAULT_DASHBOARD_PORT = 8790
STATE_PATH = "/state.json"
_LINGER_SECONDS = 2.0  # after the run, long enough for an open page (polling every second) to see the end

Route = Callable[[], tuple[bytes, str]]  # -> (body, content type), computed at each request


class RouteServer:
    """Serves GET ``routes`` (path -> body) from a thread until :meth:`close`; ``port=0``: any free port.

    ``option`` names the command-line option that chose the port, for the error when it is taken.
    """

    def __init__(self, routes: Mapping[str, Route], *, host: str, port: int, option: str):
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(dict(routes)))
        except OSError as exc:
            raise OSError(
                f"cannot listen on {host}:{port} ({exc.strerror}): choose another {option} (0: any free port)"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="lumiflow-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> RouteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DashboardServer(RouteServer):
    """``/``: the dashboard page; ``/state.json``: ``state()``, the document the page draws."""

    def __init__(self, state: Callable[[], dict[str, Any]], *, host: str = "127.0.0.1", port: int = 0):
        page = resources.files(__package__).joinpath("page.html").read_bytes()
        routes: dict[str, Route] = {
            "/": lambda: (page, "text/html; charset=utf-8"),
            STATE_PATH: lambda: (json.dumps(state(), allow_nan=False).encode(), "application/json"),
        }
        super().__init__(routes, host=host, port=port, option="--dashboard-port")

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:  # the run ended: let open pages fetch how, before going away
            time.sleep(_LINGER_SECONDS)
        self.close()


def _handler(routes: dict[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self.send_error(404, f"served here: {', '.join(routes)}")
                return
            body, content_type = route()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            """Quiet: a line per poll would drown the run's own output."""

    return Handler
