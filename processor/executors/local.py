"""In-process, one file after another: for debugging an analysis (breakpoints, print)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..fileset import WorkItem
from ..partial import Partial
from . import DEFAULT_SNAPSHOT_SECONDS, RunHooks, Task

__all__ = ["LocalExecutor"]


@dataclass
class LocalExecutor:
    snapshot_seconds: float = DEFAULT_SNAPSHOT_SECONDS

    def run(self, items: Sequence[WorkItem], task: Task, hooks: RunHooks) -> Partial:
        result = Partial()
        last_snapshot = time.monotonic()
        for item in items:
            partial = task(item)
            if hooks.on_partial is not None:
                hooks.on_partial(partial)
            for report in partial.files:
                hooks.on_file(report)
            result.add(partial)
            if hooks.on_snapshot is not None and time.monotonic() - last_snapshot >= self.snapshot_seconds:
                hooks.on_snapshot(result.without_files())
                last_snapshot = time.monotonic()
        return result
