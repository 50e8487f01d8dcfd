"""``processor.submit_run``: a run in a background thread, watched while it goes.

A notebook cell that called :func:`processor.run` would block until the end, so nothing could
show the run's progress. :func:`submit_run` returns at once with a :class:`RunHandle`: its
``monitor`` feeds live views (``processor.dashboard.Dashboard(handle)``), and
:meth:`RunHandle.result` waits for the same :class:`~processor.result.Result` that ``run`` returns.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from typing import Any

from .analysis import Analysis, load_analysis
from .executors import fan_out
from .fileset import Fileset
from .monitor import RunMonitor
from .result import Result
from .runner import RunFailed, resolve_fileset, run

__all__ = ["RunHandle", "submit_run"]


class RunHandle:
    """A run going on in this process; ``monitor`` is what live views read."""

    def __init__(self, monitor: RunMonitor, future: Future[Result]):
        self.monitor = monitor
        self._future = future

    def result(self, timeout: float | None = None) -> Result:
        """Wait for the run's result (``TimeoutError`` after ``timeout`` seconds); raise what the run raised."""
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()


def submit_run(
    analysis: str | os.PathLike[str] | Analysis,
    fileset: str | os.PathLike[str] | Fileset | None = None,
    **options: Any,
) -> RunHandle:
    """Start :func:`processor.run` (same arguments) in a background thread and return at once.

    Analysis and fileset errors are raised here, before anything starts.
    """
    if not isinstance(analysis, Analysis):
        analysis = load_analysis(analysis)
    fileset = resolve_fileset(analysis, fileset)
    fileset.infos(analysis.lumi_pb)  # resolves every weight: a fileset error raises here, not in the thread
    monitor = RunMonitor.for_run(analysis, fileset)
    on_file = fan_out(monitor.on_file, options.pop("on_file", None))
    future: Future[Result] = Future()
    future.set_running_or_notify_cancel()

    def target() -> None:
        monitor.metrics.start()
        try:
            result = run(analysis, fileset, on_file=on_file, on_snapshot=monitor.on_snapshot, **options)
        except RunFailed as exc:  # strict: the outputs of the other files exist, and so does a result
            monitor.finish(exc.result, error=exc)
            future.set_exception(exc)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the result
            monitor.finish(error=exc)
            future.set_exception(exc)
        else:
            monitor.finish(result)
            future.set_result(result)

    threading.Thread(target=target, name=f"lumiflow-run-{analysis.name}", daemon=True).start()
    return RunHandle(monitor, future)
