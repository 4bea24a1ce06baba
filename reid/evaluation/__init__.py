"""Evaluation core, numpy only: ranking metrics, feature distances, re-ranking, query expansion.

Kept free of TensorFlow so that evaluating saved features (or another framework's) needs nothing
but numpy.
"""

from reid.evaluation.collapse import collapse_warning, embedding_spread
from reid.evaluation.distance import pairwise_distance
from reid.evaluation.metrics import evaluate_rank
from reid.evaluation.query_expansion import alpha_query_expansion, flip_average
from reid.evaluation.rerank import re_ranking

__all__ = [
    "alpha_query_expansion",
    "collapse_warning",
    "embedding_spread",
    "evaluate_rank",
    "flip_average",
    "pairwise_distance",
    "re_ranking",
]
