"""Feature-level helpers: blocked pairwise distances, alpha query expansion, flip averaging."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reid.evaluation import alpha_query_expansion, flip_average, pairwise_distance


def loop_distance(query, gallery, metric):
    out = np.empty((len(query), len(gallery)))
    for i, q in enumerate(np.asarray(query, dtype=np.float64)):
        for j, g in enumerate(np.asarray(gallery, dtype=np.float64)):
            if metric == "euclidean":
                out[i, j] = math.sqrt(sum((a - b) ** 2 for a, b in zip(q, g)))
            else:
                norms = math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in g))
                out[i, j] = 1.0 - sum(a * b for a, b in zip(q, g)) / norms
    return out


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("block_size", [1, 3, 1024])
def test_pairwise_distance_matches_loop(metric, block_size):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(7, 12)).astype(np.float32)
    gallery = rng.normal(size=(11, 12)).astype(np.float32)
    got = pairwise_distance(query, gallery, metric=metric, block_size=block_size)
    assert got.dtype == np.float32 and got.shape == (7, 11)
    np.testing.assert_allclose(got, loop_distance(query, gallery, metric), atol=1e-5)


def test_hand_worked_distances():
    # q = (3, 4); g0 = (3, 4): same point; g1 = (0, 1): |q - g1| = |(3, 3)| = sqrt(18),
    # cos = 4 / 5 -> cosine distance 0.2; g2 = (-3, -4): opposite, cosine distance 2, |q-g2| = 10.
    query = np.array([[3.0, 4.0]])
    gallery = np.array([[3.0, 4.0], [0.0, 1.0], [-3.0, -4.0]])
    euclidean = pairwise_distance(query, gallery, "euclidean")
    np.testing.assert_allclose(euclidean, [[0, math.sqrt(18), 10]], atol=1e-6)
    np.testing.assert_allclose(
        pairwise_distance(query, gallery, "cosine"), [[0, 0.2, 2]], atol=1e-6
    )


def test_euclidean_is_never_nan_for_identical_large_vectors():
    """|q|^2 + |g|^2 - 2 q.g cancels badly for equal vectors; clipping keeps sqrt real."""
    rng = np.random.default_rng(1)
    features = (rng.normal(size=(50, 256)) * 100).astype(np.float32)
    got = pairwise_distance(features, features, "euclidean")
    assert np.isfinite(got).all() and (got >= 0).all()
    assert np.diag(got).max() < 1e-2 * got[~np.eye(50, dtype=bool)].min()


def test_cosine_of_zero_vector_is_one():
    got = pairwise_distance(np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(got, [[1.0, 1.0]])


def test_float64_input_is_computed_in_float64():
    # Two points 1e-3 apart, 1e3 from the origin: the squared norms (1e6) swamp the 1e-6
    # squared distance in float32 (spacing 0.06 at 1e6) but not in float64 (spacing 1e-10).
    query = np.array([[1e3, 0.0]])
    gallery = np.array([[1e3, 1e-3]])
    assert pairwise_distance(query, gallery, "euclidean")[0, 0] == pytest.approx(1e-3, rel=1e-2)
    wrong = pairwise_distance(query.astype(np.float32), gallery.astype(np.float32), "euclidean")
    assert wrong[0, 0] != pytest.approx(1e-3, rel=1e-2)


@pytest.mark.parametrize(
    "args,kwargs,fragment",
    [
        ((np.ones(3), np.ones((2, 3))), {}, "query_features must be a 2-D"),
        ((np.ones((2, 3)), np.ones((2, 4))), {}, "dimension 3 but gallery_features have dimension"),
        ((np.ones((2, 3)), np.ones((2, 3))), {"metric": "manhattan"}, "metric"),
        ((np.ones((2, 3)), np.ones((2, 3))), {"block_size": 0}, "block_size"),
        ((np.ones((2, 3)), np.full((2, 3), np.nan)), {}, "gallery_features contains NaN"),
    ],
)
def test_pairwise_distance_rejects_bad_input(args, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        pairwise_distance(*args, **kwargs)


def test_alpha_query_expansion_hand_worked():
    # q = (1, 0). Gallery: g0 = (0.6, 0.8) sim 0.6; g1 = (0, 1) sim 0; g2 = (0.8, -0.6) sim 0.8.
    # top_k = 2 picks g2 then g0.
    # alpha = 1: q + 0.8 g2 + 0.6 g0 = (1 + 0.64 + 0.36, -0.48 + 0.48) = (2, 0) -> (1, 0).
    # alpha = 2: q + 0.64 g2 + 0.36 g0 = (1 + 0.512 + 0.216, -0.384 + 0.288) = (1.728, -0.096).
    # alpha = 0 (average QE): q + g2 + g0 = (2.4, 0.2).
    query = np.array([[1.0, 0.0]])
    gallery = np.array([[0.6, 0.8], [0.0, 1.0], [0.8, -0.6]])
    got = alpha_query_expansion(query, gallery, 2, 1.0)
    np.testing.assert_allclose(got, [[1.0, 0.0]], atol=1e-6)
    expected = np.array([1.728, -0.096]) / math.hypot(1.728, -0.096)
    np.testing.assert_allclose(alpha_query_expansion(query, gallery, 2, 2.0), [expected], atol=1e-6)
    expected = np.array([2.4, 0.2]) / math.hypot(2.4, 0.2)
    np.testing.assert_allclose(alpha_query_expansion(query, gallery, 2, 0.0), [expected], atol=1e-6)


def test_alpha_query_expansion_negative_similarity_contributes_nothing():
    # The single match has similarity -1: weight max(-1, 0)^3 = 0, the query stays as it was.
    got = alpha_query_expansion(np.array([[2.0, 0.0]]), np.array([[-1.0, 0.0]]), 1, 3.0)
    np.testing.assert_allclose(got, [[1.0, 0.0]])


def test_alpha_query_expansion_matches_loop():
    rng = np.random.default_rng(2)
    query = rng.normal(size=(6, 5)).astype(np.float32)
    gallery = rng.normal(size=(20, 5)).astype(np.float32)
    top_k, alpha = 4, 3.0
    expected = []
    for q in query.astype(np.float64):
        q = q / np.linalg.norm(q)
        unit = gallery.astype(np.float64) / np.linalg.norm(gallery, axis=1, keepdims=True)
        sims = [(float(q @ g), j) for j, g in enumerate(unit)]
        top = sorted(sims, key=lambda s: (-s[0], s[1]))[:top_k]
        total = q.copy()
        for sim, j in top:
            total += max(sim, 0.0) ** alpha * unit[j]
        expected.append(total / np.linalg.norm(total))
    got = alpha_query_expansion(query, gallery, top_k, alpha)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_alpha_query_expansion_top_k_edges():
    rng = np.random.default_rng(3)
    query = rng.normal(size=(3, 4))
    gallery = rng.normal(size=(5, 4))
    normalised = query / np.linalg.norm(query, axis=1, keepdims=True)
    np.testing.assert_allclose(alpha_query_expansion(query, gallery, 0, 3.0), normalised, atol=1e-6)
    whole = alpha_query_expansion(query, gallery, 5, 3.0)
    np.testing.assert_allclose(alpha_query_expansion(query, gallery, 50, 3.0), whole)
    with pytest.raises(ValueError, match="top_k"):
        alpha_query_expansion(query, gallery, -1, 3.0)
    with pytest.raises(ValueError, match="alpha"):
        alpha_query_expansion(query, gallery, 2, -1.0)


def test_flip_average_hand_worked():
    # (3, 4) and its mirror (3, -4) average to (3, 0) -> (1, 0); (0, 2) and (0, 4) -> (0, 1).
    got = flip_average(np.array([[3.0, 4.0], [0.0, 2.0]]), np.array([[3.0, -4.0], [0.0, 4.0]]))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[1.0, 0.0], [0.0, 1.0]])


def test_flip_average_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="flipped_features have shape"):
        flip_average(np.ones((2, 3)), np.ones((3, 3)))
