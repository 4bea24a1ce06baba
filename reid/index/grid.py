"""A picture of search results: each query, then its top-k gallery crops with their scores.

One row per query. Every crop is scaled to the same height (keeping its aspect ratio) and
centred in a cell of the same width. When both the query's and a result's person ids are known,
the result is framed green (same person) or red (another person); results of unknown identity
get no frame. Captions give the rank, the score and the person id. With a match threshold,
results below it are faded behind a red bar, and a query without any match says so.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import cv2
import numpy as np

from reid.index.errors import GalleryError
from reid.utils.io import atomic_write_bytes

GREEN = (60, 180, 60)  # BGR
RED = (40, 40, 220)
BLUE = (200, 120, 40)
BACKGROUND = (255, 255, 255)
TEXT = (30, 30, 30)
PLACEHOLDER = (200, 200, 200)
FRAME = 3
GAP = 6
CAPTION = 34  # two text lines below each crop
SEPARATOR = 16  # extra space between the query and its results
FONT = cv2.FONT_HERSHEY_SIMPLEX
FADED = 0.35  # weight of a crop scoring below the match threshold, over white


@dataclasses.dataclass(frozen=True)
class GridItem:
    """One crop of the picture: a query (score None) or a result."""

    path: str
    score: float | None = None
    pid: int | None = None
    rank: int | None = None
    #: A result's match decision: False draws it faded behind a red bar; None (no threshold)
    #: and True draw it as it is.
    match: bool | None = None


@dataclasses.dataclass(frozen=True)
class GridRow:
    """A query and its results; when every result has ``match`` False, the query's caption
    says "no match"."""

    query: GridItem
    results: Sequence[GridItem]

    @property
    def no_match(self) -> bool:
        return bool(self.results) and all(item.match is False for item in self.results)


def _read_crop(path: str, height: int, width: int) -> np.ndarray:
    """The crop scaled to ``height`` and centred in a ``width`` cell; a grey placeholder when
    the file is gone or unreadable (a gallery may outlive some of its files)."""
    cell = np.full((height, width, 3), BACKGROUND, np.uint8)
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        cell[:] = PLACEHOLDER
        _put(cell, "missing", (4, height // 2), 0.35)
        return cell
    h, w = image.shape[:2]
    new_w = max(1, min(width, round(w * height / h)))
    new_h = height if new_w < width else max(1, min(height, round(h * width / w)))
    interp = cv2.INTER_AREA if new_h < h else cv2.INTER_LINEAR
    image = cv2.resize(image, (new_w, new_h), interpolation=interp)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    cell[top:top + new_h, left:left + new_w] = image
    return cell


def _put(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.38,
         color: tuple[int, int, int] = TEXT) -> None:
    cv2.putText(canvas, text, origin, FONT, scale, color, 1, cv2.LINE_AA)


def frame_color(query_pid: int | None, result_pid: int | None) -> tuple[int, int, int] | None:
    """Green for the same person, red for another, None when either identity is unknown."""
    if query_pid is None or result_pid is None:
        return None
    return GREEN if query_pid == result_pid else RED


MIN_CELL_HEIGHT = 16


def check_grid_output(path: str | os.PathLike, cell_height: int) -> None:
    """Refuse, before any work, a grid that :func:`save_grid` could not write."""
    if cell_height < MIN_CELL_HEIGHT:
        raise GalleryError(f"grid height: must be at least {MIN_CELL_HEIGHT} pixels, got "
                           f"{cell_height}", field="grid_height")
    suffix = os.path.splitext(os.fspath(path))[1].lower() or ".png"
    if not cv2.haveImageWriter(f"x{suffix}"):
        raise GalleryError(f"{path}: cannot write a picture as {suffix} (use .png or .jpg)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise GalleryError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise GalleryError(f"{path}: folder {folder} is not writable")
    if os.path.isdir(path):
        raise GalleryError(f"{path}: is a folder; give a file name such as ranked.png")


def render_grid(rows: Sequence[GridRow], cell_height: int = 128,
                cell_width: int | None = None) -> np.ndarray:
    """The picture as a BGR uint8 array."""
    if not rows:
        raise GalleryError("grid: no queries to draw")
    if cell_height < MIN_CELL_HEIGHT:
        raise GalleryError(f"grid: cell height must be at least {MIN_CELL_HEIGHT} pixels, got "
                           f"{cell_height}")
    width = cell_width or max(cell_height // 2, 48)
    cols = max(len(r.results) for r in rows)
    box_w, box_h = width + 2 * FRAME, cell_height + 2 * FRAME
    row_h = box_h + CAPTION + GAP
    canvas_w = GAP + box_w + SEPARATOR + cols * (box_w + GAP) + GAP
    canvas = np.full((GAP + len(rows) * row_h, max(canvas_w, box_w + 2 * GAP), 3),
                     BACKGROUND, np.uint8)
    for r, row in enumerate(rows):
        y = GAP + r * row_h
        items = [(row.query, GAP)] + [
            (item, GAP + box_w + SEPARATOR + c * (box_w + GAP))
            for c, item in enumerate(row.results)]
        cut = next((x for item, x in items[1:] if item.match is False), None)
        for item, x in items:
            is_query = item is row.query
            color = BLUE if is_query else frame_color(row.query.pid, item.pid)
            if color is not None:
                canvas[y:y + box_h, x:x + box_w] = color
            crop = _read_crop(item.path, cell_height, width)
            if not is_query and item.match is False:
                crop = cv2.addWeighted(crop, FADED, np.full_like(crop, 255), 1 - FADED, 0)
            canvas[y + FRAME:y + FRAME + cell_height, x + FRAME:x + FRAME + width] = crop
            pid = "?" if item.pid is None else str(item.pid)
            second_color = TEXT
            if is_query:
                first, second = "query", f"pid {pid}"
                if row.no_match:
                    second, second_color = "no match", RED
            else:
                rank = f"#{item.rank} " if item.rank is not None else ""
                first, second = f"{rank}{item.score:.3f}", f"pid {pid}"
            _put(canvas, first, (x + 1, y + box_h + 13))
            _put(canvas, second, (x + 1, y + box_h + 27), color=second_color)
        if cut is not None:  # the threshold: everything right of the bar scored below it
            bar = cut - (SEPARATOR if cut == items[1][1] else GAP) // 2
            canvas[y:y + box_h, bar - 1:bar + 1] = RED
    return canvas


def save_grid(rows: Sequence[GridRow], path: str | os.PathLike, cell_height: int = 128) -> None:
    """Write :func:`render_grid` as an image (format from the suffix: .png, .jpg), atomically."""
    suffix = os.path.splitext(os.fspath(path))[1].lower() or ".png"
    picture = render_grid(rows, cell_height)
    try:
        ok, encoded = cv2.imencode(suffix, picture)
    except cv2.error:
        ok = False
    if not ok:
        raise GalleryError(f"{path}: cannot encode the picture as {suffix}")
    atomic_write_bytes(path, encoded.tobytes())
