"""When and where a person was seen: search a footage index and group the hits by track.

A footage index holds a few crops of each track and the track's mean embedding
(:mod:`reid.index.footage`). The person in a query may match several of them, and a list of
near-identical crops of one passage would hide the other passages; what a user asks is which
passages, so hits are grouped by (camera, track) into appearances, best first, each shown by
its track's best crop.

An appearance's score is the cosine of the query with its **track's mean embedding**: one
number per passage whatever its length. The best of a track's crops would let a stranger's
long track through more often than a short one (the best of c stranger scores grows with c),
so a decision could not be calibrated per track; the mean of a passage's crops also smooths
their poses and occlusions (temporal average pooling, the usual aggregate of video re-id).
The gallery a footage query is decided against is therefore its tracks
(:mod:`reid.index.decision`), calibrated on per-camera mean embeddings of labelled people
(:func:`reid.calibration.labelled_gallery_rules`) or on the footage itself
(``tools/calibrate.py --footage``). Entries indexed from image files (not footage) stand
alone, one appearance each, scored as images.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from reid.calibration import MatchThreshold, score_format
from reid.index import media
from reid.index.errors import GalleryError
from reid.index.gallery import GalleryIndex

#: Entries fetched per appearance wanted: a track holds a few crops and its mean, and several
#: tracks of other people score in between.
HITS_PER_APPEARANCE = 12
#: Track numbers are SQLite integers: signed 64-bit.
TRACK_LIMIT = 2**63


@dataclasses.dataclass(frozen=True)
class Appearance:
    """One passage of a person past a camera (or one indexed image, ``track`` None)."""

    rank: int
    score: float
    camera: str
    track: int | None
    start: float  # seconds from the start of the video (an image: 0)
    end: float
    started_at: str | None  # wall-clock times, when the video's start time is known
    ended_at: str | None
    video: str | None
    frame: int | None  # of the picture shown
    box: tuple[float, float, float, float] | None
    thumb: str | None  # media name of the picture shown (footage)
    frame_image: str | None  # media name of its whole frame (footage, when stored)
    path: str | None  # the image file (entries indexed from files)
    hits: int  # entries of this appearance among the search results
    match: bool | None = None
    item: int | None = None  # the entry whose picture shows it (a track's mean, or the image)

    def to_json(self, index_dir: str | os.PathLike) -> dict[str, Any]:
        def picture(name: str | None) -> str | None:
            return None if name is None else str(media.path(index_dir, name).resolve())

        return {"id": self.item, "rank": self.rank, "score": self.score, "match": self.match,
                "camera": self.camera, "track": self.track, "start": round(self.start, 3),
                "end": round(self.end, 3), "started_at": self.started_at,
                "ended_at": self.ended_at, "video": self.video, "frame": self.frame,
                "box": None if self.box is None else [round(v, 1) for v in self.box],
                "hits": self.hits, "path": self.path, "thumb": picture(self.thumb),
                "frame_image": picture(self.frame_image)}


@dataclasses.dataclass(frozen=True)
class AppearanceQuery:
    """What a footage query was: an image file, or a tracked person (``camera``, ``track``)."""

    label: str
    image: str | None = None
    camera: str | None = None
    track: int | None = None


@dataclasses.dataclass(frozen=True)
class AppearanceResult:
    query: AppearanceQuery
    appearances: list[Appearance]
    search_ms: float
    threshold: MatchThreshold | None = None
    thumb: str | None = None  # the query track's picture (a --track query)

    @property
    def in_gallery(self) -> bool | None:
        if self.threshold is None:
            return None
        return any(a.match for a in self.appearances)


def parse_track(text: str) -> tuple[str, int]:
    """``CAMERA:ID`` -> (camera, track)."""
    camera, sep, number = text.rpartition(":")
    if not sep or not camera:
        raise GalleryError(f"track: expected CAMERA:ID such as A:14, got {text!r}",
                           field="track")
    try:
        track = int(number)
    except ValueError:
        raise GalleryError(f"track: {number!r} in {text!r} is not a track number",
                           field="track") from None
    # The index stores track numbers as SQLite integers (64-bit): a larger one names no track
    # and would overflow the lookup.
    if not -TRACK_LIMIT <= track < TRACK_LIMIT:
        raise GalleryError(f"track {text}: track number out of range (an index stores "
                           f"64-bit track numbers, at most {TRACK_LIMIT - 1})", field="track")
    return camera, track


def track_query(gallery: GalleryIndex, camera: str, track: int) -> tuple[np.ndarray, str]:
    """(the track's mean embedding, its picture's media name)."""
    in_range = -TRACK_LIMIT <= track < TRACK_LIMIT  # beyond it SQLite cannot even look
    entries = gallery.track_entries(camera, track) if in_range else []
    mean = [e for e in entries if e.kind == "track"]
    if not mean:
        cameras = sorted({c for c, _ in gallery.footage_tracks()})
        known = f" (cameras: {', '.join(cameras)})" if cameras else " (it holds no footage)"
        raise GalleryError(f"track {camera}:{track}: no such track in the index{known}",
                           field="track")
    return gallery.vectors_of([mean[0].id])[0], mean[0].thumb


def clock(seconds: float) -> str:
    """``HH:MM:SS.s``."""
    tenths = int(round(seconds * 10))
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    return f"{hours:02d}:{minutes:02d}:{rest // 10:02d}.{rest % 10}"


def search_appearances(gallery: GalleryIndex, vector: np.ndarray, top_k: int = 10,
                       threshold: MatchThreshold | None = None,
                       exclude_camera: str | None = None) -> list[Appearance]:
    """The ``top_k`` appearances most like ``vector``, best first (see the module docstring),
    leaving out those of ``exclude_camera``."""
    k = min(gallery.count, max(top_k * HITS_PER_APPEARANCE, 50))
    if k == 0:
        return []
    camid = None if exclude_camera is None else gallery.camid_of(exclude_camera)
    scores, ids = gallery.search_arrays(vector[None], k, exclude_camids=[camid])
    keep = ids[0] >= 0
    scores, ids = scores[0][keep], ids[0][keep]
    rows = gallery.footage_entries(ids.tolist())
    groups: dict[tuple, list[tuple[float, int]]] = {}
    for score, i in zip(scores.tolist(), ids.tolist()):
        row = rows.get(i)
        key = ("track", row.camera, row.track) if row is not None else ("image", i)
        groups.setdefault(key, []).append((score, i))
    # A track is scored by its mean embedding (see the module docstring), found by any of its
    # entries among the hits; its crops help find it but score nothing.
    unit = np.asarray(vector, np.float32) / max(float(np.linalg.norm(vector)), 1e-12)
    members = {key: gallery.track_entries(key[1], key[2]) for key in groups
               if key[0] == "track"}
    mean_ids = [e.id for entries in members.values() for e in entries if e.kind == "track"]
    mean_scores = dict(zip(mean_ids, (gallery.vectors_of(mean_ids) @ unit).tolist()))
    scored: list[tuple[float, tuple, list]] = []
    for key, hits in groups.items():
        means = [mean_scores[e.id] for e in members.get(key, []) if e.kind == "track"]
        # (An image, or a track whose mean was removed through the API: its best hit.)
        score = means[0] if means else max(s for s, _ in hits)
        scored.append((float(np.clip(score, -1.0, 1.0)), key, hits))
    best = sorted(scored, key=lambda item: -item[0])[:top_k]
    tracks = gallery.footage_tracks([k[1:] for _, k, _ in best if k[0] == "track"])
    videos = {v.video: v for v in gallery.footage_videos()}
    images = {e.id: e for e in gallery.entries([k[1] for _, k, _ in best if k[0] == "image"])}
    out = []
    for rank, (score, key, hits) in enumerate(best, start=1):
        match = None if threshold is None else threshold.matches(score)
        if key[0] == "track":
            track = tracks[(key[1], key[2])]
            face = next((e for e in members[key] if e.kind == "track"), rows[hits[0][1]])
            video = videos.get(track.video)
            out.append(Appearance(
                rank, score, track.camera, track.track, track.start, track.end,
                video.wall_clock(track.start) if video else None,
                video.wall_clock(track.end) if video else None, track.video, face.frame,
                face.box, face.thumb, face.frame_image, None, len(hits), match, face.id))
        else:
            entry = images[key[1]]
            camera = "-" if entry.camid is None else (gallery.camera_name(entry.camid)
                                                     or str(entry.camid))
            out.append(Appearance(rank, score, camera, None, 0.0, 0.0, entry.captured_at,
                                  entry.captured_at, entry.source, None, None, None, None,
                                  entry.path, len(hits), match, entry.id))
    return out


def _tenths(iso: str) -> datetime.datetime:
    """An ISO 8601 time rounded to a tenth of a second, as :func:`clock` rounds."""
    moment = datetime.datetime.fromisoformat(iso)
    micro = round(moment.microsecond, -5)
    return moment.replace(microsecond=0) + datetime.timedelta(microseconds=micro)


def wall_time(iso: str, date: bool = False) -> str:
    """``HH:MM:SS.s`` (with the date first when ``date``) of an ISO 8601 time."""
    moment = _tenths(iso)
    text = f"{moment.strftime('%H:%M:%S')}.{moment.microsecond // 100000}"
    return f"{moment.strftime('%Y-%m-%d')} {text}" if date else text


def _when(a: Appearance) -> str:
    if a.track is None:
        return a.started_at or "-"
    if a.started_at and a.ended_at:
        zone = _tenths(a.started_at).strftime("%z")
        shown = f" ({zone[:3]}:{zone[3:]})" if zone else ""
        return f"{wall_time(a.started_at, date=True)}-{wall_time(a.ended_at)}{shown}"
    return f"{clock(a.start)}-{clock(a.end)}"


def answer_text(result: AppearanceResult) -> str | None:
    """The answer in words: ``seen on 2026-03-02 in camera A at 09:00:00.1-09:00:04.0 and
    09:01:10.0-09:01:12.5; in camera B at ...`` (cameras in the order the person first reached
    them, passages in time order; the date, and the zone when the clock has one, said once), or
    ``not seen in these cameras``; None without a match decision."""
    if result.threshold is None:
        return None
    seen = [a for a in result.appearances if a.match]
    if not seen:
        return "not seen in these cameras"
    by_camera: dict[str, list[Appearance]] = {}
    for a in sorted(seen, key=lambda a: (a.started_at or "", a.start)):
        by_camera.setdefault(a.camera, []).append(a)
    first = min(seen, key=lambda a: (a.started_at or "", a.start))
    day = ""
    if first.track is not None and first.started_at and first.ended_at:
        moment = _tenths(first.started_at)
        zone = moment.strftime("%z")
        day = f"on {moment.strftime('%Y-%m-%d')}{f' ({zone[:3]}:{zone[3:]})' if zone else ''} "

    def when(a: Appearance) -> str:
        if a.track is not None and a.started_at and a.ended_at:
            return f"{wall_time(a.started_at)}-{wall_time(a.ended_at)}"
        return _when(a)

    return f"seen {day}" + "; ".join(
        f"in camera {camera} at " + " and ".join(when(a) for a in passages)
        for camera, passages in by_camera.items())


def threshold_text(threshold: MatchThreshold, shown: Any) -> str:
    """``match threshold 0.83 (0.01 of absent people ...)``: the threshold and why."""
    return f"match threshold {shown(threshold.value)} ({threshold.origin})"


def format_appearances(results: Sequence[AppearanceResult], gallery: GalleryIndex) -> str:
    """Per query: its appearances, best first, one line each, e.g.
    ``camera B  00:01:12.4-00:01:19.8  score 0.83  track 14``; with a threshold, each says
    match or not, and the query ends with the answer (:func:`answer_text`). Scores and the
    threshold are printed to 2 decimals, more where a rejected score would read as the
    threshold (:func:`reid.calibration.score_format`)."""
    blocks = []
    cameras = len({v.camera for v in gallery.footage_videos()})
    tracks = len(gallery.footage_tracks())
    for r in results:
        shown = score_format(r.threshold, [a.score for a in r.appearances], least=2)
        lines = [f"query {r.query.label}: top {len(r.appearances)} appearances among "
                 f"{tracks} tracks from {cameras} cameras ({r.search_ms:.1f} ms)"]
        if r.threshold is not None:
            lines.append(threshold_text(r.threshold, shown))
        width = max([len(a.camera) for a in r.appearances] + [1])
        for a in r.appearances:
            match = "" if a.match is None else ("  match" if a.match else "  no match")
            what = f"track {a.track}" if a.track is not None else a.path
            lines.append(f"{a.rank:>3}. camera {a.camera:<{width}}  {_when(a)}  score "
                         f"{shown(a.score)}  {what}{match}")
        if not r.appearances:
            lines.append("  (no results)")
        answer = answer_text(r)
        if answer is not None and r.in_gallery is False:
            best = f"the best score, {shown(r.appearances[0].score)}, is" if r.appearances \
                else "nothing scored"
            answer += f": {best} below the match threshold {shown(r.threshold.value)}"
        if answer is not None:
            lines.append(answer)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def appearances_json(results: Sequence[AppearanceResult], index_dir: str | os.PathLike
                     ) -> list[dict[str, Any]]:
    """One object per query: ``query``, ``image``, ``camera``, ``track`` and ``thumb`` (a
    --track query), ``threshold``, ``threshold_origin``, ``fpir`` and ``gallery_size`` (the
    rate and the number of tracks a gallery-level threshold was read for; null otherwise),
    ``in_gallery``, ``answer`` (:func:`answer_text`), and ``appearances``,
    each ``{id, rank, score, match, camera, track, start, end, started_at, ended_at, video,
    frame, box, hits, path, thumb, frame_image}`` (``id``: the entry whose picture shows it) (times in seconds from the video's start, wall-clock
    ISO 8601 when known; ``thumb`` and ``frame_image`` the pictures' files in the index)."""
    def picture(name: str | None) -> str | None:
        return None if name is None else str(media.path(index_dir, name).resolve())

    return [{"query": r.query.label, "image": r.query.image, "camera": r.query.camera,
             "track": r.query.track, "thumb": picture(r.thumb),
             "threshold": None if r.threshold is None else r.threshold.value,
             "threshold_origin": None if r.threshold is None else r.threshold.origin,
             "fpir": None if r.threshold is None else r.threshold.fpir,
             "gallery_size": None if r.threshold is None else r.threshold.gallery_size,
             "in_gallery": r.in_gallery, "answer": answer_text(r),
             "appearances": [a.to_json(index_dir) for a in r.appearances]} for r in results]
