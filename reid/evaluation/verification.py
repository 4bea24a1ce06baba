"""Verification and open-set figures: is this pair the same person, is this person in the gallery?

Ranking metrics (mAP, CMC) say how well a gallery is ordered, never where to cut it. These say
what a threshold on the cosine score does: over every query-gallery pair that the Market-1501
protocol scores (a query's own identity seen by its own camera is left out, as in ranking),
genuine pairs share an identity and impostor pairs do not. A pair is accepted when its score
is at least the threshold, so

* FAR(t), the false-accept (false-match) rate: the share of impostor pairs scoring >= t;
* TAR(t), the true-accept rate: the share of genuine pairs scoring >= t;
* EER: where FAR equals the false-reject rate 1 - TAR.

Open-set identification (the protocol of face recognition's open-set benchmarks, Liao et al.
2014): some identities are left out of the gallery, so their queries have no mate. The share of
unmated queries whose top-1 score is >= t is the false-positive identification rate (FPIR: a
rate per query, not per pair); the detection and identification rate DIR is the share of mated
queries whose top-1 is their own identity with a score >= t. :func:`verification_summary`
reports DIR at the threshold set on the unmated queries themselves: an oracle's figure, the
best a threshold could do on this split, not what a calibrated one does
(:mod:`reid.evaluation.open_set`). Pure NumPy, like the rest of :mod:`reid.evaluation`.
"""

from __future__ import annotations

import numpy as np

from reid.evaluation.distance import l2_normalize
from reid.evaluation.errors import EvaluationError


def pair_scores(query: np.ndarray, gallery: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                q_camids: np.ndarray, g_camids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores of every scored query-gallery pair.

    Left out, as the ranking protocol leaves them out: a gallery image of the query's identity
    from the query's camera, and gallery "junk" (pid -1). Distractors (pid 0) are impostors.
    """
    q = l2_normalize(np.asarray(query, np.float64))
    g = l2_normalize(np.asarray(gallery, np.float64))
    scores = q @ g.T
    q_pids, g_pids = np.asarray(q_pids)[:, None], np.asarray(g_pids)[None, :]
    same_id = q_pids == g_pids
    same_cam = np.asarray(q_camids)[:, None] == np.asarray(g_camids)[None, :]
    scored = ~(same_id & same_cam) & (g_pids != -1)
    return scores[scored & same_id], scores[scored & ~same_id]


def _check(name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64).ravel()
    if not len(values):
        raise EvaluationError(f"{name}: no scores (a split without such pairs?)")
    if not np.all(np.isfinite(values)):
        raise EvaluationError(f"{name}: scores must be finite")
    return values


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold whose false-accept rate is at most ``far``: it accepts at most
    ``floor(far * n)`` of the n impostor scores (ties are accepted or rejected together, so
    possibly fewer)."""
    impostor = np.sort(_check("impostor", impostor))[::-1]
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far: expected a rate in [0, 1], got {far}")
    allowed = int(np.floor(far * len(impostor) + 1e-9))
    if allowed >= len(impostor):
        return float(impostor[-1])
    # Just above the first impostor that must be rejected: nothing lower rejects it.
    return float(np.nextafter(impostor[allowed], np.inf))


def accept_rate(scores: np.ndarray, threshold: float) -> float:
    """The share of ``scores`` at least ``threshold``."""
    scores = _check("scores", scores)
    return float(np.mean(scores >= threshold))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the threshold of :func:`threshold_at_far`."""
    threshold = threshold_at_far(impostor, far)
    return accept_rate(genuine, threshold), threshold


def roc_curve(genuine: np.ndarray, impostor: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, thresholds), thresholds every distinct score from the highest down: the
    operating points a threshold can reach, from accepting nothing but the top to all."""
    genuine = np.sort(_check("genuine", genuine))
    impostor = np.sort(_check("impostor", impostor))
    thresholds = np.unique(np.concatenate([genuine, impostor]))[::-1]
    # Pairs scoring >= t: everything from the first index whose score is >= t.
    tar = (len(genuine) - np.searchsorted(genuine, thresholds, side="left")) / len(genuine)
    far = (len(impostor) - np.searchsorted(impostor, thresholds, side="left")) / len(impostor)
    return far, tar, thresholds


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): at the reachable threshold where FAR and the false-reject rate are
    closest, their mean."""
    far, tar, thresholds = roc_curve(genuine, impostor)
    frr = 1.0 - tar
    best = int(np.argmin(np.abs(far - frr)))
    return float((far[best] + frr[best]) / 2), float(thresholds[best])


def dir_at_far(mated_scores: np.ndarray, mated_correct: np.ndarray,
               unmated_scores: np.ndarray, far: float) -> tuple[float, float]:
    """(DIR, threshold) of open-set identification at rank 1.

    ``mated_scores`` / ``mated_correct``: each mated query's top-1 score and whether that
    top-1 is its own identity; ``unmated_scores``: each unmated query's top-1 score. The
    threshold lets at most a share ``far`` of unmated queries through (:func:`threshold_at_far`):
    ``far`` is a false-positive identification rate, set on the very queries it is counted on.
    """
    threshold = threshold_at_far(unmated_scores, far)
    mated_scores = _check("mated_scores", mated_scores)
    mated_correct = np.asarray(mated_correct, bool).ravel()
    if len(mated_correct) != len(mated_scores):
        raise ValueError(f"mated_correct: {len(mated_correct)} values for "
                         f"{len(mated_scores)} scores")
    return float(np.mean(mated_correct & (mated_scores >= threshold))), threshold


def open_set_split(g_pids: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """The identities to leave out of the gallery: a seeded share ``fraction`` of its real
    identities (pid > 0; distractors and junk stay)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: expected a share in (0, 1), got {fraction}")
    ids = np.unique(np.asarray(g_pids)[np.asarray(g_pids) > 0])
    count = int(round(fraction * len(ids)))
    if count < 1 or count >= len(ids):
        raise EvaluationError(f"fraction {fraction} of {len(ids)} identities leaves out "
                              f"{count}: need at least one out and one in")
    return np.sort(np.random.default_rng(seed).choice(ids, size=count, replace=False))


def _kept(g_pids: np.ndarray, left_out: np.ndarray) -> np.ndarray:
    """Which gallery entries stay: not left out, not junk (pid -1, never a candidate)."""
    g_pids = np.asarray(g_pids)
    return ~np.isin(g_pids, left_out) & (g_pids != -1)


def open_set_gallery_size(g_pids: np.ndarray, left_out: np.ndarray) -> int:
    """N, the entries an unmated query of :func:`open_set_top1` meets: the gallery without the
    identities ``left_out`` and without junk. What a gallery-level threshold is read for."""
    return int(np.count_nonzero(_kept(g_pids, left_out)))


def open_set_top1(query: np.ndarray, gallery: np.ndarray, q_pids: np.ndarray,
                  g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray,
                  left_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mated top-1 scores, whether each is correct, unmated top-1 scores) with the
    identities ``left_out`` removed from the gallery, under the ranking protocol's camera
    rule (a query's own identity from its own camera is not a candidate)."""
    q = l2_normalize(np.asarray(query, np.float64))
    g = l2_normalize(np.asarray(gallery, np.float64))
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
    kept = _kept(g_pids, left_out)
    scores = q @ g[kept].T
    candidate = ~((q_pids[:, None] == g_pids[kept][None, :])
                  & (q_camids[:, None] == g_camids[kept][None, :]))
    scores = np.where(candidate, scores, -np.inf)
    top = np.argmax(scores, axis=1)
    top_score = scores[np.arange(len(q)), top]
    correct = g_pids[kept][top] == q_pids
    # Mated: the query's identity is still in the gallery, seen by another camera.
    mated = np.array([np.any((g_pids[kept] == p) & (g_camids[kept] != c))
                      for p, c in zip(q_pids, q_camids)], bool)
    unmated = np.isin(q_pids, left_out)
    return top_score[mated], correct[mated], top_score[unmated]


#: The false-accept rates reported (TAR at each); the false-positive identification rate of
#: the oracle's open-set figure; the rates at which a calibrated gallery-level decision is
#: checked (:func:`reid.engine.evaluator.calibrated_figures`); the share of identities left out.
REPORTED_FARS = (1e-2, 1e-3, 1e-4)
OPEN_SET_FPIR = 1e-2
REPORTED_FPIRS = (1e-1, 1e-2)
OPEN_SET_LEFT_OUT = 1 / 3


def verification_summary(query: np.ndarray, gallery: np.ndarray, q_pids: np.ndarray,
                         g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray,
                         seed: int = 0) -> dict[str, float | int | None]:
    """TAR at :data:`REPORTED_FARS`, EER, and, with a seeded third of the gallery's identities
    left out, DIR at FPIR 1e-2 with the threshold set on the left-out queries themselves (an
    oracle's figure: ``dir@fpir0.01``); a figure the split cannot give (too few impostor pairs
    for the rate, too few identities to leave some out) is None."""
    genuine, impostor = pair_scores(query, gallery, q_pids, g_pids, q_camids, g_camids)
    summary: dict[str, float | int | None] = {"genuine_pairs": len(genuine),
                                              "impostor_pairs": len(impostor)}
    for far in REPORTED_FARS:
        enough = len(genuine) and len(impostor) * far >= 1
        summary[f"tar@far{far:g}"] = tar_at_far(genuine, impostor, far)[0] if enough else None
    summary["eer"] = (equal_error_rate(genuine, impostor)[0]
                      if len(genuine) and len(impostor) else None)
    try:
        left_out = open_set_split(g_pids, OPEN_SET_LEFT_OUT, seed)
        mated, correct, unmated = open_set_top1(query, gallery, q_pids, g_pids, q_camids,
                                                g_camids, left_out)
        enough = len(mated) and len(unmated) * OPEN_SET_FPIR >= 1
        summary[f"dir@fpir{OPEN_SET_FPIR:g}"] = (
            dir_at_far(mated, correct, unmated, OPEN_SET_FPIR)[0] if enough else None)
    except ValueError:  # too few identities for the protocol
        summary[f"dir@fpir{OPEN_SET_FPIR:g}"] = None
    return summary
