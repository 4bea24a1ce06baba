"""Opening an index with its model: the one way a query, a build, footage ingest and the service
do it.

The model is the one the index's manifest records, unless another copy is given; ``auto``
serves it with a runtime of the precision the index was built with (an index of int8
embeddings is searched with the int8 conversion, never the float32 model); and the model must
be the index's (same fingerprint and preprocessing, :meth:`GalleryIndex.check_model`), so an
index is never searched or extended with another model's embeddings.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from reid.index.errors import GalleryError
from reid.index.gallery import GalleryIndex, ModelInfo
from reid.modeling.embedder import Embedder, load_model
from reid.modeling.spec import FLOAT32, runtimes_of_precision


@dataclasses.dataclass(frozen=True)
class IndexModel:
    """The model an index is searched or extended with."""

    embedder: Embedder
    model_dir: pathlib.Path  # the exported model folder
    note: str  # which export was used, and its fingerprint and runtime, for a log
    info: ModelInfo  # what the index records of it


def recorded_model(index: GalleryIndex | None, where: str) -> str:
    """The model folder ``index``'s manifest records; an error saying what to pass when there
    is no index (a new one), no record, or no such folder any more."""
    if index is None:
        raise GalleryError("model is required to build a new index", field="model")
    recorded = index.model.model_dir
    if not recorded:
        raise GalleryError(f"{where}: the manifest records no model folder; give the model",
                           field="model")
    if not pathlib.Path(recorded).exists():
        raise GalleryError(f"{where}: the model that built the index, "
                           f"{index.model.describe()}, is not found; give a copy of it as the "
                           f"model", field="model")
    return recorded


def open_model(index: GalleryIndex | None, model: str | os.PathLike | None = None,
               runtime: str = "auto", *, where: str, keep: bool = True) -> IndexModel:
    """The model to search or extend ``index`` with (``where``: the index's folder, for
    messages): ``model`` (an export or a run folder), else the one ``index`` records; served
    by ``runtime``. With ``keep`` (the index is searched or added to), ``auto`` keeps to the
    index's precision and the model must be the index's; without (the index is being replaced,
    or there is none), the model is only loaded."""
    if model is None:
        model = recorded_model(index, where)
    keep = keep and index is not None
    if keep and runtime == "auto" and index.model.precision != FLOAT32:
        runtime = runtimes_of_precision(index.model.precision)[0]
    embedder, model_dir, note = load_model(model, runtime)
    info = ModelInfo.from_embedder(embedder, model_dir)
    if keep:
        index.check_model(info, where=where)
    return IndexModel(embedder, model_dir, note, info)


def open_gallery(index_dir: str | os.PathLike, model: str | os.PathLike | None = None,
                 verify: bool = True, runtime: str = "auto"
                 ) -> tuple[GalleryIndex, Embedder, pathlib.Path]:
    """(index, embedder, model folder) of the index at ``index_dir`` (``verify``: check its
    files' checksums), with its own model unless ``model`` names a copy (:func:`open_model`)."""
    gallery = GalleryIndex.load(index_dir, verify=verify)
    opened = open_model(gallery, model, runtime, where=str(index_dir))
    return gallery, opened.embedder, opened.model_dir
