"""The ``lumiflow`` subcommands for a cluster: ``submit``, ``status``, ``results``, and ``run --report-to``.

Kept apart from :mod:`processor.cli` so that the command works without the ``kubernetes`` extra:
nothing here imports the Kubernetes client until one of these commands runs.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .api import api_client, default_namespace
from .reporter import AnalysisReporter
from .results import fetch_results
from .submit import analysis_object, read_status, submit

__all__ = ["COMMANDS", "add_parsers", "reporting"]

WATCH_SECONDS = 2.0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("submit", help="create an Analysis on a Kubernetes cluster (module and fileset embedded)")
    s.add_argument("analysis", type=Path, help="analysis module file (its source is embedded)")
    s.add_argument("--fileset", type=Path, required=True, help="JSON/YAML fileset; its URLs must be readable by pods")
    s.add_argument("--workers", type=int, help="Dask worker pods (default 2)")
    s.add_argument("--image", help="Lumiflow image (default: the operator's)")
    s.add_argument("--name", help="Analysis name (default: generated from the analysis' name)")
    _cluster_options(s)

    st = sub.add_parser("status", help="phase, progress and throughput of an Analysis")
    st.add_argument("name")
    st.add_argument("--watch", action="store_true", help=f"refresh every {WATCH_SECONDS:g} s until it finishes")
    _cluster_options(st)

    r = sub.add_parser("results", help="fetch the outputs of a finished Analysis")
    r.add_argument("name")
    r.add_argument("--output", type=Path, required=True, help="directory to write them into")
    _cluster_options(r)


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--namespace", "-n", help="namespace (default: the context's)")


def _submit(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    submission = analysis_object(args.analysis, args.fileset, workers=args.workers, image=args.image, name=args.name)
    console = Console(stderr=True)
    for path in submission.local_files[:3]:
        console.print(f"[yellow]warning:[/yellow] {escape(path)} is a local path: pods must find it on their own disk")
    client = api_client(args.context)
    namespace = args.namespace or default_namespace(args.context)
    name = submit(client, submission.body, namespace)
    print(name)
    console.print(f"watch it with: lumiflow status {name} --namespace {namespace} --watch")
    return 0


def _status(args: argparse.Namespace) -> int:
    client = api_client(args.context)
    namespace = args.namespace or default_namespace(args.context)
    while True:
        status = read_status(client, namespace, args.name)
        print(status.line(), flush=True)
        if not args.watch or status.finished:
            return 1 if status.phase == "Failed" else 0
        time.sleep(WATCH_SECONDS)


def _results(args: argparse.Namespace) -> int:
    client = api_client(args.context)
    namespace = args.namespace or default_namespace(args.context)
    for path in fetch_results(client, namespace, args.name, args.output):
        print(path)
    return 0


COMMANDS = {"submit": _submit, "status": _status, "results": _results}


@contextlib.contextmanager
def reporting(target: str) -> Iterator[AnalysisReporter]:
    """The status reporter for ``--report-to NAMESPACE/NAME`` (the runner pod's own Analysis)."""
    namespace, sep, name = target.partition("/")
    if not sep or not namespace or not name:
        raise ValueError(f"--report-to {target!r}: expected NAMESPACE/NAME")
    with AnalysisReporter(api_client(), namespace, name) as reporter:
        yield reporter
