"""Independent Dask clusters as real processes on loopback, for federation tests and benchmarks.

Each :class:`ProcessCluster` is a ``dask scheduler`` process and ``dask worker`` processes
(single-threaded, no nanny), so that killing its scheduler with SIGKILL is a real loss of one
cluster while the others and the client live on. Every process is killed on close: no test
leaves a worker behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distributed import Client

_START_SECONDS = 60.0


class ProcessCluster:
    """``with ProcessCluster(tmp, workers=2, env={...}) as c: c.address``; ``c.kill_scheduler()``."""

    def __init__(self, directory: Path, workers: int = 1, env: dict[str, str] | None = None):
        self.directory = Path(directory)
        self.workers = workers
        self.env = {**os.environ, **(env or {})}
        self.processes: list[subprocess.Popen] = []
        self.address = ""

    def __enter__(self) -> ProcessCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        scheduler_file = self.directory / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        self._spawn(
            "scheduler",
            ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
            scheduler_file,
        )
        deadline = time.monotonic() + _START_SECONDS
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if time.monotonic() > deadline or self.processes[0].poll() is not None:
                raise RuntimeError(f"the scheduler did not start: see {self.directory / 'scheduler.log'}")
            time.sleep(0.05)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for i in range(self.workers):
            self.add_worker(f"worker{i}")
        with Client(self.address, timeout=_START_SECONDS) as client:
            client.wait_for_workers(self.workers, timeout=_START_SECONDS)

    def add_worker(self, name: str) -> None:
        """One more single-threaded worker process; it exits by itself soon after its scheduler dies."""
        self._spawn(
            name,
            [
                "distributed.cli.dask_worker",
                self.address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--death-timeout",
                "10",
                "--local-directory",
                str(self.directory / name),
            ],
        )

    def _spawn(self, name: str, module_args: list[str], scheduler_file: Path | None = None) -> None:
        args = [sys.executable, "-m", *module_args]
        if scheduler_file is not None:
            args += ["--scheduler-file", str(scheduler_file)]
        with open(self.directory / f"{name}.log", "ab") as log:
            self.processes.append(
                subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, stdin=subprocess.DEVNULL)
            )

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler process: the cluster is gone, as if its machine had died."""
        self.processes[0].send_signal(signal.SIGKILL)
        self.processes[0].wait(timeout=10)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait(timeout=30)
