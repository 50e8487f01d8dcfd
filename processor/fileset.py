"""Filesets: which files to read, grouped in datasets with the metadata that weights them.

The layout is coffea's, so existing filesets work unchanged::

    {"ZZTo4mu": {"files": {"root://host//path/a.root": "Events", "data/b*.root": "Events"},
                 "metadata": {"xsec_pb": 0.077, "nevents_generated": 1499064, "kfactor": 1.386,
                              "role": "background", "sample": "ZZ"}}}

``files`` may also be a list of URLs (tree ``Events``) or map a URL to ``{"object_path": tree}``.
Relative local paths are resolved against the fileset file's directory; local globs are expanded.

Metadata keys (anything else is rejected, so a typo never silently changes a weight):

``role``              ``signal``, ``background`` or ``data`` (default: ``data`` if ``is_data``,
                      else ``background``)
``is_data``           real collisions: weight 1 (default: ``role == "data"``)
``xsec_pb``           cross-section in pb (MC: required)
``nevents_generated`` generated events before any filter (MC: this or ``sum_weights``)
``sum_weights``       sum of generator weights, when events are weighted
``kfactor``           multiplicative correction to the cross-section (default 1)
``lumi_pb``           integrated luminosity in /pb (default: the analysis' ``lumi_pb``)
``sample``            HistFactory sample the dataset feeds (default: ``signal`` for the signal,
                      ``data`` for data, the dataset name for a background)
``channels``          restrict the analysis channels this dataset feeds (e.g. a trigger stream)
``label``             legend label in plots

MC weight = ``xsec_pb * lumi_pb * kfactor / (sum_weights or nevents_generated)``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import yaml

__all__ = ["Dataset", "DatasetInfo", "Fileset", "FilesetError", "WorkItem", "load_fileset", "parse_fileset"]

ROLES = ("signal", "background", "data")
DEFAULT_TREE = "Events"
_GLOB_CHARS = set("*?[")
_TYPES: dict[str, tuple[type, ...]] = {
    "role": (str,),
    "is_data": (bool,),
    "xsec_pb": (int, float),
    "nevents_generated": (int, float),
    "sum_weights": (int, float),
    "kfactor": (int, float),
    "lumi_pb": (int, float),
    "sample": (str,),
    "channels": (list,),
    "label": (str,),
}


class FilesetError(ValueError):
    """The fileset is malformed; the message names the dataset and the field."""


@dataclass(frozen=True)
class DatasetInfo:
    """What ``process`` learns about the dataset of the file it is given."""

    name: str
    role: str
    sample: str
    is_data: bool
    weight: float
    channels: tuple[str, ...] | None = None
    label: str | None = None

    def feeds(self, channel: str) -> bool:
        """Whether events of this dataset may enter ``channel`` (trigger-stream restriction)."""
        return self.channels is None or channel in self.channels


@dataclass(frozen=True)
class WorkItem:
    """One task: a file (or an entry range of it) of one dataset.

    ``index`` is the item's position in the fileset; reports are ordered by it so that they do
    not depend on which worker finished first.
    """

    index: int
    dataset: str
    url: str
    treename: str = DEFAULT_TREE
    entry_start: int | None = None
    entry_stop: int | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    files: tuple[tuple[str, str], ...]
    metadata: Mapping[str, Any]

    def info(self, default_lumi_pb: float | None = None) -> DatasetInfo:
        """Resolve role, sample and per-event weight; MC without what a weight needs is an error."""
        meta = self.metadata
        is_data = bool(meta.get("is_data", meta.get("role") == "data"))
        role = meta.get("role", "data" if is_data else "background")
        if is_data and role != "data":
            raise FilesetError(f"dataset {self.name!r}: is_data is true but role is {role!r}")
        if role == "data" and not is_data and "is_data" in meta:
            raise FilesetError(f"dataset {self.name!r}: role is 'data' but is_data is false")
        if is_data:
            weight = 1.0
        else:
            weight = self._mc_weight(default_lumi_pb)
        default_sample = {"signal": "signal", "data": "data"}.get(role, self.name)
        channels = meta.get("channels")
        return DatasetInfo(
            name=self.name,
            role=role,
            sample=meta.get("sample", default_sample),
            is_data=is_data,
            weight=weight,
            channels=tuple(channels) if channels is not None else None,
            label=meta.get("label"),
        )

    def _mc_weight(self, default_lumi_pb: float | None) -> float:
        meta = self.metadata
        if "xsec_pb" not in meta:
            raise FilesetError(f"dataset {self.name!r}: simulated dataset needs metadata.xsec_pb")
        norm = meta.get("sum_weights", meta.get("nevents_generated"))
        if norm is None:
            raise FilesetError(
                f"dataset {self.name!r}: simulated dataset needs metadata.nevents_generated or metadata.sum_weights"
            )
        if norm <= 0:
            raise FilesetError(f"dataset {self.name!r}: metadata.nevents_generated/sum_weights must be > 0")
        lumi = meta.get("lumi_pb", default_lumi_pb)
        if lumi is None:
            raise FilesetError(
                f"dataset {self.name!r}: metadata.lumi_pb is missing and the analysis defines no lumi_pb"
            )
        return float(meta["xsec_pb"]) * float(lumi) * float(meta.get("kfactor", 1.0)) / float(norm)


@dataclass(frozen=True)
class Fileset:
    datasets: Mapping[str, Dataset]
    sha256: str

    def work_items(self) -> list[WorkItem]:
        """One work item per file, in fileset order."""
        items = []
        for dataset in self.datasets.values():
            for url, tree in dataset.files:
                items.append(WorkItem(index=len(items), dataset=dataset.name, url=url, treename=tree))
        return items

    def infos(self, default_lumi_pb: float | None = None) -> dict[str, DatasetInfo]:
        """Every dataset's resolved info; raises before any work if a weight cannot be formed."""
        return {name: ds.info(default_lumi_pb) for name, ds in self.datasets.items()}

    def __len__(self) -> int:
        return sum(len(ds.files) for ds in self.datasets.values())


def load_fileset(path: str | os.PathLike[str]) -> Fileset:
    """Read a JSON or YAML fileset; relative local paths resolve against its directory."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FilesetError(f"cannot read fileset {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            obj = yaml.safe_load(text)
        else:
            obj = json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise FilesetError(
            f"fileset {path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {exc}"
        ) from exc
    return parse_fileset(obj, base_dir=path.parent)


def parse_fileset(obj: Any, base_dir: str | os.PathLike[str] | None = None) -> Fileset:
    """Validate a fileset already loaded into Python objects."""
    if not isinstance(obj, Mapping) or not obj:
        raise FilesetError("a fileset is a non-empty mapping {dataset: {'files': ..., 'metadata': ...}}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    datasets = {}
    for name, body in obj.items():
        if not isinstance(body, Mapping):
            raise FilesetError(f"dataset {name!r}: expected a mapping with 'files' and 'metadata'")
        unknown = set(body) - {"files", "metadata"}
        if unknown:
            raise FilesetError(f"dataset {name!r}: unknown keys {sorted(unknown)} (allowed: files, metadata)")
        metadata = dict(body.get("metadata") or {})
        _check_metadata(name, metadata)
        files = tuple(_expand(name, body.get("files"), base))
        datasets[name] = Dataset(name=name, files=files, metadata=metadata)
    canonical = json.dumps(
        {n: {"files": d.files, "metadata": d.metadata} for n, d in datasets.items()}, sort_keys=True, default=str
    )
    return Fileset(datasets=datasets, sha256=hashlib.sha256(canonical.encode()).hexdigest())


def _check_metadata(name: str, metadata: dict[str, Any]) -> None:
    for key, value in metadata.items():
        if key not in _TYPES:
            raise FilesetError(f"dataset {name!r}: unknown metadata key {key!r} (allowed: {', '.join(_TYPES)})")
        types = _TYPES[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise FilesetError(f"dataset {name!r}: metadata.{key} has the wrong type ({type(value).__name__})")
    if "role" in metadata and metadata["role"] not in ROLES:
        raise FilesetError(f"dataset {name!r}: metadata.role must be one of {', '.join(ROLES)}")


def _file_entries(name: str, files: Any) -> Iterator[tuple[str, str]]:
    if isinstance(files, str):
        files = [files]
    if isinstance(files, list):
        for url in files:
            if not isinstance(url, str):
                raise FilesetError(f"dataset {name!r}: file entries must be URLs (strings)")
            yield url, DEFAULT_TREE
    elif isinstance(files, Mapping):
        for url, tree in files.items():
            if isinstance(tree, Mapping):
                tree = tree.get("object_path", DEFAULT_TREE)
            if tree is not None and not isinstance(tree, str):
                raise FilesetError(f"dataset {name!r}: tree name for {url!r} must be a string")
            yield url, tree or DEFAULT_TREE
    else:
        raise FilesetError(f"dataset {name!r}: 'files' must be a list of URLs or a mapping {{url: treename}}")


def _expand(name: str, files: Any, base: Path) -> Iterator[tuple[str, str]]:
    empty = True
    for url, tree in _file_entries(name, files):
        for resolved in _expand_url(name, url, base):
            empty = False
            yield resolved, tree
    if empty:
        raise FilesetError(f"dataset {name!r}: no files")


def _expand_url(name: str, url: str, base: Path) -> list[str]:
    remote = "://" in url and not url.startswith("file://")
    if not remote:
        local = Path(url.removeprefix("file://")).expanduser()
        if not local.is_absolute():
            local = base / local
        if _GLOB_CHARS & set(str(local)):
            matches = sorted(glob.glob(str(local)))
            if not matches:
                raise FilesetError(f"dataset {name!r}: glob {url!r} matches no file")
            return matches
        return [str(local)]
    if _GLOB_CHARS & set(url.split("://", 1)[1]):
        fs, path = fsspec.core.url_to_fs(url)
        matches = sorted(fs.unstrip_protocol(p) for p in fs.glob(path))
        if not matches:
            raise FilesetError(f"dataset {name!r}: glob {url!r} matches no file")
        return matches
    return [url]
