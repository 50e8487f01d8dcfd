"""The embedded demo data: reproducible, NanoAOD-shaped, physically sensible, correctly weighted.

Physics checks recompute everything from the stored branches with plain numpy, independently of
the generator's code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from processor import demo, load_fileset

EVENTS = 2000
SEED = 7
LUMI_PB = 11580.0
MZ = 91.1876

MUON_FIELDS = ["pt", "eta", "phi", "mass", "charge", "pfRelIso04_all", "dxy", "dxyErr", "dz", "dzErr"]
ELECTRON_FIELDS = ["pt", "eta", "phi", "mass", "charge", "pfRelIso03_all", "dxy", "dxyErr", "dz", "dzErr"]
BRANCHES = (
    ["run", "luminosityBlock", "event", "nMuon"]
    + [f"Muon_{f}" for f in MUON_FIELDS]
    + ["nElectron"]
    + [f"Electron_{f}" for f in ELECTRON_FIELDS]
)
MC = {  # name: (xsec_pb, kfactor)
    "SMHiggsToZZTo4L": (0.0065, 1.0),
    "ZZTo4mu": (0.077, 1.386),
    "ZZTo4e": (0.077, 1.386),
    "ZZTo2e2mu": (0.18, 1.386),
}
DATA = {
    "Run2012B_DoubleMuParked": ["4mu", "2e2mu"],
    "Run2012C_DoubleMuParked": ["4mu", "2e2mu"],
    "Run2012B_DoubleElectron": ["4e"],
    "Run2012C_DoubleElectron": ["4e"],
}


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory) -> Path:
    return demo.generate(tmp_path_factory.mktemp("demo"), events=EVENTS, files_per_dataset=2, seed=SEED)


def _files(fileset_json: Path, dataset: str) -> list[str]:
    return [url for url, _ in load_fileset(fileset_json).datasets[dataset].files]


def _read(path: str) -> dict[str, ak.Array]:
    tree = uproot.open(path)["Events"]
    return {name: tree[name].array() for name in BRANCHES}


def _collection(arrays: dict[str, ak.Array], name: str, fields: list[str]) -> ak.Array:
    return ak.zip({f: arrays[f"{name}_{f}"] for f in fields})


# --- plain-numpy kinematics, independent of processor.demo ---------------------------------


def _p4(lep) -> np.ndarray:
    pt, eta, phi, m = (np.asarray(lep[k], dtype=np.float64) for k in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([np.sqrt(px**2 + py**2 + pz**2 + m**2), px, py, pz], axis=-1)


def _mass(p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(p[..., 0] ** 2 - np.sum(p[..., 1:] ** 2, axis=-1), 0.0))


def _good(lep, iso: str, pt_min: float, eta_max: float):
    sip3d = np.hypot(lep.dxy, lep.dz) / np.hypot(lep.dxyErr, lep.dzErr)
    return (lep.pt > pt_min) & (abs(lep.eta) < eta_max) & (lep[iso] < 0.35) & (sip3d < 4)


# --- reproducibility ---------------------------------------------------------------------------


def _contents(fileset_json: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for name in list(MC) + list(DATA):
        for url in _files(fileset_json, name):
            arrays = _read(url)
            out[Path(url).name] = {k: ak.to_numpy(ak.flatten(v) if v.ndim > 1 else v) for k, v in arrays.items()}
    return out


def test_same_seed_same_contents_other_seed_different(demo_set, tmp_path):
    again = demo.generate(tmp_path / "again", events=EVENTS, files_per_dataset=2, seed=SEED)
    other = demo.generate(tmp_path / "other", events=EVENTS, files_per_dataset=2, seed=SEED + 1)
    a, b, c = _contents(demo_set), _contents(again), _contents(other)
    assert a.keys() == b.keys() == c.keys()
    for name in a:
        for branch in BRANCHES:
            np.testing.assert_array_equal(a[name][branch], b[name][branch], err_msg=f"{name}:{branch}")
    assert json.loads(demo_set.read_text()) == json.loads(again.read_text())
    # a different seed changes the physics, file by file
    for name in a:
        assert not np.array_equal(a[name]["Muon_pt"], c[name]["Muon_pt"]) or not np.array_equal(
            a[name]["Electron_pt"], c[name]["Electron_pt"]
        ), name


# --- schema -------------------------------------------------------------------------------------


def test_files_are_nanoaod_like_ttrees(demo_set):
    for name in list(MC) + list(DATA):
        for url in _files(demo_set, name):
            with uproot.open(url) as f:
                assert f.classnames() == {"Events;1": "TTree"}, url
                assert isinstance(f.file.compression, uproot.ZSTD)
                tree = f["Events"]
                assert tree.keys() == BRANCHES
                assert tree.num_entries > 0
                arrays = {k: tree[k].array() for k in BRANCHES}
            assert ak.to_numpy(arrays["run"]).dtype == np.uint32
            assert ak.to_numpy(arrays["luminosityBlock"]).dtype == np.uint32
            assert ak.to_numpy(arrays["event"]).dtype == np.uint64
            for coll, fields in (("Muon", MUON_FIELDS), ("Electron", ELECTRON_FIELDS)):
                counter = ak.to_numpy(arrays[f"n{coll}"])
                # NanoAOD writes UInt_t; uproot can only write Int_t counters (see demo.py)
                assert counter.dtype.kind in "iu" and counter.dtype.itemsize == 4
                for field in fields:
                    values = arrays[f"{coll}_{field}"]
                    np.testing.assert_array_equal(ak.num(values), counter, err_msg=f"{url}:{coll}_{field}")
                    expected = np.int32 if field == "charge" else np.float32
                    assert ak.to_numpy(ak.flatten(values)).dtype == expected, f"{coll}_{field}"
                pt = arrays[f"{coll}_pt"]
                assert ak.all(pt[:, 1:] <= pt[:, :-1]), f"{url}: {coll} not pT-ordered"
                assert ak.all(abs(ak.flatten(arrays[f"{coll}_charge"])) == 1)
                assert ak.all(abs(ak.flatten(arrays[f"{coll}_eta"])) < 3.1)
                mass = 0.10566 if coll == "Muon" else 0.000511
                np.testing.assert_allclose(ak.to_numpy(ak.flatten(arrays[f"{coll}_mass"])), mass, rtol=1e-3)


def test_other_compressions(tmp_path):
    path = demo.generate(tmp_path, events=40, files_per_dataset=1, compression="lz4")
    url = _files(path, "ZZTo4e")[0]
    assert isinstance(uproot.open(url).file.compression, uproot.LZ4)
    with pytest.raises(ValueError, match="compression"):
        demo.generate(tmp_path / "x", events=40, compression="snappy")


def test_write_events_file_one_file_in_baskets_same_arrays_any_compression(tmp_path):
    """Benchmarks' single large files: all events in one tree, a basket per chunk, codec-independent."""
    arrays = {}
    for compression in ("ZSTD", "LZ4"):
        path = demo.write_events_file(
            tmp_path / f"{compression}.root", 250, compression=compression, events_per_basket=100
        )
        with uproot.open(path) as f:
            tree = f["Events"]
            assert tree.num_entries == 250
            assert tree["Muon_pt"].num_baskets == 3
            assert isinstance(f.file.compression, getattr(uproot, compression))
            arrays[compression] = tree.arrays(BRANCHES)
    np.testing.assert_array_equal(ak.to_numpy(arrays["ZSTD"]["event"]), np.arange(1, 251))
    assert ak.all(ak.num(arrays["ZSTD"]["Muon_pt"]) == arrays["ZSTD"]["nMuon"])
    assert ak.array_equal(arrays["ZSTD"], arrays["LZ4"])
    with pytest.raises(ValueError, match="compression"):
        demo.write_events_file(tmp_path / "x.root", 10, compression="snappy")


# --- physics ------------------------------------------------------------------------------------


def test_signal_four_lepton_mass_peaks_at_125(demo_set):
    m4l = []
    for url in _files(demo_set, "SMHiggsToZZTo4L"):
        arrays = _read(url)
        mu = _collection(arrays, "Muon", MUON_FIELDS)
        el = _collection(arrays, "Electron", ELECTRON_FIELDS)
        prompt = ak.all(
            (mu.pfRelIso04_all < 0.35) & (np.hypot(mu.dxy, mu.dz) / np.hypot(mu.dxyErr, mu.dzErr) < 4), axis=1
        )
        prompt = prompt & ak.all(
            (el.pfRelIso03_all < 0.35) & (np.hypot(el.dxy, el.dz) / np.hypot(el.dxyErr, el.dzErr) < 4), axis=1
        )
        sel = (ak.num(mu) == 2) & (ak.num(el) == 2) & prompt
        leptons = ak.concatenate([mu[sel][["pt", "eta", "phi", "mass"]], el[sel][["pt", "eta", "phi", "mass"]]], axis=1)
        p = _p4({k: ak.to_numpy(leptons[k]) for k in ("pt", "eta", "phi", "mass")})  # (n, 4, 4)
        m4l.append(_mass(p.sum(axis=1)))
    m4l = np.concatenate(m4l)
    assert len(m4l) > 100
    assert 120.0 < np.median(m4l) < 130.0
    assert np.mean(abs(m4l - 125.0) < 5.0) > 0.7  # a narrow peak, not a broad bump


def test_zz_has_on_shell_z_pairs(demo_set):
    pair_masses = []
    for url in _files(demo_set, "ZZTo4mu"):
        arrays = _read(url)
        assert ak.sum(arrays["nElectron"]) < 0.2 * ak.sum(arrays["nMuon"])  # a 4mu sample
        mu = _collection(arrays, "Muon", MUON_FIELDS)
        pairs = ak.combinations(mu, 2, fields=["a", "b"])
        pairs = ak.flatten(pairs[pairs.a.charge != pairs.b.charge])
        p = _p4({k: ak.to_numpy(pairs.a[k]) for k in ("pt", "eta", "phi", "mass")}) + _p4(
            {k: ak.to_numpy(pairs.b[k]) for k in ("pt", "eta", "phi", "mass")}
        )
        pair_masses.append(_mass(p))
    m = np.concatenate(pair_masses)
    assert len(m) > 1000
    near_z = np.mean(abs(m - MZ) < 10.0)
    assert near_z > 0.3, near_z
    # and a real resonance: much denser at the Z than in a side band of equal width
    assert near_z > 5 * np.mean(abs(m - 130.0) < 10.0)


def _count_4l(url: str, channels: list[str]) -> int:
    """Events with exactly four good leptons of a channel, opposite charges summing to zero."""
    arrays = _read(url)
    mu = _collection(arrays, "Muon", MUON_FIELDS)
    el = _collection(arrays, "Electron", ELECTRON_FIELDS)
    mu = mu[_good(mu, "pfRelIso04_all", 5.0, 2.4)]
    el = el[_good(el, "pfRelIso03_all", 7.0, 2.5)]
    nm, ne = ak.num(mu), ak.num(el)
    neutral = (ak.sum(mu.charge, axis=1) == 0) & (ak.sum(el.charge, axis=1) == 0)
    sel = {"4mu": (nm == 4) & (ne == 0), "4e": (nm == 0) & (ne == 4), "2e2mu": (nm == 2) & (ne == 2)}
    return int(ak.sum(neutral & np.logical_or.reduce([sel[c] for c in channels])))


def test_pseudo_data_match_the_prediction(demo_set):
    """Data are signal + background at 11580/pb: counts agree with the weighted MC per stream."""
    infos = load_fileset(demo_set).infos(LUMI_PB)
    for channels in (["4mu", "2e2mu"], ["4e"]):
        observed = sum(_count_4l(u, channels) for n, c in DATA.items() if c == channels for u in _files(demo_set, n))
        expected = variance = 0.0
        for name in MC:
            n = sum(_count_4l(u, channels) for u in _files(demo_set, name))
            expected += n * infos[name].weight
            variance += n * infos[name].weight ** 2
        assert expected > 100
        sigma = np.sqrt(expected + variance)
        assert abs(observed - expected) < 5 * sigma, (channels, observed, expected)


# --- fileset ------------------------------------------------------------------------------------


def test_fileset_loads_and_weights_mc(demo_set):
    raw = json.loads(demo_set.read_text())
    for body in raw.values():  # relative paths: the set can be moved or shared
        assert all(not os.path.isabs(url) for url in body["files"])
    fileset = load_fileset(demo_set)
    assert set(fileset.datasets) == set(MC) | set(DATA)
    infos = fileset.infos(LUMI_PB)
    for ds in fileset.datasets.values():
        assert len(ds.files) == 2
        for url, tree in ds.files:
            assert Path(url).is_file() and tree == "Events"
    for name, (xsec, kfactor) in MC.items():
        ds = fileset.datasets[name]
        assert ds.metadata["nevents_generated"] == EVENTS
        # every generated event is written: the weight normalisation counts what the files hold
        assert sum(uproot.open(url)["Events"].num_entries for url, _ in ds.files) == EVENTS
        assert not infos[name].is_data
        assert infos[name].weight == pytest.approx(xsec * LUMI_PB * kfactor / EVENTS, rel=1e-12)
    assert infos["SMHiggsToZZTo4L"].role == "signal"
    assert {infos[n].sample for n in ("ZZTo4mu", "ZZTo4e", "ZZTo2e2mu")} == {"ZZ"}
    for name, channels in DATA.items():
        assert infos[name].is_data and infos[name].weight == 1.0
        assert infos[name].channels == tuple(channels)


# --- cache --------------------------------------------------------------------------------------


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LUMIFLOW_CACHE", str(tmp_path / "lf"))
    assert demo.default_cache_dir() == tmp_path / "lf" / f"demo-v{demo.GENERATOR_VERSION}-{demo.DEFAULT_EVENTS}-12345"
    monkeypatch.delenv("LUMIFLOW_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo.default_cache_dir(100, 3) == tmp_path / "xdg" / "lumiflow" / f"demo-v{demo.GENERATOR_VERSION}-100-3"


def test_ensure_demo_fileset_generates_once_and_reuses(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LUMIFLOW_CACHE", str(tmp_path))
    path = demo.ensure_demo_fileset(events=200, seed=3)
    assert path == demo.default_cache_dir(200, 3) / "fileset.json"
    assert len(load_fileset(path)) == 32
    mtimes = {p: p.stat().st_mtime_ns for p in path.parent.iterdir()}

    def no_regeneration(*args, **kwargs):
        raise AssertionError("regenerated an existing demo set")

    monkeypatch.setattr(demo, "generate", no_regeneration)
    assert demo.ensure_demo_fileset(events=200, seed=3) == path
    assert {p: p.stat().st_mtime_ns for p in path.parent.iterdir()} == mtimes
    assert [p.name for p in tmp_path.iterdir()] == [path.parent.name]  # no temporary leftovers
    assert capsys.readouterr() == ("", "")


def test_ensure_demo_fileset_failure_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("LUMIFLOW_CACHE", str(tmp_path))

    def crash(out_dir, **kwargs):
        (Path(out_dir) / "SMHiggsToZZTo4L_0.root").write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "generate", crash)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_fileset(events=200, seed=3)
    assert list(tmp_path.iterdir()) == []


def test_ensure_demo_fileset_concurrent_winner_is_used(monkeypatch, tmp_path):
    """If another process finishes first, its complete set is used and ours is discarded."""
    monkeypatch.setenv("LUMIFLOW_CACHE", str(tmp_path))
    final = demo.default_cache_dir(200, 3)

    def race(out_dir, **kwargs):
        (Path(out_dir) / "fileset.json").write_text('{"mine": {}}')
        final.mkdir()
        (final / "fileset.json").write_text('{"winner": {}}')
        return Path(out_dir) / "fileset.json"

    monkeypatch.setattr(demo, "generate", race)
    path = demo.ensure_demo_fileset(events=200, seed=3)
    assert path == final / "fileset.json"
    assert json.loads(path.read_text()) == {"winner": {}}
    assert [p.name for p in tmp_path.iterdir()] == [final.name]
