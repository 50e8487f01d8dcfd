"""Run one work item: read the columns, run the analysis, return a partial with the file's report.

A task never raises for a bad file: the failure becomes the file's report (``status="failed"``),
so that the run goes on with every other file and the report names exactly what broke.
Transient I/O errors are retried with exponential backoff; errors in the analysis are not
(they would fail again) and carry the traceback line in the analysis module.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .analysis import AnalysisRef, Output, resolve_analysis
from .fileset import DatasetInfo, WorkItem
from .partial import Partial
from .report import FileReport
from .source import DEFAULT_TIMEOUT, ReadResult, is_transient, read_columns

__all__ = ["DEFAULT_RETRIES", "FileTask", "TaskOptions"]

DEFAULT_RETRIES = 3


@dataclass(frozen=True)
class TaskOptions:
    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    backoff: float = 0.5  # seconds before the first retry; doubles each time


@dataclass(frozen=True)
class FileTask:
    """A picklable ``WorkItem -> Partial`` callable; executors know nothing else about analyses."""

    analysis: AnalysisRef
    infos: Mapping[str, DatasetInfo]
    options: TaskOptions = TaskOptions()

    def __call__(self, item: WorkItem) -> Partial:
        start = time.perf_counter()
        report = FileReport(index=item.index, path=item.url, dataset=item.dataset)
        try:
            analysis = resolve_analysis(self.analysis)
            read = self._read(item, analysis.columns, report)
            report.events = len(read.events)
            report.bytes_read = read.bytes_read
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop the run
            return self._failed(report, start, f"{type(exc).__name__}: {_one_line(exc)}")
        try:
            output = analysis.process(read.events, self.infos[item.dataset])
            if not isinstance(output, Output):
                raise TypeError(f"process() must return processor.Output, not {type(output).__name__}")
            report.seconds = time.perf_counter() - start
            return Partial.from_output(item.dataset, output, report)
        except Exception as exc:  # noqa: BLE001
            where = _analysis_frame(exc, analysis.source_path)
            return self._failed(report, start, f"{type(exc).__name__} in analysis{where}: {_one_line(exc)}")

    def _read(self, item: WorkItem, columns: tuple[str, ...], report: FileReport) -> ReadResult:
        delay = self.options.backoff
        while True:
            try:
                return read_columns(item, columns, timeout=self.options.timeout)
            except Exception as exc:
                if report.attempts > self.options.retries or not is_transient(exc):
                    raise
            time.sleep(delay)
            delay *= 2
            report.attempts += 1

    @staticmethod
    def _failed(report: FileReport, start: float, error: str) -> Partial:
        report.status = "failed"
        report.error = error
        report.events = 0
        report.seconds = time.perf_counter() - start
        return Partial(files=[report])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or repr(exc)


def _analysis_frame(exc: BaseException, source_path: Path | None) -> str:
    """`` at FILE:LINE in FUNC`` for the innermost frame in the analysis module, if any."""
    frames = traceback.extract_tb(exc.__traceback__)
    if source_path is not None:
        own = [f for f in frames if f.filename == str(source_path)]
        frames = own or frames
    if not frames:
        return ""
    f = frames[-1]
    return f" at {f.filename}:{f.lineno} in {f.name}"
