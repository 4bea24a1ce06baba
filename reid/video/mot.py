"""MOTChallenge text files, read and written by one set of rules.

One box a line, comma-separated, frames counted from 1::

    frame,id,left,top,width,height,conf,x,y,z            det.txt, tracker results (10 values)
    frame,id,left,top,width,height,consider,class,visibility    gt.txt of MOT16/17/20 (9 values)

The rules, for every caller (the detections-file detector and the scoring alike):

* every line of a file has the same number of values, at least 6; blank lines are skipped, and
  one trailing comma is tolerated (as TrackEval, MOTChallenge's evaluation, tolerates it);
* a file of 9 values a line whose ids are all people (none -1, the id of a detection) is ground
  truth: the 7th value is MOTChallenge's *consider* flag and the 8th the class, and a row is
  :func:`considered` only when the flag is not 0 and the class is a pedestrian (not the cars,
  reflections and distractors also annotated); its box scores 1;
* any other file holds detections or tracker results: the 7th value is the score (``conf``; 1
  when the line has 6 values), the values after it (world coordinates) are ignored;
* the frame is a whole number from 1, the id a whole number, every value a finite number, a
  box's width and height at least 0; anything else raises :class:`MotFormatError` naming the
  file and the line.

Box coordinates are taken as written, as py-motmetrics and TrackEval take them: the project
writes and reads its own pixels (0-based, :class:`reid.video.boxes.Detections`), where
MOTChallenge's published data counts pixels from 1, a one-pixel shift that matters to nothing
scored at IoU 0.5 but is never mixed within one file. Written files have 9 values a line for
ground truth and 10 for detections and results, so they read back as what they are.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Iterable

from reid.utils.io import atomic_write_text
from reid.video.errors import FootageError

#: The pedestrian class of MOTChallenge ground truth (the 8th value).
PEDESTRIAN = 1
#: Values on a line of MOT16/17/20 ground truth: frame, id, box, consider, class, visibility.
GT_COLUMNS = 9
#: Values on a line of a detections or results file: frame, id, box, conf, world x, y, z.
DET_COLUMNS = 10
#: The fewest values a line may have: frame, id, left, top, width, height.
MIN_COLUMNS = 6


class MotFormatError(FootageError):
    """A MOTChallenge file that cannot be read as one; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class MotRow:
    """One line of a MOTChallenge file.

    ``frame`` 1-based; ``id`` the person (gt) or track (results), -1 in detection files;
    ``x``, ``y`` the box's top-left pixel, ``w``, ``h`` its size; ``conf`` a
    detection's score, or in ground truth 1 (scored) or 0 (ignored); ``object_class``
    and ``visibility`` ground truth's class (1: pedestrian) and visible share, -1 elsewhere.
    """

    frame: int
    id: int
    x: float
    y: float
    w: float
    h: float
    conf: float = 1.0
    object_class: int = -1
    visibility: float = -1.0

    @classmethod
    def from_corners(cls, frame: int, id: int, x1: float, y1: float, x2: float, y2: float,
                     **fields: float) -> MotRow:
        """A row from pixel corners (x2, y2 exclusive), the project's box convention."""
        return cls(frame, id, x1, y1, x2 - x1, y2 - y1, **fields)  # type: ignore[arg-type]

    def corners(self) -> tuple[float, float, float, float]:
        """The box as corners x1, y1, x2, y2 (x2, y2 exclusive)."""
        return self.x, self.y, self.x + self.w, self.y + self.h


def considered(row: MotRow) -> bool:
    """Whether a ground-truth row counts: its consider flag (``conf``) is not 0 and its class is
    a pedestrian, or not given (-1: a file without classes, such as MOT15's 10-value gt.txt)."""
    return row.conf != 0 and row.object_class in (-1, PEDESTRIAN)


@dataclasses.dataclass(frozen=True)
class MotFile:
    """The rows of one MOTChallenge file, in file order, and which kind of file it is."""

    path: pathlib.Path
    rows: list[MotRow]
    ground_truth: bool  # 9 values a line, no id -1: see the module's rules


def read_mot(path: str | os.PathLike, what: str = "MOTChallenge file") -> MotFile:
    """Read a gt.txt, det.txt or results file by the module's rules.

    ``what`` names the file in the one-line error of a missing or unreadable file (FootageError);
    a file that is not MOTChallenge text raises :class:`MotFormatError` naming file and line.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FootageError(f"{path}: no such {what}") from None
    except UnicodeDecodeError:
        raise MotFormatError(f"{path}: not a text file (MOTChallenge files are UTF-8 text)"
                             ) from None
    except OSError as exc:
        raise FootageError(f"{path}: cannot read this {what} ({type(exc).__name__})") from None
    lines: list[tuple[int, list[str], list[float]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields, values = _values(line, f"{path}: line {number}")
        if lines and len(values) != len(lines[0][2]):
            raise MotFormatError(f"{path}: line {number}: {len(values)} values, but line "
                                 f"{lines[0][0]} has {len(lines[0][2])} (every line of a file "
                                 f"has the same columns)")
        lines.append((number, fields, values))
    ground_truth = bool(lines) and len(lines[0][2]) == GT_COLUMNS and all(
        values[1] != -1 for _, _, values in lines)
    rows = []
    for number, fields, values in lines:
        frame, ident, x, y, w, h = values[:6]
        conf = values[6] if len(values) > 6 else 1.0
        object_class, visibility = -1, -1.0
        if ground_truth:
            if values[7] != int(values[7]):
                raise MotFormatError(f"{path}: line {number}: class {fields[7]} is not a whole "
                                     f"number")
            object_class, visibility = int(values[7]), values[8]
        rows.append(MotRow(int(frame), int(ident), x, y, w, h, conf, object_class, visibility))
    return MotFile(path, rows, ground_truth)


def _values(line: str, where: str) -> tuple[list[str], list[float]]:
    """The fields of one line and their numbers, checked against the module's rules."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) > 1 and not fields[-1]:  # one trailing comma
        fields.pop()
    if len(fields) < MIN_COLUMNS:
        raise MotFormatError(f"{where}: expected at least {MIN_COLUMNS} comma-separated values "
                             f"(frame, id, left, top, width, height[, conf, ...]), got "
                             f"{len(fields)}: {line.strip()[:60]!r}")
    values = []
    for field in fields:
        try:
            values.append(float(field))
        except ValueError:
            raise MotFormatError(f"{where}: {field[:30]!r} is not a number") from None
        if not math.isfinite(values[-1]):
            raise MotFormatError(f"{where}: {field[:30]!r} is not a finite number")
    if values[0] < 1 or values[0] != int(values[0]):
        raise MotFormatError(f"{where}: frame {fields[0]} is not a whole number from 1 "
                             f"(MOTChallenge counts frames from 1)")
    if values[1] != int(values[1]):
        raise MotFormatError(f"{where}: id {fields[1]} is not a whole number")
    if values[4] < 0 or values[5] < 0:
        raise MotFormatError(f"{where}: negative box width or height ({fields[4]}, {fields[5]})")
    return fields, values


def _number(value: float) -> str:
    """A number to three decimals without trailing zeros: 12, 12.5, 0.625."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_mot(rows: Iterable[MotRow], ground_truth: bool = False) -> str:
    """The text of a MOTChallenge file: nine values a line for ground truth, else ten."""
    lines = []
    for r in rows:
        head = (f"{r.frame},{r.id},{_number(r.x)},{_number(r.y)},{_number(r.w)},"
                f"{_number(r.h)},{_number(r.conf)}")
        if ground_truth:
            lines.append(f"{head},{r.object_class},{_number(r.visibility)}")
        else:
            lines.append(f"{head},-1,-1,-1")
    return "".join(line + "\n" for line in lines)


def write_mot(path: str | os.PathLike, rows: Iterable[MotRow], ground_truth: bool = False
              ) -> None:
    """Write ``rows`` as a MOTChallenge file, atomically (a reader never sees half of it)."""
    atomic_write_text(path, format_mot(rows, ground_truth))
