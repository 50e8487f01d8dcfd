"""The embedded default data: a small simulated H->ZZ*->4l data set in the CMS 2012 NanoAOD schema.

``lumiflow`` must run out of the box, without network access and without downloading gigabytes
of CMS open data, and it must still show physics: a Higgs peak at 125 GeV over the ZZ continuum, with
pseudo-data that fluctuates around the prediction. This module *simulates* such a data set from
first principles -- resonance line shapes, two-body phase space, Lorentz boosts, detector
smearing and lepton identification variables -- and writes it exactly like the real files
(ZSTD-compressed ``TTree`` named ``Events`` with ``nMuon``/``Muon_*``/``nElectron``/``Electron_*``
branches), so the very same analysis code runs on the demo and on the real open data.

Samples (names mirror the CMS 2012 open-data datasets so one analysis handles both):

* ``SMHiggsToZZTo4L``: gg->H(125)->ZZ*->4l, each Z to ee or mumu with equal probability.
* ``ZZTo4mu``, ``ZZTo4e``, ``ZZTo2e2mu``: qq->ZZ(*)/Z->4l continuum with m(ll) > 4 GeV (like the
  POWHEG ``mll4`` samples): the single-Z->4l resonance near 91 GeV, Z gamma* in between and the
  ZZ threshold near 182 GeV.
* ``Run2012{B,C}_{DoubleMuParked,DoubleElectron}``: pseudo-data, see :func:`generate`.

Everything is vectorised numpy; a whole default set takes a few seconds to generate. The result
is deterministic for a given seed (array contents, not file bytes: ROOT headers carry UUIDs and
timestamps).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from .cache import cache_root

__all__ = [
    "DATA_STREAMS",
    "DEFAULT_EVENTS",
    "DEFAULT_SEED",
    "LUMI_PB",
    "MC_DATASETS",
    "default_cache_dir",
    "ensure_demo_fileset",
    "generate",
    "generate_signal",
    "write_events_file",
]

#: Simulated events per MC dataset in the default run. 50k events keep the MC statistical
#: uncertainty of the templates well below the Poisson uncertainty of the pseudo-data (after a
#: standard 4l selection ~12k signal MC events for ~19 expected; ~100 ZZ MC events per 3 GeV bin
#: near 125 GeV for ~4 expected, i.e. 10 % against 50 %), while the whole set is generated in
#: 2-3 s (one core) and weighs about 30 MB.
DEFAULT_EVENTS: int = 50_000
#: Default seed of :func:`generate` and :func:`ensure_demo_fileset`.
DEFAULT_SEED: int = 12345
#: Integrated luminosity (/pb) the pseudo-data correspond to: Run2012B (4.429/fb) + Run2012C
#: (7.152/fb), the luminosity of the CMS 2012 open-data H->4l example. The analysis normalises MC
#: to the same number.
LUMI_PB: float = 11580.0
#: Bumped whenever the generated content changes, so that cached sets are not silently reused.
GENERATOR_VERSION: int = 2

# --------------------------------------------------------------------------------------------
# physics constants (GeV)
_MZ, _GZ = 91.1876, 2.4952
_MH, _GH = 125.0, 0.00407
_M_MU, _M_E = 0.1056584, 0.000511
_MLL_MIN = 4.0  # generator cut m(ll) > 4 GeV on every lepton pair, as in the CMS ZZ samples

# Run ranges and luminosity share of the two 2012 eras (for plausible run numbers in the data).
_ERAS = {"Run2012B": (193833, 196531, 4.429), "Run2012C": (198022, 203742, 7.152)}

# final-state codes
_FS_4MU, _FS_4E, _FS_2E2MU = 0, 1, 2


@dataclass(frozen=True)
class _MCDataset:
    process: str  # "higgs" or "zz"
    final_state: str | None  # None: each Z decays to ee or mumu with equal probability
    xsec_pb: float
    kfactor: float
    role: str
    sample: str
    label: str
    higgs_mass: float = _MH  # for process "higgs"


#: The simulated datasets: cross-sections and k-factors of the CMS 2012 open-data samples.
MC_DATASETS: dict[str, _MCDataset] = {
    "SMHiggsToZZTo4L": _MCDataset("higgs", None, 0.0065, 1.0, "signal", "signal", "$m_H$ = 125 GeV"),
    "ZZTo4mu": _MCDataset("zz", "4mu", 0.077, 1.386, "background", "ZZ", "ZZ"),
    "ZZTo4e": _MCDataset("zz", "4e", 0.077, 1.386, "background", "ZZ", "ZZ"),
    "ZZTo2e2mu": _MCDataset("zz", "2e2mu", 0.18, 1.386, "background", "ZZ", "ZZ"),
}

#: Pseudo-data datasets: (era, trigger stream, analysis channels the stream feeds). As in CMS, a
#: 2e2mu event is taken from the DoubleMu stream only, so no event is counted twice.
DATA_STREAMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "Run2012B_DoubleMuParked": ("Run2012B", "DoubleMuParked", ("4mu", "2e2mu")),
    "Run2012C_DoubleMuParked": ("Run2012C", "DoubleMuParked", ("4mu", "2e2mu")),
    "Run2012B_DoubleElectron": ("Run2012B", "DoubleElectron", ("4e",)),
    "Run2012C_DoubleElectron": ("Run2012C", "DoubleElectron", ("4e",)),
}

# Mean number of Z->ll + non-prompt-lepton ("Z+X") events per Z flavour in the data streams.
# They make the data look like data (most recorded events fail the 4-lepton selection); their
# extra leptons are never isolated (relIso >= 0.5), so they cannot pass any sensible 4l
# selection and the MC prediction, which does not model them, stays unbiased.
_ZX_EVENTS_PER_FLAVOUR = 5000.0

_COMPRESSION: dict[str, Callable[[], object]] = {
    # ZSTD(5) is ROOT's own recommended ZSTD setting ("505"): about LZMA-like size at several
    # times the (de)compression speed; level > 5 costs write time for ~1 % size.
    "ZSTD": lambda: uproot.ZSTD(5),
    # LZ4(4) is ROOT's "404", the fastest to read; files ~1.5x larger.
    "LZ4": lambda: uproot.LZ4(4),
    # ZLIB(1) is ROOT's historical default ("101"): readable by every ROOT/uproot version.
    "ZLIB": lambda: uproot.ZLIB(1),
}

_LEPTON_FIELDS = ("pt", "eta", "phi", "mass", "charge", "iso", "dxy", "dxyErr", "dz", "dzErr")


# --------------------------------------------------------------------------------------------
# kinematics helpers (float64 throughout; 4-vectors are (..., 4) arrays of E, px, py, pz)


def _rbw(rng: np.random.Generator, n: int, m0: float, width: float, lo, hi) -> np.ndarray:
    """Relativistic Breit-Wigner masses in [lo, hi]: s = m^2 is Cauchy(m0^2, m0*width)."""
    a = np.arctan((np.square(lo) - m0 * m0) / (m0 * width))
    b = np.arctan((np.square(hi) - m0 * m0) / (m0 * width))
    return np.sqrt(m0 * m0 + m0 * width * np.tan(rng.uniform(a, b, n)))


def _rbw_density(m, m0: float, width: float):
    """Unnormalised density in m of :func:`_rbw` (the 2m Jacobian included)."""
    return m * m0 * width / (np.square(m * m - m0 * m0) + (m0 * width) ** 2)


def _kallen(x, y, z):
    return x * x + y * y + z * z - 2 * (x * y + x * z + y * z)


def _pstar(m, m1, m2):
    """Momentum of either daughter in the rest frame of a parent of mass m decaying to m1 + m2."""
    return np.sqrt(np.maximum(_kallen(m * m, m1 * m1, m2 * m2), 0.0)) / (2 * m)


def _isotropic(rng: np.random.Generator, n: int) -> np.ndarray:
    cos_t = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    sin_t = np.sqrt(1.0 - cos_t * cos_t)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=-1)


def _boost(p4: np.ndarray, parent: np.ndarray, parent_mass: np.ndarray) -> np.ndarray:
    """Boost p4, given in the rest frame of ``parent``, to the frame where ``parent`` is given.

    gamma = E/M and gamma*beta = p/M are taken from the parent directly: no 1 - beta^2
    cancellation for fast parents.
    """
    gamma = parent[..., 0] / parent_mass
    gb = parent[..., 1:] / parent_mass[..., None]  # gamma * beta
    p3 = p4[..., 1:]
    gbp = np.sum(gb * p3, axis=-1)  # gamma * (beta . p)
    energy = gamma * p4[..., 0] + gbp
    # p' = p + [gamma E + (gamma - 1)(beta.p)/beta^2] beta; with (gamma beta)^2 = (gamma-1)(gamma+1)
    # that is p + gb [E + (gb.p)/(gamma + 1)], finite for beta -> 0
    p3_new = p3 + gb * (p4[..., 0] + gbp / (gamma + 1.0))[..., None]
    return np.concatenate([energy[..., None], p3_new], axis=-1)


def _two_body(rng: np.random.Generator, parent: np.ndarray, m: np.ndarray, m1, m2):
    """Isotropic two-body decay of ``parent`` (mass m) into masses m1, m2; returns both 4-vectors."""
    n = len(m)
    p = _pstar(m, m1, m2)
    direction = _isotropic(rng, n) * p[:, None]
    d1 = np.concatenate([np.sqrt(p * p + np.square(m1))[:, None], direction], axis=-1)
    d2 = np.concatenate([np.sqrt(p * p + np.square(m2))[:, None], -direction], axis=-1)
    return _boost(d1, parent, m), _boost(d2, parent, m)


def _system(rng: np.random.Generator, m: np.ndarray, pt_shape: float, pt_scale: float, y_sigma: float):
    """Lab 4-vector of a produced system: Gamma-distributed pT, Gaussian rapidity, uniform phi."""
    n = len(m)
    pt = rng.gamma(pt_shape, pt_scale, n)
    y = rng.normal(0.0, y_sigma, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mt = np.sqrt(m * m + pt * pt)
    return np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], axis=-1)


def _conditional_accept(rng: np.random.Generator, n: int, propose: Callable, max_rounds: int = 1000):
    """Accept-reject per event: ``propose(idx)`` returns (values tuple, acceptance probability).

    Rejected events are re-proposed until all are accepted, so each event's conditional density
    is exactly (proposal x probability), whatever the conditioning variables are.
    """
    todo = np.arange(n)
    if n == 0:
        return tuple(np.asarray(v, dtype=np.float64) for v in propose(todo)[0])
    out = None
    for _ in range(max_rounds):
        if len(todo) == 0:
            return out
        values, prob = propose(todo)
        if out is None:
            out = tuple(np.empty(n, dtype=np.float64) for _ in values)
        ok = rng.random(len(todo)) < prob
        for o, v in zip(out, values, strict=True):
            o[todo[ok]] = v[ok]
        todo = todo[~ok]
    raise RuntimeError("accept-reject did not converge")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# pair masses


def _higgs_weight(ma, mb, mh):
    """H -> Z(ma) Z(mb) off-shell matrix element x phase space, without the Z propagators.

    Gamma ~ sqrt(lambda) (lambda + 12 xa xb) with x = m^2/mH^2, lambda = lambda(1, xa, xb): the
    textbook H -> VV* width. The sqrt(lambda) phase-space factor is what keeps ma + mb < mH and
    pushes the off-shell Z* to ~ 20-35 GeV.
    """
    xa = np.square(ma / mh)
    xb = np.square(mb / mh)
    lam = _kallen(1.0, xa, xb)
    ok = (lam > 0) & (ma + mb < mh)
    lam = np.where(ok, lam, 0.0)
    return np.sqrt(lam) * (lam + 12 * xa * xb)


def _higgs_masses(rng: np.random.Generator, mh: np.ndarray):
    """(ma >= mb) pair masses of H -> ZZ*: density BW(ma) BW(mb) x :func:`_higgs_weight`.

    Proposal: ma from the Z line shape, mb uniform below min(ma, mH - ma); the weight
    BW(mb) * range * matrix element is bounded numerically on a grid (it is smooth).
    """
    n = len(mh)
    m_top = float(np.max(mh))
    grid_a = np.linspace(_MLL_MIN, m_top - _MLL_MIN, 2001)[:, None]
    grid_t = np.linspace(0.0, 1.0, 401)[None, :]
    span = np.minimum(grid_a, m_top - grid_a) - _MLL_MIN
    grid_b = _MLL_MIN + grid_t * span
    w_max = 1.2 * float(np.max(_rbw_density(grid_b, _MZ, _GZ) * span * _higgs_weight(grid_a, grid_b, m_top)))

    def propose(idx):
        m = mh[idx]
        ma = _rbw(rng, len(idx), _MZ, _GZ, _MLL_MIN, m - _MLL_MIN)
        span = np.maximum(np.minimum(ma, m - ma) - _MLL_MIN, 0.0)
        mb = _MLL_MIN + rng.random(len(idx)) * span
        w = _rbw_density(mb, _MZ, _GZ) * span * _higgs_weight(ma, mb, m)
        return (ma, mb), w / w_max

    return _conditional_accept(rng, n, propose)


def _z_lineshape(rng: np.random.Generator, n: int, on_shell: float = 0.8) -> np.ndarray:
    """Mass of a Z/gamma* -> ll pair in qq -> ZZ: Z Breit-Wigner plus a gamma* tail ~ dm/m."""
    m = _rbw(rng, n, _MZ, _GZ, _MLL_MIN, 150.0)
    gamma_star = rng.random(n) >= on_shell
    k = int(gamma_star.sum())
    m[gamma_star] = _MLL_MIN * (120.0 / _MLL_MIN) ** rng.random(k)  # log-uniform: photon propagator
    return m


def _zz_system_mass(rng: np.random.Generator, ma: np.ndarray, mb: np.ndarray, power: float = 4.5):
    """qq -> ZZ invariant mass given the pair masses: parton luminosity x threshold factor.

    Proposal: Pareto(m^-power) above ma + mb; acceptance sqrt(lambda(1, xa, xb)) (= 2p*/m <= 1)
    gives the threshold rise (at 182 GeV for two on-shell Z), and exp(-(m - threshold)/600 GeV)
    the faster fall of the quark luminosity at high mass.
    """

    def propose(idx):
        threshold = ma[idx] + mb[idx]
        m = threshold * rng.random(len(idx)) ** (-1.0 / (power - 1.0))
        return (m,), 2.0 * _pstar(m, ma[idx], mb[idx]) / m * np.exp(-(m - threshold) / 600.0)

    return _conditional_accept(rng, len(ma), propose)[0]


def _z4l_masses(rng: np.random.Generator, m: np.ndarray):
    """Z -> 4l: Z -> l l*, l* -> l gamma*(-> l'l'). ma: the ll pair, mb: the gamma* pair.

    Density (ma/m) x (1/mb) x sqrt(lambda): the photon propagator makes mb soft (log-uniform),
    the ll pair takes most of the rest, within two-body phase space.
    """

    def propose(idx):
        mm = m[idx]
        k = len(idx)
        mb = _MLL_MIN * ((mm - _MLL_MIN) / _MLL_MIN) ** rng.random(k)
        span = mm - mb - _MLL_MIN
        ma = _MLL_MIN + rng.random(k) * span
        prob = (ma / mm) * (2 * _pstar(mm, ma, mb) / mm) * span / (mm - 2 * _MLL_MIN)
        return (ma, mb), prob

    return _conditional_accept(rng, len(m), propose)


# --------------------------------------------------------------------------------------------
# event generation: generator-level leptons


@dataclass
class _Truth:
    """Four generator-level leptons per event: pairs (0, 1) from Z_a and (2, 3) from Z_b."""

    p4: np.ndarray  # (n, 4 leptons, 4)
    is_muon: np.ndarray  # (n, 4) bool
    charge: np.ndarray  # (n, 4) int
    final_state: np.ndarray  # (n,) final-state code


def _zz_decay_chain(rng, system, m_sys, ma, mb, a_is_mu, b_is_mu) -> _Truth:
    """system -> Z_a(ma) Z_b(mb), Z -> l- l+; every step isotropic in its parent's rest frame."""
    za, zb = _two_body(rng, system, m_sys, ma, mb)
    leptons = []
    for z, mz, is_mu in ((za, ma, a_is_mu), (zb, mb, b_is_mu)):
        ml = np.where(is_mu, _M_MU, _M_E)
        leptons.extend(_two_body(rng, z, mz, ml, ml))
    p4 = np.stack(leptons, axis=1)
    is_muon = np.stack([a_is_mu, a_is_mu, b_is_mu, b_is_mu], axis=1)
    charge = np.broadcast_to(np.array([-1, 1, -1, 1]), is_muon.shape).copy()
    final_state = np.where(a_is_mu & b_is_mu, _FS_4MU, np.where(~a_is_mu & ~b_is_mu, _FS_4E, _FS_2E2MU))
    return _Truth(p4, is_muon, charge, final_state)


def _flavours(rng: np.random.Generator, n: int, final_state: str | None):
    if final_state is None:
        return rng.random(n) < 0.5, rng.random(n) < 0.5
    if final_state == "4mu":
        return np.ones(n, bool), np.ones(n, bool)
    if final_state == "4e":
        return np.zeros(n, bool), np.zeros(n, bool)
    a_is_mu = rng.random(n) < 0.5
    return a_is_mu, ~a_is_mu


def _gen_higgs(rng: np.random.Generator, n: int, final_state: str | None, mass: float = _MH) -> _Truth:
    """gg -> H -> ZZ* -> 4l (H of 125 GeV unless ``mass`` says otherwise; the width stays the SM 125 GeV one)."""
    mh = _rbw(rng, n, mass, _GH, mass - 1.0, mass + 1.0)
    ma, mb = _higgs_masses(rng, mh)
    system = _system(rng, mh, pt_shape=1.6, pt_scale=12.0, y_sigma=1.7)
    a_is_mu, b_is_mu = _flavours(rng, n, final_state)
    return _zz_decay_chain(rng, system, mh, ma, mb, a_is_mu, b_is_mu)


#: Fraction of the qq -> 4l cross-section (m(ll) > 4 GeV) in the single-Z -> 4l resonance:
#: roughly a third (CMS measured ~0.1 pb for Z -> 4l at 8 TeV; the three ZZ samples add up to
#: 0.33 pb).
_Z4L_FRACTION = 0.3


def _gen_zz(rng: np.random.Generator, n: int, final_state: str | None) -> _Truth:
    """qq -> ZZ(*) / Z -> 4l continuum."""
    single_z = rng.random(n) < _Z4L_FRACTION
    k = int(single_z.sum())
    ma = np.empty(n)
    mb = np.empty(n)
    m_sys = np.empty(n)
    # single resonant Z -> 4l
    m_sys[single_z] = _rbw(rng, k, _MZ, _GZ, 60.0, 120.0)
    ma[single_z], mb[single_z] = _z4l_masses(rng, m_sys[single_z])
    # ZZ / Z gamma* continuum
    ma[~single_z] = _z_lineshape(rng, n - k)
    mb[~single_z] = _z_lineshape(rng, n - k)
    m_sys[~single_z] = _zz_system_mass(rng, ma[~single_z], mb[~single_z])
    system = np.empty((n, 4))
    system[single_z] = _system(rng, m_sys[single_z], pt_shape=1.5, pt_scale=8.0, y_sigma=1.9)
    system[~single_z] = _system(rng, m_sys[~single_z], pt_shape=2.0, pt_scale=15.0, y_sigma=1.9)
    a_is_mu, b_is_mu = _flavours(rng, n, final_state)
    return _zz_decay_chain(rng, system, m_sys, ma, mb, a_is_mu, b_is_mu)


# --------------------------------------------------------------------------------------------
# detector: smearing, reconstruction efficiency, identification variables


def _pt_eta_phi(p4: np.ndarray):
    px, py, pz = p4[..., 1], p4[..., 2], p4[..., 3]
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / pt), np.arctan2(py, px)


def _impact_parameters(rng, pt, eta, is_muon, spread_cm=None):
    """dxy, dxyErr, dz, dzErr (cm). Errors grow at low pT and high |eta|, electrons worse.

    Prompt leptons (``spread_cm`` None) scatter by their errors, so 3D significances are ~1;
    displaced ones (from heavy-flavour decays) scatter by ``spread_cm`` (dxy, dz).
    """
    shape = pt.shape
    base = np.where(is_muon, 0.0010, 0.0016)
    dxy_err = base * (1 + 0.25 * np.abs(eta)) * (1 + 8.0 / np.maximum(pt, 1.0)) * rng.lognormal(0, 0.25, shape)
    dz_err = dxy_err * (1.5 + 0.7 * np.abs(eta)) * rng.lognormal(0, 0.2, shape)
    if spread_cm is None:
        dxy = rng.normal(size=shape) * dxy_err
        dz = rng.normal(size=shape) * dz_err
    else:
        dxy = rng.normal(size=shape) * np.hypot(spread_cm[0], dxy_err)
        dz = rng.normal(size=shape) * np.hypot(spread_cm[1], dz_err)
    return dxy, dxy_err, dz, dz_err


def _reconstruct(rng: np.random.Generator, truth: _Truth) -> dict[str, np.ndarray]:
    """Generator leptons -> reconstructed prompt leptons, as an (n, 4) padded table + ``present``."""
    pt, eta, phi = _pt_eta_phi(truth.p4)
    mu = truth.is_muon
    shape = pt.shape
    # final-state radiation (muons) and bremsstrahlung (electrons) not recovered: low-side tail
    radiates = rng.random(shape) < np.where(mu, 0.05, 0.12)
    pt = pt * np.where(radiates, 1.0 - np.minimum(rng.exponential(0.04, shape), 0.6), 1.0)
    # pT resolution: muons 1-2 % (worse forward and at high pT), electrons 2-4 % (worse in endcaps)
    aeta = np.abs(eta)
    sigma_mu = 0.010 + 0.004 * np.minimum(aeta, 3.0) + 1.0e-4 * pt
    sigma_e = np.hypot(0.018, 0.09 / np.sqrt(np.maximum(pt, 1.0))) * np.where(aeta > 1.479, 1.4, 1.0)
    pt = pt * (1.0 + rng.normal(size=shape) * np.where(mu, sigma_mu, sigma_e))
    eta = eta + rng.normal(size=shape) * np.where(mu, 0.0005, 0.001)
    phi = np.mod(phi + rng.normal(size=shape) * np.where(mu, 0.0005, 0.001) + np.pi, 2 * np.pi) - np.pi
    # reconstruction: stored up to |eta| < 3 above NanoAOD thresholds, with a pT-dependent efficiency
    threshold = np.where(mu, 3.0, 5.0)
    eff = np.where(mu, 0.98, 0.95) * (1.0 - 0.6 * np.exp(-np.maximum(pt - threshold, 0.0) / np.where(mu, 3.0, 6.0)))
    present = (aeta < 3.0) & (pt > threshold) & (rng.random(shape) < eff)
    # isolation: prompt leptons are isolated; a few overlap with jets and are not
    iso = rng.exponential(0.05, shape)
    in_jet = rng.random(shape) < 0.03
    iso = np.where(in_jet, 0.05 + rng.exponential(0.6, shape), iso)
    dxy, dxy_err, dz, dz_err = _impact_parameters(rng, pt, eta, mu)
    # a few prompt leptons have badly measured tracks (e.g. a wrong hit): large significance
    bad_track = rng.random(shape) < 0.015
    dxy = np.where(bad_track, dxy * 8.0, dxy)
    dz = np.where(bad_track, dz * 8.0, dz)
    return {
        "present": present,
        "is_muon": mu,
        "pt": pt,
        "eta": eta,
        "phi": phi,
        "mass": np.where(mu, _M_MU, _M_E),
        "charge": truth.charge,
        "iso": iso,
        "dxy": dxy,
        "dxyErr": dxy_err,
        "dz": dz,
        "dzErr": dz_err,
    }


def _non_prompt(rng: np.random.Generator, n: int, present: np.ndarray, iso_min: float, iso_mean: float):
    """One non-prompt lepton column (heavy-flavour decays, fakes): soft, non-isolated, displaced."""
    shape = (n,)
    mu = rng.random(shape) < 0.5
    threshold = np.where(mu, 3.0, 5.0)
    pt = threshold + rng.exponential(6.0, shape)
    eta = rng.uniform(-2.8, 2.8, shape)
    dxy, dxy_err, dz, dz_err = _impact_parameters(rng, pt, eta, mu, spread_cm=(0.03, 0.04))
    return {
        "present": present,
        "is_muon": mu,
        "pt": pt,
        "eta": eta,
        "phi": rng.uniform(-np.pi, np.pi, shape),
        "mass": np.where(mu, _M_MU, _M_E),
        "charge": np.where(rng.random(shape) < 0.5, -1, 1),
        "iso": iso_min + rng.exponential(iso_mean, shape),
        "dxy": dxy,
        "dxyErr": dxy_err,
        "dz": dz,
        "dzErr": dz_err,
    }


def _hstack(columns: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join lepton tables (n, k_i) along the lepton axis."""
    return {
        key: np.concatenate([c[key] if c[key].ndim == 2 else c[key][:, None] for c in columns], axis=1)
        for key in columns[0]
    }


#: Fraction of events with an extra non-prompt lepton (from the underlying event / jets).
_EXTRA_LEPTON_FRACTION = 0.07


def _simulate(rng: np.random.Generator, spec: _MCDataset, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """n events of ``spec``: (lepton table (n, 5), generator final-state code (n,))."""
    if spec.process == "higgs":
        truth = _gen_higgs(rng, n, spec.final_state, spec.higgs_mass)
    else:
        truth = _gen_zz(rng, n, spec.final_state)
    prompt = _reconstruct(rng, truth)
    extra = _non_prompt(rng, n, rng.random(n) < _EXTRA_LEPTON_FRACTION, iso_min=0.1, iso_mean=0.6)
    return _hstack([prompt, extra]), truth.final_state


def _simulate_zx(rng: np.random.Generator, n: int, z_is_mu: bool) -> dict[str, np.ndarray]:
    """Z -> ll plus one or two non-prompt leptons that are never isolated (data streams only)."""
    m = _rbw(rng, n, _MZ, _GZ, 60.0, 120.0)
    system = _system(rng, m, pt_shape=1.3, pt_scale=10.0, y_sigma=2.0)
    ml = np.full(n, _M_MU if z_is_mu else _M_E)
    l1, l2 = _two_body(rng, system, m, ml, ml)
    is_mu = np.full((n, 2), z_is_mu)
    charge = np.broadcast_to(np.array([-1, 1]), (n, 2)).copy()
    truth = _Truth(np.stack([l1, l2], axis=1), is_mu, charge, np.zeros(n, int))
    prompt = _reconstruct(rng, truth)
    second = rng.random(n) < 0.5
    fakes = [_non_prompt(rng, n, np.ones(n, bool), 0.5, 0.8), _non_prompt(rng, n, second, 0.5, 0.8)]
    return _hstack([prompt, *fakes])


# --------------------------------------------------------------------------------------------
# writing


def _rng(seed: int, *names: str | int) -> np.random.Generator:
    """Independent, reproducible stream per (seed, names): crc32 is stable across processes,
    unlike Python's salted ``hash``."""
    entropy = [int(seed)] + [zlib.crc32(x.encode()) if isinstance(x, str) else int(x) for x in names]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _flavour_records(table: dict[str, np.ndarray], muons: bool) -> ak.Array:
    """Jagged NanoAOD-like collection of one flavour, pT-ordered within each event."""
    selected = table["present"] & (table["is_muon"] == muons)
    order = np.argsort(np.where(selected, -table["pt"], np.inf), axis=1, kind="stable")
    keep = np.take_along_axis(selected, order, axis=1)
    counts = selected.sum(axis=1)
    iso_name = "pfRelIso04_all" if muons else "pfRelIso03_all"
    fields = {}
    for key in _LEPTON_FIELDS:
        dtype = np.int32 if key == "charge" else np.float32
        flat = np.take_along_axis(table[key], order, axis=1)[keep].astype(dtype)
        fields[iso_name if key == "iso" else key] = ak.unflatten(flat, counts)
    return ak.zip(fields)


def _event_branches(table: dict[str, np.ndarray], run, lumi, event) -> dict[str, np.ndarray | ak.Array]:
    return {
        "run": np.asarray(run, dtype=np.uint32),
        "luminosityBlock": np.asarray(lumi, dtype=np.uint32),
        "event": np.asarray(event, dtype=np.uint64),
        "Muon": _flavour_records(table, True),
        "Electron": _flavour_records(table, False),
    }


def _branch_types(branches: dict[str, np.ndarray | ak.Array]) -> dict[str, object]:
    return {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()}


def _write_file(path: Path, table: dict[str, np.ndarray], run, lumi, event, compression) -> None:
    branches = _event_branches(table, run, lumi, event)
    with uproot.recreate(path, compression=compression) as f:
        # Counters: NanoAOD's nMuon/nElectron are UInt_t, but uproot (5.7) always creates the
        # counter of a jagged branch as Int_t -- the dtype is hard-coded in
        # uproot/writing/_cascadetree.py, and a "nMuon": "uint32" branch declared up front is
        # replaced by that int32 counter. So the counters are int32 here; readers (uproot,
        # awkward, ROOT) treat them the same, and counts < 2^31 are identical in both types.
        tree = f.mktree("Events", _branch_types(branches))
        tree.extend(branches)


def _take(table: dict[str, np.ndarray], index) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in table.items()}


def _pad(table: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    n, k = table["pt"].shape
    if k == width:
        return table
    return {key: np.concatenate([v, np.zeros((n, width - k), dtype=v.dtype)], axis=1) for key, v in table.items()}


def _concat(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    width = max(t["pt"].shape[1] for t in tables)
    padded = [_pad(t, width) for t in tables]
    return {key: np.concatenate([t[key] for t in padded], axis=0) for key in padded[0]}


def _pseudo_data(seed: int) -> dict[str, dict[str, np.ndarray | dict]]:
    """Events of each data stream, drawn from signal + background at the analysis luminosity.

    Each process contributes Poisson(xsec x kfactor x lumi) events, simulated with the very same
    code as its MC sample (independent seed), so the expected data yield equals the MC prediction
    by construction and a signal-strength fit returns mu = 1 on average. Events go to the
    DoubleMuParked stream if their generated final state is 4mu or 2e2mu, to DoubleElectron if
    4e, and to Run2012B or Run2012C in proportion to the eras' luminosities (38 %/62 %).
    """
    rng = _rng(seed, "pseudo-data")
    per_stream: dict[str, list[dict[str, np.ndarray]]] = {"DoubleMuParked": [], "DoubleElectron": []}
    for name, spec in MC_DATASETS.items():
        n = int(rng.poisson(spec.xsec_pb * spec.kfactor * LUMI_PB))
        table, final_state = _simulate(_rng(seed, "pseudo-data", name), spec, n)
        to_mu = final_state != _FS_4E  # 4mu and 2e2mu: DoubleMu trigger; 4e: DoubleElectron
        per_stream["DoubleMuParked"].append(_take(table, to_mu))
        per_stream["DoubleElectron"].append(_take(table, ~to_mu))
    for stream, z_is_mu in (("DoubleMuParked", True), ("DoubleElectron", False)):
        n = int(rng.poisson(_ZX_EVENTS_PER_FLAVOUR))
        per_stream[stream].append(_simulate_zx(_rng(seed, "pseudo-data", "ZX", stream), n, z_is_mu))

    lumi_b = _ERAS["Run2012B"][2] / (_ERAS["Run2012B"][2] + _ERAS["Run2012C"][2])
    out = {}
    for stream, tables in per_stream.items():
        table = _concat(tables)
        # The stream records only events its dilepton trigger could fire on: at least two
        # reconstructed leptons of its flavour. Every 4mu/2e2mu (4e) candidate has two muons
        # (electrons), so the skim removes nothing a 4-lepton selection could keep.
        flavour = table["is_muon"] if stream == "DoubleMuParked" else ~table["is_muon"]
        table = _take(table, np.sum(table["present"] & flavour, axis=1) >= 2)
        n = len(table["pt"])
        srng = _rng(seed, "pseudo-data", "run", stream)
        in_b = srng.random(n) < lumi_b
        for era, mask in (("Run2012B", in_b), ("Run2012C", ~in_b)):
            first, last, _ = _ERAS[era]
            k = int(mask.sum())
            run = srng.integers(first, last + 1, k)
            lumi = srng.integers(1, 1500, k)
            event = srng.integers(1, 2**31, k)
            order = np.lexsort((event, lumi, run))  # as recorded: ordered by run and lumi section
            out[f"{era}_{stream}"] = {
                "table": _take(_take(table, mask), order),
                "run": run[order],
                "lumi": lumi[order],
                "event": event[order],
            }
    return out


def generate(
    out_dir: str | os.PathLike[str],
    *,
    events: int = DEFAULT_EVENTS,
    files_per_dataset: int = 4,
    seed: int = DEFAULT_SEED,
    compression: str = "ZSTD",
) -> Path:
    """Simulate the demo data set into ``out_dir``; returns the path of its ``fileset.json``.

    ``events`` is the number of simulated events per MC dataset, all of them written (before any
    selection) and recorded as ``nevents_generated``, so the MC weights come out right. The
    pseudo-data size does not depend on it: it is fixed by the cross-sections and the luminosity.
    Each dataset is split in ``files_per_dataset`` files, so that distributed runs have work items
    to spread. ``compression`` is ``"ZSTD"``, ``"LZ4"`` or ``"ZLIB"``.

    Array contents are a function of (``seed``, ``events``, ``files_per_dataset``) only: every file
    has its own random stream seeded from (seed, dataset name, file index).
    """
    if events < 1:
        raise ValueError("events must be >= 1")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if files_per_dataset < 1:
        raise ValueError("files_per_dataset must be >= 1")
    codec = _codec(compression)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fileset: dict[str, dict] = {}

    for name, spec in MC_DATASETS.items():
        fileset[name] = _write_mc(out, name, spec, events, files_per_dataset, seed, codec)

    streams = _pseudo_data(seed)
    for name, (_, _, channels) in DATA_STREAMS.items():
        stream = streams[name]
        n = len(stream["run"])
        chunks = np.array_split(np.arange(n), max(1, min(files_per_dataset, n)))
        files = {}
        for index, rows in enumerate(chunks):
            filename = f"{name}_{index}.root"
            table = _take(stream["table"], rows)
            _write_file(out / filename, table, stream["run"][rows], stream["lumi"][rows], stream["event"][rows], codec)
            files[filename] = "Events"
        metadata = {"role": "data", "is_data": True, "sample": "data", "channels": list(channels), "label": "Data"}
        fileset[name] = {"files": files, "metadata": metadata}

    return _write_fileset(out, fileset)


def generate_signal(
    out_dir: str | os.PathLike[str],
    mass: float,
    *,
    events: int = DEFAULT_EVENTS,
    files_per_dataset: int = 4,
    seed: int = DEFAULT_SEED,
    compression: str = "ZSTD",
) -> Path:
    """Simulate an alternative signal, gg -> H -> ZZ* -> 4l with a Higgs of ``mass`` GeV, into ``out_dir``.

    For reinterpretation (``lumiflow reinterpret``): a fileset whose only dataset,
    ``SMHiggsToZZTo4L_M<mass>``, has role ``signal``. It keeps the 125 GeV sample's cross-section
    and width, so the templates differ only by where the peak is. Same options as :func:`generate`;
    returns the path of its ``fileset.json``.
    """
    if not 100.0 <= mass <= 300.0:
        raise ValueError(f"the demo generator simulates Higgs masses of 100-300 GeV, not {mass}")
    if events < 1 or files_per_dataset < 1:
        raise ValueError("events and files_per_dataset must be >= 1")
    standard = MC_DATASETS["SMHiggsToZZTo4L"]
    spec = replace(standard, higgs_mass=float(mass), label=f"$m_H$ = {mass:g} GeV")
    name = f"SMHiggsToZZTo4L_M{mass:g}".replace(".", "p")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = _write_mc(out, name, spec, events, files_per_dataset, seed, _codec(compression))
    return _write_fileset(out, {name: dataset})


def _write_mc(
    out: Path, name: str, spec: _MCDataset, events: int, files_per_dataset: int, seed: int, codec: object
) -> dict:
    """Simulate MC dataset ``name`` into ``out`` in ``files_per_dataset`` files; its fileset entry."""
    n_files = min(files_per_dataset, events)
    sizes = [events // n_files + (i < events % n_files) for i in range(n_files)]
    files = {}
    first_event = 1
    for index, n in enumerate(sizes):
        table, _ = _simulate(_rng(seed, name, index), spec, n)
        filename = f"{name}_{index}.root"
        event = np.arange(first_event, first_event + n, dtype=np.uint64)
        first_event += n
        _write_file(out / filename, table, np.ones(n), 1 + (event - 1) // 1000, event, codec)
        files[filename] = "Events"
    metadata = {
        "role": spec.role,
        "is_data": False,
        "xsec_pb": spec.xsec_pb,
        "nevents_generated": events,
    }
    if spec.kfactor != 1.0:
        metadata["kfactor"] = spec.kfactor
    metadata.update({"sample": spec.sample, "label": spec.label})
    return {"files": files, "metadata": metadata}


def _write_fileset(out: Path, fileset: dict) -> Path:
    path = out / "fileset.json"
    tmp = out / f".fileset.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(fileset, indent=2) + "\n")
    os.replace(tmp, path)  # fileset.json appears only once every file it lists is complete
    return path


def write_events_file(
    path: str | os.PathLike[str],
    events: int,
    *,
    dataset: str = "SMHiggsToZZTo4L",
    seed: int = DEFAULT_SEED,
    compression: str = "ZSTD",
    events_per_basket: int = 100_000,
) -> Path:
    """Write one file of ``events`` simulated events of the MC dataset ``dataset`` to ``path``.

    For benchmarks, which need single large files (1M events) rather than a fileset. Events are
    simulated and written ``events_per_basket`` at a time, so memory stays bounded and every
    branch gets one basket per chunk, as a real file has many. Array contents depend only on
    (``dataset``, ``events``, ``seed``, ``events_per_basket``), not on ``compression``.
    """
    if events < 1 or events_per_basket < 1:
        raise ValueError("events and events_per_basket must be >= 1")
    spec = MC_DATASETS[dataset]
    path = Path(path)
    with uproot.recreate(path, compression=_codec(compression)) as f:
        tree = None
        for index, start in enumerate(range(0, events, events_per_basket)):
            n = min(events_per_basket, events - start)
            table, _ = _simulate(_rng(seed, dataset, "events-file", index), spec, n)
            event = np.arange(start + 1, start + n + 1, dtype=np.uint64)
            branches = _event_branches(table, np.ones(n), 1 + (event - 1) // 1000, event)
            if tree is None:
                tree = f.mktree("Events", _branch_types(branches))
            tree.extend(branches)
    return path


def _codec(compression: str) -> object:
    try:
        return _COMPRESSION[compression.upper()]()
    except KeyError:
        raise ValueError(f"compression must be one of {', '.join(_COMPRESSION)}, not {compression!r}") from None


# --------------------------------------------------------------------------------------------
# cache


def default_cache_dir(events: int = DEFAULT_EVENTS, seed: int = DEFAULT_SEED) -> Path:
    """Where :func:`ensure_demo_fileset` keeps the demo set for (events, seed).

    ``$LUMIFLOW_CACHE`` if set (lumiflow's own cache root), else ``$XDG_CACHE_HOME/lumiflow`` or
    ``~/.cache/lumiflow``; then ``demo-v<GENERATOR_VERSION>-<events>-<seed>``, so that a set made
    by another generator version or with other parameters is never reused by mistake.
    """
    return cache_root() / f"demo-v{GENERATOR_VERSION}-{int(events)}-{int(seed)}"


_STALE_TMP_S = 3600.0


def ensure_demo_fileset(events: int = DEFAULT_EVENTS, seed: int = DEFAULT_SEED) -> Path:
    """Path of the cached demo ``fileset.json``, generating it on first use.

    The set is built in a temporary sibling directory and renamed into place in one atomic step,
    so a crash never leaves a half-written set under the final name, and of two concurrent first
    runs one wins the rename and the other discards its copy. Prints nothing: the CLI reports.
    """
    final = default_cache_dir(events, seed)
    fileset = final / "fileset.json"
    if fileset.is_file():
        return fileset
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(final)
    if final.exists():
        # not made by us (we only ever rename complete sets here): move it aside, then rebuild
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.broken-", dir=final.parent))
        try:
            os.replace(final, aside / final.name)
        except OSError:
            pass
        shutil.rmtree(aside, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        generate(tmp, events=events, seed=seed)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any other
        try:
            os.rename(tmp, final)
        except OSError:
            if not fileset.is_file():  # lost a race to a concurrent run: its set is complete
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return fileset


def _remove_stale_tmp(final: Path) -> None:
    """Remove temporary directories left by crashed runs (older than an hour, so not in progress)."""
    now = time.time()
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.broken-*"):
        for path in final.parent.glob(pattern):
            try:
                if now - path.stat().st_mtime > _STALE_TMP_S:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
