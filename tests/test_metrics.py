"""evaluate_rank: hand-worked cases for each rule, and agreement with a per-query Python loop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reid.evaluation import evaluate_rank
from reid.evaluation import metrics as metrics_module


def brute_force(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """One query at a time, from the definitions, with Python lists."""
    cmc_sum = [0.0] * max_rank
    ap_sum = inp_sum = 0.0
    valid = 0
    for q in range(len(q_pids)):
        order = sorted(range(len(g_pids)), key=lambda j: (distmat[q][j], j))
        kept = [j for j in order if not (g_pids[j] == q_pids[q] and g_camids[j] == q_camids[q])]
        hits = [g_pids[j] == q_pids[q] for j in kept]
        if not any(hits):
            continue
        valid += 1
        first = hits.index(True)  # 0-based
        for k in range(max_rank):
            cmc_sum[k] += 1.0 if k >= first else 0.0
        found = 0
        precisions = []
        last = 0
        for position, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                precisions.append(found / position)
                last = position
        ap_sum += sum(precisions) / len(precisions)
        inp_sum += found / last
    return [c / valid for c in cmc_sum], ap_sum / valid, inp_sum / valid, valid


def test_same_camera_removed_distractor_kept():
    # Query: pid 1, camera 0. Distances increase with gallery index.
    #   g0 pid 2 cam 1  negative                  kept position 1
    #   g1 pid 1 cam 0  same pid, same camera  -> removed
    #   g2 pid 1 cam 1  true match                kept position 2
    #   g3 pid 0 cam 1  distractor: a negative    kept position 3
    #   g4 pid 1 cam 2  true match                kept position 4
    #   g5 pid 3 cam 0  other pid, same camera    kept position 5 (only same pid AND camera go)
    # AP = (1/2 + 2/4) / 2 = 0.5;  mINP = 2 matches / last at 4 = 0.5;  CMC: first match at 2.
    # (Dropping the distractor would give AP (1/2 + 2/3) / 2; keeping g1 would give CMC-1 = 1.)
    result = evaluate_rank(
        np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]),
        q_pids=np.array([1]),
        g_pids=np.array([2, 1, 1, 0, 1, 3]),
        q_camids=np.array([0]),
        g_camids=np.array([1, 0, 1, 1, 2, 0]),
        max_rank=5,
    )
    np.testing.assert_allclose(result["cmc"], [0, 1, 1, 1, 1])
    assert result["mAP"] == pytest.approx(0.5)
    assert result["mINP"] == pytest.approx(0.5)
    assert result["num_valid_queries"] == 1


def test_ties_broken_by_gallery_index():
    # Query pid 1, camera 0; all gallery in camera 1.
    #   distances [0.5, 0.5, 0.2, 0.9, 0.9], pids [2, 1, 3, 1, 4]
    # Order by (distance, index): g2 (neg), g0 (neg), g1 (match), g3 (match), g4 (neg).
    # Matches at 3 and 4: AP = (1/3 + 2/4) / 2 = 5/12; mINP = 2/4; CMC = [0, 0, 1, 1, 1].
    # (The other tie order, g2 g1 g0 g4 g3, would give AP (1/2 + 2/5) / 2 = 0.45.)
    distmat = np.array([[0.5, 0.5, 0.2, 0.9, 0.9]], dtype=np.float32)
    args = (np.array([1]), np.array([2, 1, 3, 1, 4]), np.array([0]), np.array([1, 1, 1, 1, 1]))
    for matrix in (distmat, distmat.astype(np.float64), (distmat * 10).astype(np.int64)):
        result = evaluate_rank(matrix, *args, max_rank=5)
        np.testing.assert_allclose(result["cmc"], [0, 0, 1, 1, 1])
        assert result["mAP"] == pytest.approx(5 / 12)
        assert result["mINP"] == pytest.approx(0.5)


def test_negative_and_positive_zero_tie():
    # -0.0 == 0.0, so the two are a tie and the lower index (the negative g0) comes first:
    # match at position 2, AP = 1/2.
    result = evaluate_rank(
        np.array([[0.0, -0.0]], dtype=np.float32),
        np.array([1]), np.array([2, 1]), np.array([0]), np.array([1, 1]), max_rank=2,
    )
    assert result["mAP"] == pytest.approx(0.5)


def test_query_without_valid_match_is_skipped_with_warning():
    # Gallery: g0 pid 1 cam 0, g1 pid 2 cam 1, g2 pid 1 cam 1.
    # q0: pid 1 cam 0, distances [0.1, 0.2, 0.3]. g0 removed (same pid and camera);
    #     kept g1 (neg, pos 1), g2 (match, pos 2): AP 1/2, mINP 1/2, first match at 2.
    # q1: pid 2 cam 1. Its only same-pid entry g1 is in its own camera and is removed:
    #     no true match left -> skipped.
    # q2: pid 2 cam 0, distances [0.3, 0.1, 0.2]: g1 (match) first: AP 1, mINP 1, CMC-1 hit.
    # Over the 2 valid queries: mAP = (0.5 + 1) / 2 = 0.75, mINP = 0.75, CMC = [0.5, 1, 1].
    distmat = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.3, 0.1, 0.2]])
    with pytest.warns(UserWarning, match="1 of 3 queries"):
        result = evaluate_rank(
            distmat,
            q_pids=np.array([1, 2, 2]),
            g_pids=np.array([1, 2, 1]),
            q_camids=np.array([0, 1, 0]),
            g_camids=np.array([0, 1, 1]),
            max_rank=3,
        )
    assert result["num_valid_queries"] == 2
    np.testing.assert_allclose(result["cmc"], [0.5, 1, 1])
    assert result["mAP"] == pytest.approx(0.75)
    assert result["mINP"] == pytest.approx(0.75)


def test_only_same_camera_matches_means_no_valid_query():
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_rank(
            np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 1])
        )


def test_gallery_shorter_than_max_rank_pads_cmc():
    # Gallery of 3: g0 pid 5 cam 1, g1 pid 7 cam 1, g2 pid 7 cam 2.
    # q0 pid 7 cam 0, distances [0.1, 0.2, 0.3]: g0 neg, g1 match, g2 match.
    #    AP = (1/2 + 2/3) / 2 = 7/12; mINP = 2/3; first match at 2.
    # q1 pid 5 cam 0, distances [0.3, 0.1, 0.2]: g1 neg, g2 neg, g0 match.
    #    AP = 1/3; mINP = 1/3; first match at 3.
    # CMC = [0, 0.5, 1] then padded with 1 to length 10.
    # mAP = (7/12 + 4/12) / 2 = 11/24; mINP = (2/3 + 1/3) / 2 = 1/2.
    result = evaluate_rank(
        np.array([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2]]),
        q_pids=np.array([7, 5]),
        g_pids=np.array([5, 7, 7]),
        q_camids=np.array([0, 0]),
        g_camids=np.array([1, 1, 2]),
        max_rank=10,
    )
    assert result["cmc"].shape == (10,)
    np.testing.assert_allclose(result["cmc"], [0, 0.5] + [1.0] * 8)
    assert result["mAP"] == pytest.approx(11 / 24)
    assert result["mINP"] == pytest.approx(0.5)


def test_minp_differs_from_map():
    # Query pid 1 cam 0; gallery all cam 1, pids in distance order [1, 2, 2, 2, 1].
    # Matches at 1 and 5: AP = (1/1 + 2/5) / 2 = 0.7; mINP = 2/5 = 0.4; CMC-1 = 1.
    result = evaluate_rank(
        np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]),
        np.array([1]), np.array([1, 2, 2, 2, 1]), np.array([0]), np.ones(5, dtype=int), max_rank=1,
    )
    np.testing.assert_allclose(result["cmc"], [1.0])
    assert result["mAP"] == pytest.approx(0.7)
    assert result["mINP"] == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_agrees_with_brute_force_loop(seed, dtype, monkeypatch):
    rng = np.random.default_rng(seed)
    num_query, num_gallery, max_rank = 37, 150, 20
    # Coarse distance values give many exact ties; pids include distractors (0) and some pids
    # seen by a single camera, so that some queries have no valid match.
    distmat = rng.integers(0, 40, size=(num_query, num_gallery)).astype(dtype)
    g_pids = rng.integers(0, 12, size=num_gallery)
    q_pids = rng.integers(1, 14, size=num_query)
    g_camids = rng.integers(0, 3, size=num_gallery)
    q_camids = rng.integers(0, 3, size=num_query)
    # Small blocks: several query blocks, the last one partial.
    monkeypatch.setattr(metrics_module, "_BLOCK_ELEMENTS", 5 * num_gallery)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank)
    cmc, m_ap, m_inp, valid = brute_force(
        distmat.tolist(), q_pids.tolist(), g_pids.tolist(), q_camids.tolist(), g_camids.tolist(),
        max_rank,
    )
    assert 0 < result["num_valid_queries"] == valid
    np.testing.assert_allclose(result["cmc"], cmc, atol=1e-12)
    assert result["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert result["mINP"] == pytest.approx(m_inp, abs=1e-12)


def test_continuous_float32_distances_agree_with_brute_force():
    rng = np.random.default_rng(9)
    distmat = rng.normal(size=(25, 300)).astype(np.float32)
    distmat[:, ::7] = distmat[:, :1]  # a block of exact ties in every row, negatives included
    q_pids = rng.integers(1, 10, size=25)
    g_pids = rng.integers(0, 10, size=300)
    q_camids = rng.integers(0, 4, size=25)
    g_camids = rng.integers(0, 4, size=300)
    result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50)
    cmc, m_ap, m_inp, valid = brute_force(
        distmat.tolist(), q_pids.tolist(), g_pids.tolist(), q_camids.tolist(), g_camids.tolist(), 50
    )
    assert result["num_valid_queries"] == valid
    np.testing.assert_allclose(result["cmc"], cmc, atol=1e-12)
    assert result["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert result["mINP"] == pytest.approx(m_inp, abs=1e-12)


def test_stable_argsort_rows_matches_numpy_stable_sort():
    rng = np.random.default_rng(4)
    for dtype in (np.float16, np.float32, np.float64, np.int8, np.int64, np.uint16):
        block = rng.integers(0, 6, size=(20, 64)).astype(dtype)
        if np.issubdtype(dtype, np.floating):
            block = block - 3 + rng.choice([0, 0.5], size=block.shape).astype(dtype)
            block[0, :4] = [-np.inf, np.inf, -0.0, 0.0]
        np.testing.assert_array_equal(
            metrics_module._stable_argsort_rows(block), np.argsort(block, axis=1, kind="stable")
        )


def test_result_ranges():
    rng = np.random.default_rng(1)
    result = evaluate_rank(
        rng.random((30, 80)), rng.integers(1, 5, 30), rng.integers(0, 5, 80),
        np.zeros(30, dtype=int), np.ones(80, dtype=int),
    )
    cmc = result["cmc"]
    assert cmc.shape == (50,)
    assert np.all(np.diff(cmc) >= 0) and 0 <= cmc[0] and cmc[-1] == pytest.approx(1.0)
    assert 0 < result["mINP"] <= 1 and 0 < result["mAP"] <= 1
    assert isinstance(result["mAP"], float) and isinstance(result["num_valid_queries"], int)


@pytest.mark.parametrize(
    "override,fragment",
    [
        ({"distmat": np.zeros(4)}, "distmat must be a 2-D"),
        ({"q_pids": np.zeros(3)}, "q_pids has length 3 but distmat has 2 rows"),
        ({"q_camids": np.zeros(1)}, "q_camids has length 1"),
        ({"g_pids": np.zeros(5)}, "g_pids has length 5 but distmat has 4 columns"),
        ({"g_camids": np.zeros((4, 1))}, "g_camids must be 1-D"),
        ({"max_rank": 0}, "max_rank"),
        ({"distmat": np.full((2, 4), np.nan)}, "NaN"),
        ({"distmat": np.full((2, 4), "a")}, "numeric"),
    ],
)
def test_rejects_bad_input(override, fragment):
    args = {
        "distmat": np.zeros((2, 4)),
        "q_pids": np.array([1, 2]),
        "g_pids": np.array([1, 2, 1, 2]),
        "q_camids": np.array([0, 0]),
        "g_camids": np.array([1, 1, 1, 1]),
    }
    args.update(override)
    with pytest.raises(ValueError, match=fragment):
        evaluate_rank(**args)
