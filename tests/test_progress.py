"""The progress bar's counters: files done, failures, events and bytes of the files that finished."""

from __future__ import annotations

from processor.progress import RunProgress
from processor.report import FileReport


def test_counts_ok_and_failed_files_and_final_totals_come_from_the_result():
    ok = FileReport(index=0, path="a.root", dataset="d", events=100, bytes_read=1000)
    bad = FileReport(index=1, path="b.root", dataset="d", status="failed", error="OSError: gone", bytes_read=10)
    late = FileReport(index=2, path="c.root", dataset="d", events=50, bytes_read=500)
    with RunProgress(3, disable=True) as progress:
        progress.on_file(ok)
        progress.on_file(bad)
        assert (progress.files, progress.failed, progress.events, progress.bytes_read) == (2, 1, 100, 1010)
        progress.complete([ok, bad, late])  # an announcement that never arrived is still counted once
        assert (progress.files, progress.failed, progress.events, progress.bytes_read) == (3, 1, 150, 1510)
