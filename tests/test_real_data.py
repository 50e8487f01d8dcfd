"""Real CMS open data from ../shared/data through the framework, checked against plain uproot."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import DIMUON

import processor
from processor.executors.local import LocalExecutor

FILES = {
    "nanoaod2015_ttree": "cms-opendata/nanoAOD_2015_CMS_Open_Data_ttbar.root",
    "doublemu2012_rntuple": "cms-opendata/Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root",
}


def _independent_dimuon(path):
    """Opposite-charge leading-pair masses with awkward only (no framework code)."""
    events = uproot.open(path)["Events"].arrays(["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"])
    two = events[ak.num(events.Muon_pt) >= 2]
    a, b = two[:, 0], two[:, 1]
    os_pairs = a.Muon_charge * b.Muon_charge < 0
    pt1, pt2 = a.Muon_pt[os_pairs], b.Muon_pt[os_pairs]
    eta1, eta2 = a.Muon_eta[os_pairs], b.Muon_eta[os_pairs]
    m1, m2 = a.Muon_mass[os_pairs], b.Muon_mass[os_pairs]
    dphi = a.Muon_phi[os_pairs] - b.Muon_phi[os_pairs]
    e1 = np.sqrt((pt1 * np.cosh(eta1)) ** 2 + m1**2)
    e2 = np.sqrt((pt2 * np.cosh(eta2)) ** 2 + m2**2)
    p1p2 = pt1 * pt2 * (np.cos(dphi) + np.sinh(eta1) * np.sinh(eta2))
    mass = np.sqrt(np.maximum(ak.to_numpy(m1**2 + m2**2 + 2 * (e1 * e2 - p1p2)).astype(np.float64), 0))
    return len(events), len(two), mass


@pytest.mark.parametrize("key", sorted(FILES))
def test_dimuon_through_framework_matches_plain_uproot(shared_data, tmp_path, key):
    path = shared_data / FILES[key]
    fileset = tmp_path / "fs.json"
    fileset.write_text(json.dumps({"d": {"files": {str(path): "Events"}, "metadata": {"is_data": True}}}))
    result = processor.run(DIMUON, fileset, executor=LocalExecutor(), write=False)
    assert not result.failures
    n_all, n_two, mass = _independent_dimuon(path)
    assert result.cutflow["d"] == {"all": n_all, ">=2 muons": n_two, "opposite charge": len(mass)}
    expected, _ = np.histogram(mass, bins=60, range=(0, 120))
    got = result.hists["d"]["mass"].values()
    assert got.tolist() == expected.tolist()
    assert result.files[0].bytes_read > 0 and result.files[0].events == n_all


def test_nanoaod_counters_are_uint32_and_handled(shared_data):
    tree = uproot.open(shared_data / FILES["nanoaod2015_ttree"])["Events"]
    assert tree["nMuon"].array(library="np").dtype == np.uint32
    item = processor.WorkItem(index=0, dataset="d", url=str(shared_data / FILES["nanoaod2015_ttree"]))
    from processor.source import read_columns

    read = read_columns(item, ["nMuon", "Muon_pt"])
    assert ak.all(read.events.nMuon == ak.num(read.events.Muon_pt))
    assert read.events.fields == ["nMuon", "Muon_pt"]  # only what was asked for


def test_rntuple_reads_only_requested_fields(shared_data):
    from processor.source import read_columns

    item = processor.WorkItem(index=0, dataset="d", url=str(shared_data / FILES["doublemu2012_rntuple"]))
    read = read_columns(item, ["nMuon", "Muon_pt"])
    assert read.events.fields == ["nMuon", "Muon_pt"] and len(read.events) == 1000
