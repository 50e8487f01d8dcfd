"""Federation: one run over several independent Dask clusters (real scheduler and worker processes).

Results must be the single-cluster bits; a cluster whose scheduler is SIGKILLed mid-run is
reported lost and its unfinished files recomputed elsewhere, each counted once; losing every
cluster fails clearly after writing what arrived; a bigger cluster takes more files; a cluster
added mid-run takes work.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
import yaml
from conftest import DIMUON, result_bits
from dask_processes import ProcessCluster
from slow_analysis import write_slow_dimuon

import processor
from processor.cli import main
from processor.executors.dask import DaskExecutor
from processor.executors.federation import (
    ClusterSpec,
    FederationError,
    FederationExecutor,
    KubernetesCluster,
    load_clusters,
)
from processor.progress import RunProgress
from processor.report import FileReport
from processor.runner import make_executor

pytestmark = pytest.mark.timeout(300)

SLOW = {"LUMIFLOW_TEST_SLOW": "0.4"}  # seconds per file on the workers: time to kill a cluster mid-run


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> Path:
    return write_slow_dimuon(tmp_path_factory.mktemp("analysis") / "slow_dimuon.py")


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    """Three independent one-worker clusters, each a scheduler process and a worker process."""
    base = tmp_path_factory.mktemp("trio")
    with ProcessCluster(base / "a") as a, ProcessCluster(base / "b") as b, ProcessCluster(base / "c") as c:
        yield a, b, c


@pytest.fixture(scope="module")
def slow_pair(tmp_path_factory):
    """Two clusters whose workers take 0.4 s more per file: ``small`` (1 worker) and ``big`` (2 workers)."""
    base = tmp_path_factory.mktemp("pair")
    with (
        ProcessCluster(base / "small", workers=1, env=SLOW) as small,
        ProcessCluster(base / "big", workers=2, env=SLOW) as big,
    ):
        yield small, big


@pytest.fixture(scope="module")
def reference(trio, slow, muon_fileset):
    """The single-cluster result: the bits every federated run must give."""
    return processor.run(slow, muon_fileset, executor=DaskExecutor(scheduler=trio[0].address), write=False)


def _kill_when(cluster: ProcessCluster, name: str, after: int):
    """An ``on_file`` that SIGKILLs ``cluster``'s scheduler once ``after`` of its files were announced."""
    seen: list[FileReport] = []
    killers: list[threading.Thread] = []

    def on_file(report: FileReport) -> None:
        seen.append(report)
        if sum(r.cluster == name for r in seen) == after and not killers:
            killers.append(threading.Thread(target=cluster.kill_scheduler))
            killers[0].start()

    return on_file, seen, killers


def test_two_and_three_clusters_give_the_single_cluster_bits(trio, slow, muon_fileset, reference, tmp_path):
    two = FederationExecutor([trio[0].address, trio[1].address], fan_in=2)
    seen = []
    result = processor.run(slow, muon_fileset, executor=two, write=False, on_file=seen.append)
    assert result_bits(result) == result_bits(reference)
    assert sorted(r.index for r in seen) == list(range(12))  # each file announced once
    by_cluster = {a: sum(r.cluster == a for r in result.files) for a in (trio[0].address, trio[1].address)}
    assert sum(by_cluster.values()) == 12 and min(by_cluster.values()) >= 1, by_cluster

    # three clusters, writing outputs (the journal then has each file's partial fetched on its own)
    three = FederationExecutor([c.address for c in trio])
    result = processor.run(slow, muon_fileset, executor=three, output=tmp_path / "out")
    assert result_bits(result) == result_bits(reference)
    clusters = json.loads((tmp_path / "out" / "report.json").read_text())["clusters"]
    assert set(clusters) == {c.address for c in trio}
    assert sum(c["files"] for c in clusters.values()) == 12
    assert sum(c["events"] for c in clusters.values()) == reference.events
    for name, entry in clusters.items():
        assert entry["lost"] is None and entry["worker_threads"] == 1
        assert entry["events"] == sum(r.events for r in result.files if r.cluster == name)
        assert entry["files"] >= 1 and entry["busy_seconds"] > 0 and entry["events_per_second"] > 0


def test_cli_runs_a_federation_from_repeated_cluster_options(trio, muon_fileset, tmp_path):
    out = tmp_path / "out"
    argv = ["run", str(DIMUON), "--fileset", str(muon_fileset), "--output", str(out), "--no-progress"]
    assert main([*argv, "--cluster", trio[1].address, "--cluster", trio[2].address]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["clusters"]) == {trio[1].address, trio[2].address}
    assert report["totals"]["files_ok"] == 12
    assert {f["cluster"] for f in report["files"]} <= {trio[1].address, trio[2].address}


def test_a_cluster_killed_mid_run_is_reported_and_its_files_recomputed(
    slow_pair, slow, muon_fileset, reference, tmp_path
):
    a = slow_pair[0]
    with ProcessCluster(tmp_path / "b", env=SLOW) as b:
        executor = FederationExecutor([ClusterSpec("a", a.address), ClusterSpec("b", b.address)])
        on_file, seen, killers = _kill_when(b, "b", after=1)
        result = processor.run(
            slow, muon_fileset, executor=executor, output=tmp_path / "out", journal=False, on_file=on_file
        )
        killers[0].join()
    assert result_bits(result) == result_bits(reference)
    # b's finished file was never fetched (no checkpoint yet): it was recomputed on a, counted once
    assert all(r.cluster == "a" for r in result.files)
    assert [r.index for r in seen if r.cluster == "b"][0] in {r.index for r in result.files}
    clusters = json.loads((tmp_path / "out" / "report.json").read_text())["clusters"]
    lost = clusters["b"]["lost"]
    assert lost is not None and lost["seconds"] > 0 and lost["files_requeued"] >= 1 and "lost" in lost["reason"]
    assert clusters["b"]["files"] == 0 and clusters["a"]["files"] == 12 and clusters["a"]["lost"] is None


def test_partials_that_arrived_before_the_loss_are_kept(slow_pair, slow, muon_fileset, reference, tmp_path):
    """Fetched partials (here: each file's, for the journal) are the client's: only the rest is recomputed."""
    a = slow_pair[0]
    with ProcessCluster(tmp_path / "b", env=SLOW) as b:
        executor = FederationExecutor([ClusterSpec("a", a.address), ClusterSpec("b", b.address)])
        # b's first two files are b's from the start: it announces both, its first arrived 0.4 s before
        on_file, seen, killers = _kill_when(b, "b", after=2)
        result = processor.run(slow, muon_fileset, executor=executor, output=tmp_path / "out", on_file=on_file)
        killers[0].join()
    assert result_bits(result) == result_bits(reference)
    kept = [r for r in result.files if r.cluster == "b"]
    assert 1 <= len(kept) <= 2  # b's first file had arrived before it was killed after its second
    assert sorted(r.index for r in seen) == list(range(12))
    clusters = json.loads((tmp_path / "out" / "report.json").read_text())["clusters"]
    assert clusters["b"]["files"] == len(kept) and clusters["b"]["lost"] is not None


def test_losing_every_cluster_fails_clearly_and_writes_what_arrived(slow, muon_fileset, reference, tmp_path):
    with ProcessCluster(tmp_path / "a", env=SLOW) as a, ProcessCluster(tmp_path / "b", env=SLOW) as b:
        executor = FederationExecutor([ClusterSpec("a", a.address), ClusterSpec("b", b.address)])
        on_a, _, killers_a = _kill_when(a, "a", after=2)
        on_b, _, killers_b = _kill_when(b, "b", after=2)

        def on_file(report):
            on_a(report)
            on_b(report)

        with pytest.raises(processor.RunAborted, match="every cluster was lost") as info:
            processor.run(slow, muon_fileset, executor=executor, output=tmp_path / "out", on_file=on_file)
        for killer in killers_a + killers_b:
            killer.join()
    result = info.value.result
    finished = [r for r in result.files if r.ok]
    assert len(result.files) == 12 and 1 <= len(finished) < 12
    assert all(r.error.startswith("not processed: every cluster was lost") for r in result.failures)
    expected = {r.index: r.events for r in reference.files}
    assert all(r.events == expected[r.index] for r in finished)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["totals"]["files_ok"] == len(finished) and report["totals"]["files_failed"] == 12 - len(finished)
    assert all(entry["lost"] is not None for entry in report["clusters"].values())
    assert (tmp_path / "out" / "histograms.root").exists()


def test_the_bigger_cluster_takes_more_files(slow_pair, slow, muon_fileset, reference):
    small, big = slow_pair
    executor = FederationExecutor([ClusterSpec("small", small.address), ClusterSpec("big", big.address)])
    processor.run(slow, muon_fileset, executor=executor, write=False)  # warm every worker (imports)
    result = processor.run(slow, muon_fileset, executor=executor, write=False)
    assert result_bits(result) == result_bits(reference)
    files = {name: sum(r.cluster == name for r in result.files) for name in ("small", "big")}
    assert files["big"] > files["small"] >= 1, files  # 2 workers vs 1: about 8 files against 4


def test_a_cluster_added_mid_run_takes_work(slow_pair, slow, muon_fileset, reference, tmp_path):
    a, late = slow_pair
    executor = FederationExecutor([ClusterSpec("a", a.address)])

    def on_file(report):
        if report.cluster == "a" and len(executor.clusters) == 1:
            executor.add_cluster(ClusterSpec("late", late.address))

    result = processor.run(slow, muon_fileset, executor=executor, output=tmp_path / "out", on_file=on_file)
    assert result_bits(result) == result_bits(reference)
    assert sum(r.cluster == "late" for r in result.files) >= 1
    clusters = json.loads((tmp_path / "out" / "report.json").read_text())["clusters"]
    assert clusters["late"]["joined_seconds"] > 0 and clusters["late"]["files"] >= 1


def test_a_cluster_added_to_the_cluster_file_mid_run_takes_work(slow_pair, slow, muon_fileset, reference, tmp_path):
    a, late = slow_pair
    listing = tmp_path / "clusters.yaml"
    listing.write_text(f"clusters:\n  - {{name: a, address: '{a.address}'}}\n")
    executor = FederationExecutor(clusters_file=listing, reread_seconds=0.2)

    def on_file(report):
        if report.cluster == "a" and "late" not in listing.read_text():
            listing.write_text(listing.read_text() + f"  - {{name: late, address: '{late.address}'}}\n")

    result = processor.run(slow, muon_fileset, executor=executor, write=False, on_file=on_file)
    assert result_bits(result) == result_bits(reference)
    assert sum(r.cluster == "late" for r in result.files) >= 1
    assert [c.name for c in executor.clusters] == ["a", "late"]


def test_an_unreachable_cluster_is_reported_and_the_others_do_the_work(
    slow_pair, slow, muon_fileset, reference, tmp_path
):
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        closed = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    # a slow cluster: the run outlasts the attempt to connect to the other
    executor = FederationExecutor([closed, ClusterSpec("a", slow_pair[0].address)], connect_timeout=1)
    result = processor.run(slow, muon_fileset, executor=executor, output=tmp_path / "out", journal=False)
    assert result_bits(result) == result_bits(reference)
    clusters = json.loads((tmp_path / "out" / "report.json").read_text())["clusters"]
    assert clusters[closed]["files"] == 0 and clusters[closed]["lost"]["reason"].startswith("could not connect")
    assert clusters[closed]["lost"]["seconds"] >= 1 and clusters["a"]["files"] == 12


def test_cluster_list_file(tmp_path):
    good = tmp_path / "clusters.yaml"
    good.write_text(
        "clusters:\n"
        "  - {name: cern, address: 'tcp://10.0.0.1:8786', weight: 2}\n"
        "  - 'tcp://10.0.0.2:8786'\n"
        "  - {name: gke, kubernetes: {cluster: lumiflow, namespace: dask, context: gke-prod}}\n"
    )
    cern, bare, gke = load_clusters(good)
    assert (cern.name, cern.address, cern.weight) == ("cern", "tcp://10.0.0.1:8786", 2)
    assert (bare.name, bare.address, bare.weight) == ("tcp://10.0.0.2:8786", "tcp://10.0.0.2:8786", 1.0)
    assert gke.address is None and (gke.kubernetes.name, gke.kubernetes.namespace, gke.kubernetes.context) == (
        "lumiflow",
        "dask",
        "gke-prod",
    )
    executor = make_executor("federation", clusters=["tcp://10.0.0.3:8786"], clusters_file=good)
    assert [c.name for c in executor.clusters] == ["tcp://10.0.0.3:8786", "cern", "tcp://10.0.0.2:8786", "gke"]

    bad = {
        "- {address: 'tcp://x:1', colour: red}\n": "cluster #1: unknown keys ['colour']",
        "- 'tcp://x:1'\n- {address: 'tcp://y:1', weight: 0}\n": "cluster #2: cluster 'tcp://y:1': weight must be",
        "- {name: k, kubernetes: {namespace: dask}}\n": "cluster #1: kubernetes needs 'cluster'",
        "- {name: a, address: 'tcp://x:1'}\n- {name: a, address: 'tcp://y:1'}\n": "names must be unique",
        "- {name: a}\n": "give exactly one of address or kubernetes",
        "clusters: []\n": "expected a non-empty list",
    }
    for text, message in bad.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(FederationError, match=str(path)) as info:
            load_clusters(path)
        assert message in str(info.value), (text, str(info.value))
    with pytest.raises(ValueError, match="needs clusters"):
        make_executor("federation")


def test_a_kubernetes_entry_is_looked_up_in_its_own_kube_context(k8s, muon_fileset, tmp_path, monkeypatch):
    """dask-kubernetes reaches the API server of the entry's context, not the current one.

    (The control plane has no kubelet, so no DaskCluster can get a running scheduler here: the
    lookup of an absent one is what can be checked, through the right context.)
    """
    pytest.importorskip("dask_kubernetes", reason="the kubernetes extra (dask-kubernetes) is not installed")
    config = yaml.safe_load(Path(k8s.kubeconfig).read_text())
    real = config["current-context"]
    user = config["users"][0]["name"]
    config["clusters"].append({"name": "dead", "cluster": {"server": "https://127.0.0.1:1"}})
    config["contexts"].append({"name": "dead", "context": {"cluster": "dead", "user": user}})
    config["current-context"] = "dead"  # a lookup that ignored the entry's context would fail to connect
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    executor = FederationExecutor(
        [
            ClusterSpec("named", kubernetes=KubernetesCluster("absent", "default", real)),
            ClusterSpec("current", kubernetes=KubernetesCluster("absent", "default")),
        ]
    )
    with pytest.raises(processor.RunAborted, match="every cluster was lost"):
        processor.run(DIMUON, muon_fileset, executor=executor, write=False)
    reasons = {r["name"]: r["lost"]["reason"] for r in executor.cluster_records}
    assert reasons["named"].startswith(f"could not connect: FederationError: DaskCluster 'absent' (context '{real}'")
    assert "absent doesn't already exist" in reasons["named"]  # the API server answered: no such DaskCluster
    assert "doesn't already exist" not in reasons["current"]  # the dead context's server never answered
    assert os.environ["KUBECONFIG"] == str(kubeconfig)  # the context switch is undone


def test_progress_counts_each_cluster():
    reports = [
        FileReport(index=0, path="a.root", dataset="d", events=100, cluster="east"),
        FileReport(index=1, path="b.root", dataset="d", events=50, cluster="west"),
        FileReport(index=2, path="c.root", dataset="d", events=70, cluster="east"),
        FileReport(index=3, path="d.root", dataset="d", status="failed", error="OSError", cluster="west"),
    ]
    with RunProgress(4, disable=True) as progress:
        for report in reports:
            progress.on_file(report)
        assert progress.clusters == {"east": [2, 170], "west": [2, 50]}
        progress.complete(reports[:2])
        assert progress.clusters == {"east": [1, 100], "west": [1, 50]}
