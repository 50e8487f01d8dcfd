"""A run's outputs kept in a ConfigMap beside its Analysis, and ``lumiflow results`` fetching them.

The outputs are small (histograms, a workspace, a report, a plot), so the run driver stores them,
gzipped, in the ConfigMap ``<analysis>-results``, owned by the Analysis (deleted with it). The
laptop then needs nothing but API access to fetch them — no volume mount, no object-store
credentials. Files that do not fit in a ConfigMap (1 MiB) are left out and named; they are still
at the Analysis' output location (a PVC directory or an object-store URL).
"""

from __future__ import annotations

import base64
import gzip
import os
from pathlib import Path
from typing import Any

import fsspec

from .api import API_VERSION, KIND, api_exception, core, get_analysis

__all__ = ["fetch_results", "results_name", "store_results"]

_LIMIT = 900_000  # bytes of base64 data, below the API server's 1 MiB object limit
_OMITTED = "lumiflow.io/omitted"


def results_name(analysis_name: str) -> str:
    return f"{analysis_name}-results"


def store_results(client: Any, analysis: dict[str, Any], files: list[Path]) -> list[str]:
    """Create or replace the results ConfigMap; returns the names of files that did not fit."""
    meta = analysis["metadata"]
    data: dict[str, str] = {}
    omitted: list[str] = []
    used = 0
    for path in sorted(files, key=lambda p: p.stat().st_size):  # smallest first: the most files fit
        encoded = base64.b64encode(gzip.compress(path.read_bytes(), mtime=0)).decode()
        if used + len(encoded) > _LIMIT:
            omitted.append(path.name)
            continue
        data[path.name] = encoded
        used += len(encoded)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": results_name(meta["name"]),
            "labels": {"lumiflow.io/analysis": meta["name"]},
            "annotations": {_OMITTED: ",".join(omitted)},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"]}],
        },
        "binaryData": data,
    }
    api = core(client)
    try:
        api.create_namespaced_config_map(meta["namespace"], body)
    except api_exception() as exc:
        if exc.status != 409:
            raise
        api.replace_namespaced_config_map(body["metadata"]["name"], meta["namespace"], body)
    return omitted


def fetch_results(client: Any, namespace: str, name: str, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the Analysis' outputs into ``out_dir``; returns the paths written.

    Files left out of the ConfigMap are copied from the Analysis' output URL when it has one;
    otherwise a ValueError says where they are.
    """
    analysis = get_analysis(client, namespace, name)
    status = analysis.get("status") or {}
    try:
        config_map = core(client).read_namespaced_config_map(results_name(name), namespace)
    except api_exception() as exc:
        if exc.status == 404:
            raise ValueError(f"Analysis {name!r} has no results yet (phase {status.get('phase', 'Pending')})") from exc
        raise
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, encoded in (config_map.binary_data or {}).items():
        path = out / filename
        path.write_bytes(gzip.decompress(base64.b64decode(encoded)))
        written.append(path)
    omitted = [f for f in ((config_map.metadata.annotations or {}).get(_OMITTED) or "").split(",") if f]
    if omitted:
        url = (analysis["spec"].get("output") or {}).get("url")
        if url is None:
            raise ValueError(
                f"{', '.join(omitted)} did not fit in the results ConfigMap; they are in {status.get('output')}"
            )
        fs, root = fsspec.core.url_to_fs(url)
        for filename in omitted:
            fs.get(f"{root.rstrip('/')}/{filename}", str(out / filename))
            written.append(out / filename)
    return sorted(written)
