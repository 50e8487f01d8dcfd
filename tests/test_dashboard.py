"""Live views of a run: executor snapshots, the background run API, the Jupyter widget, the
Prometheus endpoint and the web page in a real headless Chromium, during real runs."""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import uproot
from conftest import DIMUON, ROOT
from slow_analysis import write_slow_dimuon

import processor
from processor import demo
from processor.dashboard import DashboardServer
from processor.executors import dask as dask_executor
from processor.executors.dask import DaskExecutor
from processor.executors.local import LocalExecutor

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def events_per_file(fileset_path: Path) -> dict[str, list[int]]:
    """Each dataset's file sizes, read with uproot (independently of the framework)."""

    def entries(url: str, tree: str) -> int:
        with uproot.open(Path(fileset_path).parent / url) as f:
            return f[tree].num_entries

    spec = json.loads(Path(fileset_path).read_text())
    return {name: [entries(url, tree) for url, tree in d["files"].items()] for name, d in spec.items()}


def subset_sums(sizes: list[int]) -> set[int]:
    return {sum(c) for k in range(len(sizes) + 1) for c in itertools.combinations(sizes, k)}


def all_events(result: processor.Result) -> int:
    return sum(flow["all"] for flow in result.cutflow.values())


# --- snapshots from the executors ---------------------------------------------------------------


def test_local_snapshots_hold_exactly_the_files_finished_so_far(muon_fileset):
    snapshots = []
    result = processor.run(
        DIMUON, muon_fileset, executor=LocalExecutor(snapshot_seconds=0), write=False, on_snapshot=snapshots.append
    )
    sizes = [n for per_dataset in events_per_file(muon_fileset).values() for n in per_dataset]  # fileset order
    live, final = snapshots[:-1], snapshots[-1]
    assert [all_events(s) for s in live] == list(itertools.accumulate(sizes))
    assert final is result  # the complete result too, before the outputs are written
    last = live[-1]  # after the last file: the running sum is the exact result
    for dataset, hists in result.hists.items():
        assert last.hists[dataset]["mass"].view(flow=True).tobytes() == hists["mass"].view(flow=True).tobytes()


def test_dask_snapshots_are_sums_of_finished_files_and_are_cleaned_up(muon_fileset, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    monkeypatch.setenv("LUMIFLOW_TEST_SLOW", "0.4")  # before the workers start: they inherit it
    analysis = write_slow_dimuon(tmp_path / "slow_dimuon.py")
    sizes = events_per_file(muon_fileset)
    snapshots = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        executor = DaskExecutor(scheduler=cluster.scheduler_address, snapshot_seconds=0.5)
        result = processor.run(analysis, muon_fileset, executor=executor, write=False, on_snapshot=snapshots.append)
        leftovers = client.run(lambda: dict(dask_executor._LIVE_SUMS))
    assert all(not sums for sums in leftovers.values()), "workers kept running sums after the run"

    live, final = snapshots[:-1], snapshots[-1]
    assert final is result
    total = sum(map(sum, sizes.values()))
    assert any(0 < all_events(s) < total for s in live), "no snapshot taken while the run was going"
    for snapshot in live:
        for dataset, flow in snapshot.cutflow.items():
            assert flow["all"] in subset_sums(sizes[dataset]), "a snapshot holds part of a file"
        for dataset, hists in snapshot.hists.items():  # weights are positive: a part never exceeds the whole
            assert np.all(hists["mass"].values() <= result.hists[dataset]["mass"].values() * (1 + 1e-12))


# --- the background run, the widget, attaching by address -----------------------------------------


def test_background_run_feeds_the_widget_and_an_attached_one(muon_fileset):
    pytest.importorskip("ipywidgets", reason="the Jupyter dashboard needs the dashboard extra (ipywidgets)")
    from processor.dashboard import Dashboard

    handle = processor.submit_run(DIMUON, muon_fileset, executor=LocalExecutor(), write=False)
    dashboard = Dashboard(handle)
    result = handle.result(timeout=120)
    assert handle.done()

    state = dashboard.refresh()
    assert state["status"] == "finished"
    assert state["files"] == {"done": 12, "total": 12, "failed": 0}
    assert state["events"] == result.events == all_events(result)
    histogram = state["histogram"]
    assert histogram["final"] and histogram["name"] == "mass"
    for layer in histogram["stack"]:  # the drawn stack is the result's, sample by sample
        assert layer["values"] == result.samples["mass"][layer["sample"]].values().tolist()
    assert histogram["data"] == result.samples["mass"]["data"].values().tolist()
    assert "12 / 12" in dashboard.header.value
    assert "finished" in dashboard.header.value
    for image in (dashboard.throughput, dashboard.histogram):
        assert bytes(image.value).startswith(b"\x89PNG")

    with DashboardServer(handle.monitor.state) as server:  # a run elsewhere: attach by address
        attached = Dashboard(server.url)
        assert attached.refresh() == json.loads(json.dumps(handle.monitor.state()))
        assert attached.header.value == dashboard.header.value


def test_background_run_hands_over_the_runs_error(muon_fileset, tmp_path):
    spec = json.loads(muon_fileset.read_text())
    bad = tmp_path / "not_root.root"
    bad.write_text("not a ROOT file")
    for dataset in spec.values():
        dataset["files"] = {str(muon_fileset.parent / url): tree for url, tree in dataset["files"].items()}
    spec["data"]["files"][str(bad)] = "Events"
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(spec))

    handle = processor.submit_run(DIMUON, fileset, executor=LocalExecutor(), write=False, strict=True)
    with pytest.raises(processor.RunFailed, match="not_root.root"):
        handle.result(timeout=120)
    state = handle.monitor.state()
    assert state["status"] == "failed" and "not_root.root" in state["error"]
    assert state["files"] == {"done": 13, "total": 13, "failed": 1}
    assert [f["path"] for f in state["failures"]] == [str(bad)]


def test_submit_run_raises_fileset_errors_at_once(tmp_path):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"mc": {"files": ["x.root"], "metadata": {"role": "background"}}}))
    with pytest.raises(processor.FilesetError, match="xsec_pb"):
        processor.submit_run(DIMUON, fileset)


# --- the command line: Prometheus endpoint and web dashboard during real runs ---------------------


class CommandRun:
    """``lumiflow`` in a subprocess; its stderr lines are collected by a thread (never blocks the test)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> str:
        """The first group of the first stderr line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.log.append(line)
            if match := re.search(pattern, line):
                return match.group(1)
        raise AssertionError(f"no line matching {pattern!r} from lumiflow; it printed:\n{''.join(self.log)}")

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout: float = 180) -> int:
        try:
            self.process.wait(timeout)
        finally:
            self.kill()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def lumiflow():
    """Starts ``lumiflow`` commands; whatever a failed test left running is killed."""
    started: list[CommandRun] = []

    def start(args: list, env: dict[str, str], cwd: Path) -> CommandRun:
        started.append(CommandRun(args, env, cwd))
        return started[-1]

    yield start
    for command in started:
        command.kill()


def test_prometheus_endpoint_serves_the_counters_during_a_run(muon_fileset, tmp_path, lumiflow):
    from prometheus_client.parser import text_string_to_metric_families

    analysis = write_slow_dimuon(tmp_path / "slow_dimuon.py")
    sizes = events_per_file(muon_fileset)
    args = ["run", analysis, "--fileset", muon_fileset, "--executor", "local", "--metrics-port", "0", "--no-progress"]
    run = lumiflow([*args, "--output", tmp_path / "out"], {**os.environ, "LUMIFLOW_TEST_SLOW": "0.3"}, tmp_path)
    url = run.wait_for(r"Prometheus metrics: (http://127\.0\.0\.1:\d+/metrics)")
    scrapes = []
    deadline = time.monotonic() + 120
    while run.running() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                content_type = response.headers["Content-Type"]
                text = response.read().decode()
        except OSError:  # the run ended and its endpoint with it
            break
        assert content_type.startswith("text/plain")
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        scrapes.append(samples)
        time.sleep(0.2)
    assert run.finish() == 0, "".join(run.log)

    def value(samples, name, **labels):
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    total = sum(len(v) for v in sizes.values())
    done = [value(s, "lumiflow_files_total") for s in scrapes]
    assert any(0 < d < total for d in done), f"no scrape while the run was going: files done {done}"
    assert done == sorted(done)  # counters never go back
    for samples in scrapes:
        assert value(samples, "lumiflow_files_expected") == total
        assert value(samples, "lumiflow_files_total", status="failed") == 0
        for dataset, per_file in sizes.items():
            assert value(samples, "lumiflow_events_total", dataset=dataset) in subset_sums(per_file)
        if 0 < value(samples, "lumiflow_files_total") < total:
            assert value(samples, "lumiflow_events_per_second") > 0
            assert value(samples, "lumiflow_run_finished") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert value(scrapes[-1], "lumiflow_events_total") <= report["totals"]["events"]


def _chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="the browser test drives Chromium with playwright (test extra)")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on PATH (scripts/install-test-deps.sh installs Debian's as root)")
    return path


def test_browser_shows_a_demo_run_live(tmp_path, lumiflow):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    fileset = demo.generate(tmp_path / "demo", events=1000, files_per_dataset=36)  # many small files: a longer run
    total = len(processor.load_fileset(fileset))
    args = ["run", ROOT / "analyses" / "hzz4l.py", "--fileset", fileset, "--workers", "1", "--no-progress"]
    run = lumiflow(
        [*args, "--dashboard", "--dashboard-port", "0", "--output", tmp_path / "out"], dict(os.environ), tmp_path
    )
    url = run.wait_for(r"dashboard: (http://127\.0\.0\.1:\d+/)")
    seen = []  # (files done, events/s, status) as the page showed them
    live_shot = tmp_path / "dashboard-live.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1150, "height": 900})
            page.goto(url, timeout=30_000)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                done = int(page.get_attribute("#files-done", "data-done"))
                rate = float(page.get_attribute("#events-rate", "data-value"))
                status = page.text_content("#status")
                seen.append((done, rate, status))
                if status == "running" and 0 < done < total:  # keep the latest view of the run in progress
                    page.screenshot(path=live_shot, full_page=True)
                if status != "running" or not run.running():
                    break
                time.sleep(0.25)
            page.screenshot(path=tmp_path / "dashboard-final.png", full_page=True)
        finally:
            browser.close()
    assert run.finish() == 0, "".join(run.log)

    during = [(d, r) for d, r, s in seen if s == "running"]
    assert any(r > 0 for _, r in during), f"events/s never became non-zero: {seen}"
    counts = sorted({d for d, _ in during if 0 < d < total})
    assert len(counts) >= 2, f"files done never increased during the run: {seen}"
    assert seen[-1][0] == total and seen[-1][2] == "finished", seen[-1]
    assert live_shot.read_bytes().startswith(b"\x89PNG")


# --- the example notebook -------------------------------------------------------------------------


def test_example_notebook_runs_headless(tmp_path):
    pytest.importorskip("ipywidgets", reason="the notebook shows the Jupyter dashboard (dashboard extra)")
    nbformat = pytest.importorskip("nbformat", reason="executing the notebook needs nbformat (test extra)")
    nbclient = pytest.importorskip("nbclient", reason="executing the notebook needs nbclient (test extra)")
    pytest.importorskip("ipykernel", reason="executing the notebook needs ipykernel (test extra)")

    notebook = nbformat.read(ROOT / "analyses" / "hzz4l.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    files = len(processor.load_fileset(demo.ensure_demo_fileset(events=5_000)))
    assert f"{files} files ok, 0 failed" in printed
    assert (tmp_path / "lumiflow-output" / "hzz4l" / "workspace.json").is_file()


def test_a_taken_dashboard_port_is_a_clear_error(muon_fileset, capsys):
    from processor.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["run", str(DIMUON), "--fileset", str(muon_fileset), "--executor", "local", "--no-progress"]
        assert main([*args, "--dashboard", "--dashboard-port", str(port)]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert f"cannot listen on 127.0.0.1:{port}" in message and "--dashboard-port" in message
