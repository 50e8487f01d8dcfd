"""Shared fixtures: paths to the analyses and to ../shared/data, and small generated inputs."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from xrootd_server import configure_client_timeouts, xrootd_available

# Before any XRootD request in this process (and inherited by Dask workers through XRD_*):
# fail fast against a stopped test server and notice its restart (see xrootd_server.py).
configure_client_timeouts()

# Keep the tests' cache (shipped analyses, demo sets) out of the user's ~/.cache; Dask workers
# started by the tests inherit it.
if "LUMIFLOW_CACHE" not in os.environ:
    os.environ["LUMIFLOW_CACHE"] = tempfile.mkdtemp(prefix="lumiflow-test-cache-")
    atexit.register(shutil.rmtree, os.environ["LUMIFLOW_CACHE"], True)

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DIMUON = ROOT / "tests" / "analyses" / "dimuon.py"
HZZ4L = ROOT / "analyses" / "hzz4l.py"


def require_xrootd() -> None:
    """Skip when no XRootD server can run here, but fail under CI=true: CI must prove remote reads."""
    reason = xrootd_available()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires a working XRootD server: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (the shared CMS open-data test files)")
    return SHARED_DATA


def write_muon_file(path: Path, n_events: int, seed: int) -> None:
    """A small NanoAOD-like TTree of muons (uproot writes the nMuon counter as int32)."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, n_events).astype(np.uint32)
    total = int(counts.sum())

    def jag(values):
        return ak.unflatten(values, counts)

    with uproot.recreate(path, compression=uproot.ZSTD(1)) as f:
        branches = {
            "nMuon": np.uint32,
            "Muon_pt": "var * float32",
            "Muon_eta": "var * float32",
            "Muon_phi": "var * float32",
            "Muon_mass": "var * float32",
            "Muon_charge": "var * int32",
        }
        tree = f.mktree("Events", {k: v for k, v in branches.items() if k != "nMuon"}, counter_name=lambda _: "nMuon")
        tree.extend(
            {
                "Muon_pt": jag(rng.exponential(30.0, total).astype(np.float32) + 3),
                "Muon_eta": jag(rng.uniform(-2.4, 2.4, total).astype(np.float32)),
                "Muon_phi": jag(rng.uniform(-np.pi, np.pi, total).astype(np.float32)),
                "Muon_mass": jag(np.full(total, 0.10566, np.float32)),
                "Muon_charge": jag(rng.choice(np.array([-1, 1], np.int32), total)),
            }
        )


@pytest.fixture(scope="session")
def muon_fileset(tmp_path_factory) -> Path:
    """Twelve small files in three datasets (signal, background, data) and their fileset."""
    base = tmp_path_factory.mktemp("muons")
    fileset = {}
    datasets = {
        "sig": {"role": "signal", "xsec_pb": 2.0, "nevents_generated": 4000},
        "bkg": {"role": "background", "xsec_pb": 50.0, "nevents_generated": 4000, "kfactor": 1.1},
        "data": {"is_data": True},
    }
    for d, (name, meta) in enumerate(datasets.items()):
        files = {}
        for i in range(4):
            path = base / f"{name}_{i}.root"
            write_muon_file(path, 1000 + 37 * i, seed=100 * d + i)
            files[path.name] = "Events"
        fileset[name] = {"files": files, "metadata": meta}
    path = base / "fileset.json"
    path.write_text(json.dumps(fileset))
    return path


def result_bits(result):
    """Everything a user reads off a result, as bytes/ints, for exact comparison."""
    hists = {
        (d, n): (h.view(flow=True).value.tobytes(), h.view(flow=True).variance.tobytes())
        for d, hs in result.hists.items()
        for n, h in hs.items()
    }
    samples = {(n, s): h.view(flow=True).value.tobytes() for n, ss in result.samples.items() for s, h in ss.items()}
    files = [(r.index, r.path, r.status, r.events) for r in result.files]
    return hists, samples, result.cutflow, files


@pytest.fixture(scope="session")
def k8s(tmp_path_factory):
    """A real Kubernetes control plane (../shared/k8s), one per session: see tests/k8s_cluster.py."""
    from k8s_cluster import control_plane

    yield from control_plane(tmp_path_factory.mktemp("k8s"))
