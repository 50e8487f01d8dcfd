"""Lumiflow's benchmark harness: the hzz4l task against the read floor, coffea and RDataFrame.

    python benchmarks/run.py            # everything, defaults sized for a 2-core machine
    python benchmarks/run.py --quick    # smaller inputs, fewer repetitions: a minute or two
    python benchmarks/run.py --only single --repeat 9

Phases (``--only`` picks some):

single
    One file of ``--events`` simulated H->4l events per compression (ZSTD, LZ4, ZLIB; made once
    and cached). Each implementation runs in its own worker process, pinned to one CPU: the read
    floor (uproot reading hzz4l's columns, nothing else), Lumiflow (``FileTask`` on a
    ``WorkItem``, the path a Dask worker runs), coffea (NanoEvents processor, ``Runner`` +
    ``IterativeExecutor``) and ROOT RDataFrame (df103-style, one thread). Their first calls
    (compile/JIT) are reported apart; then ``--repeat`` repetitions, each running every
    (implementation, file) once in a rotating order, give medians and min/max. Before any timing
    is printed, the selected events per channel of Lumiflow, coffea and RDataFrame must be
    identical, or the harness stops with exit status 1.
scaling
    ``processor.run`` over ``--scaling-files`` files on LocalClusters of 1 and 2 workers (speedup);
    ``lumiflow run``'s client over 100 and ``--tiny-files`` tiny files (per-task overhead and the
    client's own peak RSS, each in a fresh process); a worker's peak RSS on the ``--events`` file
    against the in-memory size of the columns it reads.
breakdown
    Where the Lumiflow task's time goes: read (of which decompression), kernels, histogram fill,
    exact-sum conversion.

Prints Markdown tables (rates, ratios, the issue's targets with pass/FAIL) and writes every
measurement as JSON to ``--output`` (default ``benchmarks/results/latest.json``). Worker logs go
beside it. coffea and ROOT come with the ``bench`` extra (``pip install -e '.[bench]'``); a
missing one is skipped with the reason printed, never faked.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` and ``processor`` importable
    sys.path.insert(0, str(REPO))

from benchmarks import inputs  # noqa: E402
from benchmarks.summary import format_tables, spread, summarise  # noqa: E402

PHASES = ("single", "scaling", "breakdown")
SELECTING = ("lumiflow", "coffea", "rdf")  # implementations whose selected counts must agree
_SINGLE_THREADED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Worker:
    """A ``benchmarks.worker`` process serving one implementation; stderr goes to a log file."""

    def __init__(self, implementation: str, cpu: int | None, log_path: Path, env: dict[str, str] | None = None):
        self.name = implementation
        self.log_path = log_path
        command = [sys.executable, "-m", "benchmarks.worker", implementation]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **_SINGLE_THREADED, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.hello = self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.name} died; see {self.log_path}")
        return json.loads(line)

    def request(self, path: Path, events: int) -> dict:
        self.process.stdin.write(json.dumps({"path": str(path), "events": events}) + "\n")
        self.process.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise RuntimeError(f"{self.name} failed on {path}: {reply['error']} (log: {self.log_path})")
        return reply

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self._log.close()


def _run_json(module: str, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> dict:
    """Run ``python -m module args`` and parse the JSON object it prints last."""
    with open(log_path, "w") as err:
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed (exit {done.returncode}); see {log_path}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _counts_table(selected: dict[str, dict[str, int]]) -> str:
    return "\n".join(f"  {impl}: {counts}" for impl, counts in selected.items())


def _hist_agreement(hists: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """Largest relative difference of any m4l bin (sum of weights) from Lumiflow's, per implementation."""
    reference = hists["lumiflow"]
    out = {}
    for impl, h in hists.items():
        worst = 0.0
        for channel, values in reference.items():
            for a, b in zip(values, h[channel], strict=True):
                worst = max(worst, abs(a - b) / max(abs(a), 1e-300) if a or b else 0.0)
        out[impl] = worst
    return out


def single(args: argparse.Namespace, out_dir: Path) -> dict:
    """Phase ``single``: single-core timings, with the selection check before any timing."""
    files = {}
    for comp in args.compressions:
        log(f"input: {args.events:,} events, {comp} (generated once, then cached)")
        files[comp] = inputs.events_file(args.data_dir, args.events, comp)
    compare = args.compressions[0]
    plan = {
        "readfloor": list(args.compressions),
        "lumiflow": list(args.compressions),
        "coffea": list(args.compressions) if args.compare_all else [compare],
        "rdf": list(args.compressions) if args.compare_all else [compare],
    }
    plan = {impl: comps for impl, comps in plan.items() if impl in args.implementations}
    result: dict = {
        "events": args.events,
        "repeat": args.repeat,
        "compressions": list(args.compressions),
        "compare_compression": compare,
        "cpu": args.cpu,
        "files": {comp: str(path) for comp, path in files.items()},
        "file_mb": {comp: path.stat().st_size / 2**20 for comp, path in files.items()},
        "first_call": {},
        "skipped": {},
        "selected": {},
    }
    workers: dict[str, Worker] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="lumiflow-bench-numba-") as numba_cache:
            numba_env = {"NUMBA_CACHE_DIR": numba_cache}
            if "lumiflow" in plan:
                log("lumiflow: first call with an empty Numba cache (compiles the kernels)")
                cold = Worker("lumiflow", args.cpu, out_dir / "worker-lumiflow-cold.log", numba_env)
                first = cold.request(files[compare], args.events)
                result["first_call"]["lumiflow (no Numba cache)"] = {k: v for k, v in first.items() if k != "hist"}
                cold.close()
            for impl in plan:
                log(f"{impl}: starting its worker")
                worker = Worker(impl, args.cpu, out_dir / f"worker-{impl}.log", numba_env)
                if not worker.hello.get("ready"):
                    result["skipped"][impl] = worker.hello.get("reason", "not available")
                    log(f"{impl}: skipped ({result['skipped'][impl]})")
                    worker.close()
                    continue
                workers[impl] = worker
                first = worker.request(files[plan[impl][0]], args.events)
                result["first_call"][impl] = {k: v for k, v in first.items() if k != "hist"}
            plan = {impl: comps for impl, comps in plan.items() if impl in workers}

            # Warm every (implementation, file) once, and check the selections agree.
            hists = {}
            for impl, comps in plan.items():
                for comp in comps:
                    reply = workers[impl].request(files[comp], args.events)
                    if "selected" in reply:
                        result["selected"][f"{impl} {comp}"] = reply["selected"]
                        if comp == compare:
                            hists[impl] = reply["hist"]
            counts = {json.dumps(c, sort_keys=True) for c in result["selected"].values()}
            if len(counts) > 1:
                print("Selected event counts differ between implementations; no timing is printed:", file=sys.stderr)
                print(_counts_table(result["selected"]), file=sys.stderr)
                result["error"] = "selected event counts differ"
                return result
            present = [impl for impl in SELECTING if impl in plan]
            log(f"selection check passed: {', '.join(present)} select the same events per channel")
            if hists:
                result["hist_max_relative_difference"] = _hist_agreement(hists)

            jobs = [(impl, comp) for impl, comps in plan.items() for comp in comps]
            raw: dict[str, dict[str, dict[str, list[float]]]] = {}
            for rep in range(args.repeat):
                log(f"repetition {rep + 1}/{args.repeat}")
                shift = rep % len(jobs)
                for impl, comp in jobs[shift:] + jobs[:shift]:
                    reply = workers[impl].request(files[comp], args.events)
                    slot = raw.setdefault(impl, {}).setdefault(comp, {})
                    for key in ("wall", "cpu", "loop_s", "loop_cpu_s", "jit_s"):
                        if key in reply:
                            slot.setdefault(key, []).append(reply[key])
                    if impl == "readfloor":
                        result["columns_mb"] = reply["nbytes"] / 2**20
            result["timings"] = {
                impl: {comp: {key: spread(values) for key, values in slot.items()} for comp, slot in per.items()}
                for impl, per in raw.items()
            }
            result["worker_peak_rss_mb"] = {
                impl: w.request(files[compare], args.events)["peak_rss_mb"] for impl, w in workers.items()
            }
    finally:
        for worker in workers.values():
            worker.close()
    return result


def scaling(args: argparse.Namespace, out_dir: Path) -> tuple[dict, dict]:
    """Phase ``scaling``: speedup 1 -> 2 workers, per-task overhead and client RSS, worker RSS."""
    out: dict = {}
    log(f"scaling inputs: {args.scaling_files} files of {args.scaling_events:,} events (generated once)")
    many = inputs.many_files_fileset(args.data_dir, args.scaling_files, args.scaling_events)
    first_file = json.loads(many.read_text())[inputs.DATASET]["files"][0]
    warm_many = inputs.fileset_json(args.data_dir, "warmup-many", [first_file], args.scaling_events)
    log("speedup: LocalCluster with 1 and 2 workers, alternating")
    speedup = _run_json(
        "benchmarks.scaling",
        ["speedup", str(many), "--warmup", str(warm_many), "--repeat", str(args.scaling_repeat)],
        out_dir / "scaling-speedup.log",
    )
    speedup["walls"] = {k: spread(v) for k, v in speedup["walls"].items()}
    out["speedup"] = speedup

    warm_tiny = inputs.tiny_files_fileset(args.data_dir, 4)
    out["clients"] = []
    for n in sorted({100, args.tiny_files}):
        log(f"client: {n:,} tiny files on 2 workers (fresh process)")
        fileset = inputs.tiny_files_fileset(args.data_dir, n)
        out["clients"].append(
            _run_json(
                "benchmarks.scaling",
                ["client", str(fileset), "--warmup", str(warm_tiny), "--workers", "2"],
                out_dir / f"scaling-client-{n}.log",
            )
        )
    comp = args.compressions[0]
    path = inputs.events_file(args.data_dir, args.events, comp)
    tiny = json.loads(warm_tiny.read_text())[inputs.DATASET]["files"][0]
    log(f"worker RSS: the task on {args.events:,} events ({comp}) in a fresh process")
    memory = _run_json(
        "benchmarks.scaling",
        ["worker-rss", str(path), "--events", str(args.events), "--warmup", tiny],
        out_dir / "scaling-worker-rss.log",
    )
    memory["compression"] = comp
    return out, memory


def breakdown(args: argparse.Namespace, out_dir: Path) -> dict:
    """Phase ``breakdown``: the Lumiflow task's time by stage, per compression."""
    out = {}
    for comp in args.compressions:
        path = inputs.events_file(args.data_dir, args.events, comp)
        log(f"breakdown: Lumiflow task on {comp}")
        cpu = [] if args.cpu is None else ["--cpu", str(args.cpu)]
        out[comp] = _run_json(
            "benchmarks.breakdown",
            [str(path), "--events", str(args.events), "--repeat", str(args.repeat), *cpu],
            out_dir / f"breakdown-{comp.lower()}.log",
            _SINGLE_THREADED,
        )
    return out


def machine() -> dict:
    """What ran it: date, CPU, cores, load, versions (numbers are only comparable on one machine)."""
    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in (
        "lumiflow",
        "uproot",
        "awkward",
        "numba",
        "numpy",
        "cramjam",
        "dask",
        "distributed",
        "coffea",
        "root",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "versions": versions,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=__doc__.split("\n")[0],
        epilog="Phases and what each measures: see benchmarks/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in each single-core benchmark file")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repetitions (medians of these)")
    parser.add_argument(
        "--quick", action="store_true", help="200k-event files, 3 repetitions, 20 x 50k scaling files, 2,000 tiny files"
    )
    parser.add_argument("--only", default=",".join(PHASES), help=f"comma-separated phases among {', '.join(PHASES)}")
    parser.add_argument(
        "--implementations",
        default="readfloor,lumiflow,coffea,rdf",
        help="comma-separated implementations for the single-core phase",
    )
    parser.add_argument(
        "--compressions", default=",".join(inputs.COMPRESSIONS), help="file compressions; the first is the one compared"
    )
    parser.add_argument("--compare-all", action="store_true", help="run coffea and RDataFrame on every compression too")
    parser.add_argument("--scaling-files", type=int, default=20, help="files in the speedup fileset")
    parser.add_argument("--scaling-events", type=int, default=200_000, help="events per file of the speedup fileset")
    parser.add_argument("--scaling-repeat", type=int, default=3, help="runs per worker count for the speedup")
    parser.add_argument("--tiny-files", type=int, default=10_000, help="tiny files for the overhead and client RSS")
    parser.add_argument("--data-dir", type=Path, default=inputs.default_data_dir(), help="where inputs are cached")
    parser.add_argument(
        "--cpu", type=int, default=max(os.sched_getaffinity(0)), help="the CPU single-core measurements are pinned to"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin single-core measurements to one CPU")
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "latest.json", help="results JSON"
    )
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {
            "events": 1_000_000,
            "repeat": 5,
            "scaling_files": 20,
            "scaling_events": 200_000,
            "tiny_files": 10_000,
        }
        quick = {"events": 200_000, "repeat": 3, "scaling_files": 20, "scaling_events": 50_000, "tiny_files": 2_000}
        for key, value in quick.items():
            if getattr(args, key) == defaults[key]:  # explicit options win over --quick
                setattr(args, key, value)
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    args.implementations = [i.strip() for i in args.implementations.split(",") if i.strip()]
    args.compressions = [c.strip().upper() for c in args.compressions.split(",") if c.strip()]
    if unknown := set(args.only) - set(PHASES):
        parser.error(f"unknown phase(s) {sorted(unknown)}; choose from {', '.join(PHASES)}")
    if unknown := set(args.compressions) - set(inputs.COMPRESSIONS):
        parser.error(f"unknown compression(s) {sorted(unknown)}; choose from {', '.join(inputs.COMPRESSIONS)}")
    if args.no_pin:
        args.cpu = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = args.output.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "options": {k: str(v) for k, v in vars(args).items()}}
    if "single" in args.only:
        results["single"] = single(args, out_dir)
        if "error" in results["single"]:
            args.output.write_text(json.dumps(results, indent=1) + "\n")
            return 1
    if "scaling" in args.only:
        results["scaling"], results["memory"] = scaling(args, out_dir)
    if "breakdown" in args.only:
        results["breakdown"] = breakdown(args, out_dir)
    results["machine"]["load_average_end"] = os.getloadavg()
    results["summary"] = summarise(results)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(format_tables(results))
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
