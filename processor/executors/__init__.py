"""Executors run ``task(item) -> Partial`` over work items and return one merged partial.

They know nothing about physics: an executor receives picklable work items and a picklable task,
reports each finished file to ``on_file`` (progress bars, dashboards), and merges partials.
Where asked, it also hands ``on_snapshot`` a provisional merge of the files finished so far, every
few seconds, for live views; the returned partial stays the exact one.
Where asked, it hands ``on_partial`` each file's own partial as it finishes, on the client: the
run journal (:mod:`processor.journal`) keeps them so that an interrupted run can resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..fileset import WorkItem
from ..partial import Partial
from ..report import FileReport

__all__ = [
    "DEFAULT_SNAPSHOT_SECONDS",
    "Executor",
    "ExecutorAborted",
    "FileCallback",
    "PartialCallback",
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


class Executor(Protocol):
    def run(
        self,
        items: Sequence[WorkItem],
        task: Task,
        on_file: FileCallback,
        on_snapshot: SnapshotCallback | None = None,
        on_partial: PartialCallback | None = None,
    ) -> Partial:
        """Process every item once; the result holds one report per item."""
        ...
