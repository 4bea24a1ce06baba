"""A validation split carved out of the training identities (issue 18: choices on validation data).

Model selection on the test split flatters the chosen model; the test split should only report.
So some training identities are held out, whole, and split into a validation query and gallery
under the Market-1501 protocol's camera rule: a query's own identity from its own camera does
not count as a match, so every query must keep an image of its identity from another camera in
the gallery. Per held-out identity, cameras are visited in a seeded order and one image of each
becomes a query while that rule still holds for every query taken; the rest is gallery. Only
identities seen by at least two cameras can be held out.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from reid.data.records import DatasetError, ImageRecord, ReidDataset, make_dataset


def held_out_count(val_ids: int | float, eligible: int) -> int:
    """How many identities ``data.val_ids`` asks for: a count, or a share in (0, 1)."""
    if isinstance(val_ids, bool) or val_ids < 0:
        raise DatasetError(f"data.val_ids: expected a count or a share in (0, 1), got {val_ids!r}")
    if isinstance(val_ids, float) and 0 < val_ids < 1:
        return max(1, round(val_ids * eligible))
    if isinstance(val_ids, float) and not val_ids.is_integer():
        raise DatasetError(f"data.val_ids: {val_ids} is neither a count nor a share in (0, 1)")
    return int(val_ids)


def _query_and_gallery(images: list[ImageRecord], rng: random.Random
                       ) -> tuple[list[ImageRecord], list[ImageRecord]]:
    gallery = list(images)
    queries: list[ImageRecord] = []
    cameras = sorted({r.camid for r in images})
    rng.shuffle(cameras)
    for camera in cameras:
        candidate = rng.choice([r for r in gallery if r.camid == camera])
        rest = [r for r in gallery if r is not candidate]
        if all(any(g.camid != q.camid for g in rest) for q in (*queries, candidate)):
            queries.append(candidate)
            gallery = rest
    return queries, gallery


def hold_out_identities(train: Sequence[ImageRecord], val_ids: int | float, seed: int = 0
                        ) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord]]:
    """(training records left, validation query, validation gallery). Records keep their
    dataset pids (the caller relabels the training split afterwards)."""
    by_pid: dict[int, list[ImageRecord]] = {}
    for record in train:
        by_pid.setdefault(record.pid, []).append(record)
    eligible = sorted(pid for pid, rs in by_pid.items() if len({r.camid for r in rs}) >= 2)
    count = held_out_count(val_ids, len(eligible))
    if count == 0:
        return list(train), [], []
    if count > len(eligible):
        raise DatasetError(f"data.val_ids: {val_ids} asks for {count} validation identities, but "
                           f"only {len(eligible)} training identities are seen by two cameras; "
                           f"lower it, or set data.val_ids: 0 to validate on the test split")
    if len(by_pid) - count < 2:
        raise DatasetError(f"data.val_ids: holding out {count} of {len(by_pid)} training "
                           f"identities leaves fewer than 2 to train on; lower it, or set "
                           f"data.val_ids: 0 to validate on the test split")
    rng = random.Random(seed)
    held = set(rng.sample(eligible, count))
    query: list[ImageRecord] = []
    gallery: list[ImageRecord] = []
    for pid in sorted(held):
        q, g = _query_and_gallery(sorted(by_pid[pid], key=lambda r: r.path), rng)
        query += q
        gallery += g
    return [r for r in train if r.pid not in held], query, gallery


def with_validation_split(dataset: ReidDataset, val_ids: int | float, seed: int = 0
                          ) -> ReidDataset:
    """``dataset`` for training with ``val_ids`` identities held out: its training split
    without them (relabelled), and the held-out identities as its query and gallery, in place
    of the test split, which training then never sees."""
    kept, query, gallery = hold_out_identities(dataset.train, val_ids, seed)
    if not query:
        return dataset
    held = len({r.pid for r in query})
    return make_dataset(f"{dataset.name} (validation: {held} training identities held out)",
                        dataset.root, kept, query, gallery, held_out=held)

