"""Footage in a gallery index: its tables survive saving, and a search answers with appearances
(one per track, scored by its best entry) whose times and cameras are the ones stored."""

from __future__ import annotations

import json
import pathlib
import sqlite3

import numpy as np
import pytest

from reid.calibration import MatchThreshold
from reid.index import GalleryError, GalleryIndex, ModelInfo
from reid.index import media
from reid.index import versioned_folder as vf
from reid.index.appearances import (appearances_json, clock, format_appearances, parse_track,
                                    search_appearances, track_query)
from reid.index.appearances import AppearanceQuery, AppearanceResult
from reid.index.footage import (FIRST_CAMID, FootageEntry, TrackRecord, VideoRecord,
                                camera_problem)
from reid.index.footage_pictures import render_sheet, render_timeline
from reid.index.gallery import prune_media

DIM = 16
MODEL = ModelInfo(fingerprint="f" * 64, embedding_dim=DIM, model_dir="/models/a")


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _video(gallery: GalleryIndex, index_dir, camera: str, people: dict[int, tuple[float, float]],
           directions: np.ndarray, rng: np.random.Generator, start: str | None = None,
           path: str | None = None, digest: str | None = None, shade: int = 9) -> None:
    """A video of ``camera`` where person p is seen from people[p][0] to people[p][1] s, as
    one track with 2 crops near directions[p] and the crops' mean (pictures: one of ``shade``)."""
    path = path or f"/videos/{camera}.avi"
    tracks, entries, vectors = [], [], []
    thumb = media.store(index_dir, media.encode_jpeg(np.full((8, 4, 3), shade, np.uint8)))
    for local, (person, (t0, t1)) in enumerate(people.items()):
        crops = _unit(directions[person] + 0.05 * rng.standard_normal((2, DIM)))
        tracks.append(TrackRecord(camera, local, path, int(t0 * 10), int(t1 * 10), t0, t1, 20))
        for j, crop in enumerate(crops):
            entries.append(FootageEntry("crop", camera, local, int(t0 * 10) + j, t0 + j / 10,
                                        (1, 2, 11, 32), 0.9, thumb))
            vectors.append(crop)
        entries.append(FootageEntry("track", camera, local, int(t0 * 10), t0, (1, 2, 11, 32),
                                    0.9, thumb))
        vectors.append(_unit(crops.mean(axis=0)))
    # Track numbers as the ingest gives them: per camera, after those already indexed.
    first = gallery.next_track(camera)
    tracks = [TrackRecord(t.camera, t.track + first, t.video, t.first_frame, t.last_frame,
                          t.start, t.end, t.boxes) for t in tracks]
    entries = [FootageEntry(e.kind, e.camera, e.track + first, e.frame, e.time, e.box, e.score,
                            e.thumb) for e in entries]
    record = VideoRecord(path, camera, 10.0, 640, 360, 600, True, start, digest=digest)
    gallery.add_footage(record, tracks, entries, np.stack(vectors))


@pytest.fixture
def footage(tmp_path):
    rng = np.random.default_rng(0)
    directions = _unit(rng.standard_normal((5, DIM)))
    index_dir = tmp_path / "footage"
    gallery = GalleryIndex(MODEL)
    _video(gallery, index_dir, "A", {0: (1.0, 4.0), 1: (2.0, 9.5)}, directions, rng,
           "2026-12-02T09:00:00")
    _video(gallery, index_dir, "B", {0: (30.0, 41.0), 2: (5.0, 6.0)}, directions, rng,
           "2026-12-02T09:00:10")
    _video(gallery, index_dir, "C", {1: (72.4, 79.8)}, directions, rng)
    gallery.save(index_dir)
    return GalleryIndex.load(index_dir), index_dir, directions


def test_footage_tables_survive_saving_and_number_tracks_per_camera(footage):
    gallery, index_dir, _ = footage
    assert gallery.count == 5 * 3 and gallery.footage_count == 15
    tracks = gallery.footage_tracks()
    assert sorted(tracks) == [("A", 0), ("A", 1), ("B", 0), ("B", 1), ("C", 0)]
    assert tracks[("C", 0)].start == 72.4 and tracks[("A", 1)].end == 9.5
    assert gallery.next_track("A") == 2 and gallery.next_track("D") == 0
    assert gallery.camid_of("A") >= FIRST_CAMID and gallery.camid_of("D") is None
    # Entries keep their camera as the camid of `images`, their video as source, and the
    # wall-clock time of their crop when the video's start is known.
    entries = gallery.entries()
    assert {e.camid for e in entries} == {gallery.camid_of(c) for c in "ABC"}
    crop_b = next(e for e in entries if e.source == "/videos/B.avi")
    assert crop_b.captured_at == "2026-12-02T09:00:40.000"  # 09:00:10 + 30 s
    version = index_dir / (index_dir / "CURRENT").read_text().strip()
    assert json.loads((version / "manifest.json").read_text())["format_version"] == 3
    with sqlite3.connect(version / "metadata.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM footage WHERE kind = 'track'").fetchone() == (5,)
    conn.close()


def test_a_video_is_indexed_once(footage):
    gallery, index_dir, directions = footage
    with pytest.raises(GalleryError, match="already in the index"):
        _video(gallery, index_dir, "A", {3: (1.0, 2.0)}, directions, np.random.default_rng(1))


def test_removing_entries_forgets_their_tracks_and_videos(footage):
    gallery, _, _ = footage
    c_ids = [e.id for e in gallery.entries() if e.source == "/videos/C.avi"]
    assert gallery.remove(paths=[e.path for e in gallery.entries(c_ids)]) == 3
    assert ("C", 0) not in gallery.footage_tracks()
    assert [v.camera for v in gallery.footage_videos()] == ["A", "B"]


def test_appearances_group_by_track_and_rank_by_the_track_mean(footage):
    gallery, _, directions = footage
    found = search_appearances(gallery, directions[0], top_k=5)
    # Brute force: per (camera, track), the cosine of its stored mean embedding, not of its
    # best crop (the crops here differ from their mean, so the two orders' scores differ).
    ids, vectors = gallery.ids, gallery.vectors
    rows = gallery.footage_entries(ids.tolist())
    best: dict[tuple[str, int], float] = {}
    crops: dict[tuple[str, int], float] = {}
    for i, v in zip(ids.tolist(), vectors):
        key = (rows[i].camera, rows[i].track)
        score = float(v @ directions[0]) / float(np.linalg.norm(v))
        if rows[i].kind == "track":
            best[key] = score
        else:
            crops[key] = max(crops.get(key, -2.0), score)
    assert any(abs(crops[k] - best[k]) > 1e-3 for k in best)
    expected = sorted(best, key=lambda k: -best[k])
    assert [(a.camera, a.track) for a in found] == expected
    assert [a.score for a in found] == pytest.approx([best[k] for k in expected], abs=1e-5)
    assert {(a.camera, a.track) for a in found[:2]} == {("A", 0), ("B", 0)}
    assert all(a.hits == 3 for a in found)  # every entry of every track was among the hits
    b0 = next(a for a in found if a.camera == "B" and a.track == 0)
    assert (b0.start, b0.end) == (30.0, 41.0)
    assert (b0.started_at, b0.ended_at) == ("2026-12-02T09:00:40.000", "2026-12-02T09:00:51.000")


def test_a_tracked_person_is_searched_in_the_other_cameras(footage):
    gallery, _, _ = footage
    vector, _ = track_query(gallery, "A", 1)
    found = search_appearances(gallery, vector, top_k=3, exclude_camera="A")
    assert all(a.camera != "A" for a in found)
    assert (found[0].camera, found[0].track) == ("C", 0)  # person 1's other passage
    with pytest.raises(GalleryError, match="no such track.*cameras: A, B, C"):
        track_query(gallery, "A", 7)
    assert parse_track("cam 2:14") == ("cam 2", 14)
    with pytest.raises(GalleryError, match="CAMERA:ID"):
        parse_track("14")


def test_threshold_text_json_and_pictures(footage):
    gallery, index_dir, directions = footage
    threshold = MatchThreshold(0.9, "given")
    found = search_appearances(gallery, directions[2], top_k=5, threshold=threshold)
    assert [a.match for a in found] == [a.score >= 0.9 for a in found]
    assert found[0].match and not found[-1].match
    result = AppearanceResult(AppearanceQuery("q.jpg", image="q.jpg"), found, 0.5, threshold)
    text = format_appearances([result], gallery)
    assert "camera B  2026-12-02 09:00:15.0-09:00:16.0  score" in text  # person 2: B, 5-6 s
    assert "camera C  00:01:12.4-00:01:19.8  score" in text  # C has no start time
    data = appearances_json([result], index_dir)
    assert data[0]["appearances"][0]["camera"] == "B" and data[0]["in_gallery"] is True
    thumb = data[0]["appearances"][0]["thumb"]
    assert thumb.startswith(str(index_dir.resolve())) and pathlib.Path(thumb).is_file()
    assert clock(72.4) == "00:01:12.4" and clock(3725.0) == "01:02:05.0"
    videos = gallery.footage_videos()
    sheet = render_sheet([result], index_dir, {v.video: v for v in videos}, 96)
    timeline = render_timeline([result], videos)
    assert sheet.ndim == 3 and sheet.shape[0] >= 96 and timeline.shape[1] == 1000
    # No match anywhere: said in text and JSON.
    strict = MatchThreshold(0.999, "given")
    none = AppearanceResult(AppearanceQuery("q.jpg"), search_appearances(
        gallery, directions[4], 3, strict), 0.1, strict)
    assert none.in_gallery is False
    assert "not seen in these cameras: the best score" in format_appearances([none], gallery)


def test_search_survives_entries_removed_from_a_track(footage):
    gallery, _, directions = footage
    a0 = gallery.track_entries("A", 0)
    b0 = gallery.track_entries("B", 0)
    mean_a0 = [e.id for e in a0 if e.kind == "track"]
    crops_b0 = [e.id for e in b0 if e.kind == "crop"]
    paths = [e.path for e in gallery.entries(mean_a0 + crops_b0)]
    assert gallery.remove(paths=paths) == len(paths)
    found = {(a.camera, a.track): a for a in search_appearances(gallery, directions[0], 5)}
    # A/0 is still scored by its crops; B/0, without crops, by its mean (the best hit left).
    best_a0 = max(float(v @ directions[0]) for v in gallery.vectors_of(
        [e.id for e in a0 if e.kind == "crop"]))
    assert found[("A", 0)].score == pytest.approx(best_a0, abs=1e-5)
    mean_b0 = [e.id for e in b0 if e.kind == "track"]
    assert found[("B", 0)].score == pytest.approx(
        float(gallery.vectors_of(mean_b0)[0] @ directions[0]), abs=1e-5)


@pytest.mark.parametrize("name, problem", [
    ("A", None), ("Gate 3 (north)", None), ("Kamera-Süd:2", None), ("x" * 100, None),
    ("../x", "holds a path separator"), ("a\\b", "holds a path separator"),
    ("..", "is not a file name"), (".", "is not a file name"), ("", "is empty"),
    ("  ", "is empty"), (" A", "starts or ends with a space"),
    ("A\x00", "holds a control character"), ("A\n", "holds a control character"),
    ("x" * 101, "is longer than 100 characters"),
])
def test_what_a_camera_name_may_be(name, problem):
    """Issue 29 item 14: a camera named ../x wrote its tracks file outside the folder given."""
    found = camera_problem(name)
    assert found == problem if problem is None else problem in found


def test_a_video_is_known_by_its_content_and_recorded_only_with_entries(tmp_path):
    """Issue 29 items 5, 6, 13 and 14 where the library is the door: a video without entries,
    a copy under another path, a camera name that is a path, a start time past the calendar."""
    rng = np.random.default_rng(0)
    directions = _unit(rng.standard_normal((3, DIM)))
    gallery = GalleryIndex(MODEL)
    _video(gallery, tmp_path, "A", {0: (1.0, 2.0)}, directions, rng, digest="d-A")
    with pytest.raises(GalleryError, match="copy.avi: this video is already in the index as "
                                           "/videos/A.avi"):
        _video(gallery, tmp_path, "A", {1: (1.0, 2.0)}, directions, rng, path="/copy.avi",
               digest="d-A")
    with pytest.raises(GalleryError, match="B.avi: no entries to add"):
        gallery.add_footage(VideoRecord("/videos/B.avi", "B", 10.0, 64, 36, 20, True), [], [],
                            np.zeros((0, DIM), np.float32))
    with pytest.raises(GalleryError, match=r"camera name '\.\./x' holds a path separator"):
        _video(gallery, tmp_path, "../x", {1: (1.0, 2.0)}, directions, rng)
    with pytest.raises(GalleryError, match="start time 9999-12-31T23:59:59 plus 1.1 s is past "
                                           "the end of the calendar"):
        _video(gallery, tmp_path, "C", {1: (1.0, 2.0)}, directions, rng, "9999-12-31T23:59:59")
    assert [v.video for v in gallery.footage_videos()] == ["/videos/A.avi"]
    # A video an older version recorded without entries is not indexed: it is added again.
    conn = gallery._meta.connection
    conn.execute("INSERT INTO videos VALUES ('/videos/D.avi', 'D', 10, 64, 36, 20, 1, NULL, '')")
    conn.commit()
    assert gallery.indexed_video("/videos/D.avi") is None
    _video(gallery, tmp_path, "D", {1: (1.0, 2.0)}, directions, rng, digest="d-D")
    assert gallery.indexed_video("/videos/D.avi").digest == "d-D"
    assert gallery.indexed_video("/elsewhere/D.avi", "d-D").video == "/videos/D.avi"


def _media_files(index_dir: pathlib.Path) -> set[str]:
    return {p.relative_to(index_dir / "media").as_posix()
            for p in (index_dir / "media").rglob("*")
            if p.is_file() and p.name != vf.SHARED_LOCK_FILE}


def _referenced(gallery: GalleryIndex) -> set[str]:
    """The pictures the entries name, from the entries themselves."""
    rows = gallery.footage_entries(gallery.ids.tolist()).values()
    return {e.thumb for e in rows} | {e.frame_image for e in rows if e.frame_image}


def test_saving_deletes_the_pictures_no_entry_refers_to(tmp_path):
    """Issue 29 item 19: pictures of failed or killed runs, and of removed entries, stayed in
    media/ forever. A save deletes them under the writer lock, never one an entry refers to,
    nothing while a writer is preparing pictures, nothing on the word of a damaged index."""
    rng = np.random.default_rng(0)
    directions = _unit(rng.standard_normal((3, DIM)))
    index_dir = tmp_path / "footage"
    gallery = GalleryIndex(MODEL)
    _video(gallery, index_dir, "A", {0: (1.0, 2.0)}, directions, rng, shade=9)
    _video(gallery, index_dir, "B", {1: (1.0, 2.0)}, directions, rng, shade=200)
    stray = media.store(index_dir, b"a picture a killed run wrote")
    (index_dir / "media" / "zz").mkdir()
    (index_dir / "media" / "zz" / ".tmp-half-written").write_bytes(b"half")
    with vf.writing_shared(index_dir):  # another writer is preparing its pictures
        gallery.save(index_dir)
    assert stray in _media_files(index_dir)
    assert len(_referenced(gallery)) == 2
    gallery.save(index_dir)
    assert _media_files(index_dir) == _referenced(gallery)
    assert not (index_dir / "media" / "zz").exists()
    b = [e.path for e in gallery.entries() if e.source == "/videos/B.avi"]
    gallery.remove(paths=b)
    gallery.save(index_dir)
    assert _media_files(index_dir) == _referenced(gallery) and len(_referenced(gallery)) == 1
    # Versions that lost their CURRENT still refer to pictures: nothing is deleted.
    stray = media.store(index_dir, b"another")
    current = (index_dir / "CURRENT").read_text()
    (index_dir / "CURRENT").unlink()
    assert prune_media(index_dir) is None and stray in _media_files(index_dir)
    (index_dir / "CURRENT").write_text(current)
    assert prune_media(index_dir) == 1 and _media_files(index_dir) == _referenced(gallery)
    # A crop index has no media folder, and gets none.
    crops = GalleryIndex(MODEL)
    crops.add(["/c/1.jpg"], _unit(rng.standard_normal((1, DIM))))
    crops.save(tmp_path / "crops")
    assert prune_media(tmp_path / "crops") == 0 and not (tmp_path / "crops" / "media").exists()
