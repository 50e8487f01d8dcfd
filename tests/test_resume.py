"""Interrupted runs resume from the journal: only unfinished files run, the outputs are the same bits.

The interruptions are real: SIGKILL and SIGINT sent to a ``lumiflow run`` process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uproot
from conftest import result_bits
from slow_analysis import logged_files, write_slow_dimuon

import processor
from processor.cli import main
from processor.executors.local import LocalExecutor
from processor.journal import Journal, JournalError

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> Path:
    return write_slow_dimuon(tmp_path_factory.mktemp("analysis") / "slow_dimuon.py")


@pytest.fixture(scope="module")
def reference(slow, muon_fileset, tmp_path_factory):
    """An uninterrupted run's result and output directory."""
    out = tmp_path_factory.mktemp("reference") / "out"
    return processor.run(slow, muon_fileset, executor=LocalExecutor(), output=out), out


def _lumiflow(*args, env_extra: dict[str, str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", *map(str, args), "--no-progress"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: its Dask workers can be cleaned up with it
    )


def _journaled(out: Path, slow: Path, fileset: Path) -> set[tuple[str, int]]:
    journal = Journal.resume(out, processor.load_analysis(slow).source_sha256, processor.load_fileset(fileset).sha256)
    return {(r.dataset, r.events) for r in journal.done().files}


def _interrupted_run(slow: Path, fileset: Path, out: Path, *, entries: int, how: signal.Signals, args=()) -> tuple:
    """Start ``lumiflow run``, send ``how`` once ``entries`` files are journaled; (returncode, stderr)."""
    run = _lumiflow(
        slow, "--fileset", fileset, "--output", out, *args, env_extra={"LUMIFLOW_TEST_SLOW": "0.4"}, cwd=out.parent
    )
    try:
        deadline = time.monotonic() + 90
        while len(list((out / "journal").glob("[0-9]*.partial"))) < entries:
            assert run.poll() is None, f"the run ended before it could be interrupted: {run.communicate()[1]}"
            assert time.monotonic() < deadline, "no journal entries appeared"
            time.sleep(0.05)
        run.send_signal(how)
        run.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # whatever it left behind: its LocalCluster's workers
        if run.poll() is None:
            run.kill()
        _, stderr = run.communicate(timeout=30)
    return run.returncode, stderr


def _all_files(fileset: Path) -> set[tuple[str, int]]:
    # the muon fileset's files have 1000 + 37 * i events, i = 0..3 in each dataset
    return {(d, 1000 + 37 * i) for d in json.loads(fileset.read_text()) for i in range(4)}


def _assert_same_outputs(out: Path, reference_out: Path) -> None:
    assert (out / "workspace.json").read_bytes() == (reference_out / "workspace.json").read_bytes()
    with uproot.open(out / "histograms.root") as got, uproot.open(reference_out / "histograms.root") as want:
        assert sorted(got.keys()) == sorted(want.keys())
        for key, h in want.items(filter_classname="TH1*"):
            assert got[key].values(flow=True).tobytes() == h.values(flow=True).tobytes(), key
            assert got[key].variances(flow=True).tobytes() == h.variances(flow=True).tobytes(), key
    got, want = (json.loads((d / "report.json").read_text()) for d in (out, reference_out))
    assert got["cutflow"] == want["cutflow"]
    assert got["totals"]["events"] == want["totals"]["events"] and got["totals"]["files_ok"] == 12
    assert not (out / "journal").exists()  # complete: nothing left to resume


def test_sigkill_of_the_client_then_resume_runs_only_unfinished_files(
    slow, muon_fileset, reference, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    returncode, _ = _interrupted_run(slow, muon_fileset, out, entries=3, how=signal.SIGKILL, args=("--workers", "2"))
    assert returncode == -signal.SIGKILL
    done = _journaled(out, slow, muon_fileset)
    assert 3 <= len(done) < 12

    log = tmp_path / "processed.log"
    monkeypatch.setenv("LUMIFLOW_TEST_LOG", str(log))
    resume = ["run", str(slow), "--fileset", str(muon_fileset), "--resume", str(out), "--executor", "local"]
    assert main([*resume, "--no-progress"]) == 0
    assert f"{len(done)} of 12 files already done" in " ".join(capsys.readouterr().err.split())
    processed = logged_files(log)
    assert len(processed) == len(set(processed)) and set(processed) == _all_files(muon_fileset) - done
    _assert_same_outputs(out, reference[1])


def test_sigint_stops_the_run_and_resume_finishes_it_bit_identically(slow, muon_fileset, reference, tmp_path):
    out = tmp_path / "out"
    returncode, stderr = _interrupted_run(
        slow, muon_fileset, out, entries=2, how=signal.SIGINT, args=("--executor", "local")
    )
    assert returncode == 130, stderr
    assert f"--resume {out}" in " ".join(stderr.split())
    done = _journaled(out, slow, muon_fileset)
    assert 2 <= len(done) < 12
    assert not (out / "report.json").exists()  # no outputs from a run that did not finish

    seen = []
    result = processor.run(slow, muon_fileset, executor=LocalExecutor(), output=out, resume=True, on_file=seen.append)
    assert len(seen) == 12 - len(done)  # only the unfinished files ran
    assert {(r.dataset, r.events) for r in seen} == _all_files(muon_fileset) - done
    assert result_bits(result) == result_bits(reference[0])
    _assert_same_outputs(out, reference[1])


def _absolute_fileset(muon_fileset: Path, path: Path, *, data_file: Path, sig_xsec_pb: float = 2.0) -> Path:
    """The muon fileset with absolute paths, one more data file, and the signal's cross-section."""
    spec = json.loads(muon_fileset.read_text())
    for body in spec.values():
        body["files"] = {str(muon_fileset.parent / name): tree for name, tree in body["files"].items()}
    spec["data"]["files"][str(data_file)] = "Events"
    spec["sig"]["metadata"]["xsec_pb"] = sig_xsec_pb
    path.write_text(json.dumps(spec))
    return path


def test_failed_files_are_retried_on_resume_and_finished_ones_are_not(slow, muon_fileset, tmp_path):
    late = tmp_path / "late.root"  # absent during the first run (a storage node that was down)
    fileset = _absolute_fileset(muon_fileset, tmp_path / "fileset.json", data_file=late)
    first = processor.run(slow, fileset, executor=LocalExecutor(), output=tmp_path / "out")
    assert [r.path for r in first.failures] == [str(late)]
    assert (tmp_path / "out" / "journal").is_dir()  # kept: a file is left to do

    shutil.copy(muon_fileset.parent / "data_0.root", late)
    seen = []
    second = processor.run(
        slow, fileset, executor=LocalExecutor(), output=tmp_path / "out", resume=True, on_file=seen.append
    )
    assert [r.path for r in seen] == [str(late)] and not second.failures
    assert not (tmp_path / "out" / "journal").exists()  # complete: nothing left to resume
    whole = processor.run(slow, fileset, executor=LocalExecutor(), write=False)
    assert result_bits(second) == result_bits(whole)


def test_journal_of_another_analysis_or_fileset_is_refused(slow, muon_fileset, tmp_path, capsys):
    out = tmp_path / "out"
    fileset = _absolute_fileset(muon_fileset, tmp_path / "fileset.json", data_file=tmp_path / "missing.root")
    processor.run(slow, fileset, executor=LocalExecutor(), output=out)  # unfinished: the journal stays

    edited = tmp_path / "edited_dimuon.py"
    edited.write_text(slow.read_text() + "\n# a later version of the analysis\n")
    with pytest.raises(JournalError, match="another version of the analysis"):
        processor.run(edited, fileset, executor=LocalExecutor(), output=out, resume=True)

    # same files, another signal cross-section: not the same run
    other = _absolute_fileset(muon_fileset, tmp_path / "other.json", data_file=tmp_path / "missing.root", sig_xsec_pb=3)
    assert main(["run", str(slow), "--fileset", str(other), "--resume", str(out), "--no-progress"]) == 2
    assert "another version of the fileset" in " ".join(capsys.readouterr().err.split())

    with pytest.raises(JournalError, match="holds no run journal"):
        processor.run(slow, muon_fileset, executor=LocalExecutor(), output=tmp_path / "never-run", resume=True)
