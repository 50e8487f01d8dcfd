"""Bad input, one case at a time: a message naming the file and the reason, the good files kept.

Each bad file joins a fileset of good files. The run must finish, give exactly the histograms of
a run over the good files alone, list the failure in ``report.json``, and with ``strict`` raise
after writing the outputs. Remote cases use a real XRootD server, a real proxy that vanishes
mid-read, and a real socket that never answers.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import DIMUON, HZZ4L, require_xrootd, result_bits, write_muon_file
from slow_analysis import logged_files, write_slow_dimuon
from xrootd_server import XRootDServer, make_readable_by_others

import processor
from processor.executors.local import LocalExecutor

pytestmark = pytest.mark.timeout(180)

GOOD = ("sig_0.root", "bkg_0.root", "data_0.root")
MUON_TYPES = {"Muon_pt": "var * float32", "Muon_charge": "var * int32"}


@pytest.fixture(scope="module")
def good(muon_fileset, tmp_path_factory):
    """A fileset of one good file per dataset (absolute paths), and its result."""
    spec = json.loads(muon_fileset.read_text())
    for body in spec.values():
        body["files"] = {str(muon_fileset.parent / f): t for f, t in body["files"].items() if f in GOOD}
    path = tmp_path_factory.mktemp("good") / "good.json"
    path.write_text(json.dumps(spec))
    return spec, processor.run(DIMUON, path, executor=LocalExecutor(), write=False)


@pytest.fixture(scope="module")
def typed_dimuon(tmp_path_factory) -> Path:
    """dimuon declaring the types it needs (``column_types``), so a wrong type is named as such."""
    path = tmp_path_factory.mktemp("typed") / "typed_dimuon.py"
    path.write_text(DIMUON.read_text() + f"\ncolumn_types = {MUON_TYPES!r}\n")
    return path


def assert_only_bad_file_lost(good, tmp_path, url, reason, *, tree="Events", analysis=DIMUON, options=None):
    """Run the good files plus ``url`` (in dataset bkg); check what the user sees; return the failure."""
    spec, good_result = good
    spec = json.loads(json.dumps(spec))
    spec["bkg"]["files"][url] = tree
    fileset = tmp_path / "with_bad.json"
    fileset.write_text(json.dumps(spec))
    out = tmp_path / "out"
    with pytest.raises(processor.RunFailed) as info:
        processor.run(analysis, fileset, executor=LocalExecutor(), output=out, strict=True, options=options)
    assert url in str(info.value)
    result = info.value.result
    [failure] = result.failures
    assert (failure.path, failure.dataset, failure.events) == (url, "bkg", 0)
    assert reason in failure.error, failure.error
    assert result_bits(result)[:3] == result_bits(good_result)[:3]  # histograms, samples, cutflows
    report = json.loads((out / "report.json").read_text())
    assert [(f["path"], f["error"]) for f in report["failures"]] == [(url, failure.error)]
    assert report["totals"]["files_ok"] == 3 and (out / "workspace.json").exists()
    return failure


def test_missing_file(good, tmp_path):
    failure = assert_only_bad_file_lost(good, tmp_path, str(tmp_path / "missing.root"), "FileNotFoundError")
    assert failure.attempts == 1  # permanent: not retried


def test_zero_byte_file(good, tmp_path):
    (tmp_path / "zero.root").touch()
    failure = assert_only_bad_file_lost(good, tmp_path, str(tmp_path / "zero.root"), "file is empty or truncated")
    assert "the file has 0 bytes" in failure.error and failure.attempts == 1


def test_truncated_file(good, muon_fileset, tmp_path):
    whole = (muon_fileset.parent / "bkg_1.root").read_bytes()
    (tmp_path / "truncated.root").write_bytes(whole[: len(whole) // 2])
    failure = assert_only_bad_file_lost(good, tmp_path, str(tmp_path / "truncated.root"), "file is empty or truncated")
    assert f"the file has {len(whole) // 2} bytes" in failure.error and failure.attempts == 1


def test_file_that_is_not_root(good, tmp_path):
    (tmp_path / "text.root").write_text("run,event\n1,2\n" * 100)
    assert_only_bad_file_lost(good, tmp_path, str(tmp_path / "text.root"), "not a ROOT file")


def test_wrong_tree_name(good, muon_fileset, tmp_path):
    url = str(muon_fileset.parent / "bkg_1.root")
    assert_only_bad_file_lost(good, tmp_path, url, "no tree 'Tree' in file (it holds: Events)", tree="Tree")


def _write_tree(path: Path, branches: dict[str, ak.Array]) -> None:
    """A TTree ``Events`` of ``branches``; jagged ones share the counter ``nMuon``, as in NanoAOD."""
    with uproot.recreate(path) as f:
        tree = f.mktree("Events", {c: a.type.content for c, a in branches.items()}, counter_name=lambda _: "nMuon")
        tree.extend(branches)


def test_missing_branch(good, tmp_path):
    _write_tree(tmp_path / "no_charge.root", {"Muon_pt": ak.Array([[30.0, 20.0]]), "Muon_eta": ak.Array([[0.1, 0.2]])})
    url = str(tmp_path / "no_charge.root")
    assert_only_bad_file_lost(good, tmp_path, url, "tree 'Events' has no branch 'Muon_phi', 'Muon_mass', 'Muon_charge'")


def test_branch_of_the_wrong_type_is_named_with_both_types(good, typed_dimuon, tmp_path):
    """Muon_pt holds one float per event where the analysis needs a list of muons per event."""
    spec, _ = good
    with_types = (spec, processor.run(typed_dimuon, _fileset(spec, tmp_path), write=False))
    write_muon_file(tmp_path / "jagged.root", 50, seed=7)
    arrays = uproot.open(tmp_path / "jagged.root")["Events"].arrays()
    flat_pt = ak.Array(ak.fill_none(ak.firsts(arrays.Muon_pt), 0).to_numpy().astype(np.float32))
    _write_tree(
        tmp_path / "flat.root",
        {"Muon_pt": flat_pt, **{c: arrays[c] for c in ("Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge")}},
    )
    url = str(tmp_path / "flat.root")
    assert_only_bad_file_lost(
        with_types,
        tmp_path,
        url,
        "branch 'Muon_pt' has type 'float32', the analysis expects 'var * float32'",
        analysis=typed_dimuon,
    )


def _fileset(spec: dict, tmp_path: Path) -> Path:
    path = tmp_path / "fileset.json"
    path.write_text(json.dumps(spec))
    return path


def test_empty_tree_is_valid_and_contributes_nothing(good, tmp_path):
    spec, good_result = good
    spec = json.loads(json.dumps(spec))
    with uproot.recreate(tmp_path / "empty.root") as f:
        f.mktree("Events", _MUON_TREE, counter_name=lambda _: "nMuon")
    spec["bkg"]["files"][str(tmp_path / "empty.root")] = "Events"
    result = processor.run(
        DIMUON, _fileset(spec, tmp_path), executor=LocalExecutor(), output=tmp_path / "o", strict=True
    )
    assert not result.failures
    [empty] = [r for r in result.files if r.path.endswith("empty.root")]
    assert empty.ok and empty.events == 0
    assert result_bits(result)[:2] == result_bits(good_result)[:2]
    assert result.cutflow["bkg"] == good_result.cutflow["bkg"]  # zero added to every step


_MUON_TREE = {
    "Muon_pt": "var * float32",
    "Muon_eta": "var * float32",
    "Muon_phi": "var * float32",
    "Muon_mass": "var * float32",
    "Muon_charge": "var * int32",
}


def test_empty_tree_runs_through_the_hzz4l_kernels(tmp_path):
    """The Numba kernels and histogram fills of the real analysis take 0 events without a crash."""
    analysis = processor.load_analysis(HZZ4L)
    types = {c: "var * int32" if c.endswith("charge") else "var * float32" for c in analysis.columns if c[0] != "n"}
    with uproot.recreate(tmp_path / "empty.root") as f:
        f.mktree("Events", types, counter_name=lambda branch: "n" + branch.split("_")[0])
    fileset = {"Run2012B_DoubleMuParked": {"files": [str(tmp_path / "empty.root")], "metadata": {"is_data": True}}}
    result = processor.run(analysis, processor.parse_fileset(fileset), executor=LocalExecutor(), write=False)
    assert not result.failures and result.files[0].events == 0
    h = result.hists["Run2012B_DoubleMuParked"][analysis.templates.histogram]
    assert h.sum(flow=True).value == 0
    assert set(result.cutflow["Run2012B_DoubleMuParked"].values()) == {0}


# --- remote: a real XRootD server, and servers that refuse, vanish or hang ----------------------


@pytest.fixture(scope="module")
def server(muon_fileset):
    require_xrootd()
    base = Path(tempfile.mkdtemp(prefix="lumiflow-bad-input-"))
    (base / "export").mkdir()
    shutil.copy(muon_fileset.parent / "bkg_1.root", base / "export" / "bkg_1.root")
    make_readable_by_others(base)
    try:
        with XRootDServer(base / "export", base / "server") as s:
            yield s
    finally:
        shutil.rmtree(base, ignore_errors=True)


class VanishingProxy:
    """A TCP proxy to a real server that vanishes (drops every connection, stops listening)
    once the server has sent ``limit`` bytes through it: a storage node dying mid-read."""

    def __init__(self, target_port: int, limit: int):
        self.target_port = target_port
        self.limit = limit
        self.forwarded = 0
        self.gone = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.gone.is_set():
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    return
                if from_server:
                    with self._lock:
                        self.forwarded += len(data)
                        over = self.forwarded > self.limit
                    if over:
                        self.vanish()
                        return
                sink.sendall(data)
            except OSError:
                return

    def vanish(self) -> None:
        self.gone.set()
        with self._lock:
            sockets, self._sockets = [self._listener, *self._sockets], []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def _quick(**overrides) -> processor.TaskOptions:
    return processor.TaskOptions(**{"retries": 0, "timeout": 10, "backoff": 0.1, "file_timeout": 60, **overrides})


def test_root_server_that_refuses_connections(good, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as s:  # a port nobody listens on once closed
        port = s.getsockname()[1]
    url = f"root://127.0.0.1:{port}//data/bkg_1.root"
    failure = assert_only_bad_file_lost(good, tmp_path, url, "OSError", options=_quick(retries=1))
    assert failure.attempts == 2  # connection trouble is transient: retried, then reported


def test_root_server_that_disappears_mid_read(good, server, tmp_path):
    whole = VanishingProxy(server.port, limit=1 << 40)  # first measure what a whole read transfers
    url = f"root://127.0.0.1:{whole.port}/{server.export_dir}/bkg_1.root"
    assert not processor.run(DIMUON, _fileset(_one_file(url), tmp_path), write=False, options=_quick()).failures
    total = whole.forwarded
    whole.vanish()

    proxy = VanishingProxy(server.port, limit=total // 2)
    url = f"root://127.0.0.1:{proxy.port}/{server.export_dir}/bkg_1.root"
    assert_only_bad_file_lost(good, tmp_path, url, "OSError", options=_quick())
    assert proxy.gone.is_set() and proxy.forwarded > total // 4  # it did vanish, mid-read


def test_root_server_that_hangs_is_bounded_by_the_per_file_timeout(good, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (kernel backlog), never answers
        url = f"root://127.0.0.1:{silent.getsockname()[1]}//data/bkg_1.root"
        start = time.monotonic()
        failure = assert_only_bad_file_lost(
            good, tmp_path, url, "the per-file timeout", options=_quick(timeout=30, retries=3, file_timeout=1.5)
        )
        assert time.monotonic() - start < 25  # the request timeout (30 s) was not waited for
    assert failure.error.startswith("FileTimeout")


def _one_file(url: str) -> dict:
    return {"bkg": {"files": [url], "metadata": {"xsec_pb": 1.0, "nevents_generated": 10}}}


# --- filesets and analyses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "sig:\n  files: [a.root\n", "bad.yaml is not valid YAML"),
        (
            "bad.json",
            '{"sig": {"files": ["a.root"], "metadata": {"is_data": true}}, "bkg": ',
            "bad.json is not valid JSON",
        ),
        (
            "typo.json",
            json.dumps(
                {"bkg": {"files": ["FILE"], "metadata": {"xsec_pb": 1.0, "nevents_generated": 10, "kfator": 1}}}
            ),
            "dataset 'bkg': unknown metadata key 'kfator'",
        ),
        (
            "noxsec.json",
            json.dumps({"bkg": {"files": ["FILE"], "metadata": {"nevents_generated": 10}}}),
            "dataset 'bkg': simulated dataset needs metadata.xsec_pb",
        ),
    ],
)
def test_fileset_errors_stop_the_run_before_any_file_is_read(muon_fileset, tmp_path, monkeypatch, name, text, message):
    log = tmp_path / "processed.log"
    monkeypatch.setenv("LUMIFLOW_TEST_LOG", str(log))
    analysis = write_slow_dimuon(tmp_path / "logged_dimuon.py")
    good = {"data": {"files": [str(muon_fileset.parent / "data_0.root")], "metadata": {"is_data": True}}}
    body = text.replace("FILE", str(muon_fileset.parent / "bkg_0.root"))
    if name.endswith(".json") and not name.startswith("bad"):
        body = json.dumps({**good, **json.loads(body)})  # a good dataset first: it must not run either
    (tmp_path / name).write_text(body)
    with pytest.raises(processor.FilesetError, match=message.replace("(", r"\(")):
        processor.run(analysis, tmp_path / name, executor=LocalExecutor(), output=tmp_path / "out")
    assert logged_files(log) == [] and not (tmp_path / "out").exists()


def test_analysis_with_a_syntax_error_names_its_file_and_line(muon_fileset, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import processor\n\ndef process(events, dataset)\n    return None\n")
    with pytest.raises(processor.AnalysisError, match=f"cannot import analysis {broken}: SyntaxError") as info:
        processor.run(broken, muon_fileset, executor=LocalExecutor(), write=False)
    assert "line 3" in str(info.value)


def test_analysis_raising_in_process_names_module_line_and_the_input_file(good, tmp_path):
    source = DIMUON.read_text().replace(
        "    two = events[",
        "    if len(events) == 1037:\n        raise ZeroDivisionError('bad event')\n    two = events[",
    )
    analysis = tmp_path / "raising_dimuon.py"
    analysis.write_text(source)
    line = source.splitlines().index("        raise ZeroDivisionError('bad event')") + 1
    spec, _ = good
    good_here = (spec, processor.run(analysis, _fileset(spec, tmp_path), write=False))  # its own result
    url = str(Path(next(iter(spec["bkg"]["files"]))).parent / "bkg_1.root")  # the file with 1037 events
    failure = assert_only_bad_file_lost(
        good_here, tmp_path, url, f"ZeroDivisionError in analysis at {analysis}:{line} in process", analysis=analysis
    )
    assert failure.error.endswith("bad event")


def test_an_abandoned_read_closes_what_it_opened_once_it_ends():
    """A read given up on by the per-file timeout must not leave its file open on the worker."""
    import threading

    from processor.source import FileTimeout, within

    class Handle:
        def __init__(self):
            self.closed = threading.Event()

        def close(self):
            self.closed.set()

    late, timely = Handle(), Handle()
    release = threading.Event()

    def slow_open():
        release.wait(30)
        return late

    with pytest.raises(FileTimeout, match="per-file timeout"):
        within(0.05, slow_open, when_late=lambda handle: handle.close())
    assert not late.closed.is_set()  # still being opened: nothing to close yet
    release.set()
    assert late.closed.wait(10)  # closed by the abandoned thread as soon as it got the file
    assert within(5, lambda: timely, when_late=lambda handle: handle.close()) is timely
    assert not timely.closed.is_set()  # returned in time: the caller owns it
