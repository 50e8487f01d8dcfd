"""A minimal test analysis: the mass of the first two muons when they have opposite charge."""

import awkward as ak
import hist
import numpy as np

import processor

name = "dimuon"
columns = ["nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"]
lumi_pb = 1000.0
templates = processor.Templates(histogram="mass")


def process(events, dataset):
    two = events[ak.num(events.Muon_pt) >= 2]
    mu = [
        {k: ak.to_numpy(two[f"Muon_{k}"][:, i]).astype(np.float64) for k in ("pt", "eta", "phi", "mass", "charge")}
        for i in (0, 1)
    ]
    opposite = mu[0]["charge"] != mu[1]["charge"]
    px = sum(m["pt"] * np.cos(m["phi"]) for m in mu)
    py = sum(m["pt"] * np.sin(m["phi"]) for m in mu)
    pz = sum(m["pt"] * np.sinh(m["eta"]) for m in mu)
    e = sum(np.sqrt((m["pt"] * np.cosh(m["eta"])) ** 2 + m["mass"] ** 2) for m in mu)
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0))[opposite]
    h = hist.Hist(hist.axis.Regular(60, 0, 120, name="mass"), storage=hist.storage.Weight())
    h.fill(mass, weight=dataset.weight)
    return processor.Output(
        hists={"mass": h}, cutflow={"all": len(events), ">=2 muons": len(two), "opposite charge": int(opposite.sum())}
    )
