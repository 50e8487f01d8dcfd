"""A Prometheus endpoint for a run: the live metrics as counters and gauges, scraped over HTTP.

A cluster's Prometheus (and Grafana behind it) can then follow runs started by an operator,
without anyone opening a dashboard. The values are read from the run's :class:`RunMetrics` at
each scrape, so they are exactly what the other views show.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..metrics import RunMetrics
from .server import RouteServer

__all__ = ["MetricsServer", "RunCollector"]


class RunCollector:
    """A prometheus_client collector reading one run's metrics (labelled by analysis)."""

    def __init__(self, metrics: RunMetrics, analysis: str):
        self.metrics = metrics
        self.analysis = analysis

    def collect(self) -> Iterator[Metric]:
        a = self.analysis
        by_key = ["analysis", "dataset", "cluster"]
        files = CounterMetricFamily(
            "lumiflow_files", "Files finished, by dataset, cluster and status", labels=[*by_key, "status"]
        )
        events = CounterMetricFamily("lumiflow_events", "Events of the files processed successfully", labels=by_key)
        read = CounterMetricFamily("lumiflow_read_bytes", "Bytes read, failed files included", labels=by_key)
        busy = CounterMetricFamily("lumiflow_file_seconds", "Summed per-file processing time", labels=by_key)
        for (dataset, cluster), tally in self.metrics.tallies().items():
            files.add_metric([a, dataset, cluster, "ok"], tally.done - tally.failed)
            files.add_metric([a, dataset, cluster, "failed"], tally.failed)
            events.add_metric([a, dataset, cluster], tally.events)
            read.add_metric([a, dataset, cluster], tally.bytes_read)
            busy.add_metric([a, dataset, cluster], tally.seconds)
        yield from (files, events, read, busy)

        expected = GaugeMetricFamily("lumiflow_files_expected", "Files of the fileset", labels=["analysis", "dataset"])
        for dataset, n in self.metrics.expected.items():
            expected.add_metric([a, dataset], n)
        yield expected

        rolling = self.metrics.rolling()
        window = f"over the last {self.metrics.window:g} s"
        yield _gauge("lumiflow_events_per_second", f"Events/s {window}", a, rolling.events_per_s)
        yield _gauge("lumiflow_read_bytes_per_second", f"Bytes read/s {window}", a, rolling.bytes_per_s)
        yield _gauge("lumiflow_run_elapsed_seconds", "Seconds since the run started", a, self.metrics.elapsed())
        yield _gauge("lumiflow_run_finished", "1 once the run is over", a, float(self.metrics.finished))
        eta = self.metrics.eta()
        if eta is not None:
            yield _gauge("lumiflow_eta_seconds", "Estimated seconds until every file is done", a, eta)


def _gauge(name: str, documentation: str, analysis: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["analysis"])
    gauge.add_metric([analysis], value)
    return gauge


class MetricsServer(RouteServer):
    """Serves ``/metrics`` (Prometheus' text format) for one run until :meth:`close`; port 0: any free port."""

    def __init__(self, metrics: RunMetrics, analysis: str, *, host: str = "127.0.0.1", port: int = 0):
        registry = CollectorRegistry()
        registry.register(RunCollector(metrics, analysis))
        routes = {"/metrics": lambda: (generate_latest(registry), CONTENT_TYPE_LATEST)}
        super().__init__(routes, host=host, port=port, option="--metrics-port")

    @property
    def url(self) -> str:
        return super().url + "metrics"
