"""The Helm chart: lint, schema validation of what it renders, and install/upgrade/uninstall on a
real (v1.20) API server, with the RBAC it grants checked by the API server's own authorizer."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_cluster import CHART, chart_containers

NS = "lumiflow-chart"
OTHER_NS = "lumiflow-elsewhere"
TLS = ["--set", "tls.enabled=true,tls.secretName=dask-tls"]


@pytest.fixture(scope="module")
def plane(k8s):
    k8s.kubectl("create", "namespace", OTHER_NS)
    yield k8s
    k8s.kubectl("delete", "namespace", OTHER_NS, "--wait=false", check=False)


def _render(plane, *values: str) -> list[dict]:
    text = plane.run("helm", "template", "lumiflow", str(CHART), "-n", NS, "--include-crds", *values).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize(
    "values", [[], ["--set", "rbac.clusterWide=true"], TLS], ids=["namespaced", "cluster-wide", "tls"]
)
def test_chart_lints_strictly(plane, values):
    plane.run("helm", "lint", "--strict", str(CHART), *values)


@pytest.mark.parametrize(
    "values", [[], ["--set", "rbac.clusterWide=true"], TLS], ids=["namespaced", "cluster-wide", "tls"]
)
def test_rendered_built_in_kinds_pass_strict_schema_validation(plane, values, tmp_path):
    """kubernetes-validate knows 1.25 onwards: the oldest and the newest it ships (1.20 is the live server)."""
    validate = shutil.which("kubernetes-validate")
    if validate is None:
        pytest.skip("kubernetes-validate is not installed (test extra)")
    from kubernetes_validate.utils import all_versions

    versions = sorted(all_versions(), key=lambda v: tuple(int(x) for x in v.split(".")))
    docs = [d for d in _render(plane, *values) if d["kind"] != "CustomResourceDefinition"]
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    for version in (versions[0], versions[-1]):
        done = subprocess.run(
            [validate, "--strict", "-k", version, str(manifest)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count("passed") == len(docs), done.stdout  # every object validated, none skipped


def test_pods_are_restricted_and_sized(plane):
    deployments = [d for d in _render(plane) if d["kind"] == "Deployment"]
    assert sorted(d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments) == [
        "dask-controller",
        "operator",
    ]
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert container["args"][:2] == ["kopf", "run"]


def test_tls_value_reaches_the_operator_and_needs_a_secret(plane):
    """tls.enabled hands the Secret's name to the operator (which mounts it in the Dask pods); off by default."""

    def operator_env(*values: str) -> dict[str, str]:
        manifest = plane.run("helm", "template", "lumiflow", str(CHART), "-n", NS, *values).stdout
        assert "kind: Secret\n" not in manifest  # the Secret is the admin's: the chart never makes one
        return {e["name"]: e.get("value") for e in chart_containers(manifest)["operator"]["env"]}

    assert operator_env(*TLS)["LUMIFLOW_TLS_SECRET"] == "dask-tls"
    assert "LUMIFLOW_TLS_SECRET" not in operator_env()
    assert "LUMIFLOW_TLS_SECRET" not in operator_env("--set", "tls.secretName=dask-tls")  # named but not enabled
    done = plane.run("helm", "template", "lumiflow", str(CHART), "--set", "tls.enabled=true", check=False)
    assert done.returncode != 0 and "tls.secretName" in done.stderr, done.stderr


def test_chart_ships_the_dask_kubernetes_crds_of_the_installed_wheel():
    """The controller runs from the image's dask-kubernetes; its CRDs must be the same version's."""
    dask_kubernetes = pytest.importorskip("dask_kubernetes", reason="needs dask-kubernetes (test extra)")
    shipped = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
    crds = shipped / "dask-kubernetes-operator" / "crds"
    names = sorted(p.name for p in crds.glob("*.yaml"))
    assert names, f"no CRDs in {crds}"
    for name in names:
        assert filecmp.cmp(crds / name, CHART / "crds" / f"dask-{name}", shallow=False), (
            f"charts/lumiflow/crds/dask-{name} differs from dask-kubernetes' {name}: copy it again"
        )


def _can(plane, verb: str, resource: str, namespace: str, who: str) -> bool:
    done = plane.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as=system:serviceaccount:{NS}:{who}", check=False
    )
    return done.stdout.strip() == "yes"


def test_install_upgrade_uninstall(plane):
    plane.run("helm", "install", "lumiflow", str(CHART), "-n", NS, "--create-namespace")
    try:
        for crd in ("analyses.lumiflow.io", "daskjobs.kubernetes.dask.org", "daskclusters.kubernetes.dask.org"):
            plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
        names = plane.kubectl("get", "deployments,serviceaccounts,roles,rolebindings", "-n", NS, "-o", "name").stdout
        for name in (
            "deployment.apps/lumiflow-operator",
            "deployment.apps/lumiflow-dask-controller",
            "serviceaccount/lumiflow-operator",
            "serviceaccount/lumiflow-dask-controller",
            "role.rbac.authorization.k8s.io/lumiflow-runner",
        ):
            assert name in names.split(), names

        # namespaced (default): each operator may do its job here, and nothing elsewhere or beyond
        assert _can(plane, "create", "daskjobs.kubernetes.dask.org", NS, "lumiflow-operator")
        assert _can(plane, "patch", "analyses.lumiflow.io/status", NS, "lumiflow-operator")
        assert not _can(plane, "create", "daskjobs.kubernetes.dask.org", OTHER_NS, "lumiflow-operator")
        assert not _can(plane, "create", "pods", NS, "lumiflow-operator")
        assert not _can(plane, "get", "secrets", NS, "lumiflow-operator")
        assert _can(plane, "create", "deployments.apps", NS, "lumiflow-dask-controller")
        assert not _can(plane, "create", "deployments.apps", OTHER_NS, "lumiflow-dask-controller")
        assert not _can(plane, "get", "secrets", NS, "lumiflow-dask-controller")
        assert not _can(plane, "delete", "analyses.lumiflow.io", NS, "lumiflow-operator")

        plane.run("helm", "upgrade", "lumiflow", str(CHART), "-n", NS, "--set", "rbac.clusterWide=true")
        assert _can(plane, "create", "daskjobs.kubernetes.dask.org", OTHER_NS, "lumiflow-operator")
        assert _can(plane, "create", "deployments.apps", OTHER_NS, "lumiflow-dask-controller")
        assert not _can(plane, "get", "secrets", OTHER_NS, "lumiflow-operator")
        args = plane.kubectl(
            "get",
            "deployment",
            "lumiflow-operator",
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args}",
        ).stdout
        assert "--all-namespaces" in args
        assert (
            "role.rbac.authorization.k8s.io/lumiflow-runner"
            not in plane.kubectl("get", "roles", "-n", NS, "-o", "name").stdout.split()
        )  # replaced by the ClusterRole
        plane.kubectl("get", "clusterrole", "lumiflow-runner")
    finally:
        plane.run("helm", "uninstall", "lumiflow", "-n", NS)
    leftover = plane.kubectl("get", "deployments,serviceaccounts,roles,rolebindings", "-n", NS, "-o", "name").stdout
    assert "lumiflow" not in leftover, leftover
    assert plane.kubectl("get", "clusterrole", "lumiflow-runner", check=False).returncode != 0
    plane.kubectl("get", "crd", "analyses.lumiflow.io")  # CRDs stay: deleting them would delete every Analysis
