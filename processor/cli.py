"""The ``lumiflow`` command: run an analysis, generate the demo data, fit a workspace."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .analysis import AnalysisError, load_analysis
from .fileset import FilesetError
from .progress import RunProgress
from .result import Result
from .runner import EXECUTORS, RunFailed, default_output_dir, make_executor, resolve_fileset, run
from .source import DEFAULT_TIMEOUT
from .task import DEFAULT_RETRIES, TaskOptions

__all__ = ["main"]

console = Console(stderr=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumiflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an analysis over a fileset and write histograms and templates")
    r.add_argument("analysis", help="analysis module: a file path (analyses/hzz4l.py) or a dotted name")
    r.add_argument("--fileset", help="JSON/YAML fileset (default: the analysis' own default fileset)")
    r.add_argument("--executor", choices=EXECUTORS, default="dask", help="dask (default) or local (in-process)")
    r.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786)")
    r.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per core)")
    r.add_argument("--fan-in", type=int, help="partials merged per merge task on the workers (default 8)")
    r.add_argument("--output", type=Path, help="output directory (default ./lumiflow-output/<analysis>)")
    r.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="retries of transient read errors (3)")
    r.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per remote read request (60)")
    r.add_argument("--strict", action="store_true", help="exit non-zero if any file fails (outputs still written)")
    r.add_argument(
        "--combine-channels", action="store_true", help="one HistFactory channel: the sum of the analysis' channels"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser("demo-data", help="generate the embedded H->4l demo data set")
    d.add_argument("--events", type=int, help="simulated events per MC dataset")
    d.add_argument("--out", type=Path, help="directory (default: the cache the default run uses)")
    d.add_argument("--files-per-dataset", type=int, default=4)
    d.add_argument("--seed", type=int, default=12345)
    d.add_argument("--compression", choices=("ZSTD", "LZ4", "ZLIB"), default="ZSTD")

    f = sub.add_parser("fit", help="fit the workspace written by a run (pyhf)")
    f.add_argument("directory", type=Path, help="a run's output directory (holding workspace.json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": _run, "demo-data": _demo_data, "fit": _fit}[args.command](args)
    except (AnalysisError, FilesetError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        return 130


def _run(args: argparse.Namespace) -> int:
    analysis = load_analysis(args.analysis)
    if args.combine_channels:
        analysis = dataclasses.replace(
            analysis, templates=dataclasses.replace(analysis.templates, combine_channels=True)
        )
    if args.fileset is None:
        console.print(f"No --fileset: using the default fileset of [bold]{analysis.name}[/bold]")
    fileset = resolve_fileset(analysis, args.fileset)
    executor_name = "dask" if args.scheduler else args.executor
    executor = make_executor(executor_name, scheduler=args.scheduler, workers=args.workers, fan_in=args.fan_in)
    output = args.output or default_output_dir(analysis)
    where = args.scheduler or ("LocalCluster" if executor_name == "dask" else "this process")
    console.print(f"{analysis.name}: {len(fileset)} files in {len(fileset.datasets)} datasets on {where}")
    options = TaskOptions(retries=args.retries, timeout=args.timeout)
    status = 0
    with RunProgress(len(fileset), console=console, disable=args.no_progress) as progress:
        try:
            result = run(
                analysis,
                fileset,
                executor=executor,
                output=output,
                strict=args.strict,
                options=options,
                on_file=progress.on_file,
            )
        except RunFailed as exc:
            result, status = exc.result, 1
        progress.complete(result.files)
    _summarise(result)
    if result.files and not any(r.ok for r in result.files):
        return 1
    return status


def _summarise(result: Result) -> None:
    ok = len(result.files) - len(result.failures)
    rate = result.events / result.wall_seconds if result.wall_seconds > 0 else 0.0
    console.print(
        f"[green]{ok}[/green] files ok, [red]{len(result.failures)}[/red] failed; "
        f"{result.events:,} events in {result.wall_seconds:.1f} s ({rate:,.0f} events/s)"
    )
    for r in result.failures:
        # one line per file, unwrapped, so that logs can be grepped for a path
        console.print(
            f"[red]FAILED[/red] {escape(f'{r.path} [{r.dataset}]: {r.error}')}", soft_wrap=True, highlight=False
        )
    for kind, path in result.outputs.items():
        console.print(f"  {kind:<10} {path}", soft_wrap=True, highlight=False)


def _demo_data(args: argparse.Namespace) -> int:
    from . import demo

    events = args.events or demo.DEFAULT_EVENTS
    default_layout = args.files_per_dataset == 4 and args.compression == "ZSTD"
    if args.out is None:
        if not default_layout:
            raise ValueError("--files-per-dataset/--compression differ from the default set's: give --out DIR")
        path = demo.ensure_demo_fileset(events=events, seed=args.seed)
    else:
        path = demo.generate(
            args.out,
            events=events,
            files_per_dataset=args.files_per_dataset,
            seed=args.seed,
            compression=args.compression,
        )
    print(path)
    return 0


def _fit(args: argparse.Namespace) -> int:
    import pyhf

    from .histfactory import fit_workspace

    path = args.directory / "workspace.json" if args.directory.is_dir() else args.directory
    spec = json.loads(path.read_text())
    logging.getLogger("pyhf").setLevel(logging.CRITICAL)  # failures are reported below, once
    try:
        fit = fit_workspace(spec)
    except pyhf.exceptions.FailedMinimization as exc:
        console.print(
            f"[red]error:[/red] the fit of {path} did not converge ({exc}); "
            "check for bins with data but no predicted events"
        )
        return 1
    poi = spec["measurements"][0]["config"]["poi"]
    exp = fit.cls_expected
    table = Table(title=f"fit of {path}", title_justify="left", show_header=False)
    table.add_row(f"best-fit {poi}", f"{fit.mu:.3f} ± {fit.mu_uncertainty:.3f}")
    table.add_row(f"CLs observed ({poi}=1)", f"{fit.cls_observed:.4g}")
    table.add_row(
        f"CLs expected ({poi}=1)",
        f"{exp[2]:.4g}  [-1σ {exp[1]:.4g}, +1σ {exp[3]:.4g}; -2σ {exp[0]:.4g}, +2σ {exp[4]:.4g}]",
    )
    table.add_row("significance observed", f"{fit.significance_observed:.2f} σ")
    table.add_row("significance expected", f"{fit.significance_expected:.2f} σ")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
