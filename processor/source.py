"""Open a file by URL (local, ``root://``, ``https://``, ``s3://``) and read only the needed columns.

Everything goes through uproot: ``root://`` with uproot's XRootD source (the ``xrootd`` extra),
``http(s)://`` with uproot's HTTP source (standard library, no extra), anything else fsspec
knows (``s3://`` with ``s3fs``, ...) through fsspec. Errors are sorted into transient ones (worth
a retry: timeouts, dropped connections) and permanent ones (missing file, not ROOT, missing
tree or branch), and re-raised with the file and the reason in the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import awkward as ak
import uproot

from .fileset import WorkItem

__all__ = ["DEFAULT_TIMEOUT", "InputError", "ReadResult", "is_transient", "read_columns"]

#: seconds that one remote request may take before it counts as a (transient) failure
DEFAULT_TIMEOUT = 60.0

_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_PERMANENT_MESSAGES = ("no such file", "not found", "permission denied", "is a directory")


class InputError(Exception):
    """The file is readable but not usable: wrong tree name, missing branch, not ROOT."""


@dataclass
class ReadResult:
    events: ak.Array
    bytes_read: int


def is_transient(exc: BaseException) -> bool:
    """Whether retrying could help: timeouts and connection trouble, not missing or corrupt files."""
    if isinstance(exc, (InputError, *_PERMANENT_OS_ERRORS)):
        return False
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OSError):
        message = str(exc).lower()
        return not any(m in message for m in _PERMANENT_MESSAGES)
    return False


def read_columns(item: WorkItem, columns: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> ReadResult:
    """Read ``columns`` of ``item``'s tree (TTree or RNTuple) into an awkward record array."""
    options: dict = {"timeout": timeout}
    if item.url.startswith("root://"):
        # measured faster than the fsspec route for XRootD
        options["handler"] = uproot.source.xrootd.XRootDSource
    elif item.url.startswith(("http://", "https://")):
        options["handler"] = uproot.source.http.HTTPSource
    try:
        file = uproot.open(item.url, **options)
    except ValueError as exc:  # uproot: "not a ROOT file: first four bytes are ..."
        raise InputError(str(exc).split("\n")[0]) from exc
    with file:
        try:
            tree = file[item.treename]
        except uproot.KeyInFileError:
            trees = [k.split(";")[0] for k, c in file.classnames().items() if c in ("TTree", "ROOT::RNTuple")]
            raise InputError(
                f"no tree {item.treename!r} in file (it holds: {', '.join(trees) or 'no trees'})"
            ) from None
        available = set(tree.keys())
        missing = [c for c in columns if c not in available]
        if missing:
            raise InputError(f"tree {item.treename!r} has no branch {', '.join(map(repr, missing))}")
        events = tree.arrays(list(columns), entry_start=item.entry_start, entry_stop=item.entry_stop, library="ak")
        # RNTuples also return the collection records the fields live in; keep what was asked for
        events = events[list(columns)]
        return ReadResult(events=events, bytes_read=int(file.file.source.num_requested_bytes))
