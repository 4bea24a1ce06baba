"""Scoring footage work against ground truth: tracking metrics, track identities and
cross-camera search, over the rows of MOTChallenge files (:mod:`reid.video.mot`).

Tracking is scored with ``motmetrics`` (IDF1, ID switches, MOTA, ...). Its own IoU helper calls
``np.asfarray``, which numpy 2 removed, so the IoU distances are computed here and only the
accumulator and the metrics are motmetrics'. Like the MOTChallenge evaluation, boxes a tracker
puts on ground truth not to be considered (:func:`reid.video.mot.considered`: conf 0, people
hardly visible, or not a pedestrian) are dropped before scoring, so a tracker is neither blamed
for missing those people nor for finding them.

Cross-camera search reuses the Market-1501 ranking code (:mod:`reid.evaluation.metrics`), with
every same-camera track moved behind all others, which is the same as leaving it out.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from reid.video.mot import MotRow, considered

#: IoU at which a tracker's box counts as finding a ground-truth box (MOTChallenge's 0.5).
DEFAULT_IOU = 0.5


# --------------------------------------------------------------------------------------------
# Matching boxes


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), both x, y, w, h."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]),
                 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]),
                 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _boxes(rows: Sequence[MotRow]) -> np.ndarray:
    return np.array([(r.x, r.y, r.w, r.h) for r in rows], np.float64).reshape(-1, 4)


def _match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, column) of a one-to-one matching with the most pairs at IoU >= threshold and,
    among those, the largest total IoU (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return []
    valid = iou >= threshold
    # A pair below the threshold costs more than any set of valid pairs can save, so the
    # assignment first maximises the number of valid pairs.
    cost = np.where(valid, 1.0 - iou, float(min(iou.shape) + 1))
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if valid[r, c]]


def _by_frame(rows: Iterable[MotRow]) -> dict[int, list[MotRow]]:
    frames: dict[int, list[MotRow]] = defaultdict(list)
    for r in rows:
        frames[r.frame].append(r)
    return frames


def _check_threshold(iou_threshold: float) -> float:
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold: need 0 < threshold <= 1, got {iou_threshold}")
    return float(iou_threshold)


def drop_ignored(gt_rows: Sequence[MotRow], result_rows: Sequence[MotRow],
                 iou_threshold: float = DEFAULT_IOU) -> tuple[list[MotRow], list[MotRow]]:
    """Ground truth without its ignored boxes (conf 0, or not a pedestrian), and the results
    without the boxes that match one of them (MOTChallenge's preprocessing: each frame's results
    are matched to all of its ground truth, and a box matched to an ignored one counts neither
    way)."""
    iou_threshold = _check_threshold(iou_threshold)
    gt_frames, res_frames = _by_frame(gt_rows), _by_frame(result_rows)
    kept: list[MotRow] = []
    for frame, hyps in res_frames.items():
        gts = gt_frames.get(frame, [])
        if all(considered(g) for g in gts):
            kept.extend(hyps)
            continue
        pairs = _match(iou_matrix(_boxes(gts), _boxes(hyps)), iou_threshold)
        drop = {h for g, h in pairs if not considered(gts[g])}
        kept.extend(h for j, h in enumerate(hyps) if j not in drop)
    kept.sort(key=lambda r: r.frame)
    return [g for g in gt_rows if considered(g)], kept


# --------------------------------------------------------------------------------------------
# Tracking metrics

#: What :func:`tracking_metrics` returns, in motmetrics' names where it has one.
TRACKING_METRICS = ("idf1", "idp", "idr", "num_switches", "mota", "motp", "precision", "recall",
                    "num_false_positives", "num_misses", "mostly_tracked", "mostly_lost",
                    "num_frames", "num_gt_ids", "num_tracks")


def tracking_metrics(gt_rows: Sequence[MotRow], result_rows: Sequence[MotRow],
                     iou_threshold: float = DEFAULT_IOU) -> dict[str, float | int]:
    """CLEAR-MOT and identity metrics of a tracker's boxes against ground truth (one sequence).

    ``idf1`` (identity F1: how much of the time the right track follows each person, Ristani
    et al. 2016) and ``num_switches`` (a person's track changing) measure what re-identification
    footage needs; ``mota`` folds misses, false positives and switches into one figure;
    ``motp`` is the mean 1 - IoU of matched boxes. ``num_gt_ids`` counts people, ``num_tracks``
    the tracks scored. Rates are floats (NaN when undefined, e.g. precision without results),
    counts ints. Ground truth with conf 0 is ignored as :func:`drop_ignored` says; a box
    matches at IoU >= ``iou_threshold``.
    """
    import motmetrics as mm

    iou_threshold = _check_threshold(iou_threshold)
    gt, results = drop_ignored(gt_rows, result_rows, iou_threshold)
    gt_frames, res_frames = _by_frame(gt), _by_frame(results)
    acc = mm.MOTAccumulator(auto_id=False)
    for frame in sorted(set(gt_frames) | set(res_frames)):
        gts, hyps = gt_frames.get(frame, []), res_frames.get(frame, [])
        distance = 1.0 - iou_matrix(_boxes(gts), _boxes(hyps))
        distance[distance > 1.0 - iou_threshold + 1e-12] = np.nan  # motmetrics: nan = no match
        acc.update([g.id for g in gts], [h.id for h in hyps], distance, frameid=frame)
    names = [n for n in TRACKING_METRICS if n not in ("num_gt_ids", "num_tracks")]
    summary = mm.metrics.create().compute(acc, metrics=names, name="sequence")
    out: dict[str, float | int] = {}
    for name in names:
        value = summary[name].iloc[0]
        out[name] = int(value) if name.startswith(("num_", "mostly_")) else float(value)
    out["num_gt_ids"] = len({g.id for g in gt})
    out["num_tracks"] = len({h.id for h in results})
    return out


def track_identities(gt_rows: Sequence[MotRow], result_rows: Sequence[MotRow],
                     iou_threshold: float = DEFAULT_IOU) -> dict[int, int | None]:
    """Each result track's person: the ground-truth id its boxes match most often.

    Per frame, result boxes are matched one-to-one to ground-truth boxes (Hungarian, IoU >=
    ``iou_threshold``; ignored ground truth too: who it is, is known). A track gets the id most
    of its matches agree on (ties: the smaller id), or None when fewer than half of its boxes
    match anyone (a track of false detections, or one that drifted off people).
    """
    iou_threshold = _check_threshold(iou_threshold)
    gt_frames = _by_frame(gt_rows)
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    boxes: Counter[int] = Counter()
    for frame, hyps in _by_frame(result_rows).items():
        gts = gt_frames.get(frame, [])
        for h in hyps:
            boxes[h.id] += 1
        for g, h in _match(iou_matrix(_boxes(gts), _boxes(hyps)), iou_threshold):
            votes[hyps[h].id][gts[g].id] += 1
    out: dict[int, int | None] = {}
    for track in sorted(boxes):
        counts = votes.get(track)
        if not counts or 2 * sum(counts.values()) < boxes[track]:
            out[track] = None
            continue
        best = max(counts.values())
        out[track] = min(pid for pid, c in counts.items() if c == best)
    return out


# --------------------------------------------------------------------------------------------
# Cross-camera search


def cross_camera_map(track_vectors: np.ndarray, track_pids: Sequence[int | None],
                     track_cameras: Sequence[Hashable]) -> tuple[float, float, int]:
    """(mAP, rank-1, number of queries) of finding each person's tracks in the other cameras.

    Every track with a known person (``track_pids[i]`` not None) queries all tracks of the other
    cameras, ranked by cosine distance of ``track_vectors`` (normalised here). Tracks of unknown
    people stay in the gallery as wrong answers. A query whose person no other camera saw is
    skipped, as the Market-1501 protocol does; with no query left the figures are NaN.
    """
    from reid.evaluation.metrics import evaluate_rank

    vectors = np.asarray(track_vectors, np.float64)
    n = len(track_pids)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise ValueError(f"track_vectors: expected ({n}, dim) for {n} track pids, got shape "
                         f"{vectors.shape}")
    if len(track_cameras) != n:
        raise ValueError(f"track_cameras: expected {n} cameras, got {len(track_cameras)}")
    if not np.isfinite(vectors).all():
        raise ValueError("track_vectors: contains NaN or infinity")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if n and (norms == 0).any():
        raise ValueError(f"track_vectors: row {int(np.argmax(norms[:, 0] == 0))} is zero, which "
                         f"has no direction to compare")
    # Persons and cameras as small integers; unknown people get -1, which no query has.
    known = sorted({p for p in track_pids if p is not None})
    code = {p: i for i, p in enumerate(known)}
    pids = np.array([-1 if p is None else code[p] for p in track_pids], np.int64)
    camera_code = {c: i for i, c in enumerate(dict.fromkeys(track_cameras))}
    cams = np.array([camera_code[c] for c in track_cameras], np.int64)
    other_camera = cams[:, None] != cams[None, :]
    has_match = ((pids[:, None] == pids[None, :]) & other_camera).any(axis=1)
    queries = np.flatnonzero((pids >= 0) & has_match)
    if queries.size == 0:
        return math.nan, math.nan, 0
    unit = vectors / norms
    distance = 1.0 - unit[queries] @ unit.T
    # Same-camera tracks last: behind every true match they change neither AP nor rank-1, as
    # if left out (the protocol itself only leaves out the same person in the same camera).
    distance[~other_camera[queries]] = np.inf
    result = evaluate_rank(distance, pids[queries], pids, cams[queries], cams, max_rank=1)
    return float(result["mAP"]), float(result["cmc"][0]), int(queries.size)
