"""Reader for one folder per identity: the layout people make by hand from their own crops.

Layout::

    root/train/<identity>/<any name>.jpg
    root/query/<identity>/<any name>.jpg
    root/gallery/<identity>/<any name>.jpg

Identities. Within train, and separately within query+gallery, folder names become pids:

* when every name is plain digits (``7``, ``0042``) and no two name the same number, the number
  itself, so results can be traced back to the folders. In the gallery ``0`` then marks
  distractors, as in Market-1501; a query folder ``0`` is an error (a query needs an identity).
* otherwise (any name such as ``alice``), the names are sorted and numbered: 0.. in train (only
  labels, relabelled anyway) and 1.. across query+gallery, so no query/gallery identity becomes
  the distractor pid 0 and the same name gets the same pid in query and gallery.

Every query identity must have a gallery folder of the same name (with images): a query without
any true match is almost always a typo in a folder name, and would distort mAP silently.

Cameras come from a ``c<N>`` token in the file name (``cam_c2_0001.jpg``, ``c3-17.png``). Without
any token, each split gets one camera of its own: train 0, query 1, gallery 2. Query and gallery
then always differ, so the evaluation's same-camera filter (which ignores gallery images of the
query's identity seen by the query's camera) removes nothing and every true match counts; a
warning says so because that filter then cannot do its job. Within train, and within
query+gallery, either every file names a camera or none does: a mix would put the defaults on the
same numbers as real cameras.

Image files directly in a split folder (not in an identity folder) are an error; hidden files,
non-image files and deeper sub-folders are ignored. Empty identity folders are skipped.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Collection, Mapping, Sequence

from reid.data.market1501 import list_images
from reid.data.records import DatasetError, ImageRecord, ReidDataset, make_dataset

FOLDER_SPLITS: tuple[str, ...] = ("train", "query", "gallery")
FOLDERS_HELP = "root/<split>/<identity>/<image>.jpg for split in train, query, gallery"
DEFAULT_CAMIDS: Mapping[str, int] = {"train": 0, "query": 1, "gallery": 2}

_CAMERA_TOKEN = re.compile(r"(?:^|[_\-.])c(\d+)")
_DIGITS = re.compile(r"[0-9]+")


def parse_camera_token(filename: str) -> int | None:
    """Camera number of a ``c<N>`` token in a file name (or path), None when there is none."""
    match = _CAMERA_TOKEN.search(os.path.basename(filename))
    return int(match.group(1)) if match else None


def _identity_folders(split_dir: str) -> dict[str, list[str]]:
    """Identity folder name -> its image paths (sorted), for folders holding at least one image."""
    expected = FOLDERS_HELP
    stray = list_images(split_dir, expected)  # also fails on a missing or unreadable folder
    if stray:
        raise DatasetError(f"{stray[0]}: image outside an identity folder; expected {expected}")
    try:
        with os.scandir(split_dir) as entries:
            children = sorted((e for e in entries if e.is_dir() and not e.name.startswith(".")),
                              key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{split_dir}: cannot list folder ({exc.strerror}); "
                           f"expected {expected}") from None
    folders: dict[str, list[str]] = {}
    for child in children:
        paths = list_images(child.path, expected)
        if paths:
            folders[child.name] = paths
    if not folders:
        raise DatasetError(f"{split_dir}: no identity folders with images; expected {expected}")
    return folders


def _name_to_pid(names: Sequence[str], first: int) -> dict[str, int]:
    """Numbers as written when all names are distinct numbers, else sorted names from ``first``."""
    names = sorted(set(names))
    if all(_DIGITS.fullmatch(n) for n in names) and len({int(n) for n in names}) == len(names):
        return {n: int(n) for n in names}
    return {n: i for i, n in enumerate(names, start=first)}


def _cameras(paths: Sequence[str], root: str, splits: str) -> dict[str, int] | None:
    """Camera of each path from its ``c<N>`` token; None when no file has one (defaults apply)."""
    cams = {p: parse_camera_token(p) for p in paths}
    without = [p for p, c in cams.items() if c is None]
    if len(without) == len(cams):
        return None
    if without:
        raise DatasetError(f"{without[0]}: no camera token c<N> in the file name while other "
                           f"{splits} images under {root} have one; expected either every or no "
                           f"{splits} file name to name its camera")
    return {p: c for p, c in cams.items() if c is not None}


def read_folders(root: str | os.PathLike, name: str = "folders",
                 splits: Collection[str] | None = None) -> ReidDataset:
    """Read the folder-per-identity layout; training pids are relabelled 0..N-1.

    ``splits`` (default all): train is read only when asked; query and gallery are read
    together when either is (their pids and cameras are assigned across both), and a split not
    asked for is left empty.
    """
    root_abs = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root_abs):
        raise DatasetError(f"{root_abs}: folder not found; expected {FOLDERS_HELP}")
    wanted = set(FOLDER_SPLITS if splits is None else splits)
    if wanted & {"query", "gallery"}:
        wanted |= {"query", "gallery"}
    folders = {s: _identity_folders(os.path.join(root_abs, s)) if s in wanted else {}
               for s in FOLDER_SPLITS}

    missing = sorted(set(folders["query"]) - set(folders["gallery"]))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        path = os.path.join(root_abs, "query", missing[0])
        raise DatasetError(f"{path}: query identity has no gallery folder "
                           f"{os.path.join(root_abs, 'gallery', missing[0])} with images{more}; "
                           f"expected query identity folders to match gallery ones by name")

    train_pids = _name_to_pid(list(folders["train"]), first=0)
    test_pids = _name_to_pid(list(folders["query"]) + list(folders["gallery"]), first=1)
    zero = [n for n in folders["query"] if test_pids[n] == 0]
    if zero:
        raise DatasetError(f"{os.path.join(root_abs, 'query', zero[0])}: identity 0 marks "
                           f"gallery distractors and cannot be a query; expected query identity "
                           f"folders other than 0")

    groups = {"train": ("train",), "query and gallery": ("query", "gallery")}
    records: dict[str, list[ImageRecord]] = {s: [] for s in FOLDER_SPLITS}
    for label, group in groups.items():
        if not wanted & set(group):
            continue
        group_paths = [p for s in group for ps in folders[s].values() for p in ps]
        cams = _cameras(group_paths, root_abs, label)
        if cams is None and label != "train":
            warnings.warn(f"{root_abs}: no camera token c<N> in query/gallery file names; using "
                          f"camera {DEFAULT_CAMIDS['query']} for every query and "
                          f"{DEFAULT_CAMIDS['gallery']} for every gallery image, so same-camera "
                          f"filtering cannot apply", stacklevel=2)
        for split in group:
            pids = train_pids if split == "train" else test_pids
            records[split] = sorted(
                (ImageRecord(path=p, pid=pids[ident],
                             camid=DEFAULT_CAMIDS[split] if cams is None else cams[p])
                 for ident, ps in folders[split].items() for p in ps),
                key=lambda r: r.path)
    splits_out = {s: records[s] if splits is None or s in splits else [] for s in FOLDER_SPLITS}
    return make_dataset(name, root_abs, splits_out["train"], splits_out["query"],
                        splits_out["gallery"])
