"""Training losses: identity cross-entropy, triplet (four miners), center and contrastive.

The names below are imported on first use: the config imports :mod:`reid.losses.choices` from
this package, which must not load TensorFlow (nor the config, which is then half-imported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reid.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from reid.losses.center import CenterLoss, center_loss
    from reid.losses.choices import METRICS, MINERS
    from reid.losses.combined import ReidLoss
    from reid.losses.contrastive import contrastive_loss
    from reid.losses.cross_entropy import cross_entropy_label_smoothing
    from reid.losses.triplet import pairwise_distances, triplet_loss

#: Public name -> the module defining it.
_HOMES = {
    "CenterLoss": "reid.losses.center", "METRICS": "reid.losses.choices",
    "MINERS": "reid.losses.choices", "ReidLoss": "reid.losses.combined",
    "center_loss": "reid.losses.center", "contrastive_loss": "reid.losses.contrastive",
    "cross_entropy_label_smoothing": "reid.losses.cross_entropy",
    "pairwise_distances": "reid.losses.triplet", "triplet_loss": "reid.losses.triplet",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_exports(__name__, _HOMES)
