"""What a gallery index knows about people cut from camera footage: when and where each was seen.

Footage adds four tables to the metadata database beside ``images`` (whose ``path`` for such an
entry is a key naming video, track and frame, since the crop is not a file of its own):

* ``cameras``: camera name -> the integer ``camid`` of ``images`` (so a search can leave out
  one camera as it does for crops);
* ``videos``: each source indexed, its camera, frame rate, size, how many frames were read and
  whether to the end, and the wall-clock time of its first frame when given; a video is
  recorded with the entries it gave, never without (a video that gave none is indexed again
  by a later run), and ``video_digests`` identifies it by content, so that a copy at another
  path is known (:func:`reid.video.frames.content_digest`; a table of its own, so that code
  reading format 3 before it existed reads and extends these indexes unchanged);
* ``tracks``: each track, numbered per camera across the camera's videos (so "track 14 of
  camera A" names one person-passage), with its first and last frame and time;
* ``footage``: per indexed entry, whether it is one ``crop`` or a ``track``'s mean embedding,
  its track, frame, time, box, detector score, and its pictures in the index's media folder.

Stored when known, never reconstructed: a query answers from these rows alone, without the video.

A camera name becomes part of file names (``--save-tracks DIR`` writes ``DIR/<camera>.txt``),
so :func:`camera_problem` says what one may be, for every place a name enters.
"""

from __future__ import annotations

import dataclasses
import datetime
import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS cameras (
    camid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS videos (
    video TEXT PRIMARY KEY,      -- absolute path of the video file or frame folder
    camera TEXT NOT NULL,
    fps REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    frames INTEGER NOT NULL,     -- frames read (every one, also those --every skipped)
    complete INTEGER NOT NULL,   -- 1: read to its end; 0: it ended before its header's count
    start_time TEXT,             -- wall-clock time of frame 0, ISO 8601, when given
    indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tracks (
    camera TEXT NOT NULL,
    track INTEGER NOT NULL,      -- numbered per camera, across its videos
    video TEXT NOT NULL,
    first_frame INTEGER NOT NULL,
    last_frame INTEGER NOT NULL,
    start REAL NOT NULL,         -- seconds from the video's frame 0
    end REAL NOT NULL,
    boxes INTEGER NOT NULL,      -- boxes the tracker gave it
    PRIMARY KEY (camera, track)
);
CREATE TABLE IF NOT EXISTS footage (
    id INTEGER PRIMARY KEY,      -- the entry's id in images (and FAISS)
    kind TEXT NOT NULL,          -- 'crop', or 'track': the mean of the track's crop embeddings
    camera TEXT NOT NULL,
    track INTEGER NOT NULL,
    frame INTEGER NOT NULL,      -- of the crop (a track: of its best crop)
    time REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    score REAL NOT NULL,         -- detector score of the box
    thumb TEXT NOT NULL,         -- the crop, in the index's media folder
    frame_image TEXT             -- the whole frame, scaled, in the media folder (may be NULL)
);
CREATE INDEX IF NOT EXISTS footage_track ON footage(camera, track);
CREATE TABLE IF NOT EXISTS video_digests (
    video TEXT PRIMARY KEY,      -- a video of the videos table
    digest TEXT NOT NULL         -- what identifies its content (content_digest)
);
CREATE INDEX IF NOT EXISTS video_digests_digest ON video_digests(digest);
"""
#: The videos table's columns, in order, as VideoRecord holds them before its digest.
_VIDEO_SELECT = ("SELECT v.video, v.camera, v.fps, v.width, v.height, v.frames, v.complete, "
                 "v.start_time, v.indexed_at, d.digest FROM videos v "
                 "LEFT JOIN video_digests d ON d.video = v.video")
#: The longest camera name: it is a file name's stem, and a line of every report.
CAMERA_MAX_CHARS = 100
KINDS = ("crop", "track")
#: Footage cameras are numbered from here, clear of the one-digit cameras of Market-style file
#: names, so that crops and footage in one index never share a camera id.
FIRST_CAMID = 1000


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    video: str
    camera: str
    fps: float
    width: int
    height: int
    frames: int
    complete: bool
    start_time: str | None = None
    indexed_at: str = ""
    digest: str | None = None  # what identifies its content; None: indexed before it was kept

    def wall_clock(self, seconds: float) -> str | None:
        """The wall-clock time ``seconds`` into the video, ISO 8601, when its start is known."""
        if self.start_time is None:
            return None
        start = datetime.datetime.fromisoformat(self.start_time)
        return (start + datetime.timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


@dataclasses.dataclass(frozen=True)
class TrackRecord:
    camera: str
    track: int
    video: str
    first_frame: int
    last_frame: int
    start: float
    end: float
    boxes: int


@dataclasses.dataclass(frozen=True)
class FootageEntry:
    """One indexed entry cut from footage (see the module docstring); ``id`` is set on add."""

    kind: str
    camera: str
    track: int
    frame: int
    time: float
    box: tuple[float, float, float, float]
    score: float
    thumb: str
    frame_image: str | None = None
    id: int = -1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"footage entry kind {self.kind!r}: expected one of {KINDS}")

    def key(self, video: str) -> str:
        """The ``images.path`` of the entry: unique, and says where it came from."""
        if self.kind == "track":
            return f"{video}#camera={self.camera}&track={self.track}"
        return f"{video}#camera={self.camera}&track={self.track}&frame={self.frame}"


def track_mean(crop_vectors: np.ndarray) -> np.ndarray:
    """A ``track`` entry's embedding: the mean of its crops' (rows of ``crop_vectors``), scaled
    to unit length. One definition for footage ingest and for re-embedding an index
    (:mod:`reid.index.reindex`), so a re-embedded track is what ingest would have stored."""
    mean = np.asarray(crop_vectors).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def camera_problem(name: str) -> str | None:
    """Why ``name`` cannot be a camera's name, or None when it can: it must be printable text
    of at most :data:`CAMERA_MAX_CHARS` characters without a path separator and not ``.`` or
    ``..`` (it becomes a file name), without spaces at its ends (invisible in a report)."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if len(name) > CAMERA_MAX_CHARS:
        return f"is longer than {CAMERA_MAX_CHARS} characters"
    if not name.isprintable():
        return "holds a control character"
    if name != name.strip():
        return "starts or ends with a space"
    if "/" in name or "\\" in name:
        return "holds a path separator (it becomes a file name)"
    if name in (".", ".."):
        return "is not a file name"
    return None


def create(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def camid(conn: sqlite3.Connection, camera: str) -> int:
    """The camera's integer id, given it on first use."""
    found = find_camid(conn, camera)
    if found is not None:
        return found
    with conn:
        cursor = conn.execute("INSERT INTO cameras (camid, name) SELECT COALESCE(MAX(camid) + 1, "
                              "?), ? FROM cameras", (FIRST_CAMID, camera))
    return int(cursor.lastrowid)


def find_camid(conn: sqlite3.Connection, camera: str) -> int | None:
    row = conn.execute("SELECT camid FROM cameras WHERE name = ?", (camera,)).fetchone()
    return None if row is None else int(row[0])


def camera_of_camid(conn: sqlite3.Connection, camid: int) -> str | None:
    row = conn.execute("SELECT name FROM cameras WHERE camid = ?", (int(camid),)).fetchone()
    return None if row is None else str(row[0])


def next_track(conn: sqlite3.Connection, camera: str) -> int:
    """The first free track number of ``camera``."""
    row = conn.execute("SELECT MAX(track) FROM tracks WHERE camera = ?", (camera,)).fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def insert(conn: sqlite3.Connection, video: VideoRecord, tracks: Iterable[TrackRecord],
           entries: Iterable[FootageEntry]) -> None:
    with conn:
        conn.execute("INSERT INTO videos VALUES (?,?,?,?,?,?,?,?,?)",
                     dataclasses.astuple(video)[:9])
        if video.digest is not None:
            conn.execute("INSERT OR REPLACE INTO video_digests VALUES (?,?)",
                         (video.video, video.digest))
        conn.executemany("INSERT INTO tracks VALUES (?,?,?,?,?,?,?,?)",
                         [dataclasses.astuple(t) for t in tracks])
        conn.executemany(
            "INSERT INTO footage VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(e.id, e.kind, e.camera, e.track, e.frame, e.time, *e.box, e.score, e.thumb,
              e.frame_image) for e in entries])


def delete(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """Forget the footage rows of removed entries, the tracks left with none, and the videos
    whose entries were all removed (so that they can be indexed again)."""
    touched = {row[0] for i in ids for row in conn.execute(
        "SELECT t.video FROM footage f JOIN tracks t ON f.camera = t.camera AND "
        "f.track = t.track WHERE f.id = ?", (int(i),))}
    with conn:
        conn.executemany("DELETE FROM footage WHERE id = ?", [(int(i),) for i in ids])
        conn.execute("DELETE FROM tracks WHERE NOT EXISTS (SELECT 1 FROM footage f WHERE "
                     "f.camera = tracks.camera AND f.track = tracks.track)")
        conn.executemany("DELETE FROM videos WHERE video = ? AND NOT EXISTS (SELECT 1 FROM "
                         "tracks t WHERE t.video = videos.video)", [(v,) for v in touched])
        _forget_stale_digests(conn)


def _forget_stale_digests(conn: sqlite3.Connection) -> None:
    """Digests of videos no longer recorded (also those code before digests removed)."""
    conn.execute("DELETE FROM video_digests WHERE video NOT IN (SELECT video FROM videos)")


def _video_record(row: Sequence) -> VideoRecord:
    return VideoRecord(*row[:6], bool(row[6]), *row[7:])


def indexed(conn: sqlite3.Connection, path: str, digest: str | None = None
            ) -> VideoRecord | None:
    """The video indexed at ``path``, else one with the content ``digest``; a video recorded
    without entries (by code before such were refused) is not indexed: it is indexed again."""
    has_tracks = "EXISTS (SELECT 1 FROM tracks t WHERE t.video = v.video)"
    row = conn.execute(f"{_VIDEO_SELECT} WHERE v.video = ? AND {has_tracks}", (path,)).fetchone()
    if row is None and digest is not None:
        row = conn.execute(f"{_VIDEO_SELECT} WHERE d.digest = ? AND {has_tracks} "
                           f"ORDER BY v.indexed_at LIMIT 1", (digest,)).fetchone()
    return None if row is None else _video_record(row)


def forget_empty(conn: sqlite3.Connection, path: str) -> None:
    """Forget the record of a video at ``path`` that has no tracks (see :func:`indexed`)."""
    with conn:
        conn.execute("DELETE FROM videos WHERE video = ? AND NOT EXISTS (SELECT 1 FROM tracks t "
                     "WHERE t.video = videos.video)", (path,))
        _forget_stale_digests(conn)


def set_digests(conn: sqlite3.Connection, digests: dict[str, str]) -> None:
    """Record the content digests of recorded videos (path -> digest)."""
    with conn:
        conn.executemany("INSERT OR REPLACE INTO video_digests SELECT video, ? FROM videos "
                         "WHERE video = ?", [(d, v) for v, d in digests.items()])


def media_names(conn: sqlite3.Connection) -> set[str]:
    """Every media file the entries refer to (:mod:`reid.index.media`)."""
    names: set[str] = set()
    for thumb, frame_image in conn.execute("SELECT thumb, frame_image FROM footage"):
        names.add(thumb)
        if frame_image is not None:
            names.add(frame_image)
    return names


def video(conn: sqlite3.Connection, path: str) -> VideoRecord | None:
    row = conn.execute(f"{_VIDEO_SELECT} WHERE v.video = ?", (path,)).fetchone()
    return None if row is None else _video_record(row)


def videos(conn: sqlite3.Connection) -> list[VideoRecord]:
    rows = conn.execute(f"{_VIDEO_SELECT} ORDER BY v.camera, v.start_time, v.video").fetchall()
    return [_video_record(r) for r in rows]


def tracks(conn: sqlite3.Connection, keys: Iterable[tuple[str, int]] | None = None
           ) -> dict[tuple[str, int], TrackRecord]:
    """Tracks by (camera, track): those of ``keys`` (unknown ones absent), or all."""
    if keys is None:
        rows = conn.execute("SELECT * FROM tracks").fetchall()
    else:
        rows = [r for key in set(keys) for r in conn.execute(
            "SELECT * FROM tracks WHERE camera = ? AND track = ?", (key[0], int(key[1])))]
    return {(r[0], int(r[1])): TrackRecord(*r) for r in rows}


def _entry(row: Sequence) -> FootageEntry:
    (i, kind, camera, track, frame, time, x1, y1, x2, y2, score, thumb, frame_image) = row
    return FootageEntry(kind, camera, int(track), int(frame), float(time),
                        (float(x1), float(y1), float(x2), float(y2)), float(score), thumb,
                        frame_image, int(i))


def entries(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, FootageEntry]:
    """Footage rows by id; ids of other entries (crops from files) are absent."""
    out: dict[int, FootageEntry] = {}
    wanted = sorted({int(i) for i in ids})
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        rows = conn.execute(f"SELECT * FROM footage WHERE id IN ({','.join('?' * len(chunk))})",
                            chunk)
        out.update((int(r[0]), _entry(r)) for r in rows)
    return out


def track_entries(conn: sqlite3.Connection, camera: str, track: int) -> list[FootageEntry]:
    rows = conn.execute("SELECT * FROM footage WHERE camera = ? AND track = ? ORDER BY id",
                        (camera, int(track)))
    return [_entry(r) for r in rows]


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM footage").fetchone()[0])
