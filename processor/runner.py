"""``processor.run``: fileset + analysis -> executor -> merged result -> outputs."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .analysis import Analysis, load_analysis
from .executors import Executor, ExecutorAborted, FileCallback, RunHooks
from .executors.local import LocalExecutor
from .fileset import Fileset, FilesetError, load_fileset
from .journal import Journal
from .outputs import write_outputs
from .partial import Partial
from .report import FileReport, build_report, provenance
from .result import Result
from .task import FileTask, TaskOptions

if TYPE_CHECKING:  # distributed is imported only when the dask executor is used
    from distributed.security import Security

__all__ = ["EXECUTORS", "RunAborted", "RunFailed", "default_output_dir", "make_executor", "run"]

EXECUTORS = ("dask", "local", "kubernetes", "federation")


class RunFailed(Exception):
    """``strict`` was asked for and some files failed; the outputs of the others were written."""

    def __init__(self, failures: Sequence[FileReport], result: Result):
        self.failures = list(failures)
        self.result = result
        names = ", ".join(f"{r.path} ({r.error})" for r in self.failures[:3])
        more = f" and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(f"{len(self.failures)} file(s) failed: {names}{more}")


class RunAborted(RunFailed):
    """The executor gave up (a federation lost every cluster); the outputs of the finished files were written."""

    def __init__(self, reason: str, result: Result):
        super().__init__(result.failures, result)
        self.args = (reason,)


def make_executor(
    name: str,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    fan_in: int | None = None,
    security: Security | None = None,
    clusters: Sequence[str] = (),
    clusters_file: str | os.PathLike[str] | None = None,
) -> Executor:
    """An executor by its CLI name; ``security`` (TLS, :mod:`processor.security`) is for Dask only."""
    if name == "local":
        if security is not None:
            raise ValueError("TLS options apply to the dask executor only")
        return LocalExecutor()
    if name == "dask":
        from .executors.dask import DEFAULT_FAN_IN, DaskExecutor

        return DaskExecutor(scheduler=scheduler, workers=workers, fan_in=fan_in or DEFAULT_FAN_IN, security=security)
    if name == "kubernetes":
        return _kubernetes_executor(workers, fan_in, security)
    if name == "federation":
        return _federation_executor(clusters, clusters_file, fan_in, security)
    raise ValueError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")


def _federation_executor(
    clusters: Sequence[str],
    clusters_file: str | os.PathLike[str] | None,
    fan_in: int | None,
    security: Security | None,
) -> Executor:
    """Scheduler addresses (``--cluster``) and a YAML cluster list (``--clusters``, re-read during the run)."""
    from .executors.dask import DEFAULT_FAN_IN
    from .executors.federation import FederationExecutor

    if not clusters and clusters_file is None:
        raise ValueError("the federation executor needs clusters: --cluster ADDR (repeatable) or --clusters FILE")
    return FederationExecutor(list(clusters), clusters_file, fan_in=fan_in or DEFAULT_FAN_IN, security=security)


def _kubernetes_executor(workers: int | None, fan_in: int | None, security: Security | None) -> Executor:
    """A KubeCluster from the laptop; the image comes from ``$LUMIFLOW_IMAGE`` (README: build and push)."""
    from .executors.dask import DEFAULT_FAN_IN
    from .executors.kubernetes import KubernetesExecutor, require_dask_kubernetes

    require_dask_kubernetes()
    image = os.environ.get("LUMIFLOW_IMAGE")
    if not image:
        raise ValueError("the kubernetes executor needs LUMIFLOW_IMAGE: the Lumiflow image your cluster pulls")
    return KubernetesExecutor(image=image, workers=workers, fan_in=fan_in or DEFAULT_FAN_IN, security=security)


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
    on_snapshot: Callable[[Result], None] | None = None,
    journal: bool = True,
    resume: bool = False,
) -> Result:
    """Run ``analysis`` over ``fileset`` and write its outputs.

    Every dataset's weight is resolved before any file is opened, so a fileset error costs
    nothing. Files that fail are reported in the result (and ``report.json``) and the run goes
    on; with ``strict`` a :class:`RunFailed` is raised after the outputs are written.
    ``on_file`` sees each file's report as it finishes; ``on_snapshot`` gets, every few seconds, a
    provisional result (the histograms and cutflows of the files finished so far) for live views,
    and the complete result once every file is done.

    With ``write`` and ``journal``, each finished file's partial is kept in ``<output>/journal``;
    ``resume`` then runs only the files not journaled there (see :mod:`processor.journal`).
    """
    if not isinstance(analysis, Analysis):
        analysis = load_analysis(analysis)
    fileset = resolve_fileset(analysis, fileset)
    infos = fileset.infos(analysis.lumi_pb)
    items = fileset.work_items()
    task = FileTask(analysis.ref(), infos, options or TaskOptions())
    out_dir = Path(output) if output is not None else default_output_dir(analysis)
    if resume and not (write and journal):
        raise ValueError("resume needs a journal: a run that writes its outputs, with journal=True")
    done, todo, run_journal = Partial(), items, None
    if write and journal:
        run_journal = (Journal.resume if resume else Journal.start)(out_dir, analysis.source_sha256, fileset.sha256)
        done = run_journal.done()
        finished = {r.index for r in done.files}
        todo = [item for item in items if item.index not in finished]
    start = time.perf_counter()
    live = None
    if on_snapshot is not None:

        def live(snapshot: Partial) -> None:
            snapshot.add(done.without_files())
            on_snapshot(Result.from_partial(snapshot, infos, time.perf_counter() - start))

    hooks = RunHooks(on_snapshot=live, on_partial=run_journal.record if run_journal is not None else None)
    if on_file is not None:
        hooks = dataclasses.replace(hooks, on_file=on_file)
    aborted = None
    try:
        partial = (executor or LocalExecutor()).run(todo, task, hooks)
    except ExecutorAborted as exc:  # what arrived is still written, then the run fails
        partial, aborted = exc.partial, exc
    partial.add(done)
    wall = time.perf_counter() - start
    reported = sorted(r.index for r in partial.files)
    if reported != [item.index for item in items]:
        raise RuntimeError(f"executor returned {len(reported)} file reports for {len(items)} files")
    result = Result.from_partial(partial, infos, wall)
    if on_snapshot is not None:  # the complete histograms, while the outputs are being written
        on_snapshot(result)
    if write:
        report = build_report(
            result.files,
            wall,
            result.cutflow,
            provenance(analysis.source_sha256, fileset.sha256),
            clusters=getattr(executor, "cluster_records", None),
        )
        result.outputs = write_outputs(result, analysis, report, out_dir)
        if run_journal is not None and not result.failures:
            run_journal.discard()  # complete: nothing left to resume
    if aborted is not None:
        raise RunAborted(str(aborted), result) from aborted
    if strict and result.failures:
        raise RunFailed(result.failures, result)
    return result
