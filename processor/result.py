"""The merged result of a run: histograms per dataset and per HistFactory sample, reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import hist

from .fileset import DatasetInfo
from .partial import ExactHist, Partial
from .report import FileReport

__all__ = ["Result"]


@dataclass
class Result:
    """``hists[dataset][name]`` and ``samples[name][sample]`` are float64 ``hist.Hist`` objects."""

    hists: dict[str, dict[str, hist.Hist]]
    samples: dict[str, dict[str, hist.Hist]]
    cutflow: dict[str, dict[str, int]]
    files: list[FileReport]
    wall_seconds: float
    infos: dict[str, DatasetInfo]
    outputs: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def from_partial(cls, partial: Partial, infos: dict[str, DatasetInfo], wall_seconds: float) -> Result:
        """Round the exact sums once; samples are summed exactly before rounding too."""
        per_sample: dict[str, dict[str, ExactHist]] = {}
        for dataset in sorted(partial.hists):
            sample = infos[dataset].sample
            for name, h in partial.hists[dataset].items():
                target = per_sample.setdefault(name, {})
                target[sample] = target[sample] + h if sample in target else h
        return cls(
            hists={d: {n: h.to_hist() for n, h in hs.items()} for d, hs in sorted(partial.hists.items())},
            samples={n: {s: h.to_hist() for s, h in sorted(hs.items())} for n, hs in per_sample.items()},
            cutflow={d: partial.cutflow[d] for d in sorted(partial.cutflow)},
            files=sorted(partial.files, key=lambda r: r.index),
            wall_seconds=wall_seconds,
            infos=infos,
        )

    @property
    def failures(self) -> list[FileReport]:
        return [r for r in self.files if not r.ok]

    @property
    def events(self) -> int:
        return sum(r.events for r in self.files if r.ok)

    def role_of(self, sample: str) -> str:
        """The role (signal, background, data) of the datasets that feed ``sample``."""
        roles = {i.role for i in self.infos.values() if i.sample == sample}
        if len(roles) != 1:
            raise ValueError(f"sample {sample!r} mixes roles {sorted(roles)}: fix the fileset's sample names")
        return roles.pop()
