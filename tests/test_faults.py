"""Faults produced for real on a real Dask cluster: a worker SIGKILLed mid-task, a task out of memory."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import dask
import pytest
from conftest import result_bits
from distributed import LocalCluster
from slow_analysis import logged_files, write_slow_dimuon

import processor
from processor.executors.dask import DaskExecutor
from processor.executors.local import LocalExecutor

pytestmark = pytest.mark.timeout(240)


def _run_in_thread(**kwargs) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = processor.run(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_worker_killed_mid_task_reruns_elsewhere_with_identical_bits(muon_fileset, tmp_path, monkeypatch):
    analysis = write_slow_dimuon(tmp_path / "slow_dimuon.py")
    clean = processor.run(analysis, muon_fileset, executor=LocalExecutor(), write=False)
    log = tmp_path / "started.log"
    monkeypatch.setenv("LUMIFLOW_TEST_LOG", str(log))  # inherited by the workers started below
    monkeypatch.setenv("LUMIFLOW_TEST_SLOW", "0.8")  # long enough to be killed inside it
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        executor = DaskExecutor(scheduler=cluster.scheduler_address, fan_in=3)
        announced = []
        thread, outcome = _run_in_thread(
            analysis=analysis, fileset=muon_fileset, executor=executor, write=False, on_file=announced.append
        )
        deadline = time.monotonic() + 60
        while len(log.read_text().splitlines() if log.exists() else []) < 3:
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.02)
        victim = int(log.read_text().splitlines()[2].split()[2])  # a worker sleeping inside its task
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in outcome, outcome
    result = outcome["result"]
    assert not result.failures
    assert result_bits(result) == result_bits(clean)
    started = logged_files(log)
    assert len(started) > 12  # the killed task (and any partials lost with the worker) ran again
    assert set(started) == {(r.dataset, r.events) for r in clean.files}
    # progress heard of every file once, although some ran twice
    assert sorted(r.index for r in announced) == sorted(r.index for r in clean.files)


def test_task_exceeding_worker_memory_fails_with_advice_and_the_run_ends(muon_fileset, tmp_path, monkeypatch):
    analysis = write_slow_dimuon(tmp_path / "hungry_dimuon.py")
    spec = json.loads(muon_fileset.read_text())
    for body in spec.values():  # one good file per dataset: each worker death recomputes what it held
        body["files"] = {str(muon_fileset.parent / name): tree for name, tree in body["files"].items() if "_0." in name}
    spec["hog"] = {"files": [str(muon_fileset.parent / "data_0.root")], "metadata": {"is_data": True}}
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(spec))
    monkeypatch.setenv("LUMIFLOW_TEST_HOG", "hog:4000")  # 4 GB for the hog dataset's file
    without_hog = {name: body for name, body in spec.items() if name != "hog"}
    (tmp_path / "without_hog.json").write_text(json.dumps(without_hog))
    clean = processor.run(analysis, tmp_path / "without_hog.json", executor=LocalExecutor(), write=False)

    # a task that kills its worker is given up at once (the default, 3 retries, only makes this test slower)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="1GiB"
        ) as cluster,
    ):
        result = processor.run(
            analysis,
            fileset,
            executor=DaskExecutor(scheduler=cluster.scheduler_address),
            output=tmp_path / "out",
        )
    [failure] = result.failures
    assert failure.dataset == "hog" and failure.path == str(muon_fileset.parent / "data_0.root")
    assert "KilledWorker" in failure.error and "--step-mb" in failure.error
    assert result_bits(result)[:3] == result_bits(clean)[:3]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [f["dataset"] for f in report["failures"]] == ["hog"]
