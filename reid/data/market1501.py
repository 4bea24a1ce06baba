"""Reader for the Market-1501 folder layout, which DukeMTMC-reID and CUHK03 conversions share.

Layout::

    root/bounding_box_train/0002_c1s1_000451_03.jpg   -> train
    root/query/0001_c1s1_001051_00.jpg                -> query
    root/bounding_box_test/0000_c1s1_000151_01.jpg    -> gallery

A file name starts with the person id and ``_c`` plus the camera number (Market-1501
``0002_c1s1_000451_03.jpg``, DukeMTMC-reID ``0001_c2_f0046182.jpg``). Person id ``-1`` marks junk
crops (bad detections that the benchmark protocol ignores), so they are dropped from every split.
Person id ``0000`` marks distractors: they are kept in the gallery, where they make retrieval
harder as the protocol intends, and dropped from train and query, where they have no identity.

Camera ids are stored as the file name writes them (1-based for Market-1501 and DukeMTMC-reID),
so a record's ``camid`` can be checked against its file name by eye.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection

from reid.data.records import DatasetError, ImageRecord, ReidDataset, make_dataset

#: File suffixes read as images (compared case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})

#: The three split folders and the split each one feeds.
MARKET_SPLITS: tuple[tuple[str, str], ...] = (
    ("train", "bounding_box_train"),
    ("query", "query"),
    ("gallery", "bounding_box_test"),
)

# Same idea as torchreid's ``([-\d]+)_c(\d)``, but anchored at the start of the base name (so a
# folder name such as "run_c1" cannot match) and with multi-digit cameras read whole.
_MARKET_NAME = re.compile(r"^(-1|\d+)_c(\d+)")

MARKET_PATTERN_HELP = ("file names PPPP_cC... (person id, '_c', camera number), "
                       "e.g. 0002_c1s1_000451_03.jpg or 0001_c2_f0046182.jpg")

JUNK_PID = -1
DISTRACTOR_PID = 0


def is_image_name(name: str) -> bool:
    """True for visible files with an image suffix.

    Hidden files are skipped because archives made on macOS carry ``._name.jpg`` resource forks
    beside every image; they are not images and would otherwise fail the name pattern.
    """
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def parse_market_name(filename: str) -> tuple[int, int] | None:
    """``(pid, camid)`` from a Market-1501 or DukeMTMC-reID file name or path, else None.

    Returns the numbers as written: ``-1`` for junk, ``0`` for distractors, the 1-based camera.
    Returning None (rather than raising) lets callers choose between skipping and failing.
    """
    match = _MARKET_NAME.match(os.path.basename(filename))
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def list_images(folder: str, expected: str) -> list[str]:
    """Absolute paths of the image files directly inside ``folder``, sorted.

    Raises DatasetError naming ``folder`` and the ``expected`` layout when it is missing or
    unreadable, so a wrong ``root`` fails with the path rather than an empty dataset.
    """
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "folder not found"
        raise DatasetError(f"{folder}: {what}; expected {expected}")
    try:
        with os.scandir(folder) as entries:
            paths = [os.path.join(folder, e.name) for e in entries
                     if is_image_name(e.name) and e.is_file()]
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot list folder ({exc.strerror}); expected {expected}") \
            from None
    return sorted(paths)


def _nested_root_hint(root: str, folder_name: str) -> str:
    """Point at a sub-folder holding the layout: the official zips unpack into one extra level."""
    try:
        with os.scandir(root) as entries:
            children = sorted(e.path for e in entries if e.is_dir())
    except OSError:
        return ""
    nested = [c for c in children if os.path.isdir(os.path.join(c, folder_name))]
    return f" (found one in {nested[0]}: point the root there)" if nested else ""


def _read_split(root: str, split: str, folder_name: str, layout: str,
                first: bool) -> list[ImageRecord]:
    """One split's records; ``layout`` names the folders read, ``first``: the first of them,
    whose absence may mean the root is one level too high."""
    folder = os.path.join(root, folder_name)
    expected = f"the Market-1501 layout ({layout} under {root}) with {MARKET_PATTERN_HELP}"
    if first and not os.path.isdir(folder) and os.path.isdir(root):
        expected += _nested_root_hint(root, folder_name)
    paths = list_images(folder, expected)
    if not paths:
        raise DatasetError(f"{folder}: no .jpg/.jpeg/.png images; expected {MARKET_PATTERN_HELP}")

    records: list[ImageRecord] = []
    unparsed: list[str] = []
    for path in paths:
        parsed = parse_market_name(path)
        if parsed is None:
            unparsed.append(path)
            continue
        pid, camid = parsed
        if pid == JUNK_PID or (pid == DISTRACTOR_PID and split != "gallery"):
            continue
        records.append(ImageRecord(path=path, pid=pid, camid=camid))
    if unparsed:
        more = f" (and {len(unparsed) - 1} more)" if len(unparsed) > 1 else ""
        raise DatasetError(f"{unparsed[0]}: file name not understood{more}; expected "
                           f"{MARKET_PATTERN_HELP}")
    if not records:
        raise DatasetError(f"{folder}: every image is junk (pid -1) or a distractor (pid 0000); "
                           f"expected identities in {MARKET_PATTERN_HELP}")
    return records


def read_market1501(root: str | os.PathLike, name: str = "market1501",
                    splits: Collection[str] | None = None) -> ReidDataset:
    """Read a Market-1501-layout dataset; training pids are relabelled 0..N-1 by ``make_dataset``.

    Query and gallery keep the dataset's own pids (0 = distractor, gallery only) and cameras.
    Records are sorted by absolute path so two reads of the same folder give the same order.
    ``splits`` (default all): the only splits read, the others left empty, so a job that uses
    query and gallery alone (calibration) needs no bounding_box_train/.
    """
    root_abs = os.path.abspath(os.fspath(root))
    wanted = [(s, f) for s, f in MARKET_SPLITS if splits is None or s in splits]
    layout = ", ".join(f"{f}/" for _, f in wanted)
    records = {split: _read_split(root_abs, split, folder, layout, i == 0)
               for i, (split, folder) in enumerate(wanted)}
    return make_dataset(name, root_abs, records.get("train", []), records.get("query", []),
                        records.get("gallery", []))


def read_dukemtmc(root: str | os.PathLike, splits: Collection[str] | None = None) -> ReidDataset:
    """DukeMTMC-reID ships in the Market-1501 layout and naming; only the dataset name differs."""
    return read_market1501(root, name="dukemtmc", splits=splits)
