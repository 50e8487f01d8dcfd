"""Write a run's outputs: histograms.root, workspace.json, report.json and the template plot.

Every file is written to a temporary name in the output directory and renamed into place, so
an interrupted run never leaves a half-written output that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uproot

from .analysis import Analysis
from .histfactory import build_workspace
from .plotting import plot_templates
from .result import Result

__all__ = ["atomic_path", "write_json", "write_outputs"]


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary shared files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON at ``path``, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")


def write_histograms(result: Result, analysis: Analysis, path: Path) -> None:
    """Templates as ``<channel>/<sample>``; each dataset's as ``datasets/<dataset>/<channel>``."""
    templates = analysis.templates
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for sample, h in result.samples.get(templates.histogram, {}).items():
            for channel, h1 in templates.split(h):
                f[f"{channel}/{sample}"] = h1
        for dataset, hists in result.hists.items():
            if templates.histogram in hists:
                for channel, h1 in templates.split(hists[templates.histogram]):
                    f[f"datasets/{dataset}/{channel}"] = h1


def write_outputs(result: Result, analysis: Analysis, report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write all outputs; returns their paths. The workspace is skipped if no template can be built."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": out_dir / "report.json"}
    if analysis.templates.histogram in result.samples:
        paths["histograms"] = out_dir / "histograms.root"
        write_histograms(result, analysis, paths["histograms"])
        paths["workspace"] = out_dir / "workspace.json"
        write_json(paths["workspace"], build_workspace(result, analysis.templates, analysis.name))
        paths["plot"] = out_dir / f"{analysis.templates.histogram}.png"
        with atomic_path(paths["plot"]) as tmp:
            plot_templates(result, analysis.templates, tmp, analysis.name, analysis.lumi_pb)
    write_json(paths["report"], report)
    return paths
