"""``lumiflow run --executor kubernetes``: the KubeCluster it asks for, and its errors.

A KubeCluster waits for its scheduler pod to run, which needs a kubelet; the shared control plane
has none, so the run itself is not exercised here. What is: the DaskCluster resource the executor
creates is accepted by the real API server under the CRD the chart installs, and misconfiguration
fails before anything is created.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import DIMUON
from k8s_cluster import CHART

from processor.cli import main
from processor.runner import make_executor

NS = "lumiflow-executor"


def test_kubernetes_executor_needs_an_image(monkeypatch, capsys, muon_fileset):
    pytest.importorskip("dask_kubernetes", reason="needs dask-kubernetes (test extra)")
    monkeypatch.delenv("LUMIFLOW_IMAGE", raising=False)
    with pytest.raises(ValueError, match="LUMIFLOW_IMAGE"):
        make_executor("kubernetes")
    assert main(["run", str(DIMUON), "--fileset", str(muon_fileset), "--executor", "kubernetes"]) == 2
    assert "LUMIFLOW_IMAGE" in capsys.readouterr().err


def test_kubernetes_executor_refuses_tls_and_says_what_to_use(monkeypatch, capsys, muon_fileset, tmp_path):
    """KubeCluster reaches its scheduler over plain TCP: TLS would fail or hang later, so it is refused now."""
    pytest.importorskip("dask_kubernetes", reason="needs dask-kubernetes (test extra)")
    monkeypatch.setenv("LUMIFLOW_IMAGE", "registry.example.org/lumiflow:test")
    for name in ("ca.pem", "cert.pem"):
        (tmp_path / name).write_text("unused: refused before it is read")
    args = ["run", str(DIMUON), "--fileset", str(muon_fileset), "--executor", "kubernetes", "--no-progress"]
    args += ["--tls-ca-file", str(tmp_path / "ca.pem"), "--tls-cert", str(tmp_path / "cert.pem")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot use TLS" in err and "tls.enabled" in err, err


def test_dask_cluster_of_the_executor_is_accepted_by_the_api_server(k8s, monkeypatch):
    pytest.importorskip("dask_kubernetes", reason="needs dask-kubernetes (test extra)")
    monkeypatch.setenv("LUMIFLOW_IMAGE", "registry.example.org/lumiflow:test")
    executor = make_executor("kubernetes", workers=5)
    spec = executor.cluster_spec("lumiflow-test")
    created = k8s.kubectl("create", "-f", str(CHART / "crds" / "dask-daskcluster.yaml"), check=False)
    assert created.returncode == 0 or "AlreadyExists" in created.stderr, created.stderr
    k8s.kubectl("wait", "--for=condition=Established", "crd/daskclusters.kubernetes.dask.org", "--timeout=30s")
    k8s.kubectl("create", "namespace", NS, check=False)
    done = k8s.kubectl(
        "create", "--dry-run=server", "--validate=false", "-n", NS, "-o", "json", "-f", "-", input=json.dumps(spec)
    )
    accepted = json.loads(done.stdout)["spec"]
    assert accepted["worker"]["replicas"] == 5
    [worker] = accepted["worker"]["spec"]["containers"]
    [scheduler] = accepted["scheduler"]["spec"]["containers"]
    assert worker["image"] == scheduler["image"] == "registry.example.org/lumiflow:test"
    assert worker["args"][:4] == ["dask", "worker", "--nthreads", "1"]  # single-threaded workers, as locally
    # both commands exist in a Lumiflow installation (the image installs the same packages)
    for command in (scheduler["args"][:2], worker["args"][:2]):
        assert command[0] == "dask"
        done = subprocess.run([sys.executable, "-m", *command, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
