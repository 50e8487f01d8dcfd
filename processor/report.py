"""Per-file reports and the run's ``report.json``: what was read, how fast, what failed, provenance."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

__all__ = ["FileReport", "build_report", "cluster_section", "provenance"]

_PACKAGES = ("lumiflow", "uproot", "awkward", "numba", "numpy", "dask", "distributed", "hist", "pyhf", "fsspec")


@dataclass
class FileReport:
    """What happened to one work item. ``status`` is ``"ok"`` or ``"failed"``."""

    index: int
    path: str
    dataset: str
    events: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None
    attempts: int = 1
    cluster: str | None = None  # which Dask cluster ran it, where a run spans several

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def provenance(analysis_sha256: str, fileset_sha256: str) -> dict[str, Any]:
    """Enough to tell later which code and inputs produced a result."""
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "lumiflow_version": packages["lumiflow"],
        "analysis_sha256": analysis_sha256,
        "fileset_sha256": fileset_sha256,
        "python": platform.python_version(),
        "packages": packages,
    }


def build_report(
    files: list[FileReport],
    wall_seconds: float,
    cutflow: dict[str, dict[str, int]],
    provenance: dict[str, Any],
    clusters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The content of ``report.json``; files in fileset order.

    ``clusters``: a federation's records of its clusters (``FederationExecutor.cluster_records``),
    which become the ``clusters`` section, with what each contributed.
    """
    ordered = sorted(files, key=lambda r: r.index)
    ok = [r for r in ordered if r.ok]
    events = sum(r.events for r in ok)
    totals = {
        "files": len(ordered),
        "files_ok": len(ok),
        "files_failed": len(ordered) - len(ok),
        "events": events,
        "bytes_read": sum(r.bytes_read for r in ordered),
        "wall_seconds": wall_seconds,
        "events_per_second": events / wall_seconds if wall_seconds > 0 else 0.0,
    }
    report = {
        "files": [r.to_dict() for r in ordered],
        "totals": totals,
        "failures": [r.to_dict() for r in ordered if not r.ok],
        "cutflow": cutflow,
        "provenance": provenance,
    }
    if clusters is not None:
        report["clusters"] = cluster_section(ordered, clusters)
    return report


def cluster_section(files: list[FileReport], clusters: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per cluster: the files whose results it delivered, their events and bytes, its busy time and throughput.

    A lost cluster counts only what reached the client before the loss (the rest was recomputed
    elsewhere, and counts there); its ``lost`` entry says when and why, and how many files went back.
    """
    section = {}
    for record in clusters:
        mine = [r for r in files if r.cluster == record["name"]]
        events = sum(r.events for r in mine if r.ok)
        busy = record.get("busy_seconds", 0.0)
        section[record["name"]] = {
            **{k: v for k, v in record.items() if k != "name"},
            "files": len(mine),
            "files_failed": sum(not r.ok for r in mine),
            "events": events,
            "bytes_read": sum(r.bytes_read for r in mine),
            "task_seconds": round(sum(r.seconds for r in mine), 3),
            "events_per_second": events / busy if busy > 0 else 0.0,
        }
    return section
