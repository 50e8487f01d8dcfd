"""What one Analysis becomes: the Kubernetes objects the operator creates for it.

- ``<name>-input`` ConfigMap: the inline module source and fileset (absent when both are
  ConfigMap references), mounted into the runner pod;
- ``<name>-runner`` ServiceAccount and RoleBinding: the runner may read its Analysis, write its
  status and store the results ConfigMap, nothing else;
- ``<name>`` DaskJob (dask-kubernetes): a Dask cluster (scheduler + ``workers`` single-threaded
  workers) and a runner pod executing ``lumiflow run --scheduler $(DASK_SCHEDULER_ADDRESS)
  --report-to <namespace>/<name>``;
- with ``clusters: N > 1``, DaskClusters ``<name>-c2`` ... ``<name>-cN`` alike, and the runner
  federates them all (``--cluster`` each); the operator deletes them when the run ends (the
  DaskJob's own cluster is deleted by the dask-kubernetes controller).

Every pod runs as the image's non-root user with a read-only root filesystem, no capabilities
and the RuntimeDefault seccomp profile; ``/tmp`` is an emptyDir that holds Lumiflow's cache
(shipped analysis sources, Numba's compiled kernels) and Dask's spill directory.

With TLS (``OperatorConfig.tls_secret``: a Secret holding ``ca.pem``, ``cert.pem``, ``key.pem``),
the Secret is mounted read-only at ``/lumiflow/tls`` in the scheduler, worker and runner pods;
the scheduler listens on ``tls://`` only, and the workers and the runner connect with the same
certificate (``--tls-ca-file``/``--tls-cert``/``--tls-key``). The dask-kubernetes controller
writes ``DASK_SCHEDULER_ADDRESS`` as ``tcp://...`` unless the container already sets it, so the
worker and runner containers set it themselves, as ``tls://...``.

The functions here are pure (spec in, manifests out) so that they can be read and tested
without a cluster; the handlers set owner references and create them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["OperatorConfig", "children", "extra_clusters", "scheduler_address"]

FILESET_KEY = "fileset.yaml"  # YAML is a superset of JSON: lumiflow run parses either under this name
ANALYSIS_DIR = "/lumiflow/analysis"
FILESET_DIR = "/lumiflow/fileset"
OUTPUT_DIR = "/lumiflow/output"
TLS_DIR = "/lumiflow/tls"
TLS_FILES = {"--tls-ca-file": "ca.pem", "--tls-cert": "cert.pem", "--tls-key": "key.pem"}  # option -> Secret key
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
_TMP_ENV = {
    "HOME": "/tmp",
    "LUMIFLOW_CACHE": "/tmp/lumiflow-cache",
    "NUMBA_CACHE_DIR": "/tmp/numba-cache",
    "MPLCONFIGDIR": "/tmp/matplotlib",
    "DASK_TEMPORARY_DIRECTORY": "/tmp/dask",
}
_RUNNER_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
_SCHEDULER_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
_WORKER_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one operator installation (from the Helm chart's values, via environment)."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    runner_role_kind: str = "Role"  # or ClusterRole, when the chart is installed cluster-wide
    runner_role_name: str = "lumiflow-runner"
    tls_secret: str = ""  # a Secret with ca.pem, cert.pem, key.pem: all Dask traffic is TLS; empty: plain TCP

    @property
    def scheme(self) -> str:
        """How the runner and the workers address a scheduler."""
        return "tls" if self.tls_secret else "tcp"


def children(name: str, namespace: str, spec: dict[str, Any], config: OperatorConfig) -> list[dict[str, Any]]:
    """The manifests for Analysis ``namespace/name`` with ``spec`` (already schema-validated)."""
    objects = []
    inline = _inline_inputs(spec)
    if inline:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-input", "labels": _labels(name)},
                "data": inline,
            }
        )
    objects += _runner_identity(name, config)
    objects.append(_dask_job(name, namespace, spec, config))
    for cluster in extra_clusters(name, spec):
        objects.append(
            {
                "apiVersion": "kubernetes.dask.org/v1",
                "kind": "DaskCluster",
                "metadata": {"name": cluster, "labels": _labels(name)},
                "spec": _cluster_spec(cluster, namespace, spec, config),
            }
        )
    return objects


def extra_clusters(name: str, spec: dict[str, Any]) -> list[str]:
    """Names of the DaskClusters besides the DaskJob's own, for ``clusters > 1``."""
    return [f"{name}-c{i}" for i in range(2, spec.get("clusters", 1) + 1)]


def _labels(name: str) -> dict[str, str]:
    return {"lumiflow.io/analysis": name, "app.kubernetes.io/managed-by": "lumiflow-operator"}


def _inline_inputs(spec: dict[str, Any]) -> dict[str, str]:
    data = {}
    if "source" in spec["analysis"]:
        data[spec["analysis"]["filename"]] = spec["analysis"]["source"]
    if "content" in spec["fileset"]:
        data[FILESET_KEY] = spec["fileset"]["content"]
    return data


def _runner_identity(name: str, config: OperatorConfig) -> list[dict[str, Any]]:
    account = f"{name}-runner"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "labels": _labels(name)},
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account, "labels": _labels(name)},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": config.runner_role_kind,
                "name": config.runner_role_name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account}],
        },
    ]


def _dask_job(name: str, namespace: str, spec: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    image = spec.get("image", config.image)
    pull = spec.get("imagePullPolicy", config.image_pull_policy)
    runner = _container("runner", image, pull, _runner_args(name, namespace, spec, config), _RUNNER_RESOURCES)
    runner["volumeMounts"] += [
        {"name": "analysis", "mountPath": ANALYSIS_DIR, "readOnly": True},
        {"name": "fileset", "mountPath": FILESET_DIR, "readOnly": True},
    ]
    runner_volumes = [
        _config_map_volume("analysis", spec["analysis"], f"{name}-input", spec["analysis"]["filename"]),
        _config_map_volume("fileset", spec["fileset"], f"{name}-input", FILESET_KEY),
    ]
    pvc = (spec.get("output") or {}).get("pvc")
    if pvc is not None:
        runner["volumeMounts"].append({"name": "output", "mountPath": OUTPUT_DIR})
        runner_volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": pvc["claimName"]}})
    runner_volumes += _use_tls(runner, name, namespace, config)
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskJob",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "job": {
                "spec": _pod_spec(runner, runner_volumes, service_account=f"{name}-runner", restart="Never"),
            },
            "cluster": {"spec": _cluster_spec(name, namespace, spec, config)},
        },
    }


def _cluster_spec(cluster: str, namespace: str, spec: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """A DaskCluster's spec: a scheduler, its Service, and ``workers`` single-threaded workers."""
    image = spec.get("image", config.image)
    pull = spec.get("imagePullPolicy", config.image_pull_policy)
    worker = _container(
        "worker",
        image,
        pull,
        ["dask", "worker", "--nthreads", "1", "--name", "$(DASK_WORKER_NAME)", "--dashboard-address", ":8788"],
        spec.get("resources") or _WORKER_RESOURCES,
    )
    scheduler = _container(
        "scheduler",
        image,
        pull,
        ["dask", "scheduler", "--host", "0.0.0.0", "--port", str(SCHEDULER_PORT)],
        _SCHEDULER_RESOURCES,
    )
    worker_volumes = _use_tls(worker, cluster, namespace, config)
    scheduler_volumes = _use_tls(scheduler, cluster, namespace, config)
    scheduler["ports"] = [
        {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
        {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
    ]
    scheduler["readinessProbe"] = {"tcpSocket": {"port": "tcp-comm"}, "initialDelaySeconds": 5, "periodSeconds": 10}
    return {
        "worker": {"replicas": spec.get("workers", 2), "spec": _pod_spec(worker, worker_volumes)},
        "scheduler": {
            "spec": _pod_spec(scheduler, scheduler_volumes),
            "service": {
                "type": "ClusterIP",
                "selector": {"dask.org/cluster-name": cluster, "dask.org/component": "scheduler"},
                "ports": [
                    {"name": "tcp-comm", "protocol": "TCP", "port": SCHEDULER_PORT, "targetPort": "tcp-comm"},
                    {
                        "name": "http-dashboard",
                        "protocol": "TCP",
                        "port": DASHBOARD_PORT,
                        "targetPort": "http-dashboard",
                    },
                ],
            },
        },
    }


def _runner_args(name: str, namespace: str, spec: dict[str, Any], config: OperatorConfig) -> list[str]:
    pvc = (spec.get("output") or {}).get("pvc")
    output = f"{OUTPUT_DIR}/{pvc.get('path') or name}" if pvc is not None else "/tmp/lumiflow-output"
    args = [
        "lumiflow",
        "run",
        f"{ANALYSIS_DIR}/{spec['analysis']['filename']}",
        "--fileset",
        f"{FILESET_DIR}/{FILESET_KEY}",
        *_scheduler_args(name, namespace, spec, config),
        "--output",
        output,
        "--retries",
        str(spec.get("retries", 3)),
        "--timeout",
        str(spec.get("timeout", 60)),
        "--fan-in",
        str(spec.get("fanIn", 32)),
        "--no-progress",
        "--report-to",
        f"{namespace}/{name}",
    ]
    if spec.get("strict", False):
        args.append("--strict")
    return args


def _scheduler_args(name: str, namespace: str, spec: dict[str, Any], config: OperatorConfig) -> list[str]:
    # DASK_SCHEDULER_ADDRESS: set by the dask-kubernetes controller, or with TLS by _use_tls;
    # $(...) is expanded by the kubelet
    own = "$(DASK_SCHEDULER_ADDRESS)"
    others = [scheduler_address(c, namespace, config.scheme) for c in extra_clusters(name, spec)]
    if not others:
        return ["--scheduler", own]
    return [arg for address in (own, *others) for arg in ("--cluster", address)]


def scheduler_address(cluster: str, namespace: str, scheme: str = "tcp") -> str:
    """Where the pods of ``namespace`` reach the scheduler of DaskCluster ``cluster`` (its Service)."""
    return f"{scheme}://{cluster}-scheduler.{namespace}.svc.cluster.local:{SCHEDULER_PORT}"


def _use_tls(container: dict[str, Any], cluster: str, namespace: str, config: OperatorConfig) -> list[dict[str, Any]]:
    """With TLS on: give ``container`` the Secret and the certificate options; the scheduler listens on
    ``tls://`` only, the others connect to ``cluster``'s scheduler there. Return the volume the pod
    then needs (none with TLS off)."""
    if not config.tls_secret:
        return []
    if container["name"] == "scheduler":
        container["args"] += ["--protocol", "tls"]
    else:
        address = scheduler_address(cluster, namespace, config.scheme)
        container["env"].append({"name": "DASK_SCHEDULER_ADDRESS", "value": address})
    container["args"] += [arg for option, key in TLS_FILES.items() for arg in (option, f"{TLS_DIR}/{key}")]
    container["volumeMounts"].append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    items = [{"key": key, "path": key} for key in TLS_FILES.values()]
    # 0444: the pods run as the image's user, and the Secret's files belong to root
    return [{"name": "tls", "secret": {"secretName": config.tls_secret, "items": items, "defaultMode": 0o444}}]


def _container(name: str, image: str, pull: str, args: list[str], resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": pull,
        "args": args,
        "env": [{"name": k, "value": v} for k, v in _TMP_ENV.items()],
        "resources": resources,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _pod_spec(
    container: dict[str, Any],
    volumes: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
    *,
    service_account: str | None = None,
    restart: str | None = None,
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
    }
    if service_account is None:
        pod["automountServiceAccountToken"] = False  # scheduler and workers never call the API
    else:
        pod["serviceAccountName"] = service_account
    if restart is not None:
        pod["restartPolicy"] = restart
    return pod


def _config_map_volume(volume: str, source: dict[str, Any], input_map: str, path: str) -> dict[str, Any]:
    ref = source.get("configMapRef")
    name, key = (ref["name"], ref["key"]) if ref is not None else (input_map, path)
    return {"name": volume, "configMap": {"name": name, "items": [{"key": key, "path": path}]}}
