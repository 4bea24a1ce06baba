"""Training augmentations and input normalisation, as TensorFlow ops.

Augmentations work on one float32 image of shape (H, W, 3) with values in [0, 255] (before
normalisation), and take an explicit stateless seed (shape (2,), int) so that a sample's
augmentation is a function of (seed, epoch, position) alone: a resumed run, or a rerun with the
same seed, sees exactly the same pixels. Order follows the strong baseline (Luo et al., 2019):
flip, pad + random crop, (optional) colour jitter, (optional) random grayscale, random
erasing, then normalisation.

Random erasing fills the box with the ImageNet per-channel mean in pixel space (the strong
baseline fills with a per-channel mean too), which normalises to nearly zero, i.e. "no signal"
for the backbone; ``fill="random"`` gives Zhong et al.'s per-pixel uniform noise instead.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from reid.config import DataConfig
from reid.data.preprocessing import normalize_pixels

# ImageNet channel means (RGB) scaled to [0, 255]: the erasing fill.
IMAGENET_MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)

# Zhong et al. try this many boxes before giving up on erasing an image.
ERASING_ATTEMPTS = 100


def sample_seed(seed: int, epoch: int, position: int | np.ndarray) -> np.ndarray:
    """The stateless seed of the sample at ``position`` of ``epoch``: shape (..., 2), int64.

    Distinct for every (seed, epoch, position) with position < 2**32; TensorFlow scrambles the
    pair before use, so neighbouring seeds give unrelated random streams.
    """
    position = np.asarray(position, dtype=np.int64)
    second = (np.int64(epoch) << np.int64(32)) | position
    first = np.full_like(second, seed)
    return np.stack([first, second], axis=-1)


def normalize(images: tf.Tensor | np.ndarray) -> tf.Tensor:
    """Map [0, 255] pixels to [-1, 1] as a tensor, with the one definition of the models'
    normalisation (:func:`reid.data.preprocessing.normalize_pixels`): what training feeds the
    network. Embedding normalises through the embedder instead, which applies its spec."""
    return normalize_pixels(tf.convert_to_tensor(images, dtype=tf.float32))


def random_flip(image: tf.Tensor, prob: float, seed: tf.Tensor) -> tf.Tensor:
    """Mirror left-right with probability ``prob``."""
    image = tf.convert_to_tensor(image, dtype=tf.float32)
    if prob <= 0.0:
        return image
    flip = tf.random.stateless_uniform([], seed) < prob
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def pad_crop(image: tf.Tensor, pad: int, seed: tf.Tensor) -> tf.Tensor:
    """Zero-pad ``pad`` pixels on every side, then crop a random window of the original size."""
    image = tf.convert_to_tensor(image, dtype=tf.float32)
    if pad <= 0:
        return image
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    offset = tf.random.stateless_uniform([2], seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32)
    return tf.slice(padded, tf.stack([offset[0], offset[1], 0]), shape)


def random_erasing(image: tf.Tensor, prob: float, area: tuple[float, float] | list[float],
                   aspect: float, seed: tf.Tensor, fill: str = "mean",
                   attempts: int = ERASING_ATTEMPTS) -> tf.Tensor:
    """Random erasing (Zhong et al., 2020) with probability ``prob``.

    Each attempt draws a target area fraction uniformly in ``area`` and an aspect ratio (h/w)
    log-uniformly in [aspect, 1/aspect], rounds the box to whole pixels and accepts it if it fits
    strictly inside the image; the first accepted box of ``attempts`` is filled. All attempts are
    drawn at once so the op stays a small fixed graph.
    """
    image = tf.convert_to_tensor(image, dtype=tf.float32)
    if prob <= 0.0:
        return image
    if fill not in ("mean", "random"):
        raise ValueError(f"erasing fill must be 'mean' or 'random', got {fill!r}")
    lo, hi = float(area[0]), float(area[1])
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    log_r = math.log(aspect)

    def erase() -> tf.Tensor:
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        total = tf.cast(height * width, tf.float32)
        target = tf.random.stateless_uniform([attempts], seeds[1], lo, hi) * total
        ratio = tf.exp(tf.random.stateless_uniform([attempts], seeds[2], log_r, -log_r)
                       if log_r < 0 else tf.zeros([attempts]))
        h = tf.cast(tf.round(tf.sqrt(target * ratio)), tf.int32)
        w = tf.cast(tf.round(tf.sqrt(target / ratio)), tf.int32)
        valid = (h >= 1) & (w >= 1) & (h < height) & (w < width)
        first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)
        found = tf.reduce_any(valid)  # no attempt fitted: leave the image alone, as Zhong does
        bh = tf.where(found, h[first], 0)
        bw = tf.where(found, w[first], 0)
        top = tf.random.stateless_uniform([], seeds[3], 0, height - bh + 1, dtype=tf.int32)
        left = tf.random.stateless_uniform([], seeds[4], 0, width - bw + 1, dtype=tf.int32)
        rows = tf.range(height)[:, None]
        cols = tf.range(width)[None, :]
        mask = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
        if fill == "mean":
            values = tf.broadcast_to(tf.constant(IMAGENET_MEAN_RGB, tf.float32), shape)
        else:
            values = tf.random.stateless_uniform(shape, seeds[5], 0.0, 255.0)
        return tf.where(mask[:, :, None], values, image)

    apply = tf.random.stateless_uniform([], seeds[0]) < prob
    return tf.cond(apply, erase, lambda: image)


def color_jitter(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Random brightness, contrast and saturation factors in [1-s, 1+s], hue shift in [-s/4, s/4].

    The torchvision ColorJitter(s, s, s, s/4) recipe in a fixed order; s = 0.4 is the common
    choice (hue 0.1). The result is clipped back to [0, 255].
    """
    image = tf.convert_to_tensor(image, dtype=tf.float32)
    if strength <= 0.0:
        return image
    s = float(strength)
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    factors = [tf.random.stateless_uniform([], seeds[i], 1.0 - s, 1.0 + s) for i in range(3)]
    hue = tf.random.stateless_uniform([], seeds[3], -s / 4.0, s / 4.0)
    x = tf.clip_by_value(image / 255.0 * factors[0], 0.0, 1.0)
    x = tf.clip_by_value(tf.image.adjust_contrast(x, factors[1]), 0.0, 1.0)
    x = tf.clip_by_value(tf.image.adjust_saturation(x, factors[2]), 0.0, 1.0)
    x = tf.clip_by_value(tf.image.adjust_hue(x, hue), 0.0, 1.0)
    return x * 255.0


def random_grayscale(image: tf.Tensor, prob: float, seed: tf.Tensor) -> tf.Tensor:
    """Replace every channel by the image's luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, as
    torchvision's RandomGrayscale) with probability ``prob``.

    A domain-generalising augmentation: a model that sometimes sees its people without colour
    leans less on hues that another site's cameras render differently (or not at all, in grey
    night footage), and more on shape, texture and brightness patterns."""
    image = tf.convert_to_tensor(image, dtype=tf.float32)
    if prob <= 0.0:
        return image
    grey = tf.image.rgb_to_grayscale(image)
    apply = tf.random.stateless_uniform([], seed) < prob
    return tf.cond(apply, lambda: tf.tile(grey, [1, 1, 3]), lambda: image)


def augment(image: tf.Tensor, config: DataConfig, seed: tf.Tensor) -> tf.Tensor:
    """The training augmentation of one (H, W, 3) [0, 255] image; output still in [0, 255]."""
    image = tf.convert_to_tensor(image, dtype=tf.float32)
    # Five seeds, the first four as they were before random grayscale came (a split's first
    # rows do not depend on how many are drawn): runs without it see the same pixels as before.
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)
    image = random_flip(image, config.flip_prob, seeds[0])
    image = pad_crop(image, config.pad, seeds[1])
    image = color_jitter(image, config.color_jitter, seeds[2])
    image = random_grayscale(image, config.grayscale_prob, seeds[4])
    image = random_erasing(image, config.erasing_prob, config.erasing_area,
                           config.erasing_aspect, seeds[3])
    return image
