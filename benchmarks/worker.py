"""A benchmark worker: one implementation in its own process, timing requests on one core.

``python -m benchmarks.worker IMPL [--cpu N]`` imports IMPL (``readfloor``, ``lumiflow``,
``coffea`` or ``rdf``) once, then answers JSON lines on stdin (``{"path": ..., "events": ...}``)
with JSON lines (wall and CPU seconds, selected counts, peak RSS). Each implementation lives in
its own process so that one's imports and JIT (ROOT's Cling, Numba's LLVM) cannot slow or break
another, and so that its first call -- the compile cost -- is seen apart from the warm calls.
The driver (``benchmarks/run.py``) keeps all workers alive and interleaves requests between
them. Whatever the libraries print goes to stderr; the replies use the original stdout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANALYSIS = REPO / "analyses" / "hzz4l.py"
IMPLEMENTATIONS = ("readfloor", "lumiflow", "coffea", "rdf")

Runner = Callable[[str, int], dict]


def _readfloor() -> Runner:
    """uproot reading exactly the analysis' columns into awkward arrays.

    Through uproot's memory-mapped source, its cheapest way to read a local file (the default,
    fsspec, runs an event-loop thread) and the one Lumiflow's reader uses for local files.
    Lumiflow's task decodes such files' baskets itself (``processor.baskets``), so it can beat
    this floor.
    """
    import uproot

    import processor

    columns = list(processor.load_analysis(ANALYSIS).columns)

    def run(path: str, events: int) -> dict:
        with uproot.open(path, handler=uproot.source.file.MemmapSource) as file:
            arrays = file["Events"].arrays(columns, library="ak")
        return {"events": len(arrays), "nbytes": int(arrays.nbytes)}

    return run


def _lumiflow() -> Runner:
    """The real task path: ``FileTask(analysis, infos)(work item)``, as a Dask worker calls it."""
    import processor
    from benchmarks import inputs
    from processor.task import FileTask

    analysis = processor.load_analysis(ANALYSIS)
    last_step = {channel: f"{channel}: {steps[-1]}" for channel, steps in analysis.module.STEPS.items()}

    def run(path: str, events: int) -> dict:
        task = FileTask(analysis.ref(), {inputs.DATASET: inputs.dataset_info(path, events)})
        partial = task(inputs.work_item(path))
        [report] = partial.files
        if not report.ok:
            raise RuntimeError(f"Lumiflow task failed on {path}: {report.error}")
        cutflow = partial.cutflow[inputs.DATASET]
        h = partial.hists[inputs.DATASET]["m4l"].to_hist()
        return {
            "events": report.events,
            "selected": {channel: cutflow[step] for channel, step in last_step.items()},
            "hist": _channel_sums(h),
        }

    return run


def _coffea() -> Runner:
    from benchmarks import coffea_hzz4l, inputs

    def run(path: str, events: int) -> dict:
        out = coffea_hzz4l.run_file(path, inputs.DATASET, inputs.dataset_info(path, events).weight, events)
        return {"selected": out["selected"], "hist": _channel_sums(out["m4l"])}

    return run


def _rdf() -> Runner:
    from benchmarks import inputs, rdf_hzz4l

    def run(path: str, events: int) -> dict:
        return rdf_hzz4l.run_file(path, inputs.dataset_info(path, events).weight)

    return run


def _channel_sums(h) -> dict[str, list[float]]:
    """Sum of weights per m4l bin (flow bins included) of each channel of a channel x m4l histogram."""
    return {c: h[{"channel": c}].view(flow=True).value.tolist() for c in h.axes["channel"]}


_FACTORIES = {"readfloor": _readfloor, "lumiflow": _lumiflow, "coffea": _coffea, "rdf": _rdf}
#: The optional package (``bench`` extra) each comparison needs: without it, it is skipped.
_OPTIONAL = {"coffea": "coffea", "rdf": "ROOT"}


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("implementation", choices=IMPLEMENTATIONS)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library chatter (ROOT, coffea) must not corrupt the replies
    start = time.perf_counter()
    package = _OPTIONAL.get(args.implementation)
    if package is not None:
        try:
            importlib.import_module(package)
        except ImportError as exc:  # only the optional package itself: any other import error is a failure
            reason = f"{package} is not importable ({type(exc).__name__}: {exc}); pip install -e '.[bench]'"
            replies.write(json.dumps({"ready": False, "reason": reason}) + "\n")
            return
    run = _FACTORIES[args.implementation]()
    replies.write(json.dumps({"ready": True, "import_s": time.perf_counter() - start}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        wall = time.perf_counter()
        cpu = time.process_time()
        try:
            reply = run(request["path"], request["events"])
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the benchmark
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        reply["cpu"] = time.process_time() - cpu
        reply["wall"] = time.perf_counter() - wall
        reply["peak_rss_mb"] = peak_rss_mb()
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
