"""The Jupyter dashboard: the web page's view as ipywidgets, refreshed in place while the run goes.

It draws the same JSON state as the web page (:meth:`processor.monitor.RunMonitor.state`),
taken either from a run of this kernel (a :class:`~processor.background.RunHandle`) or fetched
from a run's web dashboard anywhere (its address). Plots are matplotlib figures rendered to PNG
into ``Image`` widgets: no notebook extension to install, and it renders the same headless.
"""

from __future__ import annotations

import html
import io
import json
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..background import RunHandle
from ..monitor import RunMonitor
from .server import STATE_PATH

__all__ = ["Dashboard"]

_SIGNAL_COLOR = "#e41a1c"
_COLORS = ["#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#e377c2", "#bcbd22", "#17becf", "#8c564b"]


class Dashboard:
    """``Dashboard(handle)`` for a run started with :func:`processor.submit_run`, a :class:`RunMonitor`,
    or ``Dashboard("http://host:port/")`` for the web dashboard of a run started elsewhere
    (``lumiflow run ... --dashboard``). Display it (last expression of a cell); it refreshes every
    ``interval`` seconds until the run is over.
    """

    def __init__(self, source: RunHandle | RunMonitor | str, *, interval: float = 1.0, timeout: float = 5.0):
        self.interval = interval
        self._read = _reader(source, timeout)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._histogram: Any = None
        self.header = widgets.HTML()
        self.throughput = widgets.Image(format="png")
        self.histogram = widgets.Image(format="png")
        self.tables = widgets.HTML()
        self.widget = widgets.VBox([self.header, widgets.HBox([self.throughput, self.histogram]), self.tables])
        self.state: dict[str, Any] | None = None

    def refresh(self) -> dict[str, Any]:
        """Fetch the state once and redraw; returns the state drawn."""
        state = self._read()
        self.header.value = _header_html(state)
        self.tables.value = _tables_html(state)
        self.throughput.value = _throughput_png(state)
        if state["histogram"] != self._histogram:  # redraw the histogram only when it changed
            self._histogram = state["histogram"]
            self.histogram.value = _histogram_png(state["histogram"])
        self.state = state
        return state

    def start(self) -> None:
        """Refresh in a background thread until the run is over (or its dashboard is gone)."""
        if self._poller is not None and self._poller.is_alive():
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, name="lumiflow-dashboard-widget", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()

    def _poll(self) -> None:
        while True:
            try:
                state = self.refresh()
            except OSError as exc:  # the run's web dashboard stopped, or cannot be reached
                self.header.value += f"<p><b>no connection to the run:</b> {html.escape(str(exc))}</p>"
                return
            if state["status"] != "running" or self._stop.wait(self.interval):
                return

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self.start()
        return self.widget._repr_mimebundle_(**kwargs)


def _reader(source: RunHandle | RunMonitor | str, timeout: float) -> Callable[[], dict[str, Any]]:
    if isinstance(source, RunHandle):
        return source.monitor.state
    if isinstance(source, RunMonitor):
        return source.state
    if isinstance(source, str):
        url = source.rstrip("/") + STATE_PATH

        def fetch() -> dict[str, Any]:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.load(response)

        return fetch
    raise TypeError(f"a Dashboard watches a RunHandle, a RunMonitor or a dashboard URL, not {type(source).__name__}")


def _fmt(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _header_html(s: dict[str, Any]) -> str:
    status = html.escape(s["status"] + (f": {s['error']}" if s["error"] else ""))
    cards = [
        (f"events/s (last {s['window']:g} s)", _fmt(s["rolling"]["events_per_s"])),
        ("MB/s", _fmt(s["rolling"]["mb_per_s"], 1)),
        ("Gbit/s", _fmt(s["rolling"]["gbit_per_s"], 3)),
        ("events/s overall", _fmt(s["overall"]["events_per_s"])),
        ("files done", f"{s['files']['done']} / {s['files']['total']}"),
        ("failed", str(s["files"]["failed"])),
        ("events", _fmt(s["events"])),
        ("elapsed", f"{s['elapsed']:.0f} s"),
        ("ETA", "done" if s["status"] != "running" else ("–" if s["eta"] is None else f"{s['eta']:.0f} s")),
    ]
    cells = "".join(
        f"<div style='border:1px solid #ddd;border-radius:6px;padding:4px 10px;margin:3px'>"
        f"<div style='font-size:18px;font-weight:600'>{value}</div><div style='font-size:11px;color:#666'>{name}</div>"
        "</div>"
        for name, value in cards
    )
    title = f"<b>Lumiflow {html.escape(s['analysis'])}</b> — {status}"
    return f"<div>{title}</div><div style='display:flex;flex-wrap:wrap'>{cells}</div>"


def _bar(done: int, failed: int, total: int) -> str:
    ok = 100 * (done - failed) / total if total else 0
    bad = 100 * failed / total if total else 0
    return (
        "<div style='width:140px;height:9px;background:#eee;display:flex'>"
        f"<div style='width:{ok:.1f}%;background:#4a90d9'></div><div style='width:{bad:.1f}%;background:#d9534f'></div>"
        "</div>"
    )


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th style='padding:2px 8px'>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<b>{title}</b><table><tr>{head}</tr>{body}</table>"


def _tables_html(s: dict[str, Any]) -> str:
    e = html.escape
    datasets = [
        [e(d["name"]), _bar(d["done"], d["failed"], d["total"]), f"{d['done']} / {d['total']}", str(d["failed"])]
        for d in s["datasets"]
    ]
    clusters = [
        [e(c["name"]), str(c["done"]), str(c["failed"]), _fmt(c["events"]), _fmt(c["rolling"]["events_per_s"])]
        for c in s["clusters"]
    ]
    failures = [[e(f["path"]), e(f["dataset"]), e(f["error"] or "")] for f in s["failures"]]
    return (
        _table("Datasets", ["dataset", "progress", "files", "failed"], datasets)
        + _table("Clusters", ["cluster", "files", "failed", "events", "events/s"], clusters)
        + _table("Failures", ["file", "dataset", "error"], failures)
    )


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def _throughput_png(s: dict[str, Any]) -> bytes:
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    series = s["series"]
    ax.plot([p["t"] for p in series], [p["events_per_s"] for p in series], color="#4a90d9")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(f"events/s (rolling {s['window']:g} s)")
    ax.set_ylim(bottom=0)
    return _png(fig)


def _histogram_png(h: dict[str, Any] | None) -> bytes:
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    if h is None:
        ax.text(0.5, 0.5, "no histogram yet", ha="center", va="center", transform=ax.transAxes)
        return _png(fig)
    edges = h["edges"]
    bottom = [0.0] * (len(edges) - 1)
    for k, sample in enumerate(h["stack"]):
        color = _SIGNAL_COLOR if sample["role"] == "signal" else _COLORS[k % len(_COLORS)]
        ax.stairs(
            [b + v for b, v in zip(bottom, sample["values"], strict=True)],
            edges,
            baseline=bottom,
            fill=True,
            color=color,
            label=sample["label"],
        )
        bottom = [b + v for b, v in zip(bottom, sample["values"], strict=True)]
    if h["data"] is not None:
        centers = [(lo + hi) / 2 for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        ax.errorbar(centers, h["data"], yerr=[v**0.5 for v in h["data"]], fmt="ko", markersize=3, label="Data")
    ax.set_xlabel(h["label"])
    ax.set_ylabel("events / bin")
    ax.set_title(f"{h['name']} ({'final' if h['final'] else 'live'})", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _png(fig)
