"""k-reciprocal encoding re-ranking (Zhong et al., CVPR 2017) without the N x N matrices.

The widely used implementation (re_ranking in the authors' code, reid-strong-baseline,
torchreid) holds several dense (N x N) arrays for N = query + gallery features: the original
distance, its full argsort, the encoding V, its query-expanded copy and the Jaccard distance.
For Market-1501 (N = 19,281) that is several GiB; for larger galleries it is out of reach.

The same result is computed here with memory linear in N apart from the (query x gallery) output:

1. the original distance is computed in row blocks, only its first max(k1 + 1, k2) ranks are kept
   (int32), with each row's maximum for the normalisation; the query rows' gallery columns go
   straight into the output;
2. k-reciprocal sets and their 2/3 expansion are found for all rows at once with fixed-width
   index arrays, and V, which has at most a few dozen non-zeros per row, is stored as CSR arrays
   (the distances it needs are recomputed from the features);
3. local query expansion and the Jaccard distance work on those sparse arrays, the latter through
   an inverted index over the gallery rows only, since only query rows of it are returned.

Semantics follow the reference implementation: squared Euclidean distance over all features,
divided per row by its maximum (the reference divides column-wise and transposes, which is the
same for a symmetric matrix); R(p, k1) = {g in N(p, k1 + 1) : p in N(g, k1 + 1)}; a candidate's
round(k1 / 2)-reciprocal set joins when more than 2/3 of it lies in R(p, k1); weights
exp(-d) normalised per row; V averaged over the k2 nearest rows; Jaccard distance
1 - s / (2 - s) with s the sum of element-wise minima; final (1 - lambda) * jaccard +
lambda * original. Ties in distance are broken by index (the reference leaves them to an
unstable sort). The values are accumulated in float64 and stored as float32, whereas the
reid-strong-baseline variant stores V in float16, so results agree with it to a few 1e-3 and with
its float32 variants (Houjing Huang's, torchreid's) to about 1e-6. Features are used in float32,
as the reference does.

`jaccard_within` is the same encoding within ONE set, the distance SpCL and Cluster Contrast
cluster unlabelled crops on (their ``compute_jaccard_distance``): passing one set as both query
and gallery of `re_ranking` would make every feature its own duplicate neighbour. It returns a
sparse matrix, since most pairs share no k-reciprocal neighbour (distance 1).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from reid.evaluation.distance import _check_pair, _is_positive_int, as_feature_matrix
from reid.evaluation.errors import EvaluationError

if TYPE_CHECKING:
    import scipy.sparse

_GIB = float(1 << 30)
# Bytes of temporaries allowed per block of rows (distance block, partition indices, ...).
_BLOCK_BYTES = 256 << 20
# Elements of the (rows x k1 x k1/2 x k1) membership test handled at once.
_EXPANSION_ELEMENTS = 1 << 24
# Gathered (query, gallery) pairs per Jaccard step, and output cells per step.
_JACCARD_PAIRS = 1 << 22
_JACCARD_CELLS = 1 << 22


def available_memory_bytes() -> int | None:
    """Memory the kernel says can be allocated without swapping, or None when it cannot tell."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _widths(num_all: int, k1: int, k2: int) -> tuple[int, int, int, int]:
    """Columns of the rank table actually used: forward k1+1, half k1/2+1, QE k2, stored max."""
    forward = min(k1 + 1, num_all)
    half = min(int(np.around(k1 / 2)) + 1, num_all)
    qe = min(k2, num_all)
    return forward, half, qe, max(forward, qe)


def _block_rows(num_all: int, bytes_per_cell: int) -> int:
    return max(1, min(num_all, _BLOCK_BYTES // max(1, num_all * bytes_per_cell)))


def estimate_rerank_bytes(
    num_query: int, num_gallery: int, dim: int, k1: int = 20, k2: int = 6
) -> int:
    """Upper estimate of the peak memory of `re_ranking` for these sizes, in bytes.

    Dominated by the float32 (query x gallery) output for large sets; the sparse parts are
    counted at their worst case (every expansion candidate accepted), which real data rarely
    reaches, so this errs on the safe side.
    """
    num_all = num_query + num_gallery
    forward, half, qe, stored = _widths(num_all, k1, k2)
    features = num_all * (dim + 1) * 4
    output = num_query * num_gallery * 4
    ranks = num_all * (stored * 4 + forward + half)
    block = _block_rows(num_all, 20) * num_all * 20
    per_row_v = min(num_all, forward * (1 + half))
    per_row_qe = min(num_all, qe * per_row_v)
    sparse_v = num_all * per_row_v * 24  # indices, values, row ids and sort keys while building
    sparse_qe = num_all * per_row_qe * 16  # CSR plus the gallery-side inverted index
    jaccard = _JACCARD_CELLS * 8 * 4 + _JACCARD_PAIRS * 40  # float64 temporaries per step
    return int(features + output + ranks + block + sparse_v + sparse_qe + jaccard)


def _check_memory(num_query: int, num_gallery: int, dim: int, k1: int, k2: int) -> None:
    needed = estimate_rerank_bytes(num_query, num_gallery, dim, k1, k2)
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise MemoryError(
            f"re_ranking of N={num_query + num_gallery} features ({num_query} query + "
            f"{num_gallery} gallery) needs about {needed / _GIB:.2f} GiB but only "
            f"{available / _GIB:.2f} GiB is available"
        )


def _segment_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of range(start, start + length) for each segment, without a Python loop."""
    total = int(lengths.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts.astype(np.int64), lengths) + offsets


def _pair_sq_distance(
    features: np.ndarray, sq_norms: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Squared Euclidean distance of the listed (row, col) pairs, by the same expansion as the
    dense matrix (so they agree with it to float32 rounding), clipped at 0, 0 on the diagonal."""
    out = np.empty(rows.shape[0], dtype=np.float64)
    step = max(1, (64 << 20) // max(1, features.shape[1] * features.itemsize * 2))
    for start in range(0, rows.shape[0], step):
        r = rows[start : start + step]
        c = cols[start : start + step]
        dots = np.einsum("ij,ij->i", features[r], features[c]).astype(np.float64)
        out[start : start + step] = sq_norms[r] + sq_norms[c] - 2.0 * dots
    np.maximum(out, 0.0, out=out)
    out[rows == cols] = 0.0
    return out


def _initial_ranks(
    features: np.ndarray,
    sq_norms: np.ndarray,
    width: int,
    num_query: int,
    lambda_value: float,
    out: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """First `width` neighbours of every row (ascending distance, ties by index) and each row's
    maximum distance; writes lambda * normalised original distance into the output."""
    num_all = features.shape[0]
    ranks = np.empty((num_all, width), dtype=np.int32)
    row_max = np.empty(num_all, dtype=np.float64)
    features_t = np.ascontiguousarray(features.T)
    step = _block_rows(num_all, 20)
    for start in range(0, num_all, step):
        stop = min(start + step, num_all)
        local = np.arange(stop - start)
        dist = features[start:stop] @ features_t
        dist *= -2.0
        dist += sq_norms[start:stop, None].astype(dist.dtype)
        dist += sq_norms[None, :].astype(dist.dtype)
        np.maximum(dist, 0.0, out=dist)
        dist[local, start + local] = 0.0
        block_max = dist.max(axis=1).astype(np.float64)
        block_max[block_max <= 0] = 1.0  # all features identical: every distance is 0 anyway
        row_max[start:stop] = block_max
        dist /= block_max[:, None].astype(dist.dtype)

        if start < num_query:
            query_stop = min(stop, num_query)
            out[start:query_stop] = lambda_value * dist[: query_stop - start, num_query:]

        if width < num_all:
            part = np.argpartition(dist, width - 1, axis=1)[:, :width]
            values = np.take_along_axis(dist, part, axis=1)
            order = np.lexsort((part, values), axis=-1)
            ranks[start:stop] = np.take_along_axis(part, order, axis=1)
            # argpartition picks arbitrarily among values equal to the boundary one; redo the
            # rows where that choice mattered with a stable sort so ties go to the lower index.
            boundary = np.take_along_axis(values, order[:, -1:], axis=1)
            equal_total = (dist == boundary).sum(axis=1)
            equal_kept = (values == boundary).sum(axis=1)
            for row in np.flatnonzero(equal_total > equal_kept):
                ranks[start + row] = np.argsort(dist[row], kind="stable")[:width]
        else:
            ranks[start:stop] = np.argsort(dist, axis=1, kind="stable")[:, :width]
    return ranks, row_max


def _reciprocal_mask(neighbours: np.ndarray) -> np.ndarray:
    """mask[i, a]: row i is among the neighbours of its own a-th neighbour."""
    num_all, width = neighbours.shape
    mask = np.empty((num_all, width), dtype=bool)
    step = max(1, _EXPANSION_ELEMENTS // (width * width))
    for start in range(0, num_all, step):
        stop = min(start + step, num_all)
        ids = np.arange(start, stop)[:, None, None]
        mask[start:stop] = (neighbours[neighbours[start:stop]] == ids).any(axis=-1)
    return mask


def _encode(
    features: np.ndarray,
    sq_norms: np.ndarray,
    ranks: np.ndarray,
    row_max: np.ndarray,
    forward_width: int,
    half_width: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V as CSR (indptr, indices, values): Gaussian weights over each row's expanded
    k-reciprocal set, normalised to sum 1."""
    num_all = ranks.shape[0]
    forward = np.ascontiguousarray(ranks[:, :forward_width])
    half = np.ascontiguousarray(ranks[:, :half_width])
    recip = _reciprocal_mask(forward)
    recip_half = _reciprocal_mask(half)

    step = max(1, _EXPANSION_ELEMENTS // (forward_width * half_width * forward_width))
    row_parts: list[np.ndarray] = []
    col_parts: list[np.ndarray] = []
    for start in range(0, num_all, step):
        stop = min(start + step, num_all)
        cand = forward[start:stop]  # (B, F): forward neighbours, candidates where recip
        cand_recip = recip[start:stop]
        cand_sets = half[cand]  # (B, F, H): each candidate's half-size neighbours
        cand_valid = recip_half[cand]  # ... restricted to its half-size reciprocal set
        set_size = cand_valid.sum(axis=-1)
        in_recip = (cand_sets[..., None] == cand[:, None, None, :]) & cand_recip[:, None, None, :]
        overlap = (in_recip.any(axis=-1) & cand_valid).sum(axis=-1)
        accept = cand_recip & (overlap > 2 / 3 * set_size)

        base = np.where(cand_recip, cand, -1)
        extra = np.where(accept[..., None] & cand_valid, cand_sets, -1).reshape(stop - start, -1)
        members = np.concatenate([base, extra], axis=1)
        members.sort(axis=1)
        keep = members >= 0
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]
        rows, slots = np.nonzero(keep)
        row_parts.append((rows + start).astype(np.int32))
        col_parts.append(members[rows, slots].astype(np.int32))

    rows = np.concatenate(row_parts)
    cols = np.concatenate(col_parts)
    del row_parts, col_parts
    dist = _pair_sq_distance(features, sq_norms, rows, cols) / row_max[rows]
    # The reference weighs with float32 distances; rounding there is below 1e-6.
    weights = np.exp(-dist.astype(np.float32).astype(np.float64))
    totals = np.bincount(rows, weights=weights, minlength=num_all)
    values = weights / totals[rows]
    indptr = np.zeros(num_all + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_all), out=indptr[1:])
    return indptr, cols, values


def _local_query_expansion(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, neighbours: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row i of the result: mean of the CSR rows listed in neighbours[i] (its k2 nearest)."""
    num_all, width = neighbours.shape
    lengths_all = np.diff(indptr)
    per_row = lengths_all[neighbours].sum(axis=1)
    out_indptr = np.zeros(num_all + 1, dtype=np.int64)
    out_indices: list[np.ndarray] = []
    out_values: list[np.ndarray] = []
    start = 0
    while start < num_all:
        # As many rows as fit in the pair budget (always at least one).
        cum = np.cumsum(per_row[start:])
        stop = start + max(1, int(np.searchsorted(cum, _JACCARD_PAIRS, side="right")))
        sources = neighbours[start:stop].ravel()
        lengths = lengths_all[sources]
        positions = _segment_positions(indptr[sources], lengths)
        dest = np.repeat(np.repeat(np.arange(start, stop, dtype=np.int64), width), lengths)
        keys = dest * num_all + indices[positions]
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        first = np.ones(keys.shape[0], dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        boundaries = np.flatnonzero(first)
        sums = np.add.reduceat(values[positions][order], boundaries) / width
        unique_keys = keys[boundaries]
        out_indices.append((unique_keys % num_all).astype(np.int32))
        out_values.append(sums)
        counts = np.bincount(unique_keys // num_all - start, minlength=stop - start)
        out_indptr[start + 1 : stop + 1] = out_indptr[start] + np.cumsum(counts)
        start = stop
    return out_indptr, np.concatenate(out_indices), np.concatenate(out_values)


def _add_jaccard(
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    num_query: int,
    scale: float,
    out: np.ndarray,
) -> None:
    """out[q, g] += scale * Jaccard distance between encoding rows q and num_query + g."""
    num_all = indptr.shape[0] - 1
    num_gallery = num_all - num_query
    # Inverted index over the gallery rows: for each column, the (gallery row, value) pairs.
    gallery_lo = int(indptr[num_query])
    gallery_cols = indices[gallery_lo:]
    gallery_rows = (
        np.repeat(np.arange(num_gallery, dtype=np.int64), np.diff(indptr[num_query:]))
    )
    order = np.argsort(gallery_cols, kind="stable")
    inv_rows = gallery_rows[order]
    inv_values = values[gallery_lo:][order]
    inv_count = np.bincount(gallery_cols, minlength=num_all)
    inv_start = np.concatenate(([0], np.cumsum(inv_count)[:-1]))
    del gallery_cols, gallery_rows, order

    query_cols = indices[: int(indptr[num_query])]
    query_rows = np.repeat(np.arange(num_query, dtype=np.int64), np.diff(indptr[: num_query + 1]))
    work = np.bincount(query_rows, weights=inv_count[query_cols], minlength=num_query)
    max_rows = max(1, _JACCARD_CELLS // max(1, num_gallery))
    start = 0
    while start < num_query:
        cum = np.cumsum(work[start : start + max_rows])
        stop = start + max(1, int(np.searchsorted(cum, _JACCARD_PAIRS, side="right")))
        lo, hi = int(indptr[start]), int(indptr[stop])
        cols = query_cols[lo:hi]
        lengths = inv_count[cols]
        positions = _segment_positions(inv_start[cols], lengths)
        local_q = np.repeat(query_rows[lo:hi] - start, lengths)
        mins = np.minimum(np.repeat(values[lo:hi], lengths), inv_values[positions])
        shared = np.bincount(
            local_q * num_gallery + inv_rows[positions],
            weights=mins,
            minlength=(stop - start) * num_gallery,
        ).reshape(stop - start, num_gallery)
        out[start:stop] += (scale * (1.0 - shared / (2.0 - shared))).astype(np.float32)
        start = stop


def re_ranking(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked (num_query, num_gallery) float32 distances by k-reciprocal encoding.

    Smaller is more similar, as for `pairwise_distance`; feed it to `evaluate_rank`. The original
    paper's parameters are the defaults (k1=20, k2=6, lambda=0.3). Raises MemoryError, before
    allocating, when the estimated need exceeds the available memory.
    """
    for name, value in (("k1", k1), ("k2", k2)):
        if not _is_positive_int(value):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    lambda_value = float(lambda_value)
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    query, gallery = _check_pair(query_features, gallery_features)
    k1, k2 = int(k1), int(k2)
    num_query, num_gallery = query.shape[0], gallery.shape[0]
    if num_query == 0 or num_gallery == 0:
        return np.zeros((num_query, num_gallery), dtype=np.float32)
    _check_memory(num_query, num_gallery, query.shape[1], k1, k2)

    features = np.concatenate([query, gallery]).astype(np.float32, copy=False)
    del query, gallery
    num_all = features.shape[0]
    sq_norms = np.einsum("ij,ij->i", features, features).astype(np.float64)
    forward_width, half_width, qe_width, stored_width = _widths(num_all, k1, k2)

    out = np.empty((num_query, num_gallery), dtype=np.float32)
    ranks, row_max = _initial_ranks(features, sq_norms, stored_width, num_query, lambda_value, out)
    indptr, indices, values = _encode(features, sq_norms, ranks, row_max, forward_width, half_width)
    if k2 != 1:
        indptr, indices, values = _local_query_expansion(
            indptr, indices, values, np.ascontiguousarray(ranks[:, :qe_width])
        )
    del ranks
    _add_jaccard(indptr, indices, values, num_query, 1.0 - lambda_value, out)
    return out


def _sparse_jaccard(
    indptr: np.ndarray, indices: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jaccard distance 1 - s / (2 - s) between the rows of one CSR encoding, for the pairs
    i < j that share a column (s = sum of element-wise minima): rows, cols, float32 values.

    Each pair is summed once (upper triangle), so the mirrored matrix is exactly symmetric.
    Rows are taken in blocks bounded by the gathered (row, row, column) triples, through an
    inverted index over the columns.
    """
    num_all = indptr.shape[0] - 1
    row_of = np.repeat(np.arange(num_all, dtype=np.int64), np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    inv_rows = row_of[order]
    inv_values = values[order]
    inv_count = np.bincount(indices, minlength=num_all)
    inv_start = np.concatenate(([0], np.cumsum(inv_count)[:-1]))
    del order
    work = np.bincount(row_of, weights=inv_count[indices], minlength=num_all)

    out_rows: list[np.ndarray] = []
    out_cols: list[np.ndarray] = []
    out_values: list[np.ndarray] = []
    start = 0
    while start < num_all:
        cum = np.cumsum(work[start:])
        stop = start + max(1, int(np.searchsorted(cum, _JACCARD_PAIRS, side="right")))
        lo, hi = int(indptr[start]), int(indptr[stop])
        cols = indices[lo:hi]
        lengths = inv_count[cols]
        positions = _segment_positions(inv_start[cols], lengths)
        left = np.repeat(row_of[lo:hi], lengths)
        right = inv_rows[positions]
        upper = right > left
        mins = np.minimum(np.repeat(values[lo:hi], lengths)[upper], inv_values[positions[upper]])
        keys = left[upper] * num_all + right[upper]
        del left, right, upper, positions
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if keys.shape[0]:
            first = np.ones(keys.shape[0], dtype=bool)
            first[1:] = keys[1:] != keys[:-1]
            boundaries = np.flatnonzero(first)
            shared = np.add.reduceat(mins[order], boundaries)
            distance = np.maximum(1.0 - shared / (2.0 - shared), 0.0).astype(np.float32)
            kept = distance < 1.0  # distance 1 (nothing shared, to float32) is not stored
            pairs = keys[boundaries][kept]
            out_rows.append((pairs // num_all).astype(np.int32))
            out_cols.append((pairs % num_all).astype(np.int32))
            out_values.append(distance[kept])
        start = stop
    if not out_rows:
        return np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float32)
    return np.concatenate(out_rows), np.concatenate(out_cols), np.concatenate(out_values)


def jaccard_within(features: np.ndarray, k1: int = 20, k2: int = 6) -> scipy.sparse.csr_matrix:
    """k-reciprocal Jaccard distance among the rows of one set, as a sparse (n, n) float32 matrix.

    What SpCL (Ge et al., NeurIPS 2020) and Cluster Contrast (Dai et al., ACCV 2022) cluster
    unlabelled crops on, their ``compute_jaccard_distance``, with its conventions (which differ
    from `re_ranking`'s in two places, so that their clustering settings such as DBSCAN eps 0.6
    keep their meaning): N(p, k) is the k nearest rows counting p itself (their neighbour search
    returns k1 columns), and the weights are exp(-d) of the squared Euclidean distance itself,
    not divided by the row's largest (for unit rows d = 2 - 2 cos). The rest is the same:
    R(p, k1) = {g in N(p, k1) : p in N(g, k1)}; a member q's R(q, round(k1/2) + 1) joins when
    more than 2/3 of it lies in R(p, k1); weights normalised to sum 1 over the expanded set;
    local query expansion averages the encodings of the k2 nearest rows (k2 = 1: none);
    distance 1 - s / (2 - s), s the sum of element-wise minima, clipped at 0. Ties in distance
    go to the lower index (theirs to the search library).

    Stored: every pair whose distance is below 1, and the diagonal as explicit zeros (rows that
    share nothing are at distance 1: not stored). The matrix is exactly symmetric, rows sorted
    by column; feed it to DBSCAN with ``metric="precomputed"``. Memory is linear in n (each row
    holds at most a few hundred entries for the default k1, k2); features are used in float32.
    """
    import scipy.sparse

    for name, value in (("k1", k1), ("k2", k2)):
        if not _is_positive_int(value):
            raise EvaluationError(f"{name} must be a positive integer, got {value!r}")
    k1, k2 = int(k1), int(k2)
    features = as_feature_matrix("features", features).astype(np.float32, copy=False)
    num_all, dim = features.shape
    if num_all == 0:
        return scipy.sparse.csr_matrix((0, 0), dtype=np.float32)
    needed = estimate_rerank_bytes(0, num_all, dim, k1, k2)
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise MemoryError(
            f"jaccard_within of {num_all} features needs about {needed / _GIB:.2f} GiB but only "
            f"{available / _GIB:.2f} GiB is available"
        )

    forward_width = min(k1, num_all)
    half_width = min(int(np.around(k1 / 2)) + 1, num_all)
    qe_width = min(k2, num_all)
    stored_width = max(forward_width, half_width, qe_width)
    sq_norms = np.einsum("ij,ij->i", features, features).astype(np.float64)
    # The ranks are taken on row-normalised distances (a per-row monotone scaling: same order).
    ranks, _ = _initial_ranks(
        features, sq_norms, stored_width, 0, 0.0, np.empty((0, num_all), np.float32)
    )
    unscaled = np.ones(num_all, dtype=np.float64)
    indptr, indices, values = _encode(
        features, sq_norms, ranks, unscaled, forward_width, half_width
    )
    if k2 != 1:
        indptr, indices, values = _local_query_expansion(
            indptr, indices, values, np.ascontiguousarray(ranks[:, :qe_width])
        )
    del ranks
    upper_rows, upper_cols, upper_values = _sparse_jaccard(indptr, indices, values)
    del indptr, indices, values

    diagonal = np.arange(num_all, dtype=np.int32)
    rows = np.concatenate([upper_rows, upper_cols, diagonal])
    cols = np.concatenate([upper_cols, upper_rows, diagonal])
    data = np.concatenate([upper_values, upper_values, np.zeros(num_all, np.float32)])
    del upper_rows, upper_cols, upper_values
    order = np.lexsort((cols, rows))
    out_indptr = np.zeros(num_all + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_all), out=out_indptr[1:])
    if out_indptr[-1] < np.iinfo(np.int32).max:
        out_indptr = out_indptr.astype(np.int32)
    # Built from its arrays, so the explicit zeros (diagonal, duplicate rows) stay stored.
    matrix = scipy.sparse.csr_matrix(
        (data[order], cols[order], out_indptr), shape=(num_all, num_all)
    )
    matrix.has_sorted_indices = True
    return matrix
