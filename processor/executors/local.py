"""In-process, one file after another: for debugging an analysis (breakpoints, print)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..fileset import WorkItem
from ..partial import Partial
from . import FileCallback, Task

__all__ = ["LocalExecutor"]


@dataclass
class LocalExecutor:
    def run(self, items: Sequence[WorkItem], task: Task, on_file: FileCallback) -> Partial:
        result = Partial()
        for item in items:
            partial = task(item)
            for report in partial.files:
                on_file(report)
            result.add(partial)
        return result
