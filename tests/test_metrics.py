"""The live-metrics aggregator, driven by a controlled clock: rates, ETA, per-dataset and per-cluster sums."""

from __future__ import annotations

import json

import pytest

from processor.metrics import DEFAULT_CLUSTER, RunMetrics
from processor.report import FileReport


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def report(index: int, dataset: str, events: int, nbytes: int, *, cluster=None, ok=True, seconds=0.5) -> FileReport:
    return FileReport(
        index=index,
        path=f"/data/{dataset}_{index}.root",
        dataset=dataset,
        events=events,
        bytes_read=nbytes,
        seconds=seconds,
        status="ok" if ok else "failed",
        error=None if ok else "OSError: gone",
        cluster=cluster,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_rolling_and_overall_rates(clock):
    metrics = RunMetrics({"a": 10}, window=10.0, clock=clock)
    arrivals = [(2.0, 1000, 4_000_000), (6.0, 3000, 8_000_000), (15.0, 500, 2_000_000), (19.0, 1500, 6_000_000)]
    for i, (t, events, nbytes) in enumerate(arrivals):
        clock.now = 1000.0 + t
        metrics.on_file(report(i, "a", events, nbytes))
    clock.now = 1020.0
    # the window (10 s, 20 s] holds the last two files
    rolling = metrics.rolling()
    assert rolling.events_per_s == pytest.approx((500 + 1500) / 10)
    assert rolling.bytes_per_s == pytest.approx((2e6 + 6e6) / 10)
    assert rolling.mb_per_s == pytest.approx(0.8)
    assert rolling.gbit_per_s == pytest.approx(8e6 * 8 / 1e9 / 10)
    assert rolling.files_per_s == pytest.approx(0.2)
    overall = metrics.overall()
    assert overall.events_per_s == pytest.approx(6000 / 20)
    assert overall.bytes_per_s == pytest.approx(20e6 / 20)


def test_a_short_run_divides_by_its_age_not_the_window(clock):
    metrics = RunMetrics({"a": 4}, window=10.0, clock=clock)
    clock.now += 2.0
    metrics.on_file(report(0, "a", 800, 100))
    clock.now += 2.0
    assert metrics.rolling().events_per_s == pytest.approx(800 / 4.0)
    assert metrics.rolling().events_per_s == metrics.overall().events_per_s


def test_failed_files_count_their_bytes_but_not_events(clock):
    metrics = RunMetrics({"a": 3}, clock=clock)
    metrics.on_file(report(0, "a", 100, 1000))
    metrics.on_file(report(1, "a", 0, 300, ok=False))
    totals = metrics.totals()
    assert (totals.done, totals.failed, totals.events, totals.bytes_read) == (2, 1, 100, 1300)
    assert [r.path for r in metrics.failures()] == ["/data/a_1.root"]


def test_eta_from_the_recent_file_rate(clock):
    metrics = RunMetrics({"a": 6, "b": 4}, window=10.0, clock=clock)
    assert metrics.eta() is None  # nothing finished: no rate to extrapolate
    for i in range(4):  # one file every 2 s
        clock.now += 2.0
        metrics.on_file(report(i, "a", 10, 10))
    # 4 files in the last 8 s (younger than the window) -> 0.5 files/s; 6 left -> 12 s
    assert metrics.eta() == pytest.approx(6 / (4 / 8.0))
    clock.now += 30.0  # a lull: no file in the window, so the overall rate (4 files in 38 s) is used
    assert metrics.eta() == pytest.approx(6 / (4 / 38.0))


def test_eta_is_zero_once_every_file_is_done(clock):
    metrics = RunMetrics({"a": 2}, clock=clock)
    for i in range(2):
        clock.now += 1.0
        metrics.on_file(report(i, "a", 1, 1))
    assert metrics.eta() == 0.0


def test_per_dataset_and_per_cluster_sums(clock):
    metrics = RunMetrics({"sig": 3, "bkg": 2, "data": 4}, window=100.0, clock=clock)
    files = [
        report(0, "sig", 100, 1000, cluster="east"),
        report(1, "sig", 200, 2000, cluster="west"),
        report(2, "bkg", 50, 500, cluster="east"),
        report(3, "bkg", 0, 700, cluster="west", ok=False),
        report(4, "data", 300, 3000),  # an executor that names no cluster
    ]
    for r in files:
        clock.now += 1.0
        metrics.on_file(r)
    clock.now += 5.0

    def expected(selected):
        chosen = [r for r in files if selected(r)]
        return (
            len(chosen),
            sum(not r.ok for r in chosen),
            sum(r.events for r in chosen if r.ok),
            sum(r.bytes_read for r in chosen),
        )

    datasets = metrics.datasets()
    assert list(datasets) == ["sig", "bkg", "data"]  # every dataset, in fileset order
    for name, tally in datasets.items():
        assert (tally.done, tally.failed, tally.events, tally.bytes_read) == expected(lambda r, n=name: r.dataset == n)
    clusters = metrics.clusters()
    assert sorted(clusters) == sorted(["east", "west", DEFAULT_CLUSTER])
    for name, tally in clusters.items():

        def in_cluster(r, n=name):
            return (r.cluster or DEFAULT_CLUSTER) == n

        assert (tally.done, tally.failed, tally.events, tally.bytes_read) == expected(in_cluster)
        # each cluster's rolling rate: its own events over the run's age (younger than the window)
        assert metrics.rolling(name).events_per_s == pytest.approx(expected(in_cluster)[2] / 10.0)
    assert sum(metrics.rolling(c).events_per_s for c in clusters) == pytest.approx(metrics.rolling().events_per_s)
    assert metrics.tallies()[("bkg", "west")].failed == 1


def test_datasets_without_finished_files_are_listed_with_zero(clock):
    metrics = RunMetrics({"a": 2, "b": 1}, clock=clock)
    metrics.on_file(report(0, "a", 5, 5))
    assert metrics.datasets()["b"].done == 0


def test_finish_freezes_the_clock(clock):
    metrics = RunMetrics({"a": 1}, clock=clock)
    clock.now += 4.0
    metrics.on_file(report(0, "a", 400, 0))
    metrics.finish()
    clock.now += 100.0
    assert metrics.elapsed() == pytest.approx(4.0)
    assert metrics.overall().events_per_s == pytest.approx(100.0)


def test_series_samples_the_rolling_rate(clock):
    metrics = RunMetrics({"a": 100}, window=5.0, clock=clock)
    for i in range(30):  # 100 events every second for 30 s
        clock.now += 1.0
        metrics.on_file(report(i, "a", 100, 0))
    series = metrics.series(points=10)
    times = [p["t"] for p in series]
    assert times == pytest.approx([3.0 * k for k in range(1, 11)])
    # after the first window, the rolling rate of a steady 100 events/s is 100 events/s
    assert all(p["events_per_s"] == pytest.approx(100.0) for p in series if p["t"] >= 5.0)
    assert series[-1]["events_per_s"] == pytest.approx(metrics.rolling().events_per_s)


def test_state_is_json_and_consistent(clock):
    metrics = RunMetrics({"a": 3}, clock=clock)
    clock.now += 1.0
    metrics.on_file(report(0, "a", 10, 20, cluster="c1"))
    clock.now += 1.0
    metrics.on_file(report(1, "a", 0, 5, ok=False))
    state = json.loads(json.dumps(metrics.to_dict(), allow_nan=False))
    assert state["files"] == {"done": 2, "total": 3, "failed": 1}
    assert state["events"] == 10 and state["bytes_read"] == 25
    assert [d["name"] for d in state["datasets"]] == ["a"]
    assert {c["name"]: c["done"] for c in state["clusters"]} == {"c1": 1, DEFAULT_CLUSTER: 1}
    assert state["failures"] == [{"path": "/data/a_1.root", "dataset": "a", "cluster": None, "error": "OSError: gone"}]


def test_start_forgets_earlier_files(clock):
    metrics = RunMetrics({"a": 2}, clock=clock)
    metrics.on_file(report(0, "a", 10, 10))
    clock.now += 50.0
    metrics.start()
    assert metrics.totals().done == 0 and metrics.elapsed() == 0.0
