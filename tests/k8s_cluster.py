"""A real Kubernetes control plane for the tests: ``../shared/k8s/up`` into a temporary directory.

etcd, kube-apiserver and kube-controller-manager (v1.20) on loopback, with kubectl and helm;
no kubelet, so Pods stay Pending (see ../shared/README.md). Free ports are picked so that two
test sessions (or a developer's own control plane) do not collide.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT.parent / "shared" / "k8s"
CHART = ROOT / "charts" / "lumiflow"


@dataclass(frozen=True)
class ControlPlane:
    directory: Path
    env: dict[str, str]  # os.environ plus KUBECONFIG and PATH (kubectl, helm)

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60):
        """Run kubectl/helm (or anything on the kit's PATH) against this control plane."""
        done = subprocess.run(
            list(args), input=input, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def kubectl(self, *args: str, **kwargs):
        return self.run("kubectl", *args, **kwargs)


def _free_port(avoid: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid and port + 1 not in avoid and port < 65000:
            return port


def control_plane(directory: Path) -> Iterator[ControlPlane]:
    """Start the control plane in ``directory``, yield it, stop it (a session fixture's body)."""
    if not (KIT / "up").is_file():
        pytest.skip(f"{KIT} is absent (the shared Kubernetes control plane for tests)")
    api_port = _free_port(set())
    etcd_port = _free_port({api_port, api_port - 1})
    env = {**os.environ, "K8S_PORT": str(api_port), "ETCD_PORT": str(etcd_port)}
    started = subprocess.run(
        [str(KIT / "up"), str(directory)], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    try:
        if started.returncode != 0:
            message = f"../shared/k8s/up failed: {started.stderr.strip()[-2000:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        env["KUBECONFIG"] = str(directory / "kubeconfig")
        env["PATH"] = f"{directory / 'bin'}{os.pathsep}{env['PATH']}"
        plane = ControlPlane(directory, env)
        yield plane
    finally:
        subprocess.run([str(KIT / "down"), str(directory)], capture_output=True, timeout=60, check=False)


def token_kubeconfig(plane: ControlPlane, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ``namespace/service_account`` (TokenRequest API), to run
    code with exactly the permissions RBAC gives that ServiceAccount."""
    token = plane.kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(plane.kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "sa",
                "context": {"cluster": admin["clusters"][0]["name"], "user": service_account, "namespace": namespace},
            }
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def api_client(kubeconfig: str | Path):
    """A Kubernetes Python client for ``kubeconfig`` (explicit: the tests switch KUBECONFIG around)."""
    import kubernetes

    return kubernetes.config.new_client_from_config(config_file=str(kubeconfig))


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def chart_containers(manifest: str) -> dict[str, dict]:
    """The containers of a rendered chart's Deployments, by ``app.kubernetes.io/component``."""
    containers = {}
    for doc in yaml.safe_load_all(manifest):
        if doc and doc.get("kind") == "Deployment":
            component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
            [containers[component]] = doc["spec"]["template"]["spec"]["containers"]
    return containers
