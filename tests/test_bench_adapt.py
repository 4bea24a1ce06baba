"""bench/adapt.py's pure parts: the CUHK03 camera-pair views (links, never copies), the share of
the gap closed, the times read from run histories, and the arguments refused before any work."""

from __future__ import annotations

import math
import os

import pytest
from tool_runner import load_bench

# (file name, its pair): both ends of every range, and names that belong to no pair.
FILES = [("0001_c1s1_000001_00.jpg", 1), ("0843_c2s1_000002_00.jpg", 1),
         ("0844_c1s1_000003_00.jpg", 2), ("1283_c2s1_000004_00.jpg", 2),
         ("1284_c1s1_000005_00.jpg", 3), ("1360_c1s1_000006_00.jpg", 3),
         ("1361_c1s1_000007_00.jpg", 4), ("1418_c2s1_000008_00.jpg", 4),
         ("1419_c1s1_000009_00.jpg", 5), ("1467_c2s1_000010_00.jpg", 5),
         ("1468_c1s1_000011_00.jpg", None), ("0000_c1s1_000012_00.jpg", None),
         ("-1_c1s1_000013_00.jpg", None), ("notes_0001.txt", None)]


@pytest.fixture
def market(tmp_path):
    """A tiny CUHK03 in the Market-1501 layout: the same empty files in each split, but the
    query split holds only pair 1's first."""
    root = tmp_path / "cuhk03"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (root / split).mkdir(parents=True)
        for name, _ in (FILES if split != "query" else FILES[:1]):
            (root / split / name).write_bytes(b"")
    return root


def test_a_view_links_exactly_its_pairs_files_and_copies_nothing(market, tmp_path):
    bench = load_bench("adapt")
    out = tmp_path / "view"
    counts = bench.make_view(market, out, [2, 4])
    wanted = sorted(name for name, pair in FILES if pair in (2, 4))
    for split in ("bounding_box_train", "bounding_box_test"):
        assert sorted(os.listdir(out / split)) == wanted
        for name in wanted:
            link = out / split / name
            assert link.is_symlink()
            assert os.readlink(link) == str(market / split / name)  # absolute, to the original
        assert counts[split] == (4, 4)
    assert os.listdir(out / "query") == [] and counts["query"] == (0, 0)
    assert not [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]
    # Made again: checked and left as it is.
    assert bench.make_view(market, out, [2, 4]) == counts
    assert sorted(os.listdir(out / "bounding_box_train")) == wanted


def test_the_views_of_a_pair_split_every_person_between_target_and_source(market, tmp_path):
    bench = load_bench("adapt")
    target, source = bench.view_names(3)
    assert (target, source) == ("cuhk03-pair3", "cuhk03-pairs1245")
    bench.make_view(market, tmp_path / target, [3])
    bench.make_view(market, tmp_path / source, [1, 2, 4, 5])
    inside = {name for name, pair in FILES if pair is not None}
    got_target = set(os.listdir(tmp_path / target / "bounding_box_test"))
    got_source = set(os.listdir(tmp_path / source / "bounding_box_test"))
    assert got_target == {"1284_c1s1_000005_00.jpg", "1360_c1s1_000006_00.jpg"}
    assert not got_target & got_source and got_target | got_source == inside


def test_a_stale_view_is_refused_not_measured(market, tmp_path):
    bench = load_bench("adapt")
    out = tmp_path / "view"
    bench.make_view(market, out, [1])
    (out / "bounding_box_train" / "0844_c1s1_000003_00.jpg").write_bytes(b"")  # pair 2's
    with pytest.raises(bench.ReidError, match="0844_c1s1_000003_00.jpg: not an image of pair"):
        bench.make_view(market, out, [1])
    other = tmp_path / "view2"
    bench.make_view(market, other, [1])
    link = other / "query" / "0001_c1s1_000001_00.jpg"
    link.unlink()
    link.write_bytes(b"")  # a copy where the link was
    with pytest.raises(bench.ReidError, match="0001_c1s1_000001_00.jpg: not a link to"):
        bench.make_view(market, other, [1])
    with pytest.raises(bench.ReidError, match="folder not found"):
        bench.make_view(tmp_path / "nowhere", tmp_path / "view3", [1])


def test_gap_closed_by_hand():
    bench = load_bench("adapt")
    assert math.isclose(bench.gap_closed(0.05, 0.25, 0.45), 0.5)  # 0.20 of 0.40
    assert math.isclose(bench.gap_closed(0.05, 0.45, 0.45), 1.0)
    assert math.isclose(bench.gap_closed(0.10, 0.05, 0.30), -0.25)  # worse than direct
    assert bench.gap_closed(0.30, 0.40, 0.30) is None  # no gap to close
    assert bench.gap_closed(0.30, 0.40, 0.20) is None


def test_times_and_rounds_are_read_from_the_histories():
    bench = load_bench("adapt")
    training = [{"epoch": 1, "seconds": 40.5}, {"epoch": 2, "seconds": 39.5, "val": {}}]
    assert bench.training_seconds(training) == 80.0
    adaptation = [{"round": 0, "adabn": {"layers": 54, "images": 10, "seconds": 3.0}},
                  {"round": 1, "crops": 10, "clusters": 3, "outliers": 1, "identities": 2,
                   "split": 1, "seconds": 20.0},
                  {"round": 2, "crops": 10, "clusters": 2, "outliers": 0, "identities": 2,
                   "split": 0, "seconds": 22.0}]
    assert bench.adaptation_seconds(adaptation) == 45.0
    assert bench.adaptation_seconds([{"round": 0, "adabn": None}]) == 0.0  # AdaBN off
    assert bench.round_lines(adaptation) == [
        ("round 1: 3 clusters, 1 outliers, 2 pseudo-identities, 1 split by co-occurring tracks "
         "(10 crops; 20 s)"),
        "round 2: 2 clusters, 0 outliers, 2 pseudo-identities (10 crops; 22 s)"]


def test_index_folders_are_named_by_parent_and_clashes_refused(tmp_path):
    bench = load_bench("adapt")
    assert bench.index_labels([tmp_path / "seed21" / "index", tmp_path / "seed22" / "index"]) \
        == ["seed21-index", "seed22-index"]
    with pytest.raises(bench.ReidError, match="share the work folder seed21-index"):
        bench.index_labels([tmp_path / "a" / "seed21" / "index",
                            tmp_path / "b" / "seed21" / "index"])


@pytest.mark.parametrize("argv, message", [
    (["--cuhk03-pair", "6"], "invalid choice: 6"),
    ([], "one of the arguments --cuhk03-pair --footage is required"),
    (["--cuhk03-pair", "1", "--footage", "I"], "not allowed with argument"),
    (["--cuhk03-pair", "1", "--tracks", "T"], "--tracks: footage options"),
    (["--footage", "I", "J", "--ground-truth", "F", "--tracks", "T", "U"],
     "--ground-truth: one per --footage index (2 given, 1"),
    (["--footage", "I", "--ground-truth", "F"], "--tracks: one per --footage index"),
    (["--footage", "I", "--ground-truth", "F", "--tracks", "T", "--source", "R"],
     "--source: CUHK03 options"),
    (["--footage", "I", "--ground-truth", "F", "--tracks", "T", "--tag", "x"],
     "--tag: CUHK03 options"),
    (["--footage", "I", "--ground-truth", "F", "--tracks", "T", "--together"],
     "--together: needs two or more"),
])
def test_arguments_that_do_not_go_together_are_refused_before_any_work(argv, message, capsys):
    bench = load_bench("adapt")
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
