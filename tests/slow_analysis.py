"""The dimuon test analysis with a hook that fault tests steer through environment variables.

Set before the processes that run the analysis start (Dask workers inherit the environment):

``LUMIFLOW_TEST_LOG``         append ``<dataset> <events> <pid>`` to this file as each file starts
``LUMIFLOW_TEST_SLOW``        then sleep this many seconds (time to kill something mid-task)
``LUMIFLOW_TEST_HOG``         ``<dataset>:<MB>``: for that dataset's files, hold MB of memory

The histograms do not depend on any of them, so a slowed run and a fast one give the same bits
and their journals are interchangeable (the module's source is the same).
"""

from __future__ import annotations

from pathlib import Path

from conftest import DIMUON

_HOOK = """

import os as _os
import time as _time

import numpy as _np


def _test_hook(events, dataset):
    log = _os.environ.get("LUMIFLOW_TEST_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{dataset.name} {len(events)} {_os.getpid()}\\n")
    _time.sleep(float(_os.environ.get("LUMIFLOW_TEST_SLOW", "0")))
    hog, _, megabytes = _os.environ.get("LUMIFLOW_TEST_HOG", "").partition(":")
    if hog == dataset.name:
        held = []
        for _ in range(int(megabytes) // 20):  # in steps, so that the nanny's memory monitor sees it grow
            held.append(_np.ones(20 * 2**20 // 8))
            _time.sleep(0.02)
"""


def write_slow_dimuon(path: Path) -> Path:
    """Write the hooked analysis to ``path`` (a ``.py`` file) and return it."""
    source = DIMUON.read_text().replace(
        "def process(events, dataset):\n", "def process(events, dataset):\n    _test_hook(events, dataset)\n"
    )
    assert "_test_hook(events, dataset)" in source
    path.write_text(source + _HOOK)
    return path


def logged_files(log: Path) -> list[tuple[str, int]]:
    """(dataset, events) of each file the hooked analysis started, in order."""
    if not log.exists():
        return []
    return [(d, int(n)) for d, n, _pid in (line.split() for line in log.read_text().splitlines())]
