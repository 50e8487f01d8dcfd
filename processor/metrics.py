"""Live run metrics: per-file completions in, throughput, progress and ETA out.

One aggregator feeds every live view (the Jupyter widget, the web page, the Prometheus
endpoint), so they all show the same numbers. It only sees :class:`FileReport` objects as the
executor announces them, and it reads time from an injectable clock, so that tests can drive it
with a controlled one.

Rates come in two flavours: *rolling* (what finished in the last ``window`` seconds: how fast it
goes now) and *overall* (since the start). Events count files read successfully; bytes count
every file, failed ones included, since their bytes were read too.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .report import FileReport

__all__ = ["DEFAULT_CLUSTER", "DEFAULT_WINDOW", "Rates", "RunMetrics", "Tally"]

DEFAULT_WINDOW = 10.0  # seconds of the rolling rates
SERIES_POINTS = 120  # at most this many points in the throughput time series
FAILURES_SHOWN = 100  # the live views list at most this many failed files (all are counted)
DEFAULT_CLUSTER = "default"  # the cluster of files whose executor does not name one


@dataclass(frozen=True)
class Rates:
    """Throughput over some span of time."""

    files_per_s: float = 0.0
    events_per_s: float = 0.0
    bytes_per_s: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_per_s / 1e6

    @property
    def gbit_per_s(self) -> float:
        return self.bytes_per_s * 8 / 1e9

    def to_dict(self) -> dict[str, float]:
        return {
            "files_per_s": self.files_per_s,
            "events_per_s": self.events_per_s,
            "mb_per_s": self.mb_per_s,
            "gbit_per_s": self.gbit_per_s,
        }


@dataclass
class Tally:
    """Counts over a set of finished files (a dataset, a cluster, or one of each)."""

    done: int = 0
    failed: int = 0
    events: int = 0
    bytes_read: int = 0
    seconds: float = 0.0  # summed per-file processing time

    @classmethod
    def of(cls, report: FileReport) -> Tally:
        return cls(
            done=1,
            failed=0 if report.ok else 1,
            events=report.events if report.ok else 0,
            bytes_read=report.bytes_read,
            seconds=report.seconds,
        )

    def add(self, other: Tally) -> None:
        self.done += other.done
        self.failed += other.failed
        self.events += other.events
        self.bytes_read += other.bytes_read
        self.seconds += other.seconds


class _Timeline:
    """Finished files in arrival order: times since the start and running sums of events and bytes.

    Any window's rate is then two binary searches away, whatever the number of files.
    """

    def __init__(self) -> None:
        self._times: list[float] = []
        self._events: list[int] = [0]
        self._bytes: list[int] = [0]

    def __len__(self) -> int:
        return len(self._times)

    def add(self, when: float, tally: Tally) -> None:
        self._times.append(max(when, self._times[-1] if self._times else 0.0))  # a clock may step back
        self._events.append(self._events[-1] + tally.events)
        self._bytes.append(self._bytes[-1] + tally.bytes_read)

    def rates(self, begin: float, end: float) -> Rates:
        """Rates of the files that finished in (begin, end], or in [0, end] when begin is 0."""
        span = end - begin
        if span <= 0:
            return Rates()
        lo = 0 if begin <= 0 else bisect.bisect_right(self._times, begin)
        hi = bisect.bisect_right(self._times, end)
        return Rates(
            files_per_s=(hi - lo) / span,
            events_per_s=(self._events[hi] - self._events[lo]) / span,
            bytes_per_s=(self._bytes[hi] - self._bytes[lo]) / span,
        )


class RunMetrics:
    """Thread-safe aggregator of one run's file completions.

    ``expected`` maps each dataset to its number of files (the denominators of the progress).
    ``clock`` returns seconds from any fixed origin (default :func:`time.monotonic`); the run
    starts when the aggregator is made, or at :meth:`start`, and ends at :meth:`finish`.
    """

    def __init__(
        self,
        expected: Mapping[str, int],
        *,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ):
        if window <= 0:
            raise ValueError("window must be positive")
        self.expected = dict(expected)
        self.window = window
        self._clock = clock
        self._lock = threading.RLock()  # re-entrant: to_dict reads everything under one hold
        self._start = clock()
        self._end: float | None = None
        self._tallies: dict[tuple[str, str], Tally] = {}
        self._failures: list[FileReport] = []
        self._timeline = _Timeline()
        self._cluster_timelines: dict[str, _Timeline] = {}

    @property
    def total_files(self) -> int:
        return sum(self.expected.values())

    def start(self) -> None:
        """Restart the clock and forget any file seen: the run begins now."""
        with self._lock:
            self._start = self._clock()
            self._end = None
            self._tallies.clear()
            self._failures.clear()
            self._timeline = _Timeline()
            self._cluster_timelines.clear()

    def finish(self) -> None:
        """Stop the clock: the elapsed time and the rates stay as they were at the end of the run."""
        with self._lock:
            if self._end is None:
                self._end = self._clock()

    @property
    def finished(self) -> bool:
        return self._end is not None

    def on_file(self, report: FileReport) -> None:
        """The executor's per-file callback."""
        with self._lock:
            cluster = report.cluster or DEFAULT_CLUSTER
            tally = Tally.of(report)
            self._tallies.setdefault((report.dataset, cluster), Tally()).add(tally)
            if not report.ok:
                self._failures.append(report)
            when = self._clock() - self._start
            self._timeline.add(when, tally)
            self._cluster_timelines.setdefault(cluster, _Timeline()).add(when, tally)

    # --- reading ----------------------------------------------------------------------------

    def elapsed(self) -> float:
        with self._lock:
            end = self._end if self._end is not None else self._clock()
            return max(end - self._start, 0.0)

    def totals(self) -> Tally:
        with self._lock:
            return self._sum(lambda dataset, cluster: True)

    def datasets(self) -> dict[str, Tally]:
        """Per dataset, every dataset of the fileset included (those with no file done yet too)."""
        with self._lock:
            names = list(self.expected) + sorted({d for d, _ in self._tallies} - set(self.expected))
            return {name: self._sum(lambda dataset, cluster, name=name: dataset == name) for name in names}

    def clusters(self) -> dict[str, Tally]:
        with self._lock:
            names = sorted({c for _, c in self._tallies})
            return {name: self._sum(lambda dataset, cluster, name=name: cluster == name) for name in names}

    def tallies(self) -> dict[tuple[str, str], Tally]:
        """Per (dataset, cluster): the finest counts (the Prometheus labels)."""
        with self._lock:
            return {key: Tally(**asdict(t)) for key, t in sorted(self._tallies.items())}

    def failures(self) -> list[FileReport]:
        with self._lock:
            return list(self._failures)

    def rolling(self, cluster: str | None = None) -> Rates:
        """Throughput over the last ``window`` seconds (the run so far, if shorter), of one cluster or all."""
        with self._lock:
            timeline = self._timeline if cluster is None else self._cluster_timelines.get(cluster, _Timeline())
            now = self.elapsed()
            return timeline.rates(max(now - self.window, 0.0), now)

    def overall(self) -> Rates:
        with self._lock:
            return self._timeline.rates(0.0, self.elapsed())

    def eta(self) -> float | None:
        """Seconds until every file is done, at the recent file rate; None before the first file.

        The rate is that of the rolling window, or the overall one when no file finished within
        the window (a lull would otherwise read as "never").
        """
        with self._lock:
            done = len(self._timeline)
            remaining = self.total_files - done
            if remaining <= 0:
                return 0.0
            if done == 0:
                return None
            rate = self.rolling().files_per_s or self.overall().files_per_s
            return remaining / rate if rate > 0 else None

    def series(self, points: int = SERIES_POINTS) -> list[dict[str, float]]:
        """The rolling throughput at evenly spaced times (at least 1 s apart) since the start."""
        with self._lock:
            now = self.elapsed()
            step = max(now / points, 1.0)
            out = []
            t = min(step, now)
            while t > 0:
                rates = self._timeline.rates(max(t - self.window, 0.0), t)
                out.append({"t": t, "events_per_s": rates.events_per_s, "gbit_per_s": rates.gbit_per_s})
                if t >= now:
                    break
                t = min(t + step, now)
            return out

    def to_dict(self) -> dict[str, Any]:
        """Everything the live views show, as JSON-ready data (one consistent reading)."""
        with self._lock:
            totals = self.totals()
            return {
                "elapsed": self.elapsed(),
                "eta": self.eta(),
                "window": self.window,
                "files": {"done": totals.done, "total": self.total_files, "failed": totals.failed},
                "events": totals.events,
                "bytes_read": totals.bytes_read,
                "rolling": self.rolling().to_dict(),
                "overall": self.overall().to_dict(),
                "series": self.series(),
                "datasets": [
                    {"name": name, "total": self.expected.get(name, 0), **asdict(t)}
                    for name, t in self.datasets().items()
                ],
                "clusters": [
                    {"name": name, **asdict(t), "rolling": self.rolling(name).to_dict()}
                    for name, t in self.clusters().items()
                ],
                "failures": [
                    {"path": r.path, "dataset": r.dataset, "cluster": r.cluster, "error": r.error}
                    for r in self._failures[:FAILURES_SHOWN]
                ],
            }

    def _sum(self, selected: Callable[[str, str], bool]) -> Tally:
        out = Tally()
        for (dataset, cluster), tally in self._tallies.items():
            if selected(dataset, cluster):
                out.add(tally)
        return out
