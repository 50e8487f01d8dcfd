"""Dask: one task per file, partials tree-reduced on the workers.

The client holds futures, never partials: as file tasks finish, groups of ``fan_in`` of them are
merged by a merge task on a worker, and merge results are merged again, until one partial is
left. That keeps the client's memory flat whether there are 10 files or 25,000, and keeps the
merging work spread over the cluster. Merges are exact (see :mod:`processor.partial`), so the
tree's shape never changes the result.

Workers announce each finished file on a per-run event topic, which drives progress bars and
dashboards without fetching any partial. With the run journal (``on_partial``) the client fetches
every file's small partial anyway, one gather per batch of finished files, and passes on the
reports they carry instead: one scheduler message per file fewer. For live histograms
(``on_snapshot``), each worker also keeps a running sum of the histograms of the files it
finished in this run; every few seconds the client gathers and adds those sums, a few small
objects whatever the number of files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dask
from distributed import Client, Future, LocalCluster, as_completed, get_worker
from distributed.security import Security

from ..cache import cache_root
from ..fileset import WorkItem
from ..partial import Partial, merge
from ..report import FileReport
from . import DEFAULT_SNAPSHOT_SECONDS, FileCallback, OncePerFile, RunHooks, SnapshotCallback, Task

__all__ = [
    "DEFAULT_FAN_IN",
    "DaskExecutor",
    "MergeTree",
    "file_announcements",
    "live_snapshots",
    "lost_report",
    "ship_task",
    "submit_files",
]

# Partials merged per merge task. Each tree level re-serialises every file's report and the
# histograms, so a wider, shallower tree costs less: 10,000 tiny files on 2 workers measured
# 3.85 ms of overhead per task with 32 against 4.54 with 8 (benchmarks/README.md). A merge holds
# its inputs in memory, and partials are small by design (histograms, not columns).
DEFAULT_FAN_IN = 32
_MERGE_PRIORITY = 10  # merge before starting new files, so partials do not pile up on workers

# on each worker process: (worker address, run topic) -> sum of the histograms of its finished files
_LIVE_SUMS: dict[tuple[str, str], Partial] = {}
_LIVE_LOCK = threading.Lock()


@dataclass
class DaskExecutor:
    """Run on an existing scheduler (``scheduler="tcp://..."``) or on a fresh LocalCluster.

    A LocalCluster gets ``workers`` single-threaded worker processes (default: one per core):
    the kernels are compiled Python that holds the GIL part of the time, so processes scale
    where threads would not. ``security`` (:func:`processor.security.tls_security`) encrypts and
    authenticates all Dask traffic with TLS; the scheduler's address is then ``tls://...``.
    """

    scheduler: str | None = None
    workers: int | None = None
    fan_in: int = DEFAULT_FAN_IN
    snapshot_seconds: float = DEFAULT_SNAPSHOT_SECONDS
    security: Security | None = None

    def __post_init__(self) -> None:
        if self.fan_in < 2:
            raise ValueError("fan_in must be at least 2")

    def run(self, items: Sequence[WorkItem], task: Task, hooks: RunHooks) -> Partial:
        with self._client() as client:
            return tree_reduce(client, items, task, hooks, self.fan_in, snapshot_seconds=self.snapshot_seconds)

    @contextlib.contextmanager
    def _client(self) -> Iterator[Client]:
        if self.scheduler is not None:
            with Client(self.scheduler, security=self.security) as client:
                yield client
            return
        n = self.workers or os.cpu_count() or 1
        with (
            dask.config.set({"temporary-directory": str(cache_root() / "dask")}),  # scratch: nothing outside the cache
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                security=self.security,  # TLS between client, scheduler and workers when given
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client


def tree_reduce(
    client: Client,
    items: Sequence[WorkItem],
    task: Task,
    hooks: RunHooks,
    fan_in: int,
    *,
    snapshot_seconds: float = DEFAULT_SNAPSHOT_SECONDS,
) -> Partial:
    """Submit one task per item and merge their partials on the workers, ``fan_in`` at a time.

    With ``hooks.on_partial`` (the run journal), each file's partial is also fetched as it
    finishes, one at a time, and handed over on the client; the merge tree is the same either way.
    """
    run = uuid.uuid4().hex[:12]
    on_file = OncePerFile(hooks.on_file)  # a task rerun after its worker died announces again
    with (
        file_announcements(client, run, on_file) as topic,
        live_snapshots(client, topic, hooks.on_snapshot, snapshot_seconds),
    ):
        task_data = ship_task(client, task, run)
        fetching = hooks.on_partial is not None  # every file's partial comes to the client: its report too
        futures = submit_files(
            client, items, task_data, topic, run, live=hooks.on_snapshot is not None, announce=not fetching
        )
        item_of_key = {f.key: item for f, item in zip(futures, items, strict=True)}
        pending = as_completed(futures)
        del futures  # hold no future longer than needed: merged inputs get released
        tree = MergeTree(client, fan_in, run)
        lost = Partial()
        for batch in pending.batches():  # whatever finished since the last look, in one go
            finished = []
            for future in batch:
                if future.status == "finished":
                    finished.append(future)
                    continue
                item = item_of_key.get(future.key)
                if item is None:  # a merge task failed: a bug, not bad input
                    raise future.exception()
                report = lost_report(item, future.exception())
                on_file(report)
                lost.add(Partial(files=[report]))
            if fetching:  # one gather per batch, not a round trip per file
                for partial in client.gather([f for f in finished if f.key in item_of_key]):
                    hooks.on_partial(partial)
                    for report in partial.files:
                        on_file(report)
            for future in finished:
                merged = tree.push(future)
                if merged is not None:
                    pending.add(merged)
        final = tree.collapse()
        result = final.result() if final is not None else Partial()
        result.add(lost)
        return result


@contextlib.contextmanager
def file_announcements(client: Client, run: str, on_file: FileCallback) -> Iterator[str]:
    """The run's event topic, on which workers announce each finished file to ``on_file``."""
    topic = f"lumiflow-files-{run}"

    def announce(event: tuple[float, list[dict]]) -> None:
        for record in event[1]:
            on_file(FileReport(**record))

    client.subscribe_topic(topic, announce)
    try:
        yield topic
    finally:
        client.unsubscribe_topic(topic)


def submit_files(
    client: Client,
    items: Sequence[WorkItem],
    task: Future,
    topic: str,
    run: str,
    live: bool = False,
    announce: bool = True,
) -> list[Future]:
    """One task per item (``task`` is the scattered :class:`~processor.task.FileTask`), keyed by run and index.

    ``live``: the workers keep running sums of the histograms for :func:`live_snapshots`.
    ``announce``: each finished file is announced on ``topic``; not needed when the client fetches
    every file's partial anyway (the journal), whose report it then passes on itself.
    """
    return client.map(
        _run_item,
        items,
        task=task,
        topic=topic,
        live=live,
        announce=announce,
        key=[f"lumiflow-file-{run}-{item.index}" for item in items],
        pure=False,
    )


class MergeTree:
    """Finished partials of one cluster, merged ``fan_in`` at a time by merge tasks on its workers.

    The client holds only futures. :class:`DaskExecutor` runs one tree; the federation runs one
    per cluster, and fetches a cluster's :meth:`collapse` as that cluster's partial.
    """

    def __init__(self, client: Client, fan_in: int, run: str):
        self.client = client
        self.fan_in = fan_in
        self.run = run
        self.ready: list[Future] = []
        self.merges = 0

    def push(self, future: Future) -> Future | None:
        """Hold a finished partial; with ``fan_in`` held, return the merge task submitted for them."""
        self.ready.append(future)
        return self.collapse() if len(self.ready) >= self.fan_in else None

    def collapse(self) -> Future | None:
        """One future for everything held: their merge, the only one, or None when nothing is held."""
        ready, self.ready = self.ready, []
        if len(ready) <= 1:
            return ready[0] if ready else None
        self.merges += 1
        return self.client.submit(
            _merge, *ready, key=f"lumiflow-merge-{self.run}-{self.merges}", priority=_MERGE_PRIORITY
        )


@contextlib.contextmanager
def live_snapshots(client: Client, topic: str, on_snapshot: SnapshotCallback | None, seconds: float) -> Iterator[None]:
    """While the run lasts, hand ``on_snapshot`` the sum of the workers' running sums every ``seconds``.

    A provisional view: a worker that dies takes its sum along, and a file recomputed elsewhere
    may count twice in it; the run's result is the exact tree-reduced merge all the same.
    """
    if on_snapshot is None:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(seconds):
            try:
                sums = client.run(_live_sum, topic, on_error="ignore")
                on_snapshot(merge(p for p in sums.values() if p is not None))
            except Exception:  # noqa: BLE001 - a live view must never break the run
                logging.getLogger(__name__).warning("live histogram snapshot failed", exc_info=True)

    poller = threading.Thread(target=poll, name=f"{topic}-snapshots", daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join()
        with contextlib.suppress(Exception):  # workers that are gone took their sums along
            client.run(_drop_live_sum, topic, on_error="ignore")


def _run_item(item: WorkItem, task: Task, topic: str, live: bool = False, announce: bool = True) -> Partial:
    partial = task(item)
    worker = get_worker()
    if announce:
        worker.log_event(topic, [r.to_dict() for r in partial.files])
    if live:
        with _LIVE_LOCK:
            _LIVE_SUMS.setdefault((worker.address, topic), Partial()).add(partial.without_files())
    return partial


def _live_sum(topic: str, dask_worker) -> Partial | None:
    """This worker's running sum for the run (a copy: the worker goes on adding to it)."""
    with _LIVE_LOCK:
        running = _LIVE_SUMS.get((dask_worker.address, topic))
        return running.without_files() if running is not None else None


def _drop_live_sum(topic: str, dask_worker) -> None:
    with _LIVE_LOCK:
        _LIVE_SUMS.pop((dask_worker.address, topic), None)


def ship_task(client: Client, task: Task, run: str) -> Future:
    """The task as one future that each worker fetches once, and that Dask recomputes if lost.

    Not ``client.scatter``: scattered data is gone for good when the workers holding it die (a
    one-worker cluster whose worker is killed for memory), and every file task of the run with it.
    """
    return client.submit(_itself, task, key=f"lumiflow-task-{run}", pure=False)


def _itself(task: Task) -> Task:
    return task


def _merge(*partials: Partial) -> Partial:
    return merge(partials)


def lost_report(item: WorkItem, exc: BaseException | None) -> FileReport:
    """A file whose task never returned: its workers died (memory?) or it could not be run."""
    message = f"{type(exc).__name__}: {exc}" if exc is not None else "task cancelled"
    if type(exc).__name__ == "KilledWorker":
        message += (
            " (workers died while processing this file; if they ran out of memory, read it in smaller steps: --step-mb)"
        )
    return FileReport(index=item.index, path=item.url, dataset=item.dataset, status="failed", error=message)
