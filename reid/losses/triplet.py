"""Pairwise distances and the triplet loss with its four miners.

Everything is plain TensorFlow on float32 tensors so it runs eagerly and inside ``tf.function``
(TensorFlow Addons, which used to provide these, is end-of-life). Batches that hold no valid
triplet (a single identity, or only singletons) give a loss of exactly 0 with zero, finite
gradients, so a rare unlucky batch cannot poison a run with NaN.
"""

from __future__ import annotations

import tensorflow as tf

from reid.choices import LOSS_METRICS as METRICS
from reid.choices import MINERS

# Floor under squared distances before the square root: d/dx sqrt(x) is infinite at 0, and the
# diagonal (and any two identical embeddings) sit exactly there. Below the floor the gradient is
# zero instead of inf/NaN; the distance error it introduces is at most 1e-6.
_SQRT_FLOOR = 1e-12


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"distance metric: expected one of {', '.join(METRICS)}, got {metric!r}")


def pairwise_distances(embeddings: tf.Tensor, metric: str = "euclidean") -> tf.Tensor:
    """All-pairs distance matrix [B, B] of the rows of ``embeddings`` [B, D].

    ``euclidean`` is sqrt(max(||a||^2 + ||b||^2 - 2ab, 1e-12)), finite in value and gradient when
    two embeddings coincide; ``sqeuclidean`` is the squared distance (what Addons' "L_2" used);
    ``cosine`` is 1 - cos(a, b) computed on L2-normalised rows, in [0, 2] (an all-zero row, whose
    cosine is undefined, normalises to zero and sits at distance 1 from every other row). The
    diagonal is exactly 0 for every metric, with zero gradient.
    """
    _check_metric(metric)
    x = tf.cast(embeddings, tf.float32)
    if metric == "cosine":
        x = tf.math.l2_normalize(x, axis=1)
        dist = tf.clip_by_value(1.0 - tf.matmul(x, x, transpose_b=True), 0.0, 2.0)
    else:
        dot = tf.matmul(x, x, transpose_b=True)
        sq = tf.linalg.diag_part(dot)
        dist = tf.maximum(sq[:, None] - 2.0 * dot + sq[None, :], 0.0)
        if metric == "euclidean":
            dist = tf.sqrt(tf.maximum(dist, _SQRT_FLOOR))
    return tf.linalg.set_diag(dist, tf.zeros_like(tf.linalg.diag_part(dist)))


def _label_masks(labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Boolean [B, B] masks of positive pairs (same label, not the same sample) and negatives."""
    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.cast(tf.eye(tf.size(labels)), tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def _masked_max(data: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Row-wise max over ``mask``; rows with an empty mask get their row minimum (a finite,
    meaningless value the caller must mask out). Filling with +-inf instead would create inf-inf
    NaNs that leak into gradients even when masked."""
    fill = tf.reduce_min(data, axis=-1, keepdims=True)
    return tf.reduce_max(tf.where(mask, data, fill), axis=-1)


def _masked_min(data: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Row-wise min over ``mask``; rows with an empty mask get their row maximum."""
    fill = tf.reduce_max(data, axis=-1, keepdims=True)
    return tf.reduce_min(tf.where(mask, data, fill), axis=-1)


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of ``values`` where ``mask``; 0 (with zero gradient) when the mask is empty."""
    mask_f = tf.cast(mask, tf.float32)
    total = tf.reduce_sum(tf.where(mask, values, tf.zeros_like(values)))
    return tf.math.divide_no_nan(total, tf.reduce_sum(mask_f))


def _hardest(dist: tf.Tensor, pos: tf.Tensor, neg: tf.Tensor
             ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per anchor: hardest positive distance, hardest negative distance, and whether the anchor
    has at least one of each (only those anchors form a triplet)."""
    d_ap = _masked_max(dist, pos)
    d_an = _masked_min(dist, neg)
    valid = tf.logical_and(tf.reduce_any(pos, axis=1), tf.reduce_any(neg, axis=1))
    return d_ap, d_an, valid


def _batch_hard(dist: tf.Tensor, pos: tf.Tensor, neg: tf.Tensor, margin: float) -> tf.Tensor:
    d_ap, d_an, valid = _hardest(dist, pos, neg)
    return _masked_mean(tf.nn.relu(d_ap - d_an + margin), valid)


def _soft_margin(dist: tf.Tensor, pos: tf.Tensor, neg: tf.Tensor) -> tf.Tensor:
    d_ap, d_an, valid = _hardest(dist, pos, neg)
    return _masked_mean(tf.nn.softplus(d_ap - d_an), valid)


def _batch_all(dist: tf.Tensor, pos: tf.Tensor, neg: tf.Tensor, margin: float) -> tf.Tensor:
    # loss[a, p, n] over every valid triplet; averaged over the triplets that still violate the
    # margin (Hermans et al.'s "batch all", normalised as in Moindrot's TF implementation) so the
    # many already-satisfied triplets do not dilute the gradient as training progresses.
    loss = tf.nn.relu(dist[:, :, None] - dist[:, None, :] + margin)
    valid = tf.logical_and(pos[:, :, None], neg[:, None, :])
    return _masked_mean(loss, tf.logical_and(valid, loss > 0.0))


def _semi_hard(dist: tf.Tensor, pos: tf.Tensor, neg: tf.Tensor, margin: float) -> tf.Tensor:
    # Addons' triplet_semihard_loss semantics: for each anchor-positive pair, the negative
    # closest to the anchor among those strictly farther than the positive; if there is none,
    # the anchor's farthest negative. Loss = mean over all anchor-positive pairs.
    d_an = dist[:, None, :]                                            # [a, 1, n]
    outside = tf.logical_and(neg[:, None, :], d_an > dist[:, :, None])  # [a, p, n]
    b = tf.shape(dist)[0]
    nearest_outside = _masked_min(tf.broadcast_to(d_an, [b, b, b]), outside)  # [a, p]
    farthest = _masked_max(dist, neg)[:, None]                         # [a, 1]
    semi_hard = tf.where(tf.reduce_any(outside, axis=2), nearest_outside, farthest)
    loss = tf.nn.relu(dist - semi_hard + margin)
    # Addons divides by all anchor-positive pairs; an anchor without any negative (a batch of one
    # identity) has no triplet, and Addons would score it margin + d_ap against a fake distance
    # of 0; here such pairs are left out and an all-one-identity batch scores 0.
    has_neg = tf.reduce_any(neg, axis=1, keepdims=True)
    return _masked_mean(loss, tf.logical_and(pos, has_neg))


def triplet_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float = 0.3,
                 miner: str = "batch_hard", metric: str = "euclidean") -> tf.Tensor:
    """Triplet loss of a batch, a float32 scalar.

    miner:
      batch_hard   Hermans et al.: per anchor the farthest positive and the nearest negative,
                   relu(d_ap - d_an + margin), mean over anchors that have both.
      batch_all    every valid (a, p, n) with a != p; mean over the triplets with a positive loss.
      semi_hard    FaceNet / tfa.losses.triplet_semihard_loss (see _semi_hard); note Addons'
                   default "L_2" metric means *squared* distances, i.e. metric="sqeuclidean".
      soft_margin  batch_hard with softplus(d_ap - d_an) instead of the hinge; ignores margin.
    A batch without any valid triplet gives 0.
    """
    if miner not in MINERS:
        raise ValueError(f"triplet miner: expected one of {', '.join(MINERS)}, got {miner!r}")
    if isinstance(margin, (int, float)) and margin < 0:  # tensors: caller-checked
        raise ValueError(f"triplet margin: expected a value >= 0, got {margin!r}")
    dist = pairwise_distances(embeddings, metric)
    pos, neg = _label_masks(labels)
    if miner == "batch_hard":
        return _batch_hard(dist, pos, neg, margin)
    if miner == "soft_margin":
        return _soft_margin(dist, pos, neg)
    if miner == "batch_all":
        return _batch_all(dist, pos, neg, margin)
    return _semi_hard(dist, pos, neg, margin)
