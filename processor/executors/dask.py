"""Dask: one task per file, partials tree-reduced on the workers.

The client holds futures, never partials: as file tasks finish, groups of ``fan_in`` of them are
merged by a merge task on a worker, and merge results are merged again, until one partial is
left. That keeps the client's memory flat whether there are 10 files or 25,000, and keeps the
merging work spread over the cluster. Merges are exact (see :mod:`processor.partial`), so the
tree's shape never changes the result.

Workers announce each finished file on a per-run event topic, which drives progress bars and
dashboards without fetching any partial.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from distributed import Client, LocalCluster, as_completed, get_worker

from ..fileset import WorkItem
from ..partial import Partial, merge
from ..report import FileReport
from . import FileCallback, Task

__all__ = ["DEFAULT_FAN_IN", "DaskExecutor"]

DEFAULT_FAN_IN = 8
_MERGE_PRIORITY = 10  # merge before starting new files, so partials do not pile up on workers


@dataclass
class DaskExecutor:
    """Run on an existing scheduler (``scheduler="tcp://..."``) or on a fresh LocalCluster.

    A LocalCluster gets ``workers`` single-threaded worker processes (default: one per core):
    the kernels are compiled Python that holds the GIL part of the time, so processes scale
    where threads would not.
    """

    scheduler: str | None = None
    workers: int | None = None
    fan_in: int = DEFAULT_FAN_IN

    def __post_init__(self) -> None:
        if self.fan_in < 2:
            raise ValueError("fan_in must be at least 2")

    def run(self, items: Sequence[WorkItem], task: Task, on_file: FileCallback) -> Partial:
        with self._client() as client:
            return tree_reduce(client, items, task, on_file, self.fan_in)

    @contextlib.contextmanager
    def _client(self) -> Iterator[Client]:
        if self.scheduler is not None:
            with Client(self.scheduler) as client:
                yield client
            return
        n = self.workers or os.cpu_count() or 1
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client


def tree_reduce(client: Client, items: Sequence[WorkItem], task: Task, on_file: FileCallback, fan_in: int) -> Partial:
    """Submit one task per item and merge their partials on the workers, ``fan_in`` at a time."""
    run = uuid.uuid4().hex[:12]
    topic = f"lumiflow-files-{run}"

    def announce(event: tuple[float, list[dict]]) -> None:
        for record in event[1]:
            on_file(FileReport(**record))

    client.subscribe_topic(topic, announce)
    try:
        [task_data] = client.scatter([task], broadcast=True, hash=False)
        futures = client.map(
            _run_item,
            items,
            task=task_data,
            topic=topic,
            key=[f"lumiflow-file-{run}-{item.index}" for item in items],
            pure=False,
        )
        item_of_key = {f.key: item for f, item in zip(futures, items, strict=True)}
        pending = as_completed(futures)
        del futures  # hold no future longer than needed: merged inputs get released
        ready = []
        lost = Partial()
        merges = 0
        for future in pending:
            if future.status != "finished":
                item = item_of_key.get(future.key)
                if item is None:  # a merge task failed: a bug, not bad input
                    raise future.exception()
                report = _lost_report(item, future.exception())
                on_file(report)
                lost.add(Partial(files=[report]))
                continue
            ready.append(future)
            if len(ready) >= fan_in:
                merges += 1
                pending.add(
                    client.submit(_merge, *ready, key=f"lumiflow-merge-{run}-{merges}", priority=_MERGE_PRIORITY)
                )
                ready = []
        if not ready:
            result = Partial()
        elif len(ready) == 1:
            result = ready[0].result()
        else:
            result = client.submit(_merge, *ready, key=f"lumiflow-merge-{run}-final").result()
        result.add(lost)
        return result
    finally:
        client.unsubscribe_topic(topic)


def _run_item(item: WorkItem, task: Task, topic: str) -> Partial:
    partial = task(item)
    get_worker().log_event(topic, [r.to_dict() for r in partial.files])
    return partial


def _merge(*partials: Partial) -> Partial:
    return merge(partials)


def _lost_report(item: WorkItem, exc: BaseException | None) -> FileReport:
    """A file whose task never returned: its workers died (memory?) or it could not be run."""
    message = f"{type(exc).__name__}: {exc}" if exc is not None else "task cancelled"
    if type(exc).__name__ == "KilledWorker":
        message += " (workers died while processing this file; if they ran out of memory, split the file by entries)"
    return FileReport(index=item.index, path=item.url, dataset=item.dataset, status="failed", error=message)
