"""Gallery-level answers: "is this person anywhere in the gallery?", at a gallery's size.

A per-pair threshold (false-match rate 1e-2: one stranger *pair* in a hundred passes) says little
about that question: a person who is not in the gallery meets every one of its N entries, and
the best of N stranger scores passes far more often. The rate that matters is the
**false-positive identification rate** (FPIR, ISO/IEC 19795-1; NIST FRVT 1:N): the share of
people *absent* from the gallery who are reported present. Beside it, the **detection and
identification rate** (DIR): the share of people *present* whose best result is their own and
reaches the threshold.

The threshold that gives an FPIR depends on N: the best of N stranger scores grows with N.
Extreme-value theory says how: every quantile of the best of N moves with ln N (a Gumbel-domain
tail), or, for scores bounded above as a cosine is by 1 (the reversed Weibull domain), nears
the bound as a power of N, ``1 - threshold = e^a N^b``. :func:`fit_size_rules` fits either form
with one slope for every rate to the thresholds measured on galleries of several sizes drawn
from labelled data, a person's entries at a time (:func:`best_per_group`,
:func:`best_impostor_scores`). The bounded form was chosen on validation: extrapolated from
galleries of 19 CUHK03 validation people to 99, it gave FPIR 0.079 and 0.014 for 0.1 and 0.01
asked, the ln N line 0.073 and 0.007 (docs/BENCHMARKS.md, "Gallery-level answers").
Pure NumPy, like the rest of :mod:`reid.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reid.evaluation.errors import EvaluationError
from reid.evaluation.verification import threshold_at_far


def fpir_and_dir(mated_scores: np.ndarray, mated_correct: np.ndarray,
                 unmated_scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FPIR, DIR) of a threshold on the best score: the share of unmated queries whose best
    score reaches it, and the share of mated queries whose best result is their own and
    reaches it. An empty side gives NaN."""
    mated_scores = np.asarray(mated_scores, np.float64).ravel()
    mated_correct = np.asarray(mated_correct, bool).ravel()
    unmated_scores = np.asarray(unmated_scores, np.float64).ravel()
    if len(mated_correct) != len(mated_scores):
        raise ValueError(f"mated_correct: {len(mated_correct)} values for "
                         f"{len(mated_scores)} scores")
    fpir = float(np.mean(unmated_scores >= threshold)) if len(unmated_scores) else float("nan")
    dir_ = (float(np.mean(mated_correct & (mated_scores >= threshold)))
            if len(mated_scores) else float("nan"))
    return fpir, dir_


def best_impostor_scores(scores: np.ndarray, impostor: np.ndarray, sizes: np.ndarray,
                         draws: int, seed: int = 0) -> np.ndarray:
    """The best impostor score of each probe against galleries of each size, drawn at random.

    ``scores[i, j]`` is probe i's score with candidate j, and ``impostor[i, j]`` says whether j
    may stand in a gallery in which probe i's person is absent. For each probe and draw the
    impostor candidates are shuffled; the best of the first N is the best score against a
    gallery of N of them, drawn without replacement, for every N at once. Returns an array
    (len(sizes), probes * draws). Every probe needs at least ``max(sizes)`` impostors.
    """
    scores = np.asarray(scores, np.float64)
    impostor = np.asarray(impostor, bool)
    sizes = np.asarray(sizes, np.int64)
    if scores.shape != impostor.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and impostor {impostor.shape}: expected two "
                         f"matrices of one shape")
    available = impostor.sum(axis=1)
    if not len(sizes) or sizes.min() < 1 or (len(available) and sizes.max() > available.min()):
        raise EvaluationError(f"gallery sizes {sizes.min()}-{sizes.max()}: every probe needs "
                              f"that many impostors, the fewest has {available.min()}")
    rng = np.random.default_rng(seed)
    out = np.empty((len(sizes), len(scores), draws))
    for i in range(len(scores)):
        candidates = scores[i, impostor[i]]
        for b in range(draws):
            running = np.maximum.accumulate(rng.permutation(candidates)[:sizes.max()])
            out[:, i, b] = running[sizes - 1]
    return out.reshape(len(sizes), -1)


def best_per_group(scores: np.ndarray, impostor: np.ndarray, groups: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(probe x group best impostor scores, whether each group may stand in a probe's
    gallery): the entries of one person are drawn into a gallery together, as a real gallery
    holds several crops or tracks of each person it holds at all. Drawing entries one by one
    from a calibration set of few people would mix more people into a small gallery than a
    real one of that size holds, and make the best stranger score grow too slowly with N."""
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    impostor = np.asarray(impostor, bool)
    labels, index = np.unique(np.asarray(groups), return_inverse=True)
    best = np.full((len(scores), len(labels)), -np.inf)
    allowed = np.zeros((len(scores), len(labels)), bool)
    masked = np.where(impostor, scores, -np.inf)
    for g in range(len(labels)):
        members = index == g
        best[:, g] = masked[:, members].max(axis=1)
        allowed[:, g] = impostor[:, members].all(axis=1)
    return best, allowed


def size_grid(largest: int, smallest: int = 10, per_doubling: int = 2) -> np.ndarray:
    """Gallery sizes from ``smallest`` to ``largest``, evenly spaced in ln N."""
    if largest < smallest:
        raise EvaluationError(f"gallery sizes: at most {largest} impostors per probe, fewer "
                              f"than the {smallest} a gallery-size rule needs")
    steps = max(2, int(np.ceil(np.log2(largest / smallest) * per_doubling)) + 1)
    return np.unique(np.round(np.geomspace(smallest, largest, steps)).astype(np.int64))


def fit_size_rule(maxima: np.ndarray, sizes: np.ndarray, fpir: float
                  ) -> tuple[float, float]:
    """(a, b) of ``threshold(N) = a + b ln N`` at ``fpir``: least squares through the thresholds
    that let a share ``fpir`` of the best impostor scores at each size through
    (:func:`reid.evaluation.verification.threshold_at_far`; ``maxima`` as
    :func:`best_impostor_scores` returns them): :func:`fit_size_rules` at one rate."""
    intercepts, slope = fit_size_rules(maxima, sizes, [fpir])
    return float(intercepts[0]), slope


def fit_size_rules(maxima: np.ndarray, sizes: np.ndarray, fpirs: Sequence[float],
                   bound: float | None = None) -> tuple[np.ndarray, float]:
    """(a per rate, b) of ``y(N) = a_f + b ln N`` at each of ``fpirs``, one slope for all:
    least squares through the thresholds of :func:`fit_size_rule` (``y`` the threshold, or
    with ``bound`` ``ln(bound - threshold)``). For the best of N scores from a Gumbel-domain
    tail every quantile moves by the same ``b ln N``; for scores bounded above (a cosine by 1:
    the reversed Weibull domain) the best of N nears the bound as a power of N, every quantile
    with the same power, which ``bound`` fits. One slope is the model either way; fitted per
    rate from a few calibration people the lines could cross, and a lower rate would get a
    lower threshold."""
    sizes = np.log(np.asarray(sizes, np.float64))
    if len(sizes) < 2:
        raise EvaluationError("a gallery-size rule needs at least two gallery sizes")
    thresholds = np.array([[threshold_at_far(row, f) for row in maxima] for f in fpirs])
    if bound is not None:
        thresholds = np.log(np.maximum(bound - thresholds, 1e-12))
    centred = sizes - sizes.mean()
    slope = float(np.sum((thresholds - thresholds.mean(axis=1, keepdims=True)) * centred)
                  / (len(fpirs) * np.sum(centred ** 2)))
    return thresholds.mean(axis=1) - slope * sizes.mean(), slope
