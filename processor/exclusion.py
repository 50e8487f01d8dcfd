"""Exclusion contours of a CLs scan over two model parameters (e.g. the two masses of a SUSY grid).

The scan's points are scattered, not on a grid, so CLs is interpolated linearly on their
Delaunay triangulation, in log10(CLs): CLs falls roughly exponentially with the signal yield,
so its logarithm is close to linear between points and the 0.05 crossing lands where a
finer scan would put it. The +-1 sigma band is where the interpolated -1 sigma expected CLs is
below 0.05 and the +1 sigma one above.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# matplotlib is set up (Agg, its config in Lumiflow's cache) by processor.plotting, which the
# package's __init__ imports before any of its modules
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.tri import LinearTriInterpolator, Triangulation

from .cls import CLS_LEVEL, CLsScan
from .outputs import atomic_path

__all__ = ["ContourError", "exclusion_lines", "plot_exclusion", "plane_axes"]


class ContourError(ValueError):
    """The scan cannot be drawn as a contour: wrong number of varying parameters, too few points."""


def plane_axes(scan: CLsScan, axes: Sequence[str] | None = None) -> tuple[int, int]:
    """The indices of the two parameters to draw: ``axes`` (labels), or the only two that vary."""
    labels = list(scan.labels)
    if not labels:
        raise ContourError("the patches carry no common parameter values (names without numbers?)")
    if axes:
        if len(axes) != 2 or any(a not in labels for a in axes):
            raise ContourError(f"--axes takes two of the parameter labels {', '.join(labels)}")
        chosen = (labels.index(axes[0]), labels.index(axes[1]))
    else:
        chosen = tuple(i for i in range(len(labels)) if len({r.patch.values[i] for r in scan.rows}) > 1)
        if len(chosen) != 2:
            raise ContourError(
                f"the patches vary in {len(chosen)} parameters ({', '.join(labels[i] for i in chosen) or 'none'}), "
                "a contour needs two: select patches (--patch 'name_*_60') or name the axes (--axes)"
            )
    for i in chosen:
        if any(isinstance(r.patch.values[i], str) for r in scan.rows):
            raise ContourError(f"parameter {labels[i]} has names, not numbers: it cannot be an axis")
    others = [i for i in range(len(labels)) if i not in chosen]
    for i in others:
        if len({r.patch.values[i] for r in scan.rows}) > 1:
            raise ContourError(
                f"parameter {labels[i]} also varies among the selected patches: select those with one value of it"
            )
    return chosen  # type: ignore[return-value]


def exclusion_lines(x: np.ndarray, y: np.ndarray, cls: np.ndarray, level: float = CLS_LEVEL) -> list[np.ndarray]:
    """The polylines (each an (n, 2) array of x, y) where the interpolated ``cls`` crosses ``level``."""
    triangulation = _triangulation(x, y)
    figure = plt.figure()
    try:
        contour = figure.subplots().tricontour(triangulation, _log(cls), levels=[np.log10(level)])
        return [np.asarray(p) for path in contour.get_paths() for p in path.to_polygons(closed_only=False)]
    finally:
        plt.close(figure)


def plot_exclusion(scan: CLsScan, path: str | Path, axes: Sequence[str] | None = None) -> Path:
    """Draw the observed and expected exclusion (with its +-1 sigma band) to ``path`` (PNG, PDF, ...)."""
    ix, iy = plane_axes(scan, axes)
    rows = [r for r in scan.rows if r.ok]
    x = np.array([r.patch.values[ix] for r in rows])
    y = np.array([r.patch.values[iy] for r in rows])
    triangulation = _triangulation(x, y)
    expected = np.array([r.cls_expected for r in rows])
    observed = np.array([r.cls_observed for r in rows])
    cut = np.log10(CLS_LEVEL)
    figure, ax = plt.subplots(figsize=(7, 5.5))
    gx, gy, inside = _band(triangulation, _log(expected[:, 1]) - cut, _log(expected[:, 3]) - cut)
    if inside.any():
        ax.contourf(gx, gy, inside.astype(float), levels=[0.5, 1.5], colors=["#ffd84d"])
    for line in exclusion_lines(x, y, expected[:, 2]):
        ax.plot(line[:, 0], line[:, 1], color="k", ls="--")
    for line in exclusion_lines(x, y, observed):
        ax.plot(line[:, 0], line[:, 1], color="#c0392b", lw=2.5)
    excluded = observed < CLS_LEVEL
    ax.scatter(x[~excluded], y[~excluded], s=12, c="0.6", marker="o", zorder=3)
    ax.scatter(x[excluded], y[excluded], s=12, c="#c0392b", marker="o", zorder=3)
    handles = [
        Line2D([], [], color="#c0392b", lw=2.5, label="observed (CLs = 0.05)"),
        Line2D([], [], color="k", ls="--", label="expected"),
        Rectangle((0, 0), 1, 1, color="#ffd84d", label=r"expected $\pm1\sigma$"),
        Line2D([], [], color="#c0392b", marker="o", ls="", ms=4, label="excluded (observed)"),
        Line2D([], [], color="0.6", marker="o", ls="", ms=4, label="not excluded"),
    ]
    ax.legend(handles=handles, loc="best", fontsize=9, frameon=False)
    ax.set_xlabel(scan.labels[ix])
    ax.set_ylabel(scan.labels[iy])
    ax.set_title(f"{scan.likelihood}: 95% CL exclusion ({len(rows)} models)", fontsize=11)
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            figure.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return out


def _band(triangulation: Triangulation, minus: np.ndarray, plus: np.ndarray, points: int = 400):
    """Where the -1 sigma expected CLs excludes and the +1 sigma one does not, on a fine grid.

    Both are interpolated on the triangles first: a product or minimum of the two fields
    interpolated on its own would put the band's edges between the points, not on the curves.
    """
    x, y = triangulation.x, triangulation.y
    gx, gy = np.meshgrid(np.linspace(x.min(), x.max(), points), np.linspace(y.min(), y.max(), points))
    below = LinearTriInterpolator(triangulation, minus)(gx, gy)
    above = LinearTriInterpolator(triangulation, plus)(gx, gy)
    inside = np.ma.filled((below < 0) & (above > 0), False)  # outside the points' hull: not drawn
    return gx, gy, inside


def _log(cls: np.ndarray) -> np.ndarray:
    return np.log10(np.clip(np.asarray(cls, dtype=float), 1e-300, None))


def _triangulation(x: np.ndarray, y: np.ndarray) -> Triangulation:
    points = np.unique(np.column_stack([x, y]), axis=0)
    if len(points) < 3 or np.linalg.matrix_rank(points - points[0]) < 2:
        raise ContourError(f"a contour needs at least 3 points not on one line; the scan has {len(points)}")
    if len(points) != len(x):
        raise ContourError("several patches share the same point in this plane: select one per point")
    return Triangulation(x, y)
