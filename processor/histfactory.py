"""Turn a result into a HistFactory model (a pyhf JSON workspace), and fit it.

Each channel of the template histogram becomes a HistFactory channel; each fileset sample a
HistFactory sample. The signal is scaled by the parameter of interest (normfactor); every
background gets a log-normal normalisation uncertainty (normsys); every MC sample shares the
luminosity uncertainty (lumi) and a per-bin MC statistical uncertainty from the Weight storage
(staterror, Barlow-Beeston lite). Observations are the sum of the data datasets.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf
from scipy.stats import norm

from .analysis import Templates
from .result import Result

__all__ = ["FitResult", "build_workspace", "fit_workspace", "replace_signal", "template_samples"]


def build_workspace(result: Result, templates: Templates, measurement: str) -> dict[str, Any]:
    """A pyhf workspace specification (validated against pyhf's schema before it is returned)."""
    channels, observed = template_samples(result, templates)
    if not any(_is_signal(s, templates.poi) for samples in channels.values() for s in samples):
        raise ValueError("the fileset has no dataset with role 'signal': nothing to scale by the POI")
    if not observed:
        warnings.warn("no data datasets: observations are the expected (Asimov) yields", stacklevel=2)
        for channel, ch_samples in channels.items():
            observed[channel] = np.sum([s["data"] for s in ch_samples], axis=0)
    for channel, ch_samples in channels.items():
        predicted = np.sum([s["data"] for s in ch_samples], axis=0)
        empty = np.flatnonzero((predicted <= 0) & (np.asarray(observed[channel]) > 0))
        if empty.size:
            warnings.warn(
                f"channel {channel!r}: bins {empty.tolist()} have data but no predicted events; "
                "the likelihood is zero there and fits will fail (more MC, or coarser/narrower binning)",
                stacklevel=2,
            )
    spec = {
        "channels": [{"name": c, "samples": s} for c, s in channels.items()],
        "observations": [{"name": c, "data": np.asarray(observed[c], dtype=float).tolist()} for c in channels],
        "measurements": [
            {
                "name": measurement,
                "config": {
                    "poi": templates.poi,
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [templates.lumi_uncertainty],
                            "bounds": [
                                [max(0.0, 1 - 5 * templates.lumi_uncertainty), 1 + 5 * templates.lumi_uncertainty]
                            ],
                            "inits": [1.0],
                        },
                        {"name": templates.poi, "bounds": [[0.0, 10.0]], "inits": [1.0]},
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }
    pyhf.Workspace(spec)  # schema validation: raises on a malformed model
    return spec


def template_samples(
    result: Result, templates: Templates
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, np.ndarray]]:
    """The HistFactory samples of each channel (MC), and each channel's observed counts (data).

    The signal is scaled by the POI (normfactor); every background gets a log-normal
    normalisation uncertainty (normsys); all MC share the luminosity uncertainty and each
    channel's MC statistical uncertainty (staterror).
    """
    if templates.histogram not in result.samples:
        raise ValueError(f"no histogram {templates.histogram!r} in the result (is any file processed?)")
    channels: dict[str, list[dict[str, Any]]] = {}
    observed: dict[str, np.ndarray] = {}
    for sample, h in result.samples[templates.histogram].items():
        role = result.role_of(sample)
        for channel, h1 in templates.split(h):
            values, variances = h1.values(), h1.variances()
            if role == "data":
                observed[channel] = observed.get(channel, 0) + values
                continue
            modifiers: list[dict[str, Any]] = [
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": f"staterror_{channel}", "type": "staterror", "data": np.sqrt(variances).tolist()},
            ]
            if role == "signal":
                modifiers.insert(0, {"name": templates.poi, "type": "normfactor", "data": None})
            else:
                u = templates.background_norm_uncertainty
                modifiers.insert(0, {"name": f"{sample}_norm", "type": "normsys", "data": {"hi": 1 + u, "lo": 1 - u}})
            channels.setdefault(channel, []).append({"name": sample, "data": values.tolist(), "modifiers": modifiers})
    return channels, observed


def replace_signal(spec: dict[str, Any], signal: dict[str, list[dict[str, Any]]], poi: str) -> dict[str, Any]:
    """``spec`` with its signal samples (those scaled by ``poi``) replaced by ``signal``'s, channel by channel.

    Backgrounds, observations and measurements are kept as they are: this is how a workspace is
    reinterpreted for a new signal model without reprocessing anything else.
    """
    known = {c["name"]: len(c["samples"][0]["data"]) for c in spec["channels"]}
    extra = sorted(set(signal) - set(known))
    if extra:
        raise ValueError(
            f"the new signal has channels {extra} that the workspace lacks (it has {sorted(known)}): "
            "were both made with the same --combine-channels choice?"
        )
    channels = []
    for channel in spec["channels"]:
        kept = [s for s in channel["samples"] if not _is_signal(s, poi)]
        new = signal.get(channel["name"], [])
        for sample in new:
            if len(sample["data"]) != known[channel["name"]]:
                raise ValueError(
                    f"channel {channel['name']!r}: the new signal has {len(sample['data'])} bins, "
                    f"the workspace {known[channel['name']]}"
                )
        # in name order, as Result (and so build_workspace) orders samples: the same workspace as a full run
        channels.append({**channel, "samples": sorted(kept + new, key=lambda s: s["name"])})
    out = {**spec, "channels": channels}
    pyhf.Workspace(out)  # schema validation
    return out


def _is_signal(sample: dict[str, Any], poi: str) -> bool:
    return any(m["type"] == "normfactor" and m["name"] == poi for m in sample["modifiers"])


@dataclass(frozen=True)
class FitResult:
    mu: float
    mu_uncertainty: float
    cls_observed: float
    cls_expected: tuple[float, float, float, float, float]  # -2, -1, 0, +1, +2 sigma
    significance_observed: float
    significance_expected: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "mu": self.mu,
            "mu_uncertainty": self.mu_uncertainty,
            "cls_observed_mu1": self.cls_observed,
            "cls_expected_mu1": list(self.cls_expected),
            "significance_observed": self.significance_observed,
            "significance_expected": self.significance_expected,
        }


def fit_workspace(spec: dict[str, Any]) -> FitResult:
    """Best-fit POI (MINUIT/HESSE), CLs at POI=1 (qtilde) and the discovery significance (q0)."""
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0))
    workspace = pyhf.Workspace(spec)
    model = workspace.model()
    data = workspace.data(model)
    poi = model.config.poi_index
    pars, errors = pyhf.infer.mle.fit(data, model, return_uncertainties=True).T
    cls_obs, cls_exp = pyhf.infer.hypotest(1.0, data, model, test_stat="qtilde", return_expected_set=True)
    p0_obs, p0_exp = pyhf.infer.hypotest(0.0, data, model, test_stat="q0", return_expected=True)
    return FitResult(
        mu=float(pars[poi]),
        mu_uncertainty=float(errors[poi]),
        cls_observed=float(cls_obs),
        cls_expected=tuple(float(x) for x in cls_exp),
        significance_observed=_z(float(p0_obs)),
        significance_expected=_z(float(p0_exp)),
    )


def _z(p_value: float) -> float:
    return float(norm.isf(p_value)) if p_value > 0 else math.inf
