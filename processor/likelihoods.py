"""Published likelihoods: a background-only workspace and its signal patches, as HEPData serves them.

Experiments publish a full likelihood as a background-only pyhf workspace plus one patch per
signal model. Three layouts are in use, and all are read here:

* ``BkgOnly.json`` with a pyhf *PatchSet* (``patchset.json``): patch names, parameter values and
  their labels come from its metadata, and its digest must match the workspace;
* ``BkgOnly.json`` with plain JSON-patch files ``patch.<name>.json`` (the 2019 ATLAS format): a
  patch's parameter values are the numbers in its name (``sbottom_1300_850_60`` gives
  1300, 850, 60);
* an archive (``.tar.gz``, ``.tgz``, ``.tar``) or a directory holding either of those, possibly
  one directory per signal region. Archive members are read in place, never extracted, so a
  member name cannot write anywhere.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import pyhf

__all__ = ["Likelihood", "LikelihoodError", "SignalPatch", "load_likelihood"]

_BACKGROUND = "bkgonly.json"  # compared case-insensitively: HEPData archives spell it BkgOnly.json
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2")
_NUMBER = re.compile(r"^-?\d+(?:[.p]\d+)?$")  # "0p5" is how names write 0.5


class LikelihoodError(ValueError):
    """The likelihood cannot be read: a missing file, a malformed patch, a region to choose."""


@dataclass(frozen=True)
class SignalPatch:
    """One signal model: a JSON patch that adds its samples to the background-only workspace."""

    name: str
    values: tuple[float | str, ...]  # the model's parameters (masses; a PatchSet may also name them), as given
    operations: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Likelihood:
    """A background-only workspace specification and the signal patches to test against it."""

    name: str
    background: dict[str, Any]
    patches: tuple[SignalPatch, ...]
    labels: tuple[str, ...]  # one per parameter value

    def select(self, patterns: Sequence[str]) -> Likelihood:
        """Only the patches whose name matches one of ``patterns`` (shell globs: ``sbottom_*_60``)."""
        if not patterns:
            return self
        chosen = tuple(p for p in self.patches if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns))
        unmatched = [pat for pat in patterns if not any(fnmatch.fnmatchcase(p.name, pat) for p in self.patches)]
        if unmatched:
            some = ", ".join(p.name for p in self.patches[:5])
            raise LikelihoodError(
                f"no patch of {self.name} matches {', '.join(map(repr, unmatched))} "
                f"({len(self.patches)} patches, e.g. {some})"
            )
        return replace(self, patches=chosen)


def load_likelihood(
    source: str | os.PathLike[str],
    patchsets: Sequence[str | os.PathLike[str]] = (),
    *,
    region: str | None = None,
    labels: Sequence[str] | None = None,
) -> Likelihood:
    """The likelihood in ``source``: a background-only workspace file, an archive or a directory.

    ``patchsets``: PatchSet files, JSON-patch files or directories of them, for a ``source`` that
    is a workspace file; an archive or directory brings its own. ``region`` picks one of several
    background-only workspaces in an archive (the directory holding it). ``labels`` names the
    parameter values (PatchSets name them; names of plain patches do not).
    """
    path = Path(source)
    if not path.exists():
        raise LikelihoodError(f"{path}: no such file or directory")
    if path.is_dir() or path.name.endswith(_ARCHIVE_SUFFIXES):
        if patchsets:
            raise LikelihoodError(f"{path} brings its own patches: --patchset goes with a background-only JSON file")
        files = _directory_files(path) if path.is_dir() else _archive_files(path)
        directory = _choose_region(path, files, region)
        background = _json(files[directory / _background_name(files, directory)], f"{path}:{directory}")
        found = [
            (str(name), read) for name, read in files.items() if name.parent == directory and name.suffix == ".json"
        ]
        name = directory.name or path.name.split(".")[0]
    else:
        if region is not None:
            raise LikelihoodError("--region chooses a region of an archive or directory, not of a JSON file")
        background = _json(lambda: path.read_bytes(), str(path))
        found = []
        for given in map(Path, patchsets):
            if not given.exists():
                raise LikelihoodError(f"{given}: no such file or directory")
            members = sorted(given.glob("*.json")) if given.is_dir() else [given]
            found += [(str(m), (lambda m=m: m.read_bytes())) for m in members]
        name = path.stem
    _check_workspace(background, str(path))
    patches, patch_labels = _patches(found, background)
    if not patches:
        raise LikelihoodError(f"no signal patches found for {path} (give PatchSet or patch files with --patchset)")
    return Likelihood(name, background, tuple(patches), _labels(patches, labels or patch_labels))


Reader = Callable[[], bytes]


def _json(read: Reader, where: str) -> Any:
    try:
        return json.loads(read())
    except (OSError, tarfile.TarError) as exc:
        raise LikelihoodError(f"{where}: cannot read it ({exc})") from exc
    except ValueError as exc:
        raise LikelihoodError(f"{where}: not valid JSON ({exc})") from exc


def _directory_files(root: Path) -> dict[PurePosixPath, Reader]:
    return {
        PurePosixPath(p.relative_to(root).as_posix()): (lambda p=p: p.read_bytes())
        for p in sorted(root.rglob("*.json"))
        if p.is_file()
    }


def _archive_files(path: Path) -> dict[PurePosixPath, Reader]:
    try:
        with tarfile.open(path) as tar:
            members = {
                m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile() and m.name.endswith(".json")
            }
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise LikelihoodError(f"{path}: not a readable tar archive ({exc})") from exc
    return {PurePosixPath(name): (lambda data=data: data) for name, data in sorted(members.items())}


def _background_name(files: dict[PurePosixPath, Reader], directory: PurePosixPath) -> str:
    return next(p.name for p in files if p.parent == directory and p.name.lower() == _BACKGROUND)


def _choose_region(path: Path, files: dict[PurePosixPath, Reader], region: str | None) -> PurePosixPath:
    regions = sorted({p.parent for p in files if p.name.lower() == _BACKGROUND})
    if not regions:
        raise LikelihoodError(f"{path} holds no background-only workspace (BkgOnly.json)")
    if region is not None:
        chosen = [r for r in regions if r.name == region or str(r) == region]
        if not chosen:
            raise LikelihoodError(f"{path} has no region {region!r} (it has: {', '.join(map(str, regions))})")
        return chosen[0]
    if len(regions) > 1:
        raise LikelihoodError(f"{path} holds several regions; choose one with --region: {', '.join(map(str, regions))}")
    return regions[0]


def _patches(found: list[tuple[str, Reader]], background: dict[str, Any]) -> tuple[list[SignalPatch], list[str]]:
    """Every patch in ``found``: PatchSets (verified against ``background``) and plain JSON patches."""
    patches: list[SignalPatch] = []
    labels: list[str] = []
    for where, read in found:
        if Path(where).name.lower() == _BACKGROUND:
            continue
        content = _json(read, where)
        if isinstance(content, list):
            name = Path(where).name.removesuffix(".json").removeprefix("patch.")
            patches.append(SignalPatch(name, _values_in(name), tuple(content)))
        elif isinstance(content, dict) and "patches" in content:
            patchset = _patchset(content, background, where)
            labels = list(patchset.labels)
            patches += [SignalPatch(p.name, tuple(map(_value, p.values)), tuple(p.patch)) for p in patchset]
    names = [p.name for p in patches]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise LikelihoodError(f"patches given twice: {', '.join(twice[:5])}")
    return patches, labels


def _check_workspace(spec: Any, where: str) -> None:
    """A background that is not a pyhf workspace fails here once, not once per patch."""
    try:
        pyhf.Workspace(spec)
    except (pyhf.exceptions.InvalidSpecification, pyhf.exceptions.InvalidWorkspaceOperation, TypeError) as exc:
        raise LikelihoodError(f"{where}: not a valid pyhf workspace ({str(exc).splitlines()[0]})") from None


def _patchset(content: dict[str, Any], background: dict[str, Any], where: str) -> pyhf.PatchSet:
    try:
        patchset = pyhf.PatchSet(content)
        patchset.verify(background)
    except pyhf.exceptions.PatchSetVerificationError as exc:
        raise LikelihoodError(f"{where} was made for another background-only workspace: {exc}") from None
    except (pyhf.exceptions.InvalidSpecification, pyhf.exceptions.InvalidPatchSet) as exc:
        raise LikelihoodError(f"{where} is not a valid pyhf PatchSet: {exc}") from None
    return patchset


def _value(value: float | str) -> float | str:
    """A PatchSet value: a number, or a name (pyhf's schema allows strings: ``"wino"``)."""
    return value if isinstance(value, str) else float(value)


def _values_in(name: str) -> tuple[float, ...]:
    return tuple(float(t.replace("p", ".")) for t in re.split(r"[_\s]+", name) if _NUMBER.match(t))


def _labels(patches: list[SignalPatch], labels: Sequence[str]) -> tuple[str, ...]:
    width = len(patches[0].values)
    if any(len(p.values) != width for p in patches):
        return ()  # names with different numbers of values: no parameter space to plot
    if labels and len(labels) != width:
        raise LikelihoodError(f"{len(labels)} labels given for {width} parameter values per patch")
    return tuple(labels) if labels else tuple(f"x{i + 1}" for i in range(width))
