"""The synthetic crop dataset: Market-1501's layout, drawn with OpenCV, without downloads.

The demo and the tests need a re-identification dataset that is small, reproducible and free of
licences, yet not trivial (:mod:`reid.synthetic.sampling` says how identities and cameras are
made hard to tell apart by colour). The first identities train, the last ``test_ids`` form the
query and gallery splits; every image is drawn (:func:`reid.synthetic.drawing.render_person`)
from its own random stream ``default_rng([seed, pid, index])`` and JPEG encoded at a fixed
quality, so the same arguments give byte-identical files however many worker processes draw
them. The folder is written by :mod:`reid.synthetic.folder`'s protocol (staged, manifest last,
never over someone else's files).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pathlib
import time
from collections.abc import Sequence

import cv2
import numpy as np

from reid.data.records import DatasetError
from reid.synthetic.drawing import render_person
from reid.synthetic.folder import GeneratorFolder, Manifest
from reid.synthetic.sampling import CameraStyle, PersonIdentity, sample_camera, sample_identities

MANIFEST_NAME = "synthetic.json"
#: What the manifest's "generator" says: the module's name when the format began, kept so that
#: datasets on disk stay recognised.
GENERATOR = "reid.data.synthetic"
# Bump whenever drawing changes, so an existing dataset drawn by older code is regenerated.
FORMAT_VERSION = 1
JPEG_QUALITY = 90
TRAIN_DIR, QUERY_DIR, GALLERY_DIR = "bounding_box_train", "query", "bounding_box_test"
SPLIT_DIRS = (TRAIN_DIR, QUERY_DIR, GALLERY_DIR)
# Market-1501 readers parse the camera as one digit and the pid as four.
MAX_CAMERAS = 9
MAX_IDS = 9999
MIN_IMAGES_PER_ID = 4
MIN_SIZE, MAX_SIZE = 32, 1024
# Below this many images, starting worker processes costs more than it saves.
POOL_MIN_IMAGES = 64


class SyntheticError(DatasetError):
    """Impossible generator arguments or an output folder the generator must not touch."""


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
    """The arguments that determine a dataset's bytes (the worker count does not)."""

    ids: int = 200
    cameras: int = 4
    images_per_id: int = 20
    seed: int = 0
    height: int = 128
    width: int = 64
    test_ids: int | None = None  # None: half the identities

    def validate(self) -> None:
        """Refuse arguments that cannot give a valid Market-1501-style dataset."""
        names = ("ids", "cameras", "images_per_id", "seed", "height", "width")
        for name in names + (("test_ids",) if self.test_ids is not None else ()):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise SyntheticError(f"{name}: expected an integer, got {value!r}")
        if not 2 <= self.ids <= MAX_IDS:
            raise SyntheticError(f"ids: need 2..{MAX_IDS} identities (split into train and test; "
                                 f"4-digit pids), got {self.ids}")
        if self.test_ids is not None and not 1 <= self.test_ids <= self.ids - 1:
            raise SyntheticError(f"test_ids: need 1..{self.ids - 1} (ids - 1: at least one "
                                 f"identity must be left to train on), got {self.test_ids}")
        if not 2 <= self.cameras <= MAX_CAMERAS:
            raise SyntheticError(f"cameras: need 2..{MAX_CAMERAS} cameras (queries need a match "
                                 f"in another camera; one-digit camera ids), got {self.cameras}")
        if not MIN_IMAGES_PER_ID <= self.images_per_id <= 999_999:
            raise SyntheticError(
                f"images_per_id: need {MIN_IMAGES_PER_ID}..999999 (at least 2 cameras x 2 images, "
                f"so every query keeps a cross-camera match in the gallery; 6-digit image "
                f"numbers), got {self.images_per_id}")
        if self.seed < 0 or self.seed >= 2**32:
            raise SyntheticError(f"seed: need 0 <= seed < 2**32, got {self.seed}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if not MIN_SIZE <= value <= MAX_SIZE:
                raise SyntheticError(f"{name}: need {MIN_SIZE}..{MAX_SIZE} pixels, got {value}")

    @property
    def num_test_ids(self) -> int:
        return self.ids - self.ids // 2 if self.test_ids is None else self.test_ids

    @property
    def num_train_ids(self) -> int:
        return self.ids - self.num_test_ids


@dataclasses.dataclass(frozen=True)
class PlannedImage:
    """One file to draw: who, which camera, which of the identity's images, where it goes."""

    pid: int
    camid: int
    index: int
    split: str  # one of SPLIT_DIRS

    @property
    def filename(self) -> str:
        return f"{self.pid:04d}_c{self.camid}s1_{self.index:06d}_00.jpg"

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.filename}"


@dataclasses.dataclass(frozen=True)
class DatasetPlan:
    """Everything about a dataset except the pixels; cheap to compute, and what tests inspect."""

    params: SyntheticParams
    identities: dict[int, PersonIdentity]  # pid -> identity
    cameras: dict[int, CameraStyle]  # camid -> style
    images: tuple[PlannedImage, ...]

    @property
    def train_pids(self) -> list[int]:
        return list(range(1, self.params.num_train_ids + 1))

    @property
    def test_pids(self) -> list[int]:
        return list(range(self.params.num_train_ids + 1, self.params.ids + 1))


def _camera_counts(rng: np.random.Generator, cameras: int, k: int) -> dict[int, int]:
    """Spread ``k`` images over 2..min(C, k//2) cameras, at least two images in each.

    Two per camera means that after one query per camera the gallery still holds an image from
    every camera the person was seen in, so each query has a true match in another camera.
    """
    m = int(rng.integers(2, min(cameras, k // 2) + 1))
    chosen = np.sort(rng.choice(np.arange(1, cameras + 1), size=m, replace=False))
    extra = rng.multinomial(k - 2 * m, rng.dirichlet(np.full(m, 2.0)))
    return {int(c): 2 + int(e) for c, e in zip(chosen, extra)}


def plan_dataset(params: SyntheticParams) -> DatasetPlan:
    """Identities, cameras and the file list; the first pids train, the last ``test_ids`` test."""
    params.validate()
    identities = sample_identities(params.ids, np.random.default_rng([params.seed, 0, 1]))
    camera_rng = np.random.default_rng([params.seed, 0, 2])
    cameras = {c: sample_camera(camera_rng) for c in range(1, params.cameras + 1)}
    assign_rng = np.random.default_rng([params.seed, 0, 3])
    images: list[PlannedImage] = []
    for pid in range(1, params.ids + 1):
        counts = _camera_counts(assign_rng, params.cameras, params.images_per_id)
        index = 0
        for camid, count in counts.items():
            for j in range(count):
                if pid <= params.num_train_ids:
                    split = TRAIN_DIR
                else:
                    split = QUERY_DIR if j == 0 else GALLERY_DIR
                images.append(PlannedImage(pid, camid, index, split))
                index += 1
    return DatasetPlan(params=params,
                       identities={pid: ident for pid, ident in enumerate(identities, start=1)},
                       cameras=cameras, images=tuple(images))


def encode_bgr_jpeg(img: np.ndarray) -> bytes:
    """JPEG bytes of an image in OpenCV's BGR order, as :func:`render_person` draws it (the
    index's pictures are RGB: :func:`reid.index.media.encode_jpeg`)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise SyntheticError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


_Job = tuple[str, PersonIdentity, CameraStyle, int, int, int, int, int]


def _render_job(job: _Job) -> None:
    path, identity, camera, seed, pid, index, height, width = job
    rng = np.random.default_rng([seed, pid, index])
    img = render_person(identity, camera, rng, height, width)
    pathlib.Path(path).write_bytes(encode_bgr_jpeg(img))


def _init_worker() -> None:
    # Each worker draws one small image at a time; OpenCV's own threads would only contend.
    cv2.setNumThreads(1)


@dataclasses.dataclass(frozen=True)
class SplitCounts:
    images: int
    ids: int
    cameras: int


@dataclasses.dataclass(frozen=True)
class SyntheticSummary:
    """What was written (or found already there) and how long it took."""

    out_dir: str
    params: SyntheticParams
    splits: dict[str, SplitCounts]
    seconds: float
    skipped: bool
    replaced: bool = False  # an earlier synthetic dataset in out_dir was redrawn

    def text(self, redraw: str | None = None) -> str:
        """The summary; ``redraw``: how the caller redraws a skipped dataset (a tool's flag)."""
        p = self.params
        if self.skipped:
            status = ("already complete with the same parameters; skipped"
                      + (f" ({redraw})" if redraw else ""))
        else:
            images = sum(c.images for c in self.splits.values())
            status = (f"{images} images written in {self.seconds:.1f} s"
                      + (" (replaced the previous synthetic dataset)" if self.replaced else ""))
        head = f"synthetic dataset at {self.out_dir}: {status}"
        lines = [head, f"  ids={p.ids} (test {p.num_test_ids}) cameras={p.cameras} "
                       f"images_per_id={p.images_per_id} seed={p.seed} size={p.height}x{p.width}"]
        for split in SPLIT_DIRS:
            c = self.splits[split]
            lines.append(f"  {split:<18} {c.images:>7} images  {c.ids:>5} ids  "
                         f"{c.cameras:>2} cameras")
        return "\n".join(lines)


def _split_counts(plan: DatasetPlan) -> dict[str, SplitCounts]:
    out = {}
    for split in SPLIT_DIRS:
        imgs = [im for im in plan.images if im.split == split]
        out[split] = SplitCounts(len(imgs), len({im.pid for im in imgs}),
                                 len({im.camid for im in imgs}))
    return out


def _written(manifest: Manifest) -> set[str]:
    """The files of the dataset that ``manifest`` describes (empty if it names none)."""
    try:
        params = SyntheticParams(**manifest["params"])  # type: ignore[arg-type]
        params.validate()
    except (TypeError, KeyError, SyntheticError):
        return set()
    return {MANIFEST_NAME, *(im.relpath for im in plan_dataset(params).images)}


FOLDER = GeneratorFolder(MANIFEST_NAME, GENERATOR, FORMAT_VERSION, "a synthetic dataset",
                         SyntheticError, _written)


def is_complete(out_dir: str | os.PathLike, params: SyntheticParams) -> bool:
    """True if ``out_dir`` holds this generator's dataset for ``params``, every file present."""
    return FOLDER.is_complete(out_dir, dataclasses.asdict(params))


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _render_all(jobs: Sequence[_Job], workers: int) -> None:
    if workers <= 1 or len(jobs) < POOL_MIN_IMAGES:
        for job in jobs:
            _render_job(job)
        return
    # spawn, not fork: the caller may already run TensorFlow's threads, which fork can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for _ in pool.imap_unordered(_render_job, jobs, chunksize=32):
            pass


def generate_dataset(out_dir: str | os.PathLike, ids: int = 200, cameras: int = 4,
                     images_per_id: int = 20, seed: int = 0, height: int = 128, width: int = 64,
                     workers: int | None = None, force: bool = False,
                     test_ids: int | None = None) -> SyntheticSummary:
    """Write a Market-1501-layout dataset to ``out_dir`` (train / query / gallery).

    Skips the work when ``out_dir`` already holds a complete dataset with the same parameters,
    unless ``force``. Replaces an earlier synthetic dataset with other parameters, but refuses to
    touch a non-empty folder it did not write. The last ``test_ids`` identities (default: half)
    form the query/gallery split, the others train. ``workers`` (default: usable cores) only
    changes the speed, never the bytes.
    """
    params = SyntheticParams(ids, cameras, images_per_id, seed, height, width, test_ids)
    params.validate()
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise SyntheticError(f"workers: need a positive integer, got {workers!r}")
    out = pathlib.Path(out_dir)
    start = time.perf_counter()
    plan = plan_dataset(params)
    if not force and is_complete(out, params):
        return SyntheticSummary(str(out), params, _split_counts(plan),
                                time.perf_counter() - start, skipped=True)
    # An old ``out`` (checked to be one of ours) is moved aside, then deleted.
    with FOLDER.replace(out) as staging:
        tmp = staging.path
        for split in SPLIT_DIRS:
            (tmp / split).mkdir()
        jobs: list[_Job] = [
            (str(tmp / im.relpath), plan.identities[im.pid], plan.cameras[im.camid], seed,
             im.pid, im.index, height, width)
            for im in plan.images
        ]
        _render_all(jobs, workers if workers is not None else _default_workers())
        staging.finish(dataclasses.asdict(params), {
            "counts": {split: c.images for split, c in _split_counts(plan).items()}})
    return SyntheticSummary(str(out), params, _split_counts(plan),
                            time.perf_counter() - start, skipped=False, replaced=staging.replaced)
