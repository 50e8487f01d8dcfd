"""Run one work item: read the columns, run the analysis, return a partial with the file's report.

A task never raises for a bad file: the failure becomes the file's report (``status="failed"``),
so that the run goes on with every other file and the report names exactly what broke.
Transient I/O errors are retried with exponential backoff, all within the per-file timeout;
errors in the analysis are not (they would fail again) and carry the traceback line in the
analysis module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import awkward as ak

from .analysis import Analysis, AnalysisRef, Output, resolve_analysis
from .fileset import DatasetInfo, WorkItem
from .partial import Partial
from .report import FileReport
from .source import DEFAULT_FILE_TIMEOUT, DEFAULT_TIMEOUT, ColumnReader, FileTimeout, is_transient, open_columns, within

__all__ = ["DEFAULT_RETRIES", "DEFAULT_STEP_BYTES", "FileTask", "TaskOptions"]

DEFAULT_RETRIES = 3
#: Decompressed bytes of the needed columns read and processed at a time. A worker's peak memory
#: is a few times this plus the interpreter; larger steps save a little per-step overhead.
DEFAULT_STEP_BYTES = 64e6


@dataclass(frozen=True)
class TaskOptions:
    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT  # per remote request
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    file_timeout: float = DEFAULT_FILE_TIMEOUT  # waiting for one file's reads, every request and retry included
    step_bytes: float | None = DEFAULT_STEP_BYTES  # decompressed bytes per read step (None: whole file at once)


@dataclass(frozen=True)
class FileTask:
    """A picklable ``WorkItem -> Partial`` callable; executors know nothing else about analyses.

    A large file is read and processed in steps of whole clusters (``TaskOptions.step_bytes``),
    so a worker's memory is bounded by the step whatever the file's size; the steps' outputs
    are merged exactly. After a transient error the file is reopened and the read goes on at the
    step that failed, so what was already processed is neither lost nor counted twice.
    """

    analysis: AnalysisRef
    infos: Mapping[str, DatasetInfo]
    options: TaskOptions = TaskOptions()

    def __call__(self, item: WorkItem) -> Partial:
        start = time.perf_counter()
        report = FileReport(index=item.index, path=item.url, dataset=item.dataset)
        try:
            analysis = resolve_analysis(self.analysis)
        except Exception as exc:  # noqa: BLE001 - reported on the file, like any failure
            return self._failed(report, start, f"{type(exc).__name__}: {_one_line(exc)}")
        total = Partial()
        with contextlib.closing(self._steps(item, analysis, report)) as steps:
            for events in steps:
                if isinstance(events, BaseException):
                    return self._failed(report, start, f"{type(events).__name__}: {_one_line(events)}")
                try:
                    output = analysis.process(events, self.infos[item.dataset])
                    if not isinstance(output, Output):
                        raise TypeError(f"process() must return processor.Output, not {type(output).__name__}")
                    total.add(Partial.from_output(item.dataset, output))
                except Exception as exc:  # noqa: BLE001
                    where = _analysis_frame(exc, analysis.source_path)
                    error = f"{type(exc).__name__} in analysis{where}: {_one_line(exc)}"
                    return self._failed(report, start, error)
                report.events += len(events)
        report.seconds = time.perf_counter() - start
        total.files.append(report)
        return total

    def _steps(self, item: WorkItem, analysis: Analysis, report: FileReport) -> Iterator[ak.Array | Exception]:
        """The events of each step, in order; the last thing yielded is the error if reading fails.

        Transient errors are retried with backoff (reopening the file at the failed step); the
        time spent waiting for reads is bounded by ``file_timeout`` in all.
        """
        deadline = time.monotonic() + self.options.file_timeout
        delay = self.options.backoff
        next_entry = item.entry_start
        while True:
            reader = None
            abandoned = False  # a read still running in its thread closes its file when it ends
            try:
                opening = functools.partial(self._open, dataclasses.replace(item, entry_start=next_entry), analysis)
                reader = within(deadline - time.monotonic(), opening, when_late=_close)
                for step_start, step_stop in reader.steps(self.options.step_bytes):
                    read = functools.partial(reader.read, step_start, step_stop)
                    events = within(deadline - time.monotonic(), read, when_late=functools.partial(_close, reader))
                    yield events
                    next_entry = step_stop
                return
            except Exception as exc:  # noqa: BLE001 - a bad file must not stop the run
                abandoned = isinstance(exc, FileTimeout)
                out_of_time = time.monotonic() + delay >= deadline
                if report.attempts > self.options.retries or not is_transient(exc) or out_of_time:
                    yield exc
                    return
            finally:
                if reader is not None:
                    report.bytes_read += reader.bytes_read
                    if not abandoned:
                        reader.close()
            time.sleep(delay)
            delay *= 2
            report.attempts += 1

    def _open(self, item: WorkItem, analysis: Analysis) -> ColumnReader:
        return open_columns(item, analysis.columns, types=analysis.column_types, timeout=self.options.timeout)

    @staticmethod
    def _failed(report: FileReport, start: float, error: str) -> Partial:
        report.status = "failed"
        report.error = error
        report.events = 0
        report.seconds = time.perf_counter() - start
        return Partial(files=[report])


def _close(reader: ColumnReader | None, *_: object) -> None:
    """Close the reader of an abandoned open or read once it ends (it may return None: failed)."""
    if reader is not None:
        reader.close()


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
