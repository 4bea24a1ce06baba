"""The evaluation's error, numpy-free like the rest of the family (:mod:`reid.errors`)."""

from __future__ import annotations

from reid.errors import ReidError


class EvaluationError(ReidError, ValueError):
    """Features or labels that cannot be scored (a NaN, mismatched sizes, a split without a
    single true match); the message names the array or the split."""
