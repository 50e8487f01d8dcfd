"""Lumiflow's framework: ROOT files in, merged histograms and HistFactory templates out.

    import processor
    result = processor.run("analyses/hzz4l.py", "fileset.json",
                           executor=processor.make_executor("dask", workers=2))
    result.samples["m4l"]["signal"]          # a hist.Hist, summed over the signal datasets

See :mod:`processor.analysis` for the analysis contract and :mod:`processor.fileset` for the
fileset format.
"""

from .analysis import Analysis, AnalysisError, Output, Templates, load_analysis
from .background import RunHandle, submit_run
from .fileset import DatasetInfo, Fileset, FilesetError, WorkItem, load_fileset, parse_fileset
from .result import Result
from .runner import RunAborted, RunFailed, make_executor, run
from .task import TaskOptions

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "AnalysisError",
    "DatasetInfo",
    "Fileset",
    "FilesetError",
    "Output",
    "Result",
    "FederationExecutor",
    "RunAborted",
    "RunFailed",
    "RunHandle",
    "TaskOptions",
    "Templates",
    "WorkItem",
    "load_analysis",
    "load_fileset",
    "make_executor",
    "parse_fileset",
    "run",
    "submit_run",
]


def __getattr__(name: str):
    """``processor.FederationExecutor`` without importing distributed for every ``import processor``."""
    if name == "FederationExecutor":
        from .executors.federation import FederationExecutor

        return FederationExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
