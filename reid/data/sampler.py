"""Identity-balanced (P x K) batch sampling for metric learning.

Triplet-style losses need every batch to contain several images of each identity in it, so a
batch is P distinct identities with K images each. One epoch follows the RandomIdentitySampler of
the "bag of tricks" strong baseline (Luo et al., 2019):

1. every identity's images are shuffled and cut into chunks of K (the last, short chunk is dropped;
   an identity with fewer than K images is drawn K times with replacement to make one chunk);
2. while at least P identities still have chunks left, P of them are drawn uniformly without
   replacement and each contributes its next chunk to the batch.

The number of batches step 2 yields depends on the draw, so an epoch is defined as exactly
``batches_per_epoch`` batches: the default is ``total chunks // P`` (about one pass over the
images, which is the baseline's own length estimate); if a round runs dry early, a fresh round
(new shuffles) tops it up, and the result is cut to length. The random generator is seeded with
``(seed, epoch)`` alone, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reid.errors import ReidError


class SamplerError(ReidError, ValueError):
    """The labels cannot fill P x K batches; the message gives the numbers."""


class PKSampler:
    """Deterministic P x K batches of record indices, epoch by epoch.

    ``labels[i]`` is the identity of record ``i``; batches hold indices into ``labels``.
    With ``with_replacement`` False, identities with fewer than K images are left out instead of
    repeating their images.
    """

    def __init__(self, labels: Sequence[int], ids_per_batch: int, images_per_id: int, seed: int,
                 with_replacement: bool = True, num_batches: int | None = None) -> None:
        if ids_per_batch < 1 or images_per_id < 1:
            raise SamplerError(f"ids_per_batch and images_per_id must be >= 1, got "
                               f"P={ids_per_batch}, K={images_per_id}")
        if seed < 0:
            raise SamplerError(f"seed must be >= 0, got {seed}")
        labels_arr = np.asarray(labels)
        if labels_arr.ndim != 1 or (labels_arr.size and not np.issubdtype(labels_arr.dtype,
                                                                          np.integer)):
            raise SamplerError("labels must be a flat sequence of integers")
        self.ids_per_batch = int(ids_per_batch)
        self.images_per_id = int(images_per_id)
        self.seed = int(seed)
        self.with_replacement = bool(with_replacement)
        self.num_images = int(labels_arr.size)

        # Sorted identities and stable index lists keep the draw independent of dict/set order.
        order = np.argsort(labels_arr, kind="stable")
        ids, starts = np.unique(labels_arr[order], return_index=True)
        groups = np.split(order, starts[1:]) if ids.size else []
        self.num_ids = int(ids.size)
        if self.num_ids < self.ids_per_batch:
            raise SamplerError(f"need at least P={self.ids_per_batch} identities for a batch, "
                               f"the training set has {self.num_ids}")
        K = self.images_per_id
        if not self.with_replacement:
            groups = [g for g in groups if g.size >= K]
            if len(groups) < self.ids_per_batch:
                raise SamplerError(
                    f"only {len(groups)} of {self.num_ids} identities have at least K={K} images, "
                    f"need P={self.ids_per_batch}; allow sampling with replacement or lower P/K")
        self._groups: list[np.ndarray] = groups
        self.num_chunks = int(sum(max(g.size, K) // K for g in groups))
        default = max(1, self.num_chunks // self.ids_per_batch)
        if num_batches is not None and num_batches < 1:
            raise SamplerError(f"num_batches must be >= 1, got {num_batches}")
        self._num_batches = default if num_batches is None else int(num_batches)

    @property
    def batch_size(self) -> int:
        return self.ids_per_batch * self.images_per_id

    @property
    def batches_per_epoch(self) -> int:
        return self._num_batches

    def _round(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One RandomIdentitySampler pass: chunk every identity, draw P identities at a time."""
        K, P = self.images_per_id, self.ids_per_batch
        chunks: list[list[np.ndarray]] = []
        for idxs in self._groups:
            if idxs.size < K:
                idxs = rng.choice(idxs, size=K, replace=True)
            else:
                idxs = rng.permutation(idxs)
            n = idxs.size // K
            chunks.append(list(idxs[: n * K].reshape(n, K)))
        available = list(range(len(chunks)))
        batches = []
        while len(available) >= P:
            picked = rng.choice(len(available), size=P, replace=False).tolist()
            ids_now = [available[j] for j in picked]
            batches.append(np.concatenate([chunks[i].pop() for i in ids_now]))
            # Remove exhausted identities from the back so earlier positions stay valid.
            for j in sorted(picked, reverse=True):
                if not chunks[available[j]]:
                    del available[j]
        return batches

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """Record indices of every batch of ``epoch``, shape (batches_per_epoch, P*K), int64.

        A pure function of (seed, epoch): nothing is carried over from earlier calls.
        """
        if epoch < 0:
            raise SamplerError(f"epoch must be >= 0, got {epoch}")
        rng = np.random.default_rng([self.seed, int(epoch)])
        batches: list[np.ndarray] = []
        while len(batches) < self._num_batches:
            batches.extend(self._round(rng))
        return np.stack(batches[: self._num_batches]).astype(np.int64)
