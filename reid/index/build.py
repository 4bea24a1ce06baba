"""Build or extend a gallery index from image files: what ``tools/build_index.py`` runs.

Unreadable files never stop a build: every file is decoded once (with the training pipeline's
decoder) as it is embedded, bad ones are set aside with the reason, and the index is written
only after everything else succeeded, atomically, so a failure at any step leaves the folder as
it was.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from reid.config import IndexConfig
from reid.data.market1501 import parse_market_name
from reid.evaluation import collapse_warning, embedding_spread
from reid.index import faiss_index as fi
from reid.index import versioned_folder as vf
from reid.index.errors import GalleryError
from reid.index.gallery import GalleryIndex, is_gallery_index, normalize_path
from reid.index.open import open_model
from reid.utils.io import file_sha256


def _folder_files(folder: str) -> tuple[list[str], list[str]]:
    """(entries directly inside ``folder`` that are not folders, its subfolders), sorted.

    Links that point nowhere count as files, so that they are reported as unreadable rather
    than silently left out; subfolders are returned for the report, not searched. Hidden
    entries are left out: archives made on macOS put a ``._name.jpg`` fork beside every image.
    """
    try:
        with os.scandir(folder) as entries:
            visible = [e for e in entries if not e.name.startswith(".")]
            return (sorted(e.path for e in visible if not e.is_dir()),
                    sorted(e.path for e in visible if e.is_dir()))
    except OSError as exc:
        raise GalleryError(f"{folder}: cannot list folder ({exc.strerror})") from None


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """What ``--images`` named: ``paths`` (resolved, each file once, in order), ``repeats``
    (files named again), ``subfolders`` (inside the given folders, not searched) and
    ``names`` (resolved path -> the name it was given by, where a symlink made them differ:
    in a folder of links the labels are in the link names)."""

    paths: list[str]
    repeats: list[str]
    subfolders: list[str]
    names: dict[str, str]


def collect_images(specs: Sequence[str | os.PathLike]) -> ImageFiles:
    """Expand folders, globs and files into the files to index (see :class:`ImageFiles`).

    A folder contributes every visible file directly inside it (non-images among them are
    reported as unreadable later rather than silently ignored); a glob (``**`` recurses) every
    file it matches. A folder with no files, a glob matching none, or a path that does not exist
    is an error naming it: a typo must not build an empty index.
    """
    if not specs:
        raise GalleryError("no images given", field="images")
    found: list[str] = []
    subfolders: list[str] = []
    for spec in specs:
        spec = os.fspath(spec)
        if os.path.isdir(spec):
            files, folders = _folder_files(spec)
            subfolders.extend(folders)
            if not files:
                raise GalleryError(f"{spec}: folder has no files"
                                   + (f" (only folders: pass '{spec}/**' to search below it)"
                                      if folders else ""))
        elif os.path.isfile(spec):
            files = [spec]
        elif glob.has_magic(spec):
            files = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not files:
                raise GalleryError(f"{spec}: no files match this pattern")
        else:
            raise GalleryError(f"{spec}: no such file or folder")
        found.extend(files)
    unique: list[str] = []
    repeats: list[str] = []
    names: dict[str, str] = {}
    seen: set[str] = set()
    for given in (os.path.abspath(p) for p in found):
        # A link that points nowhere keeps its own name, so that the report names what was given.
        path = normalize_path(given) if os.path.exists(given) else given
        if path in seen:
            repeats.append(path)
            continue
        seen.add(path)
        unique.append(path)
        if path != given:
            names[path] = given
    return ImageFiles(unique, repeats, subfolders, names)


def _why_unreadable(path: str) -> str | None:
    """Why ``path`` does not decode, alone; None when it does."""
    from reid.data.pipeline import BadImageError, load_image

    try:
        load_image(path, 8, 8)
    except BadImageError as exc:
        return str(exc).removeprefix(f"{path}: ")
    return None


def read_digests(paths: Sequence[str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """({path: SHA-256 of its bytes}, [(unreadable path, reason)]), in input order."""
    digests: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    for path in paths:
        try:
            digests[path] = file_sha256(path)
        except OSError as exc:
            bad.append((path, f"cannot read ({exc.strerror})"))
    return digests, bad


def embed_images(embedder: object, paths: Sequence[str], batch_size: int,
                 progress: bool = True
                 ) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """(paths that decoded, their embeddings, [(path, reason)] for those that did not).

    Each file is decoded and resized once, as training would, and embedded in the same pass
    (the embedder normalises); the few that fail are decoded again alone, for the reason."""
    from reid.data.pipeline import indexed_eval_dataset, load_image

    paths = list(paths)
    dim = embedder.embedding_dim
    if not paths:
        return [], np.zeros((0, dim), np.float32), []
    height, width = embedder.input_size
    batches = indexed_eval_dataset(paths, height, width, batch_size)
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(len(paths), unit_name="image")
    positions, rows = [], []
    for index, images in batches:
        positions.append(np.asarray(index))
        rows.append(embedder.embed(images))
        if bar is not None:
            bar.add(len(positions[-1]))
    decoded = set(np.concatenate(positions).tolist()) if positions else set()
    bad: list[tuple[str, str]] = []
    for i, path in enumerate(paths):
        if i in decoded:
            continue
        reason = _why_unreadable(path)
        if reason is None:
            # It decodes alone: whatever failed in the pass (memory, a file being written) was
            # not the file. Embed it now, or the error propagates; it is never dropped.
            positions.append(np.array([i]))
            rows.append(embedder.embed([load_image(path, height, width)]))
        else:
            bad.append((path, reason))
    found = np.concatenate(positions) if positions else np.zeros(0, np.int64)
    vectors = np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)
    order = np.argsort(found, kind="stable")  # the input's order, retried files included
    return [paths[i] for i in found[order]], vectors[order], bad


def record_missing_digests(gallery: GalleryIndex, log: Callable[[str], None]) -> int:
    """Digest the files of entries indexed before digests were kept (format 1), so that they
    too are recognised when re-added under another path; returns how many were recorded.
    Files no longer there keep no digest."""
    entries = [e for e in gallery.entries_without_digest() if os.path.isfile(e.path)]
    if not entries:
        return 0
    log(f"recording the content digests of {len(entries)} images indexed before digests "
        f"were kept")
    digests = {}
    for entry in entries:
        try:
            digests[entry.id] = file_sha256(entry.path)
        except OSError:
            continue
    gallery.record_digests(digests)
    return len(digests)


def sort_by_content(gallery: GalleryIndex, digests: dict[str, str]
                    ) -> tuple[list[str], dict[int, tuple[str, str]], list[tuple[str, str]]]:
    """Split readable files into (new ones, {id: (indexed path, path)} for indexed files that
    moved here, [(path, indexed path)] for copies of files still where they were indexed).

    An indexed file is one with the same content digest; it moved when nothing is left at its
    indexed path. A file is new when its content is not indexed yet."""
    known = gallery.indexed_digests(sorted(set(digests.values())))
    new: list[str] = []
    moved: dict[int, tuple[str, str]] = {}
    copies: list[tuple[str, str]] = []
    for path, digest in digests.items():
        entry = known.get(digest)
        if entry is None:
            new.append(path)
        elif entry.id not in moved and not os.path.lexists(entry.path):
            moved[entry.id] = (entry.path, path)
        else:
            copies.append((path, moved.get(entry.id, (None, entry.path))[1]))
    return new, moved, copies


def market_labels(paths: Sequence[str]) -> tuple[list[int | None], list[int | None]]:
    """Person ids and cameras from Market-1501-style file names; None where not one."""
    parsed = [parse_market_name(p) for p in paths]
    return ([None if p is None else p[0] for p in parsed],
            [None if p is None else p[1] for p in parsed])


def _some(lines: list[str], limit: int = 10) -> list[str]:
    """At most ``limit`` of ``lines``, and how many were left out: a moved folder of thousands
    of images must not scroll the summary away."""
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"  ... and {len(lines) - limit} more"]


@dataclasses.dataclass
class BuildReport:
    index_dir: str
    model_note: str
    description: str
    files: int
    added: int
    duplicates: list[str]
    unreadable: list[tuple[str, str]]
    count: int
    created: bool
    saved: bool
    seconds: float
    subfolders: list[str] = dataclasses.field(default_factory=list)
    moved: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (old, new path)
    copies: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, indexed)
    digested: int = 0  # older entries whose content digests were recorded
    collapsed: str | None = None  # the warning, when the index's embeddings have collapsed

    def format(self) -> str:
        if self.saved:
            action = "created" if self.created else "updated"
        else:
            action = "unchanged" if not self.created else "not written"
        moved = f", recognised {len(self.moved)} as moved" if self.moved else ""
        lines = [f"index {self.index_dir} ({self.description}): {action}, "
                 f"{self.count} images",
                 f"{self.files} files: added {self.added}{moved}, skipped "
                 f"{len(self.duplicates)} as duplicates, skipped {len(self.unreadable)} as "
                 f"unreadable ({self.seconds:.1f} s)"]
        lines += [f"  unreadable: {path}: {why}" for path, why in self.unreadable]
        lines += _some([f"  moved: {old} -> {new} (path updated)" for old, new in self.moved])
        lines += _some([f"  same content as {indexed}: {path}" for path, indexed in self.copies])
        if self.digested:
            lines.append(f"  recorded content digests of {self.digested} images indexed "
                         f"before digests were kept")
        lines += [f"  not searched: {path}/ (a folder; pass '{path}/**' or the folder itself to "
                  f"index what is in it)" for path in self.subfolders]
        if self.collapsed:
            lines.append(self.collapsed)
        return "\n".join(lines)


def build_gallery(images: Sequence[str | os.PathLike], index_dir: str | os.PathLike,
                  model: str | os.PathLike | None = None, *, append: bool = False,
                  overwrite: bool = False, config: IndexConfig | None = None,
                  index_type: str | None = None, batch_size: int | None = None,
                  source: str | None = None, progress: bool = True,
                  lock_timeout: float = vf.DEFAULT_LOCK_TIMEOUT, runtime: str = "auto",
                  log: Callable[[str], None] = print) -> BuildReport:
    """Embed ``images`` and write them into the index at ``index_dir``.

    A new index takes its type and parameters from ``config`` (and ``index_type``); an
    appended one keeps those in its manifest and, unless ``model`` is given, its model. The
    model must be the one that built the index (same fingerprint). The index's writer lock is
    held from reading the index to saving it, so that two builds on one index run one after
    the other and the second adds to what the first wrote (``lock_timeout``: how long to wait).
    """
    start = time.perf_counter()
    index_dir = pathlib.Path(index_dir)
    if append and overwrite:
        raise GalleryError("appending to an index and overwriting it exclude each other",
                           field=("append", "overwrite"))
    vf.check_writable_folder(index_dir)
    files = collect_images(images)
    paths, repeats = files.paths, files.repeats
    with vf.writer_lock(index_dir, lock_timeout, log):
        if not overwrite:
            vf.check_pointer(index_dir)  # lost CURRENT: say what to restore, delete nothing
        exists = is_gallery_index(index_dir)
        if exists and not (append or overwrite):
            raise GalleryError(f"{index_dir}: already holds a gallery index; append to it or "
                               f"overwrite it", field=("append", "overwrite"))
        # An index being replaced is read only for its model, so a damaged one can be overwritten.
        need_existing = exists and (append or model is None)
        existing = GalleryIndex.load(index_dir) if need_existing else None
        # Appending keeps to the index's model and precision; a replaced index only lends its
        # model's folder.
        opened = open_model(existing, model, runtime, where=str(index_dir), keep=append)
        embedder, model_note = opened.embedder, opened.note
        log(model_note)

        if existing is not None and append:
            gallery = existing
            if index_type is not None and index_type != gallery.config.type:
                raise GalleryError(f"{index_dir}: the index is of type {gallery.config.type}; it "
                                   f"cannot be appended to as {index_type} (overwrite it to "
                                   f"rebuild it)", field="overwrite")
        else:
            cfg = config or IndexConfig()
            if index_type is not None:
                cfg = dataclasses.replace(cfg, type=index_type)
            gallery = GalleryIndex(opened.info, cfg)
        created = not (append and exists)
        batch_size = batch_size or (config.batch_size if config else IndexConfig().batch_size)

        already = gallery.contains(paths)
        todo = [p for p in paths if p not in already]
        duplicates = repeats + [p for p in paths if p in already]
        if not gallery.trained and todo:  # fail before spending time reading and embedding
            fi.check_ivfpq_training_size(gallery.config, len(todo))
        digested = record_missing_digests(gallery, log) if not created else 0

        digests, bad = read_digests(todo)
        new, moved, copies = sort_by_content(gallery, digests)
        if moved:
            gallery.move({i: path for i, (_, path) in moved.items()})
        duplicates += [path for path, _ in copies]
        good, vectors, undecoded = embed_images(embedder, new, batch_size, progress)
        bad += undecoded
        if not gallery.trained and good:  # IVF-PQ's count check again, on what decoded
            fi.check_ivfpq_training_size(gallery.config, len(good))
        pids, camids = market_labels([files.names.get(p, p) for p in good])
        sources = None if source is None else [source] * len(good)
        result = gallery.add(good, vectors, pids=pids, camids=camids, sources=sources,
                             digests=[digests[p] for p in good])
        duplicates += result.duplicates
        # Nothing readable never replaces an existing index.
        saved = result.num_added > 0 or bool(moved) or digested > 0
        if saved:
            gallery.save(index_dir, locked=True, overwrite=overwrite)
        return BuildReport(index_dir=str(index_dir), model_note=model_note,
                           description=fi.describe(gallery.config), files=len(paths) + len(repeats),
                           added=result.num_added, duplicates=duplicates, unreadable=bad,
                           count=gallery.count, created=created, saved=saved,
                           seconds=time.perf_counter() - start, subfolders=files.subfolders,
                           moved=list(moved.values()), copies=copies, digested=digested,
                           collapsed=collapse_warning(embedding_spread(gallery.vectors),
                                                      f"the index {index_dir}"))


#: Relocated files whose content is compared with what was indexed (evenly spaced): enough to
#: catch a wrong folder (another dataset with the same file names), cheap on a large gallery.
RELOCATE_CHECKS = 100


@dataclasses.dataclass(frozen=True)
class RelocateReport:
    index_dir: str
    old_root: str
    new_root: str
    moved: int
    stayed: int  # entries under the old folder whose files are still there
    missing: list[str]  # moved entries whose files are not at the new path either
    unchecked: int  # moved entries without a digest (indexed by format 1): content not checked

    def format(self) -> str:
        lines = [f"index {self.index_dir}: updated, {self.moved} image paths moved from "
                 f"{self.old_root} to {self.new_root}"]
        if self.stayed:
            lines.append(f"  kept {self.stayed} paths whose files are still where they were "
                         f"indexed")
        if self.missing:
            lines.append(f"  warning: {len(self.missing)} of them are not at their new path "
                         f"(queries will flag them), e.g. {self.missing[0]}")
        if self.unchecked:
            lines.append(f"  warning: the content of {self.unchecked} of them was not checked "
                         f"(indexed before digests were kept)")
        return "\n".join(lines)


def relocation_plan(old_key: str, new_key: str, under: dict[int, str]
                    ) -> tuple[dict[int, tuple[str, str]], int]:
    """({id: (old path, new path)} for the entries under ``old_key`` whose files are gone,
    how many are still in place). An image still at its indexed path did not move, whatever
    else moved, so a partial move or a folder moved into itself leaves valid paths alone."""
    plan: dict[int, tuple[str, str]] = {}
    for i, path in under.items():
        if not os.path.lexists(path):
            rest = os.path.relpath(path, old_key)
            plan[i] = (path, new_key if rest == "." else os.path.join(new_key, rest))
    return plan, len(under) - len(plan)


def relocate_gallery(index_dir: str | os.PathLike, old_root: str | os.PathLike,
                     new_root: str | os.PathLike, *,
                     lock_timeout: float = vf.DEFAULT_LOCK_TIMEOUT,
                     log: Callable[[str], None] = print) -> RelocateReport:
    """Repair the paths of an index whose images in folder ``old_root`` moved to ``new_root``,
    without reading the images again (but for a sample whose content is checked against its
    digest, so that a wrong folder is refused), under the index's writer lock. The index is
    unchanged unless at least one moved image is found at its new path."""
    index_dir = pathlib.Path(index_dir)
    if not index_dir.is_dir():
        raise GalleryError(f"{index_dir}: gallery index folder not found")
    with vf.writer_lock(index_dir, lock_timeout, log):
        vf.check_pointer(index_dir)
        gallery = GalleryIndex.load(index_dir)
        old_key, under = gallery.paths_under(old_root)
        new_key = normalize_path(new_root)
        if new_key == old_key:
            raise GalleryError(f"{new_root}: the same folder as {old_root}; nothing to relocate")
        plan, stayed = relocation_plan(old_key, new_key, under)
        if not plan:
            raise GalleryError(f"{old_root}: all {stayed} indexed images in it are still there; "
                               f"nothing to relocate (index unchanged)")
        missing = [new for _, new in plan.values() if not os.path.isfile(new)]
        if len(missing) == len(plan):
            raise GalleryError(f"{new_root}: none of the {len(plan)} images gone from "
                               f"{old_root} is there (e.g. {missing[0]}); index unchanged")
        entries = {e.id: e for e in gallery.entries(list(plan))}
        found = [i for i, (_, new) in plan.items()
                 if entries[i].digest is not None and os.path.isfile(new)]
        for i in found[::max(1, len(found) // RELOCATE_CHECKS)]:
            old, new = plan[i]
            if file_sha256(new) != entries[i].digest:
                raise GalleryError(f"{new}: its content differs from the image indexed as "
                                   f"{old}, so {new_root} is not where those images moved; "
                                   f"index unchanged")
        gallery.move({i: new for i, (_, new) in plan.items()})
        gallery.save(index_dir, locked=True)
    unchecked = sum(entries[i].digest is None for i in plan)
    return RelocateReport(str(index_dir), str(old_root), str(new_root), len(plan), stayed,
                          missing, unchecked)
