"""Run a real XRootD server on loopback for tests.

The tests read remote files through a *real* ``xrootd`` daemon (Debian package
``xrootd-server``, installed by ``scripts/install-test-deps.sh``), not a mock.
This module starts one on ``127.0.0.1:<free port>``, exporting one directory
read-only with no authentication, and stops it again.

Typical use (a pytest fixture)::

    reason = xrootd_available()
    if reason:
        pytest.skip(reason)
    with XRootDServer(export_dir, workdir) as server:
        uproot.open(server.url(export_dir / "file.root"), timeout=5)

Things to know (xrootd 5.5 server, pyxrootd client):

* ``xrootd`` refuses to run as root. As root we start it with
  ``runuser -u xrootd --``; otherwise it runs as the current user. As user
  ``xrootd`` it must be able to read ``export_dir`` (and traverse every parent
  directory) and write ``workdir``. ``start()`` checks this and says which path
  is the problem. ``make_readable_by_others()`` grants the access.
* The server listens on all interfaces. ``xrd.allow host localhost`` refuses
  clients that are not on loopback.
* The XRootD *client* defaults are made for production, not for tests
  that stop servers. It checks timeouts only every 15 s. A request without a
  timeout may wait 30 minutes. After losing a server it reconnects only every
  2 minutes, and later refuses that server for 30 minutes. See
  ``CLIENT_TIMEOUTS``. Call ``configure_client_timeouts()`` before anything in
  the process uses the XRootD client (at import time of a test module or
  conftest). Some settings are read only once, when the client starts.
"""

from __future__ import annotations

import atexit
import functools
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

__all__ = [
    "XRootDServer",
    "xrootd_available",
    "configure_client_timeouts",
    "make_readable_by_others",
]

XROOTD_USER = "xrootd"

# XRootD client settings for tests: fail quickly against a stopped server and
# recover quickly after it restarts. Client defaults in brackets.
CLIENT_TIMEOUTS = {
    # How often (s) the client checks for expired requests [15]. With 15,
    # uproot.open(url, timeout=5) against a dead server fails after ~15 s.
    "TimeoutResolution": 1,
    # Timeout for requests sent with timeout=0, i.e. none [1800]. Both uproot
    # (XRootDSource without timeout=) and fsspec-xrootd 0.5 (its vector-read
    # size query) send such requests; on a dead server they block that long.
    "RequestTimeout": 60,
    # After losing a server, the client tries to reconnect ConnectionRetry [5]
    # times, once per ConnectionWindow [120] seconds. While it tries, requests
    # wait and then fail with "Operation expired". With 120, a restarted
    # server is noticed only up to 2 minutes later.
    "ConnectionWindow": 2,
    # Once the retries are used up, every request to that server fails at
    # once with "[FATAL] Connection error", even if the server is back, for
    # StreamErrorWindow [1800] seconds.
    "StreamErrorWindow": 2,
}


def configure_client_timeouts(settings: dict[str, int] | None = None) -> None:
    """Tune the XRootD client of this process for tests (``CLIENT_TIMEOUTS``).

    For each setting, ``XRD_<NAME>`` is set in ``os.environ`` (unless it is set
    already, so the user's choice wins) and passed to the client with
    ``XRootD.client.EnvPutInt``. Call this before the first XRootD request in
    the process. ``TimeoutResolution`` is read once, when the client starts.
    Lumiflow's own production defaults apply the same way (``processor.source``).
    """
    from processor.source import configure_xrootd_client

    configure_xrootd_client(CLIENT_TIMEOUTS if settings is None else settings)


def _is_root() -> bool:
    return os.geteuid() == 0


@functools.lru_cache(maxsize=1)
def xrootd_available() -> str | None:
    """Return ``None`` if a server can be started and read from here,
    otherwise the reason why not (suitable for ``pytest.skip``)."""
    if shutil.which("xrootd") is None:
        return "xrootd binary not found on PATH (install xrootd-server: scripts/install-test-deps.sh)"
    if _is_root():
        try:
            pwd.getpwnam(XROOTD_USER)
        except KeyError:
            return (
                f"running as root but there is no {XROOTD_USER!r} user to run xrootd as (xrootd refuses to run as root)"
            )
        if shutil.which("runuser") is None:
            return "running as root but runuser is not available to drop to user xrootd"
        try:
            probe = subprocess.run(
                ["runuser", "-u", XROOTD_USER, "--", "true"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"cannot run commands as user {XROOTD_USER!r} via runuser: {exc}"
        if probe.returncode != 0:
            return (
                f"cannot run commands as user {XROOTD_USER!r} via runuser: "
                f"{probe.stderr.decode(errors='replace').strip()}"
            )
    try:
        import XRootD.client  # noqa: F401
    except ImportError as exc:
        return f"python XRootD bindings missing (pip install xrootd): {exc}"
    try:
        import fsspec_xrootd  # noqa: F401
    except ImportError as exc:
        return f"fsspec-xrootd missing (pip install fsspec-xrootd): {exc}"
    return None


def make_readable_by_others(path: Path) -> None:
    """Let other users (user ``xrootd``) read the tree at ``path``.

    Adds o+x to every parent directory we may change and o+rX to ``path``
    and everything under it. Loosens permissions, so use it on test
    directories only.

    Prefer a directory from ``tempfile.mkdtemp()`` to pytest's ``tmp_path``.
    ``tmp_path`` lives under ``/tmp/pytest-of-<user>/``, and every pytest
    session that starts resets that directory to mode 0700, which cuts off
    the server of another session already running.
    """
    path = Path(path).resolve()
    for parent in reversed(path.parents):
        st = parent.stat()
        if not st.st_mode & stat.S_IXOTH and (_is_root() or st.st_uid == os.geteuid()):
            os.chmod(parent, st.st_mode | stat.S_IXOTH)
    targets = [path]
    if path.is_dir():
        targets += list(path.rglob("*"))
    for p in targets:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        extra = stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0)
        if mode & extra != extra:
            os.chmod(p, mode | extra)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _xrootd_handshake(port: int, timeout: float = 1.0) -> bool:
    """True if an XRootD data server answers the protocol handshake on port.

    Checking that the port accepts connections is not enough. The kernel
    accepts them once the socket listens, which can be before xrootd serves
    requests.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack("!5i", 0, 0, 0, 4, 2012))
            data = b""
            while len(data) < 16:
                chunk = s.recv(16 - len(data))
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    _streamid, status, rlen = struct.unpack("!2sHi", data[:8])
    return status == 0 and rlen == 8


class XRootDServer:
    """A real xrootd serving ``export_dir`` read-only on 127.0.0.1:<free port>.

    ``workdir`` receives the config, admin/pid directories and logs
    (``workdir/xrootd.log`` and ``workdir/xrootd.stdout``). The port is
    chosen when the object is created and stays the same across
    ``stop()``/``start()``, so URLs stay valid when a test restarts the server.
    """

    def __init__(self, export_dir: Path, workdir: Path, http: bool = False):
        self.export_dir = Path(export_dir).resolve()
        self.workdir = Path(workdir).resolve()
        self.port: int = _free_port()
        # xrootd's HTTP plugin (XrdHttp) serves the same files over plain HTTP with Range support
        self.http_port: int | None = _free_port() if http else None
        self._proc: subprocess.Popen | None = None
        self._started_once = False
        self.config_file = self.workdir / "xrootd.cfg"
        self.log_file = self.workdir / "xrootd.log"
        self.stdout_file = self.workdir / "xrootd.stdout"
        self._run_as_xrootd_user = _is_root()

    # -- public API ---------------------------------------------------------

    def url(self, path: Path) -> str:
        """``root://127.0.0.1:PORT//abs/path`` for a file under ``export_dir``."""
        path = Path(path)
        if not path.is_absolute():
            path = self.export_dir / path
        return f"root://127.0.0.1:{self.port}/{path.resolve()}"

    def http_url(self, path: Path) -> str:
        """``http://127.0.0.1:HTTP_PORT/abs/path`` (the server must be made with ``http=True``)."""
        if self.http_port is None:
            raise ValueError("this server was created without http=True")
        path = Path(path)
        if not path.is_absolute():
            path = self.export_dir / path
        return f"http://127.0.0.1:{self.http_port}{path.resolve()}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start xrootd and wait at most ``timeout`` seconds until it answers.

        Raises ``RuntimeError`` (with the end of the xrootd log) if it exits
        or does not answer in time. If the port was taken between choosing it
        and starting, the first start retries on another port.
        """
        if self.running:
            return
        reason = xrootd_available()
        if reason:
            raise RuntimeError(f"cannot start xrootd: {reason}")
        deadline = time.monotonic() + timeout
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._start_once(deadline)
                self._started_once = True
                return
            except _PortInUse:
                if attempt == attempts - 1:
                    raise RuntimeError(
                        f"xrootd could not bind port {self.port}: address in use\n" + self._log_tail()
                    ) from None
                self.port = _free_port()

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM), then SIGKILL its whole process group
        after at most ``timeout`` seconds. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self._atexit_kill)
        # Under runuser, send SIGTERM to xrootd only. runuser passes a SIGTERM
        # on to its child but then sleeps 2 s before returning. Once xrootd
        # exits, runuser exits at once.
        members = [pid for pid in _process_group(proc.pid) if pid != proc.pid]
        if self._run_as_xrootd_user and members:
            for pid in members:
                _kill(pid, signal.SIGTERM)
        else:
            _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left in the group (even if the leader already exited).
        _killpg(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
            pass

    def __enter__(self) -> XRootDServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<XRootDServer {self.export_dir} on 127.0.0.1:{self.port} ({state})>"

    # -- internals ------------------------------------------------------------

    def _prepare(self) -> None:
        admin = self.workdir / "admin"
        run = self.workdir / "run"
        for d in (self.workdir, admin, run):
            d.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "\n".join(
                [
                    "# generated by tests/xrootd_server.py",
                    f"all.export {self.export_dir} r/o",
                    f"all.adminpath {admin}",
                    f"all.pidpath {run}",
                    f"xrd.port {self.port}",
                    "xrd.allow host localhost",
                    # no sec.protocol lines: no authentication
                    *([f"xrd.protocol XrdHttp:{self.http_port} libXrdHttp.so"] if self.http_port else []),
                    "",
                ]
            )
        )
        self.config_file.chmod(0o644)
        # Start each run with a fresh log, so the tail shows this run only.
        for f in (self.log_file, self.stdout_file):
            f.unlink(missing_ok=True)
        if self._run_as_xrootd_user:
            user = pwd.getpwnam(XROOTD_USER)
            for d in (self.workdir, admin, run):
                os.chown(d, user.pw_uid, user.pw_gid)
            self._check_access_as_xrootd()

    def _check_access_as_xrootd(self) -> None:
        checks = [
            (self.workdir, "-w", "write"),
            (self.config_file, "-r", "read"),
            (self.export_dir, "-r", "read"),
            (self.export_dir, "-x", "traverse"),
        ]
        for path, flag, what in checks:
            res = subprocess.run(
                ["runuser", "-u", XROOTD_USER, "--", "test", flag, str(path)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )
            if res.returncode != 0:
                detail = res.stderr.decode(errors="replace").strip()
                raise RuntimeError(
                    f"user {XROOTD_USER!r} cannot {what} {path}; every parent "
                    "directory must be o+x and exported files o+r "
                    "(see make_readable_by_others())" + (f": {detail}" if detail else "")
                )

    def _start_once(self, deadline: float) -> None:
        self._prepare()
        cmd = ["xrootd", "-c", str(self.config_file), "-l", str(self.log_file)]
        if self._run_as_xrootd_user:
            cmd = ["runuser", "-u", XROOTD_USER, "--"] + cmd
        if _setpriv_pdeathsig():
            # If this process dies without cleaning up (SIGKILL, os._exit),
            # the kernel sends our child SIGTERM. runuser passes it on to
            # xrootd. Note: the signal comes when the *thread* that started
            # the server exits, so call start() from a long-lived thread, such
            # as pytest's main thread.
            cmd = ["setpriv", "--pdeathsig", "TERM", "--"] + cmd
        with open(self.stdout_file, "wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills it whole
            )
        atexit.register(self._atexit_kill)
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self.stop()
                tail = self._log_tail()
                if "address already in use" in tail.lower():
                    raise _PortInUse()
                raise RuntimeError(f"xrootd exited with status {rc} during startup\n{tail}")
            # Wait for this process to log that it is initialized. A bare
            # handshake could be answered by another server on the same port
            # while this one has not yet tried to bind.
            if self._initialized() and _xrootd_handshake(self.port, timeout=0.5) and self._http_ready():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"xrootd did not answer on 127.0.0.1:{self.port} in time\n" + self._log_tail())
            time.sleep(0.02)

    def _http_ready(self) -> bool:
        if self.http_port is None:
            return True
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5):
                return True
        except OSError:
            return False

    def _initialized(self) -> bool:
        # xrootd 5.5 binds its port before it initializes any component; each
        # component then logs "... initialization completed." If one of those
        # lines is present, the bind succeeded and the port is this process's.
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return False
        return "initialization completed" in text

    def _log_tail(self, lines: int = 40) -> str:
        parts = []
        for f in (self.stdout_file, self.log_file):
            try:
                text = f.read_text(errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"--- last lines of {f} ---\n{tail}")
        return "\n".join(parts) or "(xrootd wrote no log)"

    def _atexit_kill(self) -> None:
        # Last resort if a test run aborts without teardown.
        if self._proc is not None:
            _killpg(self._proc.pid, signal.SIGKILL)


class _PortInUse(Exception):
    pass


@functools.lru_cache(maxsize=1)
def _setpriv_pdeathsig() -> bool:
    """Whether util-linux ``setpriv --pdeathsig`` (2.33+) is available."""
    if shutil.which("setpriv") is None:
        return False
    try:
        res = subprocess.run(
            ["setpriv", "--pdeathsig", "TERM", "--", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return res.returncode == 0


def _process_group(pgid: int) -> list[int]:
    """Pids of live processes in process group ``pgid`` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid: int, sig: int) -> None:
    # start_new_session=True made the child the leader of group ``pgid``; the
    # group lives on while any member (e.g. xrootd under runuser) does.
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
