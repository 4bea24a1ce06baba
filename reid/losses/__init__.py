"""Training losses: identity cross-entropy, triplet (four miners), center and contrastive."""

from reid.losses.center import CenterLoss, center_loss
from reid.losses.combined import ReidLoss
from reid.losses.contrastive import contrastive_loss
from reid.losses.cross_entropy import cross_entropy_label_smoothing
from reid.losses.triplet import METRICS, MINERS, pairwise_distances, triplet_loss

__all__ = ["CenterLoss", "METRICS", "MINERS", "ReidLoss", "center_loss", "contrastive_loss",
           "cross_entropy_label_smoothing", "pairwise_distances", "triplet_loss"]
