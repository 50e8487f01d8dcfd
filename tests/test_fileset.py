"""Filesets: coffea-compatible layouts, globs and relative paths, weights, errors that name the field."""

from __future__ import annotations

import json

import pytest

from processor import FilesetError, load_fileset, parse_fileset


def test_coffea_layouts_json_and_yaml(tmp_path):
    for name in ("a.root", "b.root", "c.root"):
        (tmp_path / name).touch()
    (tmp_path / "fs.yaml").write_text(
        "mc:\n  files:\n    a.root: Events\n    b.root: {object_path: Tree2}\n"
        "  metadata: {xsec_pb: 2.0, nevents_generated: 100, role: signal}\n"
        "data:\n  files: [c.root]\n  metadata: {is_data: true}\n"
    )
    fs = load_fileset(tmp_path / "fs.yaml")
    items = fs.work_items()
    assert [(i.index, i.dataset, i.treename) for i in items] == [
        (0, "mc", "Events"),
        (1, "mc", "Tree2"),
        (2, "data", "Events"),
    ]
    assert items[0].url == str(tmp_path / "a.root")  # relative to the fileset's directory
    (tmp_path / "fs.json").write_text(
        json.dumps({"mc": {"files": {"*.root": "Events"}, "metadata": {"is_data": True}}})
    )
    assert [i.url for i in load_fileset(tmp_path / "fs.json").work_items()] == [
        str(tmp_path / n) for n in ("a.root", "b.root", "c.root")
    ]


def test_mc_weight_is_xsec_times_lumi_times_kfactor_over_generated():
    fs = parse_fileset(
        {
            "zz": {
                "files": ["root://host//zz.root"],
                "metadata": {"xsec_pb": 0.077, "nevents_generated": 1499064, "kfactor": 1.386},
            },
            "w": {
                "files": ["x.root"],
                "metadata": {"xsec_pb": 10.0, "sum_weights": 250.0, "lumi_pb": 100.0, "role": "signal"},
            },
            "data": {"files": ["d.root"], "metadata": {"is_data": True, "channels": ["4e"]}},
        }
    )
    infos = fs.infos(11580.0)
    assert infos["zz"].weight == pytest.approx(11580.0 * 0.077 * 1.386 / 1499064, rel=1e-15)
    assert (infos["zz"].role, infos["zz"].sample) == ("background", "zz")
    assert infos["w"].weight == pytest.approx(4.0) and infos["w"].sample == "signal"
    assert infos["data"].weight == 1.0 and infos["data"].feeds("4e") and not infos["data"].feeds("4mu")
    assert fs.work_items()[0].url == "root://host//zz.root"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"d": {"files": ["a.root"], "metadata": {"xsec": 1.0}}}, "dataset 'd': unknown metadata key 'xsec'"),
        ({"d": {"files": ["a.root"], "metadata": {"role": "sig"}}}, "dataset 'd': metadata.role must be one of"),
        (
            {"d": {"files": ["a.root"], "metadata": {"xsec_pb": "1"}}},
            "dataset 'd': metadata.xsec_pb has the wrong type",
        ),
        ({"d": {"files": [], "metadata": {}}}, "dataset 'd': no files"),
        ({"d": {"file": ["a.root"]}}, "dataset 'd': unknown keys"),
        ({"d": {"files": 3}}, "dataset 'd': 'files' must be"),
        ({"d": {"files": ["/nowhere/*.root"]}}, "dataset 'd': glob"),
        ([], "non-empty mapping"),
    ],
)
def test_malformed_filesets_are_rejected_naming_dataset_and_field(body, message):
    with pytest.raises(FilesetError, match=message.replace("(", r"\(")):
        parse_fileset(body)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"role": "signal"}, "needs metadata.xsec_pb"),
        ({"xsec_pb": 1.0}, "needs metadata.nevents_generated or metadata.sum_weights"),
        ({"xsec_pb": 1.0, "nevents_generated": 0}, "must be > 0"),
        ({"is_data": True, "role": "signal"}, "is_data is true but role is 'signal'"),
    ],
)
def test_missing_weight_metadata_is_an_error_before_any_work(metadata, message):
    fs = parse_fileset({"mc": {"files": ["a.root"], "metadata": metadata}})
    with pytest.raises(FilesetError, match=message):
        fs.infos(1000.0)


def test_missing_lumi_is_reported_when_the_analysis_has_none():
    fs = parse_fileset({"mc": {"files": ["a.root"], "metadata": {"xsec_pb": 1.0, "nevents_generated": 10}}})
    with pytest.raises(FilesetError, match="lumi_pb is missing"):
        fs.infos(None)


def test_bad_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"d": {"files": [}')
    with pytest.raises(FilesetError, match="broken.json is not valid JSON"):
        load_fileset(path)


def test_shipped_cms_fileset_matches_df103_weights():
    from conftest import ROOT

    infos = load_fileset(ROOT / "analyses" / "hzz4l.cms-opendata-2012.json").infos(11580.0)
    assert infos["SMHiggsToZZTo4L"].weight == pytest.approx(11580.0 * 0.0065 / 299973.0)
    assert infos["ZZTo2e2mu"].weight == pytest.approx(11580.0 * 0.18 * 1.386 / 1497445.0)
    assert infos["Run2012B_DoubleElectron"].channels == ("4e",)
    assert {i.sample for i in infos.values()} == {"signal", "ZZ", "data"}
