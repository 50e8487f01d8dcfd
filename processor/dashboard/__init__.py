"""Live views of a run: the Jupyter widget, the web page and the Prometheus endpoint.

    import processor
    from processor.dashboard import Dashboard
    handle = processor.submit_run("analyses/hzz4l.py")
    Dashboard(handle)                          # or Dashboard("http://127.0.0.1:8790/"): a run elsewhere

All of them read one JSON state (:meth:`processor.monitor.RunMonitor.state`). The widget needs
the ``dashboard`` extra (ipywidgets); it is imported on first use, so that the web page and the
Prometheus endpoint work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .prometheus import MetricsServer
from .server import DEFAULT_DASHBOARD_PORT, DashboardServer

if TYPE_CHECKING:
    from .widget import Dashboard

__all__ = ["DEFAULT_DASHBOARD_PORT", "Dashboard", "DashboardServer", "MetricsServer"]


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        try:
            from .widget import Dashboard
        except ImportError as exc:
            raise ImportError(
                f"the Jupyter dashboard needs ipywidgets ({exc}): pip install 'lumiflow[dashboard]'"
            ) from exc
        return Dashboard
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
