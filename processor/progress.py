"""A live progress bar for a run: files done/total, failures, events/s and MB/s."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .report import FileReport

__all__ = ["RunProgress"]


class RunProgress:
    """Context manager whose :meth:`on_file` is the executor's per-file callback (thread-safe)."""

    def __init__(self, total_files: int, console: Console | None = None, disable: bool = False):
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self.files = self.failed = self.events = self.bytes_read = 0
        self._progress = Progress(
            TextColumn("[bold]files"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rates]}"),
            TimeElapsedColumn(),
            console=console,
            disable=disable,
        )
        self._task = self._progress.add_task("run", total=total_files, rates="")

    def __enter__(self) -> RunProgress:
        self._start = time.perf_counter()
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def on_file(self, report: FileReport) -> None:
        with self._lock:
            self._count(report)
            self._refresh()

    def complete(self, reports: list[FileReport]) -> None:
        """Show the final counts from the result: live announcements are best-effort."""
        with self._lock:
            self.files = self.failed = self.events = self.bytes_read = 0
            for report in reports:
                self._count(report)
            self._refresh()

    def _count(self, report: FileReport) -> None:
        self.files += 1
        if report.ok:
            self.events += report.events
        else:
            self.failed += 1
        self.bytes_read += report.bytes_read

    def _refresh(self) -> None:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rates = f"{self.events / elapsed:,.0f} events/s  {self.bytes_read / elapsed / 1e6:,.1f} MB/s"
        if self.failed:
            rates += f"  [red]{self.failed} failed"
        self._progress.update(self._task, completed=self.files, rates=rates)
