"""Where the Analysis resource lives in the API, and an API client for it.

The laptop (``lumiflow submit``) configures the client from kubeconfig, optionally with a named
context; the run driver inside a pod uses its ServiceAccount (in-cluster configuration).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "KubernetesUnavailable",
    "api_client",
    "api_exception",
    "core",
    "custom_objects",
    "default_namespace",
    "get_analysis",
]

GROUP = "lumiflow.io"
VERSION = "v1alpha1"
PLURAL = "analyses"
KIND = "Analysis"
API_VERSION = f"{GROUP}/{VERSION}"


class KubernetesUnavailable(ValueError):
    """The ``kubernetes`` extra is not installed, or no cluster configuration was found."""


def _kubernetes():
    try:
        import kubernetes
    except ImportError as exc:
        raise KubernetesUnavailable("this needs the Kubernetes client: pip install 'lumiflow[kubernetes]'") from exc
    return kubernetes


def api_client(context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient``: in-cluster inside a pod, else from kubeconfig."""
    kubernetes = _kubernetes()
    configuration = kubernetes.client.Configuration()
    try:
        if context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=_kubeconfig(), context=context, client_configuration=configuration
            )
    except kubernetes.config.ConfigException as exc:
        raise KubernetesUnavailable(f"no Kubernetes configuration: {exc}") from exc
    return kubernetes.client.ApiClient(configuration)


def default_namespace(context: str | None = None) -> str:
    """The namespace of the kubeconfig context (or the pod's own namespace), else ``default``."""
    kubernetes = _kubernetes()
    in_pod = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    if context is None and os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(in_pod):
        with open(in_pod) as f:
            return f.read().strip()
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(config_file=_kubeconfig())
        if context is not None:
            current = next((c for c in contexts if c["name"] == context), current)
    except kubernetes.config.ConfigException:
        return "default"
    return (current or {}).get("context", {}).get("namespace") or "default"


def _kubeconfig() -> str:
    """``$KUBECONFIG`` as it is now (the client library reads it once, at its import)."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def custom_objects(client: Any) -> Any:
    return _kubernetes().client.CustomObjectsApi(client)


def core(client: Any) -> Any:
    return _kubernetes().client.CoreV1Api(client)


def api_exception() -> type[Exception]:
    return _kubernetes().client.ApiException


def get_analysis(client: Any, namespace: str, name: str) -> dict[str, Any]:
    """The Analysis object, or a ValueError naming it if it does not exist."""
    try:
        return custom_objects(client).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except api_exception() as exc:
        if exc.status == 404:
            raise ValueError(f"no Analysis {name!r} in namespace {namespace!r}") from exc
        raise
