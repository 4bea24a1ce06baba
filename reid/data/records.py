"""The common currency of every dataset reader: image records and a three-split dataset."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from reid.errors import ReidError


class DatasetError(ReidError, ValueError):
    """A dataset on disk does not have the layout a reader expects; the message names the path."""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One person crop: where it is, who it is, which camera saw it.

    ``pid`` is the dataset's own identity number for query/gallery records (0 marks a distractor)
    and the contiguous training label 0..N-1 for training records.
    """

    path: str
    pid: int
    camid: int


@dataclasses.dataclass(frozen=True)
class ReidDataset:
    """Train, query and gallery splits; training pids relabelled to 0..N-1.

    ``train_pid_map`` maps each original training pid to its label, so predictions can be traced
    back to the dataset's own identities. ``held_out`` counts training identities held out as
    the query and gallery (:mod:`reid.data.validation`): then those splits are a validation
    split, which may choose things, and not the test split, which may only report.
    """

    name: str
    root: str
    train: tuple[ImageRecord, ...]
    query: tuple[ImageRecord, ...]
    gallery: tuple[ImageRecord, ...]
    train_pid_map: dict[int, int]
    held_out: int = 0

    @property
    def num_train_pids(self) -> int:
        return len(self.train_pid_map)

    def summary(self) -> str:
        """One line per split: images, identities, cameras, as papers tabulate datasets."""
        lines = [f"dataset {self.name} at {self.root}"]
        for split, records in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            pids = {r.pid for r in records}
            cams = {r.camid for r in records}
            lines.append(
                f"  {split:<8} {len(records):>7} images  {len(pids):>5} ids  {len(cams):>3} cameras"
            )
        return "\n".join(lines)


def relabel(records: Iterable[ImageRecord]) -> tuple[tuple[ImageRecord, ...], dict[int, int]]:
    """Map training pids to 0..N-1 in ascending pid order; the classifier needs contiguous labels."""
    records = list(records)
    pid_map = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    relabelled = tuple(dataclasses.replace(r, pid=pid_map[r.pid]) for r in records)
    return relabelled, pid_map


def make_dataset(
    name: str,
    root: str,
    train: Sequence[ImageRecord],
    query: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    held_out: int = 0,
) -> ReidDataset:
    """Assemble a dataset, relabelling the training split."""
    train_relabelled, pid_map = relabel(train)
    return ReidDataset(
        name=name,
        root=root,
        train=train_relabelled,
        query=tuple(query),
        gallery=tuple(gallery),
        train_pid_map=pid_map,
        held_out=held_out,
    )
