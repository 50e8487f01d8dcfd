"""The stacked template plot: MC samples stacked, data points on top (mplhep, CMS style)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .cache import cache_root

# matplotlib keeps its font cache in the cache directory, not ~/.cache or ~/.config (read on import)
os.environ.setdefault("MPLCONFIGDIR", str(cache_root() / "matplotlib"))

import hist  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402

from .analysis import Templates  # noqa: E402
from .result import Result  # noqa: E402

__all__ = ["Stack", "plot_templates", "sample_label", "stack"]


@dataclass
class Stack:
    """The template histogram of each sample, summed over channels, in drawing order."""

    summed: dict[str, hist.Hist]
    order: list[str]  # the MC samples, bottom to top: backgrounds, then signal
    data: list[str]  # the data samples (drawn as one set of points)


def stack(result: Result, templates: Templates) -> Stack:
    """What the plot (and the live dashboards) draw: backgrounds stacked under the signal, and data."""
    samples = result.samples[templates.histogram]
    summed = {s: (h[{templates.channel_axis: sum}] if templates.channel_axis else h) for s, h in samples.items()}
    order = sorted(s for s in summed if result.role_of(s) == "background") + sorted(
        s for s in summed if result.role_of(s) == "signal"
    )
    return Stack(summed, order, [s for s in summed if result.role_of(s) == "data"])


def plot_templates(
    result: Result, templates: Templates, path: str | os.PathLike[str], title: str, lumi_pb: float | None
) -> None:
    """Stack backgrounds then signal, summed over channels, with data as points with sqrt(N) errors."""
    layout = stack(result, templates)
    summed, order, data = layout.summed, layout.order, layout.data
    plt.style.use(mplhep.style.CMS)
    fig, ax = plt.subplots(figsize=(9, 8))
    if order:
        labels = [sample_label(result, s) for s in order]
        mplhep.histplot([summed[s] for s in order], stack=True, histtype="fill", label=labels, ax=ax)
    if data:
        counts = sum(summed[s].values() for s in data)
        axis = summed[data[0]].axes[0]
        ax.errorbar(axis.centers, counts, yerr=np.sqrt(counts), fmt="ko", label="Data")
    ax.set_xlabel(summed[next(iter(summed))].axes[0].label or templates.histogram)
    ax.set_ylabel("Events / bin")
    ax.set_ylim(bottom=0)
    ax.legend()
    rlabel = f"{lumi_pb / 1000:.2f} fb$^{{-1}}$" if lumi_pb else ""
    mplhep.label.exp_label(exp="Lumiflow", text=title, data=bool(data), rlabel=rlabel, ax=ax)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sample_label(result: Result, sample: str) -> str:
    """The fileset's label of the sample's datasets, else the sample name."""
    labels = sorted({i.label for i in result.infos.values() if i.sample == sample and i.label})
    return labels[0] if len(labels) == 1 else sample
