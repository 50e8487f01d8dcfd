"""H -> ZZ* -> 4l on the CMS 2012 open data (8 TeV, 11.6 /fb), after ROOT's df103 tutorial.

This is the selection of ROOT's ``df103_NanoAODHiggsAnalysis`` tutorial (itself a simplified
version of the CMS open-data analysis, doi:10.7483/OPENDATA.CMS.JKB8.RR42), cut for cut, with
one fix (below). Three channels, each evaluated independently on every event:

4mu
    >= 4 muons; *all* muons |pfRelIso04_all| < 0.40, pt > 5, |eta| < 2.4, sip3d < 4,
    |dxy| < 0.5, |dz| < 1.0 (sip3d = sqrt(dxy^2 + dz^2) / sqrt(dxyErr^2 + dzErr^2)); then
    exactly 4 muons, two of charge +1 and two of charge -1.
4e
    the same with electrons: |pfRelIso03_all| < 0.40, pt > 7, |eta| < 2.5.
2e2mu
    >= 2 electrons and >= 2 muons; all electrons |eta| < 2.5 and all muons |eta| < 2.4; the two
    highest muon pts > 20 and > 10, or else the two highest electron pts > 20 and > 10;
    DeltaR >= 0.02 between the first two *stored* muons and between the first two stored
    electrons; all isolations < 0.40; sip3d/dxy/dz cuts on all electrons and all muons;
    Sum(Electron_charge) == 0 and Sum(Muon_charge) == 0. The Z candidates are (muon 0 + muon 1)
    and (electron 0 + electron 1), whatever their charges; Z1 is the one closer to 91.2 GeV.

For 4mu and 4e the first Z is the opposite-charge pair (in ``Combinations`` order (0,1), (0,2),
(0,3), (1,2), (1,3), (2,3); the first one wins a tie) with mass closest to 91.2 GeV, the second
Z the other two leptons; both pairs need DeltaR >= 0.02 (DeltaR as ROOT's, dphi wrapped into
[-pi, pi]). The two masses are then ordered by distance to 91.2 GeV. All channels: 40 < m(Z1) <
120 and 12 < m(Z2) < 120 GeV; m4l is the invariant mass of the four leptons (PtEtaPhiM vectors,
ROOT's convention for a negative mass: spacelike).

The fix: df103 keeps the best Z mass in ``auto best_mass = -1;``, an ``int``, so it compares the
distance of each new pair to 91.2 GeV with that of the *truncated* mass of the best pair so far
(a 91.9 GeV pair found first is kept over a later, closer 91.0 GeV pair, because 91.9 was stored
as 91). Here the comparison uses the floating-point masses. Like df103, the search starts from a
mass of -1: a pair is taken only if |91.2 - m| < 92.2 GeV; if none is (every pair heavier than
183.4 GeV), df103 is left with the pair (0, 0), whose DeltaR of 0 rejects the event at the
DeltaR step, and so is it here (such an event could never pass the Z1 mass cut anyway).
Everything is computed in float64; df103 stores Z masses and m4l as float32, which can only
matter for a value within float32 rounding of a cut.

An event can pass several channels (e.g. four good muons and two good electrons satisfy both
4mu and 2e2mu): df103 runs each channel's selection on every dataset, so such an event enters
several channel histograms, and it does here too.

Samples and weights: each MC event is weighted by xsec * lumi / nevents_generated * kfactor,
which the framework computes from the fileset metadata into ``dataset.weight`` (data: 1). The
trigger streams are restricted in the fileset: DoubleMuParked feeds 4mu and 2e2mu,
DoubleElectron feeds 4e (``channels`` metadata, checked with ``dataset.feeds``); MC feeds all.

Cutflow (unweighted event counts): "all", then for each channel "<channel>: trigger stream"
(all events if the dataset feeds the channel, else 0: the channel is then not evaluated) and one
entry per cut of ``STEPS[channel]``; the last one is the number of events filled.

Implementation: one fused Numba kernel per channel (4mu and 4e share the same-flavour kernel,
with their own thresholds) walks the events once, over the offsets and contents of the jagged
columns (``processor.jagged``), and returns per event the number of cuts passed (which gives
the cutflow and the pass flag), and the two Z masses and m4l of only the few events that get Z
candidates (``select`` spreads them over all events for callers that want that). No per-event
Python and no intermediate awkward arrays.
"""

from __future__ import annotations

import math

import awkward as ak
import hist
import numpy as np
from numba import njit

import processor
from processor.jagged import offsets_and_content

name = "hzz4l"

_LEPTON_FIELDS = ("pt", "eta", "phi", "mass", "charge", "iso", "dxy", "dxyErr", "dz", "dzErr")
_ISO = {"Muon": "pfRelIso04_all", "Electron": "pfRelIso03_all"}


def _branches(collection: str) -> list[str]:
    return [f"{collection}_{_ISO[collection] if f == 'iso' else f}" for f in _LEPTON_FIELDS]


columns = ["nMuon", *_branches("Muon"), "nElectron", *_branches("Electron")]

lumi_pb = 11580.0

templates = processor.Templates(
    histogram="m4l",
    channel_axis="channel",
    poi="mu",
    background_norm_uncertainty=0.10,
    lumi_uncertainty=0.026,
)

CHANNELS = ("4mu", "4e", "2e2mu")

#: Cut names per channel, in the order they are applied (df103's filters).
STEPS = {
    "4mu": (">=4 muons", "isolation", "kinematics", "track", "2+ 2-", "dR", "Z1 mass", "Z2 mass"),
    "4e": (">=4 electrons", "isolation", "kinematics", "track", "2+ 2-", "dR", "Z1 mass", "Z2 mass"),
    "2e2mu": (
        ">=2 electrons, >=2 muons",
        "eta",
        "pt",
        "dR",
        "isolation",
        "electron track",
        "muon track",
        "charge",
        "Z1 mass",
        "Z2 mass",
    ),
}

#: Per-collection lepton cuts: (pt threshold of its 4-lepton channel, |eta| threshold of all channels).
_LEPTON_CUTS = {"Muon": (5.0, 2.4), "Electron": (7.0, 2.5)}
#: The collection of each same-flavour channel.
_SAME_FLAVOUR = {"4mu": "Muon", "4e": "Electron"}

Z_MASS = 91.2
_ISO_MAX = 0.40
_SIP3D_MAX = 4.0
_DXY_MAX = 0.5
_DZ_MAX = 1.0
_DR_MIN = 0.02


def default_fileset():
    from processor.demo import ensure_demo_fileset

    return ensure_demo_fileset()


# ----------------------------------------------------------------------------------------------
# Kernels. Everything inside is float64; offsets are int64 (processor.jagged).


@njit(cache=True, inline="always")
def _p4(pt, eta, phi, mass):
    """(px, py, pz, E) of a PtEtaPhiM vector; a negative mass means M2 = -mass^2 (as ROOT).

    sinh(eta) is taken as (e^eta - e^-eta) / 2 from one ``exp``: libm's ``sinh`` costs as much
    as ``exp``, ``sin`` and ``cos`` together, and the four-vectors are most of the kernels'
    time. The two give pz's that differ by a few parts in 1e16 of the lepton's momentum, far
    below anything a cut can see (on the 1M-event benchmark file every event passes the same
    cuts and fills the same bin).
    """
    pt = np.float64(pt)
    eta = np.float64(eta)
    phi = np.float64(phi)
    mass = np.float64(mass)
    exp_eta = math.exp(eta)
    pz = pt * (0.5 * (exp_eta - 1.0 / exp_eta))
    p2 = pt * pt + pz * pz  # = (pt cosh(eta))^2
    m2 = mass * mass if mass >= 0.0 else -mass * mass
    e2 = p2 + m2
    e = math.sqrt(e2) if e2 > 0.0 else 0.0
    return pt * math.cos(phi), pt * math.sin(phi), pz, e


@njit(cache=True, inline="always")
def _mass(px, py, pz, e):
    m2 = e * e - px * px - py * py - pz * pz
    return math.sqrt(m2) if m2 >= 0.0 else -math.sqrt(-m2)


@njit(cache=True, inline="always")
def _pair_mass(p, i, j):
    """Invariant mass of leptons i and j of the (px, py, pz, E) rows of p."""
    return _mass(p[i, 0] + p[j, 0], p[i, 1] + p[j, 1], p[i, 2] + p[j, 2], p[i, 3] + p[j, 3])


@njit(cache=True, inline="always")
def _delta_r(eta1, eta2, phi1, phi2):
    """ROOT::VecOps::DeltaR: dphi = fmod(phi2 - phi1, 2 pi) wrapped into [-pi, pi]."""
    dphi = np.float64(phi2) - np.float64(phi1)
    if not abs(dphi) < 2.0 * math.pi:  # fmod is the identity below 2 pi (and the usual case)
        dphi = np.fmod(dphi, 2.0 * math.pi)
    if dphi < -math.pi:
        dphi += 2.0 * math.pi
    elif dphi > math.pi:
        dphi -= 2.0 * math.pi
    deta = np.float64(eta1) - np.float64(eta2)
    return math.sqrt(deta * deta + dphi * dphi)


# Per-lepton quality bits, computed once per collection by a flat loop over all leptons (no
# per-event branches, so it vectorises); the event loops then AND the bits of their leptons.
_ISO_OK = 1  # |iso| < 0.40
_ETA_OK = 2  # |eta| < the collection's limit
_PT_OK = 4  # pt > the collection's 4-lepton threshold
_TRACK_OK = 8  # sip3d < 4, |dxy| < 0.5, |dz| < 1.0
_ALL_OK = _ISO_OK | _ETA_OK | _PT_OK | _TRACK_OK


@njit(cache=True, error_model="numpy")
def _lepton_flags(pt, eta, iso, dxy, dxy_err, dz, dz_err, pt_min, eta_max):
    """The quality bits of every lepton of a collection (a comparison with NaN fails, as in df103)."""
    flags = np.empty(pt.shape[0], np.uint8)
    for j in range(pt.shape[0]):
        x = np.float64(dxy[j])
        z = np.float64(dz[j])
        xe = np.float64(dxy_err[j])
        ze = np.float64(dz_err[j])
        sip3d = math.sqrt(x * x + z * z) / math.sqrt(xe * xe + ze * ze)
        track = sip3d < _SIP3D_MAX and abs(x) < _DXY_MAX and abs(z) < _DZ_MAX
        flags[j] = (
            (abs(np.float64(iso[j])) < _ISO_MAX) * _ISO_OK
            | (abs(np.float64(eta[j])) < eta_max) * _ETA_OK
            | (np.float64(pt[j]) > pt_min) * _PT_OK
            | track * _TRACK_OK
        )
    return flags


@njit(cache=True, inline="always")
def _common_flags(flags, b, e):
    """The bits set for every lepton in [b, e): All(cut) for each cut at once."""
    acc = np.uint8(_ALL_OK)
    for j in range(b, e):
        acc &= flags[j]
    return acc


@njit(cache=True, inline="always")
def _z_candidates(m_a, m_b):
    """(Z1, Z2, cuts passed): Z1 is the mass closer to 91.2 (``m_b`` on a tie, as df103), then
    40 < Z1 < 120 and 12 < Z2 < 120 in that order (0, 1 or 2 of these cuts passed)."""
    if abs(m_a - Z_MASS) < abs(m_b - Z_MASS):
        z1, z2 = m_a, m_b
    else:
        z1, z2 = m_b, m_a
    if not (z1 > 40.0 and z1 < 120.0):
        return z1, z2, 0
    if not (z2 > 12.0 and z2 < 120.0):
        return z1, z2, 1
    return z1, z2, 2


@njit(cache=True, inline="always")
def _compact_outputs(n):
    """The kernels' outputs: per event the number of cuts passed (``stage``), and for the events
    that got Z candidates only, in event order: their index, (Z1, Z2) and m4l (NaN unless
    every cut passed).

    The per-candidate arrays are allocated for ``n`` but only their first entries are written
    (and returned): most events never get that far, and untouched memory costs nothing.
    """
    return np.empty(n, np.int8), np.empty(n, np.int64), np.empty((n, 2)), np.empty(n)


@njit(cache=True, error_model="numpy")
def _four_lepton_kernel(off, pt, eta, phi, mass, charge, flags):
    """4mu / 4e: cuts passed (0..8) and Z candidates, see :func:`_compact_outputs` (Z candidates after dR)."""
    n = off.shape[0] - 1
    stage, z_events, z_mass, m4l = _compact_outputs(n)
    k = 0
    p = np.empty((4, 4))  # scratch: (px, py, pz, E) of the four leptons of one event
    for ev in range(n):
        b = off[ev]
        e = off[ev + 1]
        if e - b < 4:
            stage[ev] = 0
            continue
        common = _common_flags(flags, b, e)
        if not common & _ISO_OK:
            stage[ev] = 1
            continue
        if not (common & _PT_OK and common & _ETA_OK):
            stage[ev] = 2
            continue
        if not common & _TRACK_OK:
            stage[ev] = 3
            continue
        n_pos = 0
        n_neg = 0
        for j in range(b, e):
            n_pos += charge[j] == 1
            n_neg += charge[j] == -1
        if not (e - b == 4 and n_pos == 2 and n_neg == 2):
            stage[ev] = 4
            continue
        # The four momenta, once: (px, py, pz, E) per lepton.
        for i in range(4):
            p[i, 0], p[i, 1], p[i, 2], p[i, 3] = _p4(pt[b + i], eta[b + i], phi[b + i], mass[b + i])
        # First Z: the opposite-charge pair closest to the Z mass (float comparison: the fix).
        best_mass = -1.0
        best_1 = 0
        best_2 = 0
        for i1 in range(4):
            for i2 in range(i1 + 1, 4):
                if charge[b + i1] != charge[b + i2]:
                    m = _pair_mass(p, i1, i2)
                    if abs(Z_MASS - m) < abs(Z_MASS - best_mass):
                        best_mass = m
                        best_1 = i1
                        best_2 = i2
        if best_1 == best_2:  # no pair beat the initial -1: df103's pair (0, 0) fails DeltaR
            stage[ev] = 5
            continue
        other_1 = -1
        other_2 = -1
        for i in range(4):
            if i != best_1 and i != best_2:
                if other_1 < 0:
                    other_1 = i
                else:
                    other_2 = i
        a1 = b + best_1
        a2 = b + best_2
        c1 = b + other_1
        c2 = b + other_2
        if (
            _delta_r(eta[a1], eta[a2], phi[a1], phi[a2]) < _DR_MIN
            or _delta_r(eta[c1], eta[c2], phi[c1], phi[c2]) < _DR_MIN
        ):
            stage[ev] = 5
            continue
        z_events[k] = ev
        z_mass[k, 0], z_mass[k, 1], in_window = _z_candidates(best_mass, _pair_mass(p, other_1, other_2))
        m4l[k] = np.nan
        k += 1
        stage[ev] = 6 + in_window
        if in_window < 2:
            continue
        m4l[k - 1] = _mass(
            p[0, 0] + p[1, 0] + p[2, 0] + p[3, 0],
            p[0, 1] + p[1, 1] + p[2, 1] + p[3, 1],
            p[0, 2] + p[1, 2] + p[2, 2] + p[3, 2],
            p[0, 3] + p[1, 3] + p[2, 3] + p[3, 3],
        )
    return stage, z_events[:k], z_mass[:k], m4l[:k]


@njit(cache=True, inline="always")
def _top_two(values, b, e):
    """The first two entries of Reverse(Sort(values)) for one event (needs e - b >= 2)."""
    first = -np.inf
    second = -np.inf
    for j in range(b, e):
        v = np.float64(values[j])
        if v > first:
            second = first
            first = v
        elif v > second:
            second = v
    return first, second


@njit(cache=True, error_model="numpy")
def _two_el_two_mu_kernel(
    el_off, el_pt, el_eta, el_phi, el_mass, el_charge, el_flags,
    mu_off, mu_pt, mu_eta, mu_phi, mu_mass, mu_charge, mu_flags,
):  # fmt: skip
    """2e2mu: cuts passed (0..10) and Z candidates, see :func:`_compact_outputs` (Z candidates after charge)."""
    n = mu_off.shape[0] - 1
    stage, z_events, z_mass, m4l = _compact_outputs(n)
    k = 0
    for ev in range(n):
        eb = el_off[ev]
        ee = el_off[ev + 1]
        mb = mu_off[ev]
        me = mu_off[ev + 1]
        if not (ee - eb >= 2 and me - mb >= 2):
            stage[ev] = 0
            continue
        el_common = _common_flags(el_flags, eb, ee)
        mu_common = _common_flags(mu_flags, mb, me)
        if not (el_common & _ETA_OK and mu_common & _ETA_OK):
            stage[ev] = 1
            continue
        mu_1, mu_2 = _top_two(mu_pt, mb, me)
        pt_ok = mu_1 > 20.0 and mu_2 > 10.0
        if not pt_ok:
            el_1, el_2 = _top_two(el_pt, eb, ee)
            pt_ok = el_1 > 20.0 and el_2 > 10.0
        if not pt_ok:
            stage[ev] = 2
            continue
        mu_dr = _delta_r(mu_eta[mb], mu_eta[mb + 1], mu_phi[mb], mu_phi[mb + 1])
        el_dr = _delta_r(el_eta[eb], el_eta[eb + 1], el_phi[eb], el_phi[eb + 1])
        if mu_dr < _DR_MIN or el_dr < _DR_MIN:
            stage[ev] = 3
            continue
        if not (el_common & _ISO_OK and mu_common & _ISO_OK):
            stage[ev] = 4
            continue
        if not el_common & _TRACK_OK:
            stage[ev] = 5
            continue
        if not mu_common & _TRACK_OK:
            stage[ev] = 6
            continue
        el_q = 0
        for j in range(eb, ee):
            el_q += np.int64(el_charge[j])
        mu_q = 0
        for j in range(mb, me):
            mu_q += np.int64(mu_charge[j])
        if not (el_q == 0 and mu_q == 0):
            stage[ev] = 7
            continue
        m1x, m1y, m1z, m1e = _p4(mu_pt[mb], mu_eta[mb], mu_phi[mb], mu_mass[mb])
        m2x, m2y, m2z, m2e = _p4(mu_pt[mb + 1], mu_eta[mb + 1], mu_phi[mb + 1], mu_mass[mb + 1])
        e1x, e1y, e1z, e1e = _p4(el_pt[eb], el_eta[eb], el_phi[eb], el_mass[eb])
        e2x, e2y, e2z, e2e = _p4(el_pt[eb + 1], el_eta[eb + 1], el_phi[eb + 1], el_mass[eb + 1])
        mu_z = _mass(m1x + m2x, m1y + m2y, m1z + m2z, m1e + m2e)
        el_z = _mass(e1x + e2x, e1y + e2y, e1z + e2z, e1e + e2e)
        z_events[k] = ev
        z_mass[k, 0], z_mass[k, 1], in_window = _z_candidates(mu_z, el_z)
        m4l[k] = np.nan
        k += 1
        stage[ev] = 8 + in_window
        if in_window < 2:
            continue
        m4l[k - 1] = _mass(m1x + m2x + e1x + e2x, m1y + m2y + e1y + e2y, m1z + m2z + e1z + e2z, m1e + m2e + e1e + e2e)
    return stage, z_events[:k], z_mass[:k], m4l[:k]


# ----------------------------------------------------------------------------------------------
# Driving the kernels.


@njit(cache=True)
def _equal(a, b):
    """Whether two int64 arrays are equal (branch-free loop: memory-bound, vectorised)."""
    if a.shape[0] != b.shape[0]:
        return False
    acc = np.int64(0)
    for i in range(a.shape[0]):
        acc |= a[i] ^ b[i]
    return acc == 0


@njit(cache=True)
def _counts_match(counts, offsets):
    """Whether a counter branch (e.g. uint32 nMuon) agrees with the offsets, compared in int64."""
    if counts.shape[0] != offsets.shape[0] - 1:
        return False
    acc = np.int64(0)
    for i in range(counts.shape[0]):
        acc |= np.int64(counts[i]) ^ (offsets[i + 1] - offsets[i])
    return acc == 0


def _collection(events, collection: str) -> tuple[np.ndarray, ...]:
    """(offsets, pt, eta, phi, mass, charge, quality bits) of one lepton collection, whose
    branches are checked to share one set of offsets."""
    branches = _branches(collection)
    offsets, first = offsets_and_content(events[branches[0]])
    contents = [first]
    for branch in branches[1:]:
        other_offsets, content = offsets_and_content(events[branch])
        if not _equal(other_offsets, offsets):
            raise ValueError(f"{branch} and {branches[0]} have different numbers of entries per event")
        contents.append(content)
    counter = f"n{collection}"
    if counter in events.fields:
        counts = np.ascontiguousarray(ak.to_numpy(events[counter]))
        if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or not _counts_match(counts, offsets):
            raise ValueError(f"{counter} disagrees with the lengths of {branches[0]}")
    pt, eta, phi, mass, charge, iso, dxy, dxy_err, dz, dz_err = contents
    flags = _lepton_flags(pt, eta, iso, dxy, dxy_err, dz, dz_err, *_LEPTON_CUTS[collection])
    return offsets, pt, eta, phi, mass, charge, flags


def _run(events, channels) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``{channel: (stage, z_events, z_mass, m4l)}`` as the kernels return them (:func:`_compact_outputs`)."""
    cache: dict[str, tuple[np.ndarray, ...]] = {}

    def leptons(collection: str) -> tuple[np.ndarray, ...]:
        if collection not in cache:
            cache[collection] = _collection(events, collection)
        return cache[collection]

    out = {}
    for channel in channels:
        if channel in _SAME_FLAVOUR:
            out[channel] = _four_lepton_kernel(*leptons(_SAME_FLAVOUR[channel]))
        elif channel == "2e2mu":
            out[channel] = _two_el_two_mu_kernel(*leptons("Electron"), *leptons("Muon"))
        else:
            raise ValueError(f"unknown channel {channel!r} (channels: {', '.join(CHANNELS)})")
    return out


def select(events, channels=CHANNELS) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run the selection of each channel in ``channels`` on ``events``.

    Returns ``{channel: (stage, z_mass, m4l)}``: per event the number of cuts of
    ``STEPS[channel]`` passed (int8; the event is selected when it equals
    ``len(STEPS[channel])``), the two Z masses (Z1 first; NaN if not reached) and m4l (NaN
    unless selected).
    """
    out = {}
    for channel, (stage, z_events, z_mass, m4l) in _run(events, channels).items():
        every_z_mass = np.full((len(stage), 2), np.nan)
        every_z_mass[z_events] = z_mass
        every_m4l = np.full(len(stage), np.nan)
        every_m4l[z_events] = m4l
        out[channel] = (stage, every_z_mass, every_m4l)
    return out


def _histogram() -> hist.Hist:
    return hist.Hist(
        hist.axis.StrCategory(list(CHANNELS), name="channel", growth=False),
        hist.axis.Regular(36, 70, 180, name="m4l", label=r"$m_{4\ell}$ [GeV]"),
        storage=hist.storage.Weight(),
        name="m4l",
    )


def process(events, dataset) -> processor.Output:
    """Fill m4l per channel with ``dataset.weight``; cutflow: "all", then per channel the
    trigger-stream step (all events if the dataset feeds the channel, else 0) and each cut."""
    n = len(events)
    h = _histogram()
    cutflow = {"all": n}
    fed = [channel for channel in CHANNELS if dataset.feeds(channel)]
    results = _run(events, fed)
    for channel in CHANNELS:
        steps = STEPS[channel]
        if channel not in results:
            cutflow[f"{channel}: trigger stream"] = 0
            cutflow.update({f"{channel}: {step}": 0 for step in steps})
            continue
        stage, z_events, _, m4l = results[channel]
        # reached[k]: events that passed at least k cuts.
        reached = np.cumsum(np.bincount(stage, minlength=len(steps) + 1)[::-1])[::-1]
        cutflow[f"{channel}: trigger stream"] = n
        cutflow.update({f"{channel}: {step}": int(reached[k]) for k, step in enumerate(steps, 1)})
        h.fill(channel=channel, m4l=m4l[stage[z_events] == len(steps)], weight=dataset.weight)
    return processor.Output(hists={"m4l": h}, cutflow=cutflow)
