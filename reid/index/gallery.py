"""A gallery index on disk: embeddings of person crops, searchable by similarity, with metadata.

Folder layout::

    GALLERY/
      CURRENT              names the live version, e.g. "v000003"
      v000003/
        manifest.json      model fingerprint, embedding size, preprocessing, index type and
                           parameters, count, format version, size and SHA-256 of the files below
        index.faiss        the FAISS index (IndexIDMap2: stable integer ids)
        vectors.npy        the raw float32 embeddings, one row per id in ascending id order
        metadata.sqlite    table ``images``: id, path, pid, camid, source, captured_at, added_at,
                           digest (SHA-256 of the image file); for people cut from footage
                           also ``cameras``, ``videos``, ``tracks``, ``footage``
                           (:mod:`reid.index.footage`)
      media/               pictures of the footage entries, shared by the versions
                           (:mod:`reid.index.media`); every save deletes those the version
                           it published does not refer to (:func:`prune_media`)

The folder is a versioned folder (:mod:`reid.index.versioned_folder`), which also explains the
saving protocol: a saved version is never changed, :meth:`GalleryIndex.save` writes a new one
and swaps ``CURRENT`` to it, so a crash or kill at any moment leaves a complete index.
This module writes and reads the files of one version. Loading verifies every file against the
manifest (size, SHA-256) and against each other (counts, ids), so a damaged file is reported by
name instead of serving wrong results.

The raw vectors are kept beside the FAISS index although the flat index holds them too: HNSW
graphs cannot drop nodes and are rebuilt from them on removal, IVF-PQ scores are re-scored
exactly from them, and the projector export reads them. The cost is a second copy on disk
(5 GB per million 1280-d embeddings); they are memory-mapped on load, so a query does not read
them unless it needs them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faiss
import numpy as np

from reid.config import IndexConfig
from reid.index import faiss_index as fi
from reid.index import footage
from reid.index import versioned_folder as vf
from reid.index.errors import CorruptIndexError, GalleryError, IndexMismatchError
from reid.index.metadata import ImageEntry, MetadataStore
from reid.modeling.spec import PREPROCESSING_KEYS

FORMAT = "reid-gallery-index"
FORMAT_VERSION = 3
#: Versions this code reads. 1 had no image digests: its table gets an empty digest column on
#: load. 2 had no footage tables: they are created, empty, on load. The next save writes 3.
READABLE_FORMAT_VERSIONS = (1, 2, 3)
MANIFEST_FILE = "manifest.json"
#: The manifest's key of the thresholds calibrated on the index's footage (optional).
SITE_CALIBRATION_KEY = "site_calibration"
FAISS_FILE = "index.faiss"
VECTORS_FILE = "vectors.npy"
METADATA_FILE = "metadata.sqlite"
DATA_FILES = (FAISS_FILE, VECTORS_FILE, METADATA_FILE)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The model an index was built with: what a querying model must match."""

    fingerprint: str
    embedding_dim: int
    model_dir: str | None = None
    preprocessing: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: "float32" (Keras and every float32 conversion: one fingerprint) or a quantization.
    precision: str = "float32"

    @classmethod
    def from_embedder(cls, embedder: Any, model_dir: str | os.PathLike | None = None
                      ) -> ModelInfo:
        spec = embedder.spec
        return cls(fingerprint=embedder.fingerprint, embedding_dim=int(embedder.embedding_dim),
                   model_dir=None if model_dir is None else os.path.abspath(model_dir),
                   preprocessing={k: spec[k] for k in PREPROCESSING_KEYS if k in spec},
                   precision=str(spec.get("precision", "float32")))

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "embedding_dim": self.embedding_dim,
                "model_dir": self.model_dir, "preprocessing": dict(self.preprocessing),
                "precision": self.precision}

    def describe(self) -> str:
        where = self.model_dir or "an unrecorded model folder"
        quantized = "" if self.precision == "float32" else f"{self.precision}-quantized, "
        return f"{where} ({quantized}fingerprint {self.fingerprint[:12]}, {self.embedding_dim}-d)"


@dataclasses.dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    score: float
    id: int
    path: str
    pid: int | None
    camid: int | None
    source: str | None = None
    captured_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "rank": self.rank, "score": self.score, "path": self.path,
                "pid": self.pid, "camid": self.camid}


@dataclasses.dataclass(frozen=True)
class AddResult:
    added_ids: np.ndarray
    added_paths: list[str]
    duplicates: list[str]

    @property
    def num_added(self) -> int:
        return len(self.added_paths)


def normalize_path(path: str | os.PathLike) -> str:
    """The path an image is indexed under: absolute, normalised and with symlinks resolved, so
    one file is one entry however it was reached (a relative path, a linked folder)."""
    return os.path.realpath(os.fspath(path))


def _unit_rows(name: str, vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a no-op, up to rounding, for the embedder's output): the
    inner product is the cosine similarity only between unit vectors."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if len(vectors) and float(norms.min()) < 1e-12:
        raise GalleryError(f"{name}: row {int(np.argmin(norms))} is a zero vector, which has no "
                           f"direction to compare")
    return (vectors / norms).astype(np.float32)


class GalleryIndex:
    """Embeddings and metadata of a gallery; search, add, remove, save, load. See the module
    docstring for the layout, :mod:`reid.index.versioned_folder` for the saving protocol."""

    def __init__(self, model: ModelInfo, config: IndexConfig | None = None) -> None:
        config = config or IndexConfig()
        fi.check_params(config, model.embedding_dim)
        self._model = model
        self._config = config
        self._meta = MetadataStore()
        dim = model.embedding_dim
        self._ids = np.zeros(0, np.int64)
        self._vectors: np.ndarray = np.zeros((0, dim), np.float32)
        # IVF-PQ is created when its first vectors arrive, because it is trained on them.
        self._faiss: faiss.Index | None = None if config.type == "ivfpq" else fi.new_index(
            config, dim)
        self._next_id = 0
        self._created_at = _now()
        self._updated_at = self._created_at
        self._site_calibration: dict[str, Any] | None = None

    # --- properties ------------------------------------------------------------------------

    @property
    def model(self) -> ModelInfo:
        return self._model

    @property
    def config(self) -> IndexConfig:
        return self._config

    @property
    def dim(self) -> int:
        return self._model.embedding_dim

    @property
    def count(self) -> int:
        return len(self._ids)

    def __len__(self) -> int:
        return self.count

    @property
    def trained(self) -> bool:
        """False only for an IVF-PQ index that has not had vectors to train on yet."""
        return self._faiss is not None

    @property
    def ids(self) -> np.ndarray:
        """Every id, ascending (the row order of :attr:`vectors`)."""
        return self._ids.copy()

    @property
    def vectors(self) -> np.ndarray:
        """The unit-norm embeddings, rows in the order of :attr:`ids` (read-only)."""
        view = self._vectors.view()
        view.flags.writeable = False
        return view

    def entries(self, ids: Sequence[int] | None = None) -> list[ImageEntry]:
        """Metadata of the given ids (in that order; unknown ids are an error), or of all."""
        if ids is None:
            return self._meta.entries()
        found = self._meta.get(ids)
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise GalleryError(f"ids not in the index: {missing[:10]}")
        return [found[int(i)] for i in ids]

    def manifest(self) -> dict[str, Any]:
        """Everything a reader must know before trusting the files (without their checksums)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "count": self.count,
            "next_id": self._next_id,
            "embedding_dim": self.dim,
            "model": self._model.to_dict(),
            "index": {"type": self._config.type, "metric": fi.METRIC,
                      "params": fi.index_params(self._config),
                      "description": fi.describe(self._config)},
            "created_at": self._created_at,
            "updated_at": self._updated_at,
            **({} if self._site_calibration is None
               else {SITE_CALIBRATION_KEY: self._site_calibration}),
        }

    @property
    def site_calibration(self) -> dict[str, Any] | None:
        """The thresholds calibrated on this index's own footage, as JSON (read and written by
        :mod:`reid.index.site_calibration`): a manifest key, so that it is published with a
        version and carried by every later save, and gone with a rebuilt index."""
        return None if self._site_calibration is None else json.loads(
            json.dumps(self._site_calibration))

    def set_site_calibration(self, value: Mapping[str, Any] | None) -> None:
        self._site_calibration = None if value is None else json.loads(json.dumps(value))
        self._updated_at = _now()

    def replace_embeddings(self, model: ModelInfo, vectors: np.ndarray) -> None:
        """Give every entry ``model``'s embedding (``vectors``: a row per id, in the order of
        :attr:`ids`), keeping ids, metadata, footage rows and the index's type and parameters:
        the index re-embedded by another model (:mod:`reid.index.reindex`). The search
        structure is built again (IVF-PQ trained again, on these vectors); the site calibration
        is dropped, since it was read off the old model's scores."""
        vectors = _unit_rows("vectors", fi.as_vectors("vectors", vectors, model.embedding_dim))
        if len(vectors) != self.count:
            raise GalleryError(f"replace_embeddings: {self.count} entries but {len(vectors)} "
                               f"vectors")
        config, index = self._config, None
        fi.check_params(config, model.embedding_dim)
        if self.count or config.type != "ivfpq":  # an empty IVF-PQ has nothing to train on
            index = fi.new_index(config, model.embedding_dim, train_vectors=vectors)
            config = fi.trained_params(index, config)
            fi.add(index, vectors, self._ids)
        self._model, self._config, self._faiss, self._vectors = model, config, index, vectors
        self._site_calibration = None
        self._updated_at = _now()

    # --- model checks ----------------------------------------------------------------------

    def check_model(self, other: ModelInfo, where: str | None = None) -> None:
        """Raise IndexMismatchError unless ``other`` is the model that built the index."""
        prefix = f"{where}: " if where else ""
        built = self._model.describe()
        if other.embedding_dim != self.dim:
            raise IndexMismatchError(
                f"{prefix}index was built by model {built} but the querying model "
                f"{other.describe()} gives {other.embedding_dim}-d embeddings")
        # Another precision of the same model: say which runtime gives this one. (Another
        # model altogether is the fingerprint's message below, precision included.)
        if other.precision != self._model.precision and other.model_dir == self._model.model_dir:
            from reid.modeling.spec import runtimes_of_precision

            runtimes = " or ".join(runtimes_of_precision(self._model.precision))
            raise IndexMismatchError(
                f"{prefix}index was built with the {self._model.precision} embeddings of "
                f"{built}; these are {other.precision}, and the two cannot be compared: embed "
                f"with runtime {runtimes}, or rebuild the index with this runtime",
                field="runtime")
        if other.fingerprint != self._model.fingerprint:
            raise IndexMismatchError(
                f"{prefix}index was built by model {built}, not by {other.describe()}: query "
                f"with the model that built it, or rebuild the index with this one")

    # --- add / remove ----------------------------------------------------------------------

    def contains(self, paths: Sequence[str | os.PathLike]) -> set[str]:
        """Those of ``paths`` (normalised) already in the index."""
        return self._meta.existing_paths([normalize_path(p) for p in paths])

    def add(self, paths: Sequence[str | os.PathLike], vectors: np.ndarray, *,
            pids: Sequence[int | None] | None = None,
            camids: Sequence[int | None] | None = None,
            sources: Sequence[str | None] | None = None,
            captured_at: Sequence[str | None] | None = None,
            digests: Sequence[str | None] | None = None) -> AddResult:
        """Append images; a path or content digest already indexed (or repeated in the call)
        is skipped, never duplicated. Returns what was added and what was skipped.

        IVF-PQ is trained on the first vectors it gets; too few raise IndexTrainingError and
        leave the index unchanged.
        """
        n = len(paths)
        vectors = fi.as_vectors("vectors", vectors, self.dim)
        if len(vectors) != n:
            raise GalleryError(f"add: {n} paths but {len(vectors)} vectors")
        columns = {"pids": pids, "camids": camids, "sources": sources,
                   "captured_at": captured_at, "digests": digests}
        for name, values in columns.items():
            if values is not None and len(values) != n:
                raise GalleryError(f"add: {n} paths but {len(values)} {name}")
        norm = [normalize_path(p) for p in paths]
        existing = self._meta.existing_paths(sorted(set(norm)))
        given = [] if digests is None else [d for d in digests if d is not None]
        existing |= set(self._meta.ids_by_digest(sorted(set(given))))
        keep: list[int] = []
        seen: set[str] = set()
        duplicates: list[str] = []
        for i, path in enumerate(norm):
            keys = {path} if digests is None or digests[i] is None else {path, digests[i]}
            if keys & existing or keys & seen:
                duplicates.append(path)
            else:
                seen |= keys
                keep.append(i)
        if not keep:
            return AddResult(np.zeros(0, np.int64), [], duplicates)

        new_vectors = _unit_rows("vectors", vectors[keep])
        new_ids = np.arange(self._next_id, self._next_id + len(keep), dtype=np.int64)
        index, config = self._faiss, self._config
        if index is None:  # untrained IVF-PQ: train on everything it will hold
            train = np.concatenate([self._vectors, new_vectors])
            index = fi.new_index(config, self.dim, train_vectors=train)
            config = fi.trained_params(index, config)
            if self.count:
                fi.add(index, self._vectors, self._ids)
        fi.add(index, new_vectors, new_ids)

        added_at = _now()

        def column(values: Sequence | None, i: int, cast: type) -> Any:
            value = None if values is None else values[i]
            return None if value is None else cast(value)

        self._meta.insert(
            ImageEntry(id=int(new_ids[j]), path=norm[i], pid=column(pids, i, int),
                       camid=column(camids, i, int), source=column(sources, i, str),
                       captured_at=column(captured_at, i, str), added_at=added_at,
                       digest=column(digests, i, str))
            for j, i in enumerate(keep))
        self._faiss, self._config = index, config
        self._vectors = np.concatenate([self._vectors, new_vectors])
        self._ids = np.concatenate([self._ids, new_ids])
        self._next_id += len(keep)
        self._updated_at = added_at
        return AddResult(new_ids, [norm[i] for i in keep], duplicates)

    # --- footage ---------------------------------------------------------------------------

    def add_footage(self, video: footage.VideoRecord, tracks: Sequence[footage.TrackRecord],
                    entries: Sequence[footage.FootageEntry], vectors: np.ndarray) -> AddResult:
        """Add what one video gave: its record, its tracks, and one entry per row of
        ``vectors`` (crops and track means). A video already indexed (at its path, or with its
        content digest) is an error, and so is a video without entries: recorded, it would
        pass for indexed and keep a corrected run from indexing it."""
        conn = self._meta.connection
        problem = footage.camera_problem(video.camera)
        if problem is not None:
            raise GalleryError(f"{video.video}: camera name {video.camera!r} {problem}")
        if not entries:
            raise GalleryError(f"{video.video}: no entries to add (a video is recorded with "
                               f"the entries it gave)")
        indexed = footage.indexed(conn, video.video, video.digest)
        if indexed is not None:
            same = "" if indexed.video == video.video else f" as {indexed.video}"
            raise GalleryError(f"{video.video}: this video is already in the index{same}")
        try:
            captured = [video.wall_clock(e.time) for e in entries]
        except OverflowError:
            raise GalleryError(f"{video.video}: start time {video.start_time} plus "
                               f"{max(e.time for e in entries):g} s is past the end of the "
                               f"calendar") from None
        camid = footage.camid(conn, video.camera)
        keys = [e.key(video.video) for e in entries]
        result = self.add(keys, vectors, camids=[camid] * len(keys),
                          sources=[video.video] * len(keys), captured_at=captured)
        if result.duplicates:
            raise GalleryError(f"{video.video}: entries already indexed, e.g. "
                               f"{result.duplicates[0]}")
        with_ids = [dataclasses.replace(e, id=int(i)) for e, i in zip(entries, result.added_ids)]
        footage.forget_empty(conn, video.video)  # recorded without entries by older code
        footage.insert(conn, dataclasses.replace(video, indexed_at=_now()), tracks, with_ids)
        self._updated_at = _now()
        return result

    @property
    def footage_count(self) -> int:
        """Entries cut from footage (crops and track means)."""
        return footage.count(self._meta.connection)

    def footage_entries(self, ids: Sequence[int]) -> dict[int, footage.FootageEntry]:
        return footage.entries(self._meta.connection, ids)

    def footage_tracks(self, keys: Sequence[tuple[str, int]] | None = None
                       ) -> dict[tuple[str, int], footage.TrackRecord]:
        return footage.tracks(self._meta.connection, keys)

    def footage_videos(self) -> list[footage.VideoRecord]:
        return footage.videos(self._meta.connection)

    def footage_video(self, path: str) -> footage.VideoRecord | None:
        return footage.video(self._meta.connection, path)

    def indexed_video(self, path: str, digest: str | None = None
                      ) -> footage.VideoRecord | None:
        """The video indexed at ``path``, else one with the content ``digest`` (a copy), when
        either is in the index with entries (see :func:`reid.index.footage.indexed`)."""
        return footage.indexed(self._meta.connection, path, digest)

    def record_video_digests(self, digests: Mapping[str, str]) -> None:
        """Record the content digests of videos (path -> digest) indexed without one."""
        footage.set_digests(self._meta.connection, dict(digests))
        self._updated_at = _now()

    def media_names(self) -> set[str]:
        """The media files (:mod:`reid.index.media`) the entries refer to."""
        return footage.media_names(self._meta.connection)

    def track_entries(self, camera: str, track: int) -> list[footage.FootageEntry]:
        return footage.track_entries(self._meta.connection, camera, track)

    def next_track(self, camera: str) -> int:
        return footage.next_track(self._meta.connection, camera)

    def camid_of(self, camera: str) -> int | None:
        """The integer camera id of a footage camera's name; None when it has none."""
        return footage.find_camid(self._meta.connection, camera)

    def camera_name(self, camid: int) -> str | None:
        return footage.camera_of_camid(self._meta.connection, camid)

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        """The stored unit embeddings of ``ids`` (which must be in the index), in that order."""
        ids = np.asarray(ids, np.int64)
        missing = ids[~np.isin(ids, self._ids)]
        if len(missing):
            raise GalleryError(f"ids not in the index: {missing[:10].tolist()}")
        return self._lookup(ids)

    # --- file identity ---------------------------------------------------------------------

    def indexed_digests(self, digests: Sequence[str]) -> dict[str, ImageEntry]:
        """For those of ``digests`` already indexed, the entry holding each."""
        ids = self._meta.ids_by_digest(digests)
        entries = self._meta.get(ids.values())
        return {d: entries[i] for d, i in ids.items()}

    def entries_without_digest(self) -> list[ImageEntry]:
        """Entries indexed before digests were kept (or added without them)."""
        return self._meta.without_digest()

    def record_digests(self, digests: Mapping[int, str]) -> None:
        """Record the content digests of entries (id -> SHA-256) that have none."""
        self._meta.set_digests(digests)
        self._updated_at = _now()

    def move(self, paths: Mapping[int, str | os.PathLike]) -> None:
        """Give entries (id -> new path) the paths their files now have. A new path that
        another entry holds is an error, and nothing changes."""
        moved = {int(i): normalize_path(p) for i, p in paths.items()}
        unknown = sorted(set(moved) - set(self._meta.get(moved)))
        if unknown:
            raise GalleryError(f"ids not in the index: {unknown[:10]}")
        try:
            self._meta.set_paths(moved)
        except sqlite3.IntegrityError:
            taken = sorted(self._meta.existing_paths(list(moved.values())) - set(
                self._meta.get(moved)[i].path for i in moved))
            raise GalleryError(f"cannot move indexed images onto paths other entries hold "
                               f"(e.g. {taken[0] if taken else '?'})") from None
        self._updated_at = _now()

    def paths_under(self, folder: str | os.PathLike) -> tuple[str, dict[int, str]]:
        """(``folder`` as the index spells it, {id: path} of the entries in it or below it, or
        of the one file it names). Nothing there is an error that says where the images are."""
        key = os.path.abspath(os.fspath(folder))
        under = self._meta.paths_under(key)
        if not under and normalize_path(folder) != key:  # given through a symlink
            key = normalize_path(folder)
            under = self._meta.paths_under(key)
        if not under:
            folders = [os.path.dirname(e.path) for e in self._meta.entries()]
            where = f" (they are under {os.path.commonpath(folders)})" if folders else ""
            raise GalleryError(f"{folder}: no indexed image is in this folder{where}")
        return key, under

    def remove(self, *, paths: Sequence[str | os.PathLike] | None = None,
               pids: Sequence[int] | None = None, camids: Sequence[int] | None = None) -> int:
        """Remove the entries matching every given filter; returns how many were removed.

        ``remove(pids=[5])`` drops person 5, ``remove(pids=[5], camids=[2])`` only their crops
        from camera 2. With no filter nothing is removed. Ids of the others do not change.
        """
        norm = None if paths is None else [normalize_path(p) for p in paths]
        ids = self._meta.select_ids(norm, pids, camids)
        if not len(ids):
            return 0
        keep = ~np.isin(self._ids, ids)
        if self._faiss is not None:
            if fi.supports_remove(self._config):
                removed = fi.remove(self._faiss, ids)
                if removed != len(ids):
                    raise CorruptIndexError(f"FAISS removed {removed} of {len(ids)} entries: "
                                            f"index and metadata disagree")
            else:
                rebuilt = fi.new_index(self._config, self.dim)
                fi.add(rebuilt, self._vectors[keep], self._ids[keep])
                self._faiss = rebuilt
        self._vectors = np.ascontiguousarray(self._vectors[keep])
        self._ids = self._ids[keep]
        self._meta.delete(ids)
        self._updated_at = _now()
        return len(ids)

    # --- search ----------------------------------------------------------------------------

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self._vectors[np.searchsorted(self._ids, ids)], dtype=np.float32)

    def search_arrays(self, queries: np.ndarray, k: int = 10,
                      exclude_camids: Sequence[int | None] | None = None,
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (num_queries, min(k, count)), best first; -inf / -1 where a
        query has fewer results (its camera excluded, or an approximate index missed some).
        ``exclude_camids[i]`` (when not None) drops every gallery entry of that camera from
        query i's results. A k beyond the gallery's size asks for everything: the arrays are
        never wider than the gallery, whatever number a caller passes."""
        queries = _unit_rows("queries", fi.as_vectors("queries", queries, self.dim))
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise GalleryError(f"k: expected a positive number of results, got {k!r}")
        k = min(int(k), self.count)
        num_queries = len(queries)
        scores = np.full((num_queries, k), -np.inf, np.float32)
        ids = np.full((num_queries, k), -1, np.int64)
        if self._faiss is None or num_queries == 0 or k == 0:
            return scores, ids
        if exclude_camids is None:
            groups: dict[int | None, list[int]] = {None: list(range(num_queries))}
        else:
            if len(exclude_camids) != num_queries:
                raise GalleryError(f"exclude_camids: {len(exclude_camids)} values for "
                                   f"{num_queries} queries")
            groups = {}
            for i, cam in enumerate(exclude_camids):
                groups.setdefault(None if cam is None else int(cam), []).append(i)
        for cam, rows in groups.items():
            exclude = None if cam is None else self._meta.camera_ids(cam)
            s, i = fi.search(self._faiss, self._config, queries[rows], k, exclude, self._lookup)
            scores[rows], ids[rows] = s, i
        return scores, ids

    def search(self, queries: np.ndarray, k: int = 10,
               exclude_camids: Sequence[int | None] | None = None) -> list[list[Hit]]:
        """The k most similar gallery entries of each query (all of them when k exceeds the
        gallery's size), with cosine similarity scores."""
        scores, ids = self.search_arrays(queries, k, exclude_camids)
        entries = self._meta.get(ids[ids >= 0])
        results = []
        for score_row, id_row in zip(scores, ids):
            hits = []
            for score, i in zip(score_row, id_row):
                if i < 0:
                    break
                e = entries[int(i)]
                hits.append(Hit(rank=len(hits) + 1, score=float(np.clip(score, -1.0, 1.0)),
                                id=int(i), path=e.path, pid=e.pid, camid=e.camid,
                                source=e.source, captured_at=e.captured_at))
            results.append(hits)
        return results

    # --- save / load -----------------------------------------------------------------------

    def save(self, folder: str | os.PathLike, locked: bool = False,
             overwrite: bool = False) -> pathlib.Path:
        """Write a new version of the index into ``folder`` atomically; return its path.

        ``locked``: the caller holds :func:`reid.index.versioned_folder.writer_lock` since it
        loaded the index; ``overwrite``: replace versions that lost their ``CURRENT``.
        Pictures in the media folder that the new version does not refer to (of removed
        entries; left by writers that failed or were killed) are deleted, still under the lock,
        unless a writer is preparing pictures there (:func:`prune_media`): footage ingest
        prepares them across its commits, so it cleans up at the end of its run instead.
        """
        folder = pathlib.Path(folder)
        if not locked:
            with vf.writer_lock(folder):
                return self.save(folder, locked=True, overwrite=overwrite)
        version = vf.publish(folder, self._write_version, locked=True, overwrite=overwrite)
        # Best effort, once committed: a picture that cannot be deleted now (a folder of
        # another user's, say) is tried again by the next save; the commit stands either way.
        with contextlib.suppress(OSError):
            vf.prune_shared(folder, self.media_names())  # the live version's, under the lock
        return version

    def _write_version(self, staging: pathlib.Path, version: str) -> None:
        if self._faiss is None:
            # An empty IVF-PQ has nothing to train on; an untrained index still round-trips.
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        else:
            index = self._faiss
        _write_faiss(index, staging / FAISS_FILE)
        _write_vectors(self._vectors, staging / VECTORS_FILE)
        _write_metadata(self._meta, staging / METADATA_FILE)
        manifest = self.manifest()
        manifest["version"] = version
        manifest["trained"] = self._faiss is not None
        manifest["files"] = {name: vf.file_record(staging / name) for name in DATA_FILES}
        _write_manifest(manifest, staging / MANIFEST_FILE)

    @classmethod
    def load(cls, folder: str | os.PathLike, verify: bool = True) -> GalleryIndex:
        """Open the live version of a saved index; errors name the missing or damaged file.

        ``verify`` checks each file's SHA-256 against the manifest (reads every byte once).
        """
        return vf.load_live(pathlib.Path(folder), lambda vdir: cls._load_version(vdir, verify))

    @classmethod
    def _load_version(cls, vdir: pathlib.Path, verify: bool) -> GalleryIndex:
        manifest_path = vdir / MANIFEST_FILE
        manifest = _read_manifest(manifest_path)
        where = str(manifest_path)
        try:
            files = manifest["files"]
            count = int(manifest["count"])
            dim = int(manifest["embedding_dim"])
            next_id = int(manifest["next_id"])
            trained = bool(manifest.get("trained", True))
            model_d = manifest["model"]
            model = ModelInfo(fingerprint=str(model_d["fingerprint"]),
                              embedding_dim=int(model_d["embedding_dim"]),
                              model_dir=model_d.get("model_dir"),
                              preprocessing=dict(model_d.get("preprocessing") or {}),
                              precision=str(model_d.get("precision", "float32")))
            index_d = manifest["index"]
            params = dict(index_d["params"])
            if index_d["type"] != params.get("type"):
                raise CorruptIndexError(f"{where}: index type {index_d['type']!r} disagrees with "
                                        f"its params ({params.get('type')!r})")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptIndexError(f"{where}: missing or malformed field ({exc!r})") from None
        if model.embedding_dim != dim:
            raise CorruptIndexError(f"{where}: embedding_dim {dim} disagrees with the model's "
                                    f"{model.embedding_dim}")
        config = fi.config_from_params(params, f"{where}: index.params")
        if not isinstance(files, Mapping) or set(files) != set(DATA_FILES):
            raise CorruptIndexError(f"{where}: 'files' must list exactly {', '.join(DATA_FILES)}")
        for name in DATA_FILES:
            vf.check_file(vdir / name, files[name], verify, manifest_path)

        index = fi.read_index(vdir / FAISS_FILE)
        vectors = _read_vectors(vdir / VECTORS_FILE)
        meta = MetadataStore.load(vdir / METADATA_FILE, legacy=manifest["format_version"] == 1)
        try:
            ids = meta.ids()
            _check_consistent(vdir, count, dim, next_id, index, vectors, ids, meta.count())
        except BaseException:
            meta.close()
            raise

        gallery = cls.__new__(cls)
        gallery._model = model
        gallery._config = config
        gallery._meta = meta
        gallery._ids = ids
        gallery._vectors = vectors
        gallery._faiss = index if trained else None
        gallery._next_id = next_id
        gallery._created_at = str(manifest.get("created_at", ""))
        gallery._updated_at = str(manifest.get("updated_at", ""))
        gallery._site_calibration = manifest.get(SITE_CALIBRATION_KEY)
        return gallery


# --- the files of a version, one writer per function (tests make each one fail) -------------
# They only write: publishing fsyncs every file of the version before it becomes visible.

def _write_faiss(index: faiss.Index, path: pathlib.Path) -> None:
    fi.write_index(index, path)


def _write_vectors(vectors: np.ndarray, path: pathlib.Path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)


def _write_metadata(meta: MetadataStore, path: pathlib.Path) -> None:
    meta.save(path)


def _write_manifest(manifest: Mapping[str, Any], path: pathlib.Path) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_manifest(path: pathlib.Path) -> dict[str, Any]:
    if not path.is_file():
        raise CorruptIndexError(f"{path}: manifest missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptIndexError(f"{path}: cannot read the manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise CorruptIndexError(f"{path}: expected a JSON object")
    if manifest.get("format") != FORMAT:
        raise CorruptIndexError(f"{path}: not a {FORMAT} manifest (format "
                                f"{manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS or isinstance(version, bool):
        newer = isinstance(version, int) and version > FORMAT_VERSION
        hint = " (written by a newer version of reid)" if newer else ""
        readable = " and ".join(str(v) for v in READABLE_FORMAT_VERSIONS)
        raise CorruptIndexError(f"{path}: format version {version!r}, this code reads "
                                f"{readable}{hint}")
    return manifest


def _read_vectors(path: pathlib.Path) -> np.ndarray:
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CorruptIndexError(f"{path}: cannot read the vectors ({exc})") from None
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise CorruptIndexError(f"{path}: expected a 2-D float32 array, got {vectors.dtype} "
                                f"{vectors.shape}")
    return vectors


def _check_consistent(vdir: pathlib.Path, count: int, dim: int, next_id: int,
                      index: faiss.Index, vectors: np.ndarray, ids: np.ndarray,
                      meta_count: int) -> None:
    """The files were written together; any disagreement means one was swapped or damaged."""
    counts = {MANIFEST_FILE: count, FAISS_FILE: int(index.ntotal), VECTORS_FILE: len(vectors),
              METADATA_FILE: meta_count}
    if len(set(counts.values())) != 1:
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise CorruptIndexError(f"{vdir}: entry counts disagree ({shown})")
    if vectors.shape[1] != dim or index.d != dim:
        raise CorruptIndexError(f"{vdir}: dimensions disagree (manifest {dim}, "
                                f"{VECTORS_FILE} {vectors.shape[1]}, {FAISS_FILE} {index.d})")
    if not np.array_equal(np.sort(fi.stored_ids(index)), ids):
        raise CorruptIndexError(f"{vdir}: ids in {FAISS_FILE} and {METADATA_FILE} disagree")
    if len(ids) and int(ids[-1]) >= next_id:
        raise CorruptIndexError(f"{vdir}: id {int(ids[-1])} is not below next_id {next_id}")


def prune_media(folder: str | os.PathLike, lock_timeout: float = vf.DEFAULT_LOCK_TIMEOUT,
                log: Callable[[str], None] | None = None) -> int | None:
    """Delete the pictures in the index's media folder that its live version does not refer
    to: what runs that failed or were killed left (a footage writer stores a video's pictures
    before it commits the video). Under the writer lock, waiting up to ``lock_timeout``
    seconds. Returns how many were deleted; None when nothing could be (another writer is
    preparing pictures and cleans up when it commits, or the live version cannot be read:
    nothing is deleted on the word of a damaged index)."""
    folder = pathlib.Path(folder)
    if not (folder / vf.SHARED_FOLDER).is_dir():
        return 0
    with vf.writer_lock(folder, lock_timeout, log):
        try:
            vf.check_pointer(folder)  # versions that lost CURRENT still refer to pictures
            keep = (vf.load_live(folder, _media_names_of_version) if is_gallery_index(folder)
                    else set())
        except GalleryError:
            return None
        return vf.prune_shared(folder, keep)


def _media_names_of_version(vdir: pathlib.Path) -> set[str]:
    """The media files a saved version refers to, read from its metadata alone (the whole
    index need not be loaded to clean up)."""
    manifest_path = vdir / MANIFEST_FILE
    manifest = _read_manifest(manifest_path)
    try:
        record = manifest["files"][METADATA_FILE]
    except (KeyError, TypeError):
        raise CorruptIndexError(f"{manifest_path}: no record of {METADATA_FILE}") from None
    path = vdir / METADATA_FILE
    vf.check_file(path, record, False, manifest_path)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'footage'").fetchone() is None:
                return set()  # a format before footage
            return footage.media_names(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CorruptIndexError(f"{path}: cannot read the metadata database ({exc})") from None


def is_gallery_index(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a saved index (it may still be damaged)."""
    return vf.is_versioned_folder(folder)
