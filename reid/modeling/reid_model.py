"""The re-id network: backbone -> pooling -> [dropout] -> [bottleneck] -> BNNeck -> classifier.

This is the "strong baseline" head (Luo et al., 2019): the triplet loss works on the feature
before batch norm, the identity classifier on the feature after it, and the neck's BN has no
shift (``center=False``) so the classifier sees features centred on the origin, where its
bias-free softmax separates identities by angle. Retrieval uses the L2-normalised neck output
(``model.neck_feat: after``, the strong baseline's default), the feature before the neck
(``before``, its other option), or that feature minus the training mean (``centered``, which
spreads cosine scores out; :class:`reid.modeling.layers.Centering`). The first two can rank
very differently: the classifier is free to
learn each identity as one cluster per camera, while the triplet loss's batch-hard positive is
likely the other camera's image, so the feature before the neck is the one trained to join
cameras. On CUHK03 it beat the neck for every ImageNet-started model measured, but not
from random weights (docs/BENCHMARKS.md, recipe 8): bench/neck_feature.py checks a run.
"""

from __future__ import annotations

import dataclasses

import keras

from reid.choices import NECK_FEATURES
from reid.config import ModelConfig
from reid.modeling.backbone import ModelError, build_backbone, check_input_shape
from reid.modeling.layers import (Centering, GeMPooling2D, L2Normalize,
                                  StripePooling2D)

#: Keys of the training model's output dict.
FEATURES, LOGITS, EMBEDDING = "features", "logits", "embedding"

#: Names of the head layers (stable: training and tests look them up by name).
POOL_LAYER, DROPOUT_LAYER = "pool", "dropout"
BOTTLENECK_LAYER, NECK_LAYER = "bottleneck", "bnneck"
CLASSIFIER_LAYER, EMBEDDING_LAYER = "classifier", "embedding"
CENTERING_LAYER = "centering"
PART_POOL_LAYER, PART_BOTTLENECK_LAYER = "part_pool", "part_bottleneck"
PART_NECK_LAYER, PART_CLASSIFIER_LAYER = "part_bnneck", "part_classifier"


@dataclasses.dataclass(frozen=True)
class ReidModels:
    """The three views of one network; all share the same layer objects and variables.

    ``training_model(images)`` returns a dict: ``"features"`` (pre-BN feature, ``(N, D)``, for
    the triplet/center losses), ``"logits"`` (``(N, num_classes)``, for the cross-entropy) and
    ``"embedding"`` (L2-normalised neck output, ``(N, D)``). With ``model.parts`` P > 0 the
    logits are ``(N, 1 + P, num_classes)`` (global head first) and, with ``neck_feat:
    after``, the embedding joins the global neck to the P stripe necks before normalising;
    with ``neck_feat: before`` (and ``centered``) it is the normalised ``"features"``.
    ``embedding_model(images)`` returns only the embedding; with ``neck_feat: centered`` it
    subtracts ``centering``'s mean from the features first (:meth:`export_model` sets it).
    ``backbone`` is the nested MobileNetV2, so training can set
    ``backbone.trainable = False`` for the first ``freeze_backbone_epochs`` (recompile or
    retrace afterwards; in Keras 3 a frozen backbone's batch norms also run in inference mode).
    ``feature_dim`` is D of ``"features"``, the size the triplet and center losses work in; the
    exported embedding can be larger (stripe necks joined to it).
    """

    training_model: keras.Model
    embedding_model: keras.Model
    backbone: keras.Model
    feature_dim: int
    num_classes: int
    centering: Centering | None = None

    def export_model(self) -> keras.Model:
        """The embedding model as it embeds now: with ``neck_feat: centered`` its mean is first
        set to the BNNeck's moving mean, the running mean of the training features. Validation
        and exports go through here, never through ``embedding_model`` directly."""
        if self.centering is not None:
            neck = self.training_model.get_layer(NECK_LAYER)
            self.centering.mean.assign(neck.moving_mean)
        return self.embedding_model


def _part_heads(feature_map: keras.KerasTensor, model_cfg: ModelConfig,
                num_classes: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """PCB's stripe branches: ``(N, parts * part_dim)`` neck features and ``(N, parts, C)``
    logits; every stripe has its own bottleneck and classifier weights (an einsum over parts).
    """
    parts, dim = model_cfg.parts, model_cfg.part_dim
    if feature_map.shape[1] is not None and feature_map.shape[1] < parts:
        raise ModelError(f"model.parts: {parts} stripes need a feature map at least {parts} rows "
                         f"high; this input gives {feature_map.shape[1]} (raise data.height or "
                         f"use model.last_stride: 1)")
    x = StripePooling2D(parts, name=PART_POOL_LAYER)(feature_map)
    x = keras.layers.EinsumDense("npc,pcd->npd", output_shape=(parts, dim),
                                 kernel_initializer="he_normal", name=PART_BOTTLENECK_LAYER)(x)
    x = keras.layers.Reshape((parts * dim,), name="part_features")(x)
    neck = keras.layers.BatchNormalization(center=False, momentum=0.9, epsilon=1e-5,
                                           name=PART_NECK_LAYER)(x)
    x = keras.layers.Reshape((parts, dim), name="part_necks")(neck)
    logits = keras.layers.EinsumDense(
        "npd,pdc->npc", output_shape=(parts, num_classes),
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
        name=PART_CLASSIFIER_LAYER)(x)
    return neck, logits


def build_reid_model(model_cfg: ModelConfig, input_shape: tuple[int, int, int],
                     num_classes: int) -> ReidModels:
    """Build the backbone (with its initial weights) and the re-id head on top of it.

    ``embedding_dim: 0`` keeps the backbone's channel count (1280 for alpha <= 1) and adds no
    bottleneck layer. Images are expected already normalised as MobileNetV2 wants
    (``x / 127.5 - 1``, RGB).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes: expected a positive number of training identities, "
                         f"got {num_classes!r}")
    input_shape = check_input_shape(input_shape)
    backbone = build_backbone(model_cfg, input_shape)

    inputs = keras.Input(shape=input_shape, name="image")
    feature_map = x = backbone(inputs)
    if model_cfg.pooling == "gem":
        x = GeMPooling2D(p=model_cfg.gem_p, name=POOL_LAYER)(x)
    elif model_cfg.pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    else:
        raise ModelError(f"model.pooling: expected avg or gem, got {model_cfg.pooling!r}")
    if model_cfg.dropout > 0:
        x = keras.layers.Dropout(model_cfg.dropout, name=DROPOUT_LAYER)(x)
    if model_cfg.embedding_dim > 0:
        # No bias: the neck's batch norm removes any shift anyway, and the triplet loss on
        # Euclidean distances is blind to it.
        x = keras.layers.Dense(model_cfg.embedding_dim, use_bias=False,
                               kernel_initializer="he_normal", name=BOTTLENECK_LAYER)(x)
    features = x
    # PyTorch-style momentum/epsilon as in the strong baseline: the neck's moving statistics
    # must settle within a short run, which Keras' default momentum of 0.99 makes slow.
    neck = keras.layers.BatchNormalization(center=False, momentum=0.9, epsilon=1e-5,
                                           name=NECK_LAYER)(features)
    logits = keras.layers.Dense(num_classes, use_bias=False,
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                                name=CLASSIFIER_LAYER)(neck)
    if model_cfg.parts > 0:
        part_neck, part_logits = _part_heads(feature_map, model_cfg, num_classes)
        # (N, 1 + parts, classes): the cross-entropy averages over the global and part heads.
        logits = keras.layers.Concatenate(axis=1, name="all_logits")(
            [keras.layers.Reshape((1, num_classes), name="global_logits")(logits), part_logits])
        neck = keras.layers.Concatenate(name="joined_neck")([neck, part_neck])
    if model_cfg.neck_feat not in NECK_FEATURES:
        raise ModelError(f"model.neck_feat: expected one of {', '.join(NECK_FEATURES)}, got "
                         f"{model_cfg.neck_feat!r}")
    embedding = L2Normalize(name=EMBEDDING_LAYER)(neck if model_cfg.neck_feat == "after"
                                                  else features)
    training_model = keras.Model(inputs, {FEATURES: features, LOGITS: logits,
                                          EMBEDDING: embedding}, name="reid_train")
    centering = None
    if model_cfg.neck_feat == "centered":
        # Only in the embedding model: its mean is set at export, and training checkpoints
        # (the training model's weights, by position) stay the same for every neck_feat.
        centering = Centering(name=CENTERING_LAYER)
        embedding = L2Normalize(name=EMBEDDING_LAYER)(centering(features))
    embedding_model = keras.Model(inputs, embedding, name="reid_embedder")
    return ReidModels(training_model=training_model, embedding_model=embedding_model,
                      backbone=backbone, feature_dim=int(features.shape[-1]),
                      num_classes=num_classes, centering=centering)
