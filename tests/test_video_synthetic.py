"""Synthetic footage: what the files say is checked against the pixels and against physics
(boxes in the frame, smooth walking, people drawn where the ground truth puts them, nobody
drawn elsewhere), plus cross-camera identities, determinism, safe writing and bad arguments.

The footage here is small (2 cameras x 3 s, 4 people) so the file runs in seconds. Files are
parsed with numpy and configparser, not with the project's MOT reader (tests/test_video_mot.py
checks that one).
"""

from __future__ import annotations

import configparser
import datetime
import json
import pathlib
import re

import cv2
import numpy as np
import pytest

from reid.demo import DEMO_IDS
from reid.synthetic import crops, drawing, sampling
from reid.synthetic.footage import (MANIFEST_NAME, FootageParams, make_synthetic_footage,
                                    plan_footage)
from reid.video.errors import FootageError
from tool_runner import tool_main

SMALL = dict(cameras=2, people=4, seconds=3, fps=10, width=320, height=240, seed=11)
# Written independently of the generator: Market-1501's naming, anchored at both ends.
QUERY_NAME = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.jpg$")


def read_video(path: pathlib.Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def read_table(path: pathlib.Path, columns: int) -> np.ndarray:
    table = np.loadtxt(path, delimiter=",", ndmin=2)
    assert table.shape[1] == columns, f"{path}: {table.shape[1]} columns"
    return table


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("footage") / "small"
    make_synthetic_footage(out, **SMALL)
    return out


@pytest.fixture(scope="module")
def manifest(footage: pathlib.Path) -> dict:
    return json.loads((footage / MANIFEST_NAME).read_text())


@pytest.fixture(scope="module")
def videos(footage: pathlib.Path, manifest: dict) -> dict[str, list[np.ndarray]]:
    return {c["name"]: read_video(footage / c["video"]) for c in manifest["cameras"]}


def test_layout_and_manifest(footage, manifest):
    names = [c["name"] for c in manifest["cameras"]]
    assert names == ["A", "B"]
    for c in manifest["cameras"]:
        for key in ("video", "gt", "det", "seqinfo"):
            assert (footage / c[key]).is_file()
        assert c["video"] == f"{c['name']}.avi" and c["gt"] == f"{c['name']}/gt/gt.txt"
        assert c["frames"] == 30
    starts = [datetime.datetime.fromisoformat(c["start"]) for c in manifest["cameras"]]
    assert starts[0] < starts[1]  # the cameras start at different wall-clock times
    assert all(s.tzinfo is not None for s in starts)
    assert sorted(str(p.relative_to(footage)) for p in footage.rglob("*") if p.is_file()) \
        == manifest["files"]


def test_videos_read_back_with_their_frames_and_size(footage, manifest, videos):
    for c in manifest["cameras"]:
        frames = videos[c["name"]]
        assert len(frames) == c["frames"] == 30
        assert all(f.shape == (240, 320, 3) for f in frames)
        info = configparser.ConfigParser()
        info.read(footage / c["seqinfo"])
        seq = info["Sequence"]
        assert (seq["name"], int(seq["frameRate"]), int(seq["seqLength"]), int(seq["imWidth"]),
                int(seq["imHeight"])) == (c["name"], 10, 30, 320, 240)
        assert seq["imExt"] == ".jpg"


def test_ground_truth_boxes_lie_in_the_frame_and_are_well_formed(footage, manifest):
    width, height = manifest["width"], manifest["height"]
    for c in manifest["cameras"]:
        gt = read_table(footage / c["gt"], 9)
        frame, x, y, w, h, conf, cls, vis = gt[:, 0], *gt[:, 2:6].T, gt[:, 6], gt[:, 7], gt[:, 8]
        assert frame.min() >= 1 and frame.max() <= c["frames"]
        assert (x >= 0).all() and (y >= 0).all() and (w > 0).all() and (h > 0).all()
        assert (x + w <= width).all() and (y + h <= height).all()
        assert set(cls) == {1} and set(conf) <= {0, 1}
        assert ((vis >= 0) & (vis <= 1)).all()
        assert ((conf == 0) == (vis < 0.1)).all()  # the ignore flag follows visibility
        # One box per person and frame.
        pairs = {(int(f), int(i)) for f, i in gt[:, :2]}
        assert len(pairs) == len(gt)


def test_people_are_60_to_200_pixels_tall_at_360_rows(footage, manifest):
    # At 240 rows: 40-133 px. Boxes cut by the frame's sides keep their full height.
    heights = np.concatenate([read_table(footage / c["gt"], 9)[:, 5] for c in manifest["cameras"]])
    assert heights.min() >= 40 * 0.9 and heights.max() <= 200 * 240 / 360 * 1.08


def test_each_person_walks_smoothly_and_without_gaps(footage, manifest):
    for c in manifest["cameras"]:
        gt = read_table(footage / c["gt"], 9)
        for pid in np.unique(gt[:, 1]):
            rows = gt[gt[:, 1] == pid]
            rows = rows[np.argsort(rows[:, 0])]
            # One walk per camera: the person is in the picture on consecutive frames.
            assert (np.diff(rows[:, 0]) == 1).all(), f"camera {c['name']}, person {pid}"
            centre = rows[:, 2:4] + rows[:, 4:6] / 2
            step = np.linalg.norm(np.diff(centre, axis=0), axis=1)
            # 1.6 m/s at 10 fps is 0.09 body heights a frame; swinging limbs move the box edges.
            assert (step <= 0.25 * rows[1:, 5]).all(), f"camera {c['name']}, person {pid}"
            assert (np.abs(np.diff(rows[:, 5])) <= 0.1 * rows[1:, 5] + 2).all()


def test_people_are_drawn_where_the_ground_truth_says_and_nowhere_else(footage, manifest,
                                                                       videos):
    for c in manifest["cameras"]:
        frames = np.stack(videos[c["name"]]).astype(np.int16)
        gt = read_table(footage / c["gt"], 9)
        covered = np.zeros(frames.shape[:3], bool)  # (frame, row, column) inside a gt box
        for f, _, x, y, w, h, *_ in gt:
            covered[int(f) - 1, max(0, int(y) - 3):int(y + h) + 3,
                    max(0, int(x) - 3):int(x + w) + 3] = True
        # The empty scene: each pixel's median over the frames whose ground truth has nobody
        # there (pixels covered in every frame are not judged).
        stack = np.ma.masked_array(frames, np.broadcast_to(covered[..., None], frames.shape))
        background = np.ma.median(stack, axis=0)
        difference = np.ma.abs(stack.data - background).max(axis=3)  # (frame, row, column)
        judged = ~np.ma.getmaskarray(difference)
        # Compression noise stays below 12 grey levels; a person differs by more.
        for f in range(len(frames)):
            outside = difference[f].data[judged[f] & ~covered[f]]
            assert np.percentile(outside, 99.9) < 15, f"camera {c['name']} frame {f + 1}"
        inside = []
        for f, _, x, y, w, h, _, _, vis in gt:
            if vis >= 0.9:
                x0, y0, x1, y1 = int(x), int(y), int(x + w), int(y + h)
                box = difference[int(f) - 1, y0:y1, x0:x1].data
                ok = judged[int(f) - 1, y0:y1, x0:x1]
                if ok.mean() > 0.5:
                    # A body fills a good part of its box with something that is not the scene.
                    inside.append(float((box[ok] > 15).mean()))
        assert len(inside) >= 5, f"camera {c['name']}: too few fully visible people to judge"
        assert min(inside) > 0.1, f"camera {c['name']}: {min(inside):.2f}"


def test_identities_are_the_same_across_cameras_at_different_times(footage, manifest):
    seen: dict[int, dict[str, tuple[datetime.datetime, datetime.datetime]]] = {}
    for c in manifest["cameras"]:
        gt = read_table(footage / c["gt"], 9)
        start = datetime.datetime.fromisoformat(c["start"])
        assert sorted({int(i) for i in gt[:, 1]}) == c["identities"]
        for pid in np.unique(gt[:, 1]).astype(int):
            frames = gt[gt[:, 1] == pid, 0]
            seen.setdefault(int(pid), {})[c["name"]] = (
                start + datetime.timedelta(seconds=(frames.min() - 1) / 10),
                start + datetime.timedelta(seconds=(frames.max() - 1) / 10))
    people = {p["id"]: p for p in manifest["identities"]}
    assert sorted(people) == [1, 2, 3, 4]
    singles = [pid for pid, p in people.items() if p["single_camera"]]
    assert len(singles) == 1  # a quarter of the people pass one camera only
    for pid, person in people.items():
        assert sorted(seen.get(pid, {})) == person["cameras"]
        assert len(person["cameras"]) == (1 if pid in singles else 2)
        spans = sorted(seen[pid].values())
        for (_, end), (begin, _) in zip(spans, spans[1:]):
            assert end < begin, f"person {pid} is in two cameras at once"


def test_oracle_detections_are_the_visible_ground_truth_boxes_jittered(footage, manifest):
    for c in manifest["cameras"]:
        gt = read_table(footage / c["gt"], 9)
        det = read_table(footage / c["det"], 10)
        assert (det[:, 1] == -1).all() and (det[:, 7:] == -1).all()
        assert ((det[:, 6] > 0) & (det[:, 6] < 1)).all()
        visible = gt[gt[:, 8] >= 0.3]
        assert len(det) == len(visible)
        for f in np.unique(det[:, 0]):
            d, g = det[det[:, 0] == f, 2:6], visible[visible[:, 0] == f, 2:6]
            iou = _iou(d, g)
            assert (iou.max(axis=1) > 0.6).all()


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, (ax, ay, aw, ah) in enumerate(a):
        for j, (bx, by, bw, bh) in enumerate(b):
            iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
            ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
            out[i, j] = iw * ih / (aw * ah + bw * bh - iw * ih)
    return out


def test_query_photos_one_per_person_from_another_camera(footage, manifest):
    files = sorted((footage / "queries").iterdir())
    assert len(files) == 4
    camids = {c["camid"] for c in manifest["cameras"]}
    for path in files:
        m = QUERY_NAME.match(path.name)
        assert m, path.name
        assert int(m[2]) not in camids
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (128, 64, 3)
    assert sorted(int(QUERY_NAME.match(p.name)[1]) for p in files) == [1, 2, 3, 4]
    assert [p["query"] for p in manifest["identities"]] == [
        f"queries/{p.name}" for p in files]


def test_the_same_seed_gives_the_same_footage_and_another_seed_other(footage, tmp_path):
    again = tmp_path / "again"
    make_synthetic_footage(again, **SMALL)
    for camera in ("A", "B"):
        for name in (f"{camera}/gt/gt.txt", f"{camera}/det/det.txt"):
            assert (again / name).read_bytes() == (footage / name).read_bytes()
        assert np.array_equal(np.stack(read_video(again / f"{camera}.avi")),
                              np.stack(read_video(footage / f"{camera}.avi")))
    other = tmp_path / "other"
    make_synthetic_footage(other, **{**SMALL, "seed": 12})
    assert (other / "A/gt/gt.txt").read_bytes() != (footage / "A/gt/gt.txt").read_bytes()


def test_footage_people_are_not_the_demo_training_people():
    demo = set(crops.plan_dataset(crops.SyntheticParams(ids=DEMO_IDS, seed=0))
               .identities.values())
    for seed in (0, 1):
        people = plan_footage(FootageParams(seed=seed)).identities.values()
        assert not demo & set(people)


def test_default_footage_people_pass_two_or_more_cameras():
    plan = plan_footage(FootageParams())
    cameras: dict[int, set[int]] = {}
    for walk in plan.walks:
        cameras.setdefault(walk.pid, set()).add(walk.camera)
    assert len(plan.single_camera) == 2
    for pid in plan.identities:
        assert len(cameras[pid]) == 1 if pid in plan.single_camera else len(cameras[pid]) >= 2


def test_a_region_gets_the_look_it_has_in_the_whole_image():
    rng = np.random.default_rng(3)
    camera = sampling.sample_camera(rng)
    look = drawing.sample_camera_look(camera, rng)
    image = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    noise = rng.normal(0, camera.noise, size=image.shape).astype(np.float32)
    whole = drawing.apply_camera_look(image, camera, look, noise)
    margin = int(np.ceil(4 * look.blur)) + 2
    x0, y0, x1, y1 = 20, 10, 50, 40
    part = drawing.apply_camera_look(image[y0 - margin:y1 + margin, x0 - margin:x1 + margin],
                                   camera, look,
                                   noise[y0 - margin:y1 + margin, x0 - margin:x1 + margin],
                                   window=(x0 - margin, y0 - margin, 80, 60))
    inner = part[margin:-margin, margin:-margin].astype(int)
    assert np.abs(inner - whole[y0:y1, x0:x1]).max() <= 1


def test_draw_person_at_draws_in_place_and_refuses_an_unknown_view():
    person = sampling.sample_identities(1, np.random.default_rng(0))[0]
    canvas = np.zeros((200, 100, 3), np.uint8)
    drawing.draw_person_at(canvas, person, view="left", cx=50, feet=190, height=160, stride=0.4)
    rows, cols = np.nonzero(canvas.any(axis=2))
    assert 25 <= rows.min() <= 35 and rows.max() >= 185 and 15 < cols.min() and cols.max() < 85
    with pytest.raises(ValueError, match="view"):
        drawing.draw_person_at(canvas, person, view="up", cx=50, feet=190, height=160)


def test_complete_footage_is_skipped_and_other_parameters_redraw_it(tmp_path):
    out = tmp_path / "f"
    first = make_synthetic_footage(out, **SMALL)
    assert not first.skipped
    assert make_synthetic_footage(out, **SMALL).skipped
    changed = make_synthetic_footage(out, **{**SMALL, "people": 3})
    assert not changed.skipped and changed.replaced
    assert len(json.loads((out / MANIFEST_NAME).read_text())["identities"]) == 3
    assert not [p for p in tmp_path.iterdir() if p.name != "f"]  # no staging folder left


def test_a_folder_it_did_not_write_is_refused(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FootageError, match="not written by this generator"):
        make_synthetic_footage(foreign, **SMALL)
    assert (foreign / "notes.txt").read_text() == "mine"
    ours = tmp_path / "ours"
    make_synthetic_footage(ours, **SMALL)
    (ours / "A" / "extra.txt").write_text("added by hand")
    with pytest.raises(FootageError, match=r"did not write \(A/extra.txt\)"):
        make_synthetic_footage(ours, **{**SMALL, "seed": 3})
    assert (ours / "A" / "extra.txt").is_file()


@pytest.mark.parametrize("field, value, message", [
    ("cameras", 1, "cameras: need 2..8"), ("cameras", 9, "cameras: need 2..8"),
    ("people", 1, "people: need 2..999"), ("seconds", 1, "seconds: need 2..600"),
    ("seconds", float("nan"), "seconds: expected a finite number"),
    ("fps", 0, "fps: need 1..60"), ("width", 100, "width: need 160..1920"),
    ("height", 2000, "height: need 120..1080"), ("seed", -1, "seed: need 0 <= seed"),
    ("people", 2.5, "people: expected an integer"),
    ("absent", -1, "absent: need 0..2"), ("absent", 3, "absent: need 0..2 (of the 4 people"),
    ("absent", 1.0, "absent: expected an integer"),
])
def test_bad_arguments_name_the_argument(tmp_path, field, value, message):
    with pytest.raises(FootageError, match=re.escape(message)):
        make_synthetic_footage(tmp_path / "f", **{**SMALL, field: value})
    assert not (tmp_path / "f").exists()


def test_the_tool_writes_footage_and_reports_bad_arguments_in_one_line(tmp_path, capsys):
    main = tool_main("make_synthetic_video")
    out = tmp_path / "video"
    assert main(["--out", str(out), "--cameras", "2", "--people", "4", "--seconds", "3",
                 "--size", "320x240", "--seed", "11", "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "2 videos written" in printed.out and printed.err == ""
    assert (out / "B.avi").is_file()
    for argv, message in ((["--size", "320by240"], "error: --size: expected WIDTHxHEIGHT"),
                          (["--cameras", "9"], "error: cameras: need 2..8"),
                          (["--people", "4", "--absent", "3"], "error: absent: need 0..2")):
        assert main(["--out", str(tmp_path / "bad"), *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


def test_absent_people_have_a_query_photo_and_pass_no_camera(tmp_path):
    out = tmp_path / "absent"
    summary = make_synthetic_footage(out, **{**SMALL, "people": 5, "absent": 2})
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["params"]["people"] == 5 and manifest["params"]["absent"] == 2
    people = {p["id"]: p for p in manifest["identities"]}
    assert sorted(people) == [1, 2, 3, 4, 5]  # 5 people in all, 2 of them absent
    absent = sorted(pid for pid, p in people.items() if p["absent"])
    assert len(absent) == 2 and list(summary.absent) == absent
    assert f"people {absent[0]}, {absent[1]}" in summary.text().splitlines()[-1]
    in_footage = set()
    for c in manifest["cameras"]:
        in_footage |= {int(i) for i in read_table(out / c["gt"], 9)[:, 1]}
    assert in_footage == set(people) - set(absent)  # everyone else walks past some camera
    camids = {c["camid"] for c in manifest["cameras"]}
    for pid, person in people.items():
        assert bool(person["cameras"]) == bool(person["walks"]) == (pid not in absent)
        photo = QUERY_NAME.match(pathlib.Path(person["query"]).name)
        assert int(photo[1]) == pid and int(photo[2]) not in camids
        assert cv2.imread(str(out / person["query"])).shape == (128, 64, 3)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) \
        == manifest["files"]
    again = make_synthetic_footage(out, **{**SMALL, "people": 5, "absent": 2})
    assert again.skipped and again.absent == summary.absent


def test_absent_people_are_drawn_with_the_others_and_none_keep_the_old_manifest():
    everyone = plan_footage(FootageParams(people=8, seed=4))
    some_absent = plan_footage(FootageParams(people=8, seed=4, absent=3))
    # The same people, in the same colour groups: the absent ones look like people in the
    # footage, and are none of them.
    assert some_absent.identities == everyone.identities
    assert len(some_absent.absent) == 3 and not everyone.absent
    walkers = {w.pid for w in some_absent.walks}
    assert walkers == set(range(1, 9)) - some_absent.absent
    assert len(some_absent.single_camera) == 5 // 4
    # Without absent people the manifest's parameters are those of footage drawn before the
    # option existed, so that footage is still found complete.
    assert "absent" not in FootageParams().manifest_params()
    assert FootageParams(absent=1).manifest_params()["absent"] == 1
