"""The run journal: each finished file's partial result on disk, so an interrupted run resumes.

A run that writes outputs to ``DIR`` keeps ``DIR/journal/``: a ``manifest.json`` naming the
analysis and fileset versions (their sha256), and one ``<index>.partial`` per file that finished
successfully, written as its partial arrives at the client (temporary file, then rename: a
killed client leaves whole entries or none). ``lumiflow run ... --resume DIR`` merges the
journaled partials and runs only the other files; exact merging (:mod:`processor.partial`) makes
the result bit-identical to an uninterrupted run. Failed files are not journaled: a resume
retries them. Once every file has succeeded and the outputs are written, the journal is removed.

Why the client writes it: workers may have no filesystem in common with the client (Kubernetes
pods), so only the client can write the journal. With Dask the client fetches each file's small
partial as it finishes (one at a time: its memory stays flat) while the tree reduction goes on
on the workers unchanged.

The entries are pickles written by this process; they are loaded only from the directory the
user names with ``--resume`` (like the analysis module, it is the user's own code and data).
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

from .outputs import atomic_path
from .partial import Partial, merge

__all__ = ["Journal", "JournalError"]

_MANIFEST = "manifest.json"
_SUFFIX = ".partial"


class JournalError(ValueError):
    """The journal cannot be resumed: absent, or written for another analysis or fileset."""


@dataclass(frozen=True)
class Journal:
    directory: Path
    analysis_sha256: str
    fileset_sha256: str

    @classmethod
    def start(cls, out_dir: Path, analysis_sha256: str, fileset_sha256: str) -> Journal:
        """A fresh journal in ``out_dir/journal``; an earlier run's entries there are removed."""
        journal = cls(Path(out_dir) / "journal", analysis_sha256, fileset_sha256)
        journal.directory.mkdir(parents=True, exist_ok=True)
        # manifest first: a start interrupted here leaves no resumable mix of old entries
        (journal.directory / _MANIFEST).unlink(missing_ok=True)
        for entry in journal.directory.glob(f"*{_SUFFIX}"):  # entries, and temporary files of killed writes
            entry.unlink()
        _write_atomic(
            journal.directory / _MANIFEST,
            json.dumps({"analysis_sha256": analysis_sha256, "fileset_sha256": fileset_sha256}, indent=1).encode(),
        )
        return journal

    @classmethod
    def resume(cls, out_dir: Path, analysis_sha256: str, fileset_sha256: str) -> Journal:
        """The journal in ``out_dir/journal``, refused unless written for this analysis and fileset."""
        directory = Path(out_dir) / "journal"
        try:
            manifest = json.loads((directory / _MANIFEST).read_text())
        except FileNotFoundError:
            raise JournalError(f"nothing to resume in {out_dir}: it holds no run journal") from None
        except (OSError, ValueError) as exc:
            raise JournalError(f"cannot read the journal manifest in {directory}: {exc}") from exc
        for what, expected in (("analysis", analysis_sha256), ("fileset", fileset_sha256)):
            found = manifest.get(f"{what}_sha256")
            if found != expected:
                raise JournalError(
                    f"the journal in {directory} was written for another version of the {what} "
                    f"(sha256 {str(found)[:12]}…, this one is {expected[:12]}…): resume with the same "
                    f"{what}, or run without --resume to start over"
                )
        return cls(directory, analysis_sha256, fileset_sha256)

    def record(self, partial: Partial) -> None:
        """Keep one file's partial (an executor's ``on_partial``); failed files are not kept."""
        if len(partial.files) != 1 or not partial.files[0].ok:
            return
        _write_atomic(self.directory / f"{partial.files[0].index}{_SUFFIX}", pickle.dumps(partial))

    def discard(self) -> None:
        """Remove the journal: the run is complete (manifest first, so no partial journal resumes)."""
        (self.directory / _MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(self.directory)  # temporaries of an interrupted write go too

    def indices(self) -> list[int]:
        """The fileset indices of the journaled files, in order."""
        return sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())

    def done(self) -> Partial:
        """The merge of every journaled file (each file once: merging refuses duplicates)."""
        return merge(pickle.loads((self.directory / f"{i}{_SUFFIX}").read_bytes()) for i in self.indices())


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
