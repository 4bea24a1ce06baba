"""Gallery index: embed person crops once, keep them on disk, find a person again in milliseconds.

:class:`GalleryIndex` is the folder format (FAISS index + SQLite metadata + manifest, saved
atomically); :mod:`reid.index.build` and :mod:`reid.index.query` are what the command-line tools
run; :mod:`reid.index.grid` draws results and :mod:`reid.index.projector` exports a gallery to
TensorBoard's Embedding Projector. The index types a config offers are named in
:mod:`reid.choices`, so the config is validated without loading FAISS.
"""

from reid.index.errors import (CorruptIndexError, GalleryError, IndexMismatchError,
                               IndexTrainingError)
from reid.index.gallery import AddResult, GalleryIndex, Hit, ModelInfo, is_gallery_index
from reid.index.metadata import ImageEntry

__all__ = [
    "AddResult",
    "CorruptIndexError",
    "GalleryError",
    "GalleryIndex",
    "Hit",
    "ImageEntry",
    "IndexMismatchError",
    "IndexTrainingError",
    "ModelInfo",
    "is_gallery_index",
]
