"""CLs scan throughput: signal patches per second on a cluster of one worker and of two.

``python -m benchmarks.cls [LIKELIHOOD] [--region R] [--patches N] [--repeat R]``

The scan is ``processor.cls.scan_cls``, one task per patch, on a real Dask cluster (a scheduler
process and single-threaded worker processes, ``tests/dask_processes.py``). Both clusters are
started and warmed up on the same patches (imports, pyhf's schemas) before any timing; timed
runs alternate between them. Speedup = rate on 2 workers / rate on 1 (medians of ``R``); fits
are independent, so it should be near 2 (target >= 1.8). Both clusters must give the same CLs
bits. LIKELIHOOD defaults to the published ATLAS sbottom likelihood in ``../shared/data``
(HEPData ins1748602), any archive or directory ``lumiflow cls`` reads will do. Prints one JSON
object; exits 1 below the target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from processor.cls import CLsScan, scan_cls
from processor.executors.dask import DaskExecutor
from processor.likelihoods import Likelihood, load_likelihood

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from dask_processes import ProcessCluster  # noqa: E402 - the tests' helper: one way to start a cluster

DEFAULT_LIKELIHOOD = REPO.parent / "shared" / "data" / "likelihoods" / "pyhf-ins1748602-probability-models.tar.gz"
TARGET = 1.8


def _timed(likelihood: Likelihood, executor: DaskExecutor) -> tuple[float, CLsScan]:
    start = time.perf_counter()
    scan = scan_cls(likelihood, executor)
    wall = time.perf_counter() - start
    if scan.failures:
        raise RuntimeError(f"{len(scan.failures)} patch(es) failed, e.g. {scan.failures[0].error}")
    return wall, scan


def measure(likelihood: Likelihood, repeat: int) -> dict:
    with (
        tempfile.TemporaryDirectory(prefix="lumiflow-bench-cls-") as tmp,
        ProcessCluster(Path(tmp) / "one", workers=1) as one,
        ProcessCluster(Path(tmp) / "two", workers=2) as two,
    ):
        setups = {"1_worker": DaskExecutor(scheduler=one.address), "2_workers": DaskExecutor(scheduler=two.address)}
        values = {}
        for name, executor in setups.items():  # warm-up
            _, scan = _timed(likelihood, executor)
            values[name] = [(r.cls_observed, r.cls_expected) for r in scan.rows]
        if values["1_worker"] != values["2_workers"]:
            raise RuntimeError("the two clusters gave different CLs")
        walls: dict[str, list[float]] = {name: [] for name in setups}
        for rep in range(repeat):
            for name in list(setups) if rep % 2 == 0 else list(reversed(setups)):
                walls[name].append(_timed(likelihood, setups[name])[0])
    patches = len(likelihood.patches)
    rates = {name: patches / statistics.median(w) for name, w in walls.items()}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "likelihood": likelihood.name,
        "patches": patches,
        "walls": walls,
        "patches_per_second": rates,
        "speedup": rates["2_workers"] / rates["1_worker"],
        "target": TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cls", description=__doc__.splitlines()[0])
    parser.add_argument("likelihood", nargs="?", type=Path, default=DEFAULT_LIKELIHOOD, help="archive or directory")
    parser.add_argument("--region", default="RegionA", help="region of a multi-region archive (RegionA)")
    parser.add_argument("--patches", type=int, default=16, help="how many patches, the first in name order (16)")
    parser.add_argument("--repeat", type=int, default=3, help="timed scans per cluster, alternating (3)")
    args = parser.parse_args(argv)
    if not args.likelihood.exists():
        parser.error(f"{args.likelihood} is absent: give a likelihood archive or directory")
    likelihood = load_likelihood(args.likelihood, region=args.region)
    likelihood = likelihood.select([p.name for p in likelihood.patches[: args.patches]])
    report = measure(likelihood, args.repeat)
    print(json.dumps(report, indent=1))
    rates = report["patches_per_second"]
    print(
        f"{report['patches']} patches of {report['likelihood']}: 1 worker {rates['1_worker']:.2f} patches/s, "
        f"2 workers {rates['2_workers']:.2f} patches/s (medians of {args.repeat}); "
        f"speedup {report['speedup']:.2f} (target >= {TARGET})",
        file=sys.stderr,
    )
    return 0 if report["speedup"] >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
