"""Executors run ``task(item) -> Partial`` over work items and return one merged partial.

They know nothing about physics: an executor receives picklable work items and a picklable task,
tells the runner what happens through :class:`RunHooks`, and merges partials.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..fileset import WorkItem
from ..partial import Partial
from ..report import FileReport

__all__ = [
    "DEFAULT_SNAPSHOT_SECONDS",
    "Executor",
    "ExecutorAborted",
    "FileCallback",
    "OncePerFile",
    "PartialCallback",
    "RunHooks",
    "SnapshotCallback",
    "Task",
    "fan_out",
]

Task = Callable[[WorkItem], Partial]
FileCallback = Callable[[FileReport], None]
SnapshotCallback = Callable[[Partial], None]  # histograms and cutflows only: no file reports
PartialCallback = Callable[[Partial], None]  # one file's partial, its report included

DEFAULT_SNAPSHOT_SECONDS = 2.0  # live views refresh often enough to watch, rarely enough to cost nothing


class ExecutorAborted(RuntimeError):
    """The executor could not finish (a federation lost every cluster).

    ``partial`` holds what arrived plus a failed report for every other file, so that the
    runner still writes the outputs of the files that finished before it re-raises.
    """

    def __init__(self, message: str, partial: Partial):
        super().__init__(message)
        self.partial = partial


def fan_out(*callbacks: FileCallback | None) -> FileCallback:
    """One per-file callback that calls each of ``callbacks`` (None: skipped) in turn."""
    chosen = [c for c in callbacks if c is not None]

    def each(report: FileReport) -> None:
        for callback in chosen:
            callback(report)

    return each


class OncePerFile:
    """A per-file callback that passes each file's report on once (thread-safe).

    A task that Dask reruns because its worker (or its whole cluster) died after announcing
    the file would otherwise be counted twice by progress bars, dashboards and the Kubernetes
    status.
    """

    def __init__(self, on_file: FileCallback):
        self._on_file = on_file
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, report: FileReport) -> None:
        with self._lock:
            if report.index in self._seen:
                return
            self._seen.add(report.index)
        self._on_file(report)


def _ignore(report: FileReport) -> None:
    pass


@dataclass(frozen=True)
class RunHooks:
    """What the runner asks to hear while an executor works, all on the client.

    ``on_file`` gets each file's report as it finishes (progress bars, dashboards, the Kubernetes
    status), once per file. ``on_snapshot``, where given, gets every few seconds a provisional merge
    of the files finished so far, for live views; the returned partial stays the exact one.
    ``on_partial``, where given, gets each file's own partial as it arrives: the run journal
    (:mod:`processor.journal`) keeps them so that an interrupted run can resume.
    """

    on_file: FileCallback = _ignore
    on_snapshot: SnapshotCallback | None = None
    on_partial: PartialCallback | None = None


class Executor(Protocol):
    def run(self, items: Sequence[WorkItem], task: Task, hooks: RunHooks) -> Partial:
        """Process every item once; the result holds one report per item."""
        ...
