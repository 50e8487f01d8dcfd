"""``processor.run``: fileset + analysis -> executor -> merged result -> outputs."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from .analysis import Analysis, load_analysis
from .executors import Executor, FileCallback
from .executors.local import LocalExecutor
from .fileset import Fileset, FilesetError, load_fileset
from .outputs import write_outputs
from .report import FileReport, build_report, provenance
from .result import Result
from .task import FileTask, TaskOptions

__all__ = ["EXECUTORS", "RunFailed", "default_output_dir", "make_executor", "run"]

EXECUTORS = ("dask", "local")


class RunFailed(Exception):
    """``strict`` was asked for and some files failed; the outputs of the others were written."""

    def __init__(self, failures: Sequence[FileReport], result: Result):
        self.failures = list(failures)
        self.result = result
        names = ", ".join(f"{r.path} ({r.error})" for r in self.failures[:3])
        more = f" and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(f"{len(self.failures)} file(s) failed: {names}{more}")


def make_executor(
    name: str, *, scheduler: str | None = None, workers: int | None = None, fan_in: int | None = None
) -> Executor:
    """An executor by its CLI name."""
    if name == "local":
        return LocalExecutor()
    if name == "dask":
        from .executors.dask import DEFAULT_FAN_IN, DaskExecutor

        return DaskExecutor(scheduler=scheduler, workers=workers, fan_in=fan_in or DEFAULT_FAN_IN)
    raise ValueError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")


def default_output_dir(analysis: Analysis) -> Path:
    return Path("lumiflow-output") / analysis.name


def resolve_fileset(analysis: Analysis, fileset: str | os.PathLike[str] | Fileset | None) -> Fileset:
    if isinstance(fileset, Fileset):
        return fileset
    if fileset is None:
        if analysis.default_fileset is None:
            raise FilesetError(f"analysis {analysis.name!r} has no default fileset: give one with --fileset")
        fileset = analysis.default_fileset()
    return load_fileset(fileset)


def run(
    analysis: str | os.PathLike[str] | Analysis,
    fileset: str | os.PathLike[str] | Fileset | None = None,
    *,
    executor: Executor | None = None,
    output: str | os.PathLike[str] | None = None,
    write: bool = True,
    strict: bool = False,
    options: TaskOptions | None = None,
    on_file: FileCallback | None = None,
) -> Result:
    """Run ``analysis`` over ``fileset`` and write its outputs.

    Every dataset's weight is resolved before any file is opened, so a fileset error costs
    nothing. Files that fail are reported in the result (and ``report.json``) and the run goes
    on; with ``strict`` a :class:`RunFailed` is raised after the outputs are written.
    """
    if not isinstance(analysis, Analysis):
        analysis = load_analysis(analysis)
    fileset = resolve_fileset(analysis, fileset)
    infos = fileset.infos(analysis.lumi_pb)
    items = fileset.work_items()
    task = FileTask(analysis.ref(), infos, options or TaskOptions())
    start = time.perf_counter()
    partial = (executor or LocalExecutor()).run(items, task, on_file or (lambda report: None))
    wall = time.perf_counter() - start
    reported = sorted(r.index for r in partial.files)
    if reported != [item.index for item in items]:
        raise RuntimeError(f"executor returned {len(reported)} file reports for {len(items)} files")
    result = Result.from_partial(partial, infos, wall)
    if write:
        out_dir = Path(output) if output is not None else default_output_dir(analysis)
        report = build_report(result.files, wall, result.cutflow, provenance(analysis.source_sha256, fileset.sha256))
        result.outputs = write_outputs(result, analysis, report, out_dir)
    if strict and result.failures:
        raise RunFailed(result.failures, result)
    return result
