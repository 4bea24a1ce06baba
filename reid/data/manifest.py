"""Reader for CSV manifests: the most general layout, for data whose file names carry no labels.

Layout::

    root/train.csv      path,pid,camid
    root/query.csv      path,pid,camid
    root/gallery.csv    path,pid,camid

Each file starts with a header naming (at least) the columns ``path``, ``pid`` and ``camid``, in
any order; further columns are ignored so a manifest can carry notes. ``path`` is relative to
``root`` or absolute. Blank lines are skipped.

Identities follow the records' convention: ``pid`` must be >= 0; 0 marks a distractor, which a
query cannot be (it would have no true match, or count other distractors as matches). Training
pids may be any non-negative numbers; they are relabelled 0..N-1. Cameras are stored as written.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Collection

from reid.data.records import DatasetError, ImageRecord, ReidDataset, make_dataset

MANIFEST_SPLITS: tuple[str, ...] = ("train", "query", "gallery")
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "pid", "camid")
MANIFEST_HELP = "a CSV file with header path,pid,camid (paths relative to the root or absolute)"

# int() would also take "1_000", "+3" and non-ASCII digits; a manifest number is plain digits.
_INTEGER = re.compile(r"-?[0-9]+")


def _parse_int(text: str | None, column: str, where: str) -> int:
    value = (text or "").strip()
    if not _INTEGER.fullmatch(value):
        raise DatasetError(f"{where}: {column} {value!r} is not an integer; "
                           f"expected {MANIFEST_HELP}")
    return int(value)


def read_manifest_csv(csv_path: str, root: str, split: str) -> list[ImageRecord]:
    """Records of one manifest file, sorted by path; ``split`` decides whether pid 0 is allowed.

    Every row is checked before anything is returned, and a missing image is reported here rather
    than as a decode failure hours into training.
    """
    if not os.path.isfile(csv_path):
        raise DatasetError(f"{csv_path}: manifest not found; expected {MANIFEST_HELP}")
    records: list[ImageRecord] = []
    missing: list[str] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{csv_path}: empty file; expected {MANIFEST_HELP}")
            names = [h.strip().lower() for h in header]
            absent = [c for c in MANIFEST_COLUMNS if c not in names]
            if absent:
                raise DatasetError(f"{csv_path}: line 1: missing column {', '.join(absent)} "
                                   f"(header is {','.join(header)}); expected {MANIFEST_HELP}")
            index = {c: names.index(c) for c in MANIFEST_COLUMNS}
            width = max(index.values()) + 1
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                where = f"{csv_path}: line {reader.line_num}"
                if len(row) < width:
                    raise DatasetError(f"{where}: {len(row)} fields, expected at least {width}; "
                                       f"expected {MANIFEST_HELP}")
                rel = row[index["path"]].strip()
                if not rel:
                    raise DatasetError(f"{where}: empty path; expected {MANIFEST_HELP}")
                pid = _parse_int(row[index["pid"]], "pid", where)
                camid = _parse_int(row[index["camid"]], "camid", where)
                if pid < 0:
                    raise DatasetError(f"{where}: pid {pid} is negative; expected a pid >= 0 "
                                       f"(leave junk images out of the manifest)")
                if pid == 0 and split == "query":
                    raise DatasetError(f"{where}: pid 0 marks a distractor, which belongs in the "
                                       f"gallery only; expected a query pid >= 1")
                path = os.path.normpath(os.path.join(root, rel))
                if not os.path.isfile(path):
                    missing.append(f"{path} (line {reader.line_num})")
                records.append(ImageRecord(path=path, pid=pid, camid=camid))
    except csv.Error as exc:
        raise DatasetError(f"{csv_path}: not valid CSV ({exc}); expected {MANIFEST_HELP}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{csv_path}: not UTF-8 text; expected {MANIFEST_HELP}") from None
    except OSError as exc:
        raise DatasetError(f"{csv_path}: cannot read ({exc.strerror}); expected {MANIFEST_HELP}") \
            from None
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{missing[0]}: image listed in {csv_path} not found{more}")
    if not records:
        raise DatasetError(f"{csv_path}: no images listed; expected {MANIFEST_HELP}")
    return sorted(records, key=lambda r: r.path)


def read_manifest(root: str | os.PathLike, name: str = "manifest",
                  splits: Collection[str] | None = None) -> ReidDataset:
    """Read ``root/{train,query,gallery}.csv``; training pids are relabelled 0..N-1.
    ``splits`` (default all): the only files read, the other splits left empty."""
    root_abs = os.path.abspath(os.fspath(root))
    wanted = [s for s in MANIFEST_SPLITS if splits is None or s in splits]
    if not os.path.isdir(root_abs):
        files = " and ".join(", ".join(f"{s}.csv" for s in wanted).rsplit(", ", 1))
        raise DatasetError(f"{root_abs}: folder not found; expected {files} there, each "
                           f"{MANIFEST_HELP}")
    records = {split: read_manifest_csv(os.path.join(root_abs, f"{split}.csv"), root_abs, split)
               if split in wanted else [] for split in MANIFEST_SPLITS}
    return make_dataset(name, root_abs, records["train"], records["query"], records["gallery"])
