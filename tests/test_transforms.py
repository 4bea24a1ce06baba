"""Augmentations and normalisation, checked against NumPy references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from reid.config import DataConfig
from reid.data.transforms import (
    IMAGENET_MEAN_RGB,
    augment,
    color_jitter,
    normalize,
    pad_crop,
    random_erasing,
    random_flip,
    sample_seed,
)

H, W = 32, 16


def _image(seed: int = 0) -> np.ndarray:
    """Random integer-valued pixels: never equal to the (fractional) erasing fill."""
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3)).astype(np.float32)


def _seed(i: int) -> tf.Tensor:
    return tf.constant([7, i], dtype=tf.int64)


def test_normalize_matches_keras_mobilenet_v2() -> None:
    import keras

    x = _image()
    expected = keras.applications.mobilenet_v2.preprocess_input(x.copy())
    np.testing.assert_allclose(normalize(x).numpy(), np.asarray(expected), atol=1e-6)
    np.testing.assert_allclose(normalize(np.array([0.0, 127.5, 255.0])).numpy(), [-1, 0, 1])


def test_flip_mirrors_or_keeps() -> None:
    x = _image()
    np.testing.assert_array_equal(random_flip(x, 1.0, _seed(0)).numpy(), x[:, ::-1])
    np.testing.assert_array_equal(random_flip(x, 0.0, _seed(0)).numpy(), x)
    flipped = 0
    for i in range(40):
        out = random_flip(x, 0.5, _seed(i)).numpy()
        is_flip = np.array_equal(out, x[:, ::-1])
        assert is_flip or np.array_equal(out, x)
        flipped += is_flip
    assert 5 < flipped < 35


def test_pad_crop_zero_pad_is_identity() -> None:
    x = _image()
    np.testing.assert_array_equal(pad_crop(x, 0, _seed(3)).numpy(), x)


def test_pad_crop_is_a_window_of_the_zero_padded_image() -> None:
    x, pad = _image(), 3
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    offsets = set()
    for i in range(30):
        out = pad_crop(x, pad, _seed(i)).numpy()
        assert out.shape == x.shape and out.dtype == np.float32
        hits = [(r, c) for r in range(2 * pad + 1) for c in range(2 * pad + 1)
                if np.array_equal(out, padded[r:r + H, c:c + W])]
        assert hits, "crop is not a window of the padded image"
        offsets.add(hits[0])
    assert len(offsets) > 5  # the window moves


def test_erasing_prob_zero_changes_nothing() -> None:
    x = _image()
    for i in range(5):
        np.testing.assert_array_equal(random_erasing(x, 0.0, (0.02, 0.4), 0.3, _seed(i)).numpy(), x)


@pytest.mark.parametrize("area", [(0.02, 0.4), (0.1, 0.12)])
def test_erasing_fills_one_box_of_configured_area_and_aspect(area: tuple[float, float]) -> None:
    aspect = 0.3
    mean = np.array(IMAGENET_MEAN_RGB, dtype=np.float32)
    for i in range(25):
        x = _image(i)
        out = random_erasing(x, 1.0, area, aspect, _seed(i)).numpy()
        changed = np.any(out != x, axis=-1)
        rows, cols = np.nonzero(changed)
        assert rows.size, "prob 1 must erase (100 attempts all failing is ~impossible here)"
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        h, w = r1 - r0, c1 - c0
        assert changed.sum() == h * w, "the erased pixels form one rectangle"
        np.testing.assert_array_equal(out[r0:r1, c0:c1], np.broadcast_to(mean, (h, w, 3)))
        np.testing.assert_array_equal(out[~changed], x[~changed])
        assert h < H and w < W
        # h and w are rounded from sqrt(S*r) and sqrt(S/r): allow half a pixel each way.
        lo, hi = area[0] * H * W, area[1] * H * W
        assert (h - 0.5) * (w - 0.5) <= hi and (h + 0.5) * (w + 0.5) >= lo
        assert (h - 0.5) / (w + 0.5) <= 1 / aspect and (h + 0.5) / (w - 0.5) >= aspect


def test_erasing_random_fill_stays_in_range() -> None:
    x = _image()
    out = random_erasing(x, 1.0, (0.2, 0.3), 0.5, _seed(1), fill="random").numpy()
    changed = np.any(out != x, axis=-1)
    assert changed.sum() > 0.15 * H * W
    assert out.min() >= 0 and out.max() <= 255


def test_color_jitter_keeps_grey_grey_and_range() -> None:
    grey = np.repeat(_image()[:, :, :1], 3, axis=-1)
    colour = _image(1)
    np.testing.assert_array_equal(color_jitter(colour, 0.0, _seed(0)).numpy(), colour)
    for i in range(5):
        out = color_jitter(grey, 0.5, _seed(i)).numpy()
        assert np.abs(out - out[:, :, :1]).max() < 1e-2  # no channel mixing on grey input
        jit = color_jitter(colour, 0.5, _seed(i)).numpy()
        assert jit.shape == colour.shape and jit.dtype == np.float32
        assert jit.min() >= 0 and jit.max() <= 255
        assert np.abs(jit - colour).mean() > 1.0


def test_augment_shape_dtype_range_and_determinism() -> None:
    config = dataclasses.replace(DataConfig(), height=H, width=W, pad=4, flip_prob=0.5,
                                 erasing_prob=0.5, color_jitter=0.3)
    x = _image()
    outs = []
    for i in range(8):
        out = normalize(augment(x, config, _seed(i))).numpy()
        assert out.shape == (H, W, 3) and out.dtype == np.float32
        assert out.min() >= -1.0 and out.max() <= 1.0
        again = normalize(augment(x, config, _seed(i))).numpy()
        np.testing.assert_array_equal(out, again)
        outs.append(out)
    assert len({o.tobytes() for o in outs}) == len(outs)


def test_augment_everything_off_is_identity() -> None:
    config = dataclasses.replace(DataConfig(), height=H, width=W, pad=0, flip_prob=0.0,
                                 erasing_prob=0.0, color_jitter=0.0)
    x = _image()
    np.testing.assert_array_equal(augment(x, config, _seed(0)).numpy(), x)


def test_sample_seed_distinct_per_epoch_and_position() -> None:
    seeds = {tuple(sample_seed(3, e, p)) for e in range(4) for p in range(50)}
    assert len(seeds) == 200
    np.testing.assert_array_equal(sample_seed(3, 2, np.arange(4))[2], sample_seed(3, 2, 2))
    assert tuple(sample_seed(3, 0, 0)) != tuple(sample_seed(4, 0, 0))
