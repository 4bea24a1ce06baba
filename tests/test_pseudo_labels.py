"""The clustering step of adaptation: one-set Jaccard distance and pseudo-identities.

`jaccard_within` is checked against `spcl_jaccard_dense`, SpCL's / Cluster Contrast's
compute_jaccard_distance written from its definition with Python sets and dense arrays;
`pseudo_identities` on hand-made points whose clusters, outliers, tracks and co-occurrences are
known, compared as partitions (which crops go together), not as label numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from reid.engine.pseudo_labels import PseudoLabels, pseudo_identities
from reid.evaluation import rerank as rerank_module
from reid.evaluation.rerank import jaccard_within


def spcl_jaccard_dense(features, k1, k2):
    """compute_jaccard_distance (SpCL, Cluster Contrast) from its definition, dense.

    N(p, k): the k nearest rows counting p itself (their search returns k1 columns), ties by
    index. R(p, k) = {g in N(p, k) : p in N(g, k)}. R*(p) = R(p, k1) united with every
    R(q, round(k1/2) + 1), q in R(p, k1), with more than 2/3 of its members in R(p, k1).
    V_p[g] = exp(-|x_p - x_g|^2) / sum over R*(p). V_p <- mean of V_q over the k2 nearest q.
    Distance 1 - s / (2 - s), s = sum_g min(V_p[g], V_q[g]), clipped at 0.
    """
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    ordered = [sorted(range(n), key=lambda j, i=i: (dist[i, j], j)) for i in range(n)]

    def reciprocal(p, k):
        return {g for g in ordered[p][:k] if p in ordered[g][:k]}

    half = int(np.around(k1 / 2)) + 1
    encoding = np.zeros((n, n))
    for p in range(n):
        base = reciprocal(p, k1)
        expanded = set(base)
        for q in base:
            candidate = reciprocal(q, half)
            if len(candidate & base) > 2 / 3 * len(candidate):
                expanded |= candidate
        members = sorted(expanded)
        weights = np.exp(-dist[p, members])
        encoding[p, members] = weights / weights.sum()
    if k2 > 1:
        encoding = np.stack([encoding[ordered[p][:k2]].mean(axis=0) for p in range(n)])
    shared = np.minimum(encoding[:, None, :], encoding[None, :, :]).sum(-1)
    return np.maximum(1.0 - shared / (2.0 - shared), 0.0)


def clustered_unit(rng, n, dim, num_ids, noise=0.6):
    centres = rng.normal(size=(num_ids, dim))
    x = centres[rng.integers(0, num_ids, size=n)] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def check_against_dense(got, features, k1, k2):
    expected = spcl_jaccard_dense(features, k1, k2)
    rows = np.repeat(np.arange(got.shape[0]), np.diff(got.indptr))
    dense = np.ones(got.shape)  # not stored: distance 1
    dense[rows, got.indices] = got.data
    off = ~np.eye(len(features), dtype=bool)
    np.testing.assert_allclose(dense[off], expected[off], atol=1e-5, rtol=0)
    # Stored exactly where the distance is below 1, plus the diagonal (as explicit zeros).
    stored = np.zeros_like(off)
    stored[rows, got.indices] = True
    assert (dense[~off] == 0).all()
    np.testing.assert_array_equal(stored[off], expected[off] < 1.0 - 1e-6)
    assert stored[~off].all()


@pytest.mark.parametrize(
    "n,dim,k1,k2",
    [
        (60, 16, 20, 6),  # the defaults
        (50, 8, 5, 3),  # odd k1: round(2.5) = 2, half lists of 3
        (40, 16, 8, 1),  # k2 = 1: no local query expansion
        (12, 6, 20, 6),  # k1 > n: every list is the whole set
    ],
)
def test_jaccard_within_matches_dense_definition(n, dim, k1, k2):
    rng = np.random.default_rng(n * 100 + k1)
    features = clustered_unit(rng, n, dim, num_ids=6)
    check_against_dense(jaccard_within(features, k1=k1, k2=k2), features, k1, k2)


def test_jaccard_within_breaks_exact_ties_by_index():
    """Quarter-integer points: exactly representable, heavily tied distances and duplicate rows."""
    rng = np.random.default_rng(5)
    features = (rng.integers(0, 3, size=(45, 3)) * 0.25).astype(np.float32)
    assert len(np.unique(features, axis=0)) < len(features)  # duplicates present
    for k1, k2 in ((6, 3), (9, 2)):
        check_against_dense(jaccard_within(features, k1=k1, k2=k2), features, k1, k2)


def test_jaccard_within_properties():
    rng = np.random.default_rng(1)
    features = clustered_unit(rng, 300, 16, num_ids=20)
    got = jaccard_within(features, k1=10, k2=4)
    assert isinstance(got, scipy.sparse.csr_matrix) and got.dtype == np.float32
    assert got.shape == (300, 300)
    assert (got != got.T).nnz == 0  # exactly symmetric
    assert ((got.data >= 0) & (got.data < 1)).all()
    for i in range(0, 300, 37):  # the diagonal is stored, as 0
        row = got.indices[got.indptr[i] : got.indptr[i + 1]]
        assert i in row and got[i, i] == 0
        assert (np.diff(row) > 0).all()  # sorted columns
    assert got.nnz < 0.5 * 300 * 300  # sparse: most pairs share nothing


def test_jaccard_within_blocked_path_agrees(monkeypatch):
    rng = np.random.default_rng(2)
    features = clustered_unit(rng, 80, 8, num_ids=6)
    whole = jaccard_within(features, k1=10, k2=3)
    monkeypatch.setattr(rerank_module, "_JACCARD_PAIRS", 50)
    monkeypatch.setattr(rerank_module, "_EXPANSION_ELEMENTS", 2000)
    blocked = jaccard_within(features, k1=10, k2=3)
    np.testing.assert_array_equal(blocked.indptr, whole.indptr)
    np.testing.assert_array_equal(blocked.indices, whole.indices)
    np.testing.assert_allclose(blocked.data, whole.data, atol=1e-6)


def test_jaccard_within_edge_sizes_and_bad_input():
    assert jaccard_within(np.zeros((0, 4))).shape == (0, 0)
    one = jaccard_within(np.ones((1, 4)))
    assert one.shape == (1, 1) and one.nnz == 1 and one[0, 0] == 0
    with pytest.raises(ValueError, match="^k1 must be a positive integer"):
        jaccard_within(np.ones((3, 4)), k1=0)
    with pytest.raises(ValueError, match="^features must be a 2-D"):
        jaccard_within(np.ones(4))


# --- pseudo-identities -----------------------------------------------------------------------


def partition(labels):
    """The groups of positions sharing a label (-1 excluded), independent of numbering."""
    labels = np.asarray(labels)
    return {
        frozenset(np.flatnonzero(labels == value).tolist())
        for value in set(labels[labels >= 0].tolist())
    }


def blobs(rng, directions, sizes, dim=16, noise=0.05):
    """Unit points around given directions: (features, ground-truth group per point)."""
    parts, truth = [], []
    for group, (direction, size) in enumerate(zip(directions, sizes)):
        parts.append(direction + noise * rng.normal(size=(size, dim)))
        truth += [group] * size
    x = np.concatenate(parts)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.array(truth)


def test_clusters_and_outliers_are_recovered():
    """Four clusters and six outlier crops: crops of someone seen too briefly to be dense (a
    pair, a triple: fewer than min_samples) and a lone crop between two clusters. (With k2 = 2
    a lone crop shares half its encoding with its nearest neighbour's: Jaccard distance 2/3 >
    eps from that cluster. With k2 = 3 it would be 1/2, and it would join as a border point.)"""
    rng = np.random.default_rng(0)
    eye = np.eye(16)
    between = (eye[0] + eye[1]) / np.sqrt(2)
    features, truth = blobs(rng, [eye[0], eye[1], eye[2], eye[3], eye[8], eye[10], between],
                            [8, 10, 6, 9, 2, 3, 1])
    truth[truth >= 4] = -1
    order = rng.permutation(len(features))  # no help from the order
    features, truth = features[order], truth[order]

    result = pseudo_identities(features, k1=10, k2=2, eps=0.6, min_samples=4)
    assert partition(result.labels) == partition(truth)
    assert (result.clusters, result.outliers, result.identities, result.split) == (4, 6, 4, 0)
    assert result.labels.dtype == np.int64 and not result.labels.flags.writeable
    # Numbered by first crop: the first crop of each identity in increasing order.
    firsts = [int(np.flatnonzero(result.labels == k)[0]) for k in range(result.identities)]
    assert firsts == sorted(firsts)
    assert result.summary() == "4 clusters, 6 outliers, 4 pseudo-identities (39 crops)"


def test_min_images_leaves_small_clusters_out():
    rng = np.random.default_rng(1)
    eye = np.eye(16)
    features, truth = blobs(rng, [eye[0], eye[1]], [9, 5])
    loose = pseudo_identities(features, k1=10, k2=2, min_samples=4, min_images=2)
    assert partition(loose.labels) == partition(truth)
    strict = pseudo_identities(features, k1=10, k2=2, min_samples=4, min_images=6)
    assert partition(strict.labels) == {frozenset(range(9))}
    assert (strict.clusters, strict.outliers, strict.identities) == (2, 5, 1)


def test_must_link_keeps_a_track_together():
    """Track 7's crops fall in two places (say, two poses); without its track DBSCAN splits them,
    with it they are one identity. A far track too small to be dense on its own stays one
    person; a one-crop track is under min_images. (k2 = 1: track 7's mean is far from every
    other item, and with query expansion it would borrow its nearest item's encoding.)"""
    rng = np.random.default_rng(2)
    eye = np.eye(16)
    features, _truth = blobs(rng, [eye[0], eye[1], eye[2], eye[3]], [6, 6, 5, 5])
    tracks = np.full(len(features), -1)
    tracks[:12] = 7  # blobs 0 and 1: one track
    tracks[12:15] = 3  # three crops of blob 2: a short track, the rest loose
    lone = (eye[10] + eye[11]) / np.sqrt(2)
    far_track = blobs(rng, [lone], [3])[0]
    single = (eye[12] - eye[13]) / np.sqrt(2)
    features = np.concatenate([features, far_track, single[None].astype(np.float32)])
    tracks = np.concatenate([tracks, [9, 9, 9], [4]])

    kwargs = {"k1": 6, "k2": 1, "eps": 0.6, "min_samples": 4}
    without = pseudo_identities(features, **kwargs)
    assert frozenset(range(6)) in partition(without.labels)
    assert frozenset(range(6, 12)) in partition(without.labels)

    result = pseudo_identities(features, tracks, **kwargs)
    assert partition(result.labels) == {
        frozenset(range(12)),  # track 7, both places
        frozenset(range(12, 17)),  # track 3 with the loose crops near it
        frozenset(range(22, 25)),  # track 9, noise to DBSCAN (3 crops < min_samples)
        frozenset(range(17, 22)),  # blob 3, loose crops
    }
    assert result.labels[25] == -1  # track 4: one crop, under min_images
    assert (result.clusters, result.outliers, result.identities) == (5, 1, 4)


def test_tracks_weigh_their_crops():
    """Two tracks of one person (two cameras, say) and nothing near them: two items, fewer than
    min_samples, yet one identity, because each track counts its 5 crops in DBSCAN's density.
    A one-crop track beside them is a border item of their cluster, and joins it."""
    rng = np.random.default_rng(6)
    eye = np.eye(16)
    features, _ = blobs(rng, [eye[0], eye[0], eye[0], eye[4]], [5, 5, 1, 5], noise=0.03)
    tracks = np.array([0] * 5 + [1] * 5 + [2] + [3] * 5)
    result = pseudo_identities(features, tracks, k1=4, k2=1, min_samples=4)
    assert partition(result.labels) == {frozenset(range(11)), frozenset(range(11, 16))}
    assert (result.clusters, result.outliers, result.identities) == (2, 0, 2)


def test_cannot_link_splits_co_occurring_look_alikes():
    """Tracks 0 and 1 look alike but were seen at once: two people. Track 2 (not seen with
    either) is closest to track 0 and joins it; the loose crops near track 1 join track 1."""
    rng = np.random.default_rng(3)
    eye = np.eye(16)
    a = eye[0]
    b = (eye[0] + 0.25 * eye[1]) / np.linalg.norm(eye[0] + 0.25 * eye[1])
    features, _ = blobs(rng, [a, b, a, b, eye[5]], [5, 5, 4, 3, 6], noise=0.03)
    tracks = np.array([0] * 5 + [1] * 5 + [2] * 4 + [-1] * 3 + [-1] * 6)
    kwargs = {"k1": 10, "k2": 2, "eps": 0.6, "min_samples": 4}

    together = pseudo_identities(features, tracks, **kwargs)
    assert frozenset(range(17)) in partition(together.labels)  # one cluster without the rule

    result = pseudo_identities(features, tracks, [(1, 0)], **kwargs)
    assert partition(result.labels) == {
        frozenset([*range(5), *range(10, 14)]),
        frozenset([*range(5, 10), *range(14, 17)]),
        frozenset(range(17, 23)),
    }
    assert (result.clusters, result.split, result.identities) == (3, 1, 3)
    assert result.summary() == ("3 clusters, 0 outliers, 3 pseudo-identities (23 crops, 1 cluster "
                                "split by co-occurring tracks)")
    # Deterministic, and the order of the pair does not matter.
    again = pseudo_identities(features, tracks, {(0, 1)}, **kwargs)
    np.testing.assert_array_equal(again.labels, result.labels)


def test_cannot_link_three_at_once():
    """Three look-alike tracks all seen together: three people, however DBSCAN joined them."""
    rng = np.random.default_rng(4)
    features, _ = blobs(rng, [np.eye(16)[0]] * 3, [4, 4, 4], noise=0.03)
    tracks = np.repeat([10, 11, 12], 4)
    result = pseudo_identities(features, tracks, [(10, 11), (10, 12), (11, 12)], k1=6, k2=2)
    assert partition(result.labels) == {frozenset(range(4)), frozenset(range(4, 8)),
                                        frozenset(range(8, 12))}
    assert result.split == 1


def test_empty_input():
    result = pseudo_identities(np.zeros((0, 8)))
    assert isinstance(result, PseudoLabels) and result.labels.shape == (0,)
    assert (result.clusters, result.outliers, result.identities) == (0, 0, 0)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"tracks": np.zeros(5, int)}, r"^tracks: 5 entries for 6 features"),
        ({"tracks": np.zeros(6)}, r"^tracks must be integers"),
        ({"tracks": np.array([0, 0, -2, 1, 1, 1])}, r"^tracks: -2 is not a track number"),
        ({"tracks": np.array([0, 0, 1, 1, -1, -1]), "cannot_link": [(0, 5)]},
         r"^cannot_link: track 5 is not in tracks$"),
        ({"cannot_link": [(0, 1)]}, r"^cannot_link: track 0 is not in tracks \(no tracks"),
        ({"tracks": np.array([0, 0, 1, 1, -1, -1]), "cannot_link": [(1, 1)]},
         r"^cannot_link: track 1 is paired with itself"),
        ({"tracks": np.array([0, 0, 1, 1, -1, -1]), "cannot_link": [(1,)]},
         r"^cannot_link: \(1,\) is not a pair"),
        ({"eps": 1.0}, r"^eps must be a Jaccard distance in \(0, 1\)"),
        ({"min_samples": 0}, r"^min_samples must be a positive integer"),
        ({"min_images": 2.5}, r"^min_images must be a positive integer"),
        ({"k1": -3}, r"^k1 must be a positive integer"),
    ],
)
def test_bad_input_is_a_one_line_value_error(kwargs, pattern):
    features = np.eye(6, 4, dtype=np.float32) + 0.1
    with pytest.raises(ValueError, match=pattern) as caught:
        pseudo_identities(features, **kwargs)
    assert "\n" not in str(caught.value)


def test_zero_feature_row_is_named():
    features = np.ones((3, 4), dtype=np.float32)
    features[1] = 0
    with pytest.raises(ValueError, match=r"^features: row 1 is zero"):
        pseudo_identities(features)


def test_camera_centring_joins_a_person_across_cameras():
    """Four people seen by two cameras whose light adds a strong offset: on raw features the
    clusters follow the cameras (each holds one camera's four people); with the cameras known,
    each camera's mean comes out and the clusters are the people, across both cameras."""
    from reid.engine.pseudo_labels import camera_centred

    rng = np.random.default_rng(3)
    people = np.eye(16)[:4]  # four people, and two cameras' light in directions of their own
    offsets = 2.0 * np.eye(16)[4:6]
    rows, pids, cams = [], [], []
    for camera in (1, 2):
        for pid in range(4):
            for _ in range(5):
                rows.append(people[pid] + offsets[camera - 1] + 0.02 * rng.normal(size=16))
                pids.append(pid)
                cams.append(camera)
    feats = np.array(rows) / np.linalg.norm(rows, axis=1, keepdims=True)
    pids, cams = np.array(pids), np.array(cams)
    kwargs = dict(k1=12, k2=3, eps=0.5, min_samples=3)
    raw = pseudo_identities(feats, **kwargs).labels
    assert all(len(set(cams[raw == label])) == 1 for label in set(raw) if label >= 0)
    centred = pseudo_identities(feats, cameras=cams, **kwargs).labels
    assert (centred >= 0).all()
    assert sorted(len(set(pids[centred == label])) for label in set(centred)) == [1, 1, 1, 1]
    assert all(set(cams[centred == label]) == {1, 2} for label in set(centred))
    # Each camera's rows are centred on their own mean; unknown and lone cameras are untouched.
    centre = camera_centred(feats, cams)
    assert np.allclose(np.linalg.norm(centre, axis=1), 1.0)
    assert np.allclose(camera_centred(feats, np.zeros(len(feats), int)), feats)
    assert np.allclose(camera_centred(feats, np.ones(len(feats), int)), feats)
    with pytest.raises(ValueError, match="cameras"):
        camera_centred(feats, cams[:3])
