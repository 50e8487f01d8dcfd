"""The ``lumiflow`` command: run an analysis, generate the demo data, fit a workspace."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .analysis import Analysis, AnalysisError, load_analysis
from .cls import CLS_LEVEL, CLsScan, scan_cls
from .dashboard.serve import serve_live_views
from .dashboard.server import DEFAULT_DASHBOARD_PORT
from .executors import Executor, fan_out
from .fileset import FilesetError
from .journal import Journal
from .k8s import commands as k8s_commands
from .monitor import RunMonitor
from .progress import RunProgress
from .result import Result
from .runner import EXECUTORS, RunAborted, RunFailed, default_output_dir, make_executor, resolve_fileset, run
from .source import DEFAULT_FILE_TIMEOUT, DEFAULT_TIMEOUT
from .task import DEFAULT_RETRIES, DEFAULT_STEP_BYTES, TaskOptions

if TYPE_CHECKING:
    from distributed.security import Security

__all__ = ["main"]

console = Console(stderr=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lumiflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an analysis over a fileset and write histograms and templates")
    r.add_argument("analysis", help="analysis module: a file path (analyses/hzz4l.py) or a dotted name")
    r.add_argument("--fileset", help="JSON/YAML fileset (default: the analysis' own default fileset)")
    _add_executor_options(r)
    r.add_argument("--output", type=Path, help="output directory (default ./lumiflow-output/<analysis>)")
    r.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="retries of transient read errors (3)")
    r.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per remote read request (60)")
    r.add_argument(
        "--file-timeout",
        type=float,
        default=DEFAULT_FILE_TIMEOUT,
        help="seconds reading one file may take in all, retries included; then it fails (900)",
    )
    r.add_argument(
        "--step-mb",
        type=float,
        default=DEFAULT_STEP_BYTES / 1e6,
        help="decompressed MB of columns read and processed at a time; bounds worker memory (64)",
    )
    r.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="finish the interrupted run whose output directory is DIR: only files not journaled there run",
    )
    r.add_argument("--strict", action="store_true", help="exit non-zero if any file fails (outputs still written)")
    r.add_argument(
        "--combine-channels", action="store_true", help="one HistFactory channel: the sum of the analysis' channels"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--dashboard", action="store_true", help="serve a live web dashboard of the run (prints its URL)")
    r.add_argument(
        "--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT, help="its port (8790; 0: any free port)"
    )
    r.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics of the run on PORT")
    r.add_argument(
        "--listen", default="127.0.0.1", metavar="HOST", help="address the dashboard and metrics listen on (127.0.0.1)"
    )
    r.add_argument(
        "--report-to",
        metavar="NAMESPACE/NAME",
        help="write progress, outcome and outputs into this Kubernetes Analysis (what its runner pod does)",
    )
    r.set_defaults(reporter=None)

    d = sub.add_parser("demo-data", help="generate the embedded H->4l demo data set")
    d.add_argument("--events", type=int, help="simulated events per MC dataset")
    d.add_argument("--out", type=Path, help="directory (default: the cache the default run uses)")
    d.add_argument("--files-per-dataset", type=int, default=4)
    d.add_argument("--seed", type=int, default=12345)
    d.add_argument("--compression", choices=("ZSTD", "LZ4", "ZLIB"), default="ZSTD")
    d.add_argument(
        "--signal-mass",
        type=float,
        metavar="GEV",
        help="only a signal sample, H->ZZ->4l with this Higgs mass (for `lumiflow reinterpret`); needs --out",
    )

    f = sub.add_parser("fit", help="fit the workspace written by a run (pyhf)")
    f.add_argument("directory", type=Path, help="a run's output directory (holding workspace.json)")

    c = sub.add_parser(
        "cls",
        help="CLs of every signal patch of a (published) likelihood, one task per patch",
        description="Observed and expected CLs per signal patch, computed as `pyhf cls` does, fanned out over "
        "the executors of `lumiflow run`; writes cls.json, cls.csv and, over two parameters, contour.png.",
    )
    c.add_argument(
        "likelihood",
        type=Path,
        help="background-only workspace JSON (with --patchset), or a HEPData archive/directory with its patches",
    )
    c.add_argument(
        "--patchset",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="pyhf PatchSet file, JSON-patch file or directory of them (repeatable)",
    )
    c.add_argument("--region", help="which background-only workspace of an archive holding several (its directory)")
    c.add_argument(
        "--patch", action="append", default=[], metavar="NAME", help="only these patches; shell globs (repeatable)"
    )
    c.add_argument("--labels", help="names of the parameter values in the patch names, comma-separated (m_sb,m_n2)")
    c.add_argument("--axes", help="the two parameters (labels) of the contour plot, comma-separated")
    c.add_argument("--test-poi", type=float, default=1.0, help="POI value tested (1.0: the nominal signal)")
    c.add_argument("--output", type=Path, help="output directory (default ./lumiflow-output/cls-<likelihood>)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_executor_options(c)

    i = sub.add_parser(
        "reinterpret",
        help="test a new signal model against a finished run: only the new signal's files are processed",
    )
    i.add_argument("analysis", help="the analysis module of the finished run")
    i.add_argument("--signal", required=True, help="fileset of the new signal (datasets of role signal only)")
    i.add_argument(
        "--previous", type=Path, help="the finished run's output directory (default ./lumiflow-output/<analysis>)"
    )
    i.add_argument("--output", type=Path, help="output directory (default <previous>-<signal datasets>)")
    i.add_argument("--test-poi", type=float, default=1.0, help="POI value tested (1.0: the nominal signal)")
    i.add_argument(
        "--combine-channels", action="store_true", help="as the finished run, if it was made with --combine-channels"
    )
    i.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_executor_options(i)

    k8s_commands.add_parsers(sub)
    return parser


def _add_executor_options(parser: argparse.ArgumentParser) -> None:
    """Where the work runs: the same choices for every command that fans work out."""
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="dask",
        help="dask (default), local (in-process), kubernetes (a KubeCluster of image $LUMIFLOW_IMAGE) "
        "or federation (the --cluster/--clusters clusters together)",
    )
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786)")
    parser.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="ADDR",
        help="federation: a Dask scheduler to share the run (repeatable; implies --executor federation)",
    )
    parser.add_argument(
        "--clusters",
        type=Path,
        metavar="FILE",
        help="federation: YAML list of clusters (addresses or Kubernetes); new entries join during the run",
    )
    parser.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per core)")
    parser.add_argument("--fan-in", type=int, help="partials merged per merge task on the workers (default 32)")
    parser.add_argument(
        "--tls-ca-file", type=Path, help="Dask TLS: CA certificate that signed every peer's certificate"
    )
    parser.add_argument("--tls-cert", type=Path, help="Dask TLS: this client's certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="Dask TLS: its private key (PEM), unless in --tls-cert")


def _executor(args: argparse.Namespace) -> tuple[str, Executor]:
    """The executor the options name, and its name (``--cluster``/``--scheduler`` imply theirs)."""
    name = "federation" if args.cluster or args.clusters else "dask" if args.scheduler else args.executor
    executor = make_executor(
        name,
        scheduler=args.scheduler,
        workers=args.workers,
        fan_in=args.fan_in,
        security=_security(args),
        clusters=args.cluster,
        clusters_file=args.clusters,
    )
    return name, executor


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {
            "run": _run_command,
            "demo-data": _demo_data,
            "fit": _fit,
            "cls": _cls,
            "reinterpret": _reinterpret,
            **k8s_commands.COMMANDS,
        }
        return commands[args.command](args)
    except (AnalysisError, FilesetError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        return 130


def _run_command(args: argparse.Namespace) -> int:
    """``lumiflow run``; with ``--report-to``, inside the Analysis' status reporter (in-cluster runs)."""
    if args.report_to is None:
        return _run(args)
    with k8s_commands.reporting(args.report_to) as reporter:
        args.reporter = reporter
        return reporter.finished(_run(args))


def _run(args: argparse.Namespace) -> int:
    analysis = _load_analysis(args)
    if args.fileset is None:
        console.print(f"No --fileset: using the default fileset of [bold]{analysis.name}[/bold]")
    fileset = resolve_fileset(analysis, args.fileset)
    if args.reporter is not None:
        args.reporter.start(len(fileset))
    executor_name, executor = _executor(args)
    if args.resume and args.output and args.output.resolve() != args.resume.resolve():
        raise ValueError("--resume DIR writes to DIR: give no other --output")
    output = args.resume or args.output or default_output_dir(analysis)
    if args.resume:
        done = len(Journal.resume(args.resume, analysis.source_sha256, fileset.sha256).indices())
        console.print(f"Resuming {args.resume}: {done} of {len(fileset)} files already done")
    where = _where(args, executor_name, executor)
    console.print(f"{analysis.name}: {len(fileset)} files in {len(fileset.datasets)} datasets on {where}")
    options = TaskOptions(
        retries=args.retries, timeout=args.timeout, file_timeout=args.file_timeout, step_bytes=args.step_mb * 1e6
    )
    status, aborted = 0, None
    monitor = RunMonitor.for_run(analysis, fileset)
    with (
        serve_live_views(
            monitor,
            dashboard_port=args.dashboard_port if args.dashboard else None,
            metrics_port=args.metrics_port,
            host=args.listen,
            announce=lambda line: console.print(line, soft_wrap=True, highlight=False),
        ),
        RunProgress(len(fileset), console=console, disable=args.no_progress) as progress,
    ):
        reporting = None if args.reporter is None else args.reporter.on_file
        try:
            result = run(
                analysis,
                fileset,
                executor=executor,
                output=output,
                strict=args.strict,
                options=options,
                on_file=fan_out(monitor.on_file, progress.on_file, reporting),
                on_snapshot=monitor.on_snapshot if args.dashboard else None,
                resume=args.resume is not None,
            )
        except RunFailed as exc:
            result, status = exc.result, 1
            if isinstance(exc, RunAborted):
                console.print(f"[red]error:[/red] {escape(str(exc))}")
                aborted = exc
        except KeyboardInterrupt:
            console.print(f"finished files are journaled: continue with --resume {output}")
            raise
        monitor.finish(result, error=aborted)
        progress.complete(result.files)
    if args.reporter is not None:
        args.reporter.result = result
    _summarise(result)
    if result.files and not any(r.ok for r in result.files):
        return 1
    return status


def _where(args: argparse.Namespace, name: str, executor: Executor) -> str:
    """Where the work runs, in words, for the line a command prints before it starts."""
    if name == "federation":
        return f"{len(executor.clusters)} clusters ({', '.join(c.name for c in executor.clusters)})"
    return args.scheduler or {"dask": "LocalCluster", "kubernetes": "a new KubeCluster"}.get(name, "this process")


def _load_analysis(args: argparse.Namespace) -> Analysis:
    """The analysis module, with one HistFactory channel if ``--combine-channels``."""
    analysis = load_analysis(args.analysis)
    if args.combine_channels:
        analysis = dataclasses.replace(
            analysis, templates=dataclasses.replace(analysis.templates, combine_channels=True)
        )
    return analysis


def _security(args: argparse.Namespace) -> Security | None:
    given = [args.tls_ca_file, args.tls_cert, args.tls_key]
    if not any(given):
        return None
    if args.tls_ca_file is None or args.tls_cert is None:
        raise ValueError("Dask TLS needs --tls-ca-file and --tls-cert (and --tls-key unless the cert holds it)")
    from .security import tls_security

    return tls_security(args.tls_ca_file, args.tls_cert, args.tls_key)


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
    if args.signal_mass is not None:
        if args.out is None:
            raise ValueError("--signal-mass writes a separate signal fileset: give --out DIR")
        options = {"files_per_dataset": args.files_per_dataset, "seed": args.seed, "compression": args.compression}
        print(demo.generate_signal(args.out, args.signal_mass, events=events, **options))
        return 0
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


def _cls(args: argparse.Namespace) -> int:
    from .exclusion import ContourError, plot_exclusion
    from .likelihoods import load_likelihood

    labels = args.labels.split(",") if args.labels else None
    likelihood = load_likelihood(args.likelihood, args.patchset, region=args.region, labels=labels)
    likelihood = likelihood.select(args.patch)
    name, executor = _executor(args)
    console.print(
        f"{likelihood.name}: CLs of {len(likelihood.patches)} signal patches on {_where(args, name, executor)}"
    )
    with RunProgress(len(likelihood.patches), console=console, disable=args.no_progress, unit="patches") as progress:
        scan = scan_cls(likelihood, executor, test_poi=args.test_poi, on_file=progress.on_file)
    out_dir = args.output or Path("lumiflow-output") / f"cls-{likelihood.name}"
    outputs = scan.write(out_dir)
    try:
        outputs["contour"] = plot_exclusion(scan, out_dir / "contour.png", args.axes.split(",") if args.axes else None)
    except ContourError as exc:
        console.print(f"no contour plot: {escape(str(exc))}")
    _print_cls(scan)
    for kind, path in outputs.items():
        console.print(f"  {kind:<10} {path}", soft_wrap=True, highlight=False)
    return 1 if scan.failures else 0


def _print_cls(scan: CLsScan) -> None:
    ok = [r for r in scan.rows if r.ok]
    table = Table(title=f"CLs at {scan.test_poi:g} x the signal ({scan.likelihood})", title_justify="left")
    for column in ("patch", "CLs obs", "CLs exp", "exp -1σ", "exp +1σ", "excluded"):
        table.add_column(column, justify="left" if column == "patch" else "right")
    for r in ok[:30]:
        exp = r.cls_expected
        verdict = "yes" if r.excluded else "no"
        table.add_row(r.patch.name, f"{r.cls_observed:.4g}", f"{exp[2]:.4g}", f"{exp[1]:.4g}", f"{exp[3]:.4g}", verdict)
    if len(ok) > 30:
        table.caption = f"first 30 of {len(ok)}; all in cls.json and cls.csv"
    Console().print(table)
    excluded = sum(r.excluded for r in ok)
    console.print(
        f"[green]{len(ok)}[/green] patches fitted, [red]{len(scan.failures)}[/red] failed; "
        f"{excluded} excluded at 95% CL (observed); {scan.wall_seconds:.1f} s"
    )
    for r in scan.failures:
        console.print(f"[red]FAILED[/red] {escape(f'{r.patch.name}: {r.error}')}", soft_wrap=True, highlight=False)


def _reinterpret(args: argparse.Namespace) -> int:
    from .reinterpret import reinterpret

    analysis = _load_analysis(args)
    previous = args.previous or default_output_dir(analysis)
    fileset = resolve_fileset(analysis, args.signal)
    output = args.output or previous.with_name(f"{previous.name}-{'+'.join(fileset.datasets)}")
    name, executor = _executor(args)
    console.print(
        f"{analysis.name}: the new signal's {len(fileset)} files on {_where(args, name, executor)}, "
        f"tested against the run in {previous}"
    )
    try:
        with RunProgress(len(fileset), console=console, disable=args.no_progress) as progress:
            outcome = reinterpret(
                analysis,
                fileset,
                previous,
                executor=executor,
                output=output,
                test_poi=args.test_poi,
                on_file=progress.on_file,
            )
    except RunFailed as exc:
        _summarise(exc.result)
        console.print("[red]error:[/red] the new signal is incomplete; no CLs computed")
        return 1
    _summarise(outcome.result)
    exp = outcome.cls["CLs_exp"]
    table = Table(title=f"new signal against {previous}", title_justify="left", show_header=False)
    table.add_row(f"CLs observed (μ={args.test_poi:g})", f"{outcome.cls['CLs_obs']:.4g}")
    table.add_row(
        f"CLs expected (μ={args.test_poi:g})",
        f"{exp[2]:.4g}  [-1σ {exp[1]:.4g}, +1σ {exp[3]:.4g}; -2σ {exp[0]:.4g}, +2σ {exp[4]:.4g}]",
    )
    table.add_row("excluded at 95% CL", "yes" if outcome.cls["CLs_obs"] < CLS_LEVEL else "no")
    Console().print(table)
    for kind, path in outcome.outputs.items():
        console.print(f"  {kind:<10} {path}", soft_wrap=True, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
