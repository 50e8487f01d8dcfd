"""Large files are read and processed in cluster-aligned steps: bounded memory, same result."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import DIMUON

import processor
from processor.fileset import WorkItem
from processor.source import ColumnReader, open_columns
from processor.task import FileTask, TaskOptions

CLUSTER = 2000
CLUSTERS = 5
COLUMNS = ["nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"]


@pytest.fixture(scope="module")
def clustered_file(tmp_path_factory) -> Path:
    """A muon file written in five extends: five clusters of 2000 events (a basket per branch each)."""
    path = tmp_path_factory.mktemp("steps") / "clustered.root"
    rng = np.random.default_rng(7)
    with uproot.recreate(path) as f:
        tree = f.mktree(
            "Events",
            {
                "Muon_pt": "var * float32",
                "Muon_eta": "var * float32",
                "Muon_phi": "var * float32",
                "Muon_mass": "var * float32",
                "Muon_charge": "var * int32",
            },
            counter_name=lambda _: "nMuon",
        )
        for _ in range(CLUSTERS):
            counts = rng.poisson(2.0, CLUSTER)
            total = int(counts.sum())
            tree.extend(
                {
                    "Muon_pt": ak.unflatten(rng.exponential(30.0, total).astype(np.float32) + 3, counts),
                    "Muon_eta": ak.unflatten(rng.uniform(-2.4, 2.4, total).astype(np.float32), counts),
                    "Muon_phi": ak.unflatten(rng.uniform(-np.pi, np.pi, total).astype(np.float32), counts),
                    "Muon_mass": ak.unflatten(np.full(total, 0.10566, np.float32), counts),
                    "Muon_charge": ak.unflatten(rng.choice(np.array([-1, 1], np.int32), total), counts),
                }
            )
    return path


def _item(path: Path, start: int | None = None) -> WorkItem:
    return WorkItem(index=0, dataset="data", url=str(path), treename="Events", entry_start=start)


def _bytes_per_cluster(reader: ColumnReader) -> float:
    with uproot.open(reader.item.url) as f:
        tree = f["Events"]
        return sum(tree[c].uncompressed_bytes for c in COLUMNS) / CLUSTERS


def test_steps_cover_the_file_on_cluster_boundaries(clustered_file):
    with open_columns(_item(clustered_file), COLUMNS) as reader:
        per_cluster = _bytes_per_cluster(reader)
        assert reader.steps(None) == [(0, CLUSTER * CLUSTERS)]
        # two clusters fit in a step: 2 + 2 + 1
        assert reader.steps(2.5 * per_cluster) == [(0, 4000), (4000, 8000), (8000, 10000)]
        # a step smaller than one cluster still takes a whole cluster: no basket is read twice
        assert reader.steps(per_cluster / 10) == [(i * CLUSTER, (i + 1) * CLUSTER) for i in range(CLUSTERS)]
        assert reader.steps(100 * per_cluster) == [(0, 10000)]
    # resumed at a step boundary (after a transient error), the remaining steps are the same ones
    with open_columns(_item(clustered_file, start=4000), COLUMNS) as reader:
        assert reader.steps(2.5 * per_cluster) == [(4000, 8000), (8000, 10000)]


def _fileset(path: Path) -> processor.Fileset:
    return processor.parse_fileset({"data": {"files": {str(path): "Events"}, "metadata": {"is_data": True}}})


def _run(path: Path, step_bytes: float | None) -> processor.Result:
    options = TaskOptions(step_bytes=step_bytes)
    return processor.run(DIMUON, _fileset(path), write=False, options=options)


def test_stepped_run_equals_whole_file_run(clustered_file):
    whole = _run(clustered_file, None)
    stepped = _run(clustered_file, 1.0)  # one cluster per step: five steps
    assert stepped.events == whole.events == CLUSTER * CLUSTERS
    assert stepped.cutflow == whole.cutflow
    # data weights are 1: every sum is an integer, exact whichever way the file is cut
    h_whole, h_stepped = whole.hists["data"]["mass"], stepped.hists["data"]["mass"]
    assert np.array_equal(h_stepped.values(flow=True), h_whole.values(flow=True))
    assert h_whole.values(flow=True).sum() == whole.cutflow["data"]["opposite charge"]
    [report] = stepped.files
    assert report.ok and report.events == CLUSTER * CLUSTERS and report.attempts == 1


def test_transient_error_mid_file_resumes_at_the_failed_step(clustered_file, monkeypatch):
    """A connection dropped while reading the third step: the file is reopened there, and every
    event is counted once. (The fault is injected: a real server cannot be made to drop at a
    chosen step reliably; tests/test_remote.py covers real outages between files.)"""
    real_read = ColumnReader.read
    calls = []

    def flaky_read(self, start, stop):
        calls.append((start, stop))
        if (start, len(calls)) == (2 * CLUSTER, 3):
            raise ConnectionResetError("connection reset by peer")
        return real_read(self, start, stop)

    monkeypatch.setattr(ColumnReader, "read", flaky_read)
    infos = _fileset(clustered_file).infos(1000.0)
    task = FileTask(processor.load_analysis(DIMUON).ref(), infos, TaskOptions(step_bytes=1.0, backoff=0.01))
    partial = task(_item(clustered_file))
    [report] = partial.files
    assert report.ok, report.error
    assert report.attempts == 2
    assert calls == [(0, 2000), (2000, 4000), (4000, 6000), (4000, 6000), (6000, 8000), (8000, 10000)]
    assert report.events == CLUSTER * CLUSTERS
    assert partial.cutflow["data"]["all"] == CLUSTER * CLUSTERS
