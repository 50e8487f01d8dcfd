"""Local and Dask executors: same bits whatever the executor, worker count, fan-in; bad files reported."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import DIMUON, result_bits
from distributed import LocalCluster

import processor
from processor.executors.dask import DaskExecutor
from processor.executors.local import LocalExecutor


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_dask_is_bit_identical_to_local_for_any_fan_in(muon_fileset, cluster):
    local = processor.run(DIMUON, muon_fileset, executor=LocalExecutor(), write=False)
    assert local.events == sum(1000 + 37 * i for i in range(4)) * 3
    assert not local.failures
    for fan_in in (2, 3, 8):
        seen = []
        dask = processor.run(
            DIMUON,
            muon_fileset,
            executor=DaskExecutor(scheduler=cluster.scheduler_address, fan_in=fan_in),
            write=False,
            on_file=seen.append,
        )
        assert result_bits(dask) == result_bits(local)
        assert len(seen) == 12  # every file announced once to the progress callback


def test_fresh_local_cluster_with_one_worker(muon_fileset):
    one = processor.run(DIMUON, muon_fileset, executor=DaskExecutor(workers=1), write=False)
    local = processor.run(DIMUON, muon_fileset, executor=LocalExecutor(), write=False)
    assert result_bits(one) == result_bits(local)


def _fileset_with_bad_files(muon_fileset, tmp_path):
    spec = json.loads(muon_fileset.read_text())
    for _name, body in spec.items():
        body["files"] = {str(muon_fileset.parent / f): t for f, t in body["files"].items()}
    (tmp_path / "not_root.root").write_text("this is not a ROOT file\n" * 20)
    spec["bkg"]["files"][str(tmp_path / "missing.root")] = "Events"
    spec["data"]["files"][str(tmp_path / "not_root.root")] = "Events"
    shutil.copy(muon_fileset.parent / "sig_0.root", tmp_path / "sig_copy.root")
    spec["sig"]["files"][str(tmp_path / "sig_copy.root")] = "NoSuchTree"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    return path


def test_bad_files_are_reported_and_good_files_kept(muon_fileset, cluster, tmp_path):
    bad = _fileset_with_bad_files(muon_fileset, tmp_path)
    result = processor.run(
        DIMUON, bad, executor=DaskExecutor(scheduler=cluster.scheduler_address), output=tmp_path / "out"
    )
    failures = {r.path: (r.dataset, r.error) for r in result.failures}
    assert failures[str(tmp_path / "missing.root")][0] == "bkg"
    assert failures[str(tmp_path / "missing.root")][1].startswith("FileNotFoundError")
    assert "not a ROOT file" in failures[str(tmp_path / "not_root.root")][1]
    # the same file under a wrong tree name fails on its own, naming the tree
    wrong_tree = [r for r in result.failures if r.dataset == "sig"]
    assert len(wrong_tree) == 1 and "no tree 'NoSuchTree'" in wrong_tree[0].error and "Events" in wrong_tree[0].error
    clean = processor.run(DIMUON, muon_fileset, executor=LocalExecutor(), write=False)
    assert result.hists["data"]["mass"] == clean.hists["data"]["mass"]
    assert result.events == clean.events
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["totals"]["files_failed"] == 3 and len(report["failures"]) == 3
    assert {f["path"] for f in report["failures"]} == {r.path for r in result.failures}


def test_strict_fails_after_writing_what_succeeded(muon_fileset, tmp_path):
    bad = _fileset_with_bad_files(muon_fileset, tmp_path)
    with pytest.raises(processor.RunFailed, match="3 file\\(s\\) failed") as info:
        processor.run(DIMUON, bad, executor=LocalExecutor(), output=tmp_path / "out", strict=True)
    assert info.value.result.events > 0
    assert (tmp_path / "out" / "report.json").exists() and (tmp_path / "out" / "workspace.json").exists()


def test_analysis_error_names_module_line_and_input_file(muon_fileset, tmp_path):
    broken = tmp_path / "broken_dimuon.py"
    source = DIMUON.read_text().replace(
        "    two = events[", "    assert len(events) < 1030, 'too many'\n    two = events["
    )
    broken.write_text(source)
    result = processor.run(broken, muon_fileset, executor=LocalExecutor(), write=False)
    failed = result.failures
    assert [r.events for r in failed] == [0] * len(failed) and len(
        failed
    ) == 9  # files _1.._3 of each dataset have >= 1037 events
    line = source.splitlines().index("    assert len(events) < 1030, 'too many'") + 1
    assert failed[0].error.startswith(f"AssertionError in analysis at {broken}:{line} in process")
    assert all(r.path.endswith(("_1.root", "_2.root", "_3.root")) for r in failed)


def test_analysis_source_is_shipped_to_workers(muon_fileset, cluster, tmp_path):
    """Workers load a file-path analysis from its shipped source, even where the file is gone."""
    copy = tmp_path / "shipped_dimuon.py"
    shutil.copy(DIMUON, copy)
    analysis = processor.load_analysis(copy)
    copy.unlink()
    result = processor.run(
        analysis, muon_fileset, executor=DaskExecutor(scheduler=cluster.scheduler_address), write=False
    )
    assert not result.failures and result.events > 0


def test_a_rerun_file_is_announced_once():
    """A task Dask reruns after its worker died announces its file again; progress hears it once."""
    from processor.executors import OncePerFile
    from processor.report import FileReport

    heard = []
    on_file = OncePerFile(heard.append)
    first = FileReport(index=3, path="a.root", dataset="d", events=10)
    again = FileReport(index=3, path="a.root", dataset="d", events=10)
    for report in (first, FileReport(index=4, path="b.root", dataset="d"), again):
        on_file(report)
    assert [r.index for r in heard] == [3, 4] and heard[0] is first
