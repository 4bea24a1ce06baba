"""The synthetic pedestrian generator: layout, labels, determinism, safe writing, bad arguments,
and the properties that keep it from being solvable by colour alone.

Datasets here are tiny (a dozen identities, a few images each) so the file runs in seconds.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import pathlib
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from reid.synthetic import crops as syn
from reid.synthetic.crops import (MANIFEST_NAME, POOL_MIN_IMAGES, SyntheticError, SyntheticParams,
                                  generate_dataset, plan_dataset)
from reid.synthetic.drawing import render_person
from reid.synthetic.sampling import (CameraStyle, PersonIdentity, sample_camera, sample_identities,
                                     sample_identity)
from tool_runner import tool_main

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "make_synthetic.py"
# Written independently of the generator: Market-1501's naming, anchored at both ends.
NAME = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.jpg$")
SPLITS = ("bounding_box_train", "query", "bounding_box_test")

SMALL = dict(ids=12, cameras=3, images_per_id=6, seed=7, height=96, width=48)


def read_tree(root: pathlib.Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def parse_split(root: pathlib.Path, split: str) -> list[tuple[int, int, int]]:
    """(pid, camera, frame) of every image in a split, failing on any name that does not parse."""
    out = []
    for name in sorted(os.listdir(root / split)):
        m = NAME.match(name)
        assert m, f"{split}/{name} does not follow the Market-1501 naming"
        out.append((int(m[1]), int(m[2]), int(m[3])))
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("synthetic") / "small"
    generate_dataset(out, workers=1, **SMALL)
    return out


# ---------------------------------------------------------------------------------------------
# Layout and labels


def test_layout_and_split_sizes(small: pathlib.Path) -> None:
    n, c, k = SMALL["ids"], SMALL["cameras"], SMALL["images_per_id"]
    assert sorted(p.name for p in small.iterdir()) == sorted([*SPLITS, MANIFEST_NAME])
    train, query, gallery = (parse_split(small, s) for s in SPLITS)
    train_pids = {p for p, _, _ in train}
    test_pids = {p for p, _, _ in query} | {p for p, _, _ in gallery}
    assert train_pids == set(range(1, n // 2 + 1))
    assert test_pids == set(range(n // 2 + 1, n + 1))
    assert {p for p, _, _ in query} == {p for p, _, _ in gallery} == test_pids
    assert len(train) == len(train_pids) * k
    assert len(query) + len(gallery) == len(test_pids) * k
    for records in (train, query, gallery):
        assert {cam for _, cam, _ in records} <= set(range(1, c + 1))
    # Every identity has K distinct frame numbers 0..K-1 across its splits.
    frames = collections.defaultdict(list)
    for p, _, f in train + query + gallery:
        frames[p].append(f)
    assert all(sorted(fs) == list(range(k)) for fs in frames.values())


def test_test_ids_sets_the_size_of_the_query_gallery_split(tmp_path) -> None:
    out = tmp_path / "d"
    generate_dataset(out, ids=7, test_ids=2, cameras=2, images_per_id=4, seed=1, height=64,
                     width=32, workers=1)
    train, query, gallery = (parse_split(out, s) for s in SPLITS)
    assert {p for p, _, _ in train} == set(range(1, 6))
    assert {p for p, _, _ in query} == {p for p, _, _ in gallery} == {6, 7}
    assert len(train) == 5 * 4 and len(query) + len(gallery) == 2 * 4


def test_one_query_per_camera_and_a_cross_camera_match(small: pathlib.Path) -> None:
    query = parse_split(small, "query")
    gallery = parse_split(small, "bounding_box_test")
    per_pid_cams = collections.defaultdict(set)
    for p, cam, _ in query + gallery:
        per_pid_cams[p].add(cam)
    query_pairs = collections.Counter((p, cam) for p, cam, _ in query)
    assert all(n == 1 for n in query_pairs.values())
    for p, cams in per_pid_cams.items():
        assert len(cams) >= 2
        assert {cam for (qp, cam) in query_pairs if qp == p} == cams
    for p, cam, _ in query:
        assert any(gp == p and gc != cam for gp, gc, _ in gallery), (p, cam)


def test_train_identities_also_span_cameras(small: pathlib.Path) -> None:
    cams = collections.defaultdict(set)
    for p, cam, _ in parse_split(small, "bounding_box_train"):
        cams[p].add(cam)
    assert all(len(c) >= 2 for c in cams.values())


def test_images_decode_at_the_requested_size(small: pathlib.Path) -> None:
    for split in SPLITS:
        for name in os.listdir(small / split):
            img = cv2.imread(str(small / split / name), cv2.IMREAD_COLOR)
            assert img is not None and img.shape == (SMALL["height"], SMALL["width"], 3), name


def test_manifest_records_the_arguments(small: pathlib.Path) -> None:
    manifest = json.loads((small / MANIFEST_NAME).read_text())
    assert manifest["params"] == {**SMALL, "test_ids": None}
    assert manifest["counts"] == {s: len(os.listdir(small / s)) for s in SPLITS}


def test_the_file_camera_is_the_camera_that_drew_it(small: pathlib.Path) -> None:
    """Redraw each query from its name alone; only the named camera reproduces the file."""
    plan = plan_dataset(SyntheticParams(**SMALL))
    for p, cam, f in parse_split(small, "query"):
        on_disk = (small / "query" / f"{p:04d}_c{cam}s1_{f:06d}_00.jpg").read_bytes()
        reproduced = []
        for c in plan.cameras:
            rng = np.random.default_rng([SMALL["seed"], p, f])
            img = render_person(plan.identities[p], plan.cameras[c], rng, SMALL["height"],
                                SMALL["width"])
            if syn.encode_bgr_jpeg(img) == on_disk:
                reproduced.append(c)
        assert reproduced == [cam]


# ---------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_same_bytes_for_any_worker_count(small: pathlib.Path, tmp_path) -> None:
    params = dict(SMALL)
    n_images = params["ids"] * params["images_per_id"]
    assert n_images >= POOL_MIN_IMAGES  # so workers=2 really goes through the process pool
    generate_dataset(tmp_path / "again", workers=2, **params)
    first, second = read_tree(small), read_tree(tmp_path / "again")
    assert len(first) == n_images + 1
    assert first == second


def test_different_seed_different_images(small: pathlib.Path, tmp_path) -> None:
    generate_dataset(tmp_path / "other", workers=1, **{**SMALL, "seed": SMALL["seed"] + 1})
    first = {k: v for k, v in read_tree(small).items() if k.endswith(".jpg")}
    second = {k: v for k, v in read_tree(tmp_path / "other").items() if k.endswith(".jpg")}
    assert len(first) == len(second)
    common = first.keys() & second.keys()
    assert all(first[k] != second[k] for k in common)
    assert first != second


def test_images_do_not_depend_on_drawing_order(tmp_path, monkeypatch) -> None:
    params = dict(ids=4, cameras=2, images_per_id=4, seed=1, height=64, width=32, workers=1)
    generate_dataset(tmp_path / "forward", **params)
    draw = syn._render_all
    monkeypatch.setattr(syn, "_render_all", lambda jobs, workers: draw(jobs[::-1], workers))
    generate_dataset(tmp_path / "backward", **params)
    assert read_tree(tmp_path / "forward") == read_tree(tmp_path / "backward")


# ---------------------------------------------------------------------------------------------
# Safe writing


def test_second_run_skips_and_force_redraws(tmp_path) -> None:
    params = dict(ids=4, cameras=2, images_per_id=4, seed=1, height=64, width=32)
    out = tmp_path / "d"
    first = generate_dataset(out, workers=1, **params)
    assert not first.skipped
    stamp = (out / MANIFEST_NAME).stat().st_mtime_ns
    again = generate_dataset(out, workers=1, **params)
    assert again.skipped and "skipped" in again.text()
    assert (out / MANIFEST_NAME).stat().st_mtime_ns == stamp
    forced = generate_dataset(out, workers=1, force=True, **params)
    assert not forced.skipped
    assert (out / MANIFEST_NAME).stat().st_mtime_ns != stamp


def test_incomplete_or_different_dataset_is_redrawn(tmp_path) -> None:
    params = dict(ids=4, cameras=2, images_per_id=4, seed=1, height=64, width=32)
    out = tmp_path / "d"
    generate_dataset(out, workers=1, **params)
    next((out / "query").iterdir()).unlink()
    assert not generate_dataset(out, workers=1, **params).skipped
    assert len(os.listdir(out / "query")) == json.loads(
        (out / MANIFEST_NAME).read_text())["counts"]["query"]
    bigger = generate_dataset(out, workers=1, **{**params, "images_per_id": 6})
    assert not bigger.skipped and bigger.replaced
    total = sum(len(os.listdir(out / s)) for s in SPLITS)
    assert total == 4 * 6


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch) -> None:
    def crash(jobs, workers):
        syn._render_job(jobs[0])  # some files exist when the crash comes
        raise KeyboardInterrupt

    monkeypatch.setattr(syn, "_render_all", crash)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "d", workers=1, ids=4, cameras=2, images_per_id=4)
    assert os.listdir(tmp_path) == []


def test_interrupted_redraw_keeps_the_previous_dataset(tmp_path, monkeypatch) -> None:
    params = dict(ids=4, cameras=2, images_per_id=4, seed=1, height=64, width=32)
    out = tmp_path / "d"
    generate_dataset(out, workers=1, **params)
    before = read_tree(out)

    def crash(jobs, workers):
        raise KeyboardInterrupt

    monkeypatch.setattr(syn, "_render_all", crash)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(out, workers=1, force=True, **params)
    assert read_tree(out) == before
    assert os.listdir(tmp_path) == ["d"]


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SyntheticError, match="mine.*refusing"):
        generate_dataset(out, workers=1, force=True, ids=4, cameras=2, images_per_id=4)
    assert (out / "notes.txt").read_text() == "keep me"


def test_never_deletes_files_added_to_a_dataset_it_wrote(tmp_path) -> None:
    params = dict(ids=4, cameras=2, images_per_id=4, seed=1, height=64, width=32)
    out = tmp_path / "d"
    generate_dataset(out, workers=1, **params)
    (out / "NOTES.txt").write_text("keep me")
    added = out / "bounding_box_train" / "0900_c1s1_000001_00.jpg"
    shutil.copy(next((out / "query").iterdir()), added)
    for change in ({"force": True}, {"images_per_id": 6}):
        with pytest.raises(SyntheticError, match=r"d: holds 2 file\(s\) this generator did not "
                                                 r"write \(NOTES.txt, bounding_box_train/0900"):
            generate_dataset(out, workers=1, **{**params, **change})
    assert (out / "NOTES.txt").read_text() == "keep me" and added.is_file()
    (out / "NOTES.txt").unlink()
    added.unlink()
    assert generate_dataset(out, workers=1, **{**params, "images_per_id": 6}).replaced


# ---------------------------------------------------------------------------------------------
# Bad arguments


@pytest.mark.parametrize("override, field", [
    ({"cameras": 1}, "cameras"),
    ({"cameras": 10}, "cameras"),
    ({"ids": 1}, "ids"),
    ({"ids": 10000}, "ids"),
    ({"images_per_id": 3}, "images_per_id"),
    ({"height": 16}, "height"),
    ({"seed": -1}, "seed"),
    ({"test_ids": 0}, "test_ids"),
    ({"test_ids": 4}, "test_ids"),
])
def test_impossible_arguments_are_refused(tmp_path, override, field) -> None:
    with pytest.raises(SyntheticError, match=field):
        generate_dataset(tmp_path / "d", workers=1, **{**dict(ids=4, cameras=2,
                                                                images_per_id=4), **override})
    assert not (tmp_path / "d").exists()


def test_cli_exits_nonzero_with_a_message(tmp_path, capsys) -> None:
    assert tool_main("make_synthetic")(["--out", str(tmp_path / "d"), "--cameras", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "cameras" in err[0]
    assert not (tmp_path / "d").exists()


def test_cli_writes_then_skips(tmp_path) -> None:
    args = [sys.executable, str(TOOL), "--out", str(tmp_path / "d"), "--ids", "4",
            "--cameras", "2", "--images-per-id", "4", "--height", "64", "--width", "32",
            "--workers", "1"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "16 images written" in first.stdout and "query" in first.stdout
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "skipped" in second.stdout


# ---------------------------------------------------------------------------------------------
# Hard enough: shared colours, hidden cues, camera casts


def test_test_identities_share_their_clothing_colours() -> None:
    plan = plan_dataset(SyntheticParams(ids=200))
    test = [plan.identities[p] for p in plan.test_pids]
    tops = collections.Counter(i.top_color for i in test)
    outfits = collections.Counter((i.top_color, i.bottom_color) for i in test)
    share_top = sum(tops[i.top_color] >= 2 for i in test) / len(test)
    share_outfit = sum(outfits[(i.top_color, i.bottom_color)] >= 2 for i in test) / len(test)
    assert share_top >= 0.9
    assert share_outfit >= 0.5
    # ... yet no two identities look the same in every salient attribute.
    keys = [(i.top_color, i.bottom_color) + i.salient() for i in plan.identities.values()]
    assert len(set(keys)) == len(keys)


def test_group_members_differ_in_at_least_two_salient_attributes() -> None:
    people = sample_identities(120, np.random.default_rng(3))
    groups = collections.defaultdict(list)
    for person in people:
        groups[person.group].append(person)
    assert max(len(g) for g in groups.values()) >= 3
    for members in groups.values():
        assert len({m.top_color for m in members}) == 1
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                diff = sum(x != y for x, y in zip(members[a].salient(), members[b].salient()))
                assert diff >= 2


def _market_map(qf, qp, qc, gf, gp, gc) -> float:
    """Brute-force Market-1501 mAP with Euclidean distance, written out for the test."""
    aps = []
    for f, p, c in zip(qf, qp, qc):
        keep = ~((gp == p) & (gc == c))
        order = np.argsort(((gf[keep] - f) ** 2).sum(axis=1), kind="stable")
        hits = np.flatnonzero(gp[keep][order] == p)
        aps.append(np.mean((np.arange(len(hits)) + 1) / (hits + 1)))
    return float(np.mean(aps))


def test_mean_colour_does_not_identify_people(tmp_path) -> None:
    out = tmp_path / "d"
    generate_dataset(out, ids=60, cameras=4, images_per_id=8, seed=5, workers=1)

    def features(split):
        recs = parse_split(out, split)
        names = sorted(os.listdir(out / split))
        feats = np.array([cv2.imread(str(out / split / n)).reshape(-1, 3).mean(axis=0)
                          for n in names])
        return feats, np.array([r[0] for r in recs]), np.array([r[1] for r in recs])

    q, g = features("query"), features("bounding_box_test")
    assert _market_map(*q, *g) < 0.3
    # The same protocol does find identity when the feature carries it (a positive control).
    one_hot = np.eye(61)
    assert _market_map(one_hot[q[1]], q[1], q[2], one_hot[g[1]], g[1], g[2]) == 1.0


def _camera_with_views(weights: tuple[float, float, float, float]) -> CameraStyle:
    return dataclasses.replace(sample_camera(np.random.default_rng(0)), view_weights=weights,
                               occlusion=0.0)


def _draw(identity: PersonIdentity, camera: CameraStyle, seed: int) -> np.ndarray:
    return render_person(identity, camera, np.random.default_rng(seed))


FRONT, BACK, LEFT, RIGHT = (1.0, 0, 0, 0), (0, 1.0, 0, 0), (0, 0, 1.0, 0), (0, 0, 0, 1.0)


@pytest.mark.parametrize("change, shows, hides", [
    ({"top_pattern": "logo"}, FRONT, BACK),
    ({"top_pattern": "backprint"}, BACK, FRONT),
    ({"bag": "bag_left"}, LEFT, RIGHT),
    ({"bag": "bag_right"}, RIGHT, LEFT),
])
def test_viewpoint_decides_what_is_visible(change, shows, hides) -> None:
    plain = dataclasses.replace(sample_identity(np.random.default_rng(1)), top_pattern="solid",
                                bag="none", accent_color="yellow", top_color="navy",
                                bag_color="red")
    marked = dataclasses.replace(plain, **change)
    for seed in range(3):
        assert not np.array_equal(_draw(plain, _camera_with_views(shows), seed),
                                  _draw(marked, _camera_with_views(shows), seed))
        assert np.array_equal(_draw(plain, _camera_with_views(hides), seed),
                              _draw(marked, _camera_with_views(hides), seed))


def test_cameras_shift_the_colour_of_the_same_person() -> None:
    person = sample_identity(np.random.default_rng(2))
    cams = [sample_camera(np.random.default_rng(s)) for s in range(4)]
    means = np.array([np.mean([_draw(person, cam, s).reshape(-1, 3).mean(axis=0)
                               for s in range(8)], axis=0) for cam in cams])
    # The average colour of one person differs between cameras by more than a few grey levels.
    spread = means.max(axis=0) - means.min(axis=0)
    assert spread.max() > 10


def test_render_person_returns_bgr_uint8_of_the_requested_size() -> None:
    img = render_person(sample_identity(np.random.default_rng(0)),
                        sample_camera(np.random.default_rng(0)), np.random.default_rng(0),
                        height=80, width=40)
    assert img.shape == (80, 40, 3) and img.dtype == np.uint8
