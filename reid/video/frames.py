"""Frames of one video file or one folder of frame images, with their times.

OpenCV reads both. A video's header is only a promise. A file cut short (a copy interrupted, a
recorder that crashed) ends before the duration its header gives, and the reader says so in
:attr:`FrameSource.ended_early` instead of leaving a silent gap. Headers also mislead: the
shared crowd clip claims 682 frames at 50 fps, and decodes as 341 frames 40 ms apart. So a
video frame's time is the decoder's timestamp (from the first frame), falling back to index
over frame rate only where the decoder gives none, and "ended early" compares the last time
with the header's duration rather than counting frames. A folder's frames are index over rate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Iterator

import cv2
import numpy as np

from reid.utils.io import file_sha256
from reid.video.errors import FootageError

#: Frame images a folder source reads, by extension (case-insensitive).
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: A folder without a frame rate (no ``--fps``, no MOTChallenge ``seqinfo.ini`` beside it).
DEFAULT_FOLDER_FPS = 10.0
#: A video file up to this size is identified by the SHA-256 of all its bytes; a larger one by
#: its size and its first and last :data:`DIGEST_ENDS` bytes (see :func:`content_digest`).
WHOLE_DIGEST_BYTES = 64 * 2**20
DIGEST_ENDS = 2**20


@dataclasses.dataclass(frozen=True)
class Frame:
    """``index``: 0-based position in the source; ``time``: seconds from its first frame;
    ``image``: RGB uint8 (height, width, 3)."""

    index: int
    time: float
    image: np.ndarray


def frame_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The frame images of a folder source, in the order they are read."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file())


def content_digest(path: str | os.PathLike) -> str:
    """What identifies a source by its content, whatever its path, so that a copy of an indexed
    video is known as one (as crops are known by their files' SHA-256).

    A video file: the SHA-256 of its bytes (as ``sha256sum`` gives it), or, above
    :data:`WHOLE_DIGEST_BYTES`, ``ends:`` and the SHA-256 of its size and first and last
    megabyte: every run digests every video it is given, also those it then skips, and reading
    hours of recording whole for that would cost minutes; two recordings of one size whose first
    and last megabytes of compressed frames agree are not met in practice. A frame folder:
    ``frames:`` and the SHA-256 of its frames' names and sizes and of its first and last
    frame's bytes.
    """
    path = pathlib.Path(path)
    try:
        if path.is_dir():
            files = frame_files(path)
            if not files:
                raise FootageError(f"{path}: folder has no frame images "
                                   f"({', '.join(FRAME_EXTENSIONS)})")
            digest = hashlib.sha256()
            for file in files:
                digest.update(f"{file.name}\0{file.stat().st_size}\n".encode())
            for file in (files[0], files[-1]):
                digest.update(file_sha256(file).encode())
            return f"frames:{digest.hexdigest()}"
        size = path.stat().st_size
        if size <= WHOLE_DIGEST_BYTES:
            return file_sha256(path)
        digest = hashlib.sha256(f"{size}\n".encode())
        with open(path, "rb") as f:
            digest.update(f.read(DIGEST_ENDS))
            f.seek(size - DIGEST_ENDS)
            digest.update(f.read(DIGEST_ENDS))
        return f"ends:{digest.hexdigest()}"
    except FileNotFoundError:
        raise FootageError(f"{path}: no such video file or frame folder") from None
    except OSError as exc:
        raise FootageError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") \
            from None


def _seqinfo_fps(folder: pathlib.Path) -> float | None:
    """The frame rate of a MOTChallenge sequence (``SEQ/img1/`` with ``SEQ/seqinfo.ini``)."""
    for ini in (folder / "seqinfo.ini", folder.parent / "seqinfo.ini"):
        if ini.is_file():
            for line in ini.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() == "framerate":
                    try:
                        return float(value)
                    except ValueError:
                        raise FootageError(f"{ini}: frameRate {value.strip()!r} is not a "
                                           f"number") from None
    return None


class FrameSource:
    """Frames of ``path`` (a video file or a folder of frame images), every ``every``-th.

    ``fps`` overrides the rate (a folder has none of its own; a video's header may be wrong).
    Iterate once; afterwards :attr:`frames_read` and :attr:`ended_early` tell what was read.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None, every: int = 1) -> None:
        self.path = pathlib.Path(path)
        if every < 1:
            raise FootageError(f"every: expected a positive number of frames, got {every}",
                               field="every")
        if fps is not None and not fps > 0:
            raise FootageError(f"fps: expected a positive frame rate, got {fps}", field="fps")
        self.every = every
        self.frames_read = 0  # frames yielded
        self.frames_seen = 0  # frames the source gave, skipped ones included
        self.last_time = 0.0  # time of the last frame the source gave
        self.ended_early = False
        self.stopped_by: str | None = None  # why the source ended early, when it did
        self._files: list[pathlib.Path] | None = None
        self._header_duration: float | None = None
        if self.path.is_dir():
            self._files = frame_files(self.path)
            if not self._files:
                raise FootageError(f"{self.path}: folder has no frame images "
                                   f"({', '.join(FRAME_EXTENSIONS)})")
            first = cv2.imread(str(self._files[0]), cv2.IMREAD_COLOR)
            if first is None:
                raise FootageError(f"{self._files[0]}: cannot read this frame image")
            self.height, self.width = first.shape[:2]
            self.frame_count: int | None = len(self._files)
            self.fps = fps or _seqinfo_fps(self.path) or DEFAULT_FOLDER_FPS
        elif self.path.is_file():
            capture = cv2.VideoCapture(str(self.path))
            try:
                if not capture.isOpened():
                    raise FootageError(f"{self.path}: cannot open this video (not a video "
                                       f"file, or a codec OpenCV lacks)")
                self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
                self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
                count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
                header_fps = float(capture.get(cv2.CAP_PROP_FPS))
            finally:
                capture.release()
            self.frame_count = count if count > 0 else None
            if fps is None and not header_fps > 0:
                raise FootageError(f"{self.path}: the video gives no frame rate; give one",
                                   field="fps")
            self.fps = fps or header_fps
            # The header's duration is its own count over its own rate, whatever fps says.
            self._header_duration = (count / header_fps if count > 0 and header_fps > 0
                                     else None)
        else:
            raise FootageError(f"{self.path}: no such video file or frame folder")

    @property
    def duration(self) -> float | None:
        """Seconds the source should last: a video's header's, a folder's frames over rate."""
        if self._files is None:
            return self._header_duration
        return None if self.frame_count is None else self.frame_count / self.fps

    @property
    def expected_frames(self) -> int | None:
        """Frames the iteration should yield (every ``every``-th of the frame count)."""
        if self.frame_count is None:
            return None
        return (self.frame_count + self.every - 1) // self.every

    def __iter__(self) -> Iterator[Frame]:
        if self._files is not None:
            yield from self._folder_frames()
        else:
            yield from self._video_frames()

    def _folder_frames(self) -> Iterator[Frame]:
        assert self._files is not None
        for index in range(0, len(self._files), self.every):
            path = self._files[index]
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            # A bad frame ends the folder as a cut-off video ends: what came before is kept.
            if bgr is None:
                self.ended_early, self.stopped_by = True, f"{path.name} cannot be read"
                return
            if bgr.shape[:2] != (self.height, self.width):
                self.ended_early = True
                self.stopped_by = (f"{path.name} is {bgr.shape[1]}x{bgr.shape[0]}, not "
                                   f"{self.width}x{self.height} as the first frame")
                return
            self.frames_read += 1
            self.frames_seen = index + 1
            self.last_time = index / self.fps
            yield Frame(index, index / self.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def _video_frames(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise FootageError(f"{self.path}: cannot open this video")
        index = 0
        first_msec: float | None = None
        previous = -1.0
        stamped_frames = 0  # frames whose time is the decoder's own
        try:
            while True:
                # grab() skips decoding the frames --every leaves out.
                if not capture.grab():
                    break
                msec = float(capture.get(cv2.CAP_PROP_POS_MSEC))
                first_msec = msec if first_msec is None else first_msec
                stamped = (msec - first_msec) / 1000.0
                if index == 0 or (stamped > previous and msec >= 0):
                    now = stamped
                    stamped_frames += index > 0
                else:  # no timestamp (some containers), or one that does not advance: step on
                    step = previous / (index - 1) if index > 1 and previous > 0 else 1 / self.fps
                    now = previous + step
                previous = now
                if index % self.every == 0:
                    ok, bgr = capture.retrieve()
                    if not ok or bgr is None:
                        break
                    self.frames_read += 1
                    yield Frame(index, now, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
                self.frames_seen = index
                self.last_time = now
        finally:
            capture.release()
        if stamped_frames:  # times are the decoder's: compare with the header's duration
            duration = self.duration
            short = duration is not None and self.last_time < duration - max(1.0, 3.0 / self.fps)
        else:  # times are counted (--fps): compare frame counts
            short = self.frame_count is not None and index < self.frame_count
        self.ended_early = bool(short)

    @property
    def measured_fps(self) -> float:
        """Frames per second as read (the header's rate until frames were read, or when the
        timestamps give no better): what times and durations are computed with."""
        if self.frames_seen > 1 and self.last_time > 0:
            return (self.frames_seen - 1) / self.last_time
        return self.fps
