"""Identity cross-entropy with label smoothing, as in the re-id strong baseline (Luo et al.)."""

from __future__ import annotations

import tensorflow as tf


def cross_entropy_label_smoothing(labels: tf.Tensor, logits: tf.Tensor,
                                  epsilon: float = 0.1) -> tf.Tensor:
    """Mean over the batch of -sum_k q_k log softmax(logits)_k, a float32 scalar.

    The target is q = (1 - epsilon) * onehot(label) + epsilon / num_classes: the smoothing mass is
    spread over *all* classes including the true one, as in the strong baseline (and Szegedy et
    al.), which keeps the classifier from growing its logits without bound on the few images of
    each training identity. ``labels`` are integer class ids [B]; ``logits`` are [B, C], or
    [B, H, C] for H heads that each classify the same image (part-based models): the mean is
    then over images and heads.
    """
    if isinstance(epsilon, (int, float)) and not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing: expected a value in [0, 1), got {epsilon!r}")
    logits = tf.cast(logits, tf.float32)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    num_classes = tf.shape(logits)[-1]
    targets = ((1.0 - epsilon) * tf.one_hot(labels, num_classes, dtype=tf.float32)
               + epsilon / tf.cast(num_classes, tf.float32))
    if logits.shape.rank == 3:
        targets = targets[:, None, :]
    return tf.reduce_mean(-tf.reduce_sum(targets * log_probs, axis=-1))
