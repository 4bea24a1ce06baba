"""Build time, query latency and recall of the gallery index types on large synthetic galleries.

    .venv/bin/python bench/index_speed.py [--sizes 100000 1000000] [--dim 1280]
        [--queries 1000] [--types flat hnsw ivfpq] [--json OUT.json]
        [--big 100000] [--big-hnsw-budget SECONDS] [--big-hnsw-ef-construction 40]
        [--big-ivf-nlist 1024] [--big-queries 500]

Vectors are random but clustered like a re-id gallery (see ``_draw``): 20 images per identity;
identities and their appearance vary in a 128-d latent space mapped into the 1280-d embedding
space, plus a direction all embeddings share and a little isotropic noise, L2-normalised. So,
as with real embeddings, cosine similarity is about 0.75 within an identity and 0.2 between
identities, and the data has a low intrinsic dimension (random isotropic clusters would not:
every point's 10th neighbour would be nearly as far as a random point, which no approximate
index can find). Queries are new draws from the same identities.

For every size and index type (with the parameters of ``IndexConfig``'s defaults unless noted):

* build: seconds to create the index (IVF-PQ: including k-means training) and add everything;
* single query: median and 99th percentile latency of one query (k = 10) at a time, on one
  thread as ``tools/query.py`` searches (a lone query cannot use a second thread, and on a busy
  machine waiting for one at OpenMP's barrier costs a scheduler time slice);
* batched: the whole query set in one call on all threads, milliseconds per query;
* recall@10 of HNSW and IVF-PQ against exact search (the flat index's results) on the same
  queries.

Indexes are built and searched through ``reid.index.faiss_index``, the code the gallery uses,
so IVF-PQ includes its exact re-scoring of 4k candidates ("refined"); its raw recall is shown too.

Sizes up to ``--big`` (default 100,000) are measured with the defaults, fully. Larger ones can
be bounded for small machines, and every bound that applied is printed in the row's notes:
``--big-hnsw-budget`` stops HNSW construction after that many seconds (the graph then holds
only the first m vectors, its recall is measured against exact search over those m vectors, and
the full build time is extrapolated from the insertion rate); ``--big-hnsw-ef-construction``
lowers the build depth; ``--big-ivf-nlist`` sets the IVF cell count (default rule:
4 * sqrt(n)); ``--big-queries`` uses fewer queries.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import time

import faiss
import numpy as np

from reid.choices import INDEX_TYPES
from reid.config import IndexConfig
from reid.index import faiss_index as fi

K = 10
CHUNK = 50_000


LATENT = 128  # dimensions in which identities and their appearance vary
SPREAD = 0.6  # within-identity spread in the latent space
MEAN = 0.55  # weight of the direction all embeddings share
NOISE = 0.3  # weight of unstructured noise over all dimensions


@dataclasses.dataclass(frozen=True)
class Population:
    """What generates the gallery: identity latents, the map to embedding space, a shared mean."""

    latents: np.ndarray  # (num_ids, LATENT)
    basis: np.ndarray  # (LATENT, dim)
    mean: np.ndarray  # (dim,)


def make_gallery(n: int, dim: int, seed: int) -> tuple[np.ndarray, Population]:
    """(gallery (n, dim) float32, its population), generated in chunks to bound temporaries."""
    rng = np.random.default_rng([seed, 0])
    num_ids = max(1, n // 20)
    mean = rng.standard_normal(dim).astype(np.float32)
    population = Population(
        latents=rng.standard_normal((num_ids, LATENT), dtype=np.float32),
        basis=rng.standard_normal((LATENT, dim), dtype=np.float32),
        mean=mean / np.linalg.norm(mean))
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        out[start:stop] = _draw(population, stop - start, np.random.default_rng([seed, 1, start]))
    return out, population


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _draw(pop: Population, n: int, rng: np.random.Generator) -> np.ndarray:
    """Images of random identities: latent + spread, mapped to ``dim``, plus the shared mean and
    isotropic noise. Like real re-id embeddings, they fill a low-dimensional part of the space
    and people are not orthogonal: cosine about 0.75 within an identity, 0.2 between."""
    labels = rng.integers(0, len(pop.latents), n)
    z = pop.latents[labels] + SPREAD * rng.standard_normal((n, LATENT), dtype=np.float32)
    noise = _unit(rng.standard_normal((n, pop.basis.shape[1]), dtype=np.float32))
    x = _unit(z @ pop.basis) + MEAN * pop.mean + NOISE * noise
    return _unit(x).astype(np.float32)


def exact_top_k(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """Ids (row numbers) of the k best inner products, by blocks of the gallery, in numpy."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(gallery), 200_000):
        sims = queries @ gallery[start:start + 200_000].T
        top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(sims, top, axis=1)], axis=1)
        best_i = np.concatenate([best_i, top + start], axis=1)
        order = np.argsort(-best_s, axis=1)[:, :k]
        best_s = np.take_along_axis(best_s, order, axis=1)
        best_i = np.take_along_axis(best_i, order, axis=1)
    return best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth)]))


def time_queries(index: faiss.Index, cfg: IndexConfig, queries: np.ndarray, lookup,
                 max_single: int, budget: float, single_threads: int) -> dict[str, float]:
    """Single-query latencies (up to ``max_single`` queries or ``budget`` seconds, at least 20)
    with ``single_threads`` threads, and one batched call over all queries with all threads."""
    fi.search(index, cfg, queries[:2], K, lookup=lookup)  # warm-up
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(single_threads)
    latencies = []
    start = time.perf_counter()
    for i in range(min(max_single, len(queries))):
        t0 = time.perf_counter()
        fi.search(index, cfg, queries[i:i + 1], K, lookup=lookup)
        latencies.append(time.perf_counter() - t0)
        if i >= 19 and time.perf_counter() - start > budget:
            break
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    _, ids = fi.search(index, cfg, queries, K, lookup=lookup)
    batch = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"single_median_ms": float(np.median(ms)), "single_p99_ms": float(np.percentile(ms, 99)),
            "single_n": len(ms), "batch_ms_per_query": batch * 1000 / len(queries),
            "batch_s": batch, "ids": ids}


def bench_size(n: int, args: argparse.Namespace) -> list[dict]:
    big = n > args.big
    t0 = time.perf_counter()
    gallery, population = make_gallery(n, args.dim, args.seed)
    num_queries = args.big_queries if big and args.big_queries else args.queries
    queries = _draw(population, num_queries, np.random.default_rng([args.seed, 2]))
    ids = np.arange(n, dtype=np.int64)
    print(f"\n== {n:,} vectors x {args.dim} ({gallery.nbytes / 2**30:.1f} GiB), "
          f"{num_queries} queries; generated in {time.perf_counter() - t0:.0f} s", flush=True)
    lookup = lambda found: gallery[found]  # noqa: E731 - ids are row numbers here
    rows = []
    truth = None  # exact top-k: the flat index's own results, else computed in numpy
    for kind in sorted(args.types, key=INDEX_TYPES.index):
        if truth is None and kind != "flat":
            t0 = time.perf_counter()
            truth = exact_top_k(queries, gallery, K)
            print(f"numpy exact top-{K} for the recall reference: "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        cfg = IndexConfig(type=kind)
        note = ""
        budget = args.big_hnsw_budget if big else math.inf
        if kind == "hnsw" and big and args.big_hnsw_ef_construction:
            cfg = dataclasses.replace(cfg, hnsw_ef_construction=args.big_hnsw_ef_construction)
            note = f"efConstruction {args.big_hnsw_ef_construction} (default 200)"
        if kind == "ivfpq" and big and args.big_ivf_nlist:
            cfg = dataclasses.replace(cfg, ivf_nlist=args.big_ivf_nlist)
        start = time.perf_counter()
        built = n
        if kind == "ivfpq":
            sample = gallery[np.random.default_rng(args.seed).choice(
                n, min(n, args.ivf_train), replace=False)] if n > args.ivf_train else gallery
            nlist = fi.resolve_nlist(cfg, n)
            cfg = dataclasses.replace(cfg, ivf_nlist=nlist)
            index = fi.new_index(cfg, args.dim, train_vectors=sample)
            train_s = time.perf_counter() - start
            note = f"nlist {nlist}, trained on {len(sample):,} in {train_s:.0f} s"
            del sample
        else:
            index = fi.new_index(cfg, args.dim)
        step = 10_000 if kind == "hnsw" else CHUNK  # small steps keep the time box tight
        for s in range(0, n, step):
            fi.add(index, gallery[s:s + step], ids[s:s + step])
            built = min(n, s + step)
            if kind == "hnsw" and time.perf_counter() - start > budget and built < n:
                break
        build_s = time.perf_counter() - start
        if built < n:
            rate = built / build_s
            note += (f"{'; ' if note else ''}time-boxed at {budget:.0f} s: graph of the "
                     f"first {built:,} vectors, full build extrapolated ({rate:.0f} vectors/s), "
                     f"recall vs exact search over those {built:,}")
            build_s = n / rate
        timing = time_queries(index, cfg, queries, lookup if kind == "ivfpq" else None,
                              args.single, args.single_budget, args.single_threads)
        if kind == "flat":
            truth = timing["ids"]
        ref = truth if built == n else exact_top_k(queries, gallery[:built], K)
        row = {"size": n, "type": kind, "build_s": build_s, "built": built,
               **{k: v for k, v in timing.items() if k != "ids"},
               "recall_at_10": recall(timing["ids"], ref), "note": note}
        if kind == "ivfpq":
            raw = fi.search(index, cfg, queries, K)[1]
            row["recall_at_10_raw"] = recall(raw, ref)
            row["note"] += f"; recall without re-scoring {row['recall_at_10_raw']:.3f}"
        rows.append(row)
        print(format_row(row), flush=True)
        del index
        gc.collect()
    return rows


HEADER = (f"{'size':>9}  {'type':<6} {'build s':>8}  {'1 query ms (median / p99)':>26}  "
          f"{'batched ms/query':>16}  {'recall@10':>9}  notes")


def format_row(row: dict) -> str:
    single = f"{row['single_median_ms']:.2f} / {row['single_p99_ms']:.2f} (n={row['single_n']})"
    return (f"{row['size']:>9,}  {row['type']:<6} {row['build_s']:>8.1f}  {single:>26}  "
            f"{row['batch_ms_per_query']:>16.3f}  {row['recall_at_10']:>9.3f}  {row['note']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--types", nargs="+", default=list(INDEX_TYPES),
                        choices=INDEX_TYPES)
    parser.add_argument("--single", type=int, default=200, help="single queries to time")
    parser.add_argument("--single-threads", type=int, default=1,
                        help="FAISS threads for single queries (default 1, as tools/query.py)")
    parser.add_argument("--single-budget", type=float, default=30.0,
                        help="stop timing single queries after this many seconds (min 20 queries)")
    parser.add_argument("--ivf-train", type=int, default=200_000,
                        help="train IVF-PQ on a sample of at most this many vectors")
    parser.add_argument("--big", type=int, default=100_000,
                        help="sizes above this use the --big-* bounds")
    parser.add_argument("--big-hnsw-budget", type=float, default=math.inf,
                        help="stop HNSW construction after this many seconds")
    parser.add_argument("--big-hnsw-ef-construction", type=int, default=0,
                        help="HNSW build depth (0: the config default, 200)")
    parser.add_argument("--big-ivf-nlist", type=int, default=0,
                        help="IVF cells (0: the config rule, 4 * sqrt(n))")
    parser.add_argument("--big-queries", type=int, default=0,
                        help="queries (0: --queries)")
    parser.add_argument("--threads", type=int, help="FAISS threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    fi.set_threads(args.threads)
    print(f"FAISS {faiss.__version__}, k = {K}; single queries on {args.single_threads} "
          f"thread(s), batches on {faiss.omp_get_max_threads()}")
    rows = []
    for n in args.sizes:
        rows += bench_size(n, args)
    print("\n" + HEADER)
    for row in rows:
        print(format_row(row))
    if args.json:
        from reid.utils.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
