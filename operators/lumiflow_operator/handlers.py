"""kopf handlers: an Analysis becomes a DaskJob (and its inputs and runner identity), owned by it.

Owner references make Kubernetes' garbage collector delete everything when the Analysis is
deleted, so the operator needs no finalizer and no delete handler. The run driver in the
runner pod writes progress into the Analysis' status; the operator writes only ``Pending`` at
creation, and ``Failed`` if the DaskJob fails before the driver could say why. When the run
ends, the extra Dask clusters of a federated Analysis (``clusters > 1``) are deleted.

Configuration (set by the Helm chart): ``LUMIFLOW_IMAGE`` (default image of the runner,
scheduler and workers), ``LUMIFLOW_IMAGE_PULL_POLICY``, ``LUMIFLOW_RUNNER_ROLE``
(``Role/<name>`` or ``ClusterRole/<name>``: what the per-Analysis runner ServiceAccount is bound to),
``LUMIFLOW_TLS_SECRET`` (chart value ``tls.secretName`` when ``tls.enabled``: every Analysis' Dask
traffic is TLS with the certificates of that Secret; unset or empty: plain TCP).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import kopf

from processor.k8s.api import GROUP, PLURAL, VERSION, api_client, api_exception, custom_objects

from .children import OperatorConfig, children, extra_clusters

_DASK_GROUP = "kubernetes.dask.org"
_MANAGED = {"app.kubernetes.io/managed-by": "lumiflow-operator"}


def config_from_env() -> OperatorConfig:
    kind, _, role = os.environ.get("LUMIFLOW_RUNNER_ROLE", "Role/lumiflow-runner").partition("/")
    return OperatorConfig(
        image=os.environ.get("LUMIFLOW_IMAGE", ""),
        image_pull_policy=os.environ.get("LUMIFLOW_IMAGE_PULL_POLICY", "IfNotPresent"),
        runner_role_kind=kind,
        runner_role_name=role,
        tls_secret=os.environ.get("LUMIFLOW_TLS_SECRET", ""),
    )


@functools.cache
def _dynamic() -> Any:
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(api_client())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress in annotations under our own prefix: the Analysis schema has no room for kopf's
    # status fields, and the dask-kubernetes controller (also kopf) keeps its own prefix.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="lumiflow.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="lumiflow.io", key="last-handled-configuration"
    )
    settings.networking.request_timeout = 30


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_analysis(
    body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, patch: kopf.Patch, logger: kopf.Logger, **_: Any
) -> None:
    """Create the Analysis' children; existing ones (a retried handler) are left as they are."""
    config = config_from_env()
    if not config.image and "image" not in spec:
        patch.status.update(phase="Failed", message="no spec.image and the operator has no default image")
        raise kopf.PermanentError("no image")
    for obj in children(name, namespace, dict(spec), config):
        kopf.adopt(obj, owner=body)
        kind = obj["kind"]
        try:
            _dynamic().resources.get(api_version=obj["apiVersion"], kind=kind).create(body=obj, namespace=namespace)
        except api_exception() as exc:
            if exc.status == 409:
                logger.info(f"{kind} {obj['metadata']['name']} already exists")
                continue
            if exc.status is not None and 400 <= exc.status < 500:
                message = f"cannot create {kind} {obj['metadata']['name']}: {exc.status} {exc.reason}: {exc.body}"
                patch.status.update(phase="Failed", message=message[:2000])
                raise kopf.PermanentError(message) from exc
            raise
        logger.info(f"created {kind} {obj['metadata']['name']}")
    patch.status.update(phase="Pending", daskJob=name, message="waiting for the Dask cluster and the runner pod")


@kopf.on.field(_DASK_GROUP, "v1", "daskjobs", field="status.jobStatus", labels=_MANAGED)
def daskjob_status(name: str, namespace: str, new: Any, logger: kopf.Logger, **_: Any) -> None:
    """A DaskJob that failed before its driver reported (image pull, crash) fails its Analysis."""
    if new != "Failed":
        return
    api = custom_objects(api_client())
    analysis = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    if (analysis.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return  # the driver already wrote the outcome
    message = f"the runner pod failed before reporting; see: kubectl logs -n {namespace} {name}-runner"
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": {"phase": "Failed", "message": message}}
    )
    logger.warning(message)


@kopf.on.field(GROUP, VERSION, PLURAL, field="status.phase")
def analysis_phase(name: str, namespace: str, spec: kopf.Spec, new: Any, logger: kopf.Logger, **_: Any) -> None:
    """A finished Analysis releases its extra Dask clusters (the DaskJob's own goes with the job)."""
    if new not in ("Succeeded", "Failed"):
        return
    api = custom_objects(api_client())
    for cluster in extra_clusters(name, dict(spec)):
        try:
            api.delete_namespaced_custom_object(_DASK_GROUP, "v1", namespace, "daskclusters", cluster)
        except api_exception() as exc:
            if exc.status != 404:
                raise
        logger.info(f"deleted DaskCluster {cluster}: the run has ended")
