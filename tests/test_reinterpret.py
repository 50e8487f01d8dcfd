"""`lumiflow reinterpret`: a new signal (the demo H->4l at another Higgs mass) against a finished run.

The check is a direct, full run with the new signal in place of the old one: its workspace and
its CLs (computed here with plain pyhf) must be what the reinterpretation found, while the
reinterpretation processed the new signal's files only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf
import pytest
from conftest import HZZ4L
from threadpoolctl import threadpool_limits

import processor
from processor import demo
from processor.cli import main
from processor.executors.local import LocalExecutor
from processor.reinterpret import reinterpret


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The default demo set, a signal at 130 GeV, and the standard run over the demo set (its outputs).

    Full-size MC (the default 50k events per dataset): smaller templates leave bins with data and
    no prediction, where no fit converges.
    """
    root = tmp_path_factory.mktemp("reinterpret")
    fileset = demo.ensure_demo_fileset()
    signal = demo.generate_signal(root / "m130", 130.0, events=demo.DEFAULT_EVENTS, files_per_dataset=2, seed=99)
    processor.run(HZZ4L, fileset, executor=LocalExecutor(), output=root / "standard")
    return root, fileset, signal


def _pyhf_cls(spec: dict) -> tuple[float, list[float]]:
    """CLs at mu = 1 with plain pyhf, settings of `pyhf cls`."""
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    workspace = pyhf.Workspace(spec)
    model = workspace.model(
        modifier_settings={"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
    )
    with threadpool_limits(limits=1, user_api="blas"):  # as Lumiflow fits: the last digits depend on it
        observed, expected = pyhf.infer.hypotest(
            1.0, workspace.data(model), model, test_stat="qtilde", return_expected_set=True
        )
    return float(observed), [float(x) for x in expected]


def _with_new_signal(fileset: Path, signal: Path, out: Path) -> Path:
    """The demo fileset with its signal dataset replaced by the new one (absolute paths)."""
    merged = {}
    for source in (fileset, signal):
        for name, dataset in json.loads(source.read_text()).items():
            if source == fileset and dataset["metadata"]["role"] == "signal":
                continue
            files = {str(source.parent / f): tree for f, tree in dataset["files"].items()}
            merged[name] = {**dataset, "files": files}
    out.write_text(json.dumps(merged))
    return out


def test_reinterpretation_equals_a_full_run_with_the_new_signal(runs):
    root, fileset, signal = runs
    outcome = reinterpret(HZZ4L, signal, root / "standard", executor=LocalExecutor(), output=root / "m130-out")
    # only the new signal's files were processed
    signal_files = sorted(str(signal.parent / f) for d in json.loads(signal.read_text()).values() for f in d["files"])
    assert sorted(r.path for r in outcome.result.files) == signal_files

    direct = processor.run(
        HZZ4L, _with_new_signal(fileset, signal, root / "direct.json"), executor=LocalExecutor(), output=root / "direct"
    )
    direct_spec = json.loads(direct.outputs["workspace"].read_text())
    assert outcome.workspace == direct_spec  # exact merges, same sample order: the same likelihood
    observed, expected = _pyhf_cls(direct_spec)
    np.testing.assert_allclose(outcome.cls["CLs_obs"], observed, rtol=1e-6, atol=0)
    np.testing.assert_allclose(outcome.cls["CLs_exp"], expected, rtol=1e-6, atol=0)

    # the new model is really another one: the 125 GeV signal of the standard run gives other CLs
    standard_observed, _ = _pyhf_cls(json.loads((root / "standard" / "workspace.json").read_text()))
    assert abs(standard_observed - outcome.cls["CLs_obs"]) > 1e-3
    written = json.loads((root / "m130-out" / "cls.json").read_text())
    assert written["CLs_obs"] == outcome.cls["CLs_obs"] and written["test_poi"] == 1.0
    assert (root / "m130-out" / "histograms.root").is_file()


def test_cli_reinterpret_prints_the_new_models_cls(runs, tmp_path, capsys):
    root, _, signal = runs
    status = main(
        ["reinterpret", str(HZZ4L), "--signal", str(signal), "--previous", str(root / "standard")]
        + ["--executor", "local", "--no-progress", "--output", str(tmp_path / "out")]
    )
    assert status == 0
    cls = json.loads((tmp_path / "out" / "cls.json").read_text())
    printed = capsys.readouterr().out
    assert f"{cls['CLs_obs']:.4g}" in printed and "excluded at 95% CL" in printed


def test_refusals_say_why(runs, tmp_path):
    root, fileset, signal = runs
    with pytest.raises(processor.FilesetError, match=r"not role 'signal': \['Run2012B_DoubleElectron'"):
        reinterpret(HZZ4L, fileset, root / "standard", executor=LocalExecutor())
    with pytest.raises(FileNotFoundError, match="not a finished run's output directory: no workspace.json"):
        reinterpret(HZZ4L, signal, tmp_path, executor=LocalExecutor())
    other = tmp_path / "other"
    other.mkdir()
    (other / "workspace.json").write_text((root / "standard" / "workspace.json").read_text())
    report = json.loads((root / "standard" / "report.json").read_text())
    report["provenance"]["analysis_sha256"] = "0" * 64
    (other / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="made by another version of hzz4l"):
        reinterpret(HZZ4L, signal, other, executor=LocalExecutor())
