"""Query x gallery feature distances, computed in blocks of queries.

Only the (num_query, num_gallery) float32 output is held whole; the intermediate products are
bounded by ``block_size`` query rows, so a large gallery does not need several full-size
temporaries (float64 products, squared norms broadcast, ...).
"""

from __future__ import annotations

import numpy as np

from reid.choices import EVAL_DISTANCES as METRICS
from reid.evaluation.errors import EvaluationError

# Vectors shorter than this are treated as zero vectors when normalising: they have no direction.
_NORM_EPS = 1e-12


def as_feature_matrix(name: str, features: object) -> np.ndarray:
    """Check a (num, dim) real feature array; keep float64 input as float64, else float32."""
    array = np.asarray(features)
    if array.ndim != 2:
        raise EvaluationError(f"{name} must be a 2-D (num, dim) array, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise EvaluationError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64 if array.dtype == np.float64 else np.float32, copy=False)
    if not np.isfinite(array).all():
        raise EvaluationError(f"{name} contains NaN or infinite values")
    return array


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (cosine similarity 0 to everything)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, _NORM_EPS).astype(features.dtype)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_pair(query_features: object, gallery_features: object) -> tuple[np.ndarray, np.ndarray]:
    query = as_feature_matrix("query_features", query_features)
    gallery = as_feature_matrix("gallery_features", gallery_features)
    if query.shape[1] != gallery.shape[1]:
        raise EvaluationError(
            f"query_features have dimension {query.shape[1]} but gallery_features have "
            f"dimension {gallery.shape[1]}"
        )
    dtype = np.result_type(query.dtype, gallery.dtype)
    return query.astype(dtype, copy=False), gallery.astype(dtype, copy=False)


def pairwise_distance(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    metric: str = "cosine",
    block_size: int = 1024,
) -> np.ndarray:
    """Distance of every query to every gallery feature, as float32 (smaller = more similar).

    ``cosine``: 1 - cosine similarity, in [0, 2]; features are L2-normalised first.
    ``euclidean``: true Euclidean distance (not squared); the expansion
    |q|^2 + |g|^2 - 2 q.g can go slightly negative by rounding, so it is clipped at 0 before sqrt.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not _is_positive_int(block_size):
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    query, gallery = _check_pair(query_features, gallery_features)
    out = np.empty((query.shape[0], gallery.shape[0]), dtype=np.float32)

    if metric == "cosine":
        query = l2_normalize(query)
        gallery_t = np.ascontiguousarray(l2_normalize(gallery).T)
        for start in range(0, query.shape[0], block_size):
            stop = start + block_size
            out[start:stop] = 1.0 - query[start:stop] @ gallery_t
        return out

    gallery_t = np.ascontiguousarray(gallery.T)
    gallery_sq = np.einsum("ij,ij->i", gallery, gallery)
    for start in range(0, query.shape[0], block_size):
        stop = start + block_size
        block = query[start:stop]
        squared = np.einsum("ij,ij->i", block, block)[:, None] + gallery_sq[None, :]
        squared -= 2.0 * (block @ gallery_t)
        np.maximum(squared, 0.0, out=squared)
        out[start:stop] = np.sqrt(squared)
    return out
