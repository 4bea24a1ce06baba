"""Pictures an index keeps of people cut from footage, so a query needs no access to the video.

They live in ``GALLERY/media/`` beside the versions (:data:`reid.index.versioned_folder.
SHARED_FOLDER`), not inside one: a version is rewritten whole on every save, and copying every
thumbnail each time would make appending to a long recording cost as much as indexing it.
Each file is named by the SHA-256 of its bytes, so it is written once (atomically, before the
version that refers to it is published), never changed, can be shared by any number of
versions and entries, and its name checks its content. A writer stores pictures before it
commits the entries that refer to them, holding :func:`reid.index.versioned_folder.
writing_shared` meanwhile; every save deletes, under the writer lock, the pictures the live
version does not refer to (of removed entries, or left by a run that failed or was killed)
unless such a writer is at work (:func:`reid.index.gallery.prune_media`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import cv2
import numpy as np

from reid.index.errors import CorruptIndexError
from reid.index.versioned_folder import SHARED_FOLDER
from reid.utils.io import atomic_write_bytes

JPEG_QUALITY = 90


def encode_jpeg(image_rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode a {image_rgb.shape} image as JPEG")
    return data.tobytes()


def store(index_dir: str | os.PathLike, data: bytes, suffix: str = ".jpg") -> str:
    """Write ``data`` into the index's media folder (unless there already); return its name.
    Until an entry of the live version refers to it, only
    :func:`reid.index.versioned_folder.writing_shared` keeps a save from deleting it."""
    digest = hashlib.sha256(data).hexdigest()
    name = f"{digest[:2]}/{digest}{suffix}"
    path = pathlib.Path(index_dir) / SHARED_FOLDER / name
    if not path.is_file() or path.stat().st_size != len(data):
        atomic_write_bytes(path, data)
    return name


def path(index_dir: str | os.PathLike, name: str) -> pathlib.Path:
    """Where the media file ``name`` is; a name that leaves the folder is damage."""
    if name.startswith("/") or ".." in pathlib.PurePosixPath(name).parts:
        raise CorruptIndexError(f"{index_dir}: media name {name!r} points outside the index")
    return pathlib.Path(index_dir) / SHARED_FOLDER / name


def read_rgb(index_dir: str | os.PathLike, name: str) -> np.ndarray | None:
    """The picture ``name`` as RGB, or None when it is missing or unreadable."""
    bgr = cv2.imread(str(path(index_dir, name)), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
