"""Test-time feature refinements: alpha query expansion and horizontal-flip averaging.

Both act on features before distances are computed, so they compose with any metric and with
re-ranking.
"""

from __future__ import annotations

import numpy as np

from reid.evaluation.distance import _check_pair, as_feature_matrix, l2_normalize

_QUERY_BLOCK = 1024


def alpha_query_expansion(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    top_k: int,
    alpha: float,
) -> np.ndarray:
    """alpha-QE (Radenovic et al., TPAMI 2019): each query averaged with its top-k gallery matches.

    The matches are weighted by sim^alpha (cosine similarity clipped at 0, so a fractional power
    stays real and, for alpha > 0, a dissimilar match contributes nothing), the query itself by 1,
    and the sum is L2-normalised. alpha = 0 gives every match weight 1 (plain average QE); a large
    alpha keeps only the closest matches' influence. ``top_k`` = 0 returns the normalised
    queries; a ``top_k`` larger than the gallery uses the whole gallery. Ties in similarity go to
    the lower gallery index.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    query, gallery = _check_pair(query_features, gallery_features)
    query = l2_normalize(query)
    gallery = l2_normalize(gallery)
    top_k = min(int(top_k), gallery.shape[0])
    if top_k == 0:
        return query.astype(np.float32)

    expanded = np.empty_like(query)
    gallery_t = np.ascontiguousarray(gallery.T)
    for start in range(0, query.shape[0], _QUERY_BLOCK):
        block = query[start : start + _QUERY_BLOCK]
        sims = block @ gallery_t
        # Stable sort of -sim: highest similarity first, lower index first among equals.
        top = np.argsort(-sims, axis=1, kind="stable")[:, :top_k]
        weights = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) ** alpha
        neighbours = np.einsum("qk,qkd->qd", weights, gallery[top])
        expanded[start : start + _QUERY_BLOCK] = block + neighbours
    return l2_normalize(expanded).astype(np.float32)


def flip_average(features: np.ndarray, flipped_features: np.ndarray) -> np.ndarray:
    """Mean of the features of an image and of its mirror image, L2-normalised.

    A person seen mirrored is the same person, so averaging the two removes a nuisance the
    network did not fully learn to ignore.
    """
    original = as_feature_matrix("features", features)
    flipped = as_feature_matrix("flipped_features", flipped_features)
    if original.shape != flipped.shape:
        raise ValueError(
            f"flipped_features have shape {flipped.shape} but features have shape {original.shape}"
        )
    return l2_normalize((original + flipped) / 2.0).astype(np.float32)
