"""Write the ROOT-made TTrees that tests/test_baskets.py reads: ``python write.py [DIR]`` (needs ROOT).

ROOT, not uproot, writes them, so that the basket decoder is checked on what ROOT itself puts
in a file: for each compression (none, ZLIB, LZMA, LZ4, ZSTD), one file with clusters of 1,000
entries (``auto_flush``) and one with small baskets that end at different entries per branch.
They are committed (about 0.6 MB) because the test install has no ROOT (`pip install root`,
the bench extra, has). Contents depend only on the seed; ROOT stamps dates and UUIDs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

EVENTS = 2200
ALGORITHMS = {"none": 0, "ZLIB": 1, "LZMA": 2, "LZ4": 4, "ZSTD": 5}
LAYOUTS = {"clusters": (1000, 0), "small-baskets": (0, 3000)}  # (auto_flush, basket size in bytes)


def write(path: Path, algorithm: int, auto_flush: int, basket_size: int) -> None:
    import ROOT

    f = ROOT.TFile(str(path), "RECREATE", "", algorithm * 100 + (5 if algorithm else 0))
    t = ROOT.TTree("Events", "Events")
    n, run, flag = np.zeros(1, np.uint32), np.zeros(1, np.uint32), np.zeros(1, np.bool_)
    pt, charge, weight = np.zeros(16, np.float32), np.zeros(16, np.int32), np.zeros(1, np.float64)
    t.Branch("nMuon", n, "nMuon/i")
    t.Branch("Muon_pt", pt, "Muon_pt[nMuon]/F")
    t.Branch("Muon_charge", charge, "Muon_charge[nMuon]/I")
    t.Branch("run", run, "run/i")
    t.Branch("weight", weight, "weight/D")
    t.Branch("flag", flag, "flag/O")
    t.SetAutoFlush(auto_flush)
    if basket_size:
        t.SetBasketSize("*", basket_size)
    rng = np.random.default_rng(1)
    for i in range(EVENTS):
        k = rng.integers(0, 7)
        n[0], run[0], weight[0], flag[0] = k, i // 100, rng.normal(), i % 3 == 0
        pt[:k], charge[:k] = rng.exponential(20, k), rng.choice([-1, 1], k)
        t.Fill()
    f.Write()
    f.Close()


def main(directory: Path) -> None:
    for name, algorithm in ALGORITHMS.items():
        for layout, (auto_flush, basket_size) in LAYOUTS.items():
            write(directory / f"{name}-{layout}.root", algorithm, auto_flush, basket_size)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
