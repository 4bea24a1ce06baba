"""Scoring against ground truth: tracking metrics worked out by hand, track
identities on constructed cases, and cross-camera mAP against a brute-force loop."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest

from reference import brute_force_map_rank1
from reid.video.measure import cross_camera_map, track_identities, tracking_metrics
from reid.video.mot import MotRow, read_mot
from reid.synthetic.footage import make_synthetic_footage


def box(frame: int, ident: int, x: float, y: float = 0.0, w: float = 10.0, h: float = 20.0,
        **fields) -> MotRow:
    return MotRow(frame, ident, x, y, w, h, **fields)


def gt_box(frame: int, ident: int, x: float, conf: float = 1.0) -> MotRow:
    return box(frame, ident, x, conf=conf, object_class=1, visibility=1.0)


# --------------------------------------------------------------------------------------------
# Files


def test_corners_are_the_projects_boxes():
    row = MotRow.from_corners(4, 2, 10.0, 20.0, 40.0, 80.0, conf=0.9)
    assert (row.x, row.y, row.w, row.h, row.conf) == (10.0, 20.0, 30.0, 60.0, 0.9)
    assert row.corners() == (10.0, 20.0, 40.0, 80.0)


# --------------------------------------------------------------------------------------------
# Tracking metrics, worked out by hand


def test_one_id_switch_a_miss_and_a_false_positive():
    # Person 1 stands at x=0, person 2 at x=100, frames 1-6 (12 ground-truth boxes).
    gt = [gt_box(f, 1, 0) for f in range(1, 7)] + [gt_box(f, 2, 100) for f in range(1, 7)]
    res = ([box(f, 10, 0) for f in (1, 2, 3)] + [box(f, 11, 0) for f in (4, 5, 6)]  # switch
           + [box(f, 20, 100) for f in range(1, 6)]  # misses person 2 in frame 6
           + [box(2, 30, 300)])  # a box on nobody
    m = tracking_metrics(gt, res)
    assert m["num_switches"] == 1
    assert m["num_misses"] == 1 and m["num_false_positives"] == 1
    assert m["mota"] == pytest.approx(1 - (1 + 1 + 1) / 12)
    # IDF1: the best one-to-one pairing is person 1 with track 10 or 11 (3 boxes each) and
    # person 2 with track 20 (5): IDTP 8 of 12 gt boxes and 12 result boxes.
    assert m["idf1"] == pytest.approx(2 * 8 / (12 + 12))
    assert m["idp"] == pytest.approx(8 / 12) and m["idr"] == pytest.approx(8 / 12)
    assert m["precision"] == pytest.approx(11 / 12) and m["recall"] == pytest.approx(11 / 12)
    assert (m["num_tracks"], m["num_gt_ids"], m["num_frames"]) == (4, 2, 6)


def test_a_tracker_that_returns_the_ground_truth_is_perfect():
    rng = np.random.default_rng(0)
    gt = [MotRow(f, pid, float(x), float(y), 30.0, 80.0, 1.0, 1, 1.0)
          for f in range(1, 21) for pid, (x, y) in enumerate(rng.uniform(0, 400, (5, 2)), 1)]
    m = tracking_metrics(gt, [MotRow(r.frame, r.id + 100, r.x, r.y, r.w, r.h, 0.9) for r in gt])
    assert m["idf1"] == 1.0 and m["mota"] == 1.0 and m["num_switches"] == 0
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["num_tracks"] == 5


def test_a_box_matches_only_from_the_iou_threshold():
    gt = [gt_box(1, 1, 0)]
    shifted = [box(1, 5, 5)]  # overlaps half the width: IoU = 100 / 300 = 1/3
    strict = tracking_metrics(gt, shifted, iou_threshold=0.5)
    assert (strict["num_misses"], strict["num_false_positives"]) == (1, 1)
    loose = tracking_metrics(gt, shifted, iou_threshold=0.3)
    assert (loose["num_misses"], loose["num_false_positives"], loose["mota"]) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="iou_threshold"):
        tracking_metrics(gt, shifted, iou_threshold=0)


def test_ignored_ground_truth_is_neither_missed_nor_found():
    gt = [gt_box(1, 1, 0), gt_box(1, 2, 100, conf=0), gt_box(2, 2, 100, conf=0),
          box(1, 3, 200, conf=1, object_class=7, visibility=1.0)]  # a static person: ignored
    res = [box(1, 10, 0), box(1, 20, 100), box(1, 30, 200)]  # person 2 found in frame 1 only
    m = tracking_metrics(gt, res)
    assert (m["num_misses"], m["num_false_positives"], m["num_gt_ids"]) == (0, 0, 1)
    assert m["num_tracks"] == 1 and m["mota"] == 1.0


def test_no_results_scores_zero_recall_and_undefined_precision():
    m = tracking_metrics([gt_box(1, 1, 0), gt_box(2, 1, 0)], [])
    assert m["recall"] == 0.0 and math.isnan(m["precision"]) and m["num_misses"] == 2


# --------------------------------------------------------------------------------------------
# Track identities


def test_each_track_takes_the_person_most_of_its_boxes_match():
    gt = [gt_box(f, 1, 0) for f in range(1, 6)] + [gt_box(f, 2, 100) for f in range(1, 6)]
    res = ([box(f, 7, 0) for f in (1, 2, 3, 4)] + [box(5, 7, 100)]  # 4 x person 1, 1 x person 2
           + [box(f, 8, 500) for f in (1, 2)]  # nobody
           # 2 of 5 boxes on person 2: mostly on nobody.
           + [box(1, 9, 100), box(2, 9, 100), box(3, 9, 600), box(4, 9, 600), box(5, 9, 600)])
    assert track_identities(gt, res) == {7: 1, 8: None, 9: None}


def test_a_tie_goes_to_the_smaller_id_and_half_the_boxes_is_enough():
    gt = [gt_box(f, 2, 0) for f in (1, 2)] + [gt_box(f, 1, 100) for f in (3, 4)]
    res = [box(1, 6, 1), box(2, 6, 1), box(3, 6, 101), box(4, 6, 101)]
    assert track_identities(gt, res) == {6: 1}
    assert track_identities(gt[:2], res) == {6: 2}  # 2 of 4 boxes on person 2


def test_each_ground_truth_box_is_matched_to_one_track_only():
    # Two tracks on the same person in the same frames: the better-overlapping one takes them,
    # the other matches nothing (a duplicate), as a one-to-one matching says.
    gt = [gt_box(f, 1, 0) for f in range(1, 4)]
    res = [box(f, 1, 0) for f in range(1, 4)] + [box(f, 2, 3) for f in range(1, 4)]
    assert track_identities(gt, res) == {1: 1, 2: None}


def test_hungarian_matching_keeps_both_people_where_greedy_would_lose_one():
    # Track 5 overlaps person 1 best (IoU 0.82) but also person 2 (0.67); track 6 only
    # person 1 (0.55). Greedy would give person 1 to track 5 and leave track 6 with nobody.
    gt = [MotRow(1, 1, 0, 0, 100, 100, 1, 1, 1.0), MotRow(1, 2, 30, 0, 100, 100, 1, 1, 1.0)]
    res = [MotRow(1, 5, 10, 0, 100, 100), MotRow(1, 6, -29, 0, 100, 100)]
    assert track_identities(gt, res) == {5: 2, 6: 1}


# --------------------------------------------------------------------------------------------
# Cross-camera search


def brute_force_cross_camera(vectors, pids, cameras):
    """Each known track against the tracks of the other cameras only: the protocol's plain
    loop (tests/reference.py) run one query at a time with that gallery."""
    aps, firsts = [], []
    for q in range(len(vectors)):
        gallery = [g for g in range(len(vectors)) if cameras[g] != cameras[q]]
        g_pids = [-1 if pids[g] is None else pids[g] for g in gallery]
        if pids[q] is None or pids[q] not in g_pids:
            continue
        ap, first = brute_force_map_rank1(vectors[q:q + 1], vectors[gallery], [pids[q]], g_pids,
                                          [0], [1] * len(gallery))
        aps.append(ap)
        firsts.append(first)
    return float(np.mean(aps)), float(np.mean(firsts)), len(aps)


@pytest.mark.parametrize("seed", range(5))
def test_cross_camera_map_is_the_brute_force_definition(seed):
    rng = np.random.default_rng(seed)
    n = 40
    people = rng.integers(1, 9, size=n)
    # Tracks of one person share a direction, plus noise: neither perfect nor random ranking.
    centres = rng.normal(size=(9, 16))
    vectors = centres[people] + rng.normal(scale=1.2, size=(n, 16))
    pids = [None if rng.random() < 0.15 else int(p) for p in people]
    cameras = [str(c) for c in rng.choice(["A", "B", "C"], size=n)]
    got = cross_camera_map(vectors, pids, cameras)
    want = brute_force_cross_camera(vectors, pids, cameras)
    assert got[2] == want[2] > 0
    assert got[0] == pytest.approx(want[0], abs=1e-12)
    assert got[1] == pytest.approx(want[1], abs=1e-12)


def test_cross_camera_map_on_a_case_worked_by_hand():
    # Camera A: person 1 (query); camera B: person 2 then person 1 in order of distance.
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]])
    pids, cameras = [1, 2, 1, 3], ["A", "B", "B", "A"]
    # Query track 0: B holds 1 (dist ~0.006) then 2 (0.29): the match is second, AP 1/2.
    # Query track 2 (B): A holds 0 (dist 0.29) and 3 (0.29): 0 first by index, AP 1.
    # Tracks 1 and 3 have nobody of theirs in another camera: skipped.
    assert cross_camera_map(vectors, pids, cameras) == (pytest.approx(0.75), 0.5, 2)


def test_cross_camera_map_without_a_query_is_nan_and_bad_input_is_refused():
    m, r1, n = cross_camera_map(np.eye(2), [1, 2], ["A", "B"])
    assert math.isnan(m) and math.isnan(r1) and n == 0
    with pytest.raises(ValueError, match="track_vectors"):
        cross_camera_map(np.zeros((2, 3)), [1, 1], ["A", "B"])
    with pytest.raises(ValueError, match="track_cameras"):
        cross_camera_map(np.eye(2), [1, 1], ["A"])


# --------------------------------------------------------------------------------------------
# Against the synthetic footage


def test_synthetic_ground_truth_reads_and_scores_itself_perfectly(tmp_path: pathlib.Path):
    out = tmp_path / "footage"
    make_synthetic_footage(out, cameras=2, people=4, seconds=3, width=320, height=240, seed=5)
    gt = read_mot(out / "A/gt/gt.txt").rows
    assert gt and all(r.object_class == 1 and 0 <= r.visibility <= 1 for r in gt)
    tracks = [MotRow(r.frame, r.id * 10, r.x, r.y, r.w, r.h, 1.0) for r in gt]
    assert tracking_metrics(gt, tracks)["idf1"] == 1.0
    assert track_identities(gt, tracks) == {pid * 10: pid for pid in {r.id for r in gt}}
    # The oracle detections sit on the visible people: every one matches somebody.
    det = read_mot(out / "A/det/det.txt").rows
    as_tracks = [MotRow(r.frame, i, r.x, r.y, r.w, r.h, r.conf) for i, r in enumerate(det)]
    assert None not in track_identities(gt, as_tracks).values()
