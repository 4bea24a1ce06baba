"""Match thresholds calibrated on a site's own footage, without labels.

Thresholds calibrated on a model's labelled validation crops mean little on other cameras: new
light, new angles and new crowds move the scores of true and false matches alike. A footage
index has no labels, but two of its facts are as good as labels:

* **Two tracks seen in the same camera and video at the same time are two people**
  (:func:`co_occurring_pairs`): every crop of one against every crop of the other is an
  impostor pair.
* **Crops of one track far apart in time are one person** (:func:`genuine_pairs`): genuine
  pairs.

:func:`calibrate_footage` turns them into a :class:`reid.calibration.Calibration` on the
index's stored vectors (no model is run): per-pair thresholds from crop-vs-crop scores, and a
gallery-level rule of kind ``tracks`` (a query crop or photo against track means, N = tracks).
:func:`calibrate_index` stores it in the index (a manifest key, see
:attr:`reid.index.gallery.GalleryIndex.site_calibration`), where queries of that index use it
in place of the model's (:func:`reid.index.decision.match_threshold`).

Biases, and which way each pushes (docs/GUIDE.md, "Calibrating on your own footage"):

* Co-occurring impostors are **same camera, same light, same moment and background**: they
  score higher than the cross-camera strangers a search meets, so the thresholds come out
  **higher** than labelled cross-camera impostors would give (fewer false matches than asked,
  some true ones lost).
* **A duplicate detection or a tile seam makes one person two simultaneous tracks**, whose
  "impostor" pairs score like true matches and would drag the thresholds far up. The guard
  (:func:`boxes_meet`) drops every pair of tracks whose boxes overlap at nearly the same time;
  it also drops some true pairs of people (walking in a group, one passing behind another),
  the hardest impostors, which pushes the thresholds slightly **down**. A duplicate whose
  crops never fall near the other's in time is not caught (pushes up).
* The gallery rule pools crop-vs-other-track-mean scores and simulates galleries of N
  **independent draws** from the pool (:func:`fit_pooled_rule`; a footage index has too few
  impostors per probe to draw galleries per probe): it ignores that some queries
  score high with everyone, which makes real best-of-N scores spread more than simulated ones,
  so its thresholds come out **lower** than they should (more absent people reported present
  than asked). The first bias counters it; bench/site_calibration.py measures the net.
* Track-internal genuine pairs are **easier** than cross-camera ones (same camera and light,
  seconds apart), so the true-match rate reported beside each threshold is optimistic. Only
  that report rests on them: no threshold does (the equal-error threshold, which would, is
  left out).

Crop pairs of one pair of tracks are not independent (nine crop pairs of two people are two
people), so the counts say how many pairs of tracks they came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from reid.calibration import (AUTO_FAR, CALIBRATED_FPIRS, DEFAULT_FPIR, Calibration,
                              CalibrationError, GalleryRule, calibrate, far_key, fpir_text)
from reid.evaluation.open_set import size_grid
from reid.evaluation.verification import threshold_at_far
from reid.index import versioned_folder as vf
from reid.index.footage import FootageEntry, TrackRecord
from reid.index.gallery import SITE_CALIBRATION_KEY, GalleryIndex, is_gallery_index

#: Two tracks co-occur when both are visible for at least this long at once (seconds). Any
#: overlap means frames with a box of each; half a second keeps out intervals that merely touch
#: (one track ending as the next begins: a person re-found after a miss is such a pair) and
#: rounding at the frame level, while a pair of busy tracks still overlaps by seconds.
MIN_OVERLAP_SECONDS = 0.5
#: The guard compares boxes at (nearly) the same time: a track's box between two of its
#: stored samples is interpolated, and beyond its first or last sample it is held for this
#: long (seconds): about a stride, in which a walker crossing the view moves about a body's
#: width and one walking towards or away from the camera much less.
SAME_TIME_SECONDS = 0.5
#: Two simultaneous boxes are taken for one person when their intersection covers at least
#: this share of the smaller box. Not IoU: the detector's merge already joins boxes at IoU above
#: ``video.nms_iou`` (0.5), so the duplicates that survive it are nested (a part box inside the
#: whole person, a half cut by a tile seam inside the whole frame's box: IoU about 0.5 or less,
#: but nearly all of the smaller box inside) or the two halves of a seam, which share the
#: tiles' overlap strip (most of the shorter half). Two people side by side overlap by less
#: than half a box unless one hides the other.
MIN_BOX_OVERLAP = 0.5
#: Crops of one track at least this far apart (seconds) are a genuine pair. Closer ones are
#: near-copies (same pose, place and scale; a track's crops are spread over its span, so short
#: tracks give none): two seconds are two to three strides, in which a walker turns, moves
#: across the background and changes size.
MIN_GENUINE_GAP_SECONDS = 2.0
#: The largest simulated gallery the rule is fitted on (tracks).
LARGEST_GALLERY = 2000
#: The smallest "largest gallery" a rate is fitted up to: the line needs a doubling of N.
SMALLEST_FITTED_GALLERY = 20
#: Simulated probes per gallery size; the pool, not these, limits what a rate can resolve.
SIMULATED_PROBES = 20000


# --- which pairs ------------------------------------------------------------------------------

def co_occurring_pairs(tracks: Iterable[TrackRecord], min_overlap: float = MIN_OVERLAP_SECONDS
                       ) -> list[tuple[TrackRecord, TrackRecord]]:
    """The pairs of tracks of one camera and one video whose time spans overlap by at least
    ``min_overlap`` seconds (intervals that only touch never count): two people, seen at
    once. Each pair once, ordered by (camera,
    track). Times are seconds from the video's frame 0, so tracks of two videos are never
    compared (two videos of one camera may share a clock or not; nothing says)."""
    if not min_overlap >= 0:
        raise ValueError(f"min_overlap: expected seconds >= 0, got {min_overlap}")
    groups: dict[tuple[str, str], list[TrackRecord]] = {}
    for t in tracks:
        groups.setdefault((t.camera, t.video), []).append(t)
    pairs = []
    for group in groups.values():
        group.sort(key=lambda t: (t.start, t.track))
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if b.start > a.end - min_overlap:
                    break  # sorted by start: every later one starts later still
                if min(a.end, b.end) - b.start >= min_overlap and (a.end > b.start):
                    pairs.append((a, b) if a.track < b.track else (b, a))
    return sorted(pairs, key=lambda p: (p[0].camera, p[0].track, p[1].track))


Sample = tuple[float, tuple[float, float, float, float]]


def box_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """The share of the smaller of two boxes (x1, y1, x2, y2) that the other covers."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / smaller) if smaller > 0 else 0.0


def box_at(samples: Sequence[Sample], time: float, reach: float = SAME_TIME_SECONDS
           ) -> np.ndarray | None:
    """A track's box at ``time`` from its samples (time, box): interpolated between two,
    held within ``reach`` seconds beyond the first or last; None further out."""
    times = np.array([t for t, _ in samples], np.float64)
    order = np.argsort(times, kind="stable")
    times = times[order]
    if not len(times) or time < times[0] - reach or time > times[-1] + reach:
        return None
    boxes = np.array([samples[i][1] for i in order], np.float64)
    return np.array([np.interp(time, times, boxes[:, k]) for k in range(4)])


def boxes_meet(a: Sequence[Sample], b: Sequence[Sample], min_overlap: float = MIN_BOX_OVERLAP,
               reach: float = SAME_TIME_SECONDS) -> bool:
    """Whether two tracks' boxes overlap (:func:`box_overlap` at least ``min_overlap``) at any
    time one of them has a sample and the other a box (:func:`box_at`): the sign of one person
    tracked twice (see :data:`MIN_BOX_OVERLAP`)."""
    for time in sorted({t for t, _ in a} | {t for t, _ in b}):
        box_a, box_b = box_at(a, time, reach), box_at(b, time, reach)
        if box_a is not None and box_b is not None and box_overlap(box_a, box_b) >= min_overlap:
            return True
    return False


def genuine_pairs(crops: Sequence[FootageEntry], min_gap: float = MIN_GENUINE_GAP_SECONDS
                  ) -> list[tuple[int, int]]:
    """(id, id) of the crops of one track at least ``min_gap`` seconds apart."""
    return [(a.id, b.id) for i, a in enumerate(crops) for b in crops[i + 1:]
            if abs(a.time - b.time) >= min_gap]


# --- the scores -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FootagePairs:
    """What an index's footage gives to calibrate on (scores are cosine, from stored vectors)."""

    tracks: int
    cameras: int
    #: Pairs of tracks seen at once, and those of them the guard took for one person.
    co_occurring: int
    dropped: int
    #: Crop-vs-crop scores of the kept pairs of tracks (per-pair thresholds).
    impostor: np.ndarray
    #: Crop-vs-the-other-track's-mean scores of the kept pairs (the gallery rule's pool), and
    #: how many crops they came from.
    track_impostor: np.ndarray
    probes: int
    #: Crop-vs-crop scores of one track far apart in time, and how many tracks gave some.
    genuine: np.ndarray
    genuine_tracks: int

    @property
    def kept(self) -> int:
        return self.co_occurring - self.dropped


def two_people(pairs: Iterable[tuple[TrackRecord, TrackRecord]],
               samples: Callable[[tuple[str, int]], Sequence[Sample]],
               min_box_overlap: float = MIN_BOX_OVERLAP
               ) -> tuple[list[tuple[TrackRecord, TrackRecord]], int]:
    """Of the tracks seen at once (``pairs``), those taken for two people, and how many pairs
    were dropped as one person tracked twice (their boxes meet: :func:`boxes_meet` on each
    track's ``samples``, keyed by (camera, track)). Self-calibration and adaptation's
    cannot-link pairs (:mod:`reid.index.target`) both read them here."""
    kept, dropped = [], 0
    for a, b in pairs:
        if boxes_meet(samples((a.camera, a.track)), samples((b.camera, b.track)),
                      min_box_overlap):
            dropped += 1
        else:
            kept.append((a, b))
    return kept, dropped


def footage_pairs(gallery: GalleryIndex, min_overlap: float = MIN_OVERLAP_SECONDS,
                  min_gap: float = MIN_GENUINE_GAP_SECONDS,
                  min_box_overlap: float = MIN_BOX_OVERLAP) -> FootagePairs:
    """The genuine and impostor scores of ``gallery``'s footage (see the module docstring)."""
    tracks = gallery.footage_tracks()
    entries = gallery.footage_entries(gallery.ids.tolist())
    crops: dict[tuple[str, int], list[FootageEntry]] = {}
    means: dict[tuple[str, int], FootageEntry] = {}
    for e in sorted(entries.values(), key=lambda e: (e.time, e.id)):
        if e.kind == "crop":
            crops.setdefault((e.camera, e.track), []).append(e)
        else:
            means[(e.camera, e.track)] = e
    usable = {key: t for key, t in tracks.items() if crops.get(key) and key in means}
    ids = sorted(entries)
    vectors = np.asarray(gallery.vectors_of(ids), np.float64) if ids else np.zeros((0, 0))
    row = {i: r for r, i in enumerate(ids)}

    def rows(items: Iterable[FootageEntry]) -> np.ndarray:
        return vectors[[row[e.id] for e in items]]

    def samples(key: tuple[str, int]) -> list[Sample]:
        return [(e.time, e.box) for e in (*crops[key], means[key])]

    pairs = co_occurring_pairs(usable.values(), min_overlap)
    people, dropped = two_people(pairs, samples, min_box_overlap)
    impostor, track_impostor, probes = [], [], set()
    for a, b in people:
        ka, kb = (a.camera, a.track), (b.camera, b.track)
        va, vb = rows(crops[ka]), rows(crops[kb])
        impostor.append((va @ vb.T).ravel())
        track_impostor += [va @ rows([means[kb]])[0], vb @ rows([means[ka]])[0]]
        probes |= {e.id for e in crops[ka] + crops[kb]}
    genuine, genuine_tracks = [], 0
    for key in usable:
        found = genuine_pairs(crops[key], min_gap)
        if found:
            genuine_tracks += 1
            left = vectors[[row[i] for i, _ in found]]
            right = vectors[[row[j] for _, j in found]]
            genuine.append(np.sum(left * right, axis=1))

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    return FootagePairs(len(usable), len({c for c, _ in usable}), len(pairs), dropped,
                        joined(impostor), joined(track_impostor), len(probes), joined(genuine),
                        genuine_tracks)


# --- the gallery rule from a pool ----------------------------------------------------------

def largest_resolved_gallery(pool: int, fpir: float) -> int:
    """The largest N at which the best of N independent draws from ``pool`` scores can be cut
    at ``fpir``: the cut is the pool's quantile ``(1 - fpir) ** (1 / N)``, which at least one
    pooled score must lie above (``pool * (1 - (1 - fpir) ** (1 / N)) >= 1``)."""
    if pool < 2:
        return 0
    return math.floor(math.log1p(-fpir) / math.log1p(-1.0 / pool) + 1e-9)


def simulated_maxima(pool: np.ndarray, sizes: np.ndarray, probes: int = SIMULATED_PROBES,
                     seed: int = 0) -> np.ndarray:
    """The best of N independent draws from ``pool``, ``probes`` times for each N of
    ``sizes``: (len(sizes), probes), as :func:`reid.evaluation.open_set.best_impostor_scores`
    returns them. Drawn exactly and cheaply: the largest of N uniform numbers is ``U ** (1/N)``,
    and it picks the pool's order statistic (one U per probe for every N, as one shuffled
    gallery serves every size there)."""
    ordered = np.sort(np.asarray(pool, np.float64))
    uniform = np.random.default_rng(seed).random(probes)
    out = np.empty((len(sizes), probes))
    for k, n in enumerate(np.asarray(sizes, np.int64)):
        picks = np.floor(len(ordered) * uniform ** (1.0 / n)).astype(np.int64)
        out[k] = ordered[np.minimum(picks, len(ordered) - 1)]
    return out


def fit_pooled_rule(pool: np.ndarray, probes: int, kind: str = "tracks",
                    largest: int = LARGEST_GALLERY, seed: int = 0) -> GalleryRule | None:
    """A gallery rule from pooled impostor scores (the crop-to-other-track-mean scores of a
    footage index, too few per probe to draw galleries per probe as
    :func:`reid.calibration.fit_gallery_rule` does): galleries of N independent draws from the
    pool are simulated (:func:`simulated_maxima`) for N on
    :func:`reid.evaluation.open_set.size_grid` up to ``largest``, and cut at each calibrated
    rate as :func:`reid.evaluation.open_set.fit_size_rule` cuts them
    (:func:`reid.evaluation.verification.threshold_at_far`), wherever the pool resolves the
    cut (:func:`largest_resolved_gallery`).

    The lines are fitted together, not one per rate: under independent draws the best of N
    passes a cut t at rate f when the pool's share above t is ``1 - (1 - f) ** (1/N)``, about
    ``-ln(1 - f) / N``, so every cut lies on one curve of ``x = ln N - ln(-ln(1 - f))``. One
    line ``t = a + b x`` through the cuts of every rate and size gives each rate's line in
    ln N: slope b, intercept ``a - b ln(-ln(1 - f))``. Fitted alone, a low rate's line rests on
    the pool's top few scores over a doubling or two of N, and its slope is mostly noise (on
    busy synthetic footage, 2,208 scores, the 0.01 line fitted alone on galleries of 10-22
    gave a threshold of 1.05 for 136 tracks); together, the slope is the pool's whole upper
    tail's (on pools drawn from a known distribution, the error at 0.01 and 136 tracks fell
    from 0.085 to 0.03-0.05 in standard deviation). A rate enters when the pool resolves its
    cut up to :data:`SMALLEST_FITTED_GALLERY`; None when none does. ``sizes``: the galleries
    every rate's cut was measured on (the higher rates' were measured further).

    Independent draws ignore that some queries score high with everyone: see the module
    docstring for which way that errs.
    """
    pool = np.asarray(pool, np.float64).ravel()
    limits = {f: min(largest, largest_resolved_gallery(len(pool), f)) for f in CALIBRATED_FPIRS}
    fpirs = [f for f in CALIBRATED_FPIRS if limits[f] >= SMALLEST_FITTED_GALLERY]
    if not fpirs:
        return None
    sizes = size_grid(max(limits[f] for f in fpirs))
    maxima = simulated_maxima(pool, sizes, seed=seed)
    xs, cuts = [], []
    for f in fpirs:
        for n, row in zip(sizes, maxima):
            if n <= limits[f]:
                xs.append(math.log(n) - _rate_shift(f))
                cuts.append(threshold_at_far(row, f))
    slope, intercept = np.polyfit(xs, cuts, 1)
    measured = min(int(sizes[sizes <= limits[f]].max()) for f in fpirs)
    return GalleryRule(kind, tuple(fpirs),
                       tuple(float(intercept - slope * _rate_shift(f)) for f in fpirs),
                       tuple(float(slope) for _ in fpirs), (int(sizes[0]), measured), probes)


def _rate_shift(fpir: float) -> float:
    """``ln(-ln(1 - fpir))``: where a rate's cuts sit on the pool's tail (fit_pooled_rule)."""
    return math.log(-math.log1p(-fpir))


def pool_needed(fpir: float, largest: int = SMALLEST_FITTED_GALLERY) -> int:
    """The fewest pooled scores that resolve ``fpir`` in galleries of up to ``largest``
    (:func:`largest_resolved_gallery`): about ``largest / fpir``."""
    return math.ceil(1.0 / -math.expm1(math.log1p(-fpir) / largest) - 1e-9)


# --- the calibration --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FootageCalibration:
    """A calibration made on an index's footage, with the pairs it came from."""

    pairs: FootagePairs
    calibration: Calibration

    def missing(self) -> str | None:
        """What a query of the index with the default decision needs and these pairs cannot
        resolve, or None: the per-pair threshold (false-match rate
        :data:`reid.calibration.AUTO_FAR`, threshold ``pair``) and the tracks rule at
        :data:`reid.calibration.DEFAULT_FPIR` (threshold ``auto``)."""
        needs = []
        if far_key(AUTO_FAR) not in self.calibration.thresholds:
            needs.append(f"a false-match rate of {AUTO_FAR:g} per pair needs "
                         f"{math.ceil(1 / AUTO_FAR - 1e-9)} impostor crop pairs, found "
                         f"{len(self.pairs.impostor)}")
        rule = self.calibration.gallery.get("tracks")
        if rule is None or min(rule.fpirs) > DEFAULT_FPIR * (1 + 1e-9):
            needs.append(f"{fpir_text(DEFAULT_FPIR)} of absent people reported present needs "
                         f"{pool_needed(DEFAULT_FPIR):,} crop-to-track impostor scores, found "
                         f"{len(self.pairs.track_impostor):,}")
        return "; ".join(needs) or None


def calibrate_footage(gallery: GalleryIndex, where: str,
                      min_overlap: float = MIN_OVERLAP_SECONDS,
                      min_gap: float = MIN_GENUINE_GAP_SECONDS) -> FootageCalibration:
    """Thresholds from ``gallery``'s footage alone (``where``: the index, for messages and the
    calibration's source): per pair at the calibrated false-match rates the crop pairs
    resolve, and a ``tracks`` gallery rule at the rates its pool resolves (either may lack the
    lower rates: :meth:`FootageCalibration.missing`). A CalibrationError when the index has no
    footage, no two tracks seen at once, or no track long enough for a genuine pair."""
    if gallery.footage_count == 0:
        raise CalibrationError(f"{where}: no footage in the index (videos indexed with "
                               f"tools/index_video.py): nothing to calibrate on")
    pairs = footage_pairs(gallery, min_overlap, min_gap)
    if not len(pairs.impostor):
        raise CalibrationError(
            f"{where}: no impostor pairs: of {pairs.tracks} tracks in {pairs.cameras} "
            f"camera(s), {pairs.co_occurring} pairs are seen at once (for {min_overlap:g} s or "
            f"more) in one camera and {pairs.dropped} of them were taken for one person twice")
    if not len(pairs.genuine):
        raise CalibrationError(f"{where}: no genuine pairs: no track of {pairs.tracks} has two "
                               f"crops {min_gap:g} s or more apart")
    return _calibrated(pairs, f"the footage of {where}")


def _calibrated(pairs: FootagePairs, what: str) -> FootageCalibration:
    """The calibration of ``pairs`` (both kinds present): per-pair thresholds and the pooled
    ``tracks`` rule, without the equal-error threshold."""
    rule = fit_pooled_rule(pairs.track_impostor, pairs.probes)
    source = (f"{what} ({pairs.tracks} tracks, {pairs.cameras} camera(s); "
              f"{pairs.kept} pairs of tracks seen at once)")
    made = calibrate(pairs.genuine, pairs.impostor, source,
                     gallery={} if rule is None else {"tracks": rule})
    # The equal-error threshold rests on the genuine pairs, which are easier than a search's:
    # no threshold may (the module docstring); the rate itself stays, as a figure.
    made = dataclasses.replace(
        made, thresholds={k: v for k, v in made.thresholds.items() if k != "eer"},
        tar={k: v for k, v in made.tar.items() if k != "eer"})
    return FootageCalibration(pairs, made)


def track_vector_pairs(vectors: np.ndarray, tracks: Sequence[int], cameras: Sequence[int],
                       cannot_link: Iterable[tuple[int, int]], dropped: int = 0
                       ) -> FootagePairs:
    """The pairs :func:`footage_pairs` reads from an index, from crops embedded by any model
    (adaptation's target, :class:`reid.index.target.TargetCrops`, embedded by the adapted
    model): impostor scores between the crops of two tracks of ``cannot_link`` (pairs seen at
    once, the duplicate guard already applied: ``dropped`` says how many it took for one
    person), and of each crop against the other track's mean (the mean of its crops' rows, unit
    length, as a footage index stores it). Genuine pairs: every two crops of one track (no
    times here to keep the 2 s gap; they feed only the reported true-match rates). Loose crops
    (track -1) take no part."""
    vectors = np.asarray(vectors, np.float64)
    tracks = np.asarray(tracks, np.int64)
    members = {int(t): np.flatnonzero(tracks == t) for t in np.unique(tracks[tracks >= 0])}
    means = {}
    for t, rows in members.items():
        mean = vectors[rows].mean(axis=0)
        means[t] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    kept = sorted({(min(a, b), max(a, b)) for a, b in cannot_link
                   if a in members and b in members})
    impostor, track_impostor, probes = [], [], set()
    for a, b in kept:
        va, vb = vectors[members[a]], vectors[members[b]]
        impostor.append((va @ vb.T).ravel())
        track_impostor += [va @ means[b], vb @ means[a]]
        probes |= {*members[a].tolist(), *members[b].tolist()}
    genuine, genuine_tracks = [], 0
    for rows in members.values():
        if len(rows) > 1:
            genuine_tracks += 1
            block = vectors[rows] @ vectors[rows].T
            genuine.append(block[np.triu_indices(len(rows), 1)])

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    camids = np.asarray(cameras)[tracks >= 0] if len(tracks) else np.zeros(0)
    return FootagePairs(len(members), len(set(camids.tolist())), len(kept) + dropped, dropped,
                        joined(impostor), joined(track_impostor), len(probes), joined(genuine),
                        genuine_tracks)


def calibrate_track_vectors(vectors: np.ndarray, tracks: Sequence[int], cameras: Sequence[int],
                            cannot_link: Iterable[tuple[int, int]], where: str,
                            dropped: int = 0) -> FootageCalibration:
    """:func:`calibrate_footage` on crops' vectors and their tracks instead of an index
    (:func:`track_vector_pairs`); ``where`` names them. A CalibrationError when no two tracks
    were seen at once or no track has two crops."""
    pairs = track_vector_pairs(vectors, tracks, cameras, cannot_link, dropped)
    if not len(pairs.impostor):
        raise CalibrationError(f"{where}: no impostor pairs: of {pairs.tracks} tracks, none "
                               f"were seen at once in one camera as two people")
    if not len(pairs.genuine):
        raise CalibrationError(f"{where}: no genuine pairs: no track of {pairs.tracks} has two "
                               f"crops")
    return _calibrated(pairs, where)


def read_site_calibration(index: GalleryIndex | str | os.PathLike) -> Calibration | None:
    """The calibration stored for an index (a loaded one, or its folder) by
    :func:`calibrate_index`; None when it has none, or no footage any more (its tracks rule
    would not fit the crops left). A damaged entry is a CalibrationError naming the manifest."""
    if isinstance(index, GalleryIndex):
        gallery, where = index, "the index's manifest"
    else:
        gallery, where = GalleryIndex.load(index, verify=False), f"{index}: the manifest"
    value = gallery.site_calibration
    if value is None or gallery.footage_count == 0:
        return None
    return Calibration.from_json(value, f"{where}'s {SITE_CALIBRATION_KEY}")


def write_site_calibration(index_dir: str | os.PathLike, calibration: Calibration | None,
                           lock_timeout: float = vf.DEFAULT_LOCK_TIMEOUT,
                           log: Callable[[str], None] | None = None) -> pathlib.Path:
    """Store ``calibration`` for the index at ``index_dir`` (None: forget it), as a new
    version of the index published atomically (:func:`reid.index.versioned_folder.publish`):
    a write killed at any point leaves the previous version, and its calibration, live.
    Returns the new version's folder."""
    folder = pathlib.Path(index_dir)
    _check_index(folder)
    with vf.writer_lock(folder, lock_timeout, log):
        gallery = GalleryIndex.load(folder)
        gallery.set_site_calibration(None if calibration is None else calibration.to_json())
        return gallery.save(folder, locked=True)


@dataclasses.dataclass(frozen=True)
class StoredCalibration:
    """What :func:`calibrate_index` measured and where it stored it."""

    footage: FootageCalibration
    version: pathlib.Path  # the index's version that holds it
    gallery_size: int  # the entries a query of the index is decided against (its tracks)

    def format(self) -> str:
        return (f"{format_footage_calibration(self.footage, self.gallery_size)}\n"
                f"stored in {self.version.parent} (version {self.version.name}): queries of "
                f"this index use these thresholds in place of the model's")


def calibrate_index(index_dir: str | os.PathLike,
                    lock_timeout: float = vf.DEFAULT_LOCK_TIMEOUT,
                    log: Callable[[str], None] | None = None) -> StoredCalibration:
    """Calibrate the index at ``index_dir`` on its own footage and store the calibration in
    it (as :func:`write_site_calibration`), all under the index's writer lock so that what is
    stored was measured on the version it is stored with. A calibration that cannot answer a
    default query (:meth:`FootageCalibration.missing`) is refused, and nothing is written."""
    from reid.index.decision import decision_gallery  # it reads what this module stores

    folder = pathlib.Path(index_dir)
    _check_index(folder)
    with vf.writer_lock(folder, lock_timeout, log):
        gallery = GalleryIndex.load(folder)
        made = calibrate_footage(gallery, str(folder))
        missing = made.missing()
        if missing is not None:
            raise CalibrationError(f"{folder}: too few pairs to calibrate on: {missing} "
                                   f"(index more footage of busy scenes)")
        gallery.set_site_calibration(made.calibration.to_json())
        version = gallery.save(folder, locked=True)
    return StoredCalibration(made, version, decision_gallery(gallery)[1])


def _check_index(folder: pathlib.Path) -> None:
    """Refuse what is not a saved index before the writer lock would create a folder there."""
    if not is_gallery_index(folder):
        GalleryIndex.load(folder)  # raises the error that says what the folder is instead


def format_footage_calibration(made: FootageCalibration, gallery_size: int,
                               fpirs: Sequence[float] = (0.1, 0.01)) -> str:
    """What a footage calibration used and gives, for a report: its pairs, the rates they
    resolve, the per-pair thresholds, and the gallery-level ones for ``gallery_size`` tracks."""
    p, c = made.pairs, made.calibration
    lines = [
        f"footage: {p.tracks} tracks in {p.cameras} camera(s)",
        (f"pairs of tracks seen at once: {p.co_occurring} ({p.kept} kept, {p.dropped} "
         f"dropped: their boxes overlap, one person tracked twice?)"),
        (f"impostor pairs: {len(p.impostor):,} crop pairs; {len(p.track_impostor):,} "
         f"crop-to-track scores from {p.probes} crops"),
        (f"genuine pairs: {len(p.genuine):,} crop pairs of {p.genuine_tracks} tracks, "
         f"{MIN_GENUINE_GAP_SECONDS:g} s or more apart"),
    ]
    fars = [key.split("=")[1] for key in c.thresholds if key.startswith("far=")]
    rule = c.gallery.get("tracks")
    lines.append("resolves: false-match rates per pair "
                 + (", ".join(fars) if fars else "none")
                 + "; absent people reported present "
                 + ("none" if rule is None else
                    f"{fpir_text(max(rule.fpirs))} to {fpir_text(min(rule.fpirs))} "
                    f"(galleries of {rule.sizes[0]}-{rule.sizes[1]} tracks measured)"))
    for key, t in c.thresholds.items():
        lines.append(f"  per pair: threshold {t:.4f} at false-match rate {key.split('=')[1]}: "
                     f"true-match rate {c.tar[key]:.4f} (within tracks: optimistic)")
    for fpir in fpirs:
        if rule is not None and min(rule.fpirs) <= fpir * (1 + 1e-9) <= max(rule.fpirs) * (
                1 + 1e-9):
            beyond = (f" (extrapolated: measured up to {rule.sizes[1]:,} tracks)"
                      if gallery_size > rule.sizes[1] else "")
            lines.append(f"  gallery of {gallery_size:,} tracks: threshold "
                         f"{rule.threshold(gallery_size, fpir):.4f} at {fpir_text(fpir)} of "
                         f"absent people reported present{beyond}")
        else:
            lines.append(f"  gallery of {gallery_size:,} tracks: no threshold at "
                         f"{fpir_text(fpir)} (too few pairs)")
    return "\n".join(lines)
