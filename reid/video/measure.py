"""Scoring footage work against ground truth: MOTChallenge files, tracking metrics, track
identities and cross-camera search.

MOTChallenge text files are the common currency: one box per line,
``frame,id,left,top,width,height,conf,...`` with 1-based frames. Ground truth has nine columns
(``...,conf,class,visibility``; conf 0 marks a box to ignore), detections and tracker results
ten (``...,conf,-1,-1,-1``, the unused world coordinates). Box coordinates are taken as written,
as py-motmetrics and TrackEval take them: the project writes and reads its own pixels (0-based,
:class:`reid.video.boxes.Detections`), where MOTChallenge's published data counts pixels from 1,
a one-pixel shift that matters to nothing scored at IoU 0.5 but is never mixed within one file.

Tracking is scored with ``motmetrics`` (IDF1, ID switches, MOTA, ...). Its own IoU helper calls
``np.asfarray``, which numpy 2 removed, so the IoU distances are computed here and only the
accumulator and the metrics are motmetrics'. Like the MOTChallenge evaluation, boxes a tracker
puts on ignored ground truth (conf 0: people hardly visible) are dropped before scoring, so a
tracker is neither blamed for missing those people nor for finding them.

Cross-camera search reuses the Market-1501 ranking code (:mod:`reid.evaluation.metrics`), with
every same-camera track moved behind all others, which is the same as leaving it out.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from reid.utils.io import atomic_write_text

#: IoU at which a tracker's box counts as finding a ground-truth box (MOTChallenge's 0.5).
DEFAULT_IOU = 0.5
#: The pedestrian class of MOTChallenge ground truth (the 8th value).
PEDESTRIAN = 1


class MotFormatError(ValueError):
    """A MOTChallenge file that cannot be read; the message names the file and the line."""


@dataclasses.dataclass(frozen=True)
class MotRow:
    """One line of a MOTChallenge file.

    ``frame`` 1-based; ``id`` the person (gt) or track (results), -1 in detection files;
    ``x``, ``y`` the box's top-left pixel, ``w``, ``h`` its size; ``conf`` a
    detection's score, or in ground truth 1 (scored) or 0 (ignored); ``object_class``
    and ``visibility`` ground truth's class (1: pedestrian) and visible share, -1 elsewhere.
    """

    frame: int
    id: int
    x: float
    y: float
    w: float
    h: float
    conf: float = 1.0
    object_class: int = -1
    visibility: float = -1.0

    @classmethod
    def from_corners(cls, frame: int, id: int, x1: float, y1: float, x2: float, y2: float,
                     **fields: float) -> MotRow:
        """A row from pixel corners (x2, y2 exclusive), the project's box convention."""
        return cls(frame, id, x1, y1, x2 - x1, y2 - y1, **fields)  # type: ignore[arg-type]

    def corners(self) -> tuple[float, float, float, float]:
        """The box as corners x1, y1, x2, y2 (x2, y2 exclusive)."""
        return self.x, self.y, self.x + self.w, self.y + self.h


def _number(value: float) -> str:
    """A number to three decimals without trailing zeros: 12, 12.5, 0.625."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_mot(rows: Iterable[MotRow], ground_truth: bool = False) -> str:
    """The text of a MOTChallenge file: nine columns for ground truth, else ten."""
    lines = []
    for r in rows:
        head = (f"{r.frame},{r.id},{_number(r.x)},{_number(r.y)},{_number(r.w)},"
                f"{_number(r.h)},{_number(r.conf)}")
        if ground_truth:
            lines.append(f"{head},{r.object_class},{_number(r.visibility)}")
        else:
            lines.append(f"{head},-1,-1,-1")
    return "".join(line + "\n" for line in lines)


def write_mot(path: str | os.PathLike, rows: Iterable[MotRow], ground_truth: bool = False
              ) -> None:
    """Write ``rows`` as a MOTChallenge file, atomically (a reader never sees half of it)."""
    atomic_write_text(path, format_mot(rows, ground_truth))


def _integer(value: float) -> int | None:
    return int(value) if math.isfinite(value) and value == int(value) else None


def read_mot(path: str | os.PathLike) -> list[MotRow]:
    """The rows of a MOTChallenge gt, det or result file, in file order.

    Nine columns are read as ground truth (class and visibility), six to eight and ten as
    detections or results (the world coordinates ignored). Blank lines are skipped. Raises
    MotFormatError naming the file and line on anything else: too few columns, a non-number, a
    frame below 1, a fractional frame or id, a negative or non-finite size.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise MotFormatError(f"{path}: not a text file") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6:
            raise MotFormatError(f"{where}: expected at least 6 comma-separated values "
                                 f"(frame,id,x,y,w,h,...), got {len(parts)}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            raise MotFormatError(f"{where}: {bad!r} is not a number") from None
        frame, ident = _integer(values[0]), _integer(values[1])
        if frame is None or frame < 1:
            raise MotFormatError(f"{where}: frame must be a whole number from 1, got {parts[0]}")
        if ident is None:
            raise MotFormatError(f"{where}: id must be a whole number, got {parts[1]}")
        x, y, w, h = values[2:6]
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
            raise MotFormatError(f"{where}: box {','.join(parts[2:6])} needs finite numbers and "
                                 f"a width and height of at least 0")
        conf = values[6] if len(values) > 6 else 1.0
        object_class, visibility = -1, -1.0
        if len(values) == 9:  # MOT16+ ground truth: conf, class, visibility
            cls_value = _integer(values[7])
            if cls_value is None:
                raise MotFormatError(f"{where}: class must be a whole number, got {parts[7]}")
            object_class, visibility = cls_value, values[8]
        rows.append(MotRow(frame, ident, x, y, w, h, conf, object_class, visibility))
    return rows


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
        if not any(_ignored(g) for g in gts):
            kept.extend(hyps)
            continue
        pairs = _match(iou_matrix(_boxes(gts), _boxes(hyps)), iou_threshold)
        drop = {h for g, h in pairs if _ignored(gts[g])}
        kept.extend(h for j, h in enumerate(hyps) if j not in drop)
    kept.sort(key=lambda r: r.frame)
    return [g for g in gt_rows if not _ignored(g)], kept


def _ignored(row: MotRow) -> bool:
    """Ground truth not to score: conf 0, or a class other than pedestrian (MOTChallenge's
    static people, reflections, ...; -1 is a file without classes)."""
    return row.conf == 0 or row.object_class not in (-1, PEDESTRIAN)


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
