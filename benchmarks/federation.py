"""Federation efficiency: two clusters of one worker against one cluster of two workers.

``python -m benchmarks.federation [--fileset FILE] [--repeat R]``

Both set-ups have the same two single-threaded workers; the federation adds a second scheduler,
the client's pull-based dispatch and one fetched partial per cluster. Efficiency is the
single-cluster wall time over the federated one (medians of ``R`` alternating runs, every
cluster started and warmed up on the fileset before any timing); the target is >= 0.9.
Every cluster is a scheduler process and worker processes (``tests/dask_processes.py``), as
independent clusters are. Prints one JSON object; exits 1 below the target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import processor
from processor.demo import ensure_demo_fileset
from processor.executors.dask import DaskExecutor
from processor.executors.federation import ClusterSpec, FederationExecutor

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from dask_processes import ProcessCluster  # noqa: E402 - the tests' helper: one way to start a cluster

ANALYSIS = REPO / "analyses" / "hzz4l.py"
TARGET = 0.9


def _timed(analysis: processor.Analysis, fileset: str, executor) -> tuple[float, processor.Result]:
    start = time.perf_counter()
    result = processor.run(analysis, fileset, executor=executor, write=False)
    wall = time.perf_counter() - start
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} file(s) failed, e.g. {result.failures[0].error}")
    return wall, result


def measure(fileset: str, repeat: int) -> dict:
    analysis = processor.load_analysis(ANALYSIS)
    with (
        tempfile.TemporaryDirectory(prefix="lumiflow-bench-federation-") as tmp,
        ProcessCluster(Path(tmp) / "pair", workers=2) as pair,
        ProcessCluster(Path(tmp) / "east", workers=1) as east,
        ProcessCluster(Path(tmp) / "west", workers=1) as west,
    ):
        setups = {
            "one_cluster_2_workers": DaskExecutor(scheduler=pair.address),
            "two_clusters_1_worker": FederationExecutor(
                [ClusterSpec("east", east.address), ClusterSpec("west", west.address)]
            ),
        }
        walls: dict[str, list[float]] = {name: [] for name in setups}
        bits = {}
        for name, executor in setups.items():  # warm-up: imports, Numba cache, page cache
            _, result = _timed(analysis, fileset, executor)
            bits[name] = {
                n: h.view(flow=True).value.tobytes() for n, h in result.samples[analysis.templates.histogram].items()
            }
        if bits["one_cluster_2_workers"] != bits["two_clusters_1_worker"]:
            raise RuntimeError("the federated histograms differ from the single cluster's")
        shares = []
        for rep in range(repeat):
            order = list(setups) if rep % 2 == 0 else list(reversed(setups))
            for name in order:
                wall, result = _timed(analysis, fileset, setups[name])
                walls[name].append(wall)
                if name == "two_clusters_1_worker":
                    shares.append({c: sum(r.cluster == c for r in result.files) for c in ("east", "west")})
    single = statistics.median(walls["one_cluster_2_workers"])
    federated = statistics.median(walls["two_clusters_1_worker"])
    return {
        "files": len(result.files),
        "events": result.events,
        "walls": walls,
        "median_one_cluster_2_workers": single,
        "median_two_clusters_1_worker": federated,
        "efficiency": single / federated,
        "target": TARGET,
        "files_per_cluster": shares,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.federation", description=__doc__.splitlines()[0])
    parser.add_argument("--fileset", help="fileset (default: the hzz4l demo set)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each set-up, alternating (5)")
    args = parser.parse_args(argv)
    fileset = args.fileset or str(ensure_demo_fileset())
    report = measure(fileset, args.repeat)
    print(json.dumps(report, indent=1))
    print(
        f"one cluster x 2 workers: {report['median_one_cluster_2_workers']:.2f} s, "
        f"two clusters x 1 worker: {report['median_two_clusters_1_worker']:.2f} s (medians of {args.repeat}); "
        f"efficiency {report['efficiency']:.3f} (target >= {TARGET})",
        file=sys.stderr,
    )
    return 0 if report["efficiency"] >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
