"""Serve a run's live views (web dashboard, Prometheus endpoint) for as long as the run goes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from ..monitor import RunMonitor
from .prometheus import MetricsServer
from .server import DashboardServer

__all__ = ["serve_live_views"]


@contextlib.contextmanager
def serve_live_views(
    monitor: RunMonitor,
    *,
    dashboard_port: int | None,
    metrics_port: int | None,
    host: str = "127.0.0.1",
    announce: Callable[[str], None] = print,
) -> Iterator[None]:
    """The web dashboard (if ``dashboard_port`` is not None) and the metrics endpoint (likewise).

    Each one's URL is passed to ``announce`` once it listens. On a normal exit the dashboard
    stays up a moment longer, so that open pages show how the run ended.
    """
    with contextlib.ExitStack() as servers:
        if dashboard_port is not None:
            dashboard = servers.enter_context(DashboardServer(monitor.state, host=host, port=dashboard_port))
            announce(f"dashboard: {dashboard.url}")
        if metrics_port is not None:
            metrics = servers.enter_context(MetricsServer(monitor.metrics, monitor.name, host=host, port=metrics_port))
            announce(f"Prometheus metrics: {metrics.url}")
        yield
