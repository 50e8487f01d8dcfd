"""Open a file by URL (local, ``root://``, ``https://``, ``s3://``) and read only the needed columns.

Everything goes through uproot: ``root://`` with uproot's XRootD source (the ``xrootd`` extra),
``http(s)://`` with uproot's HTTP source (standard library, no extra), anything else fsspec
knows (``s3://`` with ``s3fs``, ...) through fsspec. Errors are sorted into transient ones (worth
a retry: timeouts, dropped connections) and permanent ones (missing file, not ROOT, missing
tree or branch), and re-raised with the file and the reason in the message.

Two bounds keep a read from hanging: ``timeout`` per remote request, and ``file_timeout`` on
the whole read of one file (all requests together, see :func:`within`), so that a
server that accepts connections but drip-feeds or never answers costs at most that long.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import awkward as ak
import uproot

from .baskets import BasketDecoder, BasketError, basket_decoder
from .fileset import WorkItem

__all__ = [
    "ColumnReader",
    "DEFAULT_FILE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "XROOTD_CLIENT_DEFAULTS",
    "FileTimeout",
    "InputError",
    "ReadResult",
    "configure_xrootd_client",
    "is_transient",
    "open_columns",
    "read_columns",
    "within",
]

T = TypeVar("T")

#: seconds that one remote request may take before it counts as a (transient) failure
DEFAULT_TIMEOUT = 60.0
#: seconds that reading one file may take in all (every request and retry); then the file fails
DEFAULT_FILE_TIMEOUT = 900.0

#: XRootD client settings for production runs (client defaults in brackets), applied in every
#: process that reads ``root://`` unless the user set ``XRD_<NAME>`` in the environment.
XROOTD_CLIENT_DEFAULTS = {
    # how often (s) request timeouts are checked [15]: a 60 s timeout could otherwise take 75 s
    "TimeoutResolution": 1,
    # timeout (s) for requests sent without one [1800]; some client-internal requests are
    "RequestTimeout": 120,
    # after losing a server, one reconnection attempt per this many seconds [120]
    "ConnectionWindow": 15,
    # a server that dropped is refused at once for this long (s), even when back [1800]: with the
    # default, a one-minute outage of one storage node fails every later file on it for 30 minutes
    "StreamErrorWindow": 60,
}

_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_PERMANENT_MESSAGES = ("no such file", "not found", "permission denied", "is a directory")


class InputError(Exception):
    """The file is readable but not usable: wrong tree name, missing branch, not ROOT, truncated."""


class FileTimeout(TimeoutError):
    """Reading one file took longer than the per-file timeout (not retried: the time is spent)."""


@dataclass
class ReadResult:
    events: ak.Array
    bytes_read: int


def is_transient(exc: BaseException) -> bool:
    """Whether retrying could help: timeouts and connection trouble, not missing or corrupt files."""
    if isinstance(exc, (InputError, FileTimeout, *_PERMANENT_OS_ERRORS)):
        return False
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OSError):
        message = str(exc).lower()
        return not any(m in message for m in _PERMANENT_MESSAGES)
    return False


def configure_xrootd_client(settings: Mapping[str, int] = XROOTD_CLIENT_DEFAULTS) -> None:
    """Give this process' XRootD client ``settings`` unless ``XRD_<NAME>`` says otherwise.

    Sets ``XRD_<NAME>`` (inherited by child processes) and tells the running client with
    ``EnvPutInt``. Call it before the process' first XRootD request: ``TimeoutResolution`` is
    read once, when the client starts. Idempotent and cheap (a no-op once the variables are set).
    """
    try:
        from XRootD import client as xrd_client
    except ImportError:  # no xrootd extra: root:// URLs fail later with uproot's message
        xrd_client = None
    for name, value in settings.items():
        env_name = "XRD_" + name.upper()
        if env_name in os.environ:
            continue
        os.environ[env_name] = str(value)
        if xrd_client is not None:
            xrd_client.EnvPutInt(name, int(value))


def within(
    seconds: float,
    call: Callable[[], T],
    what: str = "reading the file",
    when_late: Callable[[T | None], object] | None = None,
) -> T:
    """``call()``, abandoned with :class:`FileTimeout` if it is not done in ``seconds``.

    It runs in a daemon thread, so that a blocked socket cannot hold the task forever; an
    abandoned call ends by itself when its own request timeout expires, and then hands what it
    returned (None after an error) to ``when_late``, which closes what would otherwise stay open.
    """
    lock = threading.Lock()
    outcome: dict[str, object] = {}

    def target() -> None:
        result, error = None, None
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            error = exc
        with lock:
            late = outcome.get("abandoned", False)
            if not late:
                outcome.update(result=result, error=error)
        if late and when_late is not None:
            when_late(result)

    thread = threading.Thread(target=target, name="lumiflow-read", daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(max(seconds, 0.0))
    with lock:
        if "result" not in outcome:
            outcome["abandoned"] = True
            waited = time.monotonic() - start
            raise FileTimeout(f"gave up {what} after {waited:.0f} s: the per-file timeout (--file-timeout) ran out")
    if outcome["error"] is not None:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]


class ColumnReader:
    """The needed columns of one open tree (TTree or RNTuple), read in entry ranges.

    A file is read in *steps* of whole clusters (the entry ranges at which every branch starts a
    new basket), each about ``step_bytes`` once decompressed, so that a task's memory is bounded
    by the step, not by the file, and no basket is decompressed twice. Use :func:`open_columns`.
    """

    def __init__(self, file: Any, tree: Any, item: WorkItem, columns: Sequence[str], types: Mapping[str, str]):
        self._file = file
        self._tree = tree
        self.item = item
        self.columns = list(columns)
        self._types = types
        self.entry_start = item.entry_start or 0
        self.entry_stop = tree.num_entries if item.entry_stop is None else min(item.entry_stop, tree.num_entries)

    def __enter__(self) -> ColumnReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def bytes_read(self) -> int:
        """Bytes fetched from the file so far (metadata included)."""
        return int(self._file.file.source.num_requested_bytes)

    def steps(self, step_bytes: float | None) -> list[tuple[int, int]]:
        """Cluster-aligned ``(start, stop)`` ranges covering this item, each about ``step_bytes``.

        Greedy from the item's first entry, so a read resumed at any step boundary continues with
        the same steps (the histograms' bits depend on how a file is cut).
        """
        start, stop = self.entry_start, self.entry_stop
        if stop <= start:
            return [(start, start)]
        offsets = getattr(self._tree, "common_entry_offsets", None)  # TTrees; RNTuples are read whole
        if step_bytes is None or offsets is None:
            return [(start, stop)]
        per_entry = sum(self._tree[c].uncompressed_bytes for c in self.columns) / max(self._tree.num_entries, 1)
        if per_entry * (stop - start) <= step_bytes:
            return [(start, stop)]
        boundaries = [int(b) for b in offsets(filter_name=self.columns)]
        entries = max(int(step_bytes / per_entry), 1)
        steps = []
        low = high = start  # the step being grown: [low, high), high the last boundary taken
        for boundary in [*(b for b in boundaries if start < b < stop), stop]:
            if high > low and boundary - low > entries:
                steps.append((low, high))
                low = high
            high = boundary
        steps.append((low, high))
        return steps

    @functools.cached_property
    def _baskets(self) -> BasketDecoder | None:
        return basket_decoder(self._tree, self.columns)

    @property
    def decoder(self) -> str:
        """What decodes the columns: ``"baskets"`` (:mod:`processor.baskets`, straight into the final
        arrays: local TTrees of numbers and counted arrays) or ``"uproot"`` (everything else)."""
        with _input_errors(self.item.url):
            return "uproot" if self._baskets is None else "baskets"

    def read(self, start: int, stop: int) -> ak.Array:
        """The columns of entries ``[start, stop)``, types checked."""
        with _input_errors(self.item.url):
            if self._baskets is None:
                events = self._tree.arrays(self.columns, entry_start=start, entry_stop=stop, library="ak")
            else:
                try:
                    events = self._baskets.read(start, stop)
                except BasketError as exc:
                    raise InputError(f"file is damaged: {exc}") from None
        # RNTuples also return the collection records the fields live in; keep what was asked for
        events = events[self.columns]
        for column, expected in self._types.items():
            found = str(events[column].type.content)
            if found != expected:
                raise InputError(f"branch {column!r} has type {found!r}, the analysis expects {expected!r}")
        return events


def open_columns(
    item: WorkItem,
    columns: Sequence[str],
    *,
    types: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ColumnReader:
    """Open ``item``'s file and tree, checking that every column is there.

    ``types`` maps a column to the awkward type the analysis expects for one event
    (``"var * float32"``); a column of another type is an :class:`InputError` naming both.
    """
    options: dict = {"timeout": timeout}
    if item.url.startswith("root://"):
        configure_xrootd_client()
        # measured faster than the fsspec route for XRootD
        options["handler"] = uproot.source.xrootd.XRootDSource
    elif item.url.startswith(("http://", "https://")):
        options["handler"] = uproot.source.http.HTTPSource
    elif "://" not in item.url:
        # uproot's default (fsspec) reads local files through an event-loop thread: measured
        # ~30% more CPU per file than memory-mapping it, and a task gets one core
        options["handler"] = uproot.source.file.MemmapSource
    with _input_errors(item.url):
        try:
            file = uproot.open(item.url, **options)
        except ValueError as exc:  # uproot: "not a ROOT file: first four bytes are ..."
            if "empty file" in str(exc):  # mmap of a zero-byte file
                raise InputError("file is empty or truncated: the file has 0 bytes") from None
            raise InputError(str(exc).split("\n")[0]) from exc
        try:
            tree = file[item.treename]
        except uproot.KeyInFileError:
            trees = [k.split(";")[0] for k, c in file.classnames().items() if c in ("TTree", "ROOT::RNTuple")]
            file.close()
            raise InputError(
                f"no tree {item.treename!r} in file (it holds: {', '.join(trees) or 'no trees'})"
            ) from None
        except BaseException:
            file.close()
            raise
    available = set(tree.keys())
    missing = [c for c in columns if c not in available]
    if missing:
        file.close()
        raise InputError(f"tree {item.treename!r} has no branch {', '.join(map(repr, missing))}")
    return ColumnReader(file, tree, item, columns, types or {})


def read_columns(
    item: WorkItem,
    columns: Sequence[str],
    *,
    types: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ReadResult:
    """Read ``columns`` of ``item``'s whole entry range in one go (see :func:`open_columns`)."""
    with open_columns(item, columns, types=types, timeout=timeout) as reader:
        events = reader.read(reader.entry_start, reader.entry_stop)
        return ReadResult(events=events, bytes_read=reader.bytes_read)


@contextlib.contextmanager
def _input_errors(url: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        # uproot's short read: the file ends before the data its own headers point to
        if "expected Chunk of length" in str(exc):
            raise InputError(f"file is empty or truncated: {_short_read(url, exc)}") from None
        raise


def _short_read(url: str, exc: OSError) -> str:
    words = " ".join(str(exc).split()).split(" for file path ")[0]
    try:
        size = os.path.getsize(url)
    except OSError:
        return words
    return f"{words} (the file has {size} bytes)"
