"""The main job end to end: `lumiflow run analyses/hzz4l.py` on the demo data, then `lumiflow fit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyhf
import pytest
import uproot
from conftest import HZZ4L, ROOT

import processor
from processor.executors.dask import DaskExecutor
from processor.executors.local import LocalExecutor

CHANNELS = ("4mu", "4e", "2e2mu")


def _lumiflow(*args, cwd, env, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "processor.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lumiflow {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The README's main job, as a user runs it: no fileset, a real LocalCluster of 2 workers."""
    cwd = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, "LUMIFLOW_CACHE": str(cwd / "cache")}
    proc = _lumiflow("run", HZZ4L, "--workers", "2", "--no-progress", cwd=cwd, env=env)
    return cwd, env, proc


def test_default_run_writes_all_four_outputs(default_run):
    cwd, _, proc = default_run
    out = cwd / "lumiflow-output" / "hzz4l"
    assert sorted(p.name for p in out.iterdir()) == ["histograms.root", "m4l.png", "report.json", "workspace.json"]
    assert "32 files ok, 0 failed" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"files", "totals", "failures", "provenance"}
    assert set(report["files"][0]) >= {"path", "dataset", "events", "bytes_read", "seconds", "status", "error"}
    assert report["totals"]["files"] == 32 and report["failures"] == []
    assert report["totals"]["events"] == sum(f["events"] for f in report["files"]) > 0
    assert all(f["bytes_read"] > 0 for f in report["files"])
    assert set(report["provenance"]) >= {"lumiflow_version", "analysis_sha256", "fileset_sha256", "python", "packages"}
    assert report["provenance"]["analysis_sha256"] == processor.load_analysis(HZZ4L).source_sha256
    assert (out / "m4l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_workspace_validates_and_templates_match_histograms(default_run):
    cwd, _, _ = default_run
    out = cwd / "lumiflow-output" / "hzz4l"
    spec = json.loads((out / "workspace.json").read_text())
    workspace = pyhf.Workspace(spec)  # schema validation
    model = workspace.model()
    assert model.config.poi_name == "mu"
    assert [c["name"] for c in spec["channels"]] == list(CHANNELS)
    with uproot.open(out / "histograms.root") as f:
        for channel in spec["channels"]:
            for sample in channel["samples"]:
                h = f[f"{channel['name']}/{sample['name']}"]
                assert h.values().tolist() == sample["data"]
                assert np.sqrt(h.variances()).tolist() == next(
                    m["data"] for m in sample["modifiers"] if m["type"] == "staterror"
                )
            obs = next(o["data"] for o in spec["observations"] if o["name"] == channel["name"])
            assert f[f"{channel['name']}/data"].values().tolist() == obs
            # the ZZ template is the sum of the three ZZ datasets
            zz = sum(f[f"datasets/{d}/{channel['name']}"].values() for d in ("ZZTo4mu", "ZZTo4e", "ZZTo2e2mu"))
            np.testing.assert_allclose(f[f"{channel['name']}/ZZ"].values(), zz, rtol=1e-12)
        # data streams feed only their channels, as df103 does
        assert f["datasets/Run2012B_DoubleElectron/4mu"].values().sum() == 0
        assert f["datasets/Run2012B_DoubleMuParked/4e"].values().sum() == 0
        assert f["datasets/Run2012B_DoubleMuParked/4mu"].values().sum() > 0


def test_local_executor_gives_the_same_bits_as_the_dask_run(default_run, tmp_path):
    cwd, env, _ = default_run
    fileset = next((cwd / "cache").glob("demo-*/fileset.json"))
    processor.run(HZZ4L, fileset, executor=LocalExecutor(), output=tmp_path)
    dask_out = cwd / "lumiflow-output" / "hzz4l"
    assert (tmp_path / "workspace.json").read_text() == (dask_out / "workspace.json").read_text()
    with uproot.open(tmp_path / "histograms.root") as a, uproot.open(dask_out / "histograms.root") as b:
        keys = sorted(k for k, c in a.classnames().items() if c.startswith("TH1"))
        assert keys == sorted(k for k, c in b.classnames().items() if c.startswith("TH1"))
        for key in keys:
            assert a[key].values(flow=True).tobytes() == b[key].values(flow=True).tobytes(), key
            assert a[key].variances(flow=True).tobytes() == b[key].variances(flow=True).tobytes(), key


def test_analysis_file_absent_on_workers_is_shipped_with_its_numba_kernels(default_run, tmp_path):
    """Workers without the user's file run the shipped source, kernels compiled and cached there."""
    cwd, _, _ = default_run
    demo_dir = next((cwd / "cache").glob("demo-*"))
    spec = json.loads((demo_dir / "fileset.json").read_text())
    small = {d: spec[d] for d in ("SMHiggsToZZTo4L", "ZZTo4mu", "Run2012B_DoubleMuParked")}
    for body in small.values():
        body["files"] = {str(demo_dir / f): t for f, t in list(body["files"].items())[:1]}
    fileset = processor.parse_fileset(small)
    copy = tmp_path / "my_hzz4l.py"
    copy.write_text(HZZ4L.read_text())
    analysis = processor.load_analysis(copy)
    copy.unlink()
    shipped = processor.run(analysis, fileset, executor=DaskExecutor(workers=1), write=False)
    local = processor.run(HZZ4L, fileset, executor=LocalExecutor(), write=False)
    assert not shipped.failures
    for dataset, hists in local.hists.items():
        assert shipped.hists[dataset]["m4l"] == hists["m4l"]
    assert local.samples["m4l"]["signal"].sum().value > 0


def test_fit_prints_signal_strength_cls_and_significance(default_run):
    cwd, env, _ = default_run
    proc = _lumiflow("fit", cwd / "lumiflow-output" / "hzz4l", cwd=cwd, env=env)
    text = proc.stdout
    for expected in ("best-fit mu", "CLs observed (mu=1)", "CLs expected (mu=1)", "significance observed"):
        assert expected in text, text
    mu = float(text.split("best-fit mu")[1].split()[1].replace("│", ""))
    assert 0.2 < mu < 2.5  # pseudo-data are drawn from signal + background: mu near 1


def test_combined_channel_is_the_sum_of_the_final_states(default_run, tmp_path):
    cwd, env, _ = default_run
    _lumiflow(
        "run",
        HZZ4L,
        "--executor",
        "local",
        "--combine-channels",
        "--output",
        tmp_path,
        "--no-progress",
        cwd=cwd,
        env=env,
    )
    combined = json.loads((tmp_path / "workspace.json").read_text())
    split = json.loads((cwd / "lumiflow-output" / "hzz4l" / "workspace.json").read_text())
    assert [c["name"] for c in combined["channels"]] == ["m4l"]
    observed = np.sum([o["data"] for o in split["observations"]], axis=0)
    assert combined["observations"][0]["data"] == observed.tolist()
    for sample in combined["channels"][0]["samples"]:
        per_channel = [s["data"] for c in split["channels"] for s in c["samples"] if s["name"] == sample["name"]]
        np.testing.assert_allclose(sample["data"], np.sum(per_channel, axis=0), rtol=1e-12)
    pyhf.Workspace(combined).model()


def test_demo_peak_is_visible_at_125(default_run):
    cwd, _, _ = default_run
    with uproot.open(cwd / "lumiflow-output" / "hzz4l" / "histograms.root") as f:
        signal = sum(f[f"{c}/signal"].values() for c in CHANNELS)
        edges = f["4mu/signal"].axis().edges()
    peak = edges[np.argmax(signal)]
    assert 118 <= peak <= 128


def test_cli_reports_bad_input_with_exit_codes(default_run, tmp_path):
    cwd, env, _ = default_run
    missing = _lumiflow("run", tmp_path / "nope.py", cwd=cwd, env=env, check=False)
    assert missing.returncode == 2 and "analysis file not found" in missing.stderr
    bad_fileset = tmp_path / "bad.json"
    bad_fileset.write_text(json.dumps({"sig": {"files": ["x.root"], "metadata": {"role": "signal"}}}))
    proc = _lumiflow("run", HZZ4L, "--fileset", bad_fileset, "--executor", "local", cwd=cwd, env=env, check=False)
    assert proc.returncode == 2 and "dataset 'sig'" in proc.stderr and "xsec_pb" in proc.stderr
    fileset = json.loads(next((cwd / "cache").glob("demo-*/fileset.json")).read_text())
    base = next((cwd / "cache").glob("demo-*"))
    small = {"SMHiggsToZZTo4L": fileset["SMHiggsToZZTo4L"]}
    small["SMHiggsToZZTo4L"]["files"] = {
        str(base / "SMHiggsToZZTo4L_0.root"): "Events",
        str(tmp_path / "gone.root"): "Events",
    }
    (tmp_path / "partly.json").write_text(json.dumps(small))
    strict = _lumiflow(
        "run",
        HZZ4L,
        "--fileset",
        tmp_path / "partly.json",
        "--executor",
        "local",
        "--strict",
        "--output",
        tmp_path / "out",
        "--no-progress",
        cwd=cwd,
        env=env,
        check=False,
    )
    assert strict.returncode == 1, strict.stderr
    assert "gone.root" in strict.stderr and "FileNotFoundError" in strict.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["totals"]["files_ok"] == 1 and report["failures"][0]["path"] == str(tmp_path / "gone.root")


def test_dotted_module_name_loads_the_same_analysis():
    by_name = processor.load_analysis("analyses.hzz4l")
    by_path = processor.load_analysis(ROOT / "analyses" / "hzz4l.py")
    assert by_name.columns == by_path.columns and by_name.source_sha256 == by_path.source_sha256
