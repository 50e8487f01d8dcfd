"""The run driver's status reporter: a run's progress written into its Analysis' status.

It is fed by the executor's ``on_file`` callback, which Dask calls on the client's event loop:
``on_file`` therefore only counts, under a lock, and a background thread patches the status
subresource at most every ``interval`` seconds. At the end, the outputs are stored in the
results ConfigMap (and copied to the Analysis' output URL, if it has one) and the final phase,
counts and output location are written from the run's result, not from the live counts.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from pathlib import Path
from typing import Any

import fsspec

from ..metrics import Tally
from ..report import FileReport
from ..result import Result
from .api import GROUP, PLURAL, VERSION, custom_objects, get_analysis
from .results import results_name, store_results

__all__ = ["AnalysisReporter"]

log = logging.getLogger(__name__)


class AnalysisReporter:
    """Writes phase, file counts and throughput into ``analyses/<name>/status``.

    Use as a context manager around the run: leaving it by an exception marks the Analysis
    Failed with the exception as its message, so a crashed driver never leaves it Running.
    """

    def __init__(self, client: Any, namespace: str, name: str, *, interval: float = 2.0):
        self._client = client
        self.namespace = namespace
        self.name = name
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._finished = False
        self._start = time.monotonic()
        self.files_total = 0
        self.tally = Tally()  # files finished so far, as the executor announced them
        self.result: Result | None = None  # set by the command when the run returns
        self.analysis = get_analysis(client, namespace, name)  # fails early if it does not exist

    def __enter__(self) -> AnalysisReporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not self._finished:
            self.fail(f"{exc_type.__name__}: {exc}")
        self._stop_flushing()

    def start(self, files_total: int) -> None:
        """The run begins: phase Running, the number of files, and the flushing thread."""
        self._start = time.monotonic()
        self.files_total = files_total
        self._patch({"phase": "Running", "startedAt": _now(), "filesTotal": files_total, "message": None})
        self._thread = threading.Thread(target=self._flush_loop, name="lumiflow-status", daemon=True)
        self._thread.start()

    def on_file(self, report: FileReport) -> None:
        """The executor's per-file callback: count only (it runs on Dask's event loop)."""
        with self._lock:
            self.tally.add(Tally.of(report))
            self._dirty = True

    def finished(self, exit_code: int) -> int:
        """The command returned ``exit_code`` after setting :attr:`result`: write the outcome."""
        if self.result is None:
            self.fail(f"the run ended (exit code {exit_code}) without a result")
        else:
            self.finish(self.result, failed=exit_code != 0)
        return exit_code

    def finish(self, result: Result, *, failed: bool) -> None:
        """Store the outputs and write the final status from ``result`` (exact, unlike live counts)."""
        self._stop_flushing()
        files = [Path(p) for p in result.outputs.values()]
        omitted = store_results(self._client, self.analysis, files)
        url = (self.analysis["spec"].get("output") or {}).get("url")
        if url is not None:
            fs, root = fsspec.core.url_to_fs(url)
            fs.makedirs(root, exist_ok=True)
            for path in files:
                fs.put_file(str(path), f"{root.rstrip('/')}/{path.name}")
        final = Tally()
        for report in result.files:
            final.add(Tally.of(report))
        with self._lock:
            self.tally = final
        message = f"{final.failed} file(s) failed" if final.failed else ""
        if omitted:
            message += ("; " if message else "") + f"not in the results ConfigMap (too large): {', '.join(omitted)}"
        self._finished = True
        self._patch(
            {
                **self._counts(result.wall_seconds),
                "phase": "Failed" if failed else "Succeeded",
                "finishedAt": _now(),
                "output": url or self._output_location(),
                "message": message or None,  # null removes the field (merge patch)
            }
        )

    def fail(self, message: str) -> None:
        """The run could not complete (bad input, lost cluster): phase Failed with the reason."""
        self._stop_flushing()
        self._finished = True
        self._patch({**self._counts(), "phase": "Failed", "finishedAt": _now(), "message": message[:2000]})

    def _output_location(self) -> str:
        pvc = (self.analysis["spec"].get("output") or {}).get("pvc")
        if pvc is not None:
            return f"pvc://{pvc['claimName']}/{pvc.get('path') or self.name}"
        return f"configmap/{results_name(self.name)}"

    def _counts(self, seconds: float | None = None) -> dict[str, Any]:
        with self._lock:
            elapsed = max(seconds if seconds is not None else time.monotonic() - self._start, 1e-9)
            self._dirty = False
            tally = self.tally
            return {
                "filesTotal": max(self.files_total, tally.done),
                "filesDone": tally.done,
                "filesFailed": tally.failed,
                "eventsProcessed": tally.events,
                "eventsPerSecond": round(tally.events / elapsed, 3),
                "bytesPerSecond": round(tally.bytes_read / elapsed, 3),
            }

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._interval):
            if self._dirty:
                try:
                    self._patch(self._counts())
                except Exception as exc:  # live progress is best-effort; the final status is not
                    log.warning("could not update the status of Analysis %s/%s: %s", self.namespace, self.name, exc)

    def _stop_flushing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _patch(self, status: dict[str, Any]) -> None:
        custom_objects(self._client).patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"status": status}
        )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
