"""The Analysis operator and the dask-kubernetes controller, against a real API server.

The chart is installed (CRDs, ServiceAccounts, RBAC); then both operators run here with the
command lines the chart gives their Deployments, each authenticated as its chart ServiceAccount,
so the chart's least-privilege RBAC is what they get. No kubelet runs: the Dask pods stay
Pending, and the run driver's part is played by a real local run (LocalCluster) that reports to
the Analysis as its runner ServiceAccount would.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import uproot
from conftest import DIMUON
from k8s_cluster import CHART, api_client, chart_containers, token_kubeconfig, wait_for

kopf_testing = pytest.importorskip("kopf.testing", reason="the operator tests need kopf (test extra)")
kubernetes = pytest.importorskip("kubernetes", reason="the operator tests need the kubernetes client (test extra)")
pytest.importorskip("dask_kubernetes", reason="the operator tests need dask-kubernetes (test extra)")

from processor.cli import main  # noqa: E402

NS = "lumiflow-op"
NAME = "dimuon-k8s"


def _kopf_args(container: dict) -> list[str]:
    """The chart's ``kopf run ...`` without the liveness endpoint (its port is the pod's, not ours)."""
    assert container["args"][:2] == ["kopf", "run"]
    return [a for a in container["args"][1:] if not a.startswith("--liveness")]


@pytest.fixture(scope="module")
def operators(k8s, tmp_path_factory):
    """Install the chart, run both operators as their ServiceAccounts; yield the admin client."""
    base = tmp_path_factory.mktemp("operators")
    k8s.run("helm", "install", "lumiflow", str(CHART), "-n", NS, "--create-namespace")
    containers = chart_containers(k8s.run("helm", "get", "manifest", "lumiflow", "-n", NS).stdout)
    controller_config = token_kubeconfig(k8s, NS, "lumiflow-dask-controller", base / "dask-controller.kubeconfig")
    operator_config = token_kubeconfig(k8s, NS, "lumiflow-operator", base / "operator.kubeconfig")
    log = (base / "dask-controller.log").open("w")
    controller = subprocess.Popen(
        [sys.executable, "-m", "kopf", *_kopf_args(containers["dask-controller"])],
        env={**k8s.env, "KUBECONFIG": str(controller_config)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    operator_env = {e["name"]: e["value"] for e in containers["operator"]["env"] if e["name"].startswith("LUMIFLOW_")}
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KUBECONFIG", str(operator_config))  # what kopf logs in with
            for key, value in operator_env.items():
                mp.setenv(key, value)
            with kopf_testing.KopfRunner(_kopf_args(containers["operator"]), timeout=60) as runner:
                yield api_client(k8s.kubeconfig)
        assert runner.exception is None, runner.output
    finally:
        controller.terminate()
        try:
            controller.wait(timeout=20)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait(timeout=10)
        log.close()
        k8s.run("helm", "uninstall", "lumiflow", "-n", NS, check=False)


def _custom(client, group: str, plural: str, name: str) -> dict | None:
    version = "v1alpha1" if group == "lumiflow.io" else "v1"
    try:
        return kubernetes.client.CustomObjectsApi(client).get_namespaced_custom_object(group, version, NS, plural, name)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _owned_by(obj, owner: dict) -> bool:
    refs = obj["metadata"].get("ownerReferences") if isinstance(obj, dict) else obj.metadata.owner_references
    uids = [r["uid"] if isinstance(r, dict) else r.uid for r in refs or []]
    return owner["metadata"]["uid"] in uids


@pytest.fixture(scope="module")
def submitted(k8s, operators, muon_fileset, tmp_path_factory):
    """``lumiflow submit`` (as the admin user) of the dimuon analysis; waits for its DaskJob."""
    out = tmp_path_factory.mktemp("submit") / "name"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", k8s.kubeconfig)
        with contextlib.redirect_stdout(out.open("w")):
            code = main(
                ["submit", str(DIMUON), "--fileset", str(muon_fileset), "-n", NS, "--workers", "3", "--name", NAME]
            )
    assert code == 0
    assert out.read_text().strip() == NAME
    wait_for(lambda: _custom(operators, "kubernetes.dask.org", "daskjobs", NAME), "the operator's DaskJob")
    return _custom(operators, "lumiflow.io", "analyses", NAME)


def test_analysis_becomes_dask_job_cluster_and_deployments(k8s, operators, submitted):
    analysis = submitted
    assert analysis["spec"]["workers"] == 3
    assert analysis["spec"]["analysis"]["source"] == DIMUON.read_text()  # shipped by value
    job = _custom(operators, "kubernetes.dask.org", "daskjobs", NAME)
    assert _owned_by(job, analysis)
    runner_args = job["spec"]["job"]["spec"]["containers"][0]["args"]
    assert runner_args[:3] == ["lumiflow", "run", "/lumiflow/analysis/dimuon.py"]
    assert runner_args[runner_args.index("--report-to") + 1] == f"{NS}/{NAME}"

    core = kubernetes.client.CoreV1Api(operators)
    inputs = core.read_namespaced_config_map(f"{NAME}-input", NS)
    assert _owned_by(inputs, analysis)
    assert inputs.data["dimuon.py"] == DIMUON.read_text()
    assert _owned_by(core.read_namespaced_service_account(f"{NAME}-runner", NS), analysis)
    binding = kubernetes.client.RbacAuthorizationV1Api(operators).read_namespaced_role_binding(f"{NAME}-runner", NS)
    assert _owned_by(binding, analysis) and binding.role_ref.name == "lumiflow-runner"

    # the dask-kubernetes controller's part: DaskCluster and runner Pod owned by the DaskJob ...
    cluster = wait_for(lambda: _custom(operators, "kubernetes.dask.org", "daskclusters", NAME), "the DaskCluster")
    assert _owned_by(cluster, job)
    runner = wait_for(lambda: _read(core.read_namespaced_pod, f"{NAME}-runner"), "the runner pod")
    assert _owned_by(runner, job)
    # ... then a scheduler Deployment and Service owned by the cluster, and one Deployment per worker
    apps = kubernetes.client.AppsV1Api(operators)
    selector = f"dask.org/cluster-name={NAME}"

    def deployments():
        found = apps.list_namespaced_deployment(NS, label_selector=selector).items
        return found if len(found) == 1 + 3 else None

    found = wait_for(deployments, "the scheduler and 3 worker Deployments")
    components = sorted(d.metadata.labels["dask.org/component"] for d in found)
    assert components == ["scheduler", "worker", "worker", "worker"]
    scheduler = next(d for d in found if d.metadata.labels["dask.org/component"] == "scheduler")
    assert _owned_by(scheduler, cluster)
    pod = scheduler.spec.template.spec
    assert pod.security_context.run_as_non_root and pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.containers[0].security_context.read_only_root_filesystem
    assert pod.containers[0].security_context.capabilities.drop == ["ALL"]
    service = wait_for(lambda: _read(core.read_namespaced_service, f"{NAME}-scheduler"), "the scheduler Service")
    assert _owned_by(service, cluster)
    # the controller-manager turns the Deployments into Pods, which stay Pending (no kubelet)
    wait_for(lambda: len(core.list_namespaced_pod(NS, label_selector=selector).items) >= 5, "the Dask pods")

    status = wait_for(lambda: _custom(operators, "lumiflow.io", "analyses", NAME).get("status") or {}, "a status")
    assert status["phase"] == "Pending" and status["daskJob"] == NAME


def _read(read, name: str):
    try:
        return read(name, NS)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _events_in(files: list[Path]) -> int:
    return sum(uproot.open(f)["Events"].num_entries for f in files)


def test_live_progress_reaches_the_status(k8s, operators, submitted, tmp_path):
    """Files reported through ``on_file`` show up in the status while the run goes on."""
    from processor.k8s.reporter import AnalysisReporter
    from processor.report import FileReport

    runner = api_client(token_kubeconfig(k8s, NS, f"{NAME}-runner", tmp_path / "runner.kubeconfig"))
    with AnalysisReporter(runner, NS, NAME, interval=0.1) as reporter:
        reporter.start(files_total=3)
        reporter.on_file(FileReport(index=0, path="a.root", dataset="d", events=1000, bytes_read=5000))
        reporter.on_file(FileReport(index=1, path="b.root", dataset="d", status="failed", error="OSError: gone"))

        def live():
            status = _custom(operators, "lumiflow.io", "analyses", NAME).get("status") or {}
            return status if status.get("filesDone") == 2 else None

        status = wait_for(live, "the live counts in the status", timeout=30)
        assert status["phase"] == "Running" and status["filesTotal"] == 3
        assert (status["filesFailed"], status["eventsProcessed"]) == (1, 1000)
        reporter.fail("stopped by the test")
    assert _custom(operators, "lumiflow.io", "analyses", NAME)["status"]["phase"] == "Failed"


def test_runner_reports_status_and_results(k8s, operators, submitted, muon_fileset, tmp_path, capsys):
    """A real run (LocalCluster) reporting as the runner ServiceAccount; kubectl and lumiflow read it."""
    runner_config = token_kubeconfig(k8s, NS, f"{NAME}-runner", tmp_path / "runner.kubeconfig")
    output = tmp_path / "out"
    bucket = f"file://{tmp_path}/bucket/run"  # an object-store URL, served by fsspec's local filesystem
    k8s.kubectl(
        "patch", "analysis", NAME, "-n", NS, "--type=merge", "-p", json.dumps({"spec": {"output": {"url": bucket}}})
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(runner_config))
        code = main(
            ["run", str(DIMUON), "--fileset", str(muon_fileset), "--workers", "2", "--output", str(output),
             "--no-progress", "--report-to", f"{NS}/{NAME}"]
        )  # fmt: skip
    assert code == 0

    table = k8s.kubectl("get", "analyses", NAME, "-n", NS, "-o", "wide").stdout.splitlines()
    row = dict(zip(table[0].split(), table[1].split(), strict=False))
    assert row["PHASE"] == "Succeeded"
    assert (row["DONE"], row["FAILED"], row["FILES"]) == ("12", "0", "12")

    status = json.loads(k8s.kubectl("get", "analysis", NAME, "-n", NS, "-o", "json").stdout)["status"]
    files = sorted(muon_fileset.parent.glob("*.root"))
    assert status["eventsProcessed"] == _events_in(files)  # every event of the 12 files, counted once
    assert status["eventsPerSecond"] > 0 and status["bytesPerSecond"] > 0
    assert status["startedAt"] <= status["finishedAt"]
    assert status["output"] == bucket

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", k8s.kubeconfig)
        assert main(["status", NAME, "-n", NS, "--watch"]) == 0  # finished: one line, no waiting
        assert main(["results", NAME, "-n", NS, "--output", str(tmp_path / "fetched")]) == 0
    line = capsys.readouterr().out
    assert f"{NAME}: Succeeded  files 12/12 (0 failed)" in line
    written = sorted(p.name for p in output.iterdir() if p.is_file())
    assert written and sorted(p.name for p in (tmp_path / "fetched").iterdir()) == written
    for name in written:
        assert (tmp_path / "fetched" / name).read_bytes() == (output / name).read_bytes(), name
        assert (tmp_path / "bucket" / "run" / name).read_bytes() == (output / name).read_bytes(), name


def test_runner_reports_a_failed_run(k8s, operators, submitted, tmp_path):
    """A driver that cannot even start (bad fileset) leaves the Analysis Failed with the reason."""
    runner_config = token_kubeconfig(k8s, NS, f"{NAME}-runner", tmp_path / "runner.kubeconfig")
    bad = tmp_path / "fileset.json"
    bad.write_text(json.dumps({"sig": {"files": ["a.root"], "metadata": {"role": "signal"}}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(runner_config))
        code = main(["run", str(DIMUON), "--fileset", str(bad), "--no-progress", "--report-to", f"{NS}/{NAME}"])
    assert code == 2
    status = _custom(operators, "lumiflow.io", "analyses", NAME)["status"]
    assert status["phase"] == "Failed"
    assert "xsec_pb" in status["message"] and "'sig'" in status["message"]


def test_submit_rejects_a_bad_fileset_on_the_laptop(k8s, operators, tmp_path, monkeypatch, capsys):
    """The fileset is checked before anything is created: the error names the dataset and the field."""
    bad = tmp_path / "typo.json"
    bad.write_text(json.dumps({"zz": {"files": ["root://host//a.root"], "metadata": {"xsec": 1.0}}}))
    monkeypatch.setenv("KUBECONFIG", k8s.kubeconfig)
    assert main(["submit", str(DIMUON), "--fileset", str(bad), "-n", NS, "--name", "typo"]) == 2
    err = capsys.readouterr().err
    assert "'zz'" in err and "xsec" in err
    assert _custom(operators, "lumiflow.io", "analyses", "typo") is None


def _create_analysis(k8s, name: str, **spec) -> None:
    """A minimal Analysis (an inline stub module, an empty fileset) with ``spec``'s fields on top."""
    body = {
        "apiVersion": "lumiflow.io/v1alpha1",
        "kind": "Analysis",
        "metadata": {"name": name},
        "spec": {"analysis": {"filename": "a.py", "source": "x"}, "fileset": {"content": "{}"}, **spec},
    }
    k8s.kubectl("create", "-n", NS, "-f", "-", input=json.dumps(body))


def test_federated_analysis_gets_its_clusters_and_releases_them(k8s, operators):
    """clusters: 2 -> a second DaskCluster, both federated by the runner; deleted when the run ends."""
    name = "federated"
    _create_analysis(k8s, name, clusters=2)
    analysis = _custom(operators, "lumiflow.io", "analyses", name)
    second = wait_for(
        lambda: _custom(operators, "kubernetes.dask.org", "daskclusters", f"{name}-c2"), "DaskCluster -c2"
    )
    assert _owned_by(second, analysis)
    job = wait_for(lambda: _custom(operators, "kubernetes.dask.org", "daskjobs", name), "the DaskJob")
    args = job["spec"]["job"]["spec"]["containers"][0]["args"]
    clusters = [args[i + 1] for i, a in enumerate(args) if a == "--cluster"]
    assert clusters == ["$(DASK_SCHEDULER_ADDRESS)", f"tcp://{name}-c2-scheduler.{NS}.svc.cluster.local:8786"]
    assert "--scheduler" not in args
    # the second cluster's own scheduler Service, made by the dask-kubernetes controller
    core = kubernetes.client.CoreV1Api(operators)
    wait_for(lambda: _read(core.read_namespaced_service, f"{name}-c2-scheduler"), "the -c2 scheduler Service")

    k8s.kubectl(
        "patch", "analysis", name, "-n", NS, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Succeeded"}}),
    )  # fmt: skip
    wait_for(lambda: _custom(operators, "kubernetes.dask.org", "daskclusters", f"{name}-c2") is None, "-c2 deleted")
    assert _custom(operators, "kubernetes.dask.org", "daskjobs", name) is not None
    k8s.kubectl("delete", "analysis", name, "-n", NS)


def test_referenced_inputs_and_volume_output_make_a_valid_dask_job(k8s, operators):
    """ConfigMap references and a PVC output: the DaskJob the operator would create passes the API server."""
    from lumiflow_operator.children import OperatorConfig, children

    spec = {
        "analysis": {"filename": "mine.py", "configMapRef": {"name": "code", "key": "mine.py"}},
        "fileset": {"configMapRef": {"name": "files", "key": "fileset.json"}},
        "output": {"pvc": {"claimName": "results", "path": "runs/1"}},
        "workers": 4,
        "strict": True,
    }
    objects = children("refs", NS, spec, OperatorConfig(image="registry.example.org/lumiflow:1"))
    assert [o["kind"] for o in objects] == ["ServiceAccount", "RoleBinding", "DaskJob"]  # no inline inputs
    job = objects[-1]
    pod = job["spec"]["job"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["analysis"]["configMap"] == {"name": "code", "items": [{"key": "mine.py", "path": "mine.py"}]}
    assert volumes["fileset"]["configMap"]["name"] == "files"
    assert volumes["output"]["persistentVolumeClaim"] == {"claimName": "results"}
    args = pod["containers"][0]["args"]
    assert args[args.index("--output") + 1] == "/lumiflow/output/runs/1" and "--strict" in args
    done = k8s.kubectl("create", "--dry-run=server", "--validate=false", "-n", NS, "-f", "-", input=json.dumps(job))
    assert "created (server dry run)" in done.stdout


def _tls_of(container: dict, volumes: list[dict]) -> tuple[dict[str, str], str | None]:
    """A container's TLS options as keys of the Secret mounted (read-only) where they point, and that Secret."""
    args = container["args"]
    options = {a: args[i + 1] for i, a in enumerate(args) if a in ("--tls-ca-file", "--tls-cert", "--tls-key")}
    mounts = [m for m in container.get("volumeMounts") or [] if m["name"] == "tls"]
    secrets = [v["secret"] for v in volumes if v["name"] == "tls"]
    if not mounts and not secrets:
        return options, None
    [mount], [secret] = mounts, secrets
    assert mount.get("readOnly") is True
    key_at = {f"{mount['mountPath']}/{item['path']}": item["key"] for item in secret["items"]}
    return {option: key_at[path] for option, path in options.items()}, secret["secretName"]


def test_tls_analysis_runs_every_dask_pod_over_tls(k8s, operators, monkeypatch):
    """With the chart's tls values, scheduler, workers and runner mount the Secret and speak only TLS."""
    manifest = k8s.run(
        "helm", "template", "lumiflow", str(CHART), "-n", NS, "--set", "tls.enabled=true,tls.secretName=dask-tls"
    ).stdout
    env = {e["name"]: e["value"] for e in chart_containers(manifest)["operator"]["env"]}
    monkeypatch.setenv("LUMIFLOW_TLS_SECRET", env["LUMIFLOW_TLS_SECRET"])  # the running operator reads it per Analysis
    name = "secure"
    _create_analysis(k8s, name, workers=2)
    address = f"tls://{name}-scheduler.{NS}.svc.cluster.local:8786"
    core = kubernetes.client.CoreV1Api(operators)
    apps = kubernetes.client.AppsV1Api(operators)

    def deployments():
        found = apps.list_namespaced_deployment(NS, label_selector=f"dask.org/cluster-name={name}").items
        return found if len(found) == 1 + 2 else None

    # the pods as the dask-kubernetes controller made them from the operator's DaskJob
    found = wait_for(deployments, "the scheduler and 2 worker Deployments")
    runner = wait_for(lambda: _read(core.read_namespaced_pod, f"{name}-runner"), "the runner pod")
    pods = [operators.sanitize_for_serialization(d.spec.template.spec) for d in found]
    pods.append(operators.sanitize_for_serialization(runner.spec))
    for pod in pods:
        [container] = pod["containers"]
        options, secret = _tls_of(container, pod["volumes"])
        assert secret == "dask-tls", container["name"]
        assert options == {"--tls-ca-file": "ca.pem", "--tls-cert": "cert.pem", "--tls-key": "key.pem"}, options
        addresses = [e["value"] for e in container["env"] if e["name"] == "DASK_SCHEDULER_ADDRESS"]
        if container["name"] == "scheduler":
            assert container["args"][container["args"].index("--protocol") + 1] == "tls" and not addresses
        else:  # workers and runner: the controller kept the tls:// address instead of writing its tcp:// one
            assert addresses == [address], container["name"]
    args = runner.spec.containers[0].args
    assert args[:2] == ["lumiflow", "run"] and args[args.index("--scheduler") + 1] == "$(DASK_SCHEDULER_ADDRESS)"
    k8s.kubectl("delete", "analysis", name, "-n", NS, "--wait=false")


def test_without_tls_no_dask_pod_mentions_it(operators, submitted):
    """TLS is off by default: the submitted Analysis' pods have no certificate options, Secret or tls:// address."""
    job = _custom(operators, "kubernetes.dask.org", "daskjobs", NAME)
    cluster = job["spec"]["cluster"]["spec"]
    for pod in (job["spec"]["job"]["spec"], cluster["scheduler"]["spec"], cluster["worker"]["spec"]):
        [container] = pod["containers"]
        assert _tls_of(container, pod["volumes"]) == ({}, None)
        assert "--protocol" not in container["args"]
        assert not any(e["name"] == "DASK_SCHEDULER_ADDRESS" for e in container["env"])  # the controller's tcp:// one


def test_tls_pod_commands_speak_tls_to_each_other(tmp_path):
    """No kubelet here, so the operator's scheduler and worker commands run as local processes (the
    Secret's files in a directory, loopback for the Service); a client with the runner's options uses them."""
    from distributed import Client
    from lumiflow_operator.children import TLS_DIR, OperatorConfig, children
    from test_security import _certificates

    from processor.security import tls_security

    secret = tmp_path / "secret"
    secret.mkdir()
    for path, key in zip(_certificates(tmp_path, "pods"), ("ca.pem", "cert.pem", "key.pem"), strict=True):
        path.rename(secret / key)
    spec = {"analysis": {"filename": "a.py", "source": "x"}, "fileset": {"content": "{}"}, "workers": 1}
    [job] = [o for o in children("pods", NS, spec, OperatorConfig("img", tls_secret="s")) if o["kind"] == "DaskJob"]
    cluster = job["spec"]["cluster"]["spec"]
    [scheduler] = cluster["scheduler"]["spec"]["containers"]
    [worker] = cluster["worker"]["spec"]["containers"]
    [runner] = job["spec"]["job"]["spec"]["containers"]

    def local(args: list[str]) -> list[str]:
        """The pod's command on this machine: the Secret's directory, loopback, any free port."""
        args = [a.replace(TLS_DIR, str(secret)).replace("0.0.0.0", "127.0.0.1") for a in args]
        return [sys.executable, "-m", f"distributed.cli.dask_{args[1]}", *args[2:]]

    scheduler_file = tmp_path / "scheduler.json"
    command = local(scheduler["args"])
    command[command.index("--port") + 1] = "0"
    processes = [subprocess.Popen([*command, "--no-dashboard", "--scheduler-file", str(scheduler_file)])]

    def started() -> str | None:
        assert processes[0].poll() is None, "the scheduler exited (its log is above)"
        return scheduler_file.read_text() if scheduler_file.exists() else None

    try:
        wait_for(started, "the TLS scheduler", timeout=60)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        pod_env = {e["name"]: e["value"] for e in worker["env"]}
        assert pod_env["DASK_SCHEDULER_ADDRESS"].startswith("tls://pods-scheduler.")  # the pod's; here, loopback's
        command = [a.replace("$(DASK_WORKER_NAME)", "pods-worker-0") for a in local(worker["args"])]
        command[command.index("--dashboard-address") + 1] = "127.0.0.1:0"
        command += ["--no-nanny", "--local-directory", str(tmp_path / "worker")]
        processes.append(subprocess.Popen(command, env={**os.environ, "DASK_SCHEDULER_ADDRESS": address}))

        args = runner["args"]
        files = {a: args[i + 1].replace(TLS_DIR, str(secret)) for i, a in enumerate(args) if a.startswith("--tls-")}
        security = tls_security(files["--tls-ca-file"], files["--tls-cert"], files["--tls-key"])
        with Client(address, security=security, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
            [worker_address] = client.scheduler_info()["workers"]
            assert worker_address.startswith("tls://")  # the workers listen on TLS too
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        with pytest.raises(OSError):
            Client(address.replace("tls://", "tcp://"), timeout="3s")
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)


BAD_SPECS = {
    "no workers": ({"workers": 0}, "spec.workers"),
    "no fileset": ({"fileset": None}, "spec.fileset"),
    "two sources": (
        {"analysis": {"filename": "a.py", "source": "x", "configMapRef": {"name": "m", "key": "k"}}},
        "spec.analysis",
    ),
    "not a URL": ({"output": {"url": "bucket/prefix"}}, "spec.output.url"),
    "negative retries": ({"retries": -1}, "spec.retries"),
}


@pytest.mark.parametrize("case", BAD_SPECS)
def test_invalid_analysis_is_rejected_by_the_api_server(k8s, operators, case):
    change, field = BAD_SPECS[case]
    spec = {"analysis": {"filename": "a.py", "source": "name = 'a'"}, "fileset": {"content": "{}"}, "workers": 2}
    good = {"apiVersion": "lumiflow.io/v1alpha1", "kind": "Analysis", "metadata": {"name": "bad"}, "spec": spec}
    k8s.kubectl("create", "--dry-run=server", "-n", NS, "-f", "-", input=json.dumps(good))  # the baseline passes
    bad = json.loads(json.dumps(good))
    for key, value in change.items():
        if value is None:
            del bad["spec"][key]
        else:
            bad["spec"][key] = value
    # --validate=false: kubectl's own check (from the server's OpenAPI) steps aside; the server decides
    done = k8s.kubectl("create", "--validate=false", "-n", NS, "-f", "-", input=json.dumps(bad), check=False)
    assert done.returncode != 0, f"{case}: accepted"
    assert field in done.stderr, done.stderr


def test_analysis_name_must_suit_dask(k8s, operators):
    body = {
        "apiVersion": "lumiflow.io/v1alpha1",
        "kind": "Analysis",
        "metadata": {"name": "with.dots"},
        "spec": {"analysis": {"filename": "a.py", "source": "x"}, "fileset": {"content": "{}"}},
    }
    done = k8s.kubectl(
        "create", "--dry-run=server", "--validate=false", "-n", NS, "-f", "-", input=json.dumps(body), check=False
    )
    assert done.returncode != 0 and "metadata.name" in done.stderr, done.stderr


def test_deleting_the_analysis_collects_everything(k8s, operators, submitted):
    """Last in the module: the garbage collector picks up new CRDs' kinds some seconds after they appear."""
    k8s.kubectl("delete", "analysis", NAME, "-n", NS)
    core = kubernetes.client.CoreV1Api(operators)
    apps = kubernetes.client.AppsV1Api(operators)
    selector = f"dask.org/cluster-name={NAME}"

    def gone() -> bool:
        return not any(
            [
                _custom(operators, "kubernetes.dask.org", "daskjobs", NAME),
                _custom(operators, "kubernetes.dask.org", "daskclusters", NAME),
                apps.list_namespaced_deployment(NS, label_selector=selector).items,
                core.list_namespaced_service(NS, label_selector=selector).items,
                core.list_namespaced_pod(NS, label_selector=selector).items,
                core.list_namespaced_config_map(NS, label_selector=f"lumiflow.io/analysis={NAME}").items,
                _read(core.read_namespaced_service_account, f"{NAME}-runner"),
            ]
        )

    wait_for(gone, "garbage collection of the Analysis' children", timeout=120, interval=1.0)
