"""A live progress bar for a run: files done/total, failures, events/s and MB/s; per cluster in a federation."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .report import FileReport

__all__ = ["RunProgress"]


class RunProgress:
    """Context manager whose :meth:`on_file` is the executor's per-file callback (thread-safe)."""

    def __init__(
        self, total_files: int, console: Console | None = None, disable: bool = False, unit: str | None = None
    ):
        """``unit``: the work items are not files (``"patches"`` of a CLs scan): rates count them, not events."""
        self._lock = threading.Lock()
        self.unit = unit
        self._start = time.perf_counter()
        self.files = self.failed = self.events = self.bytes_read = 0
        self.total_files = total_files
        self.clusters: dict[str, list[int]] = {}  # cluster -> [files, events], where reports name one
        self._cluster_tasks: dict[str, TaskID] = {}
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rates]}"),
            TimeElapsedColumn(),
            console=console,
            disable=disable,
        )
        self._task = self._progress.add_task(f"[bold]{unit or 'files'}", total=total_files, rates="")

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
            self.clusters = {name: [0, 0] for name in self.clusters}
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
        if report.cluster is not None:
            counts = self.clusters.setdefault(report.cluster, [0, 0])
            counts[0] += 1
            counts[1] += report.events if report.ok else 0

    def _refresh(self) -> None:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        if self.unit:
            rates = f"{self.files / elapsed:,.2f} {self.unit}/s"
        else:
            rates = f"{self.events / elapsed:,.0f} events/s  {self.bytes_read / elapsed / 1e6:,.1f} MB/s"
        if self.failed:
            rates += f"  [red]{self.failed} failed"
        self._progress.update(self._task, completed=self.files, rates=rates)
        for name, (files, events) in self.clusters.items():  # one row per cluster: its share and rate
            if name not in self._cluster_tasks:
                self._cluster_tasks[name] = self._progress.add_task(f"  {name}", total=self.total_files, rates="")
            rate = f"{files / elapsed:,.2f} {self.unit}/s" if self.unit else f"{events / elapsed:,.0f} events/s"
            self._progress.update(self._cluster_tasks[name], completed=files, rates=rate)
