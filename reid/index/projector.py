"""Export a gallery to TensorBoard's Embedding Projector (PCA, t-SNE, UMAP of the embeddings).

Writes into one folder, which is then a TensorBoard log directory
(``tensorboard --logdir OUT``, tab "Projector"):

* ``vectors.tsv``: one embedding per line, tab-separated;
* ``metadata.tsv``: a header line and one line per embedding (pid, camera, file, source, id),
  so points can be coloured and searched by person or camera;
* ``sprite.png``: every crop as a thumbnail, in a square grid in point order;
* ``projector_config.pbtxt``: ties them together.

TSV rather than a checkpoint keeps the export free of TensorFlow and readable by the
standalone projector (projector.tensorflow.org) too. The browser handles some ten thousand
points comfortably, so large galleries are subsampled (uniformly, seeded) to ``max_points``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib

import cv2
import numpy as np

from reid.index.errors import GalleryError
from reid.index.gallery import GalleryIndex
from reid.utils.io import atomic_path, atomic_write_text

CONFIG_FILE = "projector_config.pbtxt"
TENSOR_FILE = "vectors.tsv"
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.png"
PROJECTOR_FILES = (CONFIG_FILE, TENSOR_FILE, METADATA_FILE, SPRITE_FILE)
#: The projector (WebGL textures) accepts sprites up to this many pixels a side.
SPRITE_MAX_SIDE = 8192
METADATA_COLUMNS = ("pid", "camera", "file", "source", "id")


@dataclasses.dataclass(frozen=True)
class ProjectorExport:
    out_dir: str
    num_points: int
    gallery_size: int
    thumb_size: tuple[int, int]  # (height, width)
    sprite_shape: tuple[int, int]  # (height, width)


def select_points(total: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Row numbers to export: all, or a uniform sample of ``max_points`` in gallery order."""
    if max_points < 1:
        raise GalleryError(f"max_points: expected a positive number, got {max_points}")
    if total <= max_points:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=max_points, replace=False))


def sprite_layout(num: int, thumb_height: int, thumb_width: int) -> tuple[int, int, int]:
    """(columns, thumb height, thumb width): a square grid, thumbnails shrunk (keeping their
    aspect ratio) until the sprite fits the projector's size limit."""
    cols = max(1, math.ceil(math.sqrt(num)))
    scale = min(1.0, SPRITE_MAX_SIDE / (cols * max(thumb_height, thumb_width)))
    return cols, max(1, int(thumb_height * scale)), max(1, int(thumb_width * scale))


def make_sprite(paths: list[str], thumb_height: int, thumb_width: int) -> np.ndarray:
    """BGR sprite of the crops in order; unreadable files become grey tiles."""
    cols, th, tw = sprite_layout(len(paths), thumb_height, thumb_width)
    rows = max(1, math.ceil(len(paths) / cols))
    sprite = np.full((rows * th, cols * tw, 3), 255, np.uint8)
    for i, path in enumerate(paths):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        r, c = divmod(i, cols)
        tile = sprite[r * th:(r + 1) * th, c * tw:(c + 1) * tw]
        if image is None or image.size == 0:
            tile[:] = 200
            continue
        tile[:] = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
    return sprite


def _tsv_cell(value: object) -> str:
    if value is None:
        return "unknown"
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def check_out_folder(out_dir: str | os.PathLike, overwrite: bool = False) -> pathlib.Path:
    """``out_dir`` as a path, once it is known an export may write there: it is new, empty, an
    earlier export (ours to replace), or ``overwrite`` allows writing beside other files.
    Callers that do long work before exporting call it first, so a refusal comes before that.
    """
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GalleryError(f"{out}: exists and is not a folder")
    others = [] if not out.is_dir() else sorted(
        p.name for p in out.iterdir() if p.name not in PROJECTOR_FILES)
    if others and not overwrite:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise GalleryError(f"{out}: folder holds files an export did not write ({shown}); "
                           f"choose a new or empty folder, or let the projector files be "
                           f"written beside them", field="projector_overwrite")
    return out


def export_projector(gallery: GalleryIndex, out_dir: str | os.PathLike,
                     max_points: int = 10000, thumb_height: int = 64, seed: int = 0,
                     tensor_name: str = "gallery", overwrite: bool = False) -> ProjectorExport:
    """Write the projector files for ``gallery`` into ``out_dir`` (see the module docstring).

    Each file is written atomically and the config last, so TensorBoard never sees a config
    pointing at files that are not there yet.
    """
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    if gallery.count == 0:
        raise GalleryError("the gallery is empty: nothing to export")
    if thumb_height < 4:
        raise GalleryError(f"thumb_height: expected at least 4 pixels, got {thumb_height}")
    out = check_out_folder(out_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)

    rows = select_points(gallery.count, max_points, seed)
    ids = gallery.ids[rows]
    vectors = np.asarray(gallery.vectors[rows], dtype=np.float32)
    entries = gallery.entries(ids)
    thumb_width = max(1, thumb_height // 2)  # person crops are about twice as tall as wide

    with atomic_path(out / TENSOR_FILE) as tmp:
        np.savetxt(tmp, vectors, fmt="%.6g", delimiter="\t")
    lines = ["\t".join(METADATA_COLUMNS)]
    lines += ["\t".join(_tsv_cell(v) for v in (e.pid, e.camid, os.path.basename(e.path),
                                                e.source, e.id)) for e in entries]
    atomic_write_text(out / METADATA_FILE, "\n".join(lines) + "\n")
    sprite = make_sprite([e.path for e in entries], thumb_height, thumb_width)
    ok, encoded = cv2.imencode(".png", sprite)
    if not ok:
        raise GalleryError(f"{out / SPRITE_FILE}: cannot encode the sprite")
    with atomic_path(out / SPRITE_FILE) as tmp:
        tmp.write_bytes(encoded.tobytes())
    _, th, tw = sprite_layout(len(entries), thumb_height, thumb_width)

    config = ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = tensor_name
    embedding.tensor_path = TENSOR_FILE
    embedding.tensor_shape.extend(vectors.shape)
    embedding.metadata_path = METADATA_FILE
    embedding.sprite.image_path = SPRITE_FILE
    embedding.sprite.single_image_dim.extend([tw, th])  # width, height
    atomic_write_text(out / CONFIG_FILE, text_format.MessageToString(config))
    return ProjectorExport(str(out), len(entries), gallery.count, (th, tw),
                           (int(sprite.shape[0]), int(sprite.shape[1])))
