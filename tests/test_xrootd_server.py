"""uproot reads ROOT files through a real XRootD server on loopback.

These tests skip when xrootd cannot run here (reason from
``xrootd_available()``), except under ``CI=true``: there a missing server is a
failure, because CI must prove that the remote path works.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import uproot
import uproot.source.fsspec
import uproot.source.xrootd
from conftest import require_xrootd
from xrootd_server import XRootDServer, make_readable_by_others

# Backstop: nothing here should take more than a few seconds.
pytestmark = pytest.mark.timeout(60)

# handler id -> uproot.open keyword arguments
HANDLERS = {
    "fsspec": {},  # uproot's default for root:// (fsspec-xrootd)
    "xrootd": {"handler": uproot.source.xrootd.XRootDSource},
}
SOURCE_TYPES = {
    "fsspec": uproot.source.fsspec.FSSpecSource,
    "xrootd": uproot.source.xrootd.XRootDSource,
}

OPEN_TIMEOUT = 5  # seconds, passed to uproot.open
# timeout for opens that are expected to fail against a stopped server; kept
# short so the module stays fast (failing takes about this long, +1 s)
DOWN_TIMEOUT = 3


def _write_events(path: Path, offset: int = 0) -> None:
    x = np.linspace(0.0, 1.0, 100) + offset
    n = np.arange(100, dtype=np.int32) + offset
    with uproot.recreate(path) as f:
        f.mktree("Events", {"x": "float64", "n": "int32"})
        f["Events"].extend({"x": x[:60], "n": n[:60]})  # two baskets
        f["Events"].extend({"x": x[60:], "n": n[60:]})


@pytest.fixture(scope="module")
def xrootd_base() -> Path:
    """A private directory for export data and server state.

    The server runs as user xrootd when the tests run as root, so it needs
    o+x on every parent directory. pytest's tmp_path does not work well here:
    it lives under /tmp/pytest-of-<user>/, and every pytest session that
    starts resets that directory to mode 0700, which cuts off the server of
    a session already running.
    """
    require_xrootd()
    base = Path(tempfile.mkdtemp(prefix="lumiflow-xrootd-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def export_dir(xrootd_base) -> Path:
    """A directory with events.root and other.root, readable by user xrootd."""
    data = xrootd_base / "export"
    data.mkdir()
    _write_events(data / "events.root")
    _write_events(data / "other.root", offset=1000)
    make_readable_by_others(xrootd_base)
    return data


@pytest.fixture(scope="module")
def xrootd_server(export_dir, xrootd_base) -> XRootDServer:
    """One server shared by the read-only tests of this module."""
    with XRootDServer(export_dir, xrootd_base / "server") as server:
        yield server


@pytest.fixture
def private_server(export_dir, xrootd_base) -> XRootDServer:
    """A server of this test's own, which the test may stop."""
    workdir = Path(tempfile.mkdtemp(prefix="server-", dir=xrootd_base))
    with XRootDServer(export_dir, workdir) as server:
        yield server


def _local_arrays(path: Path) -> dict[str, np.ndarray]:
    with uproot.open(path) as f:
        return f["Events"].arrays(["x", "n"], library="np")


@pytest.mark.parametrize("handler", list(HANDLERS))
def test_remote_read_matches_local(xrootd_server, export_dir, handler):
    local = _local_arrays(export_dir / "events.root")
    url = xrootd_server.url(export_dir / "events.root")
    assert url == f"root://127.0.0.1:{xrootd_server.port}/{export_dir.resolve()}/events.root"
    assert url.startswith(f"root://127.0.0.1:{xrootd_server.port}//")
    with uproot.open(url, timeout=OPEN_TIMEOUT, **HANDLERS[handler]) as f:
        assert isinstance(f.file.source, SOURCE_TYPES[handler])
        tree = f["Events"]
        assert tree.num_entries == 100
        remote = tree.arrays(["x", "n"], library="np")
    assert remote.keys() == local.keys()
    for name in local:
        np.testing.assert_array_equal(remote[name], local[name])
        assert remote[name].dtype == local[name].dtype


def test_default_open_uses_fsspec(xrootd_server, export_dir):
    # No timeout argument at all. With the fsspec handler, timeout must be an
    # int or absent: timeout=None or timeout=5.0 raises "TypeError: integer
    # argument expected for timeout" from pyxrootd (fsspec-xrootd 0.5.5
    # passes it on unchanged; XRootDSource converts it with int()).
    with uproot.open(xrootd_server.url(export_dir / "other.root")) as f:
        assert isinstance(f.file.source, uproot.source.fsspec.FSSpecSource)
        assert f["Events"]["n"].array(library="np")[0] == 1000


# fsspec-xrootd raises a plain OSError ("Failed to open file: [ERROR] Server
# responded with an error: [3011] Unable to open /abs/missing.root; no such
# file or directory"); uproot's XRootDSource maps kXR_NotFound to
# FileNotFoundError, whose message holds the whole URL.
MISSING_FILE_ERRORS = {"fsspec": OSError, "xrootd": FileNotFoundError}


@pytest.mark.parametrize("handler", list(HANDLERS))
def test_missing_file_error_names_file(xrootd_server, export_dir, handler):
    missing = export_dir.resolve() / "no-such-file.root"
    start = time.monotonic()
    with pytest.raises(MISSING_FILE_ERRORS[handler]) as excinfo:
        uproot.open(xrootd_server.url(missing), timeout=OPEN_TIMEOUT, **HANDLERS[handler])
    assert time.monotonic() - start < OPEN_TIMEOUT
    message = str(excinfo.value)
    assert str(missing) in message
    assert "[3011]" in message  # kXR_NotFound from the server, not a local error


@pytest.mark.parametrize("handler", list(HANDLERS))
def test_open_after_stop_fails_within_timeout(private_server, export_dir, handler):
    server = private_server
    # Connect first, so the client holds a live connection that the stop breaks.
    with uproot.open(server.url(export_dir / "events.root"), timeout=OPEN_TIMEOUT, **HANDLERS[handler]) as f:
        assert f["Events"].num_entries == 100

    server.stop()
    assert not server.running

    start = time.monotonic()
    # XRootDSource raises TimeoutError ("Operation expired"); fsspec-xrootd
    # raises OSError("Failed to open file: [ERROR] Operation expired").
    with pytest.raises(OSError, match="Operation expired"):
        uproot.open(server.url(export_dir / "other.root"), timeout=DOWN_TIMEOUT, **HANDLERS[handler])
    elapsed = time.monotonic() - start
    # The client checks timeouts once a second (configure_client_timeouts),
    # so the request expires between DOWN_TIMEOUT and DOWN_TIMEOUT + 1 s.
    assert elapsed < DOWN_TIMEOUT + 3, f"failing took {elapsed:.1f} s"


def test_server_restarts_on_same_port(private_server, export_dir):
    """A stopped server can be started again on its port. A client that
    failed while it was down reads again right after the restart (thanks to
    ConnectionWindow/StreamErrorWindow in configure_client_timeouts)."""
    server = private_server
    port = server.port
    url = server.url(export_dir / "events.root")
    xrootd = {"handler": uproot.source.xrootd.XRootDSource}
    with uproot.open(url, timeout=OPEN_TIMEOUT, **xrootd) as f:
        assert f["Events"].num_entries == 100

    server.stop()
    with pytest.raises(OSError):
        uproot.open(url, timeout=1, **xrootd)

    server.start()
    assert server.port == port and server.running
    start = time.monotonic()
    with uproot.open(url, timeout=OPEN_TIMEOUT, **xrootd) as f:
        np.testing.assert_array_equal(f["Events"]["n"].array(library="np"), np.arange(100, dtype=np.int32))
    assert time.monotonic() - start < OPEN_TIMEOUT
