"""Benchmark inputs: NanoAOD-like H->4l files made once with the demo generator and cached.

Benchmarks need inputs that the demo set does not have: single files of 1M events (one per
compression, same content), a fileset of many mid-sized files for scaling, and thousands of tiny
files for per-task overhead. All are simulated by :func:`processor.demo.write_events_file`
(the demo's physics and schema) into a cache directory, each written under a temporary name and
renamed, so an interrupted run never leaves a truncated file that a later run would reuse.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from processor.cache import cache_root
from processor.demo import GENERATOR_VERSION, LUMI_PB, MC_DATASETS, write_events_file
from processor.fileset import DatasetInfo, WorkItem, parse_fileset

__all__ = [
    "COMPRESSIONS",
    "DATASET",
    "dataset_info",
    "default_data_dir",
    "events_file",
    "fileset_json",
    "many_files_fileset",
    "tiny_files_fileset",
    "work_item",
]

COMPRESSIONS = ("ZSTD", "LZ4", "ZLIB")
#: The simulated sample every benchmark file holds: the H->ZZ->4l signal, so that all three
#: channels select thousands of events and the cross-implementation check compares real numbers.
DATASET = "SMHiggsToZZTo4L"


def default_data_dir() -> Path:
    """``<lumiflow cache>/bench-v<generator version>``: regenerated when the generator changes."""
    return cache_root() / f"bench-v{GENERATOR_VERSION}"


def events_file(data_dir: Path, events: int, compression: str, seed: int = 1) -> Path:
    """One file of ``events`` signal events with ``compression``; same arrays for every compression."""
    path = data_dir / f"{DATASET}-{events}-s{seed}-{compression.lower()}.root"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        write_events_file(tmp, events, dataset=DATASET, seed=seed, compression=compression)
        os.replace(tmp, path)
    return path


def _metadata(nevents_generated: int) -> dict:
    spec = MC_DATASETS[DATASET]
    return {"role": spec.role, "xsec_pb": spec.xsec_pb, "nevents_generated": nevents_generated, "sample": spec.sample}


def fileset_json(data_dir: Path, name: str, files: list[str], nevents_generated: int) -> Path:
    """Write (if changed) a one-dataset fileset listing ``files``; returns its path."""
    path = data_dir / f"{name}.fileset.json"
    text = json.dumps({DATASET: {"files": files, "metadata": _metadata(nevents_generated)}}, indent=1) + "\n"
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def dataset_info(path: str | os.PathLike[str], nevents_generated: int) -> DatasetInfo:
    """The ``DatasetInfo`` Lumiflow gives ``process`` for ``path``: the others use its weight too."""
    fileset = parse_fileset({DATASET: {"files": [str(path)], "metadata": _metadata(nevents_generated)}})
    return fileset.infos(LUMI_PB)[DATASET]


def work_item(path: str | os.PathLike[str]) -> WorkItem:
    """The work item ``processor.run`` would make for a one-file fileset (see ``Fileset.work_items``)."""
    return WorkItem(index=0, dataset=DATASET, url=str(path), treename="Events")


def many_files_fileset(data_dir: Path, n_files: int, events_per_file: int) -> Path:
    """A fileset of ``n_files`` distinct files (different seeds) of ``events_per_file`` events each."""
    files = [str(events_file(data_dir / "many", events_per_file, "ZSTD", seed=100 + i)) for i in range(n_files)]
    return fileset_json(data_dir, f"many-{n_files}x{events_per_file}", files, n_files * events_per_file)


def tiny_files_fileset(data_dir: Path, n_files: int, events_per_file: int = 10) -> Path:
    """A fileset of ``n_files`` tiny files: symbolic links to one small file.

    Every task still opens and reads its own path through the real task path; links keep 10,000
    files cheap to make and small on disk (they share one page-cache copy, as intended: this
    measures per-task overhead, not I/O).
    """
    target = events_file(data_dir, events_per_file, "ZSTD", seed=2)
    links = data_dir / f"tiny-{events_per_file}"
    links.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n_files):
        link = links / f"f{i:05d}.root"
        if not link.is_symlink():
            link.symlink_to(target)
        files.append(str(link))
    return fileset_json(data_dir, f"tiny-{n_files}x{events_per_file}", files, n_files * events_per_file)
