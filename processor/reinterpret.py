"""Reinterpretation: test a new signal model against a finished run's backgrounds and data.

A theorist's new model changes only the signal sample. Everything else in the likelihood (the
background templates, their uncertainties, the observed data) is already in the previous run's
``workspace.json``, so only the new signal's files are processed: its templates replace the
signal samples of that workspace (:func:`processor.histfactory.replace_signal`) and the new
model's CLs is computed as ``lumiflow cls`` does. Merging is exact and the samples keep their
order, so the workspace equals the one a full run with the new signal would write.

The previous run must have been made by the same analysis code (its ``report.json`` records
the analysis' sha256): a changed selection would mix two analyses in one likelihood.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .analysis import Analysis, load_analysis
from .cls import workspace_cls
from .executors import Executor, FileCallback
from .fileset import Fileset, FilesetError
from .histfactory import replace_signal, template_samples
from .outputs import write_histograms, write_json
from .report import build_report, provenance
from .result import Result
from .runner import resolve_fileset, run
from .task import TaskOptions

__all__ = ["Reinterpretation", "reinterpret"]


@dataclass
class Reinterpretation:
    """The new model's workspace and CLs, and the run over its signal files."""

    workspace: dict[str, Any]
    cls: dict[str, Any]  # as processor.cls.workspace_cls: CLs_obs, CLs_exp (-2..+2 sigma)
    result: Result
    outputs: dict[str, Path] = field(default_factory=dict)


def reinterpret(
    analysis: str | os.PathLike[str] | Analysis,
    signal: str | os.PathLike[str] | Fileset,
    previous: str | os.PathLike[str],
    *,
    executor: Executor | None = None,
    output: str | os.PathLike[str] | None = None,
    options: TaskOptions | None = None,
    test_poi: float = 1.0,
    on_file: FileCallback | None = None,
) -> Reinterpretation:
    """Process ``signal`` (a fileset of signal datasets only) and test it against the run in ``previous``.

    Outputs, when ``output`` is given: ``workspace.json`` (the new model), ``cls.json``,
    ``histograms.root`` (the new signal's templates) and ``report.json`` (its files). A signal
    file that fails raises :class:`processor.RunFailed` before any CLs is computed: a partial
    signal would understate the model's yield.
    """
    if not isinstance(analysis, Analysis):
        analysis = load_analysis(analysis)
    previous = Path(previous)
    spec = _previous_workspace(previous, analysis)
    fileset = resolve_fileset(analysis, signal)
    roles = {name: info.role for name, info in fileset.infos(analysis.lumi_pb).items()}
    others = sorted(name for name, role in roles.items() if role != "signal")
    if others:
        raise FilesetError(
            f"a reinterpretation processes the new signal only; these datasets are not role 'signal': {others}"
        )
    result = run(analysis, fileset, executor=executor, write=False, strict=True, options=options, on_file=on_file)
    channels, _ = template_samples(result, analysis.templates)
    workspace = replace_signal(spec, channels, analysis.templates.poi)
    outcome = Reinterpretation(workspace, workspace_cls(workspace, test_poi), result)
    if output is not None:
        outcome.outputs = _write(outcome, analysis, fileset, previous, Path(output), test_poi)
    return outcome


def _previous_workspace(previous: Path, analysis: Analysis) -> dict[str, Any]:
    spec, report = (_read_json(previous / name) for name in ("workspace.json", "report.json"))
    made_by = report.get("provenance", {}).get("analysis_sha256")
    if made_by != analysis.source_sha256:
        raise ValueError(
            f"the run in {previous} was made by another version of {analysis.name} (sha256 {str(made_by)[:12]}…, "
            f"this one is {analysis.source_sha256[:12]}…): rerun it with this code before reinterpreting"
        )
    failed = report.get("totals", {}).get("files_failed", 0)
    if failed:
        raise ValueError(f"the run in {previous} has {failed} failed file(s): its backgrounds are incomplete")
    return spec


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path.parent} is not a finished run's output directory: no {path.name}") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): rerun the analysis to rewrite it") from None


def _write(
    outcome: Reinterpretation, analysis: Analysis, fileset: Fileset, previous: Path, out_dir: Path, test_poi: float
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{kind}.json" for kind in ("workspace", "cls", "report")}
    report = build_report(
        outcome.result.files,
        outcome.result.wall_seconds,
        outcome.result.cutflow,
        provenance(analysis.source_sha256, fileset.sha256),
    )
    report["reinterpretation_of"] = str(previous.resolve())
    cls = {"test_poi": test_poi, **outcome.cls}
    for kind, content in (("workspace", outcome.workspace), ("cls", cls), ("report", report)):
        write_json(paths[kind], content)
    paths["histograms"] = out_dir / "histograms.root"
    write_histograms(outcome.result, analysis, paths["histograms"])
    return paths
