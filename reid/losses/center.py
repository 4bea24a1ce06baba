"""Center loss (Wen et al., ECCV 2016): pull each feature towards a running center of its class.

The centers are not trained by the model's optimizer: they move by Wen et al.'s own rule
(Algorithm 1, eq. 4), once per step after the gradients are applied,

    c_j <- c_j - alpha * sum_i [y_i = j] (c_j - x_i) / (1 + n_j),

with n_j the number of samples of class j in the batch and alpha = ``center_lr``. The 1 + n_j
denominator makes the step independent of how many images of a class the P x K sampler put in
the batch (and leaves absent classes still). The strong baseline instead runs SGD (lr 0.5) on
the loss gradient divided by the loss weight, a step of alpha * 2 * sum_i [y_i = j](c_j - x_i) / B
for its loss mean ||x - c||^2; both drive c_j to the running class mean.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def center_loss(features: tf.Tensor, labels: tf.Tensor, centers: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of 0.5 * ||x_i - c_{y_i}||^2, a float32 scalar.

    Wen et al. sum 0.5 * ||.||^2 over the mini-batch; the mean keeps the loss weight meaningful
    whatever the batch size. (The strong baseline's mean ||.||^2 is twice this value.) Gradients
    flow to ``features`` only; the centers are treated as constants.
    """
    features = tf.cast(features, tf.float32)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    batch_centers = tf.stop_gradient(tf.gather(tf.cast(centers, tf.float32), labels))
    return tf.reduce_mean(0.5 * tf.reduce_sum(tf.square(features - batch_centers), axis=1))


class CenterLoss(tf.Module):
    """Class centers [num_classes, dim] in a non-trainable variable, the loss and their update.

    A ``tf.Module`` so ``tf.train.Checkpoint(center_loss=...)`` saves and restores the centers
    with a run; the variable is ``trainable=False``, so it never appears in a model's or this
    module's trainable variables and an optimizer never touches it.
    """

    def __init__(self, num_classes: int, dim: int, center_lr: float = 0.5,
                 initial_centers: np.ndarray | None = None, name: str = "center_loss") -> None:
        super().__init__(name=name)
        if num_classes < 1:
            raise ValueError(f"center loss: num_classes must be >= 1, got {num_classes}")
        if dim < 1:
            raise ValueError(f"center loss: feature dim must be >= 1, got {dim}")
        if center_lr < 0:
            raise ValueError(f"center loss: center_lr must be >= 0, got {center_lr}")
        if initial_centers is None:
            # Zeros: deterministic, and the update moves a class's center to its features' mean
            # at rate alpha from the first batch that contains it.
            initial = tf.zeros([num_classes, dim], tf.float32)
        else:
            initial = tf.convert_to_tensor(initial_centers, tf.float32)
            if tuple(initial.shape) != (num_classes, dim):
                raise ValueError(f"center loss: initial_centers has shape {tuple(initial.shape)},"
                                 f" expected ({num_classes}, {dim})")
        self.num_classes = num_classes
        self.dim = dim
        self.center_lr = float(center_lr)
        # Under tf.distribute every replica computes the same update (below), so any copy is
        # the value.
        self.centers = tf.Variable(initial, trainable=False, name="centers",
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def __call__(self, features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        return center_loss(features, labels, self.centers)

    def update(self, features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """Move the centers of the batch's classes one step (Wen et al. eq. 4); returns the
        assign op's value (the new centers). Call it once per training step, after the loss."""
        features = tf.stop_gradient(tf.cast(features, tf.float32))
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        tf.debugging.assert_less(labels, self.num_classes,
                                 message="center loss: label >= num_classes")
        tf.debugging.assert_non_negative(labels, message="center loss: negative label")
        counts = tf.math.unsorted_segment_sum(tf.ones_like(labels, tf.float32), labels,
                                              self.num_classes)
        feature_sums = tf.math.unsorted_segment_sum(features, labels, self.num_classes)
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            # Several replicas: the step is the one the whole global batch gives.
            counts, feature_sums = replica.all_reduce(tf.distribute.ReduceOp.SUM,
                                                      [counts, feature_sums])
        # sum_i [y_i = j] (c_j - x_i) = n_j c_j - sum_i [y_i = j] x_i
        diff = counts[:, None] * self.centers - feature_sums
        return self.centers.assign_sub(self.center_lr * diff / (1.0 + counts[:, None]))
