"""Dataset readers and records.

Only the light readers are imported here: the input pipeline modules of this package import
TensorFlow, and a tool that just lists a dataset should not pay for that (import them directly).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

from reid.choices import DATASET_LAYOUTS
from reid.data.folders import parse_camera_token, read_folders
from reid.data.manifest import read_manifest
from reid.data.market1501 import (
    IMAGE_EXTENSIONS,
    parse_market_name,
    read_dukemtmc,
    read_market1501,
)
from reid.data.records import DatasetError, ImageRecord, ReidDataset, make_dataset, relabel

if TYPE_CHECKING:
    from reid.config import DataConfig

#: ``data.dataset`` value (one of :data:`reid.choices.DATASET_LAYOUTS`) -> reader taking the
#: dataset root and, as ``splits``, the splits to read.
READERS: Mapping[str, Callable[..., ReidDataset]] = {
    "market1501": read_market1501,
    "dukemtmc": read_dukemtmc,
    "manifest": read_manifest,
    "folders": read_folders,
}
#: A dataset's splits.
SPLITS: tuple[str, ...] = ("train", "query", "gallery")


def load_dataset(config: DataConfig, splits: Collection[str] = SPLITS) -> ReidDataset:
    """Read the dataset ``config`` names; a relative root is taken from the working directory.

    Only ``splits`` are read (the others come back empty): a job that never trains needs no
    training split on disk.
    """
    reader = READERS.get(config.dataset)
    if reader is None:
        raise DatasetError(f"data.dataset: unknown layout {config.dataset!r}; expected one of "
                           f"{', '.join(DATASET_LAYOUTS)}")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise ValueError(f"splits: expected some of {', '.join(SPLITS)}, got {sorted(splits)}")
    return reader(config.root, splits=None if set(splits) == set(SPLITS) else splits)


__all__ = [
    "IMAGE_EXTENSIONS",
    "READERS",
    "SPLITS",
    "DatasetError",
    "ImageRecord",
    "ReidDataset",
    "load_dataset",
    "make_dataset",
    "parse_camera_token",
    "parse_market_name",
    "read_dukemtmc",
    "read_folders",
    "read_manifest",
    "read_market1501",
    "relabel",
]
