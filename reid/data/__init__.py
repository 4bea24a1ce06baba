"""Dataset readers and records.

Only the light readers are imported here: the input pipeline modules of this package import
TensorFlow, and a tool that just lists a dataset should not pay for that (import them directly).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

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

#: ``data.dataset`` value -> reader taking the dataset root.
READERS: Mapping[str, Callable[[str | os.PathLike], ReidDataset]] = {
    "market1501": read_market1501,
    "dukemtmc": read_dukemtmc,
    "manifest": read_manifest,
    "folders": read_folders,
}
#: The ``data.dataset`` choices.
DATASET_LAYOUTS: tuple[str, ...] = tuple(READERS)


def load_dataset(config: DataConfig) -> ReidDataset:
    """Read the dataset ``config`` names; a relative root is taken from the working directory."""
    reader = READERS.get(config.dataset)
    if reader is None:
        raise DatasetError(f"data.dataset: unknown layout {config.dataset!r}; expected one of "
                           f"{', '.join(READERS)}")
    return reader(config.root)


__all__ = [
    "DATASET_LAYOUTS",
    "IMAGE_EXTENSIONS",
    "READERS",
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
