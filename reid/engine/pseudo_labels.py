"""Pseudo-identities for a new site's unlabelled crops: the clustering step of self-training.

Unsupervised domain adaptation for re-id (SpCL, Ge et al. NeurIPS 2020; Cluster Contrast, Dai
et al. ACCV 2022; MMT before them) alternates two steps: embed the target crops with the current
model and cluster them into pseudo-identities, then train on those as if they were labels. The
clustering they converged on is DBSCAN on the k-reciprocal Jaccard distance
(:func:`reid.evaluation.rerank.jaccard_within`), and it is used here for the same reasons: the
number of people on a new site is unknown (k-means and agglomerative clustering need it or a
cut height that depends on it), and many crops belong to people seen once or badly (partly
occluded, mis-detected); DBSCAN leaves those out as noise instead of forcing them into a
cluster, and self-training on fewer, cleaner pseudo-labels works better than on all crops.
The Jaccard distance, not the raw one, because sharing k-reciprocal neighbours is robust to
the hubs and uneven densities of a model that does not yet fit the site.

``eps`` is a Jaccard distance: two items are neighbours when 1 - s / (2 - s) <= eps, s the
overlap (0..1) of their query-expanded k-reciprocal encodings; SpCL's 0.6 means an overlap of
more than 4/7 of the weight. Every pair that shares nothing is at distance 1, so eps must be
below 1. SpCL's 0.6 / min_samples 4 on crops are the defaults. Local query expansion makes an
item share (k2 - 1) / k2 of its encoding with its k2 - 1 nearest items, so a lone item is at
about 2 / (k2 + 1) from the cluster it borrows from (0.67 for k2 = 2, 0.29 for SpCL's 6): with
k2 >= 3 it joins that cluster as a border point unless its neighbours are split between
clusters. That matters most for tracks, of which one person leaves few: k1 and k2 count items
(tracks and loose crops), so with footage keep k2 at or below the tracks a person typically
leaves, or a lone track, dense on its own, pulls its nearest cluster to itself.

Footage adds what no image folder has, and what those tools do not use:

- must-link: the crops of one track are one person. The items clustered are tracks (their
  crops' mean feature, renormalised) and loose crops, and each item weighs its crop count in
  DBSCAN (``sample_weight``: as if every crop sat at its track's mean), so a track with at least
  ``min_samples`` crops is dense on its own. A track stays one person even when DBSCAN calls
  it noise: it becomes its own identity if it has ``min_images`` crops.
- cannot-link: two tracks seen at the same time in one camera are two people. A cluster holding
  such a pair is split, greedily and deterministically: its tracks are taken by decreasing
  cosine similarity to the cluster's mean feature, and each joins the most similar (mean
  feature) of the parts made so far that holds none of the tracks it is cannot-linked with, or
  starts a new part; the cluster's loose crops then join their most similar part. The number
  of parts is at least the largest set of mutually co-occurring tracks, rarely more. (The
  constrained-clustering packages that do this optimally are research code, not kept.)

numpy, scipy and scikit-learn only: no TensorFlow, so the step is cheap to test and to reuse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from reid.errors import UsageError
from reid.evaluation.distance import _is_positive_int, as_feature_matrix
from reid.evaluation.rerank import jaccard_within


@dataclasses.dataclass(frozen=True, eq=False)
class PseudoLabels:
    """The pseudo-identities of one clustering round, and the counts a progress line shows."""

    #: (n,) int64: each crop's pseudo-identity 0..identities-1, -1 left out. Read-only.
    labels: np.ndarray
    #: Groups of crops found after the constraints: DBSCAN's clusters (after cannot-link splits)
    #: plus the tracks DBSCAN left as noise, which stay one person each.
    clusters: int
    #: Crops left out: DBSCAN noise among loose crops, and groups of fewer than min_images crops.
    outliers: int
    #: Pseudo-identities to train on (groups of at least min_images crops).
    identities: int
    #: Clusters split because two of their tracks were seen at once.
    split: int = 0

    def summary(self) -> str:
        """One line for progress output: "41 clusters, 12 outliers, 38 pseudo-identities (...)"."""
        def count(number: int, noun: str) -> str:
            plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
            return f"{number} {noun if number == 1 else plural}"

        details = count(int(self.labels.shape[0]), "crop")
        if self.split:
            details += f", {count(self.split, 'cluster')} split by co-occurring tracks"
        return (f"{count(self.clusters, 'cluster')}, {count(self.outliers, 'outlier')}, "
                f"{count(self.identities, 'pseudo-identity')} ({details})")


def _check_inputs(
    features: object, tracks: object, cannot_link: Iterable[tuple[int, int]],
    k1: object, k2: object, eps: object, min_samples: object, min_images: object,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    for name, value in (("k1", k1), ("k2", k2), ("min_samples", min_samples),
                        ("min_images", min_images)):
        if not _is_positive_int(value):
            raise UsageError(f"{name} must be a positive integer, got {value!r}", field=name)
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(eps) < 1.0:
        raise UsageError(f"eps must be a Jaccard distance in (0, 1), got {eps!r} (every pair "
                         f"that shares no neighbour is at distance 1)", field="eps")
    feats = as_feature_matrix("features", features).astype(np.float32, copy=False)
    norms = np.linalg.norm(feats, axis=1)
    if feats.shape[0] and not (norms > 0).all():
        raise UsageError(f"features: row {int(np.flatnonzero(norms <= 0)[0])} is zero (an "
                         f"embedding has a direction)", field="features")
    feats = feats / norms[:, None]
    n = feats.shape[0]

    if tracks is None:
        track_array = np.full(n, -1, dtype=np.int64)
    else:
        raw = np.asarray(tracks)
        if raw.shape != (n,):
            raise UsageError(f"tracks: {raw.shape[0] if raw.ndim == 1 else raw.shape} entries "
                             f"for {n} features (one track number per crop, -1 for none)",
                             field="tracks")
        if n and not np.issubdtype(raw.dtype, np.integer):
            raise UsageError(f"tracks must be integers, got dtype {raw.dtype}", field="tracks")
        track_array = raw.astype(np.int64)
        if n and track_array.min() < -1:
            raise UsageError(f"tracks: {int(track_array.min())} is not a track number (use -1 "
                             f"for a crop without a track)", field="tracks")

    known = set(np.unique(track_array[track_array >= 0]).tolist())
    pairs: list[tuple[int, int]] = []
    for pair in cannot_link:
        try:
            a, b = (int(value) for value in pair)
        except (TypeError, ValueError):
            raise UsageError(f"cannot_link: {pair!r} is not a pair of track numbers",
                             field="cannot_link") from None
        for value in (a, b):
            if value not in known:
                raise UsageError(f"cannot_link: track {value} is not in tracks"
                                 + (" (no tracks were given)" if tracks is None else ""),
                                 field="cannot_link")
        if a == b:
            raise UsageError(f"cannot_link: track {a} is paired with itself",
                             field="cannot_link")
        pairs.append((a, b))
    return feats, track_array, pairs


def _split_cluster(
    items: np.ndarray, item_track: np.ndarray, item_sums: np.ndarray, unit: np.ndarray,
    conflicts: dict[int, set[int]],
) -> list[list[int]]:
    """Parts of one cluster's items with no cannot-linked tracks in one part (module docstring)."""
    tracked = [int(i) for i in items if item_track[i] >= 0]
    loose = [int(i) for i in items if item_track[i] < 0]
    centre = item_sums[items].sum(axis=0)
    closeness = unit[tracked] @ centre
    # Decreasing similarity to the centre; ties by item index (a stable sort of the negation).
    tracked = [tracked[i] for i in np.argsort(-closeness, kind="stable")]

    parts: list[list[int]] = []
    part_sums: list[np.ndarray] = []
    part_tracks: list[set[int]] = []
    for item in tracked:
        track = int(item_track[item])
        allowed = [p for p in range(len(parts)) if not conflicts.get(track, set()) & part_tracks[p]]
        if allowed:
            similarity = [float(unit[item] @ part_sums[p]) / float(np.linalg.norm(part_sums[p]))
                          for p in allowed]
            best = allowed[int(np.argmax(similarity))]
            parts[best].append(item)
            part_sums[best] = part_sums[best] + item_sums[item]
            part_tracks[best].add(track)
        else:
            parts.append([item])
            part_sums.append(item_sums[item].copy())
            part_tracks.append({track})
    if len(parts) > 1 and loose:
        means = np.stack(part_sums)
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        best_parts = np.argmax(unit[loose] @ means.T, axis=1)
        for item, best in zip(loose, best_parts):
            parts[int(best)].append(item)
    elif loose:
        parts[0].extend(loose)
    return parts


def camera_centred(features: np.ndarray, cameras: np.ndarray) -> np.ndarray:
    """Unit ``features`` with each camera's mean row taken out, renormalised.

    Label-free camera normalisation: on CUHK03's camera pair 2 seen by a model trained on the
    other pairs, 85 % of crops had another person of their own camera as nearest neighbour; after
    centring, 69 %, and cross-camera rank-1 went from 0.063 to 0.143 (docs/BENCHMARKS.md). Crops
    of unknown camera (0) and a lone camera are left as they are.
    """
    feats = np.asarray(features, dtype=np.float64)
    cams = np.asarray(cameras)
    if cams.shape != (feats.shape[0],):
        raise UsageError(f"cameras: expected {feats.shape[0]} camera ids, got shape {cams.shape}",
                         field="cameras")
    known = np.unique(cams[cams != 0])
    if known.shape[0] < 2:
        return feats
    centred = feats.copy()
    for camera in known:
        rows = cams == camera
        centred[rows] -= feats[rows].mean(axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.where(norms > 1e-12, centred / np.maximum(norms, 1e-12), feats)


def pseudo_identities(
    features: np.ndarray,
    tracks: np.ndarray | None = None,
    cannot_link: Iterable[tuple[int, int]] = (),
    *,
    k1: int = 20,
    k2: int = 6,
    eps: float = 0.6,
    min_samples: int = 4,
    min_images: int = 2,
    cameras: np.ndarray | None = None,
) -> PseudoLabels:
    """Cluster a new site's embedded crops into pseudo-identities (module docstring: how, why).

    ``features`` (n, d): the crops embedded by the current model (rows are renormalised).
    ``tracks`` (n,) int: each crop's track number, -1 for a crop without one (None: all loose).
    ``cannot_link``: pairs of track numbers seen at the same time in one camera.
    ``k1``, ``k2``: the Jaccard distance's neighbourhood sizes; ``eps``, ``min_samples``:
    DBSCAN's, in Jaccard distance and crops; identities of fewer than ``min_images`` crops are
    left out. Deterministic: the same input gives the same labels, numbered by first crop.
    ``cameras`` (n,) int: each crop's camera (0: unknown). With two cameras or more, each
    camera's mean feature is taken out before clustering (:func:`camera_centred`): a model new
    to a site ranks a camera's own crops first (light and background), and clusters that
    follow cameras teach "same camera", never "same person across cameras".
    """
    from sklearn.cluster import DBSCAN

    feats, track_array, pairs = _check_inputs(
        features, tracks, cannot_link, k1, k2, eps, min_samples, min_images
    )
    n = feats.shape[0]
    if n == 0:
        return _result(np.empty(0, dtype=np.int64), 0, 0, 0)
    if cameras is not None:
        feats = camera_centred(feats, cameras)

    # Items: the tracks (by track number), then the loose crops (by position).
    track_numbers, track_item = np.unique(track_array[track_array >= 0], return_inverse=True)
    loose = np.flatnonzero(track_array < 0)
    item_of_crop = np.empty(n, dtype=np.int64)
    item_of_crop[track_array >= 0] = track_item
    item_of_crop[loose] = track_numbers.shape[0] + np.arange(loose.shape[0])
    num_items = track_numbers.shape[0] + loose.shape[0]
    item_track = np.concatenate([track_numbers, np.full(loose.shape[0], -1, dtype=np.int64)])
    weights = np.bincount(item_of_crop, minlength=num_items)
    item_sums = np.zeros((num_items, feats.shape[1]), dtype=np.float64)
    np.add.at(item_sums, item_of_crop, feats)
    # A track whose crops cancel out (mean near zero) has no direction: its first crop stands in.
    degenerate = np.linalg.norm(item_sums, axis=1) < 1e-6 * weights
    if degenerate.any():
        first_crop = np.full(num_items, n, dtype=np.int64)
        np.minimum.at(first_crop, item_of_crop, np.arange(n))
        item_sums[degenerate] = feats[first_crop[degenerate]]
    item_unit = item_sums / np.linalg.norm(item_sums, axis=1, keepdims=True)

    distance = jaccard_within(item_unit.astype(np.float32), k1=k1, k2=k2)
    item_labels = DBSCAN(eps=float(eps), min_samples=int(min_samples),
                         metric="precomputed").fit(distance, sample_weight=weights).labels_
    item_labels = item_labels.astype(np.int64)

    # Must-link: a track DBSCAN left as noise is still one person.
    lone = np.flatnonzero((item_labels < 0) & (item_track >= 0))
    first_new = int(item_labels.max()) + 1
    item_labels[lone] = first_new + np.arange(lone.shape[0])
    groups = int(item_labels.max()) + 1

    # Cannot-link: split the clusters that hold two tracks seen at once.
    split = 0
    if pairs:
        conflicts: dict[int, set[int]] = {}
        for a, b in pairs:
            conflicts.setdefault(a, set()).add(b)
            conflicts.setdefault(b, set()).add(a)
        track_label = dict(zip(item_track[item_track >= 0].tolist(),
                               item_labels[item_track >= 0].tolist()))
        clashing = sorted({track_label[a] for a, b in pairs if track_label[a] == track_label[b]})
        for label in clashing:
            parts = _split_cluster(np.flatnonzero(item_labels == label), item_track, item_sums,
                                   item_unit, conflicts)
            for part in parts[1:]:
                item_labels[part] = groups
                groups += 1
            split += len(parts) > 1

    # Crops take their item's group; groups under min_images crops are left out; the rest are
    # numbered by their first crop.
    crop_groups = item_labels[item_of_crop]
    sizes = np.bincount(crop_groups[crop_groups >= 0], minlength=groups)
    crop_groups[(crop_groups >= 0) & (sizes[np.maximum(crop_groups, 0)] < int(min_images))] = -1
    kept = crop_groups >= 0
    labels = np.full(n, -1, dtype=np.int64)
    if kept.any():
        _, first = np.unique(crop_groups[kept], return_index=True)
        order = np.argsort(np.flatnonzero(kept)[first], kind="stable")
        rank = np.empty(order.shape[0], dtype=np.int64)
        rank[order] = np.arange(order.shape[0])
        _, inverse = np.unique(crop_groups[kept], return_inverse=True)
        labels[kept] = rank[inverse]
    identities = int(labels.max()) + 1 if kept.any() else 0
    return _result(labels, groups, int((labels < 0).sum()), identities, split)


def _result(labels: np.ndarray, clusters: int, outliers: int, identities: int,
            split: int = 0) -> PseudoLabels:
    labels.flags.writeable = False
    return PseudoLabels(labels=labels, clusters=clusters, outliers=outliers,
                        identities=identities, split=split)
