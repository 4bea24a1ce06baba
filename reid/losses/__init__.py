"""Training losses: identity cross-entropy, triplet (four miners), center and contrastive.

Every module here is TensorFlow; the names of the miners and distances a config offers live in
:mod:`reid.choices`, which the config reads without loading TensorFlow.
"""

from reid.losses.center import CenterLoss, center_loss
from reid.losses.combined import ReidLoss
from reid.losses.contrastive import contrastive_loss
from reid.losses.cross_entropy import cross_entropy_label_smoothing
from reid.losses.triplet import pairwise_distances, triplet_loss

__all__ = [
    "CenterLoss",
    "ReidLoss",
    "center_loss",
    "contrastive_loss",
    "cross_entropy_label_smoothing",
    "pairwise_distances",
    "triplet_loss",
]
