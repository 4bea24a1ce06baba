"""Ranking metrics for re-identification: CMC, mAP and mINP under the Market-1501 protocol.

The protocol removes, per query, the gallery images of the same identity seen by the same camera:
finding a person again in the camera that just saw them is not re-identification. Distractors
(pid 0) stay in the gallery as ordinary negatives.

Everything here is vectorised over blocks of queries: the Market-1501 size (3,368 queries x
15,913 gallery) takes under a second on one core, several times faster than a per-query loop
(bench/eval_speed.py), while the temporaries stay bounded by the block size rather than
growing with the whole distance matrix.

Positions are counted after a sort whose ties go to the lower gallery index (the order of
``np.argsort(kind="stable")``), so results never depend on the sorting algorithm.
"""

from __future__ import annotations

import warnings
from typing import TypedDict

import numpy as np

from reid.evaluation.errors import EvaluationError

# Elements (queries x gallery) handled per block: bounds the temporary arrays (order, masks,
# positions) to a few hundred MiB whatever the gallery size.
_BLOCK_ELEMENTS = 1 << 22


class RankResult(TypedDict):
    """What `evaluate_rank` returns; all rates are fractions in [0, 1]."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int


def _as_1d(name: str, values: object, expected: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {array.shape}")
    if array.shape[0] != expected:
        raise EvaluationError(
            f"{name} has length {array.shape[0]} but distmat has {expected} {what}"
        )
    return array


def _stable_argsort_rows(block: np.ndarray) -> np.ndarray:
    """Row-wise argsort with ties broken by column index, exactly as ``kind="stable"``.

    numpy's stable sort (timsort/mergesort) is several times slower than its default sort on long
    rows, and float32 distance rows of Market-1501 length almost always contain some exact ties,
    so instead the sort is made unique: each entry gets an int64 key that orders by value first
    and column second, and a plain (vectorised) sort of those keys gives the stable order.
    """
    num_cols = block.shape[1]
    columns = np.arange(num_cols, dtype=np.int64)
    if block.dtype in (np.float16, np.float32):
        # Order-preserving integer image of float32: flip the magnitude bits of negatives.
        # Adding 0.0 turns -0.0 into +0.0, which compares equal to it and must tie.
        bits = (block.astype(np.float32) + np.float32(0.0)).view(np.int32).astype(np.int64)
        bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
        keys = (bits << 32) | columns
        keys.sort(axis=1)
        return keys & 0xFFFFFFFF
    # Other dtypes: sort once, number the runs of equal values, then re-sort (run, column).
    order = np.argsort(block, axis=1)
    if num_cols < 2:
        return order
    sorted_values = np.take_along_axis(block, order, axis=1)
    keys = np.zeros(block.shape, dtype=np.int64)
    np.not_equal(sorted_values[:, 1:], sorted_values[:, :-1], out=keys[:, 1:])
    np.cumsum(keys, axis=1, out=keys)
    keys *= num_cols
    keys += order
    keys.sort(axis=1)
    return keys % num_cols


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> RankResult:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller = more similar).

    Per query, gallery entries with the same pid and the same camera are removed before ranking.
    A query left with no true match cannot be scored and is skipped (a warning says how many);
    ``num_valid_queries`` counts the ones that were scored. Ties in distance are broken by gallery
    index, so the result does not depend on the sort algorithm.

    - ``cmc[k-1]``: fraction of valid queries with a true match within the first k kept entries.
      Always of length ``max_rank``; past the end of a short gallery it holds its last value.
    - ``mAP``: mean over queries of the mean, over true matches, of (hits so far / position).
    - ``mINP``: mean over queries of (number of true matches / position of the last one), the
      cost of finding the hardest match (Ye et al., 2021).

    Raises ValueError naming the argument on inconsistent shapes, and when no query is valid.
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(
            f"distmat must be a 2-D (num_query, num_gallery) array, got shape {distmat.shape}"
        )
    if not (np.issubdtype(distmat.dtype, np.floating) or np.issubdtype(distmat.dtype, np.integer)):
        raise ValueError(f"distmat must be numeric, got dtype {distmat.dtype}")
    num_query, num_gallery = distmat.shape
    q_pids = _as_1d("q_pids", q_pids, num_query, "rows (queries)")
    q_camids = _as_1d("q_camids", q_camids, num_query, "rows (queries)")
    g_pids = _as_1d("g_pids", g_pids, num_gallery, "columns (gallery entries)")
    g_camids = _as_1d("g_camids", g_camids, num_gallery, "columns (gallery entries)")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if np.issubdtype(distmat.dtype, np.floating) and np.isnan(distmat).any():
        raise ValueError("distmat contains NaN; distances must be comparable to rank")
    max_rank = int(max_rank)

    # Histogram of the (kept-list) position of each valid query's first true match; positions
    # beyond max_rank all land in the last bin, which CMC never reads.
    first_hist = np.zeros(max_rank + 1, dtype=np.int64)
    ap_sum = 0.0
    inp_sum = 0.0
    num_valid = 0

    block_rows = max(1, _BLOCK_ELEMENTS // max(num_gallery, 1))
    for start in range(0, num_query, block_rows):
        stop = min(start + block_rows, num_query)
        order = _stable_argsort_rows(distmat[start:stop])
        ordered_pids = g_pids[order]
        same_pid = ordered_pids == q_pids[start:stop, None]
        del ordered_pids
        junk = same_pid & (g_camids[order] == q_camids[start:stop, None])
        del order
        match = same_pid & ~junk
        del same_pid
        # 1-based position of every entry among the entries kept for its query.
        position = np.cumsum(~junk, axis=1, dtype=np.int32)
        del junk

        rows, cols = np.nonzero(match)  # row-major: each query's matches in rank order
        if rows.size == 0:
            continue
        match_pos = position[rows, cols].astype(np.float64)
        num_rows = stop - start
        num_matches = np.bincount(rows, minlength=num_rows)
        row_start = np.concatenate(([0], np.cumsum(num_matches)[:-1]))
        # True matches up to and including this one.
        hits = np.arange(rows.size) - row_start[rows] + 1
        valid = num_matches > 0

        precision_sums = np.bincount(rows, weights=hits / match_pos, minlength=num_rows)
        ap = precision_sums[valid] / num_matches[valid]
        first_pos = match_pos[row_start[valid]]
        last_pos = match_pos[row_start[valid] + num_matches[valid] - 1]
        ap_sum += float(ap.sum())
        inp_sum += float((num_matches[valid] / last_pos).sum())
        first_hist += np.bincount(
            np.minimum(first_pos.astype(np.int64), max_rank + 1) - 1, minlength=max_rank + 1
        )
        num_valid += int(valid.sum())

    if num_valid == 0:
        raise EvaluationError(
            f"no valid query: none of the {num_query} queries has a true match in the gallery "
            "(same pid, different camera)"
        )
    if num_valid < num_query:
        warnings.warn(
            f"{num_query - num_valid} of {num_query} queries have no true match in the gallery "
            "after same-camera removal and are skipped",
            stacklevel=2,
        )
    cmc = np.cumsum(first_hist[:max_rank]) / num_valid
    return RankResult(
        cmc=cmc.astype(np.float64),
        mAP=ap_sum / num_valid,
        mINP=inp_sum / num_valid,
        num_valid_queries=num_valid,
    )
