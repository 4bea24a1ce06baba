"""Speed of `evaluate_rank` at Market-1501 size against a per-query Python loop.

    .venv/bin/python bench/eval_speed.py [--num-query 3368] [--num-gallery 15913]
                                         [--loop-queries 300] [--repeat 3] [--seed 0]

The distance matrix is random, with realistic labels: 751 identities, 6 cameras, and about 2,800
distractors (pid 0) in the gallery as in Market-1501. True matches are made somewhat closer so the
metrics are not trivially near zero. The loop baseline (one argsort and one set of boolean masks
per query, as torchreid's eval_market1501 does) runs on a subset of queries and its time is
scaled to the full query count for the ratio; both are checked to agree on that subset.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from reid.evaluation import evaluate_rank

TARGET_SECONDS = 5.0


def make_problem(num_query: int, num_gallery: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    num_ids, num_cams = 751, 6
    num_distractors = min(num_gallery // 4, 2798)
    identities = rng.integers(1, num_ids + 1, num_gallery - num_distractors)
    g_pids = np.concatenate([np.zeros(num_distractors, dtype=np.int64), identities])
    rng.shuffle(g_pids)
    q_pids = rng.integers(1, num_ids + 1, num_query)
    g_camids = rng.integers(0, num_cams, num_gallery)
    q_camids = rng.integers(0, num_cams, num_query)
    distmat = rng.random((num_query, num_gallery), dtype=np.float32)
    distmat -= 0.4 * (q_pids[:, None] == g_pids[None, :])
    return distmat, q_pids, g_pids, q_camids, g_camids


def loop_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The straightforward per-query evaluation, for timing and as a cross-check."""
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        matches = (g_pids[order] == q_pids[q])[keep].astype(np.int32)
        if not matches.any():
            continue
        cmc = np.minimum(matches.cumsum(), 1)
        if cmc.size < max_rank:
            cmc = np.pad(cmc, (0, max_rank - cmc.size), mode="edge")
        all_cmc.append(cmc[:max_rank])
        positions = np.flatnonzero(matches) + 1
        all_ap.append(np.mean(np.arange(1, positions.size + 1) / positions))
        all_inp.append(positions.size / positions[-1])
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap)), float(np.mean(all_inp))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-query", type=int, default=3368)
    parser.add_argument("--num-gallery", type=int, default=15913)
    parser.add_argument("--loop-queries", type=int, default=300, help="queries timed with the loop")
    parser.add_argument("--repeat", type=int, default=3, help="runs of evaluate_rank; best is kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    problem = make_problem(args.num_query, args.num_gallery, args.seed)
    distmat, q_pids, g_pids, q_camids, g_camids = problem
    print(f"distmat {distmat.shape[0]} x {distmat.shape[1]} {distmat.dtype}, "
          f"{len(np.unique(g_pids[g_pids > 0]))} ids, {(g_pids == 0).sum()} distractors, 6 cameras")

    times = []
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
        times.append(time.perf_counter() - start)
    vectorised = min(times)
    verdict = "ok" if vectorised < TARGET_SECONDS else "TOO SLOW"
    print(f"evaluate_rank: {vectorised:.2f} s (best of {len(times)}; "
          f"target < {TARGET_SECONDS:.0f} s: {verdict})  "
          f"rank-1 {result['cmc'][0]:.4f}  mAP {result['mAP']:.4f}  mINP {result['mINP']:.4f}  "
          f"valid {result['num_valid_queries']}")

    subset = slice(0, min(args.loop_queries, args.num_query))
    sub = (distmat[subset], q_pids[subset], g_pids, q_camids[subset], g_camids)
    start = time.perf_counter()
    loop_cmc, loop_ap, loop_inp = loop_evaluate(*sub)
    loop_seconds = time.perf_counter() - start
    per_query = loop_seconds / sub[0].shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check = evaluate_rank(*sub)
    agree = (
        np.allclose(check["cmc"], loop_cmc, atol=1e-12)
        and abs(check["mAP"] - loop_ap) < 1e-12
        and abs(check["mINP"] - loop_inp) < 1e-12
    )
    estimate = per_query * args.num_query
    print(f"per-query loop: {loop_seconds:.2f} s for {sub[0].shape[0]} queries, "
          f"about {estimate:.1f} s for all {args.num_query}; results agree on the subset: {agree}")
    print(f"speed-up: {estimate / vectorised:.1f}x")


if __name__ == "__main__":
    main()
