"""Synthetic multi-camera footage with ground truth: the synthetic pedestrians, walking.

The footage pipeline (detect, track, choose crops, index, search across cameras) needs videos
whose every person is known in every frame, and whose people the demo's model can recognise.
So the people are drawn by the crop generator's own code (:mod:`reid.synthetic.drawing`, with its
camera looks), but they are new identities from a seed stream of their own, never the demo's
training people. Each camera looks at a floor in front of a back wall with a door; people cross
it at walking pace, nearer ones larger (a pinhole camera above a flat floor: 60-200 pixels tall
at 360 rows), legs and arms swinging with the distance walked, some through the door, some
crossing one another (the nearer drawn last). The cameras start at different wall-clock times,
and most people walk past two or more of them at different times, so that finding a person in
another camera is a real question; a quarter of the people pass only one camera. ``absent`` of
the people never walk past any camera: they have a query photo only, so that "is this person
anywhere in my cameras?" has a true "no" to find. They are drawn with everyone else, in the same
colour groups (strangers who look like people in the footage, never the same as one), and which
of them are absent is drawn from a stream of its own.

Written by :mod:`reid.synthetic.folder`'s protocol (a staging folder renamed into place, the
manifest last, never over someone else's files)::

    OUT/footage.json          manifest: format, parameters, cameras (name, video, start time,
                              frames, identities), identities (cameras, walks, query photo,
                              absent: true for a person no camera saw, cameras and walks empty)
    OUT/A.avi, B.avi, ...     one Motion-JPEG AVI per camera (OpenCV's own writer and reader)
    OUT/A/gt/gt.txt           MOTChallenge ground truth (read by :mod:`reid.video.mot`)
    OUT/A/det/det.txt         oracle detections (see DET_MIN_VISIBILITY)
    OUT/A/seqinfo.ini         MOTChallenge sequence information
    OUT/queries/0003_c9s1_000001_00.jpg
                              one crop per person (absent people included) from a camera
                              not in the footage

Ground truth is ``frame,id,x,y,w,h,conf,1,visibility``: the tight box of the whole body,
clipped to the frame; ``id`` the person, the same in every camera; ``visibility`` the share of
the body's pixels in the frame and not behind a nearer person; ``conf`` 1, or 0 (ignore) when
less than :data:`MIN_SCORED_VISIBILITY` of the person is visible, as nobody can be asked to
find them. Everything is drawn from random streams of ``seed``, so the same arguments give the
same ground truth and the same frames.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import pathlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from reid.synthetic.crops import encode_bgr_jpeg
from reid.synthetic.drawing import (SUPERSAMPLE, CameraLook, apply_camera_look, draw_person_at,
                                    render_person, sample_camera_look)
from reid.synthetic.folder import GeneratorFolder, Manifest
from reid.synthetic.sampling import CameraStyle, PersonIdentity, sample_camera, sample_identities
from reid.video.errors import FootageError
from reid.video.mot import MotRow, format_mot

if TYPE_CHECKING:
    from reid.utils.progress import Progress

MANIFEST_NAME = "footage.json"
#: What the manifest's "generator" says: the module's name when the format began, kept so that
#: footage on disk stays recognised.
GENERATOR = "reid.video.synthetic"
# Bump whenever drawing or planning changes, so footage drawn by older code is drawn again.
# (2: footage drawn by the uncommitted drafts of this module said 1.)
FORMAT_VERSION = 2
CAMERA_NAMES = "ABCDEFGH"
MAX_CAMERAS = len(CAMERA_NAMES)
#: The query photos' camera number in their Market-1501 names: no footage camera has it.
QUERY_CAMID = 9
QUERY_DIR = "queries"
QUERY_SIZE = (128, 64)  # height, width: the crop generator's default
VIDEO_SUFFIX = ".avi"
#: Motion JPEG through OpenCV's built-in AVI writer: every OpenCV build writes and reads it,
#: without FFmpeg, and a frame decodes on its own.
VIDEO_FOURCC = "MJPG"
VIDEO_QUALITY = 90
#: The wall-clock time of the first camera's first frame; the others start later.
FOOTAGE_START = datetime.datetime(2026, 3, 2, 9, 0, 0, tzinfo=datetime.timezone.utc)
#: Ground truth less visible than this is marked conf 0 (ignored by measure.tracking_metrics).
MIN_SCORED_VISIBILITY = 0.1
#: det.txt holds every ground-truth box at least this visible, moved and resized by a few
#: percent of its size with a seeded generator, scored 0.55 + 0.45 x visibility (+- 0.05):
#: what a good detector would find, for tracking and indexing without a detector.
DET_MIN_VISIBILITY = 0.3
#: People as tall as this are a body height of 1.75 m; the crop generator's heights are 0.9-1.06.
_TALLEST = 1.06
_BODY_METRES = 1.75
# The random streams: [seed, _STREAM, purpose, ...]. The crop generator's are [seed, 0, k] and
# [seed, pid, index] with pid < 10**4, so no footage stream is one of them.
_STREAM = 0x766964656F  # "video"
_IDENTITIES, _CAMERAS, _RIGS, _WALKS, _LOOK, _DETS, _QUERIES, _ABSENT = range(1, 9)
# Seconds between leaving one camera's picture and entering the next one's, at the least.
_GAP = 0.5


@dataclasses.dataclass(frozen=True)
class FootageParams:
    """The arguments that determine the footage."""

    cameras: int = 3
    people: int = 8
    seconds: float = 12.0
    fps: int = 10
    width: int = 480
    height: int = 360
    seed: int = 0
    absent: int = 0  # of ``people``, how many never walk past any camera

    def validate(self) -> None:
        """Refuse arguments that cannot give footage worth measuring; names the argument."""
        for name in ("cameras", "people", "fps", "width", "height", "seed", "absent"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise FootageError(f"{name}: expected an integer, got {value!r}")
        if not isinstance(self.seconds, (int, float)) or isinstance(self.seconds, bool) \
                or not math.isfinite(self.seconds):
            raise FootageError(f"seconds: expected a finite number, got {self.seconds!r}")
        if not 2 <= self.cameras <= MAX_CAMERAS:
            raise FootageError(f"cameras: need 2..{MAX_CAMERAS} (named {CAMERA_NAMES[0]}.."
                               f"{CAMERA_NAMES[-1]}; one camera has nobody to find again), "
                               f"got {self.cameras}")
        if not 2 <= self.people <= 999:
            raise FootageError(f"people: need 2..999, got {self.people}")
        if not 0 <= self.absent <= self.people - 2:
            raise FootageError(f"absent: need 0..{self.people - 2} (of the {self.people} people "
                               f"at least two must walk past the cameras), got {self.absent}")
        if not 2 <= self.seconds <= 600:
            raise FootageError(f"seconds: need 2..600 seconds of footage per camera, got "
                               f"{self.seconds}")
        if not 1 <= self.fps <= 60:
            raise FootageError(f"fps: need 1..60 frames per second, got {self.fps}")
        if not 160 <= self.width <= 1920:
            raise FootageError(f"width: need 160..1920 pixels, got {self.width}")
        if not 120 <= self.height <= 1080:
            raise FootageError(f"height: need 120..1080 pixels, got {self.height}")
        if not 0 <= self.seed < 2**32:
            raise FootageError(f"seed: need 0 <= seed < 2**32, got {self.seed}")

    @property
    def frames(self) -> int:
        """Frames of each camera's video."""
        return max(1, int(round(self.seconds * self.fps)))

    def manifest_params(self) -> dict[str, object]:
        """The parameters as the manifest records them (what a complete folder is matched by):
        ``absent`` only when there are absent people, so that footage drawn before the option
        existed is still found complete (with none, the drawing is the same)."""
        params = dataclasses.asdict(self)
        if not self.absent:
            del params["absent"]
        return params


# --------------------------------------------------------------------------------------------
# The plan: cameras on a floor, people walking across it


@dataclasses.dataclass(frozen=True)
class CameraRig:
    """One camera: its look, when it starts, and where it stands over the floor.

    A pinhole camera ``mount`` metres above a flat floor, looking level: a point on the floor
    ``x`` metres to the side and ``z`` metres ahead is at column ``width / 2 + focal * x / z``
    and row ``horizon + focal * mount / z``, and a body ``b`` metres tall is ``focal * b / z``
    pixels tall. People walk between ``z_near`` (the tallest 200 px at 360 rows, feet at the
    bottom) and ``z_far`` (the shortest 60 px), in front of a back wall at ``z_wall`` whose door
    is ``door`` metres to the side.
    """

    name: str
    camid: int
    style: CameraStyle
    start: float  # seconds after FOOTAGE_START of the first frame
    focal: float
    mount: float
    horizon: float
    z_near: float
    z_far: float
    z_wall: float
    door: float
    width: int
    height: int

    def project(self, x: float, z: float, body: float) -> tuple[float, float, float]:
        """(centre column, feet row, height) in pixels of a ``body``-metre person at x, z."""
        return (self.width / 2 + self.focal * x / z, self.horizon + self.focal * self.mount / z,
                self.focal * body / z)

    def edge(self, z: float) -> float:
        """How far to the side (metres) a person at depth ``z`` is wholly out of view."""
        return self.width / 2 * z / self.focal + 0.7

    @property
    def start_time(self) -> str:
        """The first frame's wall-clock time, ISO 8601."""
        return (FOOTAGE_START + datetime.timedelta(seconds=self.start)).isoformat()


@dataclasses.dataclass(frozen=True)
class Walk:
    """One person walking a straight line across one camera's floor at a steady pace."""

    pid: int
    camera: int  # index into FootagePlan.rigs
    start: float  # seconds after FOOTAGE_START it leaves p0
    p0: tuple[float, float]  # (x, z) metres
    p1: tuple[float, float]
    speed: float  # metres per second
    phase: float  # gait phase at p0, radians
    kind: str  # "across" (side to side) or "door" (to or from the door)

    @property
    def length(self) -> float:
        return math.hypot(self.p1[0] - self.p0[0], self.p1[1] - self.p0[1])

    @property
    def duration(self) -> float:
        return self.length / self.speed

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def view(self) -> str:
        """Which way the person faces the camera, from the direction of the walk."""
        dx, dz = self.p1[0] - self.p0[0], self.p1[1] - self.p0[1]
        if abs(dz) > abs(dx):
            return "front" if dz < 0 else "back"
        return "right" if dx > 0 else "left"


@dataclasses.dataclass(frozen=True)
class FootagePlan:
    """Everything about the footage except the pixels; cheap, and what tests inspect."""

    params: FootageParams
    identities: dict[int, PersonIdentity]  # pid -> identity
    rigs: tuple[CameraRig, ...]
    query_style: CameraStyle
    walks: tuple[Walk, ...]
    single_camera: frozenset[int]  # pids planned to pass one camera only
    absent: frozenset[int] = frozenset()  # pids who pass no camera (a query photo only)


def _rig(index: int, style: CameraStyle, start: float, rng: np.random.Generator, width: int,
         height: int) -> CameraRig:
    s = height / 360
    focal = width * float(rng.uniform(0.85, 1.15))
    mount = float(rng.uniform(2.2, 3.0))
    # The tallest person (1.75 m) is 200 px tall at z_near with the feet near the bottom row;
    # the shortest (0.9 / 1.06 of that) is 62 px tall at z_far.
    z_near = focal * _BODY_METRES / (200 * s)
    horizon = 0.985 * height - focal * mount / z_near
    z_far = focal * _BODY_METRES * 0.9 / _TALLEST / (62 * s)
    z_wall = z_far * 1.08
    door_col = float(rng.uniform(0.25, 0.75)) * width
    return CameraRig(name=CAMERA_NAMES[index], camid=index + 1, style=style, start=start,
                     focal=focal, mount=mount, horizon=horizon, z_near=z_near, z_far=z_far,
                     z_wall=z_wall, door=(door_col - width / 2) * z_wall / focal,
                     width=width, height=height)


def _sample_walk(pid: int, k: int, rig: CameraRig, rng: np.random.Generator) -> Walk:
    """A walk with its start at 0: across the floor (sometimes diagonally), or between the
    door and a side of the picture."""
    near, far = rig.z_near, rig.z_far
    speed = float(rng.uniform(1.1, 1.6))
    phase = float(rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.7:
        # Uniform in 1 / depth, which is uniform in the picture: as many people near as far.
        lo, hi = 1 / far, 1 / near
        inverse = float(rng.uniform(lo, hi))
        z0 = 1 / inverse
        z1 = 1 / float(np.clip(inverse + rng.normal(0, 0.25 * (hi - lo)), lo, hi))
        side = 1.0 if rng.random() < 0.5 else -1.0
        p0, p1 = (-side * rig.edge(z0), z0), (side * rig.edge(z1), z1)
        kind = "across"
    else:
        z = float(rng.uniform(near, near + 0.4 * (far - near)))
        side = 1.0 if rng.random() < 0.5 else -1.0
        door, outside = (rig.door, far), (side * rig.edge(z), z)
        p0, p1 = (door, outside) if rng.random() < 0.5 else (outside, door)
        kind = "door"
    return Walk(pid, k, 0.0, p0, p1, speed, phase, kind)


def _schedule(pid: int, cameras: Sequence[int], rigs: Sequence[CameraRig], seconds: float,
              rng: np.random.Generator) -> list[Walk]:
    """One walk past each of ``cameras`` in the order they start recording, as along a route:
    each seen for a while by its camera, each after the one before (a person is in one place at
    a time). A camera that cannot be fitted in is left out."""
    min_seen = min(2.0, 0.4 * seconds)
    walks: list[Walk] = []
    free_from = -math.inf  # when the person has left the previous camera's picture
    for k in sorted(cameras, key=lambda k: rigs[k].start):
        rig = rigs[k]
        for _attempt in range(100):
            walk = _sample_walk(pid, k, rig, rng)
            # Starts that keep min_seen seconds of the walk inside the recording.
            lo = max(rig.start + min_seen - walk.duration, free_from + _GAP)
            hi = rig.start + seconds - min_seen
            if lo <= hi:
                # Early rather than late, to leave time for the cameras still to come.
                start = lo + (hi - lo) * float(rng.random()) ** 2
                walks.append(dataclasses.replace(walk, start=start))
                free_from = start + walk.duration
                break
    return walks


def _absent_people(params: FootageParams) -> frozenset[int]:
    """Which people never pass a camera: drawn from a stream of their own, and nothing drawn
    when there are none, so that the other streams (and the footage) are as without the
    option."""
    if not params.absent:
        return frozenset()
    rng = np.random.default_rng([params.seed, _STREAM, _ABSENT])
    chosen = rng.choice(np.arange(1, params.people + 1), size=params.absent, replace=False)
    return frozenset(int(p) for p in chosen)


def plan_footage(params: FootageParams) -> FootagePlan:
    """People, cameras and walks, from the seed alone."""
    params.validate()
    # Everyone, absent people included, is drawn in one call: they share colour groups, and no
    # two are the same (sample_identities' rules).
    people = sample_identities(params.people, np.random.default_rng([params.seed, _STREAM,
                                                                     _IDENTITIES]))
    absent = _absent_people(params)
    style_rng = np.random.default_rng([params.seed, _STREAM, _CAMERAS])
    styles = [sample_camera(style_rng) for _ in range(params.cameras + 1)]
    rig_rng = np.random.default_rng([params.seed, _STREAM, _RIGS])
    rigs, start = [], 0.0
    for k in range(params.cameras):
        rigs.append(_rig(k, styles[k], start, rig_rng, params.width, params.height))
        # Each camera starts a while after the one before (in whole seconds), long enough for
        # a person to walk out of one picture and into the next.
        start += max(1.0, round(float(rig_rng.uniform(0.45, 0.75)) * params.seconds))
    walk_rng = np.random.default_rng([params.seed, _STREAM, _WALKS])
    pids = [p for p in range(1, params.people + 1) if p not in absent]
    single = {int(p) for p in walk_rng.choice(pids, size=len(pids) // 4, replace=False)}
    walks: list[Walk] = []
    for pid in pids:
        wanted = 1 if pid in single else int(walk_rng.integers(2, params.cameras + 1))
        best: list[Walk] = []
        for _try in range(20):
            chosen = [int(k) for k in walk_rng.permutation(params.cameras)[:wanted]]
            mine = _schedule(pid, chosen, rigs, params.seconds, walk_rng)
            if len(mine) > len(best):
                best = mine
            if len(best) == wanted:
                break
        if len(best) < min(wanted, 2):
            raise FootageError(f"seconds: {params.seconds:g} s is too short to walk person {pid} "
                               f"past two cameras at different times; give more seconds")
        walks.extend(best)
    return FootagePlan(params=params, identities=dict(zip(range(1, params.people + 1), people)),
                       rigs=tuple(rigs), query_style=styles[-1], walks=tuple(walks),
                       single_camera=frozenset(single), absent=absent)


# --------------------------------------------------------------------------------------------
# Drawing


@dataclasses.dataclass(frozen=True)
class _Figure:
    """A walker in one frame: where and how to draw them, in frame pixels."""

    pid: int
    identity: PersonIdentity
    view: str
    cx: float
    feet: float
    height: float
    stride: float
    arms: tuple[float, float]
    depth: float

    def bounds(self) -> tuple[int, int, int, int]:
        """x0, y0, x1, y1 that hold everything drawn (arms, bags and feet included)."""
        h = self.height
        return (int(math.floor(self.cx - 0.5 * h)), int(math.floor(self.feet - 1.05 * h)),
                int(math.ceil(self.cx + 0.5 * h)) + 1, int(math.ceil(self.feet + 0.06 * h)) + 1)

    def draw(self, canvas: np.ndarray, scale: float = 1.0, dx: float = 0.0,
             dy: float = 0.0) -> None:
        draw_person_at(canvas, self.identity, view=self.view, cx=(self.cx - dx) * scale,
                       feet=(self.feet - dy) * scale, height=self.height * scale,
                       stride=self.stride, arm_angles=self.arms)


def _figure(walk: Walk, rig: CameraRig, identity: PersonIdentity, t: float) -> _Figure:
    """``walk``'s person ``t`` seconds into it: position on the line, size, gait."""
    body = _BODY_METRES * identity.height / _TALLEST
    done = min(walk.speed * t, walk.length)
    share = done / walk.length
    x = walk.p0[0] + (walk.p1[0] - walk.p0[0]) * share
    z = walk.p0[1] + (walk.p1[1] - walk.p0[1]) * share
    cx, feet, height = rig.project(x, z, body)
    # Two steps (one gait cycle) take about 0.85 body heights.
    phase = walk.phase + 2 * math.pi * done / (0.85 * body)
    swing = math.sin(phase)
    view = walk.view
    if view in ("left", "right"):
        stride, arms = 0.5 * swing, (0.45 * swing, -0.45 * swing)  # the far arm first
    else:
        stride, arms = 0.04 + 0.08 * abs(swing), (0.12 + 0.08 * swing, 0.12 - 0.08 * swing)
    return _Figure(walk.pid, identity, view, cx, feet, height, stride, arms, z)


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in color)  # type: ignore[return-value]


def _draw_scene(rig: CameraRig, scale: int) -> np.ndarray:
    """The empty scene at ``scale`` times the frame size: wall, door, the camera's structures
    on the wall, floor and its tiles in perspective."""
    style, w, h = rig.style, rig.width, rig.height

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x * scale)), int(round(y * scale))

    canvas = np.empty((h * scale, w * scale, 3), np.uint8)
    floor_top = rig.horizon + rig.focal * rig.mount / rig.z_wall
    top = int(round(floor_top * scale))
    canvas[:top] = style.wall_color
    canvas[top:] = style.floor_color
    # The crop generator's structures span -0.8..2.2 crop widths: spread them over the wall.
    for x0, y0, x1, y1, color in style.structures:
        cv2.rectangle(canvas, pt((x0 + 0.8) / 3 * w, y0 * floor_top),
                      pt((x1 + 0.8) / 3 * w, min(y1, 1.0) * floor_top), color, -1)
    door_x = w / 2 + rig.focal * rig.door / rig.z_wall
    half, tall = 0.55 * rig.focal / rig.z_wall, 2.2 * rig.focal / rig.z_wall
    cv2.rectangle(canvas, pt(door_x - half, floor_top - tall), pt(door_x + half, floor_top),
                  _shade(style.wall_color, 0.5), -1)
    line = _shade(style.floor_color, 0.75)
    cv2.line(canvas, pt(0, floor_top), pt(w, floor_top), _shade(style.wall_color, 0.7),
             max(1, scale))
    if style.floor_lines > 0:
        spacing = 1.0 + 4 * style.floor_lines  # metres between tile lines
        z_bottom = rig.focal * rig.mount / max(h - rig.horizon, 1.0)
        reach = rig.edge(rig.z_wall) + 2 * spacing
        for i in range(-int(reach / spacing), int(reach / spacing) + 1):
            x = i * spacing
            cv2.line(canvas, pt(w / 2 + rig.focal * x / rig.z_wall, floor_top),
                     pt(w / 2 + rig.focal * x / z_bottom, h), line, 1)
        z = rig.z_wall - spacing
        while z > z_bottom:
            y = rig.horizon + rig.focal * rig.mount / z
            cv2.line(canvas, pt(0, y), pt(w, y), line, 1)
            z -= spacing
    return canvas


def _clip(box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def _in_frame(box: tuple[int, int, int, int], w: int, h: int) -> bool:
    x0, y0, x1, y1 = _clip(box, w, h)
    return x0 < x1 and y0 < y1


@dataclasses.dataclass
class _CameraResult:
    gt: list[MotRow]
    det: list[MotRow]
    seconds: float


def _render_camera(plan: FootagePlan, k: int, video: pathlib.Path,
                   progress: Progress | None = None) -> _CameraResult:
    """Write camera ``k``'s video; return its ground truth and oracle detections."""
    params, rig = plan.params, plan.rigs[k]
    w, h, s = params.width, params.height, SUPERSAMPLE
    started = time.perf_counter()
    scene = _draw_scene(rig, s)
    look_rng = np.random.default_rng([params.seed, _STREAM, _LOOK, k])
    look: CameraLook = sample_camera_look(rig.style, look_rng)
    # One noise pattern for the whole video: the background is looked once, people's regions
    # every frame, and both must meet without a seam.
    noise = look_rng.normal(0.0, rig.style.noise, size=(h, w, 3)).astype(np.float32)
    background = apply_camera_look(cv2.resize(scene, (w, h), interpolation=cv2.INTER_AREA),
                                   rig.style, look, noise)
    margin = int(math.ceil(4 * look.blur)) + 2 if look.blur > 0.25 else 1
    walks = [wk for wk in plan.walks if wk.camera == k]
    writer = cv2.VideoWriter(str(video), cv2.CAP_OPENCV_MJPEG,
                             cv2.VideoWriter_fourcc(*VIDEO_FOURCC), params.fps, (w, h))
    if not writer.isOpened():
        raise FootageError(f"{video}: OpenCV cannot write a {VIDEO_FOURCC} video here")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, VIDEO_QUALITY)
    det_rng = np.random.default_rng([params.seed, _STREAM, _DETS, k])
    gt: list[MotRow] = []
    det: list[MotRow] = []
    canvas = np.empty_like(scene)
    occupied = np.zeros((h, w), bool)
    try:
        for f in range(params.frames):
            t = rig.start + f / params.fps
            figures = [_figure(wk, rig, plan.identities[wk.pid], t - wk.start)
                       for wk in walks if wk.start <= t <= wk.end]
            figures = [fg for fg in figures if _in_frame(fg.bounds(), w, h)]
            figures.sort(key=lambda fg: (-fg.depth, fg.pid))  # far to near: drawing order
            # Ground truth, nearest first: what a nearer person covers is not visible behind.
            occupied[:] = False
            rows = []
            for fg in reversed(figures):
                row = _ground_truth(fg, f + 1, occupied)
                if row is not None:
                    rows.append(row)
            rows.sort(key=lambda r: r.id)
            gt.extend(rows)
            det.extend(_detections(rows, det_rng, w, h))
            # Pixels: people drawn far to near on the big scene, then only their regions are
            # downsampled and given the camera's look.
            frame = background.copy()
            if figures:
                np.copyto(canvas, scene)
                for fg in figures:
                    fg.draw(canvas, s)
                for fg in figures:
                    _develop(frame, canvas, fg.bounds(), margin, rig.style, look, noise)
            writer.write(frame)
            if progress is not None:
                progress.update(f + 1)
    finally:
        writer.release()
    return _CameraResult(gt, det, time.perf_counter() - started)


def _ground_truth(fg: _Figure, frame: int, occupied: np.ndarray) -> MotRow | None:
    """The person's box and visible share, and their pixels marked in ``occupied``."""
    h, w = occupied.shape
    x0, y0, x1, y1 = fg.bounds()
    local = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    fg.draw(local, 1.0, x0, y0)
    body = local.any(axis=2)
    area = int(body.sum())
    if area == 0:
        return None
    cx0, cy0, cx1, cy1 = _clip((x0, y0, x1, y1), w, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    inside = body[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    region = occupied[cy0:cy1, cx0:cx1]
    visible = int((inside & ~region).sum())
    region |= inside
    # The tight box of the whole body, cut at the frame's edges (as MOTChallenge boxes are).
    ys, xs = np.nonzero(body)
    bx0, by0, bx1, by1 = _clip((int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max()) + x0 + 1,
                                int(ys.max()) + y0 + 1), w, h)
    if bx0 >= bx1 or by0 >= by1:
        return None
    visibility = round(visible / area, 3)  # as written, so that the file agrees with itself
    return MotRow.from_corners(frame, fg.pid, bx0, by0, bx1, by1,
                               conf=1.0 if visibility >= MIN_SCORED_VISIBILITY else 0.0,
                               object_class=1, visibility=visibility)


def _detections(rows: Sequence[MotRow], rng: np.random.Generator, w: int, h: int
                ) -> list[MotRow]:
    out = []
    for r in rows:
        # Drawn for every row, so one row's visibility does not shift the others' jitter.
        jitter = rng.normal(0.0, 1.0, size=5)
        if r.visibility < DET_MIN_VISIBILITY:
            continue
        cx = r.x + r.w / 2 + jitter[0] * 0.03 * r.w
        cy = r.y + r.h / 2 + jitter[1] * 0.02 * r.h
        bw, bh = r.w * (1 + 0.04 * jitter[2]), r.h * (1 + 0.03 * jitter[3])
        x0, y0 = max(0.0, cx - bw / 2), max(0.0, cy - bh / 2)
        x1, y1 = min(float(w), cx + bw / 2), min(float(h), cy + bh / 2)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        score = float(np.clip(0.55 + 0.45 * r.visibility + 0.05 * jitter[4], 0.05, 0.99))
        out.append(MotRow.from_corners(r.frame, -1, round(x0, 2), round(y0, 2), round(x1, 2),
                                       round(y1, 2), conf=round(score, 3)))
    return out


def _develop(frame: np.ndarray, canvas: np.ndarray, bounds: tuple[int, int, int, int],
             margin: int, style: CameraStyle, look: CameraLook, noise: np.ndarray) -> None:
    """Downsample one person's region of the big canvas into ``frame`` with the camera look,
    computed over a margin wide enough for the blur, so that it joins the background unseen."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = _clip((bounds[0] - 1, bounds[1] - 1, bounds[2] + 1, bounds[3] + 1), w, h)
    if x0 >= x1 or y0 >= y1:
        return
    px0, py0, px1, py1 = _clip((x0 - margin, y0 - margin, x1 + margin, y1 + margin), w, h)
    s = canvas.shape[0] // h
    small = cv2.resize(canvas[py0 * s:py1 * s, px0 * s:px1 * s], (px1 - px0, py1 - py0),
                       interpolation=cv2.INTER_AREA)
    developed = apply_camera_look(small, style, look, noise[py0:py1, px0:px1],
                                  window=(px0, py0, w, h))
    frame[y0:y1, x0:x1] = developed[y0 - py0:y1 - py0, x0 - px0:x1 - px0]


# --------------------------------------------------------------------------------------------
# Writing


def _seqinfo(rig: CameraRig, params: FootageParams) -> str:
    """MOTChallenge's sequence file; imDir and imExt say where its tools would look for frame
    images, which are not written (the frames are the video's)."""
    return (f"[Sequence]\n"
            f"; the frames are those of ../{rig.name}{VIDEO_SUFFIX}; no img1 folder is written\n"
            f"name={rig.name}\nimDir=img1\nframeRate={params.fps}\nseqLength={params.frames}\n"
            f"imWidth={params.width}\nimHeight={params.height}\nimExt=.jpg\n")


def query_name(pid: int) -> str:
    """The query photo of person ``pid``, named as Market-1501 names its crops."""
    return f"{pid:04d}_c{QUERY_CAMID}s1_000001_00.jpg"


def camera_files(name: str) -> dict[str, str]:
    """Where camera ``name``'s files are, relative to the footage folder."""
    return {"video": f"{name}{VIDEO_SUFFIX}", "gt": f"{name}/gt/gt.txt",
            "det": f"{name}/det/det.txt", "seqinfo": f"{name}/seqinfo.ini"}


def _check_video(path: pathlib.Path, frames: int, width: int, height: int) -> None:
    """What was written reads back: OpenCV opens it and finds the frames and their size."""
    capture = cv2.VideoCapture(str(path))
    try:
        ok, image = capture.read()
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if not ok or image.shape[:2] != (height, width) or count != frames:
        got = "nothing" if not ok else f"{count} frames of {image.shape[1]}x{image.shape[0]}"
        raise FootageError(f"{path}: wrote {frames} frames of {width}x{height}, but OpenCV reads "
                           f"back {got}")


@dataclasses.dataclass(frozen=True)
class CameraSummary:
    name: str
    frames: int
    identities: tuple[int, ...]
    boxes: int
    seconds: float  # spent drawing it


@dataclasses.dataclass(frozen=True)
class FootageSummary:
    """What was written (or found already there) and how long it took."""

    out_dir: str
    params: FootageParams
    cameras: tuple[CameraSummary, ...]
    seconds: float
    skipped: bool
    replaced: bool = False
    absent: tuple[int, ...] = ()  # people with a query photo only

    @property
    def frames_per_second(self) -> float:
        """Frames drawn (and encoded) per second of drawing time."""
        drawing = sum(c.seconds for c in self.cameras)
        return sum(c.frames for c in self.cameras) / drawing if drawing > 0 else 0.0

    def text(self, redraw: str | None = None) -> str:
        """The summary; ``redraw``: how the caller redraws skipped footage (a tool's flag)."""
        p = self.params
        if self.skipped:
            status = ("already complete with the same parameters; skipped"
                      + (f" ({redraw})" if redraw else ""))
        else:
            status = (f"{len(self.cameras)} videos written in {self.seconds:.1f} s "
                      f"({self.frames_per_second:.0f} frames/s)"
                      + (" (replaced the previous synthetic footage)" if self.replaced else ""))
        lines = [f"synthetic footage at {self.out_dir}: {status}",
                 f"  cameras={p.cameras} people={p.people} seconds={p.seconds:g} fps={p.fps} "
                 f"size={p.width}x{p.height} seed={p.seed}"]
        for c in self.cameras:
            lines.append(f"  camera {c.name}: {c.frames} frames, {c.boxes} ground-truth boxes, "
                         f"people {', '.join(str(i) for i in c.identities) or 'none'}")
        if self.absent:
            lines.append(f"  never in any camera (a query photo only): people "
                         f"{', '.join(str(i) for i in self.absent)}")
        return "\n".join(lines)


def _manifest(plan: FootagePlan, results: Sequence[_CameraResult]) -> Manifest:
    """The manifest's fields after the generator, format and parameters."""
    params = plan.params
    seen: dict[int, list[str]] = {pid: [] for pid in plan.identities}
    cameras = []
    for rig, result in zip(plan.rigs, results):
        ids = sorted({r.id for r in result.gt})
        for pid in ids:
            seen[pid].append(rig.name)
        cameras.append({"name": rig.name, "camid": rig.camid, **camera_files(rig.name),
                        "start": rig.start_time, "frames": params.frames, "identities": ids,
                        "boxes": len(result.gt)})
    people = []
    for pid in plan.identities:
        walks = [{"camera": plan.rigs[wk.camera].name,
                  "start": (FOOTAGE_START + datetime.timedelta(seconds=wk.start)).isoformat(),
                  "seconds": round(wk.duration, 2), "view": wk.view, "kind": wk.kind}
                 for wk in sorted((w for w in plan.walks if w.pid == pid), key=lambda w: w.start)]
        people.append({"id": pid, "cameras": seen[pid], "single_camera": pid in plan.single_camera,
                       "absent": pid in plan.absent, "query": f"{QUERY_DIR}/{query_name(pid)}",
                       "walks": walks})
    files = [MANIFEST_NAME] + [f for c in cameras for f in camera_files(str(c["name"])).values()]
    files += [str(p["query"]) for p in people]
    return {
        "fps": params.fps, "width": params.width, "height": params.height, "seed": params.seed,
        "query_camid": QUERY_CAMID,
        "detections": (f"oracle: ground-truth boxes at least {DET_MIN_VISIBILITY:g} visible, "
                       f"moved and resized by 2-4% of their size, score 0.55 + 0.45 x "
                       f"visibility +- 0.05"),
        "cameras": cameras,
        "identities": people,
        "files": sorted(files),
    }


def _listed_files(manifest: Manifest) -> set[str]:
    files = manifest.get("files")
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


FOLDER = GeneratorFolder(MANIFEST_NAME, GENERATOR, FORMAT_VERSION, "synthetic footage",
                         FootageError, _listed_files)


def read_footage_manifest(out_dir: str | os.PathLike) -> Manifest | None:
    """The manifest of synthetic footage in ``out_dir``, or None when there is none to read."""
    return FOLDER.read_manifest(out_dir)


def is_complete(out_dir: str | os.PathLike, params: FootageParams) -> bool:
    """True if ``out_dir`` holds this generator's footage for ``params``, every file present."""
    return FOLDER.is_complete(out_dir, params.manifest_params())


def absent_people(manifest: Manifest) -> list[int]:
    """The people of a footage manifest whom no camera saw (a query photo only)."""
    people = manifest.get("identities")
    return [int(p["id"]) for p in people if isinstance(p, dict) and p.get("absent")] \
        if isinstance(people, list) else []


def make_synthetic_footage(out_dir: str | os.PathLike, cameras: int = 3, people: int = 8,
                           seconds: float = 12.0, fps: int = 10, width: int = 480,
                           height: int = 360, seed: int = 0, absent: int = 0, *,
                           force: bool = False, progress: bool = False) -> FootageSummary:
    """Write synthetic footage with ground truth to ``out_dir`` (layout: the module docstring).

    ``people`` counts everyone, the ``absent`` people who never pass a camera included.
    Skips the work when ``out_dir`` already holds complete footage with the same parameters,
    unless ``force``; replaces footage it wrote with other parameters, but refuses a non-empty
    folder it did not write. The defaults (3 cameras x 12 s at 10 fps, 480x360, 8 people) are
    the demo's: a few seconds to draw, and a minute of indexing at most.
    """
    params = FootageParams(cameras, people, seconds, fps, width, height, seed, absent)
    params.validate()
    out = pathlib.Path(out_dir)
    started = time.perf_counter()
    if not force and is_complete(out, params):
        manifest = read_footage_manifest(out) or {}
        cams = tuple(CameraSummary(c["name"], c["frames"], tuple(c["identities"]), c["boxes"], 0.0)
                     for c in manifest.get("cameras", []))  # type: ignore[union-attr]
        return FootageSummary(str(out), params, cams, time.perf_counter() - started, skipped=True,
                              absent=tuple(absent_people(manifest)))
    results: list[_CameraResult] = []
    with FOLDER.replace(out) as staging:
        plan = plan_footage(params)
        tmp = staging.path
        for rig in plan.rigs:
            files = camera_files(rig.name)
            for key in ("gt", "det"):
                (tmp / files[key]).parent.mkdir(parents=True)
            bar = None
            if progress:
                from reid.utils.progress import Progress

                bar = Progress(f"camera {rig.name}", params.frames, "frame")
            try:
                result = _render_camera(plan, rig.camid - 1, tmp / files["video"], bar)
            finally:
                if bar is not None:
                    bar.close()
            _check_video(tmp / files["video"], params.frames, params.width, params.height)
            (tmp / files["gt"]).write_text(format_mot(result.gt, ground_truth=True),
                                           encoding="utf-8")
            (tmp / files["det"]).write_text(format_mot(result.det), encoding="utf-8")
            (tmp / files["seqinfo"]).write_text(_seqinfo(rig, params), encoding="utf-8")
            results.append(result)
        (tmp / QUERY_DIR).mkdir()
        for pid, identity in plan.identities.items():
            rng = np.random.default_rng([seed, _STREAM, _QUERIES, pid])
            image = render_person(identity, plan.query_style, rng, *QUERY_SIZE)
            (tmp / QUERY_DIR / query_name(pid)).write_bytes(encode_bgr_jpeg(image))
        manifest = _manifest(plan, results)
        staging.finish(params.manifest_params(), manifest)
    cams = tuple(CameraSummary(c["name"], c["frames"], tuple(c["identities"]), c["boxes"],
                               r.seconds)
                 for c, r in zip(manifest["cameras"], results))  # type: ignore[call-overload]
    return FootageSummary(str(out), params, cams, time.perf_counter() - started, skipped=False,
                          replaced=staging.replaced, absent=tuple(sorted(plan.absent)))
