"""FAISS indexes over L2-normalised embeddings: construction, training, search, removal and I/O.

Every index stores the gallery's stable integer ids rather than insertion positions, so
results carry them and removing an entry never renumbers the others. Flat and HNSW indexes are
wrapped in an ``IndexIDMap2``; IVF-PQ keeps ids natively in its inverted lists (wrapped, removal
would abort the process: IndexIDMap assumes the wrapped index renumbers its entries after a
removal, which IVF does not). On unit vectors the inner product is the cosine similarity, so
scores are in [-1, 1] and a gallery image searched with itself scores 1.

The three types (``IndexConfig.type``):

* ``flat``: exact search, the reference the other two are measured against;
* ``hnsw``: a graph (``IndexHNSWFlat``), sub-linear search, no training. FAISS cannot remove
  vectors from it, so removal rebuilds the graph from the stored raw vectors (see
  :mod:`reid.index.gallery`, which keeps them for this reason);
* ``ivfpq``: inverted lists of product-quantised codes, the small-memory choice for very large
  galleries. It is trained (k-means) on the vectors it is first built from, and refuses to
  build when they are fewer than k-means needs. Its scores are approximate, so the top
  ``k * REFINE_FACTOR`` candidates are re-scored exactly from the raw vectors when the caller
  can supply them.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import faiss
import numpy as np

from reid.choices import INDEX_TYPES
from reid.config import ConfigError, IndexConfig, config_from_dict
from reid.index.errors import CorruptIndexError, GalleryError, IndexTrainingError
#: IVF-PQ fetches this many times k candidates and re-scores them exactly (when it can).
REFINE_FACTOR = 4
METRIC = "inner_product"

#: IndexConfig keys that describe the index itself (batch_size only concerns embedding).
PARAM_KEYS = tuple(f.name for f in dataclasses.fields(IndexConfig) if f.name != "batch_size")

#: ``ids -> (len(ids), dim) vectors``, used to re-score approximate candidates exactly.
VectorLookup = Callable[[np.ndarray], np.ndarray]


def index_params(config: IndexConfig) -> dict[str, Any]:
    """The manifest's record of an index: every key that changes what the index returns."""
    return {key: getattr(config, key) for key in PARAM_KEYS}


def config_from_params(params: Mapping[str, Any], source: str,
                       batch_size: int | None = None) -> IndexConfig:
    """Validate stored parameters through the same checks as a config file's ``index`` section."""
    values = dict(params)
    if batch_size is not None:
        values["batch_size"] = batch_size
    try:
        return config_from_dict({"index": values}, source).index
    except ConfigError as exc:
        raise CorruptIndexError(str(exc)) from None


def set_threads(threads: int | None) -> None:
    """Threads FAISS may use (None leaves its default: every core)."""
    if threads is not None:
        if threads < 1:
            raise GalleryError(f"threads: expected a positive number, got {threads}")
        faiss.omp_set_num_threads(threads)


def resolve_nlist(config: IndexConfig, num_vectors: int) -> int:
    """IVF cells: the configured number, or 4 * sqrt(n) (the usual rule of thumb) when 0."""
    if config.ivf_nlist > 0:
        return config.ivf_nlist
    return max(1, int(round(4 * math.sqrt(max(num_vectors, 1)))))


def min_train_size(config: IndexConfig, num_vectors: int) -> int:
    """Fewest vectors IVF-PQ can be trained on: k-means needs a point per centroid, for the
    coarse quantizer (nlist) and for each product-quantizer codebook (2**pq_nbits)."""
    return max(resolve_nlist(config, num_vectors), 2 ** config.pq_nbits)


def check_ivfpq_training_size(config: IndexConfig, num_vectors: int) -> None:
    """Raise IndexTrainingError when IVF-PQ cannot be trained on ``num_vectors`` vectors."""
    if config.type != "ivfpq":
        return
    needed = min_train_size(config, num_vectors)
    if num_vectors < needed:
        raise IndexTrainingError(
            f"IVF-PQ needs at least {needed} vectors to train on (ivf_nlist "
            f"{resolve_nlist(config, num_vectors)}, 2**pq_nbits = {2 ** config.pq_nbits} codes), "
            f"got {num_vectors}: use index type flat or hnsw for a gallery this small, or lower "
            f"index.ivf_nlist / index.pq_nbits")


def check_params(config: IndexConfig, dim: int) -> None:
    """Reject parameters FAISS would only reject deep inside training, with the key to change."""
    if config.type not in INDEX_TYPES:
        raise GalleryError(f"index.type: expected one of {', '.join(INDEX_TYPES)}, "
                           f"got {config.type!r}")
    if config.type == "ivfpq" and dim % config.pq_m:
        raise GalleryError(f"index.pq_m: {config.pq_m} does not divide the embedding size {dim}; "
                           f"choose a divisor of {dim}")


def as_vectors(name: str, vectors: Any, dim: int) -> np.ndarray:
    """A C-contiguous float32 (n, dim) array of finite values, the only input FAISS accepts."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != dim:
        raise GalleryError(f"{name}: expected an (n, {dim}) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise GalleryError(f"{name}: expected numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise GalleryError(f"{name}: contains NaN or infinite values")
    return array


def new_index(config: IndexConfig, dim: int, train_vectors: np.ndarray | None = None
              ) -> faiss.Index:
    """An empty, ready-to-add index; IVF-PQ is trained on ``train_vectors`` first.

    Raises IndexTrainingError when IVF-PQ gets fewer training vectors than k-means needs.
    """
    check_params(config, dim)
    if config.type == "flat":
        base = faiss.IndexFlatIP(dim)
    elif config.type == "hnsw":
        base = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = config.hnsw_ef_construction
        base.hnsw.efSearch = config.hnsw_ef_search
    else:
        n = 0 if train_vectors is None else len(train_vectors)
        check_ivfpq_training_size(config, n)
        nlist = resolve_nlist(config, n)
        quantizer = faiss.IndexFlatIP(dim)
        base = faiss.IndexIVFPQ(quantizer, dim, nlist, config.pq_m, config.pq_nbits,
                                faiss.METRIC_INNER_PRODUCT)
        base.nprobe = min(config.nprobe, nlist)
        base.train(as_vectors("training vectors", train_vectors, dim))
        return base
    return faiss.IndexIDMap2(base)


def trained_params(index: faiss.Index, config: IndexConfig) -> IndexConfig:
    """``config`` with ``ivf_nlist`` set to the cell count actually trained (0 means "auto"
    only until training), so an append or a rebuild reproduces the same index."""
    if config.type != "ivfpq":
        return config
    return dataclasses.replace(config, ivf_nlist=int(faiss.extract_index_ivf(index).nlist))


def add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                       np.ascontiguousarray(ids, dtype=np.int64))


def supports_remove(config: IndexConfig) -> bool:
    """HNSW graphs cannot drop nodes in FAISS; such indexes are rebuilt instead."""
    return config.type != "hnsw"


def remove(index: faiss.Index, ids: np.ndarray) -> int:
    return int(index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))


def stored_ids(index: faiss.Index) -> np.ndarray:
    """The ids an index holds (in no particular order)."""
    if hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = [np.zeros(0, np.int64)]
    for list_no in range(ivf.nlist):
        size = lists.list_size(list_no)
        if size:
            parts.append(faiss.rev_swig_ptr(lists.get_ids(list_no), size).astype(np.int64))
    return np.concatenate(parts)


def _search_params(config: IndexConfig, index: faiss.Index, k: int,
                   selector: Any | None) -> Any | None:
    """Per-call search settings. Passing parameters replaces the index's own, so HNSW and IVF
    get theirs restated (a bare SearchParametersHNSW would search with efSearch 16)."""
    kwargs = {} if selector is None else {"sel": selector}
    if config.type == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=max(config.hnsw_ef_search, k), **kwargs)
    if config.type == "ivfpq":
        nlist = int(faiss.extract_index_ivf(index).nlist)
        return faiss.SearchParametersIVF(nprobe=min(config.nprobe, nlist), **kwargs)
    return faiss.SearchParameters(**kwargs) if kwargs else None


def search(index: faiss.Index, config: IndexConfig, queries: np.ndarray, k: int,
           exclude_ids: np.ndarray | None = None, lookup: VectorLookup | None = None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), both (num_queries, min(k, index.ntotal)), best first; missing results
    are id -1, score -inf.

    ``exclude_ids`` are never returned (a FAISS id selector, so k results still come back when
    the gallery has them). ``lookup`` lets IVF-PQ re-score its candidates exactly. A k beyond
    the index's size is capped at it: the result arrays never outgrow the index.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    num_queries = queries.shape[0]
    if k < 1:
        raise GalleryError(f"k: expected a positive number of results, got {k}")
    k = min(int(k), int(index.ntotal))
    if index.ntotal == 0 or num_queries == 0:
        return (np.full((num_queries, k), -np.inf, np.float32),
                np.full((num_queries, k), -1, np.int64))
    refine = config.type == "ivfpq" and lookup is not None
    fetch = min(k * REFINE_FACTOR, index.ntotal) if refine else k
    selector = None
    if exclude_ids is not None and len(exclude_ids):
        batch = faiss.IDSelectorBatch(np.ascontiguousarray(exclude_ids, dtype=np.int64))
        selector = faiss.IDSelectorNot(batch)
    params = _search_params(config, index, fetch, selector)
    scores, ids = index.search(queries, fetch, params=params)
    del selector, params
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    if refine:
        scores = _rescore(queries, ids, lookup)
        # Stable, so equal scores keep FAISS's order; missing ids (-inf) sink to the end.
        order = np.argsort(-scores, axis=1, kind="stable")
        scores = np.take_along_axis(scores, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
    return scores[:, :k], ids[:, :k].astype(np.int64)


def _rescore(queries: np.ndarray, ids: np.ndarray, lookup: VectorLookup) -> np.ndarray:
    """Exact inner products of each query with its candidates; -inf where there is none."""
    valid = ids >= 0
    scores = np.full(ids.shape, -np.inf, np.float32)
    if valid.any():
        rows, cols = np.nonzero(valid)
        vectors = lookup(ids[rows, cols])
        scores[rows, cols] = np.einsum("nd,nd->n", queries[rows], vectors)
    return scores


def write_index(index: faiss.Index, path: str | pathlib.Path) -> None:
    faiss.write_index(index, str(path))


def read_index(path: str | pathlib.Path) -> faiss.Index:
    """Read an index file; a missing or unreadable file is a CorruptIndexError naming it."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CorruptIndexError(f"{path}: FAISS index file missing")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1].split("failed: ")[-1] if lines else "unreadable"
        raise CorruptIndexError(f"{path}: cannot read the FAISS index ({reason.strip()})") \
            from None


def describe(config: IndexConfig) -> str:
    """A short human-readable name of the index and the settings that shape its results."""
    if config.type == "hnsw":
        return (f"hnsw (M {config.hnsw_m}, efConstruction {config.hnsw_ef_construction}, "
                f"efSearch {config.hnsw_ef_search})")
    if config.type == "ivfpq":
        nlist = config.ivf_nlist or "auto"
        return (f"ivfpq (nlist {nlist}, PQ {config.pq_m}x{config.pq_nbits} bits, "
                f"nprobe {config.nprobe}, exact re-scoring of {REFINE_FACTOR}k candidates)")
    return "flat (exact inner product)"
