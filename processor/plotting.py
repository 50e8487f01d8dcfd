"""The stacked template plot: MC samples stacked, data points on top (mplhep, CMS style)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402

from .analysis import Templates  # noqa: E402
from .result import Result  # noqa: E402

__all__ = ["plot_templates"]


def plot_templates(result: Result, templates: Templates, path: str | os.PathLike[str], lumi_pb: float | None) -> None:
    """Stack backgrounds then signal, summed over channels, with data as points with sqrt(N) errors."""
    samples = result.samples[templates.histogram]
    summed = {s: (h[{templates.channel_axis: sum}] if templates.channel_axis else h) for s, h in samples.items()}
    order = sorted((s for s in summed if result.role_of(s) == "background")) + sorted(
        s for s in summed if result.role_of(s) == "signal"
    )
    data = [s for s in summed if result.role_of(s) == "data"]
    plt.style.use(mplhep.style.CMS)
    fig, ax = plt.subplots(figsize=(9, 8))
    if order:
        mplhep.histplot([summed[s] for s in order], stack=True, histtype="fill", label=order, ax=ax)
    if data:
        counts = sum(summed[s].values() for s in data)
        axis = summed[data[0]].axes[0]
        ax.errorbar(axis.centers, counts, yerr=np.sqrt(counts), fmt="ko", label="Data")
    ax.set_xlabel(summed[next(iter(summed))].axes[0].label or templates.histogram)
    ax.set_ylabel("Events / bin")
    ax.set_ylim(bottom=0)
    ax.legend()
    mplhep.cms.label("Open Data", data=bool(data), lumi=lumi_pb / 1000 if lumi_pb else None, com=8, ax=ax)
    fig.savefig(path, dpi=100)
    plt.close(fig)
