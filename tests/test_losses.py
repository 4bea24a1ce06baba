"""Losses against brute-force numpy loops over every pair/triplet, hand-worked cases, and the
degenerate batches that must stay finite (one identity, identical embeddings, two samples)."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from reid.config import ConfigError, LossConfig
from reid.choices import MINERS
from reid.losses import (CenterLoss, ReidLoss, center_loss, contrastive_loss,
                         cross_entropy_label_smoothing, pairwise_distances, triplet_loss)

SEEDS = (0, 1, 2)
METRICS = ("euclidean", "cosine")


# ---------------------------------------------------------------- numpy references (float64)

def np_distances(x, metric):
    x = np.asarray(x, np.float64)
    n = len(x)
    d = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        if i == j:
            continue
        if metric == "euclidean":
            d[i, j] = np.sqrt(np.sum((x[i] - x[j]) ** 2))
        elif metric == "sqeuclidean":
            d[i, j] = np.sum((x[i] - x[j]) ** 2)
        else:
            d[i, j] = 1.0 - x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
    return d


def np_triplet(labels, x, margin, miner, metric):
    d = np_distances(x, metric)
    n = len(labels)
    pos = {a: [p for p in range(n) if p != a and labels[p] == labels[a]] for a in range(n)}
    neg = {a: [k for k in range(n) if labels[k] != labels[a]] for a in range(n)}
    losses = []
    if miner in ("batch_hard", "soft_margin"):
        for a in range(n):
            if not pos[a] or not neg[a]:
                continue
            gap = max(d[a, p] for p in pos[a]) - min(d[a, k] for k in neg[a])
            losses.append(np.log1p(np.exp(gap)) if miner == "soft_margin"
                          else max(0.0, gap + margin))
    elif miner == "batch_all":
        for a in range(n):
            for p in pos[a]:
                for k in neg[a]:
                    value = d[a, p] - d[a, k] + margin
                    if value > 0:
                        losses.append(value)
    else:  # semi_hard
        for a in range(n):
            if not neg[a]:
                continue
            for p in pos[a]:
                farther = [d[a, k] for k in neg[a] if d[a, k] > d[a, p]]
                d_an = min(farther) if farther else max(d[a, k] for k in neg[a])
                losses.append(max(0.0, d[a, p] - d_an + margin))
    return float(np.mean(losses)) if losses else 0.0


def np_contrastive(labels, x, margin, metric):
    d = np_distances(x, metric)
    values = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            values.append(d[i, j] ** 2 if labels[i] == labels[j]
                          else max(0.0, margin - d[i, j]) ** 2)
    return float(np.mean(values)) if values else 0.0


def np_ce_smooth(labels, logits, eps):
    logits = np.asarray(logits, np.float64)
    n, c = logits.shape
    total = 0.0
    for i in range(n):
        z = logits[i] - logits[i].max()
        log_p = z - np.log(np.sum(np.exp(z)))
        for k in range(c):
            q = (1 - eps) * (k == labels[i]) + eps / c
            total -= q * log_p[k]
    return total / n


def pk_labels(rng, p=3, k=3):
    return rng.permutation(np.repeat(np.arange(p) * 7 + 2, k)).astype(np.int32)


def random_labels(rng, n=10, classes=4):
    return rng.integers(0, classes, size=n).astype(np.int32)


def label_sets(seed):
    rng = np.random.default_rng(seed)
    return [("pk", pk_labels(rng)), ("random", random_labels(rng))]


def embeddings(seed, n, dim=5):
    return np.random.default_rng(100 + seed).normal(size=(n, dim)).astype(np.float32)


# ---------------------------------------------------------------- distances

@pytest.mark.parametrize("metric", ("euclidean", "sqeuclidean", "cosine"))
@pytest.mark.parametrize("seed", SEEDS)
def test_pairwise_distances_match_brute_force(metric, seed):
    x = embeddings(seed, 7)
    d = pairwise_distances(tf.constant(x), metric).numpy()
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, np_distances(x, metric), rtol=1e-5, atol=1e-5)
    assert np.all(np.diag(d) == 0.0)


@pytest.mark.parametrize("metric", ("euclidean", "sqeuclidean", "cosine"))
def test_pairwise_distance_gradient_finite_at_zero_distance(metric):
    x = tf.Variable(np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(pairwise_distances(x, metric))
    grad = tape.gradient(total, x).numpy()
    assert np.all(np.isfinite(grad))


def test_unknown_metric_and_miner_are_rejected():
    x, y = tf.zeros([4, 3]), tf.constant([0, 0, 1, 1])
    with pytest.raises(ValueError, match="manhattan"):
        pairwise_distances(x, "manhattan")
    with pytest.raises(ValueError, match="hardest"):
        triplet_loss(y, x, miner="hardest")
    with pytest.raises(ValueError, match="-1"):
        triplet_loss(y, x, margin=-1.0)


# ---------------------------------------------------------------- triplet

@pytest.mark.parametrize("miner", MINERS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", SEEDS)
def test_triplet_matches_brute_force(miner, metric, seed):
    for kind, labels in label_sets(seed):
        x = embeddings(seed, len(labels))
        # Cosine distances live in [0, 2]; a smaller margin keeps some triplets active.
        margin = 0.3 if metric == "cosine" else 1.0
        got = triplet_loss(tf.constant(labels), tf.constant(x), margin, miner, metric)
        want = np_triplet(labels, x, margin, miner, metric)
        assert got.dtype == tf.float32
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5,
                                   err_msg=f"{kind} labels {labels}")


@pytest.mark.parametrize("seed", SEEDS)
def test_semi_hard_with_squared_distances_matches_brute_force(seed):
    """Addons' default ("L_2") semi-hard loss runs on squared Euclidean distances."""
    for _, labels in label_sets(seed):
        x = embeddings(seed, len(labels))
        got = triplet_loss(labels, x, 1.0, "semi_hard", "sqeuclidean").numpy()
        np.testing.assert_allclose(got, np_triplet(labels, x, 1.0, "semi_hard", "sqeuclidean"),
                                   rtol=1e-4, atol=1e-5)


def test_triplet_hand_worked_1d():
    # Points on a line: A=0, B=1 (identity 0); C=1.5, D=4 (identity 1); margin 1.
    # Distances AB=1 AC=1.5 AD=4 BC=0.5 BD=3 CD=2.5.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [1.5, 0.0], [4.0, 0.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    # batch hard per anchor: A 1-1.5+1, B 1-0.5+1, C 2.5-0.5+1, D 2.5-3+1
    assert triplet_loss(y, x, 1.0, "batch_hard").numpy() == pytest.approx(
        (0.5 + 1.5 + 3.0 + 0.5) / 4, abs=1e-5)
    # semi-hard per (a, p): (A,B) neg C 1.5 > 1 -> 0.5; (B,A) neg D 3 -> 0;
    # (C,D) no negative beyond 2.5 -> farthest A 1.5 -> 2; (D,C) neg B 3 -> 0.5
    assert triplet_loss(y, x, 1.0, "semi_hard").numpy() == pytest.approx(
        (0.5 + 0.0 + 2.0 + 0.5) / 4, abs=1e-5)
    # batch all: active triplets ABC .5, BAC 1.5, CDA 2, CDB 3, DCB .5 (three are inactive)
    assert triplet_loss(y, x, 1.0, "batch_all").numpy() == pytest.approx(7.5 / 5, abs=1e-5)
    # Ties: the semi-hard negative must be strictly farther than the positive.
    # A=0, B=1 (identity 0); C=1, D=3 (identity 1): AB=AC=1, AD=3, BC=0, BD=CD=2.
    tie = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 0.0]], np.float32)
    # (A,B) D 3 -> 0 (not C at 1); (B,A) D 2 -> 0; (C,D) none beyond 2 -> farthest A 1 -> 2;
    # (D,C) A 3 -> 0 (not B at 2)
    assert triplet_loss(y, tie, 1.0, "semi_hard").numpy() == pytest.approx(2.0 / 4, abs=1e-5)
    # soft margin: softplus of the batch-hard gaps -0.5, 0.5, 2, -0.5
    want = np.mean(np.log1p(np.exp([-0.5, 0.5, 2.0, -0.5])))
    assert triplet_loss(y, x, 1.0, "soft_margin").numpy() == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("miner", MINERS)
def test_triplet_inside_tf_function_with_unknown_batch_size(miner):
    fn = tf.function(lambda y, x: triplet_loss(y, x, 0.3, miner, "euclidean"),
                     input_signature=[tf.TensorSpec([None], tf.int32),
                                      tf.TensorSpec([None, 5], tf.float32)])
    for seed in SEEDS:
        labels, x = label_sets(seed)[0][1], embeddings(seed, 9)
        np.testing.assert_allclose(fn(labels, x).numpy(),
                                   np_triplet(labels, x, 0.3, miner, "euclidean"),
                                   rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- degenerate batches

def _degenerate_batches():
    rng = np.random.default_rng(5)
    pk = np.array([0, 0, 1, 1, 2, 2], np.int32)
    return {
        "one_identity": (np.zeros(6, np.int32), rng.normal(size=(6, 4))),
        "identical_embeddings": (pk, np.tile(rng.normal(size=(1, 4)), (6, 1))),
        "all_zero_embeddings": (pk, np.zeros((6, 4))),
        "pair_same_id": (np.array([3, 3], np.int32), rng.normal(size=(2, 4))),
        "pair_two_ids": (np.array([3, 4], np.int32), rng.normal(size=(2, 4))),
        "pair_identical": (np.array([3, 3], np.int32), np.ones((2, 4))),
        "all_singletons": (np.arange(5, dtype=np.int32), rng.normal(size=(5, 4))),
        "single_sample": (np.array([1], np.int32), rng.normal(size=(1, 4))),
    }


def _value_and_grad(fn, labels, x):
    var = tf.Variable(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        loss = fn(tf.constant(labels), var)
    return loss.numpy(), tape.gradient(loss, var).numpy()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("miner", MINERS)
def test_triplet_degenerate_batches_finite(miner, metric):
    for name, (labels, x) in _degenerate_batches().items():
        value, grad = _value_and_grad(
            lambda y, e: triplet_loss(y, e, 0.3, miner, metric), labels, x)
        assert np.isfinite(value), name
        assert np.all(np.isfinite(grad)), name
        has_triplet = name in ("identical_embeddings", "all_zero_embeddings")
        if not has_triplet:  # no anchor with both a positive and a negative: defined as 0
            assert value == 0.0, name
            assert np.all(grad == 0.0), name
        elif miner == "soft_margin":  # d_ap = d_an: softplus(0)
            assert value == pytest.approx(np.log(2.0), abs=1e-5), name
        else:  # d_ap = d_an, every triplet is exactly at the margin
            assert value == pytest.approx(0.3, abs=1e-5), name


@pytest.mark.parametrize("metric", METRICS)
def test_contrastive_degenerate_batches_finite(metric):
    for name, (labels, x) in _degenerate_batches().items():
        value, grad = _value_and_grad(
            lambda y, e: contrastive_loss(y, e, 0.5, metric), labels, x)
        assert np.isfinite(value) and np.all(np.isfinite(grad)), name
        if metric == "euclidean" or np.any(x):  # cosine is undefined for zero vectors
            np.testing.assert_allclose(value, np_contrastive(labels, x, 0.5, metric),
                                       atol=1e-5, err_msg=name)
    assert contrastive_loss([1], np.ones((1, 3), np.float32)).numpy() == 0.0


def test_center_and_combined_degenerate_batches_finite():
    cfg = LossConfig(center_weight=0.5, contrastive_weight=1.0, triplet_miner="semi_hard")
    for name, (labels, x) in _degenerate_batches().items():
        loss = ReidLoss(cfg, num_classes=8, feature_dim=4)
        logits_w = tf.constant(np.random.default_rng(0).normal(size=(4, 8)), tf.float32)
        var = tf.Variable(np.asarray(x, np.float32))
        with tf.GradientTape() as tape:
            total, terms = loss(tf.constant(labels), var, tf.matmul(var, logits_w))
        grad = tape.gradient(total, var).numpy()
        assert all(np.isfinite(v.numpy()) for v in terms.values()), name
        assert np.all(np.isfinite(grad)), name
        loss.update_centers(labels, var)
        assert np.all(np.isfinite(loss.center.centers.numpy())), name


# ---------------------------------------------------------------- contrastive

@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", SEEDS)
def test_contrastive_matches_brute_force(metric, seed):
    for _, labels in label_sets(seed):
        x = embeddings(seed, len(labels)) * (0.3 if metric == "euclidean" else 1.0)
        margin = 1.5 if metric == "euclidean" else 0.8  # some negatives inside the margin
        got = contrastive_loss(labels, x, margin, metric).numpy()
        np.testing.assert_allclose(got, np_contrastive(labels, x, margin, metric),
                                   rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("eps", (0.0, 0.1, 0.5))
@pytest.mark.parametrize("seed", SEEDS)
def test_label_smoothing_cross_entropy_matches_numpy(eps, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(6, 11)) * 3).astype(np.float32)
    labels = rng.integers(0, 11, size=6).astype(np.int32)
    got = cross_entropy_label_smoothing(labels, logits, eps)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), np_ce_smooth(labels, logits, eps), rtol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_cross_entropy_over_several_heads_is_the_mean_of_each_heads(seed):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(5, 3, 9)) * 3).astype(np.float32)  # 5 images, 3 heads
    labels = rng.integers(0, 9, size=5).astype(np.int32)
    want = np.mean([np_ce_smooth(labels, logits[:, h], 0.1) for h in range(3)])
    np.testing.assert_allclose(cross_entropy_label_smoothing(labels, logits, 0.1).numpy(), want,
                               rtol=1e-5)


def test_cross_entropy_hand_worked_and_large_logits():
    # Two classes, equal logits: every q sums to 1 and log p = log 0.5 for both.
    assert cross_entropy_label_smoothing([0], [[0.0, 0.0]], 0.1).numpy() == pytest.approx(
        np.log(2.0))
    # Logits far beyond exp's float32 range: the smoothed part is eps/C * (sum of logit gaps).
    value = cross_entropy_label_smoothing([0], [[1000.0, 0.0]], 0.2).numpy()
    assert value == pytest.approx(0.1 * 1000.0, rel=1e-5)
    with pytest.raises(ValueError, match="1.5"):
        cross_entropy_label_smoothing([0], [[0.0, 0.0]], 1.5)


# ---------------------------------------------------------------- center loss

def test_center_loss_value_and_gradient_match_numpy():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(5, 4)).astype(np.float32)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 2, 2, 4, 0, 0], np.int32)
    want = np.mean([0.5 * np.sum((x[i].astype(np.float64) - centers[y[i]]) ** 2)
                    for i in range(6)])
    var = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = center_loss(var, y, centers)
    np.testing.assert_allclose(value.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(value, var).numpy(), (x - centers[y]) / 6,
                               rtol=1e-5, atol=1e-7)


def test_center_update_matches_classic_rule():
    rng = np.random.default_rng(4)
    init = rng.normal(size=(5, 3)).astype(np.float32)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    y = np.array([1, 1, 1, 3, 0, 3, 1], np.int32)
    module = CenterLoss(5, 3, center_lr=0.5, initial_centers=init)
    np.testing.assert_allclose(module(x, y).numpy(),
                               center_loss(x, y, init).numpy(), rtol=1e-6)
    module.update(x, y)
    want = init.astype(np.float64).copy()
    for j in range(5):
        members = [i for i in range(7) if y[i] == j]
        delta = sum((init[j] - x[i] for i in members), np.zeros(3)) / (1 + len(members))
        want[j] = init[j] - 0.5 * delta
    np.testing.assert_allclose(module.centers.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(module.centers.numpy()[[2, 4]], init[[2, 4]])  # absent


def test_center_update_inside_tf_function_and_not_trainable():
    module = CenterLoss(3, 2, center_lr=1.0)
    assert module.trainable_variables == ()
    assert not module.centers.trainable
    step = tf.function(lambda f, y: module.update(f, y))
    x = np.array([[2.0, 0.0], [4.0, 2.0]], np.float32)
    step(x, np.array([1, 1], np.int32))
    # alpha 1 from zeros: c = (0 - 2 * (0 - mean)) / 3 = 2/3 of the class mean
    np.testing.assert_allclose(module.centers.numpy()[1], [2.0, 2.0 / 3.0], rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        CenterLoss(3, 2, initial_centers=np.zeros((2, 2)))


# ---------------------------------------------------------------- combined

def _batch(seed=0, num_classes=6):
    rng = np.random.default_rng(seed)
    labels = pk_labels(rng, p=3, k=2) % num_classes
    features = rng.normal(size=(len(labels), 4)).astype(np.float32)
    logits = rng.normal(size=(len(labels), num_classes)).astype(np.float32)
    return labels, features, logits


def test_reid_loss_total_is_weighted_sum_of_terms():
    labels, features, logits = _batch()
    cfg = LossConfig(ce_weight=0.7, label_smoothing=0.2, triplet_weight=1.3, triplet_margin=0.5,
                     triplet_miner="batch_all", center_weight=0.25, center_lr=0.5,
                     contrastive_weight=0.4, contrastive_margin=2.0)
    loss = ReidLoss(cfg, num_classes=6, feature_dim=4)
    total, terms = loss(labels, features, logits)
    assert set(terms) == {"ce", "triplet", "center", "contrastive", "loss"}
    want = {"ce": np_ce_smooth(labels, logits, 0.2),
            "triplet": np_triplet(labels, features, 0.5, "batch_all", "euclidean"),
            "center": np.mean(0.5 * np.sum(features.astype(np.float64) ** 2, axis=1)),
            "contrastive": np_contrastive(labels, features, 2.0, "euclidean")}
    for name, value in want.items():
        np.testing.assert_allclose(terms[name].numpy(), value, rtol=1e-4, err_msg=name)
    weighted = 0.7 * want["ce"] + 1.3 * want["triplet"] + 0.25 * want["center"] + \
        0.4 * want["contrastive"]
    np.testing.assert_allclose(total.numpy(), weighted, rtol=1e-4)
    assert terms["loss"] is total


def test_reid_loss_omits_zero_weight_terms_and_uses_config():
    labels, features, logits = _batch(1)
    cfg = LossConfig(ce_weight=0.0, triplet_weight=2.0, triplet_miner="soft_margin",
                     triplet_distance="cosine", center_weight=0.0, contrastive_weight=0.0)
    loss = ReidLoss(cfg)
    assert loss.center is None
    total, terms = loss(labels, features, None)  # no logits needed without the CE term
    assert set(terms) == {"triplet", "loss"}
    np.testing.assert_allclose(
        total.numpy(), 2.0 * np_triplet(labels, features, 0.3, "soft_margin", "cosine"),
        rtol=1e-4)
    loss.update_centers(labels, features)  # a no-op without the center loss

    _, terms = ReidLoss(LossConfig(triplet_weight=0.0))(labels, features, logits)
    assert set(terms) == {"ce", "loss"}


def test_reid_loss_rejects_impossible_setups():
    with pytest.raises(ConfigError, match="every loss weight"):
        ReidLoss(LossConfig(ce_weight=0.0, triplet_weight=0.0))
    with pytest.raises(ConfigError, match="center_weight"):
        ReidLoss(LossConfig(center_weight=0.0005))
    labels, features, _ = _batch()
    with pytest.raises(ValueError, match="logits"):
        ReidLoss(LossConfig())(labels, features, None)


def test_reid_loss_training_step_in_tf_function():
    labels, features, _ = _batch(2)
    cfg = LossConfig(center_weight=0.1, center_lr=0.5)
    loss = ReidLoss(cfg, num_classes=6, feature_dim=4)
    kernel = tf.Variable(np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32))
    feats = tf.Variable(features)

    @tf.function
    def step(y):
        with tf.GradientTape() as tape:
            total, terms = loss(y, feats, tf.matmul(feats, kernel))
        grads = tape.gradient(total, [feats, kernel])
        loss.update_centers(y, feats)
        return total, terms, grads

    total, terms, grads = step(tf.constant(labels))
    assert set(terms) == {"ce", "triplet", "center", "loss"}
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    assert np.isfinite(total.numpy())
    assert np.any(loss.center.centers.numpy() != 0.0)  # the update ran inside the graph
