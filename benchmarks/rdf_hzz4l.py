"""The hzz4l selection in ROOT's RDataFrame, df103-style, single-threaded.

Modelled on ROOT's tutorial ``df103_NanoAODHiggsAnalysis``: a chain of ``Filter``/``Define``
strings per channel with the helper functions declared to Cling, all three channels booked on
one ``RDataFrame`` so that a single event loop fills them. It replicates ``analyses/hzz4l.py``
exactly (the selection reference): the Z pairing compares floating-point masses (hzz4l's fix of
df103's ``int`` best mass), four-vectors and sip3d are computed in double (df103 uses float for
sip3d and ``PtEtaPhiMVector`` sums stored as float), and a pair search that finds nothing fails
at the DeltaR step. No ``EnableImplicitMT``: one thread.

Timing: RDataFrame logs (``RDFLogChannel`` at info level) how long its just-in-time compilation
and its event loop took; :func:`run_file` captures and parses those lines, so the harness can
report the event loop apart from the JIT.
"""

from __future__ import annotations

import os
import re
import tempfile

import ROOT

__all__ = ["run_file"]

CHANNELS = ("4mu", "4e", "2e2mu")

_HELPERS = r"""
namespace lumiflow_bench {
using ROOT::RVecF;
using ROOT::RVecI;
using ROOT::RVecD;
using Pairs = ROOT::RVec<ROOT::RVec<std::size_t>>;
constexpr double kZMass = 91.2;

struct P4 { double px, py, pz, e; };

inline P4 p4(double pt, double eta, double phi, double mass) {
    const double pz = pt * std::sinh(eta);
    const double p2 = pt * pt + pz * pz;
    const double m2 = mass >= 0.0 ? mass * mass : -mass * mass;
    const double e2 = p2 + m2;
    return {pt * std::cos(phi), pt * std::sin(phi), pz, e2 > 0.0 ? std::sqrt(e2) : 0.0};
}

inline double mass(double px, double py, double pz, double e) {
    const double m2 = e * e - px * px - py * py - pz * pz;
    return m2 >= 0.0 ? std::sqrt(m2) : -std::sqrt(-m2);
}

inline double delta_r(double eta1, double eta2, double phi1, double phi2) {
    double dphi = phi2 - phi1;
    if (!(std::abs(dphi) < 2.0 * M_PI)) dphi = std::fmod(dphi, 2.0 * M_PI);
    if (dphi < -M_PI) dphi += 2.0 * M_PI;
    else if (dphi > M_PI) dphi -= 2.0 * M_PI;
    const double deta = eta1 - eta2;
    return std::sqrt(deta * deta + dphi * dphi);
}

bool good_tracks(const RVecF &dxy, const RVecF &dxy_err, const RVecF &dz, const RVecF &dz_err) {
    for (std::size_t i = 0; i < dxy.size(); i++) {
        const double x = dxy[i], z = dz[i], xe = dxy_err[i], ze = dz_err[i];
        const double sip3d = std::sqrt(x * x + z * z) / std::sqrt(xe * xe + ze * ze);
        if (!(sip3d < 4.0 && std::abs(x) < 0.5 && std::abs(z) < 1.0)) return false;
    }
    return true;
}

// df103's reco_zz_to_4l, with the best mass kept as a double (hzz4l's fix).
Pairs reco_zz_to_4l(const RVecF &pt, const RVecF &eta, const RVecF &phi, const RVecF &m, const RVecI &charge) {
    Pairs idx(2);
    const auto cmb = ROOT::VecOps::Combinations(pt, 2);
    double best_mass = -1.0;
    std::size_t best_i1 = 0, best_i2 = 0;
    for (std::size_t k = 0; k < cmb[0].size(); k++) {
        const auto i1 = cmb[0][k], i2 = cmb[1][k];
        if (charge[i1] != charge[i2]) {
            const P4 a = p4(pt[i1], eta[i1], phi[i1], m[i1]), b = p4(pt[i2], eta[i2], phi[i2], m[i2]);
            const double pair = mass(a.px + b.px, a.py + b.py, a.pz + b.pz, a.e + b.e);
            if (std::abs(kZMass - pair) < std::abs(kZMass - best_mass)) {
                best_mass = pair;
                best_i1 = i1;
                best_i2 = i2;
            }
        }
    }
    idx[0] = {best_i1, best_i2};
    for (std::size_t i = 0; i < 4; i++)
        if (i != best_i1 && i != best_i2) idx[1].push_back(i);
    return idx;
}

bool filter_z_dr(const Pairs &idx, const RVecF &eta, const RVecF &phi) {
    if (idx[0][0] == idx[0][1]) return false;  // no pair found: df103's (0, 0) fails DeltaR
    for (std::size_t i = 0; i < 2; i++) {
        const auto i1 = idx[i][0], i2 = idx[i][1];
        if (delta_r(eta[i1], eta[i2], phi[i1], phi[i2]) < 0.02) return false;
    }
    return true;
}

inline double pair_mass(std::size_t i1, std::size_t i2,
                        const RVecF &pt, const RVecF &eta, const RVecF &phi, const RVecF &m) {
    const P4 a = p4(pt[i1], eta[i1], phi[i1], m[i1]), b = p4(pt[i2], eta[i2], phi[i2], m[i2]);
    return mass(a.px + b.px, a.py + b.py, a.pz + b.pz, a.e + b.e);
}

// {Z1, Z2}: Z1 the mass closer to 91.2, the second one on a tie (df103's order).
RVecD order_z(double m_a, double m_b) {
    if (std::abs(m_a - kZMass) < std::abs(m_b - kZMass)) return {m_a, m_b};
    return {m_b, m_a};
}

RVecD z_masses_4l(const Pairs &idx, const RVecF &pt, const RVecF &eta, const RVecF &phi, const RVecF &m) {
    return order_z(pair_mass(idx[0][0], idx[0][1], pt, eta, phi, m), pair_mass(idx[1][0], idx[1][1], pt, eta, phi, m));
}

double higgs_mass_4l(const RVecF &pt, const RVecF &eta, const RVecF &phi, const RVecF &m) {
    double px = 0, py = 0, pz = 0, e = 0;
    for (std::size_t i = 0; i < 4; i++) {
        const P4 v = p4(pt[i], eta[i], phi[i], m[i]);
        px += v.px; py += v.py; pz += v.pz; e += v.e;
    }
    return mass(px, py, pz, e);
}

bool pt_cuts(const RVecF &mu_pt, const RVecF &el_pt) {
    const auto mu = ROOT::VecOps::Reverse(ROOT::VecOps::Sort(mu_pt));
    if (mu[0] > 20 && mu[1] > 10) return true;
    const auto el = ROOT::VecOps::Reverse(ROOT::VecOps::Sort(el_pt));
    return el[0] > 20 && el[1] > 10;
}

bool dr_cuts(const RVecF &mu_eta, const RVecF &mu_phi, const RVecF &el_eta, const RVecF &el_phi) {
    return !(delta_r(mu_eta[0], mu_eta[1], mu_phi[0], mu_phi[1]) < 0.02) &&
           !(delta_r(el_eta[0], el_eta[1], el_phi[0], el_phi[1]) < 0.02);
}

RVecD z_masses_2el2mu(const RVecF &el_pt, const RVecF &el_eta, const RVecF &el_phi, const RVecF &el_m,
                      const RVecF &mu_pt, const RVecF &mu_eta, const RVecF &mu_phi, const RVecF &mu_m) {
    return order_z(pair_mass(0, 1, mu_pt, mu_eta, mu_phi, mu_m), pair_mass(0, 1, el_pt, el_eta, el_phi, el_m));
}

double higgs_mass_2el2mu(const RVecF &el_pt, const RVecF &el_eta, const RVecF &el_phi, const RVecF &el_m,
                         const RVecF &mu_pt, const RVecF &mu_eta, const RVecF &mu_phi, const RVecF &mu_m) {
    const P4 m1 = p4(mu_pt[0], mu_eta[0], mu_phi[0], mu_m[0]), m2 = p4(mu_pt[1], mu_eta[1], mu_phi[1], mu_m[1]);
    const P4 e1 = p4(el_pt[0], el_eta[0], el_phi[0], el_m[0]), e2 = p4(el_pt[1], el_eta[1], el_phi[1], el_m[1]);
    return mass(m1.px + m2.px + e1.px + e2.px, m1.py + m2.py + e1.py + e2.py,
                m1.pz + m2.pz + e1.pz + e2.pz, m1.e + m2.e + e1.e + e2.e);
}
}  // namespace lumiflow_bench
"""

_declared = False


def _declare() -> None:
    global _declared
    if not _declared:
        if not ROOT.gInterpreter.Declare(_HELPERS):
            raise RuntimeError("Cling refused the df103 helper functions")
        _declared = True


def _four_lepton(df, lep: str, iso: str, pt_min: float, eta_max: float):
    kin = f"{lep}_pt, {lep}_eta, {lep}_phi, {lep}_mass"
    return (
        df.Filter(f"n{lep} >= 4", f"{lep}: >=4")
        .Filter(f"All(abs({lep}_{iso}) < 0.40)", "isolation")
        .Filter(f"All({lep}_pt > {pt_min}) && All(abs({lep}_eta) < {eta_max})", "kinematics")
        .Filter(f"lumiflow_bench::good_tracks({lep}_dxy, {lep}_dxyErr, {lep}_dz, {lep}_dzErr)", "track")
        .Filter(f"n{lep} == 4 && Sum({lep}_charge == 1) == 2 && Sum({lep}_charge == -1) == 2", "2+ 2-")
        .Define("Z_idx", f"lumiflow_bench::reco_zz_to_4l({kin}, {lep}_charge)")
        .Filter(f"lumiflow_bench::filter_z_dr(Z_idx, {lep}_eta, {lep}_phi)", "dR")
        .Define("Z_mass", f"lumiflow_bench::z_masses_4l(Z_idx, {kin})")
        .Filter("Z_mass[0] > 40 && Z_mass[0] < 120", "Z1 mass")
        .Filter("Z_mass[1] > 12 && Z_mass[1] < 120", "Z2 mass")
        .Define("H_mass", f"lumiflow_bench::higgs_mass_4l({kin})")
    )


def _two_el_two_mu(df):
    kin = "Electron_pt, Electron_eta, Electron_phi, Electron_mass, Muon_pt, Muon_eta, Muon_phi, Muon_mass"
    return (
        df.Filter("nElectron >= 2 && nMuon >= 2", "2e2mu: >=2 electrons, >=2 muons")
        .Filter("All(abs(Electron_eta) < 2.5) && All(abs(Muon_eta) < 2.4)", "eta")
        .Filter("lumiflow_bench::pt_cuts(Muon_pt, Electron_pt)", "pt")
        .Filter("lumiflow_bench::dr_cuts(Muon_eta, Muon_phi, Electron_eta, Electron_phi)", "dR")
        .Filter("All(abs(Electron_pfRelIso03_all) < 0.40) && All(abs(Muon_pfRelIso04_all) < 0.40)", "isolation")
        .Filter("lumiflow_bench::good_tracks(Electron_dxy, Electron_dxyErr, Electron_dz, Electron_dzErr)", "el track")
        .Filter("lumiflow_bench::good_tracks(Muon_dxy, Muon_dxyErr, Muon_dz, Muon_dzErr)", "mu track")
        .Filter("Sum(Electron_charge) == 0 && Sum(Muon_charge) == 0", "charge")
        .Define("Z_mass", f"lumiflow_bench::z_masses_2el2mu({kin})")
        .Filter("Z_mass[0] > 40 && Z_mass[0] < 120", "Z1 mass")
        .Filter("Z_mass[1] > 12 && Z_mass[1] < 120", "Z2 mass")
        .Define("H_mass", f"lumiflow_bench::higgs_mass_2el2mu({kin})")
    )


_JIT = re.compile(r"Just-in-time compilation phase completed(?: in ([0-9.eE+-]+) seconds| in less than 1ms)")
_LOOP = re.compile(r"Finished event loop number \d+ \(([0-9.eE+-]+)s CPU, ([0-9.eE+-]+)s elapsed\)")


def run_file(path: str, weight: float) -> dict:
    """Book all channels on one RDataFrame and run its event loop once.

    Returns the selected counts and m4l histograms per channel, plus ``jit_s``, ``loop_s`` and
    ``loop_cpu_s`` parsed from RDataFrame's own log.
    """
    _declare()
    verbosity = ROOT.ROOT.RLogScopedVerbosity(ROOT.ROOT.Detail.RDF.RDFLogChannel(), ROOT.ROOT.ELogLevel.kInfo)
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            df = ROOT.RDataFrame("Events", path).Define("weight", repr(float(weight)))
            nodes = {
                "4mu": _four_lepton(df, "Muon", "pfRelIso04_all", 5.0, 2.4),
                "4e": _four_lepton(df, "Electron", "pfRelIso03_all", 7.0, 2.5),
                "2e2mu": _two_el_two_mu(df),
            }
            counts = {c: node.Count() for c, node in nodes.items()}
            model = ("m4l", "", 36, 70.0, 180.0)
            hists = {c: node.Histo1D(model, "H_mass", "weight") for c, node in nodes.items()}
            selected = {c: int(counts[c].GetValue()) for c in CHANNELS}  # the first GetValue runs the loop
            contents = {c: [hists[c].GetBinContent(i) for i in range(38)] for c in CHANNELS}
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            del verbosity
        log.seek(0)
        text = log.read()
    loop = _LOOP.search(text)
    jit = _JIT.search(text)
    if loop is None:
        raise RuntimeError(f"no event-loop timing in RDataFrame's log:\n{text[-2000:]}")
    return {
        "selected": selected,
        "hist": contents,
        "jit_s": float(jit.group(1)) if jit and jit.group(1) else 0.0,
        "loop_s": float(loop.group(2)),
        "loop_cpu_s": float(loop.group(1)),
    }
