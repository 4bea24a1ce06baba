"""Gallery index: embed person crops once, keep them on disk, find a person again in milliseconds.

The store: :class:`GalleryIndex` (:mod:`~reid.index.gallery`) is the folder format every caller
uses, kept as immutable versions saved atomically (:mod:`~reid.index.versioned_folder`): the
vectors (:mod:`~reid.index.faiss_index`), one SQLite row per entry (:mod:`~reid.index.metadata`)
and, for entries cut from camera footage, the footage tables beside it (cameras, videos, tracks
and each entry's track, frame, time and box: :mod:`~reid.index.footage`) and their pictures in
the index's media folder (:mod:`~reid.index.media`), so that a query needs no video.

On top of it: :mod:`~reid.index.build` adds image files and :mod:`~reid.index.query` searches
with query images (what the command-line tools run); :mod:`~reid.index.appearances` groups
footage hits into passages past a camera (when and where a person was seen);
:mod:`~reid.index.grid` draws crop results, :mod:`~reid.index.footage_pictures` footage results
(contact sheet, timeline), and :mod:`~reid.index.projector` exports a gallery to TensorBoard's
Embedding Projector. Footage gets into an index through :mod:`reid.video.ingest`. The index
types a config offers are named in :mod:`reid.choices`, so the config is validated without
loading FAISS.
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
