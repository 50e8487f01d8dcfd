"""Exact merging: any order and any tree shape give the same bits, equal to the exact sum."""

from __future__ import annotations

import math
import random

import hist
import numpy as np
import pytest

from processor.analysis import Output
from processor.partial import ExactArray, Partial, merge
from processor.report import FileReport


def _partial(index: int, rng: np.random.Generator) -> Partial:
    h = hist.Hist(hist.axis.Regular(5, 0, 1, name="x"), storage=hist.storage.Weight())
    # weights spanning many orders of magnitude make float sums order-dependent
    h.fill(rng.uniform(-0.1, 1.1, 50), weight=rng.choice([1e-9, 3.3e-4, 0.1, 7.0, 1e6], 50) * rng.uniform(0.5, 2, 50))
    report = FileReport(index=index, path=f"f{index}.root", dataset="d", events=50)
    return Partial.from_output("d", Output(hists={"x": h}, cutflow={"all": 50}), report)


def _tree_merge(partials: list[Partial], fan_in: int) -> Partial:
    while len(partials) > 1:
        partials = [merge(partials[i : i + fan_in]) for i in range(0, len(partials), fan_in)]
    return partials[0]


def test_merge_is_bit_identical_for_any_order_and_fan_in():
    rng = np.random.default_rng(7)
    parts = [_partial(i, rng) for i in range(40)]
    reference = merge(parts).hists["d"]["x"].to_hist().view(flow=True)
    for seed, fan_in in [(1, 2), (2, 3), (3, 8), (4, 40)]:
        shuffled = parts[:]
        random.Random(seed).shuffle(shuffled)
        got = _tree_merge(shuffled, fan_in).hists["d"]["x"].to_hist().view(flow=True)
        assert got.value.tobytes() == reference.value.tobytes()
        assert got.variance.tobytes() == reference.variance.tobytes()


def test_merged_sums_equal_the_correctly_rounded_exact_sum():
    rng = np.random.default_rng(11)
    parts = [_partial(i, rng) for i in range(25)]
    per_file = np.array([p.hists["d"]["x"].to_hist().view(flow=True).value for p in parts])
    merged = merge(parts).hists["d"]["x"].to_hist().view(flow=True).value
    exact = [math.fsum(per_file[:, b]) for b in range(per_file.shape[1])]  # independent exact sum
    assert merged.tolist() == exact
    # the property matters: naive float summation of these partials depends on the order
    naive = [sum(per_file[::step, b]) for step in (1, -1) for b in range(per_file.shape[1])]
    assert naive[: len(exact)] != naive[len(exact) :]


def test_exact_array_round_trips_extreme_values():
    values = np.array([0.0, -0.0, 5e-324, 1.7976931348623157e308, -2.5, 1 / 3])
    back = ExactArray.from_floats(values).to_floats()
    assert np.array_equal(back, values)


def test_exact_array_rejects_nan_weights():
    with pytest.raises(ValueError, match="non-finite"):
        ExactArray.from_floats(np.array([1.0, np.nan]))


def test_cutflows_add_and_files_are_never_counted_twice():
    rng = np.random.default_rng(3)
    a, b = _partial(0, rng), _partial(1, rng)
    merged = merge([a, b])
    assert merged.cutflow == {"d": {"all": 100}}
    assert sorted(r.index for r in merged.files) == [0, 1]
    with pytest.raises(ValueError, match="twice"):
        merged.add(_partial(1, rng))
