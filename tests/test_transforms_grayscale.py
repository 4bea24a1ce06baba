"""Random grayscale (data.grayscale_prob): the luma in every channel, drawn from the sample's
stateless seed, and off by default without changing any other augmentation's pixels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from reid.config import ConfigError, DataConfig, load_config
from reid.data.transforms import (augment, color_jitter, pad_crop, random_erasing, random_flip,
                                  random_grayscale)

H, W = 32, 16


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3)).astype(np.float32)


def _seed(i: int) -> tf.Tensor:
    return tf.constant([11, i], dtype=tf.int64)


def test_probability_one_gives_the_luma_in_every_channel() -> None:
    x = _image()
    out = random_grayscale(x, 1.0, _seed(0)).numpy()
    luma = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]  # ITU-R 601
    for c in range(3):
        np.testing.assert_allclose(out[..., c], luma, atol=0.05)
    assert out.shape == x.shape and out.dtype == np.float32


def test_probability_zero_leaves_the_image_unchanged() -> None:
    x = _image(1)
    for i in range(3):
        np.testing.assert_array_equal(random_grayscale(x, 0.0, _seed(i)).numpy(), x)


def test_a_seed_decides_and_the_rate_follows_the_probability() -> None:
    x = _image(2)
    grey = []
    for i in range(60):
        out = random_grayscale(x, 0.3, _seed(i)).numpy()
        np.testing.assert_array_equal(out, random_grayscale(x, 0.3, _seed(i)).numpy())
        is_grey = np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1],
                                                                              out[..., 2])
        assert is_grey or np.array_equal(out, x)  # all or nothing
        grey.append(is_grey)
    # 60 draws at 0.3: 18 expected, this window holds with probability > 0.999.
    assert 6 <= sum(grey) <= 32


def test_augment_without_grayscale_sees_the_pixels_it_saw_before() -> None:
    """Runs that do not ask for it (the default) are augmented exactly as before the option
    came: the four earlier augmentations draw from the same seeds, composed by hand here."""
    config = dataclasses.replace(DataConfig(), height=H, width=W, pad=4, flip_prob=0.5,
                                 erasing_prob=0.5, color_jitter=0.3)
    assert config.grayscale_prob == 0.0
    x = _image(3)
    for i in range(4):
        seeds = tf.random.experimental.stateless_split(_seed(i), num=4)
        before = random_flip(x, 0.5, seeds[0])
        before = pad_crop(before, 4, seeds[1])
        before = color_jitter(before, 0.3, seeds[2])
        before = random_erasing(before, 0.5, config.erasing_area, config.erasing_aspect,
                                seeds[3])
        np.testing.assert_array_equal(augment(x, config, _seed(i)).numpy(), before.numpy())


def test_augment_with_grayscale_always_is_grey_and_deterministic() -> None:
    config = dataclasses.replace(DataConfig(), height=H, width=W, pad=4, flip_prob=0.5,
                                 erasing_prob=0.0, color_jitter=0.3, grayscale_prob=1.0)
    x = _image(4)
    for i in range(3):
        out = augment(x, config, _seed(i)).numpy()
        assert np.abs(out - out[..., :1]).max() == 0.0
        np.testing.assert_array_equal(out, augment(x, config, _seed(i)).numpy())


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_the_key_is_a_probability(tmp_path, value) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="data.grayscale_prob: expected a value"):
        load_config(path, [f"data.grayscale_prob={value}"])
    assert load_config(path, ["data.grayscale_prob=0.2"]).data.grayscale_prob == 0.2
