"""Search a gallery index with query images: what ``tools/query.py`` runs.

The index's manifest names the model that built it, so a query needs only the index folder;
another copy of the model may be given instead, and is accepted only if its weights have the
same fingerprint (:func:`reid.index.open.open_gallery` opens both).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from reid.calibration import MatchThreshold, score_format
from reid.data.market1501 import MARKET_PATTERN_HELP, parse_market_name
from reid.index.appearances import (AppearanceQuery, AppearanceResult, search_appearances,
                                    track_query)
from reid.index.errors import GalleryError
from reid.index.gallery import GalleryIndex, Hit
from reid.index.grid import GridItem, GridRow, save_grid


#: The two answers of a crop gallery to "is this person in it?".
PRESENT = "present in the gallery"
NOT_IN_GALLERY = "not in the gallery"


@dataclasses.dataclass(frozen=True)
class QueryResult:
    query: str
    pid: int | None
    camid: int | None
    hits: list[Hit]
    search_ms: float
    threshold: MatchThreshold | None = None

    def is_match(self, hit: Hit) -> bool | None:
        """Whether ``hit`` is taken for the query's person; None without a threshold."""
        return None if self.threshold is None else self.threshold.matches(hit.score)

    @property
    def in_gallery(self) -> bool | None:
        """Whether any result matches: False is "not in the gallery"."""
        if self.threshold is None:
            return None
        return any(self.threshold.matches(h.score) for h in self.hits)

    @property
    def answer(self) -> str | None:
        """:data:`PRESENT` or :data:`NOT_IN_GALLERY`; None without a match decision."""
        return None if self.in_gallery is None else (PRESENT if self.in_gallery
                                                     else NOT_IN_GALLERY)


def load_query_image(path: str, height: int, width: int) -> np.ndarray:
    """A query image's RGB pixels, decoded as the gallery's pipeline decodes its images: by
    OpenCV, at the image's own size (:mod:`reid.data.decode`, equal to TensorFlow's decode),
    unless it is a GIF, which TensorFlow decodes and resizes to ``(height, width)``, as the
    gallery's pipeline does. The embedder resizes the others as that pipeline does."""
    from reid.data.decode import BadImageError, decode_rgb

    try:
        return decode_rgb(path)
    except BadImageError:
        with open(path, "rb") as f:
            if f.read(4) != b"GIF8":
                raise
        from reid.data.pipeline import load_image
        from reid.utils.quiet import start_tensorflow_quietly

        start_tensorflow_quietly()
        return load_image(path, height, width)


def embed_queries(embedder: Any, paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """Embeddings of the query images, decoded and prepared exactly as the gallery's were."""
    if not paths:
        raise GalleryError("no query image given", field="image")
    height, width = embedder.input_size
    images = []
    for path in paths:
        if os.path.isdir(path):
            raise GalleryError(f"{path}: is a folder, not a query image")
        if not os.path.isfile(path):
            raise GalleryError(f"{path}: query image not found")
        # Resized at once: a query holds its images at the model's size, not as decoded.
        images.append(embedder.resize(load_query_image(os.fspath(path), height, width)))
    return embedder.embed(images)


def query_gallery(gallery: GalleryIndex, embedder: Any, images: Sequence[str | os.PathLike],
                  k: int = 10, exclude_same_camera: bool = False,
                  threshold: MatchThreshold | None = None) -> list[QueryResult]:
    """Search the gallery with each image; person id and camera come from Market-style names.

    ``exclude_same_camera`` drops every result from the query's own camera (its camera must be
    readable from its file name). With a ``threshold`` each result is a match or not.
    """
    labels = [parse_market_name(os.fspath(p)) for p in images]
    if exclude_same_camera:
        for path, label in zip(images, labels):
            if label is None:
                raise GalleryError(f"{path}: the query's camera is to be left out, but the file "
                                   f"name does not give it ({MARKET_PATTERN_HELP})",
                                   field="exclude_same_camera")
    vectors = embed_queries(embedder, images)
    results = []
    for i, path in enumerate(images):
        exclude = [labels[i][1]] if exclude_same_camera else None
        start = time.perf_counter()
        hits = gallery.search(vectors[i:i + 1], k, exclude_camids=exclude)[0]
        elapsed = (time.perf_counter() - start) * 1000
        pid, camid = labels[i] if labels[i] is not None else (None, None)
        results.append(QueryResult(os.fspath(path), pid, camid, hits, elapsed, threshold))
    return results


def query_footage(gallery: GalleryIndex, embedder: Any, images: Sequence[str | os.PathLike],
                  tracks: Sequence[tuple[str, int]] = (), top_k: int = 10,
                  threshold: MatchThreshold | None = None) -> list[AppearanceResult]:
    """Appearances of each query image and each tracked person (camera, track) in the footage;
    a tracked person is searched for in the other cameras."""
    results = []
    vectors = embed_queries(embedder, images) if images else []
    for path, vector in zip(images, vectors):
        start = time.perf_counter()
        found = search_appearances(gallery, vector, top_k, threshold)
        results.append(AppearanceResult(
            AppearanceQuery(os.fspath(path), image=os.fspath(path)), found,
            (time.perf_counter() - start) * 1000, threshold))
    for camera, track in tracks:
        vector, thumb = track_query(gallery, camera, track)
        start = time.perf_counter()
        found = search_appearances(gallery, vector, top_k, threshold, exclude_camera=camera)
        results.append(AppearanceResult(
            AppearanceQuery(f"camera {camera} track {track}", camera=camera, track=track),
            found, (time.perf_counter() - start) * 1000, threshold, thumb))
    return results


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_results(results: Sequence[QueryResult], gallery_size: int) -> str:
    """A ranked table per query: rank, score, [match,] pid, camera, path; with a threshold, a
    query ends with its answer, present or "not in the gallery". Scores and threshold
    are printed to 4 decimals, more where a rejected score would read as the threshold
    (:func:`score_format`)."""
    blocks = []
    for r in results:
        shown = score_format(r.threshold, [h.score for h in r.hits])
        who = f"pid {_cell(r.pid)}, camera {_cell(r.camid)}"
        lines = [f"query {r.query} ({who}): top {len(r.hits)} of {gallery_size} in "
                 f"{r.search_ms:.1f} ms"]
        if r.threshold is not None:
            lines.append(f"match threshold {shown(r.threshold.value)} ({r.threshold.origin})")
        match = "  match" if r.threshold is not None else ""
        width = max([len(shown(h.score)) for h in r.hits] + [6])
        lines.append(f"{'rank':>4}  {'score':>{width}}{match}  {'pid':>5}  {'cam':>3}  path")
        for h in r.hits:
            cell = "" if r.threshold is None else f"  {'yes' if r.is_match(h) else 'no':>5}"
            lines.append(f"{h.rank:>4}  {shown(h.score):>{width}}{cell}  {_cell(h.pid):>5}  "
                         f"{_cell(h.camid):>3}  {h.path}")
        if not r.hits:
            lines.append("  (no results)")
        if r.in_gallery is False:
            best = f"the best score, {shown(r.hits[0].score)}, is" if r.hits else "nothing scored"
            lines.append(f"{NOT_IN_GALLERY}: {best} below the match threshold "
                         f"{shown(r.threshold.value)}")
        elif r.in_gallery:
            matched = sum(bool(r.is_match(h)) for h in r.hits)
            lines.append(f"{PRESENT}: {matched} of the top {len(r.hits)} reach the match "
                         f"threshold")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def missing_files(results: Sequence[QueryResult]) -> list[str]:
    """Result paths that no longer exist (moved or deleted since they were indexed), once each:
    the index keeps only their embeddings, so the ranking stands but the files cannot be shown."""
    paths = dict.fromkeys(h.path for r in results for h in r.hits)
    return [p for p in paths if not os.path.exists(p)]


def results_json(results: Sequence[QueryResult]) -> list[dict[str, Any]]:
    """One object per query, in query order: ``query``, ``pid``, ``camid``, ``threshold`` and
    ``threshold_origin`` (null without one), ``fpir`` and ``gallery_size`` (the rate and the
    gallery size a gallery-level threshold was read for; null otherwise), ``in_gallery``
    (false: not in the gallery; null without a threshold), ``answer`` (its words) and
    ``hits``, each ``{id, rank, score, match, path, pid, camid}`` (``id``: the entry's id in
    the index)."""
    return [{"query": r.query, "pid": r.pid, "camid": r.camid,
             "threshold": None if r.threshold is None else r.threshold.value,
             "threshold_origin": None if r.threshold is None else r.threshold.origin,
             "fpir": None if r.threshold is None else r.threshold.fpir,
             "gallery_size": None if r.threshold is None else r.threshold.gallery_size,
             "in_gallery": r.in_gallery, "answer": r.answer,
             "hits": [{**h.to_json(), "match": r.is_match(h)} for h in r.hits]}
            for r in results]


def save_results_grid(results: Sequence[QueryResult], path: str | os.PathLike,
                      cell_height: int = 128) -> None:
    rows = [GridRow(GridItem(r.query, pid=r.pid),
                    [GridItem(h.path, h.score, h.pid, h.rank, r.is_match(h)) for h in r.hits])
            for r in results]
    save_grid(rows, path, cell_height)
