"""model.zero_init_residual: every residual block of a randomly initialised backbone starts as
the identity, checked on the blocks' own tensors; refused over pretrained weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reid.config import ConfigError, config_from_dict
from reid.modeling.backbone import build_backbone


def _config(**model):
    return config_from_dict({"model": {"weights": None, "alpha": 0.35, **model}})


def _block_inputs_and_outputs(backbone: keras.Model, images: np.ndarray) -> dict[str, tuple]:
    adds = [layer for layer in backbone.layers if layer.name.endswith("_add")]
    probe = keras.Model(backbone.inputs,
                        [t for layer in adds for t in (layer.input[0], layer.output)])
    # Training mode: the batch norms normalise by the batch, as in the first steps of training
    # (in inference mode a random network's activations shrink with depth whatever the scale).
    values = [np.asarray(v) for v in probe(images, training=True)]
    return {layer.name: (values[2 * i], values[2 * i + 1]) for i, layer in enumerate(adds)}


def test_every_residual_block_starts_as_the_identity():
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 64, 32, 3)).astype("float32")
    backbone = build_backbone(_config(zero_init_residual=True).model, (64, 32, 3))
    blocks = _block_inputs_and_outputs(backbone, images)
    assert len(blocks) == 10  # MobileNetV2's residual blocks: 2, 4, 5, 7, 8, 9, 11, 12, 14, 15
    for name, (shortcut, output) in blocks.items():
        np.testing.assert_allclose(output, shortcut, atol=1e-6, err_msg=name)
    # Without the option the same blocks change what they are given.
    keras.utils.set_random_seed(0)
    plain = _block_inputs_and_outputs(build_backbone(_config().model, (64, 32, 3)), images)
    assert all(np.abs(out - inp).max() > 0.1 for inp, out in plain.values())


def test_zero_init_residual_is_refused_over_pretrained_weights():
    with pytest.raises(ConfigError, match="model.zero_init_residual: only for random"):
        _config(weights="imagenet", zero_init_residual=True)
