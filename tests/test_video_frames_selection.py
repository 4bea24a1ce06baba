"""Reading frames (video files and frame folders) and choosing the crops of a track."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np
import pytest

from reid.video.errors import FootageError
from reid.video.frames import FrameSource
from reid.video.selection import Candidate, CandidatePool, crop_quality, sharpness, spread_best


def _write_video(path: pathlib.Path, frames: int, fps: float = 10.0,
                 size: tuple[int, int] = (64, 48)) -> None:
    """Frame i is filled with grey level 4 * i, so a read frame tells its own index."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 4 * i, np.uint8))
    writer.release()


def _level(image: np.ndarray) -> int:
    return int(round(float(image.mean()) / 4))


def test_video_frames_times_and_every(tmp_path):
    video = tmp_path / "cam.avi"
    _write_video(video, 25, fps=5.0)
    source = FrameSource(video)
    assert (source.width, source.height, source.fps, source.frame_count) == (64, 48, 5.0, 25)
    frames = list(source)
    assert [f.index for f in frames] == list(range(25))
    assert [_level(f.image) for f in frames] == list(range(25))
    assert frames[7].time == pytest.approx(7 / 5.0)
    assert not source.ended_early and source.frames_read == 25

    every = FrameSource(video, every=4)
    got = list(every)
    assert [f.index for f in got] == [0, 4, 8, 12, 16, 20, 24] == [_level(f.image) for f in got]
    assert every.expected_frames == 7 and every.frames_seen == 25


def test_a_truncated_video_is_reported_not_silent(tmp_path):
    video = tmp_path / "cut.avi"
    _write_video(video, 40)
    data = video.read_bytes()
    video.write_bytes(data[:len(data) // 2])  # the header still promises 40 frames
    source = FrameSource(video)
    frames = list(source)
    if source.frame_count is None:
        pytest.fail("OpenCV lost the frame count of a truncated AVI; the test needs it")
    assert 0 < len(frames) < 40 and source.ended_early


def test_frame_folder_with_seqinfo_rate(tmp_path):
    folder = tmp_path / "seq" / "img1"
    folder.mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i + 1:06d}.png"), np.full((20, 30, 3), 4 * i, np.uint8))
    (tmp_path / "seq" / "seqinfo.ini").write_text("[Sequence]\nname=seq\nframeRate=25\n")
    source = FrameSource(folder)
    frames = list(source)
    assert source.fps == 25 and [_level(f.image) for f in frames] == list(range(6))
    assert frames[5].time == pytest.approx(5 / 25)
    assert FrameSource(folder, fps=2).fps == 2


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.avi", "no such video file or frame folder"),
    (lambda p: (p / "bad.avi").write_bytes(b"not a video") and p / "bad.avi", "cannot open"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "has no frame images"),
])
def test_sources_that_cannot_be_read_are_one_line_errors(tmp_path, make, message):
    with pytest.raises(FootageError, match=message):
        FrameSource(make(tmp_path))


def _candidate(frame: int, quality: float) -> Candidate:
    return Candidate(frame, frame / 10, (0, 0, 10, 20), 1.0, quality, np.zeros((2, 2, 3)))


def test_spread_best_takes_the_best_of_each_equal_part():
    rng = np.random.default_rng(0)
    candidates = [_candidate(int(f), float(q)) for f, q in
                  zip(rng.choice(1000, 200, replace=False), rng.random(200))]
    chosen = spread_best(candidates, 4)
    first, last = min(c.frame for c in candidates), max(c.frame for c in candidates)
    expected = []
    for part in range(4):  # brute force: the parts' bounds, then the best inside each
        lo = first + part * (last - first + 1) / 4
        hi = first + (part + 1) * (last - first + 1) / 4
        inside = [c for c in candidates if lo <= c.frame < hi]
        expected.append(max(inside, key=lambda c: c.quality))
    assert chosen == expected
    assert [c.frame for c in chosen] == sorted(c.frame for c in chosen)


def test_the_pool_stays_bounded_and_keeps_the_span():
    pool = CandidatePool(3)
    for f in range(500):
        pool.add(_candidate(f, quality=float((f * 37) % 101)))
        assert len(pool.candidates) <= 6
    assert (pool.boxes, pool.first_frame, pool.last_frame) == (500, 0, 499)
    chosen = pool.choose(3)
    assert len(chosen) == 3 and chosen[0].frame < 200 and chosen[-1].frame >= 300


def test_quality_prefers_sharp_large_confident_whole_crops():
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 255, (128, 64, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (15, 15), 5)
    assert sharpness(sharp) > sharpness(blurred)
    frame = (720, 1280)
    inside, edge = (100, 100, 164, 228), (0, 100, 64, 228)
    q = crop_quality(sharp, inside, 0.9, frame, 128)
    assert q > crop_quality(blurred, inside, 0.9, frame, 128)
    assert crop_quality(sharp, edge, 0.9, frame, 128) == pytest.approx(q / 2)
    assert crop_quality(sharp, inside, 0.45, frame, 128) == pytest.approx(q / 2)
    small = (100, 100, 132, 164)  # half the height the model wants
    assert crop_quality(sharp, small, 0.9, frame, 128) == pytest.approx(q / 2)
