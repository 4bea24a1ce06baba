"""What a gallery index knows about people cut from camera footage: when and where each was seen.

Footage adds four tables to the metadata database beside ``images`` (whose ``path`` for such an
entry is a key naming video, track and frame, since the crop is not a file of its own):

* ``cameras``: camera name -> the integer ``camid`` of ``images`` (so a search can leave out
  one camera as it does for crops);
* ``videos``: each source indexed, its camera, frame rate, size, how many frames were read and
  whether to the end, and the wall-clock time of its first frame when given;
* ``tracks``: each track, numbered per camera across the camera's videos (so "track 14 of
  camera A" names one person-passage), with its first and last frame and time;
* ``footage``: per indexed entry, whether it is one ``crop`` or a ``track``'s mean embedding,
  its track, frame, time, box, detector score, and its pictures in the index's media folder.

Stored when known, never reconstructed: a query answers from these rows alone, without the video.
"""

from __future__ import annotations

import dataclasses
import datetime
import sqlite3
from collections.abc import Iterable, Sequence

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
"""
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
                     dataclasses.astuple(video))
        conn.executemany("INSERT INTO tracks VALUES (?,?,?,?,?,?,?,?)",
                         [dataclasses.astuple(t) for t in tracks])
        conn.executemany(
            "INSERT INTO footage VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(e.id, e.kind, e.camera, e.track, e.frame, e.time, *e.box, e.score, e.thumb,
              e.frame_image) for e in entries])


def delete(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """Forget the footage rows of removed entries, the tracks left with none, and the videos
    whose entries were all removed (so that they can be indexed again); a video recorded
    without people is not touched."""
    touched = {row[0] for i in ids for row in conn.execute(
        "SELECT t.video FROM footage f JOIN tracks t ON f.camera = t.camera AND "
        "f.track = t.track WHERE f.id = ?", (int(i),))}
    with conn:
        conn.executemany("DELETE FROM footage WHERE id = ?", [(int(i),) for i in ids])
        conn.execute("DELETE FROM tracks WHERE NOT EXISTS (SELECT 1 FROM footage f WHERE "
                     "f.camera = tracks.camera AND f.track = tracks.track)")
        conn.executemany("DELETE FROM videos WHERE video = ? AND NOT EXISTS (SELECT 1 FROM "
                         "tracks t WHERE t.video = videos.video)", [(v,) for v in touched])


def video(conn: sqlite3.Connection, path: str) -> VideoRecord | None:
    row = conn.execute("SELECT * FROM videos WHERE video = ?", (path,)).fetchone()
    return None if row is None else VideoRecord(*row[:6], bool(row[6]), *row[7:])


def videos(conn: sqlite3.Connection) -> list[VideoRecord]:
    rows = conn.execute("SELECT * FROM videos ORDER BY camera, start_time, video").fetchall()
    return [VideoRecord(*r[:6], bool(r[6]), *r[7:]) for r in rows]


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
