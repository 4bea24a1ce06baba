"""tf.data input pipelines: identity-balanced training batches and ordered evaluation batches.

Every image, in training, evaluation and single-image use, goes through the same
decode + resize (:func:`decode_resize`), so a query photo is seen exactly as the gallery was.
The resize is :mod:`reid.data.preprocessing`'s, in TensorFlow ops: bilinear with antialiasing
(a triangle filter widened when shrinking, as PIL does), so large photos are not aliased; when
an image is only enlarged, as the usual small person crops are, the cheaper plain bilinear op
is used, which gives the same result.

Training batches are normalised here (the network takes them as they are); evaluation batches
are RGB pixels in [0, 255], which :class:`reid.modeling.Embedder` normalises as its spec says.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from reid.config import DataConfig
from reid.data.decode import BadImageError
from reid.data.image_size import oversize_reason
from reid.data.preprocessing import PIXEL_MAX, RESIZE
from reid.data.records import ImageRecord
from reid.data.sampler import PKSampler
from reid.data.transforms import augment, normalize, sample_seed


def decode_resize(contents: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Encoded image bytes (JPEG/PNG/BMP/GIF) -> float32 (height, width, 3) RGB in [0, 255].

    JPEG is decoded with the accurate integer DCT (TensorFlow's default is the fast one, up to
    7 levels off), which is what OpenCV uses too: :mod:`reid.data.decode` reproduces this
    function without TensorFlow, pixel for pixel, for queries served by LiteRT or ONNX.
    """
    image = tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
    )
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    shrinks = (shape[0] > height) | (shape[1] > width)
    image = tf.cond(
        shrinks,
        lambda: tf.image.resize(image, [height, width], method=RESIZE, antialias=True),
        lambda: tf.image.resize(image, [height, width], method=RESIZE, antialias=False),
    )
    # Antialiased resizing can overshoot by a rounding error; keep the [0, 255] contract.
    image = tf.clip_by_value(image, 0.0, PIXEL_MAX)
    return tf.ensure_shape(image, [height, width, 3])


def _read(path: tf.Tensor, height: int, width: int) -> tf.Tensor:
    return decode_resize(tf.io.read_file(path), height, width)


def _tf_reason(exc: tf.errors.OpError) -> str:
    """The useful part of a TF op error: no function-node prefix, no op suffix, one line."""
    text = (exc.message or type(exc).__name__).splitlines()[0]
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()


_TF_READ_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
                   tf.errors.UnknownError, tf.errors.FailedPreconditionError,
                   tf.errors.PermissionDeniedError)


def _decode_eager(path: str, height: int, width: int) -> tf.Tensor:
    too_big = oversize_reason(path)
    if too_big is not None:
        raise BadImageError(f"{path}: not decoded: {too_big}")
    try:
        return decode_resize(tf.io.read_file(path), height, width)
    except _TF_READ_ERRORS as exc:
        raise BadImageError(f"{path}: cannot read or decode image ({_tf_reason(exc)})") from None


def check_images(paths: Sequence[str], skip_bad: bool = False) -> list[str]:
    """Decode every image once, with the pipeline's own decoder, before any work depends on it.

    A file that cannot be read or decoded, or whose header says it is too large to decode
    (:mod:`reid.data.image_size`), raises :class:`BadImageError` naming it (and counting any
    others), or with ``skip_bad`` is dropped with one warning listing every skipped file.
    Returns the good paths in their original order.
    """
    paths = [str(p) for p in paths]
    if not paths:
        return []
    decodable = [oversize_reason(p) is None for p in paths]

    def probe(index: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # The full decode (not just the header) so truncated files fail here, not mid-epoch.
        # The result must feed the output, or tf.data prunes the decode away.
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return index, tf.shape(image)

    probed = np.flatnonzero(decodable).astype(np.int64)  # the oversized stay bad, undecoded
    ds = tf.data.Dataset.from_tensor_slices((
        probed, tf.constant([paths[i] for i in probed], dtype=tf.string, shape=[len(probed)])))
    ds = ds.map(probe, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors().batch(1024)
    good = np.zeros(len(paths), dtype=bool)
    for batch, _ in ds.as_numpy_iterator():
        good[batch] = True
    bad = [p for p, ok in zip(paths, good) if not ok]
    if bad and not skip_bad:
        more = f"; {len(bad) - 1} more unreadable image(s)" if len(bad) > 1 else ""
        try:  # decode the first bad file again, alone, to say why it failed
            _decode_eager(bad[0], 8, 8)
        except BadImageError as exc:
            raise BadImageError(f"{exc}{more}") from None
        raise BadImageError(f"{bad[0]}: cannot read or decode image{more}")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {', '.join(bad)}", stacklevel=2)
    return [p for p, ok in zip(paths, good) if ok]


class TrainInput:
    """The training data of a run: a P x K sampler over the records plus the per-epoch pipeline.

    Build it once per run (it checks every image when ``check`` is set) and call
    :meth:`epoch` for each epoch. ``num_batches`` (e.g. train.steps_per_epoch) overrides the
    sampler's default epoch length of about one pass over the images.

    With ``replicas`` (tf.distribute), a step's global batch is ``replicas`` P x K batches:
    the sampler draws replicas x P distinct identities and replica r takes the r-th P of them,
    K images each, so no identity is split across replicas and every replica's triplets come
    from a whole P x K batch. It is the batch a single device would see with ``replicas`` x P
    identities, image for image and augmentation for augmentation.
    """

    def __init__(self, records: Sequence[ImageRecord], config: DataConfig, check: bool = True,
                 num_batches: int | None = None, replicas: int = 1) -> None:
        records = list(records)
        if check:
            good = set(check_images([r.path for r in records], config.skip_bad_images))
            records = [r for r in records if r.path in good]
        self.records: tuple[ImageRecord, ...] = tuple(records)
        self.config = config
        self.replicas = int(replicas)
        self._paths = np.array([r.path for r in records], dtype=object)
        self._labels = np.array([r.pid for r in records], dtype=np.int32)
        self.sampler = PKSampler(self._labels, config.ids_per_batch * self.replicas,
                                 config.images_per_id, config.seed,
                                 config.sample_with_replacement, num_batches=num_batches)

    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch

    @property
    def batch_size(self) -> int:
        """Images in one replica's batch, P x K."""
        return self.config.ids_per_batch * self.config.images_per_id

    @property
    def global_batch_size(self) -> int:
        """Images in one step, over every replica."""
        return self.sampler.batch_size

    def epoch(self, epoch: int, replicas: range | None = None) -> tf.data.Dataset:
        """(images (P*K, H, W, 3) float32 in [-1, 1], labels (P*K,) int32) for every batch of
        ``replicas`` (default: all of them), step by step, replica by replica.

        A function of (config.seed, epoch) only: sampling and augmentation seeds both derive
        from them and from an image's place in the global batch, and the map keeps order.
        """
        cfg = self.config
        replicas = range(self.replicas) if replicas is None else replicas
        if not (0 <= replicas.start < replicas.stop <= self.replicas and replicas.step == 1):
            raise ValueError(f"replicas {replicas}: not within the {self.replicas} replicas")
        batches = self.sampler.epoch_batches(epoch)
        shape = (batches.shape[0], self.replicas, self.batch_size)
        mine = slice(replicas.start, replicas.stop)
        indices = batches.reshape(shape)[:, mine].reshape(-1)
        places = np.arange(batches.size).reshape(shape)[:, mine].reshape(-1)
        seeds = sample_seed(cfg.seed, epoch, places)
        ds = tf.data.Dataset.from_tensor_slices((
            tf.constant(self._paths[indices].tolist(), dtype=tf.string),
            tf.constant(self._labels[indices], dtype=tf.int32),
            tf.constant(seeds, dtype=tf.int64),
        ))
        height, width = cfg.height, cfg.width

        def load(path: tf.Tensor, label: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            image = augment(_read(path, height, width), cfg, seed)
            image = tf.ensure_shape(normalize(image), [height, width, 3])
            return image, label

        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(self.batch_size, drop_remainder=True)
        return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(paths: Sequence[str], height: int, width: int, batch_size: int,
                 flip: bool = False) -> tf.data.Dataset:
    """float32 (n, H, W, 3) batches of ``paths`` in order, RGB pixels in [0, 255] (to embed:
    the embedder normalises them); mirrored when ``flip``.

    For flip test-time augmentation embed both the plain and the flipped dataset and average.
    Run :func:`check_images` first: a decode error here stops iteration without naming the file.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def load(path: tf.Tensor) -> tf.Tensor:
        image = _read(path, height, width)
        if flip:
            image = tf.reverse(image, axis=[1])
        return image

    ds = tf.data.Dataset.from_tensor_slices(tf.constant([str(p) for p in paths],
                                                        dtype=tf.string, shape=[len(paths)]))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def indexed_eval_dataset(paths: Sequence[str], height: int, width: int,
                         batch_size: int) -> tf.data.Dataset:
    """``(positions in paths, images)`` batches, in order, leaving out the files that fail to
    decode: a check and the embedding in one decode (a gallery is read once). Images as
    :func:`eval_dataset` gives them (RGB pixels in [0, 255]); files whose header is over the
    pixel limit are left out undecoded."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    kept = np.array([i for i, p in enumerate(paths) if oversize_reason(str(p)) is None],
                    dtype=np.int64)

    def load(index: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return index, _read(path, height, width)

    ds = tf.data.Dataset.from_tensor_slices((
        kept, tf.constant([str(paths[i]) for i in kept], dtype=tf.string, shape=[len(kept)])))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_image(path: str, height: int, width: int) -> np.ndarray:
    """One image as the evaluation pipeline gives it: float32 (H, W, 3) RGB pixels in
    [0, 255]."""
    return _decode_eager(str(path), height, width).numpy()


__all__ = [
    "BadImageError",
    "TrainInput",
    "check_images",
    "decode_resize",
    "eval_dataset",
    "indexed_eval_dataset",
    "load_image",
]
