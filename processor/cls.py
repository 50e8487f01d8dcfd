"""CLs for every signal patch of a likelihood: one task per patch, on the event-processing executors.

Each patch is a work item and :class:`CLsTask` its task, so a scan runs wherever a run does
(in-process, a LocalCluster, a scheduler, a federation of clusters) with the same progress bar,
failure reports and merge trees: a fit that fails is reported by patch name and the other
patches' results are kept. The computation is exactly ``pyhf cls``'s (:func:`workspace_cls`), so
a published result can be checked against the experiment's own numbers.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import pyhf
from threadpoolctl import threadpool_limits

from .executors import Executor, FileCallback, RunHooks
from .executors.local import LocalExecutor
from .fileset import WorkItem
from .likelihoods import Likelihood, SignalPatch
from .outputs import atomic_path, write_json
from .partial import Partial
from .report import FileReport

__all__ = ["CLS_LEVEL", "CLsRow", "CLsScan", "CLsTask", "scan_cls", "workspace_cls"]

#: CLs below this excludes a model at 95 % confidence
CLS_LEVEL = 0.05
#: the interpolation codes ``pyhf cls`` uses (and the HistFactory of the ATLAS publications)
_MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
_SIGMAS = ("-2", "-1", "0", "+1", "+2")


def workspace_cls(spec: dict[str, Any], test_poi: float = 1.0) -> dict[str, Any]:
    """Observed and expected (-2..+2 sigma) CLs of ``spec`` at POI = ``test_poi``, as ``pyhf cls`` computes them.

    NumPy backend, SciPy optimizer, the qtilde test statistic, asymptotic formulae: pyhf's
    defaults, set here explicitly because pyhf's backend is process-global and a worker may
    have run something else (``lumiflow fit`` uses MINUIT).

    BLAS runs single-threaded, as in a Dask worker (one task per core): the fits converge to
    about 1e-6, and a different BLAS thread count sums in another order and moves CLs by that
    much (measured: 1.7e-6 relative between 1 and 2 threads for ``pyhf cls`` itself). With one
    thread everywhere a scan gives the same bits in-process and on any cluster.
    """
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    workspace = pyhf.Workspace(spec)
    model = workspace.model(modifier_settings=_MODIFIER_SETTINGS)
    with threadpool_limits(limits=1, user_api="blas"):
        observed, expected = pyhf.infer.hypotest(
            test_poi, workspace.data(model), model, test_stat="qtilde", calctype="asymptotics", return_expected_set=True
        )
    return {"CLs_obs": float(observed), "CLs_exp": [float(x) for x in expected]}


@dataclass(frozen=True)
class CLsTask:
    """``task(item) -> Partial`` for a patch: item ``index`` is the patch's position in ``patches``.

    The patch is applied to the whole workspace (as ``pyhf.PatchSet.apply`` does), so a patch
    may also change observations or measurements.
    """

    background: dict[str, Any]
    patches: tuple[SignalPatch, ...]
    test_poi: float = 1.0

    def __call__(self, item: WorkItem) -> Partial:
        patch = self.patches[item.index]
        start = time.perf_counter()
        report = FileReport(index=item.index, path=patch.name, dataset=item.dataset)
        try:
            record = workspace_cls(jsonpatch.apply_patch(self.background, list(patch.operations)), self.test_poi)
        except Exception as exc:  # noqa: BLE001 - a patch that does not apply or fit is reported, the scan goes on
            report.status, report.error = "failed", f"{type(exc).__name__}: {exc}"
            record = None
        report.seconds = time.perf_counter() - start
        return Partial(files=[report], records={item.index: record} if record is not None else {})


@dataclass(frozen=True)
class CLsRow:
    """One patch's outcome: its CLs values, or why there are none."""

    patch: SignalPatch
    cls_observed: float | None
    cls_expected: tuple[float, ...] | None  # -2, -1, 0, +1, +2 sigma
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def excluded(self) -> bool:
        """Excluded at 95 % CL by the observed CLs."""
        return self.ok and self.cls_observed < CLS_LEVEL

    def to_dict(self, labels: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"patch": self.patch.name, "values": dict(zip(labels, self.patch.values, strict=False))}
        if self.ok:
            out.update(
                CLs_obs=self.cls_observed,
                CLs_exp=list(self.cls_expected or ()),
                excluded_observed=self.excluded,
                excluded_expected=bool(self.cls_expected[2] < CLS_LEVEL),
            )
        else:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class CLsScan:
    """The CLs of every patch of a likelihood, in patch order."""

    likelihood: str
    labels: tuple[str, ...]
    test_poi: float
    rows: tuple[CLsRow, ...]
    wall_seconds: float

    @property
    def failures(self) -> list[CLsRow]:
        return [r for r in self.rows if not r.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "likelihood": self.likelihood,
            "labels": list(self.labels),
            "test_poi": self.test_poi,
            "method": "pyhf hypotest: qtilde, asymptotics, numpy backend, scipy optimizer (as `pyhf cls`)",
            "wall_seconds": self.wall_seconds,
            "patches": [r.to_dict(self.labels) for r in self.rows],
        }

    def to_csv(self) -> str:
        """One line per patch: name, parameter values, observed and expected CLs, error."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["patch", *self.labels, "CLs_obs", *(f"CLs_exp_{s}" for s in _SIGMAS), "error"])
        for r in self.rows:
            values = list(r.patch.values[: len(self.labels)])
            cls = [r.cls_observed, *(r.cls_expected or [None] * 5)] if r.ok else [""] * 6
            writer.writerow([r.patch.name, *values, *cls, r.error or ""])
        return buffer.getvalue()

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """``cls.json`` and ``cls.csv`` in ``out_dir`` (each written atomically)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = {"json": out / "cls.json", "csv": out / "cls.csv"}
        write_json(written["json"], self.to_json())
        with atomic_path(written["csv"]) as tmp:
            tmp.write_text(self.to_csv())
        return written


def scan_cls(
    likelihood: Likelihood,
    executor: Executor | None = None,
    *,
    test_poi: float = 1.0,
    on_file: FileCallback | None = None,
) -> CLsScan:
    """CLs of each of ``likelihood``'s patches, one task per patch on ``executor`` (default: in-process).

    ``on_file`` sees each patch's report (``path`` is the patch name) as it finishes.
    """
    if not math.isfinite(test_poi) or test_poi < 0:
        raise ValueError(f"the tested POI value must be finite and >= 0, not {test_poi}")
    items = [WorkItem(index=i, dataset=likelihood.name, url=p.name) for i, p in enumerate(likelihood.patches)]
    task = CLsTask(likelihood.background, likelihood.patches, test_poi)
    hooks = RunHooks(on_file=on_file) if on_file is not None else RunHooks()
    start = time.perf_counter()
    partial = (executor or LocalExecutor()).run(items, task, hooks)
    wall = time.perf_counter() - start
    reports = {r.index: r for r in partial.files}
    if sorted(reports) != [item.index for item in items]:
        raise RuntimeError(f"executor returned {len(reports)} reports for {len(items)} patches")
    rows = []
    for i, patch in enumerate(likelihood.patches):
        record, report = partial.records.get(i), reports[i]
        if record is None:
            rows.append(CLsRow(patch, None, None, error=report.error or "no result", seconds=report.seconds))
        else:
            rows.append(CLsRow(patch, record["CLs_obs"], tuple(record["CLs_exp"]), seconds=report.seconds))
    return CLsScan(likelihood.name, likelihood.labels, test_poi, tuple(rows), wall)
