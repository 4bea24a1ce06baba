"""The distances and triplet miners the losses offer, named without importing TensorFlow.

:mod:`reid.losses.triplet` implements them; the config's ``loss`` section offers them, and must
be able to before TensorFlow is loaded.
"""

from __future__ import annotations

#: Distances :func:`reid.losses.triplet.pairwise_distances` computes.
METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")
#: The ones a config trains with (``loss.triplet_distance``, which the contrastive loss shares):
#: sqeuclidean, what TF Addons calls "L_2", is there for callers matching Addons' losses.
CONFIG_METRICS: tuple[str, ...] = tuple(m for m in METRICS if m != "sqeuclidean")
#: Triplet miners (:func:`reid.losses.triplet.triplet_loss` says what each does).
MINERS: tuple[str, ...] = ("batch_hard", "batch_all", "semi_hard", "soft_margin")
