"""What the live views of a run read: its metrics, its latest histograms, whether it is over.

A :class:`RunMonitor` is fed by the run (``on_file`` per finished file, ``on_snapshot`` with a
provisional result every few seconds, :meth:`RunMonitor.finish` at the end) and read by the
views through :meth:`RunMonitor.state`, one JSON document. The web page polls that document,
the Jupyter widget draws it, and a widget attached to a run elsewhere fetches the same document
from that run's web dashboard, so every view shows the same thing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .analysis import Analysis, Templates
from .fileset import Fileset
from .metrics import DEFAULT_WINDOW, RunMetrics
from .plotting import sample_label, stack
from .report import FileReport
from .result import Result

__all__ = ["RunMonitor", "stack_view"]


class RunMonitor:
    """Thread-safe: the run's threads feed it while views read it."""

    def __init__(
        self,
        name: str,
        templates: Templates,
        expected: dict[str, int],
        *,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.templates = templates
        self.metrics = RunMetrics(expected, window=window, clock=clock)
        self._lock = threading.Lock()
        self._histogram: dict[str, Any] | None = None
        self._status = "running"
        self._error: str | None = None

    @classmethod
    def for_run(cls, analysis: Analysis, fileset: Fileset, **kwargs: Any) -> RunMonitor:
        """A monitor expecting every file of ``fileset``."""
        expected = {name: len(dataset.files) for name, dataset in fileset.datasets.items()}
        return cls(analysis.name, analysis.templates, expected, **kwargs)

    def on_file(self, report: FileReport) -> None:
        self.metrics.on_file(report)

    def on_snapshot(self, result: Result) -> None:
        """A provisional result: the histograms of the files finished so far."""
        view = stack_view(result, self.templates, final=False)
        with self._lock:
            if self._status == "running":  # a late snapshot must not replace the final histograms
                self._histogram = view

    def finish(self, result: Result | None = None, error: BaseException | None = None) -> None:
        """The run is over: with its exact ``result``, or with the ``error`` that stopped it."""
        self.metrics.finish()
        view = stack_view(result, self.templates, final=True) if result is not None else None
        with self._lock:
            if view is not None:
                self._histogram = view
            self._status = "failed" if error is not None else "finished"
            self._error = f"{type(error).__name__}: {error}" if error is not None else None

    @property
    def finished(self) -> bool:
        return self._status != "running"

    def state(self) -> dict[str, Any]:
        """The JSON document every view draws."""
        metrics = self.metrics.to_dict()
        with self._lock:
            return {
                "analysis": self.name,
                "status": self._status,
                "error": self._error,
                **metrics,
                "histogram": self._histogram,
            }


def stack_view(result: Result, templates: Templates, *, final: bool) -> dict[str, Any] | None:
    """The template histogram as the plot stacks it (see :func:`processor.plotting.stack`), as JSON.

    None while no file has filled it yet.
    """
    if templates.histogram not in result.samples:
        return None
    layout = stack(result, templates)
    axis = next(iter(layout.summed.values())).axes[0]
    data = sum(layout.summed[s].values() for s in layout.data) if layout.data else None
    return {
        "name": templates.histogram,
        "label": axis.label or templates.histogram,
        "edges": [float(e) for e in axis.edges],
        "stack": [
            {
                "sample": s,
                "label": sample_label(result, s),
                "role": result.role_of(s),
                "values": [float(v) for v in layout.summed[s].values()],
            }
            for s in layout.order
        ],
        "data": [float(v) for v in data] if data is not None else None,
        "final": final,
    }
