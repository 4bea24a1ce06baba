"""Gallery index: embed person crops once, keep them on disk, find a person again in milliseconds.

:class:`GalleryIndex` is the folder format (FAISS index + SQLite metadata + manifest, saved
atomically); :mod:`reid.index.build` and :mod:`reid.index.query` are what the command-line tools
run; :mod:`reid.index.grid` draws results and :mod:`reid.index.projector` exports a gallery to
TensorBoard's Embedding Projector.

The names below are imported on first use: the config imports :mod:`reid.index.index_types`
from this package, which must not load FAISS (nor the config, which is then half-imported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reid.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from reid.index.errors import (CorruptIndexError, GalleryError, IndexMismatchError,
                                   IndexTrainingError)
    from reid.index.gallery import AddResult, GalleryIndex, Hit, ModelInfo, is_gallery_index
    from reid.index.metadata import ImageEntry

#: Public name -> the module defining it.
_HOMES = {
    "AddResult": "reid.index.gallery", "CorruptIndexError": "reid.index.errors",
    "GalleryError": "reid.index.errors", "GalleryIndex": "reid.index.gallery",
    "Hit": "reid.index.gallery", "ImageEntry": "reid.index.metadata",
    "IndexMismatchError": "reid.index.errors", "IndexTrainingError": "reid.index.errors",
    "ModelInfo": "reid.index.gallery", "is_gallery_index": "reid.index.gallery",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_exports(__name__, _HOMES)
