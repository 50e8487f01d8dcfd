"""Where the Lumiflow task's time goes, on one file, one core.

``python -m benchmarks.breakdown FILE --events N [--repeat R] [--cpu C]`` times the pieces of
``FileTask`` separately, warm (medians of R):

* ``read``: ``processor.source.read_columns`` (open, fetch, decompress, build awkward arrays);
  ``decompress`` is the part of it spent in the codec (ZSTD/LZ4/ZLIB C functions, from a
  cProfile of one read: C calls are timed exactly, Python around them is inflated). Where
  ``processor.baskets`` decompresses straight into the final arrays, that includes the first
  touch (page faults) of their memory;
* ``process``: the analysis' ``process`` on the events already read; split with a cProfile into
  its Numba kernels (the analysis module's compiled functions), histogram filling (``hist``)
  and the rest (awkward access, offsets, cutflow);
* ``exact``: ``Partial.from_output``, the conversion of the histograms to exact sums;
* ``task``: the whole ``FileTask`` call; ``other`` = task - read - process - exact.

Only public entry points of the framework are called, so the breakdown keeps working while the
framework changes; prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time

import numba

import processor
from benchmarks import inputs
from benchmarks.worker import ANALYSIS
from processor.partial import Partial
from processor.report import FileReport
from processor.source import read_columns
from processor.task import FileTask


def _median_time(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _profile(call) -> pstats.Stats:
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    return pstats.Stats(profiler)


def _seconds(stats: pstats.Stats, match) -> float:
    """Total own time of the profiled functions for which ``match(filename, name)`` holds."""
    return sum(row[2] for (filename, _, name), row in stats.stats.items() if match(filename, name))


def breakdown(path: str, events: int, repeat: int) -> dict:
    analysis = processor.load_analysis(ANALYSIS)
    info = inputs.dataset_info(path, events)
    item = inputs.work_item(path)
    task = FileTask(analysis.ref(), {inputs.DATASET: info})
    columns = list(analysis.columns)
    task(item)  # compile / load the kernels
    read = read_columns(item, columns)
    output = analysis.process(read.events, info)
    report = FileReport(index=0, path=path, dataset=inputs.DATASET)

    times = {
        "task": _median_time(lambda: task(item), repeat),
        "read": _median_time(lambda: read_columns(item, columns), repeat),
        "process": _median_time(lambda: analysis.process(read.events, info), repeat),
        "exact": _median_time(lambda: Partial.from_output(inputs.DATASET, output, report), repeat),
    }
    times["other"] = times["task"] - times["read"] - times["process"] - times["exact"]

    read_stats = _profile(lambda: read_columns(item, columns))
    times["read: decompress"] = _seconds(read_stats, lambda f, name: f == "~" and "decompress" in name)
    times["read: rest"] = times["read"] - times["read: decompress"]

    kernels = {
        name for name, value in vars(analysis.module).items() if isinstance(value, numba.core.registry.CPUDispatcher)
    }
    source = str(analysis.source_path)
    process_stats = _profile(lambda: analysis.process(read.events, info))
    kernel_s = _seconds(process_stats, lambda f, name: f == source and name in kernels)
    fill_s = _seconds(process_stats, lambda f, name: f"{os.sep}hist{os.sep}" in f or "boost_histogram" in f)
    profiled_process = process_stats.total_tt
    times["process: kernels"] = times["process"] * kernel_s / profiled_process
    times["process: hist fill"] = times["process"] * fill_s / profiled_process
    times["process: rest"] = times["process"] - times["process: kernels"] - times["process: hist fill"]
    top = sorted(process_stats.stats.items(), key=lambda kv: -kv[1][2])[:12]
    return {
        "file": path,
        "events": events,
        "seconds": times,
        "process_profile_top": [
            {"function": f"{os.path.basename(f)}:{line}({name})", "calls": row[1], "own_s": row[2]}
            for (f, line, name), row in top
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    sys.stdout.write(json.dumps(breakdown(args.file, args.events, args.repeat)) + "\n")


if __name__ == "__main__":
    main()
