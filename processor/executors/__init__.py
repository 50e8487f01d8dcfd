"""Executors run ``task(item) -> Partial`` over work items and return one merged partial.

They know nothing about physics: an executor receives picklable work items and a picklable task,
reports each finished file to ``on_file`` (progress bars, dashboards), and merges partials.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..fileset import WorkItem
from ..partial import Partial
from ..report import FileReport

__all__ = ["Executor", "FileCallback", "Task"]

Task = Callable[[WorkItem], Partial]
FileCallback = Callable[[FileReport], None]


class Executor(Protocol):
    def run(self, items: Sequence[WorkItem], task: Task, on_file: FileCallback) -> Partial:
        """Process every item once; the result holds one report per item."""
        ...
