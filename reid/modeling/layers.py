"""Custom Keras layers of the re-id head.

All are registered under the ``reid`` package so a saved ``.keras`` model (the exported
embedder) deserialises them without ``custom_objects``: importing this module is enough.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="reid")
class GeMPooling2D(keras.layers.Layer):
    """Generalised-mean pooling over the spatial axes of a channels-last map.

    ``(mean(x^p))^(1/p)`` moves from average pooling (p = 1) towards max pooling (p -> inf), so
    a learnable p lets training pick how much the strongest local responses dominate, which
    helps re-id where a person's discriminative parts cover a small part of the image.

    The value is computed as ``m * mean((x / m)^p)^(1/p)`` with ``m`` the spatial maximum: the
    same number, but ``x / m <= 1`` cannot overflow float32 even for large p. Inputs are
    clipped at ``eps`` so the power and its gradient stay finite (the backbone ends in ReLU6,
    so its activations are already non-negative).
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if p < 1.0:
            raise ValueError(f"GeMPooling2D: p must be >= 1, got {p}")
        self.p_init = float(p)
        self.eps = float(eps)
        self.learnable = bool(learnable)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 4:
            raise ValueError(f"GeMPooling2D expects a (batch, height, width, channels) input, "
                             f"got shape {tuple(input_shape)}")
        self.p = self.add_weight(name="p", shape=(),
                                 initializer=keras.initializers.Constant(self.p_init),
                                 trainable=self.learnable)

    def call(self, inputs: Any) -> Any:
        # p below 1 is no longer a mean that sits between average and max pooling.
        p = ops.maximum(ops.cast(self.p, inputs.dtype), 1.0)
        x = ops.maximum(inputs, self.eps)
        m = ops.max(x, axis=(1, 2), keepdims=True)
        mean = ops.mean(ops.power(x / m, p), axis=(1, 2))
        return ops.squeeze(m, axis=(1, 2)) * ops.power(mean, 1.0 / p)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "p": self.p_init, "eps": self.eps,
                "learnable": self.learnable}


@keras.saving.register_keras_serializable(package="reid")
class StripePooling2D(keras.layers.Layer):
    """Average-pool each of ``parts`` horizontal stripes of a channels-last map: ``(N, parts, C)``.

    Part-based re-id (PCB, Sun et al. 2018; MGN) pools a person's map in stripes, head to feet,
    so each stripe's feature must identify the person on its own: a global average lets a few
    salient regions dominate, and those are what changes between a side and a back view.
    Stripe ``i`` covers rows ``[i * H // parts, (i + 1) * H // parts)``, so any ``H >= parts``
    works and uneven heights differ by at most one row.
    """

    def __init__(self, parts: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValueError(f"StripePooling2D: parts must be a positive integer, got {parts!r}")
        self.parts = parts

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 4 or input_shape[1] is None or input_shape[1] < self.parts:
            raise ValueError(f"StripePooling2D: expected a (batch, height, width, channels) map "
                             f"at least {self.parts} rows high, got shape {tuple(input_shape)}")
        self.height = int(input_shape[1])

    def call(self, inputs: Any) -> Any:
        bounds = [i * self.height // self.parts for i in range(self.parts + 1)]
        return ops.stack([ops.mean(inputs[:, lo:hi], axis=(1, 2))
                          for lo, hi in zip(bounds[:-1], bounds[1:])], axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.parts, input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "parts": self.parts}


@keras.saving.register_keras_serializable(package="reid")
class L2Normalize(keras.layers.Layer):
    """Scale each row to unit L2 norm, so inner products are cosine similarities.

    The exported embedding ends here: retrieval (FAISS inner-product indexes, cosine distance)
    relies on unit-norm vectors, so normalisation is part of the model, not left to callers.
    As in PyTorch's ``F.normalize``, ``epsilon`` bounds the norm (not its square) from below:
    an untrained network's features can have norms near 1e-9, which must still be normalised,
    while an all-zero row stays zero instead of NaN. Rows are first divided by their largest
    absolute value, so the norm that is bounded is at least 1 for any non-zero row: LiteRT's
    converter turns ``x * rsqrt(sum(x^2))`` into its own L2 normalisation, which bounds the
    norm at 1e-6 and would leave such rows short of unit length.
    """

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.epsilon = float(epsilon)

    def call(self, inputs: Any) -> Any:
        largest = ops.max(ops.abs(inputs), axis=self.axis, keepdims=True)
        # The scale is a constant to the gradient: the unit direction does not depend on it.
        scaled = inputs / ops.stop_gradient(ops.maximum(largest, self.epsilon))
        squared = ops.sum(ops.square(scaled), axis=self.axis, keepdims=True)
        # Clamping the square (1e-24 is still a normal float32) keeps sqrt's gradient finite.
        return scaled * ops.rsqrt(ops.maximum(squared, self.epsilon ** 2))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="reid")
class Centering(keras.layers.Layer):
    """Subtract a fixed vector, the mean of the training features, before normalising.

    The feature before the BNNeck comes out of ReLU6 and average pooling (without a bottleneck
    layer, ``model.embedding_dim: 0``, every component is non-negative), so all embeddings share
    one large mean direction: cosine scores of strangers crowd just below those of true matches
    (0.90 against 0.93 on CUHK03), and a threshold on them is fragile. Cosine about the training mean spreads them. The mean is a non-trainable
    weight, set from the BNNeck's moving mean when the model is exported
    (:meth:`reid.modeling.reid_model.ReidModels.export_model`), so it is saved with the model.
    """

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if input_shape[-1] is None:
            raise ValueError(f"Centering: the last axis must have a fixed size, got shape "
                             f"{tuple(input_shape)}")
        self.mean = self.add_weight(name="mean", shape=(int(input_shape[-1]),),
                                    initializer="zeros", trainable=False)

    def call(self, inputs: Any) -> Any:
        return inputs - ops.cast(self.mean, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)
