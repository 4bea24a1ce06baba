"""Index camera footage: read, detect, track, choose crops, embed, store. What
``tools/index_video.py`` runs.

Each video is processed on its own and committed to the index on its own, under the index's
writer lock (:mod:`reid.index.versioned_folder`), which is taken only for the commit: a second
writer waits seconds, not the length of a video, and then adds to what the first wrote. Track
numbers are given at the commit, per camera, so two writers indexing the same camera cannot
hand out one number twice. A run interrupted after some videos keeps those; the video being
processed is simply not in the index. The pictures of a video's entries are written to the
index's media folder before its commit (:mod:`reid.index.media`); those a failed or killed run
left are deleted by the next writer (:func:`reid.index.gallery.prune_media`).

A video is known by its path and by its content (:func:`reid.video.frames.content_digest`), so
a copy of an indexed video is skipped. A video that gives no entries (nobody in it, or
detections that miss it) is not recorded, with a warning: recorded, it would pass for indexed
and a corrected run would skip it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from reid.config import VideoConfig
from reid.index import media
from reid.index import versioned_folder as vf
from reid.index.appearances import clock
from reid.index.errors import GalleryError
from reid.index.footage import (FootageEntry, TrackRecord, VideoRecord, camera_problem,
                                 track_mean)
from reid.index.gallery import GalleryIndex, ModelInfo, is_gallery_index, prune_media
from reid.utils.progress import Progress
from reid.video.detector import Detector, MotDetectionFile, load_detector
from reid.video.errors import FootageError
from reid.video.frames import FrameSource, content_digest
from reid.video.mot import MotRow, write_mot
from reid.video.selection import Candidate, CandidatePool, crop_quality
from reid.video.tracking import Tracker

#: Candidates kept per track while it runs, per crop wanted (see :mod:`reid.video.selection`).
POOL_PER_CROP = 4
#: Thumbnails are stored at most this tall: enough for a contact sheet, a tenth of the bytes of
#: a full-resolution crop from 4K footage.
THUMB_MAX_HEIGHT = 256
#: The stages whose time is reported, in pipeline order.
STAGES = ("decode", "detect", "track", "select", "embed", "write")
EMBED_BATCH = 64
#: Room a start time must leave before the calendar's end after the video's duration (which a
#: header can understate) and before its beginning (a time is moved across zones to compare
#: cameras): what is kept is representable, whatever is done with it later.
CALENDAR_MARGIN = datetime.timedelta(days=366)


@dataclasses.dataclass(frozen=True)
class VideoInput:
    """One source to index: a video file or frame folder, its camera, the wall-clock time of
    its first frame (ISO 8601) when known, and precomputed detections (MOTChallenge det.txt)."""

    path: pathlib.Path
    camera: str
    start_time: str | None = None
    detections: pathlib.Path | None = None

    def __post_init__(self) -> None:
        problem = camera_problem(self.camera)
        if problem is not None:
            raise FootageError(f"camera name {self.camera!r} (of {self.path}) {problem}")
        if self.start_time is not None:
            check_start_time(self.start_time)


def parse_start_time(text: str, where: str = "start time") -> str:
    """An ISO 8601 time, normalised; a time without a zone is taken as written (local)."""
    try:
        iso = datetime.datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise FootageError(f"{where}: {text!r} is not an ISO 8601 time such as "
                           f"2026-12-02T09:30:00", field="start_time") from None
    check_start_time(iso, where=where)
    return iso


def check_start_time(start: str, seconds: float = 0.0, where: str = "start time") -> None:
    """Refuse a start time whose video's times (``seconds`` long, and a margin) would leave
    the calendar, before any work rather than when the first time is computed."""
    try:
        moment = datetime.datetime.fromisoformat(start)
        moment - CALENDAR_MARGIN
        moment + datetime.timedelta(seconds=max(0.0, seconds)) + CALENDAR_MARGIN
        moment.timestamp()
    except (OverflowError, ValueError, OSError):
        raise FootageError(f"{where}: {start!r} is out of range (a video's times must fall "
                           f"between the years 2 and 9998)", field="start_time") from None


def video_inputs(videos: Sequence[str | os.PathLike], cameras: Sequence[str] = (),
                 start_times: Sequence[str] = (), detections: Sequence[str | os.PathLike] = ()
                 ) -> list[VideoInput]:
    """Pair the sources with their cameras, start times and detection files. Each list is
    empty or has one value per video, in order; one camera alone is every video's (several
    recordings of one camera). A video's camera defaults to its file name without the
    extension."""
    if not videos:
        raise FootageError("no video given", field="video")

    def per_video(values: Sequence, field: str, shared: bool) -> list:
        if not values:
            return [None] * len(videos)
        if len(values) == 1 and shared:
            return list(values) * len(videos)
        if len(values) != len(videos):
            raise FootageError(f"{field.replace('_', ' ')}: {len(values)} given for "
                               f"{len(videos)} videos; give one per video, in the order of "
                               f"the videos", field=(field, "video"))
        return list(values)

    cams = per_video(cameras, "camera", shared=True)
    starts = per_video(start_times, "start_time", shared=False)
    dets = per_video(detections, "detections", shared=False)
    out = []
    for video, cam, start, det in zip(videos, cams, starts, dets):
        path = pathlib.Path(video)
        camera = cam if cam is not None else path.stem
        if not camera or not str(camera).strip():
            raise FootageError(f"camera: empty camera name for {path}", field="camera")
        out.append(VideoInput(path, str(camera), None if start is None else
                              parse_start_time(start), None if det is None else pathlib.Path(det)))
    zoned = {_has_zone(i.start_time) for i in out if i.start_time}
    if len(zoned) > 1:
        raise FootageError("start time: give every time with a UTC offset (e.g. "
                           "2026-12-02T09:00:00+01:00) or none with one; mixed, the cameras "
                           "cannot be put on one clock", field="start_time")
    seen: set[str] = set()
    for item in out:
        key = os.path.realpath(item.path)
        if key in seen:
            raise FootageError(f"{item.path}: given twice")
        seen.add(key)
    return out


def _has_zone(iso: str) -> bool:
    return datetime.datetime.fromisoformat(iso).tzinfo is not None


def _check_zones(inputs: Sequence[VideoInput], gallery: GalleryIndex) -> None:
    """Start times added to an index agree with its videos' on having a UTC offset."""
    indexed = {_has_zone(v.start_time) for v in gallery.footage_videos() if v.start_time}
    given = {_has_zone(i.start_time) for i in inputs if i.start_time}
    if len(indexed | given) > 1:
        have = "with" if True in indexed else "without"
        raise FootageError(f"start time: the index's videos have start times {have} a UTC "
                           f"offset; give these {have} one too, so that all share one clock",
                           field="start_time")


def check_sampling(source: FrameSource, config: VideoConfig) -> None:
    """Refuse frames so far apart that no track could continue from one to the next: the
    tracker would end every track before confirming it, and index nothing."""
    step = source.every / source.fps
    if step >= config.track_gap_seconds:
        raise FootageError(f"{source.path}: a frame step of {source.every} at {source.fps:g} fps "
                           f"leaves {step:.2f} s between frames, not less than "
                           f"video.track_gap_seconds {config.track_gap_seconds:g}: no track "
                           f"could continue; lower the frame step or raise "
                           f"video.track_gap_seconds", field="every")


@dataclasses.dataclass
class VideoReport:
    video: str
    camera: str
    detector: str
    frames: int  # frames processed
    ended_early: bool
    detections: int
    tracks: int  # confirmed tracks
    indexed_tracks: int
    entries: int
    seconds: float
    stage_seconds: dict[str, float]
    skipped: str | None = None  # why the video was not indexed
    empty: str | None = None  # why the video gave no entries (and so was not recorded)
    last_time: float = 0.0  # seconds, the last frame read
    duration: float | None = None  # seconds, as the header promised
    stopped_by: str | None = None  # why a frame folder stopped early

    def format(self) -> str:
        if self.skipped:
            return f"{self.video} (camera {self.camera}): skipped, {self.skipped}"
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        per_frame = self.detections / self.frames if self.frames else 0.0
        total = sum(self.stage_seconds.values()) or 1.0
        shares = ", ".join(f"{name} {100 * self.stage_seconds[name] / total:.0f}%"
                           for name in STAGES)
        lines = [f"{self.video} (camera {self.camera}): {self.frames} frames in "
                 f"{self.seconds:.1f} s ({fps:.1f} frames/s; {shares})",
                 f"  {self.detections} detections ({per_frame:.1f} per frame, {self.detector}), "
                 f"{self.tracks} tracks, {self.indexed_tracks} indexed as {self.entries} "
                 f"entries"]
        if self.empty:
            lines.append(f"  {self.warning()}")
        if self.ended_early and self.stopped_by:
            lines.append(f"  warning: the frames stop at {clock(self.last_time)}: "
                         f"{self.stopped_by}; what was read is indexed")
        elif self.ended_early:
            lines.append(f"  warning: the video ended at {clock(self.last_time)}, before the "
                         f"{clock(self.duration or 0.0)} its header promises (truncated or "
                         f"damaged); what was read is indexed")
        return "\n".join(lines)


    def warning(self) -> str:
        return (f"warning: {self.video}: no entries ({self.empty}); not recorded, so a later "
                f"run indexes it")


def _why_empty(report: VideoReport, record: VideoRecord, detector: Detector,
               config: VideoConfig) -> str:
    """Why a video gave no entries, in terms of what the user can check or change."""
    if isinstance(detector, MotDetectionFile):
        frames, name = detector.frames, detector.path.name
        if not frames:
            return f"{name} has no person's box"
        if frames[0] > record.frames:
            return (f"the boxes of {name} are on frames {frames[0]}-{frames[-1]}, after the "
                    f"video's last frame, {record.frames}")
        if report.detections == 0:
            return (f"no box of {name} on the frames read lies inside the {record.width}x"
                    f"{record.height} frame and is at least video.min_box_height "
                    f"({config.min_box_height}) pixels tall")
    if report.detections == 0:
        return f"nobody detected in {report.frames} frames"
    if report.tracks == 0:
        return (f"{report.detections} detections in {report.frames} frames but no track with a "
                f"crop of at least 4x8 pixels; a person is indexed once followed for "
                f"video.track_min_boxes ({config.track_min_boxes}) boxes")
    return (f"{report.detections} detections, {report.tracks} tracks, none followed for "
            f"video.track_min_boxes ({config.track_min_boxes}) boxes")


@dataclasses.dataclass
class _TrackState:
    pool: CandidatePool
    face_quality: float = -1.0
    face_frame: bytes | None = None  # JPEG of the frame of the best candidate so far
    face_candidate: Candidate | None = None


@dataclasses.dataclass(frozen=True)
class _FinishedTrack:
    """What is kept of a track once it ended: its span, its chosen crops and its face."""

    record: TrackRecord
    chosen: list[Candidate]
    face: Candidate
    face_frame: bytes | None


def _finish(state: _TrackState, track_id: int, camera: str, count: int) -> _FinishedTrack:
    pool = state.pool
    record = TrackRecord(camera, track_id, "", pool.first_frame, pool.last_frame,
                         pool.first_time, pool.last_time, pool.boxes)
    return _FinishedTrack(record, pool.choose(count), state.face_candidate or pool.best(),
                          state.face_frame)


def _crop(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]] | None:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, y1 = max(0.0, x1), max(0.0, y1)
    x2, y2 = min(float(width), x2), min(float(height), y2)
    ix1, iy1, ix2, iy2 = int(x1), int(y1), int(round(x2)), int(round(y2))
    if ix2 - ix1 < 4 or iy2 - iy1 < 8:
        return None
    return image[iy1:iy2, ix1:ix2], (x1, y1, x2, y2)


def _scaled_frame(image: np.ndarray, width: int) -> np.ndarray:
    if width <= 0 or image.shape[1] <= width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _thumbnail(crop: np.ndarray) -> np.ndarray:
    if crop.shape[0] <= THUMB_MAX_HEIGHT:
        return crop
    width = max(1, round(crop.shape[1] * THUMB_MAX_HEIGHT / crop.shape[0]))
    return cv2.resize(crop, (width, THUMB_MAX_HEIGHT), interpolation=cv2.INTER_AREA)


@dataclasses.dataclass
class _Processed:
    """What one video gave before it is committed."""

    record: VideoRecord
    tracks: list[TrackRecord]  # track numbers local to the video (0, 1, ...)
    entries: list[FootageEntry]
    vectors: np.ndarray
    mot_rows: list[tuple]  # (frame 1-based, local track, x, y, w, h, score)
    report: VideoReport


class _TrackWriter:
    """Turns each track into index entries as soon as it ends: its pictures go to the media
    folder at once and its crops are embedded a batch at a time, so what a finished track keeps
    in memory is a few embeddings, however long the recording."""

    def __init__(self, camera: str, index_dir: pathlib.Path, embedder: Any,
                 stage: dict[str, float], before_pictures: Callable[[], None]) -> None:
        self.camera, self.index_dir, self.embedder, self.stage = camera, index_dir, embedder, stage
        self.before_pictures = before_pictures
        self.tracks: list[TrackRecord] = []
        self.entries: list[FootageEntry] = []
        self._crop_vectors: dict[int, np.ndarray] = {}  # entry position -> its embedding
        self._pending: list[tuple[int, np.ndarray]] = []  # (entry position, crop)
        self._members: list[tuple[list[int], int]] = []  # per track: crop positions, mean's

    def add(self, done: _FinishedTrack) -> None:
        tick = time.perf_counter()
        if not self.tracks:
            self.before_pictures()
        track = done.record.track
        self.tracks.append(done.record)
        crops = []
        for c in done.chosen:
            thumb = media.store(self.index_dir, media.encode_jpeg(_thumbnail(c.crop)))
            crops.append(len(self.entries))
            self._pending.append((len(self.entries), c.crop))
            self.entries.append(FootageEntry("crop", self.camera, track, c.frame, c.time, c.box,
                                             c.score, thumb))
        face = done.face
        frame_name = None if done.face_frame is None else media.store(self.index_dir,
                                                                      done.face_frame)
        face_thumb = media.store(self.index_dir, media.encode_jpeg(_thumbnail(face.crop)))
        self._members.append((crops, len(self.entries)))
        self.entries.append(FootageEntry("track", self.camera, track, face.frame, face.time,
                                         face.box, face.score, face_thumb, frame_name))
        self.stage["write"] += time.perf_counter() - tick
        if len(self._pending) >= EMBED_BATCH:
            self._embed()

    def _embed(self) -> None:
        if not self._pending:
            return
        tick = time.perf_counter()
        # The crops as cut: the embedder prepares them as the training pipeline does.
        vectors = self.embedder.embed([crop for _, crop in self._pending])
        for (position, _), vector in zip(self._pending, vectors):
            self._crop_vectors[position] = vector
        self._pending = []
        self.stage["embed"] += time.perf_counter() - tick

    def result(self) -> tuple[list[TrackRecord], list[FootageEntry], np.ndarray]:
        """(tracks, entries, one embedding per entry: a crop's own, a track's mean of its
        crops', unit length)."""
        self._embed()
        vectors = np.zeros((len(self.entries), self.embedder.embedding_dim), np.float32)
        for position, vector in self._crop_vectors.items():
            vectors[position] = vector
        for crops, mean_position in self._members:
            vectors[mean_position] = track_mean(vectors[crops])
        return self.tracks, self.entries, vectors


def process_video(item: VideoInput, embedder: Any, config: VideoConfig, index_dir: pathlib.Path,
                  every: int = 1, fps: float | None = None, progress: bool = True,
                  detector: Detector | None = None, keep_boxes: bool = False,
                  digest: str | None = None,
                  before_pictures: Callable[[], None] = lambda: None) -> _Processed:
    """Detect, track, choose and embed the crops of one video; write their pictures into the
    index's media folder, calling ``before_pictures`` before the first (the caller holds
    :func:`reid.index.versioned_folder.writing_shared` from then until its commit). Nothing is
    added to the index yet. ``keep_boxes``: also keep every tracked box (``mot_rows``), for a
    tracks file. ``digest``: the video's :func:`content_digest`, when already computed."""
    start = time.perf_counter()
    stage = dict.fromkeys(STAGES, 0.0)
    digest = digest or content_digest(item.path)
    source = FrameSource(item.path, fps=fps, every=every)
    check_sampling(source, config)
    if item.start_time is not None:
        check_start_time(item.start_time, source.duration or 0.0)
    detector = detector or load_detector(config, item.detections)
    tracker = Tracker(config, source.fps / every)
    height = embedder.input_size[0]
    states: dict[int, _TrackState] = {}  # tracks that may still continue
    last_seen: dict[int, float] = {}  # when the tracker last gave each of them a box
    ended: set[int] = set()
    writer = _TrackWriter(item.camera, index_dir, embedder, stage, before_pictures)
    tracks_seen = 0
    step = every / source.fps  # seconds between the frames processed

    def finish(track_ids: list[int]) -> None:
        # A track the tracker has dropped is indexed now, and forgotten but for its entries.
        for t in track_ids:
            state = states.pop(t)
            last_seen.pop(t, None)
            ended.add(t)
            if state.pool.boxes >= config.track_min_boxes:
                writer.add(_finish(state, t, item.camera, config.crops_per_track))

    mot_rows: list[tuple] = []  # every tracked box, for --save-tracks only
    detections = 0
    # Progress in seconds of video: a header's frame count can be wrong (see frames.py), and
    # "video seconds per second" is how far from real time the pipeline runs.
    bar = Progress(f"{item.path.name} (camera {item.camera})", source.duration, "video second",
                   enabled=progress)
    frames = iter(source)
    tick = time.perf_counter()
    for frame in frames:
        now = time.perf_counter()
        stage["decode"] += now - tick
        found = detector.detect(frame.image, frame.index)
        tick, now = now, time.perf_counter()
        stage["detect"] += now - tick
        tracked = tracker.update(found, frame.time)
        tick, now = now, time.perf_counter()
        stage["track"] += now - tick
        detections += len(found)
        for track_id, box, score in zip(tracked.track_ids, tracked.boxes, tracked.scores):
            track_id = int(track_id)
            if track_id in ended:  # the tracker's ids only count up; never mix two passages
                continue
            last_seen[track_id] = frame.time
            cut = _crop(frame.image, box)
            if cut is None:
                continue
            crop, clipped = cut
            if track_id not in states:
                tracks_seen += 1
                states[track_id] = _TrackState(
                    CandidatePool(POOL_PER_CROP * config.crops_per_track))
            state = states[track_id]
            quality = crop_quality(crop, clipped, float(score), frame.image.shape[:2], height)
            candidate = Candidate(frame.index, frame.time, clipped, float(score), quality,
                                  crop.copy())
            state.pool.add(candidate)
            if keep_boxes:
                x1, y1, x2, y2 = clipped
                mot_rows.append((frame.index + 1, track_id, x1, y1, x2 - x1, y2 - y1,
                                 float(score)))
            # The full frame is kept only for the best crop so far, encoded at once, so a
            # running track costs one small JPEG of memory however long it runs.
            if config.frame_width and quality > state.face_quality:
                state.face_quality = quality
                state.face_candidate = candidate
                state.face_frame = media.encode_jpeg(_scaled_frame(frame.image,
                                                                   config.frame_width))
        # The tracker drops a track unseen for the gap; half as long again, and it is gone.
        gone = frame.time - 1.5 * config.track_gap_seconds - step
        finish([t for t in states if last_seen.get(t, -math.inf) < gone])
        for t in [t for t, seen in last_seen.items() if seen < gone]:
            del last_seen[t]  # seen, never cropped (slivers at the edge)
        tick = time.perf_counter()
        stage["select"] += tick - now
        if progress:
            bar.update(frame.time, f" ({source.frames_read / bar.elapsed:.1f} frames/s)")
    bar.close()
    if source.frames_read == 0:
        raise FootageError(f"{item.path}: no frame could be read")
    finish(list(states))
    tracks, entries, vectors = writer.result()

    record = VideoRecord(os.path.realpath(item.path), item.camera, source.measured_fps,
                         source.width, source.height, source.frames_seen,
                         not source.ended_early, item.start_time, digest=digest)
    tracks = [dataclasses.replace(t, video=record.video) for t in tracks]
    report = VideoReport(str(item.path), item.camera, detector.describe(),
                         source.frames_read, source.ended_early,
                         detections, tracks_seen, len(tracks), len(entries),
                         time.perf_counter() - start, stage, last_time=source.last_time,
                         duration=source.duration, stopped_by=source.stopped_by)
    if not entries:
        report.empty = _why_empty(report, record, detector, config)
    return _Processed(record, tracks, entries, vectors, mot_rows, report)


def _record_missing_digests(gallery: GalleryIndex) -> None:
    """Digest the videos indexed before digests were kept whose files are still at their
    paths, unchanged since they were indexed, so that copies of them are known too (in
    memory: the next save keeps them). A file written after its video was indexed may hold
    another recording, whose copies must not be taken for the indexed one."""
    digests = {}
    for video in gallery.footage_videos():
        if video.digest is None and _unchanged_since(video.video, video.indexed_at):
            with contextlib.suppress(FootageError):  # unreadable now: known by its path only
                digests[video.video] = content_digest(video.video)
    if digests:
        gallery.record_video_digests(digests)


def _unchanged_since(path: str, indexed_at: str) -> bool:
    """True when ``path`` exists and nothing in it (a file, or a frame folder's files) was
    modified after ``indexed_at`` (an ISO time)."""
    try:
        when = datetime.datetime.fromisoformat(indexed_at).timestamp()
        files = [path] if os.path.isfile(path) else [e.path for e in os.scandir(path)]
        return bool(files) and all(os.stat(f).st_mtime <= when for f in files)
    except (OSError, ValueError):
        return False


def _indexed_as(gallery: GalleryIndex, record: VideoRecord) -> str | None:
    """Why ``record`` (path and content digest) is already in ``gallery``, or None."""
    found = gallery.indexed_video(record.video, record.digest)
    if found is None:
        return None
    if found.video != record.video:
        return f"already in the index as {found.video} (same content)"
    if found.digest is not None and record.digest is not None and found.digest != record.digest:
        return ("already in the index, though its content has changed since; give the new "
                "recording another name to index it")
    return "already in the index"


def _commit(processed: _Processed, index_dir: pathlib.Path, info: ModelInfo, create: bool,
            lock_timeout: float, log: Callable[[str], None]
            ) -> tuple[dict[int, int] | None, int, str | None]:
    """Add one processed video to the index under its writer lock; return (local track number
    -> the index's track number, or None when another writer indexed the video (or a copy of
    it) meanwhile; the index's entries after the commit; why it was not added)."""
    with vf.writer_lock(index_dir, lock_timeout, log):
        vf.check_pointer(index_dir)
        exists = is_gallery_index(index_dir)
        if create and exists:
            raise FootageError(f"{index_dir}: already holds a gallery index; append to it",
                               field="append")
        if exists:
            gallery = GalleryIndex.load(index_dir)
            gallery.check_model(info, where=str(index_dir))
        else:
            gallery = GalleryIndex(info)
        _record_missing_digests(gallery)
        why = _indexed_as(gallery, processed.record)
        if why is not None:
            return None, gallery.count, why
        first = gallery.next_track(processed.record.camera)
        # Numbered in the order the tracks began (they were indexed in the order they ended).
        ordered = sorted(processed.tracks, key=lambda t: (t.first_frame, t.track))
        numbers = {t.track: first + n for n, t in enumerate(ordered)}
        tracks = [dataclasses.replace(t, track=numbers[t.track]) for t in processed.tracks]
        entries = [dataclasses.replace(e, track=numbers[e.track]) for e in processed.entries]
        gallery.add_footage(processed.record, tracks, entries, processed.vectors)
        gallery.save(index_dir, locked=True)
    return numbers, gallery.count, None


def write_mot_tracks(path: pathlib.Path, rows: Sequence[tuple], numbers: dict[int, int]) -> None:
    """The tracker's boxes in MOTChallenge result format, ids the index's track numbers plus
    one (MOTChallenge ids start at 1); boxes of tracks too short to index are left out, as
    they are from the index."""
    write_mot(path, [MotRow(f, numbers[t] + 1, x, y, w, h, s)
                     for f, t, x, y, w, h, s in rows if t in numbers])


@dataclasses.dataclass
class FootageReport:
    index_dir: str
    model_note: str
    videos: list[VideoReport]
    count: int

    def format(self) -> str:
        """The closing summary (each video's report is logged as it is committed)."""
        done = [v for v in self.videos if not v.skipped and not v.empty]
        lines = [v.format() for v in self.videos if v.skipped]
        tracks = sum(v.indexed_tracks for v in done)
        if is_gallery_index(self.index_dir):
            lines.append(f"index {self.index_dir}: {self.count} entries; this run indexed "
                         f"{len(done)} videos, {tracks} tracks")
        else:
            lines.append(f"index {self.index_dir}: not written, nothing to index")
        # Repeated last, where it is seen: these videos are not in the index.
        lines.extend(v.warning() for v in self.videos if v.empty)
        return "\n".join(lines)


def index_footage(inputs: Sequence[VideoInput], index_dir: str | os.PathLike,
                  model: str | os.PathLike | None = None, *, config: VideoConfig | None = None,
                  append: bool = False, every: int = 1, fps: float | None = None,
                  runtime: str = "auto", progress: bool = True,
                  save_tracks: str | os.PathLike | None = None,
                  lock_timeout: float = vf.DEFAULT_LOCK_TIMEOUT,
                  log: Callable[[str], None] = print) -> FootageReport:
    """Index every video of ``inputs`` into the gallery index at ``index_dir`` (see the module
    docstring). A new index needs ``model``; an existing one needs ``append`` and keeps its own
    model unless ``model`` names a copy. A video already in the index is skipped.
    ``save_tracks``: also write each video's tracks in MOTChallenge format into this folder,
    as ``<camera>.txt`` (``<camera>-<video name>.txt`` when a camera has several videos)."""
    from reid.index.open import open_model

    config = config or VideoConfig()
    index_dir = pathlib.Path(index_dir)
    vf.check_writable_folder(index_dir)
    exists = is_gallery_index(index_dir)
    if exists and not append:
        raise FootageError(f"{index_dir}: already holds a gallery index; append to it",
                           field="append")
    existing = GalleryIndex.load(index_dir) if exists else None
    if model is None and existing is None:  # else the index's own (open_model)
        raise FootageError("model is required to build a new index", field="model")
    if existing is not None:
        _check_zones(inputs, existing)
    # Every source must open, and every detections file parse, before the model loads and
    # hours go into the first.
    shared: list[Detector] = []  # one model detector for all videos: loaded once
    detectors: list[Detector] = []
    for item in inputs:
        source = FrameSource(item.path, fps=fps, every=every)
        check_sampling(source, config)
        if item.start_time is not None:
            check_start_time(item.start_time, source.duration or 0.0,
                             where=f"{item.path}: start time")
        if item.detections is not None:
            detectors.append(load_detector(config, item.detections))
        else:
            shared = shared or [load_detector(config)]
            detectors.append(shared[0])
    digests = [content_digest(item.path) for item in inputs]
    for n, digest in enumerate(digests):
        if digest in digests[:n]:
            raise FootageError(f"{inputs[n].path}: same content as "
                               f"{inputs[digests.index(digest)].path}, given twice")
    if existing is not None:
        _record_missing_digests(existing)
    opened = open_model(existing, model, runtime, where=str(index_dir))
    embedder, note, info = opened.embedder, opened.note, opened.info
    log(note)
    if save_tracks is not None:
        pathlib.Path(save_tracks).mkdir(parents=True, exist_ok=True)
    cameras = [i.camera for i in inputs]
    reports: list[VideoReport] = []
    create = not exists
    count = 0 if existing is None else existing.count  # as of the last commit seen

    def skipped(item: VideoInput, why: str) -> VideoReport:
        return VideoReport(str(item.path), item.camera, "", 0, False, 0, 0, 0, 0, 0.0,
                           dict.fromkeys(STAGES, 0.0), skipped=why)

    try:
        for item, detector, digest in zip(inputs, detectors, digests):
            real = os.path.realpath(item.path)
            why = None if existing is None else _indexed_as(
                existing, VideoRecord(real, item.camera, 0.0, 0, 0, 0, True, digest=digest))
            if why is not None:
                reports.append(skipped(item, why))
                continue
            # The video's pictures are written before its commit: held from the first until
            # the commit, so that no other writer's clean-up deletes them meanwhile.
            with contextlib.ExitStack() as pictures:
                processed = process_video(
                    item, embedder, config, index_dir, every, fps, progress, detector,
                    keep_boxes=save_tracks is not None, digest=digest,
                    before_pictures=lambda: pictures.enter_context(vf.writing_shared(index_dir)))
                if not processed.entries:  # recorded, it would keep a later run from it
                    reports.append(processed.report)
                    log(processed.report.format())
                    continue
                tick = time.perf_counter()
                numbers, count, why = _commit(processed, index_dir, info, create, lock_timeout,
                                              log)
            create = False
            if numbers is None:  # another writer indexed it (or a copy) while this one worked
                reports.append(skipped(item, why or "already in the index"))
                log(reports[-1].format())
                continue
            if save_tracks is not None:
                name = item.camera if cameras.count(item.camera) == 1 else \
                    f"{item.camera}-{item.path.stem}"
                write_mot_tracks(pathlib.Path(save_tracks) / f"{name}.txt", processed.mot_rows,
                                 numbers)
            processed.report.stage_seconds["write"] += time.perf_counter() - tick
            processed.report.seconds += time.perf_counter() - tick
            reports.append(processed.report)
            log(processed.report.format())
    finally:
        # What failed or killed runs left in the media folder (this one's too, if it failed),
        # unless another writer is at work: it cleans up when it ends.
        with contextlib.suppress(GalleryError, OSError):
            removed = prune_media(index_dir, lock_timeout=0.0)
            if removed:
                log(f"{index_dir}: removed {removed} pictures no entry refers to (left by runs "
                    f"that failed or were interrupted)")
    return FootageReport(str(index_dir), note, reports, count)
