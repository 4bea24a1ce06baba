"""Verification and open-set figures against hand-worked cases and per-pair Python loops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from reid.evaluation.verification import (accept_rate, dir_at_far, equal_error_rate,
                                          open_set_split, open_set_top1, pair_scores,
                                          roc_curve, tar_at_far, threshold_at_far)

GENUINE = np.array([0.9, 0.8, 0.7, 0.55])
IMPOSTOR = np.array([0.85, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2])


def rates(genuine, impostor, t):
    """(FAR, TAR) at threshold t, one pair at a time."""
    far = sum(1 for s in impostor if s >= t) / len(impostor)
    tar = sum(1 for s in genuine if s >= t) / len(genuine)
    return far, tar


def test_threshold_at_far_hand_worked():
    # 10 impostors: FAR 0.1 allows one (0.85), so 0.6 must be rejected: just above it.
    t = threshold_at_far(IMPOSTOR, 0.1)
    assert 0.6 < t < 0.6 + 1e-12
    assert rates(GENUINE, IMPOSTOR, t) == (0.1, 0.75)
    assert tar_at_far(GENUINE, IMPOSTOR, 0.1) == (0.75, t)
    # FAR 0 rejects every impostor; 0.2 allows two.
    assert rates(GENUINE, IMPOSTOR, threshold_at_far(IMPOSTOR, 0.0))[0] == 0.0
    assert rates(GENUINE, IMPOSTOR, threshold_at_far(IMPOSTOR, 0.2)) == (0.2, 1.0)
    # Ties go together: two impostors at 0.5 with one allowed reject both.
    tied = np.array([0.5, 0.5, 0.1, 0.0])
    assert accept_rate(tied, threshold_at_far(tied, 0.25)) == 0.0


def test_the_threshold_is_the_lowest_that_keeps_the_rate():
    rng = np.random.default_rng(0)
    impostor = np.round(rng.normal(size=500), 2)  # many ties
    for far in (0.0, 0.001, 0.01, 0.05, 0.3):
        t = threshold_at_far(impostor, far)
        assert accept_rate(impostor, t) <= far
        lower = [s for s in np.unique(impostor) if s < t]
        if lower:  # the next reachable threshold down breaks the rate
            assert accept_rate(impostor, max(lower)) > far


def test_a_threshold_separates_separable_scores_exactly():
    apart = IMPOSTOR[2:]  # without 0.85 and 0.6 every impostor is below every genuine score
    t = threshold_at_far(apart, 0.0)
    assert rates(GENUINE, apart, t) == (0.0, 1.0)
    eer, at = equal_error_rate(GENUINE, apart)
    assert eer == 0.0 and rates(GENUINE, apart, at) == (0.0, 1.0)


def test_roc_and_eer_match_a_loop():
    rng = np.random.default_rng(1)
    genuine = rng.normal(1.0, 0.5, 200)
    impostor = rng.normal(0.0, 0.5, 700)
    far, tar, thresholds = roc_curve(genuine, impostor)
    for i in range(0, len(thresholds), 37):
        assert (far[i], tar[i]) == pytest.approx(rates(genuine, impostor, thresholds[i]))
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
    # EER by brute force over every reachable threshold.
    best = min((abs(f - (1 - t)), (f + 1 - t) / 2) for f, t in
               (rates(genuine, impostor, s) for s in thresholds))
    eer, _ = equal_error_rate(genuine, impostor)
    assert eer == pytest.approx(best[1])
    assert 0.1 < eer < 0.2  # two unit-apart normals of sd 0.5: about 0.16


def test_pair_scores_follow_the_ranking_protocol():
    query = np.array([[1.0, 0.0], [0.0, 1.0]])
    gallery = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0], [1.0, 1.0]])
    q_pids, q_cams = np.array([1, 2]), np.array([1, 1])
    g_pids, g_cams = np.array([1, 1, 2, -1]), np.array([1, 2, 1, 2])
    genuine, impostor = pair_scores(query, gallery, q_pids, g_pids, q_cams, g_cams)
    # Query 1: gallery 0 is its identity from its camera (left out), gallery 1 a genuine pair,
    # gallery 2 an impostor, gallery 3 junk. Query 2: gallery 2 left out, 0 and 1 impostors.
    np.testing.assert_allclose(np.sort(genuine), [0.6])
    np.testing.assert_allclose(np.sort(impostor), [0.0, 0.0, 0.8])


def test_open_set_identification_hand_worked():
    # Two mated queries (one right at 0.9, one wrong at 0.8), four unmated (top-1 0.85 ... 0.2).
    dir_rate, t = dir_at_far([0.9, 0.8], [True, False], [0.85, 0.5, 0.3, 0.2], far=0.25)
    assert 0.5 < t < 0.5 + 1e-12 and dir_rate == 0.5
    # No unmated query through: the threshold goes above 0.85, and the right 0.9 still passes.
    assert dir_at_far([0.9, 0.8], [True, False], [0.85, 0.5, 0.3, 0.2], far=0.0)[0] == 0.5
    assert dir_at_far([0.8], [True], [0.85], far=0.0)[0] == 0.0


def test_open_set_top1_matches_a_loop():
    rng = np.random.default_rng(2)
    q_pids, q_cams = np.repeat(np.arange(1, 7), 2), np.tile([1, 2], 6)
    g_pids, g_cams = np.repeat(np.arange(1, 7), 3), np.tile([1, 2, 3], 6)
    centres = rng.normal(size=(7, 8))
    query = centres[q_pids] + 0.3 * rng.normal(size=(12, 8))
    gallery = centres[g_pids] + 0.3 * rng.normal(size=(18, 8))
    left_out = open_set_split(g_pids, 1 / 3, seed=0)
    assert len(left_out) == 2 and set(left_out) <= set(range(1, 7))
    mated_s, mated_ok, unmated_s = open_set_top1(query, gallery, q_pids, g_pids, q_cams,
                                                 g_cams, left_out)
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    want_mated, want_unmated = [], []
    for q in range(12):
        best, best_pid = -np.inf, None
        for j in range(18):
            if g_pids[j] in left_out or (g_pids[j] == q_pids[q] and g_cams[j] == q_cams[q]):
                continue
            s = float(unit(query[q]) @ unit(gallery[j]))
            if s > best:
                best, best_pid = s, g_pids[j]
        if q_pids[q] in left_out:
            want_unmated.append(best)
        else:
            want_mated.append((best, best_pid == q_pids[q]))
    np.testing.assert_allclose(unmated_s, want_unmated)
    np.testing.assert_allclose(mated_s, [s for s, _ in want_mated])
    assert mated_ok.tolist() == [ok for _, ok in want_mated]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="impostor: no scores"):
        threshold_at_far([], 0.1)
    with pytest.raises(ValueError, match="far: expected a rate in"):
        threshold_at_far(IMPOSTOR, 1.5)
    with pytest.raises(ValueError, match="leaves out 0"):
        open_set_split(np.array([1, 2, 3]), 0.1)


def test_roc_picture_puts_the_curve_where_the_axes_say(tmp_path):
    from reid.engine import roc_picture as rp

    # The axes by hand: 1e-4 at the left margin, 1 at the right, TAR 0 at the bottom margin.
    assert rp.to_pixel(1e-4, 0.0) == (rp.MARGIN_LEFT, rp.HEIGHT - rp.MARGIN_BOTTOM)
    assert rp.to_pixel(1.0, 1.0) == (rp.WIDTH - rp.MARGIN_RIGHT, rp.MARGIN_TOP)
    middle_x = rp.MARGIN_LEFT + (rp.WIDTH - rp.MARGIN_LEFT - rp.MARGIN_RIGHT) / 2
    assert rp.to_pixel(1e-2, 0.5)[0] == round(middle_x)  # 1e-2 is halfway on a 1e-4..1 log axis
    path = tmp_path / "roc.png"
    far, tar = np.array([1e-4, 1e-2, 1.0]), np.array([0.5, 0.5, 1.0])
    rp.save_roc(path, far, tar, {1e-2: 0.5})
    picture = cv2.imread(str(path))
    x, y = rp.to_pixel(10 ** -3, 0.5)  # on the flat stretch between the first two points
    assert tuple(int(v) for v in picture[y, x]) == rp.CURVE
    x, y = rp.to_pixel(10 ** -3, 0.9)  # well above it: no curve
    assert tuple(int(v) for v in picture[y, x]) != rp.CURVE
    with pytest.raises(ValueError, match="cannot write the ROC picture"):
        rp.save_roc(tmp_path / "roc.txt", far, tar, {})
