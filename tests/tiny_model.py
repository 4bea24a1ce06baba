"""The tests' embedder: MobileNetV2 alpha 0.35 at 64x32 with random weights, exported.

Its rankings are poor but deterministic, which is all tests of indexing, search and serving
need; training is tested elsewhere.
"""

from __future__ import annotations

import pathlib


def export_tiny_model(folder: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Export the tiny model into ``folder`` (an exported-model folder) and return it."""
    import keras

    from reid.config import ModelConfig
    from reid.modeling import build_reid_model, export_embedder

    keras.utils.set_random_seed(seed)
    models = build_reid_model(ModelConfig(alpha=0.35, weights=None), (64, 32, 3), num_classes=4)
    export_embedder(models.embedding_model, folder)
    return folder
