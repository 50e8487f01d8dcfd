"""`lumiflow cls` on the published ATLAS sbottom likelihood (HEPData ins1748602) against plain `pyhf cls`.

The reference numbers come from pyhf's own command line, run on files extracted from the same
archive: the scan must reproduce them to 1e-6 relative, in-process and on a real LocalCluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyhf
import pytest
from dask_processes import ProcessCluster

from processor.cli import main
from processor.cls import scan_cls
from processor.executors.dask import DaskExecutor
from processor.executors.federation import ClusterSpec, FederationExecutor
from processor.executors.local import LocalExecutor
from processor.likelihoods import LikelihoodError, load_likelihood

ARCHIVE = "likelihoods/pyhf-ins1748602-probability-models.tar.gz"
# excluded, not excluded, and one near the 0.05 line (observed)
PATCHES = ("sbottom_1300_850_60", "sbottom_1000_131_1", "sbottom_1200_250_60")


@pytest.fixture(scope="module")
def archive(shared_data) -> Path:
    return shared_data / ARCHIVE


@pytest.fixture(scope="module")
def region_a(archive, tmp_path_factory) -> Path:
    """RegionA's BkgOnly.json and the tested patches, extracted as a user would."""
    out = tmp_path_factory.mktemp("sbottom")
    with tarfile.open(archive) as tar:
        for name in ("BkgOnly.json", *(f"patch.{p}.json" for p in PATCHES)):
            (out / name).write_bytes(tar.extractfile(f"RegionA/{name}").read())
    return out


def _pyhf_executable() -> str:
    beside = Path(sys.executable).parent / "pyhf"
    return str(beside) if beside.exists() else shutil.which("pyhf")


@pytest.fixture(scope="module")
def pyhf_reference(region_a) -> dict[str, dict]:
    """``pyhf cls RegionA/BkgOnly.json -p RegionA/patch.<name>.json`` for each patch (run two at a time).

    With single-threaded BLAS, as Lumiflow fits (see ``processor.cls.workspace_cls``): pyhf's own
    result moves by ~2e-6 relative with the BLAS thread count, more than the 1e-6 asked for.
    """
    env = {**os.environ, **{f"{lib}_NUM_THREADS": "1" for lib in ("OMP", "OPENBLAS", "MKL")}}
    runs = {
        name: subprocess.Popen(
            [_pyhf_executable(), "cls", str(region_a / "BkgOnly.json"), "-p", str(region_a / f"patch.{name}.json")],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in PATCHES
    }
    out = {}
    for name, proc in runs.items():
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        out[name] = json.loads(stdout)
    return out


def _assert_matches(scan, reference) -> None:
    assert [r.patch.name for r in scan.rows] == sorted(PATCHES)  # archive order: by name
    for row in scan.rows:
        expected = reference[row.patch.name]
        assert row.ok, row.error
        np.testing.assert_allclose(row.cls_observed, expected["CLs_obs"], rtol=1e-6, atol=0)
        np.testing.assert_allclose(row.cls_expected, expected["CLs_exp"], rtol=1e-6, atol=0)


def test_archive_scan_in_process_equals_pyhf_cls(archive, pyhf_reference):
    likelihood = load_likelihood(archive, region="RegionA").select(PATCHES)
    assert likelihood.patches[0].values == (1000.0, 131.0, 1.0)  # parsed from the patch name
    scan = scan_cls(likelihood, LocalExecutor())
    _assert_matches(scan, pyhf_reference)
    excluded = {r.patch.name: r.to_dict(scan.labels)["excluded_observed"] for r in scan.rows}
    assert excluded["sbottom_1300_850_60"] and not excluded["sbottom_1000_131_1"]


def test_archive_scan_on_a_local_cluster_equals_pyhf_cls(archive, pyhf_reference):
    likelihood = load_likelihood(archive, region="RegionA").select(PATCHES)
    announced = []
    scan = scan_cls(likelihood, DaskExecutor(workers=2), on_file=announced.append)
    _assert_matches(scan, pyhf_reference)
    assert sorted(r.path for r in announced) == sorted(PATCHES)  # progress: each patch once


def test_archive_scan_on_a_federation_of_two_clusters_equals_pyhf_cls(archive, pyhf_reference, tmp_path):
    likelihood = load_likelihood(archive, region="RegionA").select(PATCHES)
    with ProcessCluster(tmp_path / "east") as east, ProcessCluster(tmp_path / "west") as west:
        executor = FederationExecutor([ClusterSpec("east", east.address), ClusterSpec("west", west.address)])
        announced = []
        scan = scan_cls(likelihood, executor, on_file=announced.append)
    _assert_matches(scan, pyhf_reference)
    assert {r.cluster for r in announced} <= {"east", "west"} and len(announced) == len(PATCHES)


def _write_patchset(path: Path, background: dict, labels: list, models: dict, region_a: Path) -> None:
    """A pyhf PatchSet for ``background``: model name -> (its values, the RegionA patch it uses)."""
    patchset = {
        "metadata": {
            "name": "sbottom",
            "description": "sbottom models",
            "references": {"hepdata": "ins1748602"},
            "digests": {"sha256": pyhf.utils.digest(background, algorithm="sha256")},
            "labels": labels,
        },
        "patches": [
            {
                "metadata": {"name": name, "values": values},
                "patch": json.loads((region_a / f"patch.{patch}.json").read_text()),
            }
            for name, (values, patch) in models.items()
        ],
        "version": "1.0.0",
    }
    path.write_text(json.dumps(patchset))


def test_patchset_from_the_cli_equals_pyhf_cls(region_a, pyhf_reference, tmp_path, capsys):
    """A pyhf PatchSet (digest-checked, labels from its metadata), through `lumiflow cls` with the local executor."""
    background = json.loads((region_a / "BkgOnly.json").read_text())
    models = {name: ([int(v) for v in name.split("_")[1:]], name) for name in PATCHES}
    _write_patchset(tmp_path / "patchset.json", background, ["m_sbottom", "m_n2", "m_n1"], models, region_a)
    out = tmp_path / "out"
    status = main(
        ["cls", str(region_a / "BkgOnly.json"), "--patchset", str(tmp_path / "patchset.json")]
        + ["--executor", "local", "--no-progress", "--output", str(out)]
    )
    assert status == 0
    written = json.loads((out / "cls.json").read_text())
    assert written["labels"] == ["m_sbottom", "m_n2", "m_n1"]
    for row in written["patches"]:
        expected = pyhf_reference[row["patch"]]
        np.testing.assert_allclose(row["CLs_obs"], expected["CLs_obs"], rtol=1e-6, atol=0)
        np.testing.assert_allclose(row["CLs_exp"], expected["CLs_exp"], rtol=1e-6, atol=0)
        assert row["values"]["m_sbottom"] == int(row["patch"].split("_")[1])
    csv_lines = (out / "cls.csv").read_text().splitlines()
    assert csv_lines[0].startswith("patch,m_sbottom,m_n2,m_n1,CLs_obs,CLs_exp_-2") and len(csv_lines) == 4
    # the three models differ in all three masses: no plane to draw a contour in
    assert "no contour plot" in capsys.readouterr().err
    assert not (out / "contour.png").exists()

    # the same patchset against another background-only workspace is refused, naming the file
    background["observations"][0]["data"][0] += 1
    (tmp_path / "other.json").write_text(json.dumps(background))
    status = main(["cls", str(tmp_path / "other.json"), "--patchset", str(tmp_path / "patchset.json")])
    assert status == 2
    assert "patchset.json was made for another background-only workspace" in " ".join(capsys.readouterr().err.split())


def test_a_bad_patch_is_reported_by_name_and_the_others_are_kept(region_a, pyhf_reference, tmp_path, capsys):
    """A directory of plain patches, one of which points at a channel the workspace lacks."""
    for name in PATCHES[:2]:
        shutil.copy(region_a / f"patch.{name}.json", tmp_path / f"patch.{name}.json")
    shutil.copy(region_a / "BkgOnly.json", tmp_path / "BkgOnly.json")
    bad = [{"op": "add", "path": "/channels/99/samples/0", "value": {"name": "x", "data": [1.0], "modifiers": []}}]
    (tmp_path / "patch.sbottom_900_800_60.json").write_text(json.dumps(bad))
    out = tmp_path / "out"
    status = main(["cls", str(tmp_path), "--executor", "local", "--no-progress", "--output", str(out)])
    assert status == 1  # a failed patch makes the command fail, after writing what it has
    err = " ".join(capsys.readouterr().err.split())
    assert "FAILED sbottom_900_800_60: JsonPointerException" in err
    rows = {r["patch"]: r for r in json.loads((out / "cls.json").read_text())["patches"]}
    assert "error" in rows["sbottom_900_800_60"] and "CLs_obs" not in rows["sbottom_900_800_60"]
    for name in PATCHES[:2]:
        np.testing.assert_allclose(rows[name]["CLs_obs"], pyhf_reference[name]["CLs_obs"], rtol=1e-6, atol=0)


def test_archive_errors_name_the_choices(archive):
    with pytest.raises(LikelihoodError, match="several regions; choose one with --region: RegionA, RegionB, RegionC"):
        load_likelihood(archive)
    with pytest.raises(LikelihoodError, match=r"no region 'RegionD' \(it has: RegionA, RegionB, RegionC\)"):
        load_likelihood(archive, region="RegionD")
    region_b = load_likelihood(archive, region="RegionB")
    assert region_b.name == "RegionB" and len(region_b.patches) == 218
    assert len(region_b.select(["sbottom_*_*_60"]).patches) < len(region_b.patches)
    with pytest.raises(LikelihoodError, match="no patch of RegionB matches 'sbottom_1_2_3'"):
        region_b.select(["sbottom_1_2_3"])


def test_patchset_values_may_be_names_and_a_bad_background_is_named(region_a, tmp_path):
    """pyhf's PatchSet schema allows string values; a background that is no workspace fails once, named."""
    background = json.loads((region_a / "BkgOnly.json").read_text())
    models = {"wino_1300": (["wino", 1300], PATCHES[0])}
    _write_patchset(tmp_path / "patchset.json", background, ["model", "mass"], models, region_a)
    likelihood = load_likelihood(region_a / "BkgOnly.json", [tmp_path / "patchset.json"])
    assert likelihood.patches[0].values == ("wino", 1300.0) and likelihood.labels == ("model", "mass")
    (tmp_path / "not-a-workspace.json").write_text(json.dumps({"channels": "none"}))
    with pytest.raises(LikelihoodError, match="not-a-workspace.json: not a valid pyhf workspace"):
        load_likelihood(tmp_path / "not-a-workspace.json", [tmp_path / "patchset.json"])


def test_unreadable_inputs_get_clear_errors(tmp_path):
    with pytest.raises(LikelihoodError, match="no such file"):
        load_likelihood(tmp_path / "absent.json")
    (tmp_path / "broken.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(LikelihoodError, match="not a readable tar archive"):
        load_likelihood(tmp_path / "broken.tar.gz")
    (tmp_path / "ws.json").write_text("{")
    with pytest.raises(LikelihoodError, match="ws.json: not valid JSON"):
        load_likelihood(tmp_path / "ws.json", [tmp_path])
