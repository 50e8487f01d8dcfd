"""Remote reads through the framework: a real XRootD server (root:// and its HTTP plugin) on loopback."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import DIMUON, require_xrootd, result_bits
from xrootd_server import XRootDServer, make_readable_by_others

import processor
from processor.executors.dask import DaskExecutor
from processor.executors.local import LocalExecutor

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def export(muon_fileset):
    """The muon fileset's files in a directory user xrootd can read (not under pytest's tmp_path)."""
    require_xrootd()
    base = Path(tempfile.mkdtemp(prefix="lumiflow-remote-"))
    (base / "export").mkdir()
    for f in muon_fileset.parent.glob("*.root"):
        shutil.copy(f, base / "export" / f.name)
    make_readable_by_others(base)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(export):
    with XRootDServer(export / "export", export / "server", http=True) as s:
        yield s


def _remote_fileset(muon_fileset, path: Path, url_of) -> Path:
    spec = json.loads(muon_fileset.read_text())
    for body in spec.values():
        body["files"] = {url_of(name): tree for name, tree in body["files"].items()}
    path.write_text(json.dumps(spec))
    return path


def test_root_and_http_urls_give_the_same_bits_as_local_files(muon_fileset, server, tmp_path):
    def url_of(name):  # data over HTTP (XrdHttp), MC over root://
        return server.http_url(name) if name.startswith("data") else server.url(name)

    remote = _remote_fileset(muon_fileset, tmp_path / "remote.json", url_of)
    local = processor.run(DIMUON, muon_fileset, executor=LocalExecutor(), write=False)
    for executor in (LocalExecutor(), DaskExecutor(workers=2)):
        result = processor.run(DIMUON, remote, executor=executor, write=False)
        assert not result.failures
        assert result_bits(result)[:3] == result_bits(local)[:3]
        assert {r.path.split(":")[0] for r in result.files} == {"root", "http"}
        assert all(r.bytes_read > 0 for r in result.files)


def test_missing_remote_file_is_reported_not_retried(muon_fileset, server, tmp_path):
    fileset = tmp_path / "fs.json"
    fileset.write_text(json.dumps({"d": {"files": [server.url("no_such_file.root")], "metadata": {"is_data": True}}}))
    result = processor.run(DIMUON, fileset, executor=LocalExecutor(), write=False)
    [failure] = result.failures
    assert failure.error.startswith("FileNotFoundError") and "no_such_file.root" in failure.error
    assert failure.attempts == 1  # permanent: no retry


def test_transient_outage_is_retried_until_the_server_answers(muon_fileset, export, tmp_path):
    """The server is down when the run starts and comes up during the retry backoff."""
    server = XRootDServer(export / "export", export / "late-server")
    fileset = _remote_fileset(muon_fileset, tmp_path / "late.json", server.url)
    outcome = {}
    # the XRootD client keeps reconnecting within one request's timeout, so keep that short
    options = processor.TaskOptions(retries=5, timeout=1, backoff=1.0)
    worker = threading.Thread(
        target=lambda: outcome.setdefault(
            "result", processor.run(DIMUON, fileset, executor=LocalExecutor(), write=False, options=options)
        )
    )
    worker.start()
    time.sleep(3.0)  # the first attempt (1 s timeout, checked each second) has failed by now
    try:
        server.start()  # from the main thread: the server lives as long as this thread
        worker.join(timeout=120)
    finally:
        server.stop()
    result = outcome["result"]
    assert not result.failures, [r.error for r in result.failures]
    assert result.files[0].attempts >= 2  # the first file needed a retry
    local = processor.run(DIMUON, muon_fileset, executor=LocalExecutor(), write=False)
    assert result_bits(result)[:3] == result_bits(local)[:3]


def test_server_that_never_answers_fails_the_file_in_bounded_time(muon_fileset, export, tmp_path):
    server = XRootDServer(export / "export", export / "never")  # never started
    fileset = tmp_path / "never.json"
    fileset.write_text(json.dumps({"d": {"files": [server.url("sig_0.root")], "metadata": {"is_data": True}}}))
    start = time.monotonic()
    options = processor.TaskOptions(retries=2, timeout=2, backoff=0.2)
    result = processor.run(DIMUON, fileset, executor=LocalExecutor(), write=False, options=options)
    [failure] = result.failures
    assert failure.attempts == 3 and failure.path == server.url("sig_0.root")
    assert time.monotonic() - start < 60
