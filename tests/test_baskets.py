"""processor.baskets: local TTrees decoded straight into the final arrays, checked against uproot.

Whatever decodes them, the columns a reader hands out must be exactly what uproot's
``tree.arrays(columns)`` gives (values, dtypes, awkward layout) for every compression, for
whole files, ranges that start and stop inside baskets, and the task's steps; files written by
ROOT itself included. What the fast path does not handle must still be read, by uproot.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import HZZ4L

import processor
from processor.demo import write_events_file
from processor.source import InputError, open_columns
from processor.task import FileTask

HZZ4L_COLUMNS = list(processor.load_analysis(HZZ4L).columns)
#: the analysis' columns and the demo file's other branches: uint32, uint64, int32 counters
COLUMNS = [*HZZ4L_COLUMNS, "run", "luminosityBlock", "event"]
EVENTS = 3000
PER_BASKET = 1000
#: whole file, empty ranges, inside one basket, across basket boundaries, single entries
RANGES = [(0, 3000), (0, 0), (3000, 3000), (250, 750), (250, 2750), (999, 1001), (1000, 2000), (0, 1), (2999, 3000)]


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> dict[str, Path]:
    """The demo generator's file in each compression (written by uproot), 1,000 events per basket."""
    out = tmp_path_factory.mktemp("baskets")
    files = {
        c: write_events_file(out / f"{c}.root", EVENTS, compression=c, events_per_basket=PER_BASKET)
        for c in ("ZSTD", "LZ4", "ZLIB")
    }
    files["LZMA"] = _rewrite(files["ZSTD"], out / "lzma.root", uproot.LZMA(1))
    files["uncompressed"] = _rewrite(files["ZSTD"], out / "none.root", None)
    return files


def _rewrite(source: Path, path: Path, compression) -> Path:
    """``source``'s Events tree with another compression, basket by basket (uproot writes one per extend)."""
    tree = uproot.open(source)["Events"]
    with uproot.recreate(path, compression=compression) as f:
        out = None
        for chunk in tree.iterate(step_size=PER_BASKET, library="ak"):
            branches = {c: chunk[c] for c in ("run", "luminosityBlock", "event")}
            for collection in ("Muon", "Electron"):
                names = [c for c in chunk.fields if c.startswith(collection + "_")]
                branches[collection] = ak.zip({c.split("_", 1)[1]: chunk[c] for c in names})
            if out is None:
                out = f.mktree("Events", {k: v.type for k, v in branches.items()})
            out.extend(branches)
    return path


def _item(path: Path | str, start: int | None = None, stop: int | None = None) -> processor.WorkItem:
    return processor.WorkItem(index=0, dataset="d", url=str(path), entry_start=start, entry_stop=stop)


def _uproot(path: Path, columns: list[str], start: int, stop: int, tree: str = "Events") -> ak.Array:
    with uproot.open(path) as f:
        return f[tree].arrays(columns, entry_start=start, entry_stop=stop, library="ak")


def assert_same(ours: ak.Array, theirs: ak.Array) -> None:
    assert ours.fields == theirs.fields
    assert ours.layout.form == theirs.layout.form  # dtypes, offsets' index type, record layout
    assert str(ours.type) == str(theirs.type)
    assert ak.array_equal(ours, theirs, dtype_exact=True, equal_nan=True)


@pytest.mark.parametrize("compression", ["ZSTD", "LZ4", "ZLIB", "LZMA", "uncompressed"])
def test_baskets_equal_uproot_for_whole_files_and_ranges(demo_files, compression):
    path = demo_files[compression]
    if compression == "uncompressed":  # really stored without compression
        tree = uproot.open(path)["Events"]
        assert tree["Muon_pt"].compressed_bytes == tree["Muon_pt"].uncompressed_bytes
    with open_columns(_item(path), COLUMNS) as reader:
        assert reader.decoder == "baskets"
        for start, stop in RANGES:
            assert_same(reader.read(start, stop), _uproot(path, COLUMNS, start, stop))


def test_steps_of_a_work_item_that_starts_and_stops_inside_baskets(demo_files):
    path = demo_files["ZSTD"]
    with open_columns(_item(path, 333, 2_900), COLUMNS) as reader:
        steps = reader.steps(1.0)  # one cluster a step, cut at the item's ends
        assert steps == [(333, 1000), (1000, 2000), (2000, 2900)]
        parts = [reader.read(start, stop) for start, stop in steps]
    whole = _uproot(path, COLUMNS, 333, 2_900)
    for (start, stop), part in zip(steps, parts, strict=True):
        assert_same(part, whole[start - 333 : stop - 333])
    assert_same(ak.concatenate(parts), whole)


def test_jagged_columns_without_their_counter(demo_files):
    """The counter lays the contents out, so it is read along, but only what was asked for comes back."""
    path = demo_files["LZ4"]
    columns = ["Electron_eta", "Muon_pt", "Muon_charge"]
    with open_columns(_item(path), columns) as reader:
        assert reader.decoder == "baskets"
        for start, stop in RANGES:
            events = reader.read(start, stop)
            assert events.fields == columns
            assert_same(events, _uproot(path, columns, start, stop))


def test_bytes_read_are_the_baskets_of_the_columns_and_counters(demo_files):
    path = demo_files["ZSTD"]
    columns = ["Muon_pt", "event"]  # Muon_pt needs nMuon
    with open_columns(_item(path), columns) as reader:
        before = reader.bytes_read
        reader.read(0, EVENTS)
        fetched = reader.bytes_read - before
    tree = uproot.open(path)["Events"]
    assert fetched == sum(tree[c].compressed_bytes for c in ("Muon_pt", "event", "nMuon"))


def test_task_results_are_the_same_through_either_decoder(demo_files, tmp_path):
    """The same file as a local path (baskets) and as a file:// URL (uproot, through fsspec)."""
    path = demo_files["ZSTD"]
    analysis = processor.load_analysis(HZZ4L)
    with open_columns(_item(path.as_uri()), COLUMNS) as reader:
        assert reader.decoder == "uproot"
    info = processor.DatasetInfo(name="d", role="signal", sample="signal", is_data=False, weight=1.0)
    task = FileTask(analysis.ref(), {"d": info})
    local, remote = task(_item(path)), task(_item(path.as_uri()))
    assert local.files[0].ok and remote.files[0].ok
    assert local.cutflow == remote.cutflow
    assert local.hists["d"]["m4l"].to_hist() == remote.hists["d"]["m4l"].to_hist()


def test_real_nanoaod_file(shared_data):
    """A NanoAOD file written by CMS software (ROOT): baskets embedded in the branches, bools, bytes."""
    path = shared_data / "cms-opendata" / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
    tree = uproot.open(path)["Events"]
    columns = [
        name
        for name in tree.keys()
        if not tree[name].branches and str(tree[name].interpretation).startswith(("AsDtype(", "AsJagged(AsDtype("))
    ]
    assert len(columns) > 900
    kinds = {str(tree[c].interpretation) for c in columns}
    assert {"AsDtype('bool')", "AsJagged(AsDtype('uint8'))", "AsDtype('>u8')"} <= kinds
    with open_columns(_item(path), columns) as reader:
        assert reader.decoder == "baskets"
        for start, stop in [(0, tree.num_entries), (17, 150), (199, 200)]:
            assert_same(reader.read(start, stop), _uproot(path, columns, start, stop))


def test_tutorial_file_written_by_root_and_a_string_branch_that_falls_back(shared_data):
    path = shared_data / "tutorial" / "uproot-Zmumu.root"
    item = processor.WorkItem(index=0, dataset="d", url=str(path), treename="events")
    numbers = ["Run", "Event", "E1", "px1", "Q1", "M"]
    with open_columns(item, numbers) as reader:
        assert reader.decoder == "baskets"
        assert_same(reader.read(0, 2304), _uproot(path, numbers, 0, 2304, "events"))
    with open_columns(item, ["Type", *numbers]) as reader:
        assert reader.decoder == "uproot"  # strings: not decoded here
        assert_same(reader.read(5, 2000), _uproot(path, ["Type", *numbers], 5, 2000, "events"))


def test_rntuple_is_read_by_uproot(shared_data):
    path = shared_data / "cms-opendata" / "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
    with open_columns(_item(path), ["nMuon", "Muon_pt"]) as reader:
        assert reader.decoder == "uproot"


@pytest.mark.parametrize(
    "compression, reason", [("ZSTD", "does not decompress: "), ("LZ4", "does not decompress: LZ4 checksum mismatch")]
)
def test_damaged_basket_is_an_input_error_naming_basket_and_branch(demo_files, tmp_path, compression, reason):
    path = shutil.copy(demo_files[compression], tmp_path / "damaged.root")
    branch = uproot.open(path)["Events"]["Muon_charge"]  # compresses well: a compressed basket
    seek, key_length = int(branch.member("fBasketSeek")[1]), branch.basket(1).member("fKeylen")
    with open(path, "r+b") as f:  # after ROOT's 9-byte block header: ZSTD's frame header, LZ4's checksum
        f.seek(seek + key_length + 9)
        f.write(b"\xff" * 8)
    with open_columns(_item(path), COLUMNS) as reader:
        assert reader.decoder == "baskets"
        reader.read(0, PER_BASKET)  # basket 0 is intact
        with pytest.raises(InputError, match=f"file is damaged: basket 1 of branch 'Muon_charge' {reason}"):
            reader.read(0, EVENTS)


def test_counter_that_disagrees_with_the_baskets_is_an_input_error(demo_files, tmp_path):
    path = demo_files["uncompressed"]
    damaged = shutil.copy(path, tmp_path / "counter.root")
    counter = uproot.open(damaged)["Events"]["nMuon"]
    seek = int(counter.member("fBasketSeek")[0])
    key_length = uproot.open(damaged)["Events"]["nMuon"].basket(0).member("fKeylen")
    with open(damaged, "r+b") as f:  # the first event's muon count (big-endian int32), one more
        f.seek(seek + key_length)
        count = int.from_bytes(f.read(4), "big")
        f.seek(seek + key_length)
        f.write((count + 1).to_bytes(4, "big"))
    with open_columns(_item(damaged), ["Muon_pt"]) as reader:
        with pytest.raises(InputError, match="basket 0 of branch 'Muon_pt' holds .* bytes, its counts in 'nMuon' make"):
            reader.read(0, EVENTS)


def test_file_cut_short_inside_the_baskets_is_reported_as_truncated(demo_files, tmp_path):
    whole = demo_files["ZSTD"].read_bytes()
    path = tmp_path / "short.root"
    path.write_bytes(whole[: len(whole) * 3 // 4])  # uproot writes the tree's metadata first
    with open_columns(_item(path), COLUMNS) as reader:
        assert reader.decoder == "baskets"
        with pytest.raises(InputError, match=f"file is empty or truncated: .*the file has {path.stat().st_size} bytes"):
            reader.read(0, EVENTS)


ROOT_WRITTEN = Path(__file__).parent / "data" / "root-written"  # made by ROOT: see write.py there


@pytest.mark.parametrize("compression", ["none", "ZLIB", "LZMA", "LZ4", "ZSTD"])
def test_files_written_by_root(compression):
    """ROOT's own files: clusters of 1,000 entries, and small baskets that end at different entries per branch."""
    columns = ["nMuon", "Muon_pt", "Muon_charge", "run", "weight", "flag"]
    for layout, branch_boundaries in [("clusters", 1), ("small-baskets", len(columns) - 1)]:
        path = ROOT_WRITTEN / f"{compression}-{layout}.root"
        tree = uproot.open(path)["Events"]
        assert len({tuple(tree[c].entry_offsets) for c in columns}) == branch_boundaries  # Muon_* share theirs
        with open_columns(_item(path), columns) as reader:
            assert reader.decoder == "baskets"
            for start, stop in [(0, 2200), (500, 1500), (999, 2001), (2100, 2200), (3, 4)]:
                assert_same(reader.read(start, stop), _uproot(path, columns, start, stop))


def test_offsets_are_int64_from_zero_and_contents_native(demo_files):
    """What the kernels rely on (processor.jagged): packed offsets from 0, native-endian contents."""
    with open_columns(_item(demo_files["ZSTD"]), ["Muon_pt"]) as reader:
        layout = reader.read(1500, 2500)["Muon_pt"].layout
    assert layout.offsets.data.dtype == np.int64 and layout.offsets[0] == 0
    assert layout.content.data.dtype == np.dtype(np.float32) and layout.content.data.dtype.isnative
    assert len(layout.content) == layout.offsets[-1]
