"""Re-embed a gallery index with another model: what ``tools/reindex.py`` runs.

An index answers only the queries of the model that built it (its fingerprint,
:meth:`GalleryIndex.check_model`), so a new model (adapted to the site, or trained again)
needs the site's indexes embedded again. Everything an index knows is kept, only the vectors
and the model the manifest records change:

* an entry indexed from an image file is embedded from that file, as
  :func:`reid.index.build.embed_images` embedded it (the file must still be there, with the
  content its digest records);
* a crop cut from footage is embedded from its picture in the index's media folder, so no
  video is read again (the picture is what ingest cut, as a JPEG at most
  :data:`reid.video.ingest.THUMB_MAX_HEIGHT` tall, which the model's input size is well below);
* a track's mean entry is the mean of its crops' new embeddings, as ingest computes it
  (:func:`reid.index.footage.track_mean`); a track whose crops were all removed from the
  index is embedded from its own picture.

Ids, the rows of every table (paths, person and camera labels, sources, times, digests,
cameras, videos, tracks, boxes) and the pictures (linked, else copied, into the new index's
media folder) are the old index's; so are its type, parameters (IVF-PQ is trained again, on
the new vectors) and precision (a quantized index is embedded with the model's conversion of
that precision). A site calibration is not carried over: its thresholds were read off the old
model's scores; the new index is calibrated on its footage again.

The source index is only read. The new one is written once, atomically, as a versioned folder
(:meth:`GalleryIndex.save`), under its writer lock, into a folder that holds nothing yet: a
failure leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import time
from collections.abc import Callable, Sequence

import numpy as np

from reid.config import IndexConfig
from reid.evaluation import collapse_warning, embedding_spread
from reid.index import faiss_index as fi
from reid.index import media
from reid.index import versioned_folder as vf
from reid.index.build import embed_images
from reid.index.errors import GalleryError
from reid.index.footage import FootageEntry, track_mean
from reid.index.gallery import GalleryIndex, is_gallery_index
from reid.index.open import open_model
from reid.modeling.spec import FLOAT32, runtimes_of_precision
from reid.utils.io import atomic_write_bytes, file_sha256
from reid.utils.progress import Progress


@dataclasses.dataclass(frozen=True)
class ReindexReport:
    index_dir: str
    output_dir: str
    model_note: str
    model_dir: str
    fingerprint: str
    entries: int
    image_files: int  # entries embedded from their image files
    footage_crops: int  # entries embedded from their pictures
    tracks: int  # track means computed again
    pictures_only: int  # tracks without crops in the index, embedded from their own picture
    description: str
    calibration_dropped: bool
    seconds: float
    collapsed: str | None = None

    def format(self) -> str:
        parts = [f"{self.image_files} from image files"] if self.image_files else []
        if self.footage_crops or self.tracks:
            parts.append(f"{self.footage_crops} footage crops and {self.tracks} track means")
        what = f" ({', '.join(parts)})" if parts else ""
        lines = [f"index {self.output_dir} ({self.description}): {self.entries} entries of "
                 f"{self.index_dir} re-embedded{what} in {self.seconds:.1f} s by model "
                 f"{self.model_dir}, fingerprint {self.fingerprint[:12]}"]
        if self.pictures_only:
            lines.append(f"  {self.pictures_only} tracks have no crop left in the index: each "
                         f"is embedded from its own picture")
        if self.calibration_dropped:
            lines.append(f"  the site calibration of {self.index_dir} is not carried over (its "
                         f"thresholds were read off the old model's scores): calibrate the new "
                         f"index on its footage with tools/calibrate.py --footage "
                         f"{self.output_dir}")
        if self.collapsed:
            lines.append(self.collapsed)
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Where each entry's new embedding comes from; positions are rows of the index's ids."""

    files: list[tuple[int, str]]  # (position, image file)
    pictures: list[tuple[int, str]]  # (position, media name): footage crops, lone tracks
    means: list[tuple[int, list[int]]]  # (position of a track entry, positions of its crops)
    crops: int  # footage crops
    lone: int  # track entries without crops in the index, embedded from their own picture


def _plan(gallery: GalleryIndex, index_dir: pathlib.Path) -> _Plan:
    """Read what every entry is embedded from, refusing (naming the first, and how many) files
    that are gone or changed and pictures that are missing, before any work."""
    ids = gallery.ids.tolist()
    position = {i: n for n, i in enumerate(ids)}
    rows = gallery.footage_entries(ids)
    files, missing, changed = [], [], []
    for entry in gallery.entries():
        if entry.id in rows:
            continue
        if not os.path.isfile(entry.path):
            missing.append(entry.path)
        elif entry.digest is not None and file_sha256(entry.path) != entry.digest:
            changed.append(entry.path)
        files.append((position[entry.id], entry.path))
    _refuse(missing, f"an image indexed in {index_dir} is not there (moved or deleted); put "
                     f"it back, or relocate the index's paths to where the images are, then "
                     f"re-index")
    _refuse(changed, f"holds other content than the image indexed there in {index_dir} (its "
                     f"SHA-256 differs); put the indexed image back, then re-index")
    crops: dict[tuple[str, int], list[int]] = {}
    tracks: dict[tuple[str, int], FootageEntry] = {}
    for i, row in sorted(rows.items()):
        if row.kind == "crop":
            crops.setdefault((row.camera, row.track), []).append(position[i])
        else:
            tracks[(row.camera, row.track)] = row
    pictures = [(position[i], row.thumb) for i, row in sorted(rows.items())
                if row.kind == "crop" or (row.camera, row.track) not in crops]
    means = [(position[row.id], crops[key]) for key, row in sorted(tracks.items())
             if key in crops]
    _refuse([str(media.path(index_dir, n)) for n in sorted(gallery.media_names())
             if not media.path(index_dir, n).is_file()],
            f"a picture of {index_dir} is missing from its media folder (the index is "
            f"damaged); restore it, then re-index")
    lone = sum(1 for key in tracks if key not in crops)
    return _Plan(files, pictures, means, len(pictures) - lone, lone)


def _refuse(paths: Sequence[str], why: str) -> None:
    """One line naming the first of ``paths`` (and how many more) and ``why``."""
    if paths:
        more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
        raise GalleryError(f"{paths[0]}{more}: {why}")


def _check_output(index_dir: pathlib.Path, output_dir: pathlib.Path) -> None:
    """The new index goes into a folder that holds nothing (an empty one, or none), outside the
    source index: re-indexing never replaces an index."""
    if is_gallery_index(output_dir):
        raise GalleryError(f"{output_dir}: already holds a gallery index; re-indexing writes a "
                           f"new index and never replaces one (choose a new folder)",
                           field="output")
    vf.check_writable_folder(output_dir)
    source, target = index_dir.resolve(), output_dir.resolve()
    if target == source or source in target.parents:
        raise GalleryError(f"{output_dir}: inside the index being re-indexed; choose a folder "
                           f"outside {index_dir}", field="output")
    if output_dir.is_dir() and any(p.name != vf.LOCK_FILE for p in output_dir.iterdir()):
        raise GalleryError(f"{output_dir}: already exists and is not empty; re-indexing "
                           f"writes a new index (choose a new folder)", field="output")


def _copy_media(index_dir: pathlib.Path, output_dir: pathlib.Path, names: Sequence[str]) -> None:
    """The pictures of the source index in the new one's media folder: hard links where the
    file system allows (they are never changed, see :mod:`reid.index.media`), else copies."""
    for name in names:
        source, target = media.path(index_dir, name), media.path(output_dir, name)
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            atomic_write_bytes(target, source.read_bytes())


def _embed_pictures(embedder: object, index_dir: pathlib.Path, names: Sequence[str],
                    batch_size: int, progress: bool) -> np.ndarray:
    """The embeddings of the media pictures ``names``, read as ingest hands crops to the
    embedder (RGB pixels, the embedder prepares them), a batch at a time."""
    rows = [np.zeros((0, embedder.embedding_dim), np.float32)]
    bar = Progress(f"{index_dir} footage pictures", len(names), "picture", enabled=progress)
    for start in range(0, len(names), batch_size):
        images = []
        for name in names[start:start + batch_size]:
            image = media.read_rgb(index_dir, name)
            if image is None:
                raise GalleryError(f"{media.path(index_dir, name)}: a picture of the index "
                                   f"cannot be read (damaged)")
            images.append(image)
        rows.append(embedder.embed(images))
        bar.update(start + len(images))
    bar.close()
    return np.concatenate(rows)


def reindex_gallery(index_dir: str | os.PathLike, model: str | os.PathLike,
                    output_dir: str | os.PathLike, *, runtime: str = "auto",
                    batch_size: int | None = None, progress: bool = True,
                    lock_timeout: float = vf.DEFAULT_LOCK_TIMEOUT,
                    log: Callable[[str], None] = print) -> ReindexReport:
    """Write into ``output_dir`` the index at ``index_dir`` with every entry embedded by
    ``model`` (a run or an exported model folder), as the module docstring says."""
    start = time.perf_counter()
    index_dir, output_dir = pathlib.Path(index_dir), pathlib.Path(output_dir)
    _check_output(index_dir, output_dir)
    gallery = GalleryIndex.load(index_dir)
    where = str(index_dir)
    plan = _plan(gallery, index_dir)
    precision = gallery.model.precision
    if runtime == "auto" and precision != FLOAT32:
        runtime = runtimes_of_precision(precision)[0]
    opened = open_model(gallery, model, runtime, where=where, keep=False)
    log(opened.note)
    embedder, info = opened.embedder, opened.info
    if info.precision != precision:
        raise GalleryError(f"{where}: the index holds {precision} embeddings; runtime "
                           f"{embedder.runtime} gives {info.precision} ones: re-embed with "
                           f"runtime {' or '.join(runtimes_of_precision(precision))}",
                           field="runtime")
    fi.check_params(gallery.config, info.embedding_dim)  # before the work, not after it
    batch_size = batch_size or IndexConfig().batch_size
    calibrated = gallery.site_calibration is not None
    with vf.writer_lock(output_dir, lock_timeout, log):
        _check_output(index_dir, output_dir)  # again: another process may have been faster
        try:
            with vf.writing_shared(output_dir):
                _copy_media(index_dir, output_dir, sorted(gallery.media_names()))
                vectors = np.zeros((gallery.count, info.embedding_dim), np.float32)
                _, embedded, bad = embed_images(embedder, [p for _, p in plan.files],
                                                batch_size, progress)
                _refuse([f"{path} ({why})" for path, why in bad],
                        f"an image indexed in {where} cannot be read")
                vectors[[n for n, _ in plan.files]] = embedded
                # The copies in the new index: what is embedded is what it will show.
                vectors[[n for n, _ in plan.pictures]] = _embed_pictures(
                    embedder, output_dir, [name for _, name in plan.pictures], batch_size,
                    progress)
                for n, crops in plan.means:
                    vectors[n] = track_mean(vectors[crops])
                gallery.replace_embeddings(info, vectors)
                gallery.save(output_dir, locked=True)
        except BaseException:
            # Nothing of a failed run stays: the writer lock then removes the folder it made.
            if not is_gallery_index(output_dir):
                with contextlib.suppress(OSError):
                    shutil.rmtree(output_dir / vf.SHARED_FOLDER)
            raise
    return ReindexReport(
        index_dir=where, output_dir=str(output_dir), model_note=opened.note,
        model_dir=str(opened.model_dir), fingerprint=info.fingerprint, entries=gallery.count,
        image_files=len(plan.files), footage_crops=plan.crops,
        tracks=len(plan.means) + plan.lone, pictures_only=plan.lone,
        description=fi.describe(gallery.config),
        calibration_dropped=calibrated, seconds=time.perf_counter() - start,
        collapsed=collapse_warning(embedding_spread(gallery.vectors), f"the index {output_dir}"))
