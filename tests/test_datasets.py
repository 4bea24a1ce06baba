"""Dataset readers against hand-built layouts whose expected records are worked out by hand."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import warnings

import pytest

from reid.config import DataConfig
from reid.data import (
    DatasetError,
    ImageRecord,
    load_dataset,
    parse_camera_token,
    parse_market_name,
    read_dukemtmc,
    read_folders,
    read_manifest,
    read_market1501,
)

CUHK03 = pathlib.Path(__file__).resolve().parents[2] / "shared/data/cuhk03"
MARKET_HINT = "PPPP_c"
FOLDERS_HINT = "root/<split>/<identity>"
MANIFEST_HINT = "path,pid,camid"


def touch(path: pathlib.Path) -> pathlib.Path:
    """Empty file: the readers only look at names, never at pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def raises_naming(fn, path, hint: str) -> str:
    """``fn`` must raise DatasetError with a one-line message naming ``path`` and ``hint``."""
    with pytest.raises(DatasetError) as info:
        fn()
    message = str(info.value)
    assert str(path) in message
    assert hint in message
    assert "\n" not in message
    return message


def records(root: pathlib.Path, rows: list[tuple[str, int, int]]) -> list[ImageRecord]:
    return [ImageRecord(str(root / rel), pid, camid) for rel, pid, camid in rows]


# --- Market-1501 / DukeMTMC-reID names ------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("0002_c1s1_000451_03.jpg", (2, 1)),
    ("1501_c6s4_001902_01.jpg", (1501, 6)),
    ("-1_c3s2_012345_00.jpg", (-1, 3)),        # junk
    ("0000_c6s1_000151_01.jpg", (0, 6)),       # distractor
    ("0001_c2_f0046182.jpg", (1, 2)),          # DukeMTMC-reID
    ("7140_c8_f0176452.jpg", (7140, 8)),
    ("0123_c12_f0000001.png", (123, 12)),      # multi-digit camera read whole
    ("/data/run_c9/0005_c4s3_000001_00.jpg", (5, 4)),  # only the base name counts
    ("Thumbs.db", None),
    ("img_c1_0001.jpg", None),
    ("0002c1s1_000451_03.jpg", None),
    ("0002_s1c1_000451_03.jpg", None),
    ("-2_c1s1_000000_00.jpg", None),
    ("a0002_c1s1_000451_03.jpg", None),
    ("_c1s1.jpg", None),
])
def test_parse_market_name(name, expected):
    assert parse_market_name(name) == expected


def make_market(root: pathlib.Path) -> None:
    for rel in [
        "bounding_box_train/0002_c1s1_000451_03.jpg",
        "bounding_box_train/0002_c2s1_000301_01.jpg",
        "bounding_box_train/0007_c3s1_000001_00.JPG",
        "bounding_box_train/0005_c6s2_000010_02.png",
        "bounding_box_train/-1_c1s1_000000_00.jpg",
        "bounding_box_train/0000_c1s1_000001_00.jpg",
        "bounding_box_train/Thumbs.db",
        "bounding_box_train/notes.txt",
        "bounding_box_train/._0002_c1s1_000451_03.jpg",
        "bounding_box_train/extra/0099_c1s1_000001_00.jpg",
        "query/0002_c2s1_000100_00.jpg",
        "query/0005_c1s1_000200_00.jpeg",
        "query/-1_c1s1_000300_00.jpg",
        "query/0000_c2s1_000400_00.jpg",
        "bounding_box_test/0005_c3s1_000500_00.jpg",
        "bounding_box_test/0002_c1s1_000600_00.jpg",
        "bounding_box_test/0000_c4s1_000700_00.jpg",
        "bounding_box_test/0000_c1s1_000800_00.jpg",
        "bounding_box_test/-1_c1s1_000900_00.jpg",
        "bounding_box_test/0009_c2s1_001000_00.jpg",
    ]:
        touch(root / rel)


def test_market_reader_drops_junk_keeps_distractors_in_gallery(tmp_path, monkeypatch):
    make_market(tmp_path / "market")
    monkeypatch.chdir(tmp_path)
    ds = read_market1501("market")  # relative root: paths must still come out absolute
    root = tmp_path / "market"
    assert ds.name == "market1501"
    assert ds.root == str(root)
    assert ds.train_pid_map == {2: 0, 5: 1, 7: 2}
    assert list(ds.train) == records(root / "bounding_box_train", [
        ("0002_c1s1_000451_03.jpg", 0, 1),
        ("0002_c2s1_000301_01.jpg", 0, 2),
        ("0005_c6s2_000010_02.png", 1, 6),
        ("0007_c3s1_000001_00.JPG", 2, 3),
    ])
    assert list(ds.query) == records(root / "query", [
        ("0002_c2s1_000100_00.jpg", 2, 2),
        ("0005_c1s1_000200_00.jpeg", 5, 1),
    ])
    assert list(ds.gallery) == records(root / "bounding_box_test", [
        ("0000_c1s1_000800_00.jpg", 0, 1),
        ("0000_c4s1_000700_00.jpg", 0, 4),
        ("0002_c1s1_000600_00.jpg", 2, 1),
        ("0005_c3s1_000500_00.jpg", 5, 3),
        ("0009_c2s1_001000_00.jpg", 9, 2),
    ])
    for split in (ds.train, ds.query, ds.gallery):
        assert all(os.path.isabs(r.path) for r in split)
        assert [r.path for r in split] == sorted(r.path for r in split)


def test_dukemtmc_names_read_with_the_same_reader(tmp_path):
    for rel in ["bounding_box_train/0001_c2_f0046182.jpg",
                "bounding_box_train/0003_c8_f0000001.jpg",
                "query/0005_c1_f0000002.jpg", "bounding_box_test/0005_c7_f0000003.jpg",
                "bounding_box_test/0006_c1_f0000004.jpg"]:
        touch(tmp_path / rel)
    ds = read_dukemtmc(tmp_path)
    assert ds.name == "dukemtmc"
    assert ds.train_pid_map == {1: 0, 3: 1}
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 2), (1, 8)]
    assert [(r.pid, r.camid) for r in ds.query] == [(5, 1)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(5, 7), (6, 1)]


def test_relabelling_is_contiguous_and_maps_back_to_file_names(tmp_path):
    pids = [1000, 3, 250, 11, 10, 3, 1000, 1000]
    for i, pid in enumerate(pids):
        touch(tmp_path / "bounding_box_train" / f"{pid:04d}_c{i % 6 + 1}s1_{i:06d}_00.jpg")
    touch(tmp_path / "query/0001_c1s1_000000_00.jpg")
    touch(tmp_path / "bounding_box_test/0001_c2s1_000000_00.jpg")
    ds = read_market1501(tmp_path)
    distinct = sorted(set(pids))
    assert ds.num_train_pids == len(distinct)
    assert sorted(ds.train_pid_map.values()) == list(range(len(distinct)))
    # Order-preserving: a larger original pid never gets a smaller label.
    assert [ds.train_pid_map[p] for p in distinct] == list(range(len(distinct)))
    for r in ds.train:
        original = int(os.path.basename(r.path).split("_")[0])
        assert r.pid == ds.train_pid_map[original]
    assert sorted(ds.train_pid_map[p] for p in pids) == sorted(r.pid for r in ds.train)


def test_market_errors_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    raises_naming(lambda: read_market1501(missing), missing / "bounding_box_train", MARKET_HINT)

    make_market(tmp_path / "m")
    (tmp_path / "m/query").rename(tmp_path / "m/query_old")
    raises_naming(lambda: read_market1501(tmp_path / "m"), tmp_path / "m/query", MARKET_HINT)

    (tmp_path / "m/query").mkdir()  # empty split
    raises_naming(lambda: read_market1501(tmp_path / "m"), tmp_path / "m/query", MARKET_HINT)

    touch(tmp_path / "m/query/readme.txt")  # still no images
    raises_naming(lambda: read_market1501(tmp_path / "m"), tmp_path / "m/query", MARKET_HINT)

    touch(tmp_path / "m/query/-1_c1s1_000000_00.jpg")  # only junk left after filtering
    touch(tmp_path / "m/query/0000_c1s1_000000_00.jpg")
    raises_naming(lambda: read_market1501(tmp_path / "m"), tmp_path / "m/query", MARKET_HINT)

    touch(tmp_path / "m/query/0002_c1s1_000000_00.jpg")
    bad = touch(tmp_path / "m/bounding_box_test/IMG_0001.jpg")
    message = raises_naming(lambda: read_market1501(tmp_path / "m"), bad, MARKET_HINT)
    assert "more" not in message
    touch(tmp_path / "m/bounding_box_test/IMG_0002.jpg")
    message = raises_naming(lambda: read_market1501(tmp_path / "m"), bad, MARKET_HINT)
    assert "1 more" in message


def test_market_points_at_a_nested_root(tmp_path):
    make_market(tmp_path / "Market-1501-v15.09.15")
    message = raises_naming(lambda: read_market1501(tmp_path), tmp_path / "bounding_box_train",
                            MARKET_HINT)
    assert str(tmp_path / "Market-1501-v15.09.15") in message


# --- CSV manifest ---------------------------------------------------------------------------------

def make_manifest(root: pathlib.Path, elsewhere: pathlib.Path) -> None:
    for rel in ["imgs/a.jpg", "imgs/b.jpg", "imgs/c.png", "imgs/q1.jpg", "imgs/g1.jpg",
                "imgs/g2.jpg"]:
        touch(root / rel)
    touch(elsewhere / "abs.jpg")
    (root / "train.csv").write_text(
        "path,pid,camid,note\n"
        "imgs/b.jpg,40,2,second\n"
        "\n"
        f"{elsewhere / 'abs.jpg'},7,1,absolute\n"
        "imgs/a.jpg, 40 ,1,spaces\n"
        "imgs/c.png,12,3,\n")
    (root / "query.csv").write_text("\ufeffpid, path ,camid\n5,imgs/q1.jpg,1\n")  # BOM, any order
    (root / "gallery.csv").write_text("path,pid,camid\nimgs/g2.jpg,0,4\nimgs/g1.jpg,5,2\n")


def test_manifest_reader(tmp_path):
    root, elsewhere = tmp_path / "data", tmp_path / "other"
    make_manifest(root, elsewhere)
    ds = read_manifest(root)
    assert ds.name == "manifest"
    assert ds.train_pid_map == {7: 0, 12: 1, 40: 2}
    assert sorted(ds.train, key=lambda r: r.path) == list(ds.train)
    assert {(r.path, r.pid, r.camid) for r in ds.train} == {
        (str(elsewhere / "abs.jpg"), 0, 1),
        (str(root / "imgs/a.jpg"), 2, 1),
        (str(root / "imgs/b.jpg"), 2, 2),
        (str(root / "imgs/c.png"), 1, 3),
    }
    assert list(ds.query) == [ImageRecord(str(root / "imgs/q1.jpg"), 5, 1)]
    assert list(ds.gallery) == [ImageRecord(str(root / "imgs/g1.jpg"), 5, 2),
                                ImageRecord(str(root / "imgs/g2.jpg"), 0, 4)]


@pytest.mark.parametrize("split, text, hint", [
    ("train", "path,pid\nimgs/a.jpg,1\n", "camid"),                        # missing column
    ("train", "path,pid,camid\nimgs/a.jpg,1,1\nimgs/b.jpg,x1,1\n", "line 3"),  # bad pid
    ("gallery", "path,pid,camid\nimgs/g1.jpg,5,1.5\n", "line 2"),          # bad camid
    ("gallery", "path,pid,camid\nimgs/g1.jpg,5\n", "line 2"),              # short row
    ("gallery", "path,pid,camid\n,5,1\n", "empty path"),
    ("train", "path,pid,camid\nimgs/a.jpg,-1,1\n", "negative"),
    ("query", "path,pid,camid\nimgs/q1.jpg,0,1\n", "distractor"),
    ("query", "path,pid,camid\n", "no images"),                            # empty split
    ("query", "", "empty file"),
])
def test_manifest_errors_name_file_and_line(tmp_path, split, text, hint):
    root = tmp_path / "data"
    make_manifest(root, tmp_path / "other")
    (root / f"{split}.csv").write_text(text)
    raises_naming(lambda: read_manifest(root), root / f"{split}.csv", hint)


def test_manifest_missing_file_and_image(tmp_path):
    root = tmp_path / "data"
    make_manifest(root, tmp_path / "other")
    raises_naming(lambda: read_manifest(tmp_path / "absent"), tmp_path / "absent", MANIFEST_HINT)

    (root / "gallery.csv").unlink()
    raises_naming(lambda: read_manifest(root), root / "gallery.csv", MANIFEST_HINT)

    (root / "gallery.csv").write_text("path,pid,camid\nimgs/g1.jpg,5,2\nimgs/gone.jpg,5,3\n")
    message = raises_naming(lambda: read_manifest(root), root / "imgs/gone.jpg", "not found")
    assert "line 3" in message and str(root / "gallery.csv") in message


# --- folder per identity --------------------------------------------------------------------------

def test_folders_with_numbered_identities_and_camera_tokens(tmp_path):
    for rel in ["train/0001/a_c1.jpg", "train/0001/b_c2.jpg", "train/0042/x-c1.PNG",
                "train/0042/notes.txt", "train/empty_identity/readme.md",
                "query/0003/q_c1_01.jpg",
                "gallery/0003/g_c2_01.jpg", "gallery/0003/g.c1.02.jpg", "gallery/0000/d_c1.jpg",
                "gallery/0010/h_c3.png"]:
        touch(tmp_path / rel)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cameras are named: no warning
        ds = read_folders(tmp_path)
    assert ds.name == "folders"
    assert ds.train_pid_map == {1: 0, 42: 1}
    assert list(ds.train) == records(tmp_path / "train", [
        ("0001/a_c1.jpg", 0, 1), ("0001/b_c2.jpg", 0, 2), ("0042/x-c1.PNG", 1, 1)])
    assert list(ds.query) == records(tmp_path / "query", [("0003/q_c1_01.jpg", 3, 1)])
    assert list(ds.gallery) == records(tmp_path / "gallery", [
        ("0000/d_c1.jpg", 0, 1), ("0003/g.c1.02.jpg", 3, 1), ("0003/g_c2_01.jpg", 3, 2),
        ("0010/h_c3.png", 10, 3)])


def test_folders_with_named_identities_and_default_cameras(tmp_path):
    for rel in ["train/bob/2.jpg", "train/alice/1.jpg", "train/alice/3.jpg",
                "query/dave/q.jpg", "query/carol/q.jpg",
                "gallery/carol/g1.jpg", "gallery/carol/g2.jpg", "gallery/dave/g.jpg",
                "gallery/erin/g.jpg"]:
        touch(tmp_path / rel)
    with pytest.warns(UserWarning, match="same-camera filtering cannot apply"):
        ds = read_folders(tmp_path)
    assert ds.train_pid_map == {0: 0, 1: 1}
    assert list(ds.train) == records(tmp_path / "train", [
        ("alice/1.jpg", 0, 0), ("alice/3.jpg", 0, 0), ("bob/2.jpg", 1, 0)])
    # Names sorted over query+gallery and numbered from 1 (0 would mean distractor).
    assert list(ds.query) == records(tmp_path / "query", [("carol/q.jpg", 1, 1),
                                                          ("dave/q.jpg", 2, 1)])
    assert list(ds.gallery) == records(tmp_path / "gallery", [
        ("carol/g1.jpg", 1, 2), ("carol/g2.jpg", 1, 2), ("dave/g.jpg", 2, 2), ("erin/g.jpg", 3, 2)])
    # What the defaults are for: the same-camera filter leaves every true match in place.
    for q in ds.query:
        same_id = [g for g in ds.gallery if g.pid == q.pid]
        assert same_id and all(g.camid != q.camid for g in same_id)


def test_folders_numbers_that_collide_fall_back_to_names(tmp_path):
    for rel in ["train/5/a.jpg", "train/05/b.jpg", "query/1/q_c1.jpg", "gallery/1/g_c2.jpg",
                "gallery/01/g_c2.jpg"]:
        touch(tmp_path / rel)
    ds = read_folders(tmp_path)
    assert ds.train_pid_map == {0: 0, 1: 1}  # "05" < "5"
    assert [r.pid for r in ds.train] == [0, 1]
    assert [r.pid for r in ds.query] == [2]
    assert [(os.path.basename(os.path.dirname(r.path)), r.pid) for r in ds.gallery] == [
        ("01", 1), ("1", 2)]


@pytest.mark.parametrize("parts, expected", [
    ("cam_c2_0001.jpg", 2), ("c3-17.png", 3), ("x.c12.jpg", 12), ("0002_c1s1_000451_03.jpg", 1),
    ("photo_cat.jpg", None), ("abc1.jpg", None), ("disc5.jpg", None), ("/d/x_c4/img.jpg", None),
])
def test_parse_camera_token(parts, expected):
    assert parse_camera_token(parts) == expected


def make_folders(root: pathlib.Path) -> None:
    for rel in ["train/1/a_c1.jpg", "query/2/q_c1.jpg", "gallery/2/g_c2.jpg"]:
        touch(root / rel)


def test_folders_errors_name_the_path(tmp_path):
    raises_naming(lambda: read_folders(tmp_path / "absent"), tmp_path / "absent", FOLDERS_HINT)

    make_folders(tmp_path)
    (tmp_path / "gallery").rename(tmp_path / "gallery_old")
    raises_naming(lambda: read_folders(tmp_path), tmp_path / "gallery", FOLDERS_HINT)

    (tmp_path / "gallery").mkdir()  # empty split
    raises_naming(lambda: read_folders(tmp_path), tmp_path / "gallery", FOLDERS_HINT)
    (tmp_path / "gallery/2").mkdir()  # identity folder without images: still empty
    raises_naming(lambda: read_folders(tmp_path), tmp_path / "gallery", FOLDERS_HINT)

    stray = touch(tmp_path / "gallery/loose_c2.jpg")
    raises_naming(lambda: read_folders(tmp_path), stray, FOLDERS_HINT)
    stray.unlink()

    touch(tmp_path / "gallery/3/g_c2.jpg")  # query identity 2 has no gallery images
    message = raises_naming(lambda: read_folders(tmp_path), tmp_path / "query/2", "gallery")
    assert str(tmp_path / "gallery/2") in message

    touch(tmp_path / "gallery/2/g_c2.jpg")
    touch(tmp_path / "gallery/2/nocam.jpg")  # cameras named on some files only
    raises_naming(lambda: read_folders(tmp_path), tmp_path / "gallery/2/nocam.jpg", "c<N>")
    (tmp_path / "gallery/2/nocam.jpg").unlink()

    touch(tmp_path / "query/0/q_c1.jpg")
    touch(tmp_path / "gallery/0/g_c2.jpg")
    raises_naming(lambda: read_folders(tmp_path), tmp_path / "query/0", "distractor")


# --- dispatch, imports, real data -----------------------------------------------------------------

def test_load_dataset_dispatches_on_config(tmp_path):
    make_market(tmp_path / "market")
    make_manifest(tmp_path / "manifest", tmp_path / "other")
    make_folders(tmp_path / "folders")
    for layout, folder in [("market1501", "market"), ("dukemtmc", "market"),
                           ("manifest", "manifest"), ("folders", "folders")]:
        ds = load_dataset(DataConfig(dataset=layout, root=str(tmp_path / folder)))
        assert ds.name == layout
        assert ds.root == str(tmp_path / folder)
    with pytest.raises(DatasetError, match="coco"):
        load_dataset(DataConfig(dataset="coco", root=str(tmp_path)))


def test_package_import_does_not_load_tensorflow():
    code = "import sys, reid.data; print('tensorflow' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_cuhk03_reads_with_the_market_reader():
    if not CUHK03.is_dir():
        pytest.skip(f"real data not present at {CUHK03}")
    ds = read_market1501(CUHK03)
    # Sizes as published in the folder's README.
    assert len(ds.train) == 7380 and ds.num_train_pids == 767
    assert len(ds.query) == 1400 and len({r.pid for r in ds.query}) == 700
    assert len(ds.gallery) == 5317
    assert {r.pid for r in ds.query} == {r.pid for r in ds.gallery}
    assert {r.camid for r in ds.query + ds.gallery + ds.train} == {1, 2}
