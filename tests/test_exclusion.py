"""Exclusion contours: the CLs = 0.05 line lands where a known CLs field crosses it."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from processor.cls import CLsRow, CLsScan
from processor.exclusion import ContourError, exclusion_lines, plane_axes, plot_exclusion
from processor.likelihoods import SignalPatch


def _cls(x: np.ndarray, crossing: float) -> np.ndarray:
    """CLs falling tenfold per two units of x, equal to 0.05 at ``crossing`` (log-linear, like real scans)."""
    return 0.05 * 10 ** (-(x - crossing) / 2)


def _scan(points: list[tuple[float, ...]], labels=("m_a", "m_b", "m_c")) -> CLsScan:
    rows = []
    for values in points:
        x = np.array(values[0])
        expected = tuple(float(_cls(x, c)) for c in (4.5, 5.5, 6.0, 6.5, 7.5))  # -2..+2 sigma
        rows.append(CLsRow(SignalPatch(f"m_{values}", values, ()), float(_cls(x, 5.0)), expected))
    return CLsScan("synthetic", labels, 1.0, tuple(rows), 0.0)


def _grid(fixed: float = 60.0) -> list[tuple[float, ...]]:
    return [(float(x), float(y), fixed) for x in range(0, 11) for y in range(0, 8)]


def test_contour_follows_the_crossing_of_a_known_field():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 10, 80), rng.uniform(0, 7, 80)  # scattered, as a real mass grid
    lines = exclusion_lines(x, y, _cls(x, 5.0))
    points = np.concatenate(lines)
    # log10(CLs) is linear in x, so linear interpolation on the triangles is exact: x = 5 everywhere
    np.testing.assert_allclose(points[:, 0], 5.0, atol=1e-9)
    assert points[:, 1].min() < 1.0 and points[:, 1].max() > 6.0  # across the whole scanned range
    assert exclusion_lines(x, y, _cls(x, 20.0)) == []  # nothing crosses: no line


def test_plot_draws_the_plane_of_the_two_varying_parameters(tmp_path):
    scan = _scan(_grid())
    assert plane_axes(scan) == (0, 1)  # m_c is the same for every point
    path = plot_exclusion(scan, tmp_path / "contour.png")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 400
    # the observed line is drawn in red and the band in yellow: both colours are on the image
    rgb = image[..., :3]
    red = (rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
    yellow = (rgb[..., 0] > 0.9) & (rgb[..., 1] > 0.8) & (rgb[..., 2] < 0.4)
    assert red.sum() > 100 and yellow.sum() > 1000


def test_a_scan_that_is_not_a_plane_is_refused_with_the_way_out():
    mixed = _scan(_grid(60.0) + [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0)])
    with pytest.raises(ContourError, match=r"vary in 3 parameters \(m_a, m_b, m_c\).*--patch 'name_\*_60'"):
        plane_axes(mixed)
    with pytest.raises(ContourError, match="parameter m_c also varies"):
        plane_axes(mixed, ["m_a", "m_b"])
    with pytest.raises(ContourError, match="at least 3 points not on one line"):
        plot_exclusion(_scan([(1.0, 0.0, 60.0), (2.0, 0.0, 60.0), (3.0, 0.0, 60.0)]), "never.png", ["m_a", "m_b"])
