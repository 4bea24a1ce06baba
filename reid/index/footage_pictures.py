"""Pictures of footage search results, drawn from the index alone (its media folder).

* The contact sheet: per query a row with the query, then per appearance its best crop and the
  whole frame it was cut from with the box drawn, captioned with camera, time and score; an
  appearance below the match threshold is faded, as in the crop grid (:mod:`reid.index.grid`).
* The timeline: per query a lane per camera over the time the cameras recorded, with a bar for
  each appearance where it happened, green when it matches, grey when it does not. With every
  video's start time known, the axis is wall-clock time, so cameras line up; otherwise it is
  seconds from each video's start.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import cv2
import numpy as np

from reid.index import media
from reid.index.appearances import AppearanceResult, clock, wall_time
from reid.index.errors import GalleryError
from reid.index.footage import VideoRecord
from reid.index.grid import BACKGROUND, BLUE, FADED, GREEN, PLACEHOLDER, RED, TEXT, _put
from reid.utils.io import atomic_write_bytes

GAP = 8
CAPTION = 34
GREY = (170, 170, 170)
AMBER = (40, 160, 230)


def _fit(image: np.ndarray | None, height: int, width: int | None = None) -> np.ndarray:
    """BGR ``image`` scaled to ``height`` (and at most ``width``); a grey cell when missing."""
    if image is None or image.size == 0:
        cell = np.full((height, width or height // 2, 3), PLACEHOLDER, np.uint8)
        _put(cell, "missing", (2, height // 2), 0.32)
        return cell
    h, w = image.shape[:2]
    scale = height / h if width is None else min(height / h, width / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else
                      cv2.INTER_LINEAR)


def _bgr(rgb: np.ndarray | None) -> np.ndarray | None:
    return None if rgb is None else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _paste(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    h, w = image.shape[:2]
    canvas[y:y + h, x:x + w] = image[:canvas.shape[0] - y, :canvas.shape[1] - x]


def _faded(image: np.ndarray) -> np.ndarray:
    return cv2.addWeighted(image, FADED, np.full_like(image, 255), 1 - FADED, 0)


def render_sheet(results: Sequence[AppearanceResult], index_dir: str | os.PathLike,
                 videos: dict[str, VideoRecord], height: int = 160) -> np.ndarray:
    """The contact sheet as a BGR array (see the module docstring)."""
    rows = []
    for r in results:
        if r.query.image is not None:
            query = cv2.imread(r.query.image, cv2.IMREAD_COLOR)
        else:
            query = _bgr(media.read_rgb(index_dir, r.thumb)) if r.thumb else None
        name = os.path.basename(r.query.image) if r.query.image else r.query.label
        cells = [(_fit(query, height), ["query", name[:max(4, height // 2 // 7)]], BLUE)]
        if r.in_gallery is False:
            cells[0][1][1] = "no match"
        for a in r.appearances:
            crop = _fit(_bgr(media.read_rgb(index_dir, a.thumb)) if a.thumb else
                        (cv2.imread(a.path, cv2.IMREAD_COLOR) if a.path else None), height)
            frame = None
            if a.frame_image:
                frame = _bgr(media.read_rgb(index_dir, a.frame_image))
                video = videos.get(a.video or "")
                if frame is not None and video is not None and a.box is not None:
                    s = frame.shape[1] / video.width
                    x1, y1, x2, y2 = (int(round(v * s)) for v in a.box)
                    cv2.rectangle(frame, (x1, y1), (x2, y2), GREEN if a.match is not False
                                  else RED, 2)
            when = ""
            if a.track is not None:  # wall-clock time when known, as the text says
                when = wall_time(a.started_at) if a.started_at else clock(a.start)
            caption = [f"#{a.rank} {a.score:.2f} cam {a.camera}",
                       f"{when} track {a.track}" if a.track is not None else "image"]
            color = None if a.match is None else (GREEN if a.match else RED)
            if a.match is False:
                crop = _faded(crop)
                frame = None if frame is None else _faded(frame)
            cells.append((crop, caption, color))
            if frame is not None:
                cells.append((_fit(frame, height), ["", ""], None))
        rows.append(cells)
    width = max(sum(c[0].shape[1] + GAP + 6 for c in cells) for cells in rows) + GAP
    row_h = height + 6 + CAPTION + GAP
    canvas = np.full((GAP + len(rows) * row_h, max(width, 200), 3), BACKGROUND, np.uint8)
    for i, cells in enumerate(rows):
        y, x = GAP + i * row_h, GAP
        for image, caption, color in cells:
            h, w = image.shape[:2]
            if color is not None:
                canvas[y:y + h + 6, x:x + w + 6] = color
            _paste(canvas, image, x + 3, y + 3)
            _put(canvas, caption[0], (x + 1, y + h + 6 + 13))
            _put(canvas, caption[1], (x + 1, y + h + 6 + 27),
                 color=RED if caption[1] == "no match" else TEXT)
            x += w + 6 + GAP
    return canvas


def _span(videos: Sequence[VideoRecord]
          ) -> tuple[datetime.tzinfo | None | bool, float, float]:
    """(the zone of the wall clock, False without one; axis start; axis end): seconds since the
    epoch, or since each video's start. Ticks are written in the first video's zone (None:
    local time, as its start time was written without one)."""
    if videos and all(v.start_time for v in videos):
        starts = [datetime.datetime.fromisoformat(v.start_time) for v in videos]
        ends = [s.timestamp() + v.frames / v.fps for s, v in zip(starts, videos)]
        return starts[0].tzinfo, min(s.timestamp() for s in starts), max(ends)
    return False, 0.0, max([v.frames / v.fps for v in videos] + [1.0])


def render_timeline(results: Sequence[AppearanceResult], videos: Sequence[VideoRecord],
                    width: int = 1000) -> np.ndarray:
    """The timeline as a BGR array (see the module docstring)."""
    cameras = sorted({v.camera for v in videos} | {a.camera for r in results
                                                    for a in r.appearances})
    zone, t0, t1 = _span(videos)
    wall = zone is not False
    t1 = max(t1, t0 + 1e-3)
    label_w, top, bar_h = 90, 30, 9
    plot_w = width - label_w - 2 * GAP
    by_video = {v.video: v for v in videos}

    def lane_height(r: AppearanceResult, camera: str) -> int:
        # One row per appearance, so that passages at the same time stay apart.
        rows = sum(a.camera == camera and a.track is not None for a in r.appearances)
        return max(24, rows * (bar_h + 3) + 8)

    panels = [top + sum(lane_height(r, c) for c in cameras) + 30 for r in results]
    canvas = np.full((max(1, sum(panels)) + GAP, width, 3), BACKGROUND, np.uint8)

    def x_of(t: float) -> int:
        return label_w + GAP + int(round((t - t0) / (t1 - t0) * plot_w))

    def offset(video: str | None) -> float:
        v = by_video.get(video or "")
        return datetime.datetime.fromisoformat(v.start_time).timestamp() if wall and v else 0.0

    def tick(t: float) -> str:
        if wall:
            return datetime.datetime.fromtimestamp(t, zone or None).strftime("%H:%M:%S")
        return clock(t)

    y0 = GAP
    for r, panel in zip(results, panels):
        _put(canvas, f"query {r.query.label}"[:110], (GAP, y0 + 14), 0.42)
        y = y0 + top
        for camera in cameras:
            lane = lane_height(r, camera)
            _put(canvas, f"camera {camera}"[:14], (GAP, y + 16))
            canvas[y + lane - 2, label_w + GAP:label_w + GAP + plot_w] = GREY
            for v in videos:  # when the camera recorded
                if v.camera == camera:
                    start = offset(v.video)
                    canvas[y + 2:y + lane - 2, x_of(start):x_of(start + v.frames / v.fps)] = \
                        (238, 238, 238)
            row = 0
            for a in r.appearances:
                if a.camera != camera or a.track is None:
                    continue
                base = offset(a.video)
                x1 = x_of(base + a.start)
                x2 = max(x_of(base + a.end), x1 + 3)
                by = y + 4 + row * (bar_h + 3)
                canvas[by:by + bar_h, x1:x2] = AMBER if a.match is None else (
                    GREEN if a.match else GREY)
                label = f"#{a.rank} {a.score:.2f}"
                lx = x2 + 4 if x2 + 4 + 7 * len(label) < width else max(label_w, x1 - 7 * len(label))
                _put(canvas, label, (lx, by + bar_h - 1), 0.3)
                row += 1
            y += lane
        _put(canvas, tick(t0), (label_w + GAP, y + 14), 0.34)
        end_label = tick(t1)
        _put(canvas, end_label, (label_w + GAP + plot_w - 7 * len(end_label), y + 14), 0.34)
        y0 += panel
    return canvas


def save_picture(picture: np.ndarray, path: str | os.PathLike) -> None:
    """Write a picture (format from the suffix), atomically."""
    suffix = os.path.splitext(os.fspath(path))[1].lower() or ".png"
    ok, encoded = cv2.imencode(suffix, picture)
    if not ok:
        raise GalleryError(f"{path}: cannot encode the picture as {suffix}")
    atomic_write_bytes(path, encoded.tobytes())
