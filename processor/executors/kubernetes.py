"""Kubernetes from the laptop: a dask-kubernetes ``KubeCluster`` for the duration of one run.

The cluster is a ``DaskCluster`` resource served by the dask-kubernetes controller (installed
by Lumiflow's Helm chart); its scheduler is reached through a port-forward, so the laptop
needs only kubeconfig access. The analysis module travels with each task by value
(:class:`processor.analysis.AnalysisRef`), so the image needs no copy of it and no rebuild.
Files are then processed exactly as by :class:`~processor.executors.dask.DaskExecutor` (one task
per file, partials tree-reduced on the workers).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from distributed import Client

from .dask import DaskExecutor

__all__ = ["KubernetesExecutor", "require_dask_kubernetes"]

_ENV = {  # the image runs with a read-only root filesystem elsewhere: keep caches in /tmp here too
    "LUMIFLOW_CACHE": "/tmp/lumiflow-cache",
    "NUMBA_CACHE_DIR": "/tmp/numba-cache",
    "MPLCONFIGDIR": "/tmp/matplotlib",
}


@dataclass
class KubernetesExecutor(DaskExecutor):
    """A fresh ``KubeCluster`` of ``workers`` single-threaded worker pods, deleted after the run.

    ``image`` is the Lumiflow image the cluster can pull (README: build and push it). Everything
    but where the client connects is :class:`DaskExecutor`'s, except ``security``: TLS is refused.
    ``KubeCluster`` itself reaches its scheduler through the port-forward with a plain ``tcp://``
    address and no TLS context (dask-kubernetes' ``get_scheduler_address`` and
    ``wait_for_scheduler_comm``), so against a TLS-only scheduler it would fail or wait forever.
    Encrypted Dask traffic on Kubernetes: the Helm chart's ``tls.enabled`` (``lumiflow submit``).
    """

    image: str = ""
    namespace: str | None = None
    resources: dict[str, Any] = field(default_factory=lambda: {"requests": {"cpu": "1", "memory": "2Gi"}})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.image:
            raise ValueError("the kubernetes executor needs an image")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.security is not None:
            raise ValueError(
                "the kubernetes executor cannot use TLS: dask-kubernetes' KubeCluster connects to its scheduler "
                "over plain TCP; install the Helm chart with tls.enabled=true and use `lumiflow submit`, or run "
                "your own TLS scheduler and use --scheduler tls://..."
            )

    def cluster_spec(self, name: str) -> dict[str, Any]:
        """The ``DaskCluster`` resource this executor asks the dask-kubernetes controller for."""
        from dask_kubernetes.operator import make_cluster_spec

        spec = make_cluster_spec(
            name=name,
            image=self.image,
            n_workers=self.workers or 2,
            resources=self.resources,
            env=_ENV,
            worker_command="dask worker --nthreads 1",
        )
        # distributed no longer installs the ``dask-scheduler`` script that the template names
        [scheduler] = spec["spec"]["scheduler"]["spec"]["containers"]
        scheduler["args"] = ["dask", "scheduler", "--host", "0.0.0.0"]
        return spec

    @contextlib.contextmanager
    def _client(self) -> Iterator[Client]:
        from dask_kubernetes.operator import KubeCluster

        name = f"lumiflow-{uuid.uuid4().hex[:8]}"
        with (
            KubeCluster(custom_cluster_spec=self.cluster_spec(name), namespace=self.namespace, quiet=True) as cluster,
            Client(cluster) as client,
        ):
            yield client


def require_dask_kubernetes() -> None:
    """A clear error, before any work, when the ``kubernetes`` extra is missing."""
    try:
        import dask_kubernetes  # noqa: F401
    except ImportError as exc:
        raise ValueError("the kubernetes executor needs dask-kubernetes: pip install 'lumiflow[kubernetes]'") from exc
