"""P x K sampler: batch composition, determinism, and identities with too few images."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from reid.data.sampler import PKSampler, SamplerError


def _labels(counts: dict[int, int], seed: int = 0) -> np.ndarray:
    """Labels with ``counts[pid]`` images per pid, in a shuffled record order."""
    labels = np.concatenate([np.full(n, pid) for pid, n in counts.items()])
    return np.random.default_rng(seed).permutation(labels)


def _assert_pk(batch: np.ndarray, labels: np.ndarray, P: int, K: int) -> None:
    counts = Counter(labels[batch].tolist())
    assert len(counts) == P, f"expected {P} distinct ids, got {counts}"
    assert set(counts.values()) == {K}, f"expected {K} images per id, got {counts}"


COUNTS = {3: 1, 7: 2, 11: 4, 12: 5, 20: 8, 21: 9, 30: 13, 31: 6}


def test_every_batch_is_p_ids_times_k_images() -> None:
    labels = _labels(COUNTS)
    P, K = 3, 4
    sampler = PKSampler(labels, P, K, seed=5)
    for epoch in range(5):
        batches = sampler.epoch_batches(epoch)
        assert batches.shape == (sampler.batches_per_epoch, P * K)
        assert batches.min() >= 0 and batches.max() < labels.size
        for batch in batches:
            _assert_pk(batch, labels, P, K)
            # Identities with at least K images never repeat an image inside a batch.
            for pid in set(labels[batch].tolist()):
                idx = batch[labels[batch] == pid]
                if COUNTS[pid] >= K:
                    assert len(set(idx.tolist())) == K


def test_batches_per_epoch_is_chunk_count_over_p() -> None:
    # K=4 chunks per id (max(n, K) // K): 1,1,1,1,2,2,3,1 -> 12 chunks; P=3 -> 4 batches.
    sampler = PKSampler(_labels(COUNTS), 3, 4, seed=0)
    assert sampler.batches_per_epoch == 4
    for epoch in range(10):  # the length never depends on the draw
        assert sampler.epoch_batches(epoch).shape == (4, 12)
    # Without replacement ids 3 and 7 drop out: 1,1,2,2,3,1 -> 10 chunks -> 3 batches.
    assert PKSampler(_labels(COUNTS), 3, 4, seed=0, with_replacement=False).batches_per_epoch == 3


def test_equal_identities_give_a_permutation_of_all_images() -> None:
    # 12 ids x 4 images, P=4, K=4: one chunk per id, every batch takes 4 ids out, so the
    # epoch is exactly 3 batches using every image once.
    labels = _labels({pid: 4 for pid in range(12)})
    batches = PKSampler(labels, 4, 4, seed=1).epoch_batches(0)
    assert batches.shape == (3, 16)
    assert sorted(batches.ravel().tolist()) == list(range(48))


def test_deterministic_in_seed_and_epoch_only() -> None:
    labels = _labels(COUNTS)
    a = PKSampler(labels, 3, 4, seed=9)
    b = PKSampler(labels, 3, 4, seed=9)
    b.epoch_batches(0)
    b.epoch_batches(7)  # earlier calls must not shift later epochs (resume safety)
    np.testing.assert_array_equal(a.epoch_batches(3), b.epoch_batches(3))
    np.testing.assert_array_equal(a.epoch_batches(3), a.epoch_batches(3))
    assert not np.array_equal(a.epoch_batches(3), a.epoch_batches(4))
    assert not np.array_equal(a.epoch_batches(3), PKSampler(labels, 3, 4, seed=10).epoch_batches(3))


def test_small_identity_sampled_with_replacement() -> None:
    labels = _labels(COUNTS)
    sampler = PKSampler(labels, 3, 4, seed=2)
    own = set(np.flatnonzero(labels == 7).tolist())  # pid 7 has 2 images, K=4
    seen = 0
    for epoch in range(30):
        for batch in sampler.epoch_batches(epoch):
            idx = batch[labels[batch] == 7]
            if idx.size:
                seen += 1
                assert idx.size == 4 and set(idx.tolist()) <= own
    assert seen > 0


def test_small_identity_excluded_without_replacement() -> None:
    labels = _labels(COUNTS)
    sampler = PKSampler(labels, 3, 4, seed=2, with_replacement=False)
    used = set()
    for epoch in range(30):
        for batch in sampler.epoch_batches(epoch):
            _assert_pk(batch, labels, 3, 4)
            used |= set(labels[batch].tolist())
    assert 3 not in used and 7 not in used
    assert used == {11, 12, 20, 21, 30, 31}  # all six identities with K images, and only they


def test_too_few_identities_after_exclusion_names_numbers() -> None:
    labels = _labels({1: 2, 2: 3, 3: 4, 4: 6})
    with pytest.raises(SamplerError, match=r"only 2 of 4 identities.*K=4.*P=3"):
        PKSampler(labels, 3, 4, seed=0, with_replacement=False)
    PKSampler(labels, 3, 4, seed=0, with_replacement=True)  # fine when repeating images


def test_too_few_identities_in_total() -> None:
    with pytest.raises(ValueError, match=r"P=5.*has 4"):
        PKSampler(_labels({1: 4, 2: 4, 3: 4, 4: 4}), 5, 2, seed=0)


def test_num_batches_override() -> None:
    labels = _labels(COUNTS)
    sampler = PKSampler(labels, 3, 4, seed=0, num_batches=25)
    batches = sampler.epoch_batches(2)
    assert batches.shape == (25, 12)
    for batch in batches:
        _assert_pk(batch, labels, 3, 4)


def test_rejects_negative_epoch() -> None:
    with pytest.raises(ValueError, match="epoch"):
        PKSampler(_labels(COUNTS), 3, 4, seed=0).epoch_batches(-1)
