"""The mergeable partial result of one or many files, merged exactly.

Floating-point addition is not associative: summing per-file histograms in a different order or
tree shape changes the last bits. Lumiflow promises bit-identical histograms whatever the
executor, worker count, fan-in or completion order, so partials hold bin sums as *exact* binary
fractions (integer mantissas with a common power-of-two exponent, Python ints, no overflow).
Integer addition is associative and commutative, and the single rounding back to float64
happens once, in :meth:`Partial.finalize` - so every merge order gives the same bits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import hist
import numpy as np

from .analysis import Output
from .report import FileReport

__all__ = ["ExactArray", "ExactHist", "Partial", "merge"]


@dataclass
class ExactArray:
    """``mantissas * 2**exponent`` elementwise, exactly; mantissas are Python ints."""

    mantissas: np.ndarray  # dtype=object
    exponent: int

    @classmethod
    def from_floats(cls, values: np.ndarray) -> ExactArray:
        flat = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(flat)):
            raise ValueError("histogram contains non-finite sums (NaN or inf weights)")
        ratios = [float(v).as_integer_ratio() for v in flat]
        # denominators are powers of two: value = n * 2**-(bits-1)
        exps = [1 - d.bit_length() for _, d in ratios]
        exponent = min(exps, default=0)
        mantissas = np.empty(len(flat), dtype=object)
        for i, ((n, _), e) in enumerate(zip(ratios, exps, strict=True)):
            mantissas[i] = n << (e - exponent)
        return cls(mantissas.reshape(np.shape(values)), exponent)

    def __add__(self, other: ExactArray) -> ExactArray:
        exponent = min(self.exponent, other.exponent)
        return ExactArray(
            (self.mantissas << (self.exponent - exponent)) + (other.mantissas << (other.exponent - exponent)),
            exponent,
        )

    def to_floats(self) -> np.ndarray:
        """Round once to float64 (Python's int/int division is correctly rounded)."""
        flat = self.mantissas.ravel()
        if self.exponent >= 0:
            out = [float(m << self.exponent) for m in flat]
        else:
            scale = 1 << -self.exponent
            out = [m / scale for m in flat]
        return np.array(out, dtype=np.float64).reshape(self.mantissas.shape)


@dataclass
class ExactHist:
    """A Weight-storage histogram whose sums (flow bins included) are held exactly."""

    axes: hist.Hist  # an empty histogram: the axes and storage, never filled
    sumw: ExactArray
    sumw2: ExactArray

    @classmethod
    def from_hist(cls, h: hist.Hist) -> ExactHist:
        if not isinstance(h.storage_type(), hist.storage.Weight):
            raise TypeError("analysis histograms must use hist.storage.Weight() (needed for MC stat errors)")
        view = h.view(flow=True)
        return cls(h.copy().reset(), ExactArray.from_floats(view.value), ExactArray.from_floats(view.variance))

    def __add__(self, other: ExactHist) -> ExactHist:
        if self.axes.axes != other.axes.axes:
            raise ValueError("cannot merge histograms with different axes")
        return ExactHist(self.axes, self.sumw + other.sumw, self.sumw2 + other.sumw2)

    def to_hist(self) -> hist.Hist:
        h = self.axes.copy()
        view = h.view(flow=True)
        view.value = self.sumw.to_floats()
        view.variance = self.sumw2.to_floats()
        return h


@dataclass
class Partial:
    """Histograms and cutflows per dataset, plus one report per file that contributed.

    A file appears in exactly one report; merging two partials that share a file is refused, so
    a retried or recomputed task can never be counted twice.

    ``records`` holds per-item results that are not sums, by work-item index: a likelihood
    fit's CLs values (:mod:`processor.cls`). They ride the same executors, failure reports and
    merge trees as histograms, and merging keeps each item's record once.
    """

    hists: dict[str, dict[str, ExactHist]] = field(default_factory=dict)
    cutflow: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[FileReport] = field(default_factory=list)
    records: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_output(cls, dataset: str, output: Output, report: FileReport | None = None) -> Partial:
        return cls(
            hists={dataset: {name: ExactHist.from_hist(h) for name, h in output.hists.items()}},
            cutflow={dataset: {step: int(n) for step, n in output.cutflow.items()}},
            files=[report] if report is not None else [],
        )

    def without_files(self) -> Partial:
        """The histograms and cutflows in new dicts, no reports: a live view's copy of a running sum.

        The histograms themselves are shared, which is safe because merging never modifies one.
        """
        return Partial(
            hists={dataset: dict(named) for dataset, named in self.hists.items()},
            cutflow={dataset: dict(steps) for dataset, steps in self.cutflow.items()},
        )

    def add(self, other: Partial) -> None:
        """Merge ``other`` into this partial, in place."""
        mine = {r.index for r in self.files}
        twice = [r.path for r in other.files if r.index in mine]
        if twice:
            raise ValueError(f"refusing to count files twice: {twice[:5]}")
        for dataset, hists in other.hists.items():
            target = self.hists.setdefault(dataset, {})
            for name, h in hists.items():
                target[name] = target[name] + h if name in target else h
        for dataset, steps in other.cutflow.items():
            target_flow = self.cutflow.setdefault(dataset, {})
            for step, n in steps.items():
                target_flow[step] = target_flow.get(step, 0) + n
        self.files.extend(other.files)
        self.records.update(other.records)


def merge(partials: Iterable[Partial]) -> Partial:
    """Merge partials into a new one; the result does not depend on their order."""
    out = Partial()
    for p in partials:
        out.add(p)
    return out
