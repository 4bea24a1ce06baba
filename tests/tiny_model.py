"""The tests' tiny model: MobileNetV2 alpha 0.35 at 64x32.

:func:`export_tiny_model` exports it with random weights: its rankings are poor but
deterministic, which is all tests of indexing, search and serving need. :func:`tiny_config`
trains it in seconds, for the tests of training (tests/conftest.py trains the run they share).
:func:`standardise_batch_norms` gives it the batch-norm statistics of real crops, without which
its embeddings are all one point.
"""

from __future__ import annotations

import pathlib
from typing import Any


def export_tiny_model(folder: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Export the tiny model into ``folder`` (an exported-model folder) and return it."""
    import keras

    from reid.config import ModelConfig
    from reid.modeling import build_reid_model, export_embedder

    keras.utils.set_random_seed(seed)
    models = build_reid_model(ModelConfig(alpha=0.35, weights=None), (64, 32, 3), num_classes=4)
    export_embedder(models.embedding_model, folder)
    return folder


def _batch_norms(layer):
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        yield layer
    for sub in getattr(layer, "layers", []):
        yield from _batch_norms(sub)


def standardise_batch_norms(model, images) -> None:
    """Give every batch norm of ``model`` the statistics of ``images`` (normalised crops), as
    a trained network's are. At initialisation they are 0 and 1, which in inference shrink
    MobileNetV2's activations to about 1e-10 and put every embedding at one point; a few
    training steps hardly move them (the backbone's momentum is 0.999)."""
    norms = list(_batch_norms(model))
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.momentum = 0.0  # one pass in training mode copies the batch statistics
    model(images, training=True)
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum


def tiny_config(root: str | pathlib.Path, **overrides: Any):
    """A config small enough to train in seconds: alpha 0.35 at 64x32, 4 ids x 2 images, 2
    epochs of 3 steps. ``overrides`` are ``section__key=value``."""
    from reid.config import config_from_dict

    raw = {
        "data": {"root": str(root), "height": 64, "width": 32, "ids_per_batch": 4,
                 "images_per_id": 2, "pad": 2},
        "model": {"alpha": 0.35, "weights": None},
        "train": {"epochs": 2, "steps_per_epoch": 3, "warmup_epochs": 1, "lr": 1e-3, "seed": 3,
                  "export_litert": False},
        "eval": {"batch_size": 32},
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    return config_from_dict(raw, name="tiny")
