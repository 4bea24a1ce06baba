"""The unlabelled target of adaptation (reid.index.target): the stored crops of footage indexes
with their tracks (must-link) and the pairs of tracks seen at once in one camera (cannot-link),
and folders of image files."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from reid.index import CorruptIndexError, GalleryError, GalleryIndex, ModelInfo, media
from reid.index.footage import FootageEntry, TrackRecord, VideoRecord
from reid.index.target import footage_target, image_target

DIM = 8
MODEL = ModelInfo(fingerprint="d" * 64, embedding_dim=DIM, model_dir="/models/d")
COLUMN = 50.0  # a track's box is (COLUMN * column, 10, + 40, 130): columns never overlap


def _shade(index: int, camera: str, track: int, crop: int) -> int:
    """A distinct grey level per crop, so that a crop's picture says whose it is."""
    return 20 + 40 * index + 12 * track + 6 * crop + (100 if camera == "B" else 0)


def _video(gallery: GalleryIndex, index_dir, index: int, camera: str,
           tracks: list[tuple[float, float, int, bool]]) -> None:
    """One video of ``camera`` with a track per (start, end, column, nested): two crops (at its
    start and end) and the mean; ``nested`` draws its box inside the column's upper half, as
    a duplicate detection of the one whose column it shares."""
    path = f"/videos/{index}-{camera}.avi"
    first = gallery.next_track(camera)
    records, entries = [], []
    for local, (start, end, column, nested) in enumerate(tracks):
        number = first + local
        x = COLUMN * column
        box = (x + 2, 12.0, x + 38, 60.0) if nested else (x, 10.0, x + 40, 130.0)
        records.append(TrackRecord(camera, number, path, int(start * 10), int(end * 10), start,
                                   end, 20))
        for j, t in enumerate((start, end)):
            picture = np.full((16, 8, 3), _shade(index, camera, number, j), np.uint8)
            thumb = media.store(index_dir, media.encode_jpeg(picture))
            entries.append(FootageEntry("crop", camera, number, int(t * 10), t, box, 0.9, thumb))
        entries.append(FootageEntry("track", camera, number, int(start * 10), (start + end) / 2,
                                    box, 0.9, thumb))
    vectors = np.random.default_rng(len(entries)).standard_normal((len(entries), DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    record = VideoRecord(path, camera, 10.0, 640, 360, 400, True)
    gallery.add_footage(record, records, entries, vectors.astype(np.float32))


@pytest.fixture
def two_indexes(tmp_path):
    """Index 1: camera A, five tracks in one video; camera B, two at once. Index 2: a camera
    also named A (its own video), and a camera C with two at once."""
    first, second = tmp_path / "site-monday", tmp_path / "site-tuesday"
    gallery = GalleryIndex(MODEL)
    _video(gallery, first, 1, "A", [
        (0.0, 10.0, 0, False),   # A0
        (5.0, 12.0, 1, False),   # A1: with A0 for 5 s: two people
        (20.0, 25.0, 0, False),  # A2: alone until A3 comes
        (11.8, 30.0, 2, False),  # A3: with A1 for 0.2 s only (not at once); with A2 for 5 s
        (21.0, 24.0, 0, True),   # A4: inside A2's box: A2 tracked twice; with A3 at once
    ])
    _video(gallery, first, 1, "B", [(0.0, 10.0, 0, False), (2.0, 8.0, 1, False)])
    gallery.save(first)
    gallery = GalleryIndex(MODEL)
    _video(gallery, second, 2, "A", [(0.0, 10.0, 0, False)])
    _video(gallery, second, 2, "C", [(0.0, 5.0, 0, False), (1.0, 4.0, 1, False)])
    gallery.save(second)
    return first, second


def _grey(path: str) -> int:
    return round(float(cv2.imread(path, cv2.IMREAD_GRAYSCALE).mean()))


def test_footage_crops_tracks_and_the_pairs_seen_at_once(two_indexes):
    first, second = two_indexes
    target = footage_target([first, str(second)])
    # Tracks numbered over both indexes, in the order (index, camera, track).
    assert target.track_keys == (
        (str(first), "A", 0), (str(first), "A", 1), (str(first), "A", 2), (str(first), "A", 3),
        (str(first), "A", 4), (str(first), "B", 0), (str(first), "B", 1),
        (str(second), "A", 0), (str(second), "C", 0), (str(second), "C", 1))
    # Every stored crop (two per track, never the mean), in track order, its own picture.
    assert target.tracks == tuple(t for t in range(10) for _ in range(2))
    assert len(target) == 20 and target.track_count == 10
    for path, track, position in zip(target.paths, target.tracks, range(20)):
        index, camera, number = target.track_keys[track]
        assert os.path.dirname(os.path.dirname(path)) == os.path.join(index, "media")
        expected = _shade(1 if index == str(first) else 2, camera, number, position % 2)
        assert _grey(path) == expected
    # Cameras by name over both indexes: A 1, B 2, C 3.
    assert target.cameras == (1,) * 10 + (2,) * 4 + (1,) * 2 + (3,) * 4
    # Worked by hand from the fixture: A0-A1, A2-A3, A3-A4, B0-B1, C0-C1. Not A1-A3 (0.2 s),
    # not A2-A4 (one person twice), never across cameras, videos or indexes.
    assert target.cannot_link == {(0, 1), (2, 3), (3, 4), (5, 6), (8, 9)}
    assert target.unlinked == 1
    assert target.summary() == (
        f"20 crops of 10 tracks in 3 camera(s) from the footage of {first}, {second}; 5 pairs "
        f"of tracks seen at once (two people), 1 more taken for one person tracked twice")


def test_footage_errors_name_the_folder_or_file(two_indexes, tmp_path):
    first, _ = two_indexes
    with pytest.raises(GalleryError, match=f"^{tmp_path / 'nowhere'}: gallery index folder not "
                                           f"found$"):
        footage_target([tmp_path / "nowhere"])
    with pytest.raises(GalleryError, match=f"^{first}/: index given twice \\(also as {first}\\)"):
        footage_target([first, f"{first}/"])
    crops = GalleryIndex(MODEL)
    crops.add([str(tmp_path / "a.jpg")], np.eye(DIM, dtype=np.float32)[:1])
    crops.save(tmp_path / "crops")
    with pytest.raises(GalleryError, match=f"^{tmp_path / 'crops'}: no footage in the index"):
        footage_target([tmp_path / "crops"])
    with pytest.raises(GalleryError, match="^no footage index given$"):
        footage_target([])
    lost = footage_target([first]).paths[3]
    os.remove(lost)
    with pytest.raises(CorruptIndexError, match=f"^{lost}: the picture of a stored crop \\("
                                                f"camera A, track 1\\) of the index {first} is "
                                                f"missing$"):
        footage_target([first])


def _touch(path, shade: int = 0) -> str:
    cv2.imwrite(str(path), np.full((8, 4, 3), shade, np.uint8))
    return str(path)


def test_image_files_are_loose_crops_with_market_cameras(tmp_path):
    folder = tmp_path / "crops"
    (folder / "more").mkdir(parents=True)
    _touch(folder / "0001_c2s1_000451_03.jpg")
    _touch(folder / "0002_c5_f0046182.png")
    _touch(folder / "person.jpg")
    (folder / "notes.txt").write_text("not a picture")
    elsewhere = _touch(tmp_path / "a1b2c3.jpg")
    os.symlink(elsewhere, folder / "0007_c3_x.jpg")  # the camera is in the link's name
    target = image_target([folder])
    names = [os.path.basename(p) for p in target.paths]
    assert names == ["0001_c2s1_000451_03.jpg", "0002_c5_f0046182.png", "a1b2c3.jpg",
                     "person.jpg"]
    assert target.cameras == (2, 5, 3, 0)
    assert target.tracks == (-1,) * 4 and target.cannot_link == frozenset()
    assert target.track_keys == () and target.track_count == 0
    assert target.left_out == (str(folder / "notes.txt"),)
    assert target.subfolders == (str(folder / "more"),)
    assert target.summary() == (
        f"4 crops in 3 camera(s) (1 of unknown camera) from the images of {folder}; 1 file(s) "
        f"left out, not images by their suffix (e.g. {folder / 'notes.txt'}); 1 subfolder(s) "
        f"not searched (e.g. {folder / 'more'})")
    single = image_target([folder / "person.jpg"])
    assert single.cameras == (0,) and "of unknown camera from the images of" in single.summary()


def test_image_errors_name_what_was_given(tmp_path):
    with pytest.raises(GalleryError, match=f"^{tmp_path / 'none'}: no such file or folder$"):
        image_target([tmp_path / "none"])
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.raises(GalleryError, match=f"^{tmp_path / 'text'}: no images among 1 file\\(s\\) "
                                           f"\\(expected .jpeg, .jpg, .png crops, e.g. not "
                                           f"{tmp_path / 'text' / 'a.txt'}\\)$"):
        image_target([tmp_path / "text"])
