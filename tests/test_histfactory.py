"""Result -> pyhf workspace: modifiers as documented, schema-valid, fits recover a known signal."""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
from conftest import DIMUON

import processor
from processor.executors.local import LocalExecutor
from processor.histfactory import build_workspace, fit_workspace


@pytest.fixture(scope="module")
def result(muon_fileset):
    return processor.run(DIMUON, muon_fileset, executor=LocalExecutor(), write=False)


@pytest.fixture(scope="module")
def analysis():
    return processor.load_analysis(DIMUON)


def test_workspace_has_the_documented_modifiers(result, analysis):
    spec = build_workspace(result, analysis.templates, "dimuon")
    [channel] = spec["channels"]
    samples = {s["name"]: s for s in channel["samples"]}
    assert set(samples) == {"signal", "bkg"}
    mods = {s: {m["type"]: m for m in samples[s]["modifiers"]} for s in samples}
    assert mods["signal"]["normfactor"]["name"] == "mu" and "normsys" not in mods["signal"]
    assert mods["bkg"]["normsys"]["data"] == {"hi": 1.1, "lo": 0.9} and "normfactor" not in mods["bkg"]
    for s, h in (("signal", result.samples["mass"]["signal"]), ("bkg", result.samples["mass"]["bkg"])):
        assert samples[s]["data"] == h.values().tolist()
        assert mods[s]["staterror"]["data"] == np.sqrt(h.variances()).tolist()
        assert mods[s]["lumi"]["name"] == "lumi"
    assert spec["observations"][0]["data"] == result.samples["mass"]["data"].values().tolist()
    lumi = next(p for p in spec["measurements"][0]["config"]["parameters"] if p["name"] == "lumi")
    assert lumi["sigmas"] == [0.026] and lumi["auxdata"] == [1.0]
    assert pyhf.Workspace(spec).model().config.poi_name == "mu"


def test_fit_recovers_the_injected_signal_strength(result, analysis):
    """On Asimov data built from the templates with mu = 1.7, the fit returns 1.7."""
    spec = build_workspace(result, analysis.templates, "dimuon")
    model = pyhf.Workspace(spec).model()
    pars = np.array(model.config.suggested_init())
    pars[model.config.poi_index] = 1.7
    spec["observations"][0]["data"] = model.expected_actualdata(pars).tolist()
    fit = fit_workspace(spec)
    assert fit.mu == pytest.approx(1.7, abs=1e-3)
    assert 0 < fit.mu_uncertainty < 1.7
    assert fit.significance_observed > fit.significance_expected > 0  # more signal than expected
    assert len(fit.cls_expected) == 5 and list(fit.cls_expected) == sorted(fit.cls_expected)


def test_workspace_warns_about_data_where_nothing_is_predicted(result, analysis):
    import copy

    result = copy.deepcopy(result)
    del result.samples["mass"]["bkg"]
    result.samples["mass"]["signal"].view(flow=True).value[1:4] = 0.0  # bins 0, 1, 2 predict nothing
    data = result.samples["mass"]["data"].values()
    expected = [i for i in range(3) if data[i] > 0]
    assert expected  # the data populate the emptied bins
    with pytest.warns(UserWarning, match=rf"channel 'mass': bins \[{', '.join(map(str, expected))}\] have data but"):
        build_workspace(result, analysis.templates, "dimuon")


def test_a_model_needs_a_signal(result, analysis):
    import copy

    result = copy.deepcopy(result)
    del result.samples["mass"]["signal"]
    with pytest.raises(ValueError, match="no dataset with role 'signal'"):
        build_workspace(result, analysis.templates, "dimuon")
