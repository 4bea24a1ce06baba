"""Pairwise contrastive loss (Hadsell, Chopra and LeCun, 2006) over every pair of a batch."""

from __future__ import annotations

import tensorflow as tf

from reid.losses.triplet import pairwise_distances


def contrastive_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float = 0.5,
                     metric: str = "euclidean") -> tf.Tensor:
    """Mean over all unordered pairs {i, j}, i != j, of d^2 (same label) or relu(margin - d)^2
    (different labels), a float32 scalar.

    Normalisation: divided by the number of pairs B(B-1)/2, without Hadsell's factor 1/2 and
    without re-balancing positives against negatives, so the weight in the config is the only
    scale. A batch of fewer than two samples gives 0.
    """
    if isinstance(margin, (int, float)) and margin < 0:  # tensors: caller-checked
        raise ValueError(f"contrastive margin: expected a value >= 0, got {margin!r}")
    dist = pairwise_distances(embeddings, metric)
    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    per_pair = tf.where(same, tf.square(dist), tf.square(tf.nn.relu(margin - dist)))
    # Strict upper triangle: each unordered pair once, never a sample with itself.
    upper = tf.linalg.band_part(tf.ones_like(dist), 0, -1) - tf.linalg.band_part(
        tf.ones_like(dist), 0, 0)
    return tf.math.divide_no_nan(tf.reduce_sum(per_pair * upper), tf.reduce_sum(upper))
