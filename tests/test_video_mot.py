"""MOTChallenge files: one reader, one set of rules, for both of its callers.

Every hand-written file below goes through the scoring's reading (:func:`read_mot`, with
:func:`drop_ignored` for ground truth) and through the detections-file detector
(:class:`MotDetectionFile`), which must agree: the same boxes, or the same one-line error
naming the file and the line.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from reid.video.detector import MotDetectionFile
from reid.video.errors import FootageError
from reid.video.measure import drop_ignored
from reid.video.mot import MotFormatError, MotRow, read_mot, write_mot

FRAME = np.zeros((200, 300, 3), np.uint8)  # larger than every box below: nothing is clipped


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def detector_boxes(path: pathlib.Path) -> list[tuple[int, list[float], float]]:
    """(frame, corners, score) of every box the detector finds, frame by frame."""
    detector, out = MotDetectionFile(path), []
    for frame in detector.frames:
        found = detector.detect(FRAME, frame - 1)
        out += [(frame, box.tolist(), round(float(s), 6))  # scores are float32
                for box, s in zip(found.boxes, found.scores)]
    return out


def test_rows_survive_writing_and_reading(tmp_path):
    gt = [MotRow(1, 3, 10, 20, 30, 60, 1, 1, 0.75), MotRow(2, 3, 11.5, 20.25, 30, 60, 0, 1, 0.05)]
    det = [MotRow(1, -1, 10.12, 19.5, 31, 59.9, 0.875)]
    write_mot(tmp_path / "gt.txt", gt, ground_truth=True)
    write_mot(tmp_path / "det.txt", det)
    assert (tmp_path / "gt.txt").read_text() == ("1,3,10,20,30,60,1,1,0.75\n"
                                                 "2,3,11.5,20.25,30,60,0,1,0.05\n")
    assert (tmp_path / "det.txt").read_text() == "1,-1,10.12,19.5,31,59.9,0.875,-1,-1,-1\n"
    assert read_mot(tmp_path / "gt.txt").rows == gt and read_mot(tmp_path / "gt.txt").ground_truth
    assert read_mot(tmp_path / "det.txt").rows == det
    assert not read_mot(tmp_path / "det.txt").ground_truth
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.txt", "gt.txt"]  # no temporaries


# (text, ground truth?, the rows read, the detector's (frame, corners, score), best first)
READABLE = {
    "det.txt, 10 values": (
        "1,-1,10,20,30,60,0.9,-1,-1,-1\n2,-1,5,5,10,20,1.7,-1,-1,-1\n",
        False, [MotRow(1, -1, 10, 20, 30, 60, 0.9), MotRow(2, -1, 5, 5, 10, 20, 1.7)],
        [(1, [10, 20, 40, 80], 0.9), (2, [5, 5, 15, 25], 1.0)]),  # a score above 1: clipped
    "a trailing comma": (
        "1,-1,10,20,30,60,0.9,-1,-1,-1,\n1,-1,50,20,30,60,0.5,-1,-1,-1, \n",
        False, [MotRow(1, -1, 10, 20, 30, 60, 0.9), MotRow(1, -1, 50, 20, 30, 60, 0.5)],
        [(1, [10, 20, 40, 80], 0.9), (1, [50, 20, 80, 80], 0.5)]),
    "6 values, spaces and a blank line": (
        "1, 7, 1.5, 2, 3, 4\n\n2,7,1,2,3,4\n",
        False, [MotRow(1, 7, 1.5, 2, 3, 4), MotRow(2, 7, 1, 2, 3, 4)],
        [(1, [1.5, 2, 4.5, 6], 1.0), (2, [1, 2, 4, 6], 1.0)]),
    "7 values": (
        "1,-1,1,2,3,4,0.5\n1,-1,9,2,3,4,-0.5\n",
        False, [MotRow(1, -1, 1, 2, 3, 4, 0.5), MotRow(1, -1, 9, 2, 3, 4, -0.5)],
        [(1, [1, 2, 4, 6], 0.5), (1, [9, 2, 12, 6], 0.0)]),
    "gt.txt, 9 values": (
        ("1,1,10,10,20,60,1,1,0.9\n"
         "1,2,40,10,20,60,0,1,1.0\n"      # consider 0: MOTChallenge leaves it out
         "1,3,70,10,20,60,1,3,1.0\n"      # class 3: a car
         "1,4,100,10,20,60,1,7,1.0\n"     # class 7: a static person
         "2,5,130,10,20,60,1,1,0.1\n"),   # a barely visible pedestrian: considered
        True, [MotRow(1, 1, 10, 10, 20, 60, 1, 1, 0.9), MotRow(1, 2, 40, 10, 20, 60, 0, 1, 1.0),
               MotRow(1, 3, 70, 10, 20, 60, 1, 3, 1.0), MotRow(1, 4, 100, 10, 20, 60, 1, 7, 1.0),
               MotRow(2, 5, 130, 10, 20, 60, 1, 1, 0.1)],
        [(1, [10, 10, 30, 70], 1.0), (2, [130, 10, 150, 70], 1.0)]),
    "9 values with id -1 are detections": (
        "1,-1,10,10,20,60,0.4,-1,-1\n",
        False, [MotRow(1, -1, 10, 10, 20, 60, 0.4)], [(1, [10, 10, 30, 70], 0.4)]),
    "MOT15's gt.txt, 10 values": (
        "1,1,10,10,20,60,1,-1,-1,-1\n",
        False, [MotRow(1, 1, 10, 10, 20, 60, 1.0)], [(1, [10, 10, 30, 70], 1.0)]),
}


@pytest.mark.parametrize("case", READABLE)
def test_both_callers_read_the_same_boxes(tmp_path, case):
    text, ground_truth, rows, found = READABLE[case]
    path = write(tmp_path / "file.txt", text)
    mot = read_mot(path)
    assert mot.rows == rows and mot.ground_truth == ground_truth
    assert MotDetectionFile(path).ground_truth == ground_truth
    assert detector_boxes(path) == found
    if ground_truth:  # the scoring's ground truth is the detector's boxes
        scored, _ = drop_ignored(mot.rows, [])
        assert [(r.frame, list(r.corners()), 1.0) for r in scored] == found


@pytest.mark.parametrize("text, message", [
    ("1,-1,1,2,3,4,0.5\n1,2,3,4,5\n", r"line 2: expected at least 6 comma-separated values"),
    ("1 -1 1 2 3 4 0.5\n", r"line 1: expected at least 6 comma-separated values"),
    ("1,-1,1,2,3,4,0.5,,\n", r"line 1: '' is not a number$"),  # one trailing comma, not two
    ("1,-1,1,2,3,4,0.5\n1,-1,1,2,x,4,0.5\n", r"line 2: 'x' is not a number$"),
    ("1,-1,1,2,3,4,0.5\n\n2,-1,1,2,3,4\n", r"line 3: 6 values, but line 1 has 7"),
    ("1,1,1,2,3,4,1,1,1\n2,1,1,2,3,4,1,-1,-1,-1\n", r"line 2: 10 values, but line 1 has 9"),
    ("0,-1,1,2,3,4,0.5\n", r"line 1: frame 0 is not a whole number from 1"),
    ("1.5,-1,1,2,3,4,0.5\n", r"line 1: frame 1.5 is not a whole number from 1"),
    ("1,2.5,1,2,3,4,0.5\n", r"line 1: id 2.5 is not a whole number"),
    ("1,-1,1,2,-3,4,0.5\n", r"line 1: negative box width or height \(-3, 4\)"),
    ("1,-1,1,2,nan,4,0.5\n", r"line 1: 'nan' is not a finite number"),
    ("1,-1,1,2,3,4,inf,-1,-1,-1\n", r"line 1: 'inf' is not a finite number"),
    ("1,1,1,2,3,4,1,1,1\n1,2,1,2,3,4,1,1.5,1\n", r"line 2: class 1.5 is not a whole number"),
])
def test_both_callers_refuse_a_bad_line_naming_the_file_and_the_line(tmp_path, text, message):
    path = write(tmp_path / "det.txt", text)
    with pytest.raises(MotFormatError, match=message) as read:
        read_mot(path)
    with pytest.raises(MotFormatError) as detected:
        MotDetectionFile(path)
    assert str(read.value) == str(detected.value)
    assert str(read.value).startswith(f"{path}: line ") and "\n" not in str(read.value)


def test_a_binary_or_missing_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(MotFormatError, match=r"gt.txt: not a text file"):
        read_mot(path)
    with pytest.raises(MotFormatError, match=r"gt.txt: not a text file"):
        MotDetectionFile(path)
    with pytest.raises(FootageError, match=r"nothing.txt: no such MOTChallenge file$"):
        read_mot(tmp_path / "nothing.txt")
    with pytest.raises(FootageError, match=r"nothing.txt: no such detections file$"):
        MotDetectionFile(tmp_path / "nothing.txt")
