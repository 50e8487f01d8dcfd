"""Scaling measurements, each run as its own process by ``benchmarks/run.py``.

``python -m benchmarks.scaling speedup FILESET --repeat R``
    ``processor.run`` over FILESET on a 1-worker and a 2-worker LocalCluster, alternately, both
    clusters started (and their workers warmed up on one file) before any timing: the speedup
    of the processing itself, without cluster start-up.
``python -m benchmarks.scaling client FILESET --warmup WARMUP --workers W``
    what ``lumiflow run`` does -- a LocalCluster whose scheduler lives in this process, then
    ``processor.run`` writing its outputs -- and this process's peak RSS, which is the client's
    own (worker processes are not counted); per-task overhead by wall time and by CPU time
    (see :func:`client`).
``python -m benchmarks.scaling worker-rss FILE --events N --warmup TINY``
    the task on one file in a fresh process: peak RSS against the in-memory size of the columns
    read, with the RSS after imports and a warm-up task as the baseline.

Each prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time

import processor
from benchmarks import inputs
from benchmarks.worker import ANALYSIS, peak_rss_mb


def _cluster(workers: int):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )


def _timed_run(analysis, fileset, address: str, **kwargs) -> tuple[float, processor.Result]:
    executor = processor.make_executor("dask", scheduler=address)
    start = time.perf_counter()
    result = processor.run(analysis, fileset, executor=executor, **kwargs)
    wall = time.perf_counter() - start
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} file(s) failed, e.g. {result.failures[0].error}")
    return wall, result


def speedup(fileset: str, warmup: str, repeat: int) -> dict:
    analysis = processor.load_analysis(ANALYSIS)
    walls: dict[int, list[float]] = {1: [], 2: []}
    with _cluster(1) as one, _cluster(2) as two:
        clusters = {1: one, 2: two}
        for cluster in clusters.values():
            _timed_run(analysis, warmup, cluster.scheduler_address, write=False)
        events = 0
        for rep in range(repeat):
            for workers in (1, 2) if rep % 2 == 0 else (2, 1):
                wall, result = _timed_run(analysis, fileset, clusters[workers].scheduler_address, write=False)
                walls[workers].append(wall)
                events = sum(r.events for r in result.files)
    files = len(processor.load_fileset(fileset))
    return {"events": events, "files": files, "walls": {str(k): v for k, v in walls.items()}}


def _cpu_seconds(processes) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except Exception:  # noqa: BLE001 - a process that ended has nothing more to count
            continue
        total += times.user + times.system
    return total


def _cluster_cpu(psutil) -> tuple[float, float]:
    """CPU seconds used so far by this process (client and scheduler) and by its descendants (workers)."""
    me = psutil.Process()
    return _cpu_seconds([me]), _cpu_seconds(me.children(recursive=True))


def client(fileset: str, warmup: str, workers: int, sample: int) -> dict:
    """The client's run, timed; per-task overhead by wall time and by CPU time.

    By wall: (W x wall - sum of the tasks' own seconds) / files: idle workers count too, and so
    does any CPU the machine gives to other processes. By CPU: the CPU the whole cluster (client,
    scheduler, workers) used for the run, minus the CPU of the same work done in-process
    (``--executor local``: the same tasks and merges, one after the other, measured on the
    first ``sample`` files), per file: what distribution adds -- scheduling, serialisation,
    transfers, the tree of merge tasks -- insensitive to other load on the machine.
    """
    import psutil

    analysis = processor.load_analysis(ANALYSIS)
    with _cluster(workers) as cluster, tempfile.TemporaryDirectory() as out:
        _timed_run(analysis, warmup, cluster.scheduler_address, write=False)
        cpu_before = _cluster_cpu(psutil)
        total, result = _timed_run(analysis, fileset, cluster.scheduler_address, output=out)
        client_after, workers_after = _cluster_cpu(psutil)
        client_cpu = client_after - cpu_before[0]
        workers_cpu = workers_after - cpu_before[1]
        cpu_run = client_cpu + workers_cpu
        peak = peak_rss_mb()  # before the in-process baseline below adds its own memory
    wall = result.wall_seconds  # the executor's run: submitting, tasks, merges (not writing outputs)
    task_seconds = sum(r.seconds for r in result.files)
    files = len(result.files)
    items = processor.load_fileset(fileset)
    subset = {
        name: {"files": [f for f, _ in ds.files][:sample], "metadata": dict(ds.metadata)}
        for name, ds in items.datasets.items()
    }
    n_local = sum(len(d["files"]) for d in subset.values())
    local = processor.make_executor("local")
    processor.run(analysis, processor.parse_fileset(subset), executor=local, write=False)  # loads the kernels
    cpu_start = time.process_time()
    processor.run(analysis, processor.parse_fileset(subset), executor=local, write=False)
    local_cpu_per_task = (time.process_time() - cpu_start) / n_local
    return {
        "files": files,
        "workers": workers,
        "wall_s": wall,
        "total_with_outputs_s": total,
        "task_seconds": task_seconds,
        "overhead_ms_per_task": (workers * wall - task_seconds) / files * 1e3,
        "cluster_cpu_s": cpu_run,
        "client_cpu_ms_per_task": client_cpu / files * 1e3,
        "workers_cpu_ms_per_task": workers_cpu / files * 1e3,
        "local_cpu_ms_per_task": local_cpu_per_task * 1e3,
        "overhead_cpu_ms_per_task": (cpu_run / files - local_cpu_per_task) * 1e3,
        "wall_ms_per_task": wall / files * 1e3,
        "client_peak_rss_mb": peak,
    }


def worker_rss(path: str, events: int, warmup: str) -> dict:
    import psutil

    from processor.task import FileTask

    analysis = processor.load_analysis(ANALYSIS)

    def task(file: str, n: int) -> None:
        partial = FileTask(analysis.ref(), {inputs.DATASET: inputs.dataset_info(file, n)})(inputs.work_item(file))
        if not partial.files[0].ok:
            raise RuntimeError(partial.files[0].error)

    task(warmup, 10)
    baseline = psutil.Process().memory_info().rss / 2**20
    task(path, events)
    peak = peak_rss_mb()
    import uproot

    with uproot.open(path) as file:
        tree = file["Events"]
        arrays = tree.arrays(list(analysis.columns), library="ak")
        uncompressed = sum(tree[c].uncompressed_bytes for c in analysis.columns)
    columns_mb = arrays.nbytes / 2**20
    return {
        "events": events,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "columns_mb": columns_mb,
        "columns_uncompressed_in_file_mb": uncompressed / 2**20,
        "ratio": peak / columns_mb,
        "ratio_above_baseline": (peak - baseline) / columns_mb,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speedup")
    p.add_argument("fileset")
    p.add_argument("--warmup", required=True)
    p.add_argument("--repeat", type=int, default=3)
    p = sub.add_parser("client")
    p.add_argument("fileset")
    p.add_argument("--warmup", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sample", type=int, default=300, help="files run in-process for the CPU baseline")
    p = sub.add_parser("worker-rss")
    p.add_argument("file")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--warmup", required=True)
    args = parser.parse_args(argv)
    if args.command == "speedup":
        out = speedup(args.fileset, args.warmup, args.repeat)
    elif args.command == "client":
        out = client(args.fileset, args.warmup, args.workers, args.sample)
    else:
        out = worker_rss(args.file, args.events, args.warmup)
    out["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
