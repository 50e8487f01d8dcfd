"""Federation: one run fanned out over several Dask clusters, surviving the loss of any of them.

Dispatch is pull-based: each cluster keeps a bounded number of files in flight (``per_worker``
times its current worker threads, times its weight, re-read as it scales), so a bigger or faster
cluster simply comes back for more; nothing is split up front. Each cluster tree-reduces its own
partials on its workers (:class:`~processor.executors.dask.MergeTree`) and the client fetches
the merged partial; the client merges one partial per fetch, exactly (see :mod:`processor.partial`),
so the result is the single-cluster result bit for bit.

What the client holds is the unit of "arrived". A file is assigned to one cluster until a partial
containing it has been *fetched* to the client; a partial that finished on a cluster but was not
fetched is lost with that cluster. When a cluster is lost (its scheduler closed or unreachable),
every file it still had assigned goes back to the queue for the others - finished-but-unfetched
ones included - so each file is counted exactly once. Clusters fetch a checkpoint every
``checkpoint_seconds`` so that a late loss costs at most that much recomputation. When the run
journal asks for each file's partial on the client (``on_partial``), each is fetched as it
finishes - it has then arrived - and the client does the merging.

One loop in the calling thread drives every cluster; connecting (and finding a Kubernetes
DaskCluster) happens in background threads so that an unreachable cluster stalls no other.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from distributed import Client, Future
from distributed.security import Security

from ..fileset import WorkItem
from ..partial import Partial, merge
from ..report import FileReport
from . import DEFAULT_SNAPSHOT_SECONDS, ExecutorAborted, OncePerFile, RunHooks, Task
from .dask import (
    DEFAULT_FAN_IN,
    MergeTree,
    file_announcements,
    live_snapshots,
    lost_report,
    ship_task,
    submit_files,
)

__all__ = ["ClusterSpec", "FederationError", "FederationExecutor", "KubernetesCluster", "load_clusters"]

DEFAULT_PER_WORKER = 2  # files in flight per worker thread: one running, one queued behind it
DEFAULT_CHECKPOINT_SECONDS = 60.0
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 60.0
_REFRESH_SECONDS = 1.0  # the loop wakes at least this often, without news, to follow worker counts
DEFAULT_REREAD_SECONDS = 5.0  # how often a cluster list file is checked for new clusters during a run


class FederationError(ValueError):
    """A bad cluster list (file, entry and reason named) or a cluster that cannot be resolved."""


@dataclass(frozen=True)
class KubernetesCluster:
    """A ``DaskCluster`` resource, found through dask-kubernetes in a kube context."""

    name: str
    namespace: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class ClusterSpec:
    """One member of a federation: a scheduler address or a Kubernetes DaskCluster, and its weight.

    The weight scales how many files the cluster keeps in flight per worker (default 1).
    """

    name: str
    address: str | None = None
    kubernetes: KubernetesCluster | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if (self.address is None) == (self.kubernetes is None):
            raise FederationError(f"cluster {self.name!r}: give exactly one of address or kubernetes")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and self.weight > 0):
            raise FederationError(f"cluster {self.name!r}: weight must be a positive number, not {self.weight!r}")

    @classmethod
    def of(cls, cluster: str | ClusterSpec) -> ClusterSpec:
        """A bare scheduler address is a cluster named by its address."""
        return cluster if isinstance(cluster, ClusterSpec) else cls(name=cluster, address=cluster)


_ENTRY_KEYS = {"name", "address", "weight", "kubernetes"}
_KUBERNETES_KEYS = {"cluster", "namespace", "context"}


def load_clusters(path: str | os.PathLike[str]) -> list[ClusterSpec]:
    """Parse a YAML cluster list: ``clusters:`` (or a bare list) of entries such as

    ``{name: cern, address: "tcp://dask.cern.ch:8786", weight: 2}`` or
    ``{name: gke, kubernetes: {cluster: lumiflow, namespace: dask, context: gke-prod}}``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FederationError(f"{path}: cannot read the cluster list: {exc}") from exc
    entries = data.get("clusters") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise FederationError(f"{path}: expected a non-empty list of clusters (under 'clusters:')")
    specs = [_parse_entry(path, i, entry) for i, entry in enumerate(entries)]
    _check_unique(specs, str(path))
    return specs


def _parse_entry(path: Path, position: int, entry: Any) -> ClusterSpec:
    where = f"{path}: cluster #{position + 1}"
    if isinstance(entry, str):
        return ClusterSpec.of(entry)
    if not isinstance(entry, dict):
        raise FederationError(f"{where}: expected an address or a mapping, not {type(entry).__name__}")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise FederationError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_ENTRY_KEYS)})")
    kubernetes = None
    if "kubernetes" in entry:
        k8s = entry["kubernetes"]
        if not isinstance(k8s, dict) or not isinstance(k8s.get("cluster"), str):
            raise FederationError(f"{where}: kubernetes needs 'cluster' (the DaskCluster name)")
        unknown = set(k8s) - _KUBERNETES_KEYS
        if unknown:
            raise FederationError(
                f"{where}: unknown kubernetes keys {sorted(unknown)} (known: {sorted(_KUBERNETES_KEYS)})"
            )
        kubernetes = KubernetesCluster(k8s["cluster"], k8s.get("namespace"), k8s.get("context"))
    address = entry.get("address")
    if address is not None and not isinstance(address, str):
        raise FederationError(f"{where}: address must be a string")
    default_name = address or (f"{kubernetes.context or 'k8s'}/{kubernetes.name}" if kubernetes else None)
    name = entry.get("name", default_name)
    try:
        return ClusterSpec(name=str(name), address=address, kubernetes=kubernetes, weight=entry.get("weight", 1.0))
    except FederationError as exc:
        raise FederationError(f"{where}: {exc}") from exc


def _check_unique(specs: Sequence[ClusterSpec], where: str) -> None:
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FederationError(f"{where}: cluster names must be unique, repeated: {twice}")


_KUBECONFIG_LOCK = threading.Lock()


def _resolve_kubernetes(ref: KubernetesCluster) -> tuple[str, Any]:
    """The scheduler address of a DaskCluster (port-forwarded when outside the cluster), and its handle.

    dask-kubernetes talks to the current kube context of ``$KUBECONFIG``; another context is
    selected by pointing ``$KUBECONFIG`` at a copy whose current-context is that one while the
    cluster is looked up (the port-forward it starts keeps that connection).
    """
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError as exc:
        raise FederationError(
            f"cluster {ref.name!r} is a Kubernetes DaskCluster: finding it needs dask-kubernetes "
            f"(pip install 'lumiflow[kubernetes]'): {exc}"
        ) from exc
    with _KUBECONFIG_LOCK, _kube_context(ref.context):
        try:
            cluster = KubeCluster.from_name(ref.name, namespace=ref.namespace, quiet=True)
        except Exception as exc:  # noqa: BLE001 - any lookup failure makes the cluster unavailable, named
            where = f"context {ref.context!r}, " if ref.context else ""
            raise FederationError(
                f"DaskCluster {ref.name!r} ({where}namespace {ref.namespace or 'default'}): {type(exc).__name__}: {exc}"
            ) from exc
    return cluster.scheduler_address, cluster


@contextlib.contextmanager
def _kube_context(context: str | None):
    if context is None:
        yield
        return
    source = Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()
    config = yaml.safe_load(source.read_text())
    if context not in {c.get("name") for c in config.get("contexts") or []}:
        raise FederationError(f"kube context {context!r} is not in {source}")
    config["current-context"] = context
    old = os.environ.get("KUBECONFIG")
    with tempfile.TemporaryDirectory(prefix="lumiflow-kube-") as tmp:
        copy = Path(tmp) / "config"
        copy.write_text(yaml.safe_dump(config))
        os.environ["KUBECONFIG"] = str(copy)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old


@dataclass(frozen=True)
class ClusterTask:
    """The run's task, stamping each file report with the cluster that ran it."""

    task: Task
    cluster: str

    def __call__(self, item: WorkItem) -> Partial:
        partial = self.task(item)
        for report in partial.files:
            report.cluster = self.cluster
        return partial


@dataclass
class FederationExecutor:
    """Run over several Dask clusters at once; see the module docstring for the guarantees.

    ``clusters`` are scheduler addresses or :class:`ClusterSpec`, plus those of ``clusters_file``
    (:func:`load_clusters`); :meth:`add_cluster` adds one while a run is going on, and so does
    adding an entry to ``clusters_file`` (re-read every few seconds during a run; entries removed
    from it are not dropped). After a run, :attr:`cluster_records` describes each cluster (the
    ``clusters`` section of ``report.json``).
    """

    clusters: list[str | ClusterSpec] = field(default_factory=list)
    clusters_file: str | os.PathLike[str] | None = None
    reread_seconds: float = DEFAULT_REREAD_SECONDS
    fan_in: int = DEFAULT_FAN_IN
    per_worker: int = DEFAULT_PER_WORKER
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # a cluster not reached in this time is lost
    timeout: float = DEFAULT_TIMEOUT  # a cluster whose partial does not come in this time once ready is lost
    snapshot_seconds: float = DEFAULT_SNAPSHOT_SECONDS
    security: Security | None = None  # TLS to every cluster (processor.security.tls_security)
    cluster_records: list[dict[str, Any]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.clusters = [ClusterSpec.of(c) for c in self.clusters]
        self._file_state: tuple[float, int] | None = None
        if self.clusters_file is not None:
            self.clusters_file = Path(self.clusters_file)
            self._file_state = _file_state(self.clusters_file)
            self.clusters += load_clusters(self.clusters_file)
        if not self.clusters:
            raise FederationError("a federation needs at least one cluster")
        _check_unique(self.clusters, "the federation's clusters")
        if self.fan_in < 2:
            raise ValueError("fan_in must be at least 2")
        if self.per_worker < 1:
            raise ValueError("per_worker must be at least 1")
        self._lock = threading.Lock()
        self._current: _FederatedRun | None = None

    def reread_clusters_file(self) -> None:
        """Add the clusters that appeared in ``clusters_file`` since it was last read.

        A file caught half-written (or broken) is read again at its next change: the run goes on.
        """
        if self.clusters_file is None or _file_state(self.clusters_file) == self._file_state:
            return
        self._file_state = _file_state(self.clusters_file)
        try:
            specs = load_clusters(self.clusters_file)
        except FederationError as exc:
            logging.getLogger(__name__).warning("cluster list not re-read: %s", exc)
            return
        known = {c.name for c in self.clusters}
        for spec in specs:
            if spec.name not in known:
                self.add_cluster(spec)

    def add_cluster(self, cluster: str | ClusterSpec) -> None:
        """Add a cluster: it joins the run going on (if any) and every later run."""
        spec = ClusterSpec.of(cluster)
        with self._lock:
            _check_unique([*self.clusters, spec], "add_cluster")
            self.clusters.append(spec)
            if self._current is not None:
                self._current.join(spec)

    def run(self, items: Sequence[WorkItem], task: Task, hooks: RunHooks) -> Partial:
        """Process every item once over the clusters; raises :class:`ExecutorAborted` if all are lost.

        ``hooks.on_snapshot`` gets the sum of the clusters' latest live sums; with
        ``hooks.on_partial`` (the journal) each file's partial is fetched as it finishes - it has
        then arrived - and the client merges them instead of the clusters.
        """
        federated = _FederatedRun(self, items, task, hooks)
        with self._lock:
            self._current = federated
            for spec in self.clusters:
                federated.join(spec)
        try:
            return federated.run()
        finally:
            with self._lock:
                self._current = None
            federated.close()
            self.cluster_records = federated.records()


@dataclass(eq=False)
class _Member:
    """A connected cluster and what the client knows of its work."""

    spec: ClusterSpec
    address: str
    client: Client
    handle: Any  # a KubeCluster to keep its port-forward open, else None
    run: str  # this run's name on the cluster: task keys and the announcement topic
    announcements: contextlib.ExitStack
    topic: str
    task: Future  # the run's ClusterTask, held on a worker
    tree: MergeTree
    joined: float
    files: dict[str, tuple[Future, WorkItem]] = field(default_factory=dict)  # file tasks in flight
    merges: set[Future] = field(default_factory=set)
    fetches: set[Future] = field(default_factory=set)  # partials on their way to the client
    assigned: dict[int, WorkItem] = field(default_factory=dict)  # not yet arrived at the client
    threads: int = 0
    last_fetch: float = 0.0
    busy_seconds: float = 0.0
    busy_since: float | None = None
    lost: dict[str, Any] | None = None

    def bound(self, per_worker: int) -> int:
        return math.ceil(per_worker * self.threads * self.spec.weight) if self.threads else 0


class _FederatedRun:
    """The state of one run: the queue, the members, what has arrived. Driven by one loop, one thread."""

    def __init__(self, executor: FederationExecutor, items: Sequence[WorkItem], task: Task, callbacks: RunHooks):
        self.executor = executor
        self.items = list(items)
        self.task = task
        self.callbacks = callbacks
        self.snapshots: dict[str, Partial] = {}  # each live cluster's latest live sum
        self.run_id = uuid.uuid4().hex[:12]
        self.queue: deque[WorkItem] = deque(self.items)
        self.arrived = Partial()
        self.members: list[_Member] = []
        self.failed_joins: list[dict[str, Any]] = []
        self.connecting: dict[concurrent.futures.Future, ClusterSpec] = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="lumiflow-federation")
        self.wake = threading.Event()
        self.start = time.perf_counter()
        self.next_reread = time.monotonic() + self.executor.reread_seconds
        # a file recomputed after its cluster was lost is not announced again
        self._announce = OncePerFile(callbacks.on_file)
        self._announce_lock = threading.Lock()  # the clusters' live snapshots
        self._connecting_lock = threading.Lock()
        self.retiring: list[threading.Thread] = []  # closing the clients of lost clusters

    # -- joining -----------------------------------------------------------------------------

    def join(self, spec: ClusterSpec) -> None:
        """Connect in the background: an unreachable cluster must not stall the others (thread-safe)."""
        with self._connecting_lock:
            future = self.pool.submit(self._connect, spec)
            self.connecting[future] = spec
        future.add_done_callback(self._wake)

    def _connect(self, spec: ClusterSpec) -> _Member:
        handle = None
        address = spec.address
        if spec.kubernetes is not None:
            address, handle = _resolve_kubernetes(spec.kubernetes)
        try:
            client = Client(
                address, timeout=self.executor.connect_timeout, security=self.executor.security, set_as_default=False
            )
        except BaseException:
            if handle is not None:  # its port-forward
                handle.close()
            raise
        run = f"{self.run_id}-{uuid.uuid4().hex[:6]}"
        try:
            announcements = contextlib.ExitStack()
            topic = announcements.enter_context(file_announcements(client, run, self._announce))
            on_snapshot = functools.partial(self._snapshot, spec.name) if self.callbacks.on_snapshot else None
            announcements.enter_context(live_snapshots(client, topic, on_snapshot, self.executor.snapshot_seconds))
            task = ship_task(client, ClusterTask(self.task, spec.name), run)  # no waiting for workers
        except BaseException:
            client.close()
            raise
        now = self.now()
        tree = MergeTree(client, self.executor.fan_in, run)
        return _Member(spec, address, client, handle, run, announcements, topic, task, tree, joined=now, last_fetch=now)

    def _admit_joins(self) -> None:
        with self._connecting_lock:
            done = {f: spec for f, spec in self.connecting.items() if f.done()}
            for future in done:
                del self.connecting[future]
        for future, spec in done.items():
            try:
                self.members.append(future.result())
            except Exception as exc:  # noqa: BLE001 - an unreachable cluster is recorded, the others go on
                self.failed_joins.append(
                    {"name": spec.name, "address": spec.address, "weight": spec.weight}
                    | {"lost": self._loss_record(f"could not connect: {type(exc).__name__}: {exc}", 0)}
                )

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> Partial:
        while True:
            self.wake.clear()
            self._admit_joins()
            for member in self.live():
                with self._losing_on_disconnect(member):
                    self._harvest(member)
            if len(self.arrived.files) == len(self.items):
                return self.arrived
            if not self.live() and not self.connecting:
                raise self._aborted()
            if time.monotonic() >= self.next_reread:
                self.executor.reread_clusters_file()
                self.next_reread = time.monotonic() + self.executor.reread_seconds
            for member in self.live():
                with self._losing_on_disconnect(member):
                    self._dispatch(member)
                    self._collect(member)
                self._track_busy(member)
            self.wake.wait(_REFRESH_SECONDS)

    @contextlib.contextmanager
    def _losing_on_disconnect(self, member: _Member) -> Iterator[None]:
        """Lose ``member`` when what it was asked fails because its scheduler is gone; re-raise the rest."""
        try:
            yield
        except _ClusterGone as gone:
            self._lose(member, str(gone))
        except Exception as exc:
            if member.client.status == "running":
                raise
            self._lose(member, f"scheduler connection lost ({member.client.status}): {type(exc).__name__}: {exc}")

    def live(self) -> list[_Member]:
        return [m for m in self.members if m.lost is None]

    def now(self) -> float:
        return time.perf_counter() - self.start

    def _harvest(self, member: _Member) -> None:
        """Take in what finished on ``member``: file tasks, merges, fetched partials."""
        for key, (future, item) in list(member.files.items()):
            if future.done():
                del member.files[key]
                self._file_done(member, future, item)
        for done in [m for m in member.merges if m.done()]:
            member.merges.discard(done)
            self._push(member, _merged(member, done))
        for fetch in [f for f in member.fetches if f.done()]:
            member.fetches.discard(fetch)
            partial = _fetched(member, _merged(member, fetch), self.executor.timeout)
            self._arrive(member, partial)
            if self.callbacks.on_partial is not None:
                self.callbacks.on_partial(partial)

    def _file_done(self, member: _Member, future: Future, item: WorkItem) -> None:
        if future.status == "finished":
            if self.callbacks.on_partial is not None:
                member.fetches.add(future)  # the journal wants each file's partial: fetch it alone
            else:
                self._push(member, future)
            return
        _raise_if_gone(member, future)
        # the cluster is fine but the task could not run (its workers died on it): the file failed
        report = lost_report(item, future.exception())
        report.cluster = member.spec.name
        self._announce(report)
        self._arrive(member, Partial(files=[report]))

    def _push(self, member: _Member, future: Future) -> None:
        merged = member.tree.push(future)
        if merged is not None:
            member.merges.add(merged)
            merged.add_done_callback(self._wake)

    def _arrive(self, member: _Member, partial: Partial) -> None:
        """The client now holds ``partial``: its files are no longer ``member``'s to lose."""
        self.arrived.add(partial)  # refuses a file counted twice
        for report in partial.files:
            member.assigned.pop(report.index, None)

    def _dispatch(self, member: _Member) -> None:
        """Top ``member`` up to its bound, from its current worker count (it may have scaled)."""
        if member.client.status != "running":
            raise _ClusterGone(f"scheduler connection lost ({member.client.status})")
        member.threads = _worker_threads(member.client)
        room = member.bound(self.executor.per_worker) - len(member.files)
        batch = [self.queue.popleft() for _ in range(min(room, len(self.queue)))]
        for item in batch:  # assigned before submitting: should submitting fail, losing it re-queues them
            member.assigned[item.index] = item
        if not batch:
            return
        for item, future in zip(
            batch,
            submit_files(
                member.client, batch, member.task, member.topic, member.run, live=self.callbacks.on_snapshot is not None
            ),
            strict=True,
        ):
            member.files[future.key] = (future, item)
            future.add_done_callback(self._wake)

    def _collect(self, member: _Member) -> None:
        """Fetch the cluster's merged partial when it has run dry, or as a periodic checkpoint."""
        if member.fetches or not member.tree.ready:
            return
        dry = not member.files and not member.merges and not self.queue
        due = self.now() - member.last_fetch >= self.executor.checkpoint_seconds
        if dry or due:
            fetch = member.tree.collapse()
            member.fetches.add(fetch)
            fetch.add_done_callback(self._wake)
            member.last_fetch = self.now()

    def _track_busy(self, member: _Member) -> None:
        now = self.now()
        if member.files and member.busy_since is None:
            member.busy_since = now
        elif not member.files and member.busy_since is not None:
            member.busy_seconds += now - member.busy_since
            member.busy_since = None

    # -- losing clusters ---------------------------------------------------------------------

    def _lose(self, member: _Member, reason: str) -> None:
        """Give every file ``member`` still holds back to the queue (first in line); drop its futures."""
        requeued = sorted(member.assigned.values(), key=lambda item: item.index)
        self.queue.extendleft(reversed(requeued))
        member.lost = self._loss_record(reason, len(requeued))
        member.assigned.clear()
        with self._announce_lock:  # snapshot threads iterate it
            self.snapshots.pop(member.spec.name, None)
        retiring = threading.Thread(target=self._retire, args=(member,), name=f"lumiflow-retire-{member.run}")
        retiring.start()
        self.retiring.append(retiring)

    def _retire(self, member: _Member) -> None:
        """Drop a member's futures and close its client (in the background for a lost one)."""
        self._track_busy(member)
        member.files.clear()
        member.merges.clear()
        member.fetches.clear()
        member.tree.ready.clear()
        if member.lost is None:  # a lost scheduler cannot be told to unsubscribe: close its client first
            with contextlib.suppress(Exception):
                member.announcements.close()
        with contextlib.suppress(Exception):
            member.client.close(timeout=self.executor.timeout)
        with contextlib.suppress(Exception):
            member.announcements.close()

    def _loss_record(self, reason: str, requeued: int) -> dict[str, Any]:
        return {
            "seconds": round(self.now(), 3),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "reason": reason,
            "files_requeued": requeued,
        }

    def _aborted(self) -> ExecutorAborted:
        lost = [r for r in self.records() if r["lost"] is not None]  # not one added during the abort
        reasons = "; ".join(f"{r['name']} at {r['lost']['seconds']:.1f} s: {r['lost']['reason']}" for r in lost)
        message = f"every cluster was lost ({reasons})"
        partial = Partial()
        partial.add(self.arrived)
        done = {r.index for r in self.arrived.files}
        missing = [
            FileReport(item.index, item.url, item.dataset, status="failed", error=f"not processed: {message}")
            for item in self.items
            if item.index not in done
        ]
        partial.add(Partial(files=missing))
        return ExecutorAborted(f"{message}; {len(done)} of {len(self.items)} files finished", partial)

    # -- announcements, records, shutdown ----------------------------------------------------

    def _wake(self, _future: object) -> None:
        self.wake.set()

    def _snapshot(self, cluster: str, partial: Partial) -> None:
        """A cluster's live sum (from its poller thread): pass on the sum over the live clusters."""
        with self._announce_lock:
            if cluster not in {m.spec.name for m in self.live()}:
                return
            self.snapshots[cluster] = partial
            total = merge(self.snapshots.values())
        self.callbacks.on_snapshot(total)

    def records(self) -> list[dict[str, Any]]:
        members = [
            {
                "name": m.spec.name,
                "address": m.address,
                "weight": m.spec.weight,
                "worker_threads": m.threads,
                "joined_seconds": round(m.joined, 3),
                "busy_seconds": round(m.busy_seconds, 3),
                "lost": m.lost,
            }
            for m in self.members
        ]
        with self._connecting_lock:
            connecting = [
                {"name": spec.name, "address": spec.address, "weight": spec.weight, "connected": False, "lost": None}
                for spec in self.connecting.values()
            ]
        return members + self.failed_joins + connecting

    def close(self) -> None:
        for member in self.live():
            self._retire(member)
        for retiring in self.retiring:
            retiring.join(self.executor.connect_timeout)
        for member in self.members:
            if member.handle is not None:
                with contextlib.suppress(Exception):
                    member.handle.close()
        with self._connecting_lock:
            late = list(self.connecting)  # kept: records() lists them as never connected
        for future in late:
            if not future.cancel():  # connecting right now: close what it opens
                future.add_done_callback(_close_joined)
        self.pool.shutdown(wait=False, cancel_futures=True)


def _file_state(path: Path) -> tuple[float, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime, stat.st_size


def _worker_threads(client: Client) -> int:
    """The cluster's worker threads, from the scheduler identity the client refreshes every 2 s.

    Read from the client's cache: asking the scheduler here would stall dispatch to every
    cluster whenever one scheduler is slow to answer (busy importing the analysis' modules).
    """
    cached = getattr(client, "_scheduler_identity", {}).get("total_threads")
    return cached if isinstance(cached, int) else sum(client.nthreads().values())


class _ClusterGone(Exception):
    """Raised inside the loop when a member's scheduler turns out to be gone."""


def _close_joined(future: concurrent.futures.Future) -> None:
    with contextlib.suppress(Exception):
        future.result().client.close()


def _raise_if_gone(member: _Member, future: Future) -> None:
    """A future cut off by a lost scheduler connection means the cluster is gone, not the task."""
    if future.status == "cancelled" or member.client.status != "running":
        raise _ClusterGone(f"scheduler connection lost ({member.client.status})")


def _merged(member: _Member, future: Future) -> Future:
    """A finished merge; a merge failing on a healthy cluster is a bug, not bad input: raised."""
    if future.status != "finished":
        _raise_if_gone(member, future)
        raise future.exception()
    return future


def _fetched(member: _Member, future: Future, timeout: float) -> Partial:
    """The cluster's merged partial, now held by the client."""
    try:
        return future.result(timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise _ClusterGone(f"fetching its partial failed: {type(exc).__name__}: {exc}") from exc
    except Exception:
        _raise_if_gone(member, future)
        raise
