"""k-reciprocal re-ranking against two independent references.

1. `reference_re_ranking`: the dense algorithm of the widely used implementation, step for step
   (full N x N distance, full argsort, dense V, per-row Python loops, inverted-index Jaccard).
2. `paper_re_ranking`: the paper's set definitions written with Python sets and dicts.
"""

from __future__ import annotations

import numpy as np
import pytest

from reid.evaluation import re_ranking
from reid.evaluation import rerank as rerank_module


# Reference semantics: `re_ranking` of reid-strong-baseline (github.com/michuanhaohao/
# reid-strong-baseline, utils/re_ranking.py, MIT licence), itself from Zhong et al.'s code
# (github.com/zhunzhong07/person-re-ranking), reproduced here in structure, not copied: the same
# steps in the same order on the same arrays. Two deliberate differences: V and the Jaccard
# accumulator are float32 as in the Houjing Huang / torchreid versions of the same function (the
# strong-baseline's float16 cannot be matched to 1e-4 by anything that is not float16 itself),
# and features come in as numpy arrays instead of torch tensors.
def reference_re_ranking(prob_fea, gal_fea, k1, k2, lambda_value):
    query_num = prob_fea.shape[0]
    feat = np.concatenate([prob_fea, gal_fea]).astype(np.float32)
    all_num = feat.shape[0]
    sq = np.sum(feat**2, axis=1, keepdims=True)
    original_dist = (sq + sq.T - 2 * feat @ feat.T).astype(np.float32)
    gallery_num = original_dist.shape[0]
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)

    for i in range(all_num):
        forward = initial_rank[i, : k1 + 1]
        backward = initial_rank[forward, : k1 + 1]
        k_reciprocal_index = forward[np.where(backward == i)[0]]
        expansion = k_reciprocal_index
        half = int(np.around(k1 / 2))
        for candidate in k_reciprocal_index:
            cand_forward = initial_rank[candidate, : half + 1]
            cand_backward = initial_rank[cand_forward, : half + 1]
            cand_reciprocal = cand_forward[np.where(cand_backward == candidate)[0]]
            overlap = len(np.intersect1d(cand_reciprocal, k_reciprocal_index))
            if overlap > 2 / 3 * len(cand_reciprocal):
                expansion = np.append(expansion, cand_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original_dist[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    original_dist = original_dist[:query_num,]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(gallery_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, gallery_num], dtype=np.float32)
        ind_non_zero = np.where(V[i, :] != 0)[0]
        ind_images = [inv_index[ind] for ind in ind_non_zero]
        for j in range(len(ind_non_zero)):
            temp_min[0, ind_images[j]] = temp_min[0, ind_images[j]] + np.minimum(
                V[i, ind_non_zero[j]], V[ind_images[j], ind_non_zero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def paper_re_ranking(query, gallery, k1, k2, lambda_value, stats=None):
    """Zhong et al., CVPR 2017, from the definitions, one pair at a time.

    N(p, k): the k + 1 nearest of p counting p itself (so k others), ties by index.
    R(p, k) = {g in N(p, k) : p in N(g, k)}.
    R*(p) = R(p, k1) united with every R(q, round(k1/2)), q in R(p, k1), that has more than 2/3
    of its members in R(p, k1).
    V_p[g] = exp(-d(p, g)) / sum over R*(p), for g in R*(p).
    Local QE: V_p <- mean of V_q over the k2 nearest q of p (p included).
    Jaccard distance: 1 - sum_g min(V_p[g], V_q[g]) / sum_g max(V_p[g], V_q[g]).
    d is the squared Euclidean distance divided by the largest distance from p.
    """
    points = [np.asarray(row, dtype=np.float64) for row in np.concatenate([query, gallery])]
    n, nq = len(points), len(query)
    dist = [[float(np.sum((points[i] - points[j]) ** 2)) for j in range(n)] for i in range(n)]
    dist = [[value / max(row) for value in row] for row in dist]
    ordered = [sorted(range(n), key=lambda j, i=i: (dist[i][j], j)) for i in range(n)]

    def nearest(p, k):
        return set(ordered[p][: k + 1])

    def reciprocal(p, k):
        return {g for g in nearest(p, k) if p in nearest(g, k)}

    half = int(np.around(k1 / 2))
    encodings = []
    for p in range(n):
        base = reciprocal(p, k1)
        expanded = set(base)
        for q in base:
            candidate = reciprocal(q, half)
            if len(candidate & base) > 2 / 3 * len(candidate):
                expanded |= candidate
                if stats is not None:
                    stats["accepted"] += 1
            elif stats is not None:
                stats["rejected"] += 1
        total = sum(np.exp(-dist[p][g]) for g in expanded)
        encodings.append({g: np.exp(-dist[p][g]) / total for g in expanded})

    if k2 > 1:
        averaged = []
        for p in range(n):
            neighbours = ordered[p][:k2]
            summed: dict[int, float] = {}
            for q in neighbours:
                for g, value in encodings[q].items():
                    summed[g] = summed.get(g, 0.0) + value
            averaged.append({g: value / len(neighbours) for g, value in summed.items()})
        encodings = averaged

    out = np.empty((nq, n - nq))
    for i in range(nq):
        for j in range(nq, n):
            keys = set(encodings[i]) | set(encodings[j])
            low = sum(min(encodings[i].get(g, 0.0), encodings[j].get(g, 0.0)) for g in keys)
            high = sum(max(encodings[i].get(g, 0.0), encodings[j].get(g, 0.0)) for g in keys)
            jaccard = 1.0 - low / high
            out[i, j - nq] = (1 - lambda_value) * jaccard + lambda_value * dist[i][j]
    return out


def clustered_features(rng, num_query, num_gallery, dim, num_ids):
    """Identities as cluster centres plus noise: neighbourhoods with real reciprocal structure,
    so the expansion rule both accepts and rejects candidates."""
    centres = rng.normal(size=(num_ids, dim))
    ids = rng.integers(0, num_ids, size=num_query + num_gallery)
    features = centres[ids] + 0.6 * rng.normal(size=(num_query + num_gallery, dim))
    features = features.astype(np.float32)
    return features[:num_query], features[num_query:]


CASES = [
    # (num_query, num_gallery, dim, k1, k2, lambda)
    (30, 80, 16, 20, 6, 0.3),
    (12, 40, 8, 5, 3, 0.5),  # odd k1: round(2.5) = 2, banker's rounding as np.around
    (10, 30, 16, 8, 1, 0.3),  # k2 = 1: no local query expansion
    (4, 9, 6, 20, 6, 0.3),  # k1 + 1 > N: every list is the whole set
    (20, 50, 16, 12, 4, 0.0),  # Jaccard only
    (20, 50, 16, 12, 4, 1.0),  # original distance only
]


@pytest.mark.parametrize("num_query,num_gallery,dim,k1,k2,lambda_value", CASES)
def test_matches_reference_implementation(num_query, num_gallery, dim, k1, k2, lambda_value):
    rng = np.random.default_rng(num_query * 1000 + num_gallery)
    query, gallery = clustered_features(rng, num_query, num_gallery, dim, num_ids=8)
    got = re_ranking(query, gallery, k1=k1, k2=k2, lambda_value=lambda_value)
    expected = reference_re_ranking(query, gallery, k1, k2, lambda_value)
    assert got.shape == (num_query, num_gallery)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("num_query,num_gallery,dim,k1,k2,lambda_value", CASES)
def test_matches_paper_definitions(num_query, num_gallery, dim, k1, k2, lambda_value):
    rng = np.random.default_rng(7 + num_query * 1000 + num_gallery)
    query, gallery = clustered_features(rng, num_query, num_gallery, dim, num_ids=8)
    got = re_ranking(query, gallery, k1=k1, k2=k2, lambda_value=lambda_value)
    expected = paper_re_ranking(query, gallery, k1, k2, lambda_value)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_expansion_rule_is_exercised():
    """The default-size case must both accept and reject candidates, or the 2/3 rule is untested."""
    rng = np.random.default_rng(30 * 1000 + 80)
    query, gallery = clustered_features(rng, 30, 80, 16, num_ids=8)
    stats = {"accepted": 0, "rejected": 0}
    paper_re_ranking(query, gallery, 20, 6, 0.3, stats=stats)
    assert stats["accepted"] > 0 and stats["rejected"] > 0


def test_gaussian_features_match_reference():
    rng = np.random.default_rng(3)
    query = rng.normal(size=(25, 32)).astype(np.float32)
    gallery = rng.normal(size=(60, 32)).astype(np.float32)
    np.testing.assert_allclose(
        re_ranking(query, gallery), reference_re_ranking(query, gallery, 20, 6, 0.3), atol=1e-4
    )


def test_exact_ties_are_broken_by_index():
    """Small-integer features give exactly representable, heavily tied distances (and duplicate
    points); the paper loop orders ties by index, and so must the implementation."""
    rng = np.random.default_rng(11)
    features = rng.integers(0, 3, size=(40, 3)).astype(np.float32)
    query, gallery = features[:10], features[10:]
    got = re_ranking(query, gallery, k1=6, k2=3, lambda_value=0.3)
    np.testing.assert_allclose(got, paper_re_ranking(query, gallery, 6, 3, 0.3), atol=1e-5)


def test_blocked_paths_agree_with_single_block(monkeypatch):
    """Tiny block budgets force every blocked loop through many iterations."""
    rng = np.random.default_rng(5)
    query, gallery = clustered_features(rng, 30, 80, 16, num_ids=8)
    expected = reference_re_ranking(query, gallery, 20, 6, 0.3)
    monkeypatch.setattr(rerank_module, "_BLOCK_BYTES", 1)
    monkeypatch.setattr(rerank_module, "_EXPANSION_ELEMENTS", 1)
    monkeypatch.setattr(rerank_module, "_JACCARD_PAIRS", 50)
    monkeypatch.setattr(rerank_module, "_JACCARD_CELLS", 100)
    np.testing.assert_allclose(re_ranking(query, gallery), expected, atol=1e-4)


def test_re_ranking_improves_retrieval_on_clustered_data():
    """The point of re-ranking: on data with identity structure the nearest gallery entry after
    re-ranking shares the query's identity at least as often as before."""
    rng = np.random.default_rng(21)
    centres = rng.normal(size=(20, 16))
    q_ids = rng.integers(0, 20, size=60)
    g_ids = np.repeat(np.arange(20), 8)
    query = (centres[q_ids] + 0.9 * rng.normal(size=(60, 16))).astype(np.float32)
    gallery = (centres[g_ids] + 0.9 * rng.normal(size=(160, 16))).astype(np.float32)
    plain = ((query[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
    before = np.mean(g_ids[plain.argmin(1)] == q_ids)
    after = np.mean(g_ids[re_ranking(query, gallery).argmin(1)] == q_ids)
    assert after >= before


def test_memory_guard_raises_before_allocating(monkeypatch):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(30, 8)).astype(np.float32)
    gallery = rng.normal(size=(90, 8)).astype(np.float32)

    def must_not_run(*args, **kwargs):
        raise AssertionError("re_ranking started computing despite too little memory")

    monkeypatch.setattr(rerank_module, "available_memory_bytes", lambda: 1 << 20)
    monkeypatch.setattr(rerank_module, "_initial_ranks", must_not_run)
    with pytest.raises(MemoryError) as excinfo:
        re_ranking(query, gallery)
    message = str(excinfo.value)
    needed = rerank_module.estimate_rerank_bytes(30, 90, 8, 20, 6)
    assert "N=120" in message
    assert f"{needed / 2**30:.2f} GiB" in message
    assert f"{(1 << 20) / 2**30:.2f} GiB is available" in message


def test_memory_guard_passes_when_memory_suffices_or_is_unknown(monkeypatch):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(5, 8)).astype(np.float32)
    gallery = rng.normal(size=(15, 8)).astype(np.float32)
    expected = reference_re_ranking(query, gallery, 20, 6, 0.3)
    monkeypatch.setattr(rerank_module, "available_memory_bytes", lambda: None)
    np.testing.assert_allclose(re_ranking(query, gallery), expected, atol=1e-4)
    needed = rerank_module.estimate_rerank_bytes(5, 15, 8, 20, 6)
    monkeypatch.setattr(rerank_module, "available_memory_bytes", lambda: needed)
    np.testing.assert_allclose(re_ranking(query, gallery), expected, atol=1e-4)


def test_estimate_is_dominated_by_the_output_for_large_sets():
    """No dense N x N term: the estimate stays within 1.5x of the query x gallery output, which a
    single extra N x N float32 matrix (6x the output here) would break."""
    large = rerank_module.estimate_rerank_bytes(80_000, 320_000, 2048)
    assert 80_000 * 320_000 * 4 < large < 1.5 * 80_000 * 320_000 * 4
    assert large < (400_000**2) * 4  # less than one dense N x N float32 matrix


def test_available_memory_reads_a_positive_number():
    available = rerank_module.available_memory_bytes()
    assert available is None or available > 0


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"k1": 0}, "k1"),
        ({"k2": 0}, "k2"),
        ({"k1": 2.5}, "k1"),
        ({"lambda_value": 1.5}, "lambda_value"),
    ],
)
def test_rejects_bad_parameters(kwargs, fragment):
    features = np.ones((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=fragment):
        re_ranking(features, features, **kwargs)


def test_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="dimension"):
        re_ranking(np.ones((3, 4)), np.ones((5, 3)))


def test_empty_gallery_gives_empty_result():
    assert re_ranking(np.ones((3, 4)), np.ones((0, 4))).shape == (3, 0)
