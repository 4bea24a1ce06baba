"""The training objective: a config-weighted sum of the identity and metric-learning losses."""

from __future__ import annotations

import tensorflow as tf

from reid.config import ConfigError, LossConfig
from reid.losses.center import CenterLoss
from reid.losses.contrastive import contrastive_loss
from reid.losses.cross_entropy import cross_entropy_label_smoothing
from reid.losses.triplet import triplet_loss


class ReidLoss:
    """ce_weight * CE + triplet_weight * triplet + center_weight * center
    + contrastive_weight * contrastive, leaving out every term whose weight is 0.

    The caller chooses the tensors: in the strong baseline the metric losses (triplet, center,
    contrastive) take the feature *before* the BNNeck and the cross-entropy the classifier's
    logits after it. The contrastive loss uses ``triplet_distance`` as its metric too.

    When the center loss is on, this object owns the :class:`CenterLoss` (``self.center``); call
    :meth:`update_centers` once per step with the same features and labels, after the gradient
    step, and checkpoint ``self.center`` with the run.
    """

    TERMS = ("ce", "triplet", "center", "contrastive")

    def __init__(self, config: LossConfig, num_classes: int | None = None,
                 feature_dim: int | None = None) -> None:
        self.config = config
        self.weights = {"ce": config.ce_weight, "triplet": config.triplet_weight,
                        "center": config.center_weight,
                        "contrastive": config.contrastive_weight}
        if not any(w > 0 for w in self.weights.values()):
            raise ConfigError("loss: every loss weight (ce_weight, triplet_weight, center_weight, "
                              "contrastive_weight) is 0; nothing to train")
        self.center: CenterLoss | None = None
        if config.center_weight > 0:
            if num_classes is None or feature_dim is None:
                raise ConfigError("loss.center_weight > 0 needs the number of training classes "
                                  "and the feature size to build the centers")
            self.center = CenterLoss(num_classes, feature_dim, config.center_lr)

    @property
    def active_terms(self) -> tuple[str, ...]:
        """Names of the terms with a non-zero weight, in a fixed order."""
        return tuple(t for t in self.TERMS if self.weights[t] > 0)

    def __call__(self, labels: tf.Tensor, features: tf.Tensor | None,
                 logits: tf.Tensor | None) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """(total, {term name: unweighted term value, ..., "loss": total}) for logging."""
        cfg = self.config
        active = self.active_terms
        if "ce" in active and logits is None:
            raise ValueError("loss: ce_weight > 0 but no logits were given")
        if any(t in active for t in ("triplet", "center", "contrastive")) and features is None:
            raise ValueError("loss: a metric loss is on but no features were given")
        terms: dict[str, tf.Tensor] = {}
        if "ce" in active:
            terms["ce"] = cross_entropy_label_smoothing(labels, logits, cfg.label_smoothing)
        if "triplet" in active:
            terms["triplet"] = triplet_loss(labels, features, cfg.triplet_margin,
                                            cfg.triplet_miner, cfg.triplet_distance)
        if "center" in active:
            assert self.center is not None
            terms["center"] = self.center(features, labels)
        if "contrastive" in active:
            terms["contrastive"] = contrastive_loss(labels, features, cfg.contrastive_margin,
                                                    cfg.triplet_distance)
        total = tf.add_n([self.weights[name] * value for name, value in terms.items()])
        terms["loss"] = total
        return total, terms

    def update_centers(self, labels: tf.Tensor, features: tf.Tensor) -> None:
        """One center step when the center loss is on; nothing otherwise."""
        if self.center is not None:
            self.center.update(features, labels)
