"""Synthetic pedestrians: a Market-1501-layout dataset drawn with OpenCV, without downloads.

The demo and the tests need a re-identification dataset that is small, reproducible and free of
licences, yet not trivial: if identity were readable from the mean colour of a crop, any model
(even an untrained one) would look good and the demo would prove nothing. So:

* identities come in groups that share the top colour (and usually the bottom colour) and differ
  only in cues a network has to learn to look at: clothing pattern, sleeves, trousers/shorts/skirt,
  hair, hat, shoes, bags and body proportions;
* every camera has its own colour cast, exposure, blur, noise, background, framing, viewpoint
  habits and occluders, so the same person's colours shift between cameras;
* the viewpoint decides what is visible: a chest logo only from the front, a print on the back
  and most of a backpack only from behind, a shoulder bag fully only from its own side.

Every image is drawn from its own random stream ``default_rng([seed, pid, index])`` and JPEG
encoded at a fixed quality, so the same arguments give byte-identical files however many worker
processes draw them. The dataset is written into a temporary sibling folder, fsynced and
renamed into place with its manifest, so an interrupted run never leaves something that looks
complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import pathlib
import time
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from reid.data.records import DatasetError
from reid.utils.io import staged_dir

MANIFEST_NAME = "synthetic.json"
# Bump whenever drawing changes, so an existing dataset drawn by older code is regenerated.
FORMAT_VERSION = 1
JPEG_QUALITY = 90
TRAIN_DIR, QUERY_DIR, GALLERY_DIR = "bounding_box_train", "query", "bounding_box_test"
SPLIT_DIRS = (TRAIN_DIR, QUERY_DIR, GALLERY_DIR)
# Market-1501 readers parse the camera as one digit and the pid as four.
MAX_CAMERAS = 9
MAX_IDS = 9999
MIN_IMAGES_PER_ID = 4
MIN_SIZE, MAX_SIZE = 32, 1024
# Below this many images, starting worker processes costs more than it saves.
POOL_MIN_IMAGES = 64
# Drawing happens at this multiple of the output size and is then area-downsampled, which gives
# anti-aliased edges for the price of one resize.
_SUPERSAMPLE = 2

Color = tuple[int, int, int]  # BGR, as OpenCV draws


class SyntheticError(DatasetError):
    """Impossible generator arguments or an output folder the generator must not touch."""


# --------------------------------------------------------------------------------------------
# Palettes: (BGR, sampling weight). Names are what identities store, so tests and reports can
# talk about "navy tops" rather than triples.

TOP_COLORS: dict[str, tuple[Color, float]] = {
    "black": ((28, 28, 28), 3.0),
    "white": ((225, 225, 222), 2.5),
    "grey": ((125, 125, 125), 2.0),
    "navy": ((85, 38, 22), 2.0),
    "blue": ((175, 95, 35), 1.5),
    "light_blue": ((220, 180, 130), 1.0),
    "red": ((40, 38, 185), 1.2),
    "dark_red": ((40, 30, 115), 1.0),
    "green": ((60, 125, 45), 1.0),
    "olive": ((55, 110, 110), 0.8),
    "beige": ((140, 180, 205), 1.0),
    "brown": ((40, 70, 110), 0.8),
    "yellow": ((45, 200, 225), 0.6),
    "pink": ((180, 150, 230), 0.6),
    "purple": ((120, 50, 100), 0.6),
    "orange": ((30, 120, 230), 0.5),
}
BOTTOM_COLORS: dict[str, tuple[Color, float]] = {
    "black": ((28, 28, 28), 3.0),
    "jeans": ((150, 100, 65), 3.0),
    "navy": ((85, 38, 22), 2.0),
    "grey": ((115, 115, 115), 1.5),
    "khaki": ((120, 165, 190), 1.5),
    "brown": ((40, 70, 110), 1.0),
    "white": ((220, 220, 218), 0.5),
    "dark_green": ((45, 75, 40), 0.5),
}
HAIR_COLORS: dict[str, tuple[Color, float]] = {
    "black": ((20, 20, 24), 4.0),
    "dark_brown": ((30, 45, 70), 3.0),
    "brown": ((45, 80, 130), 1.5),
    "blond": ((120, 190, 225), 1.0),
    "grey": ((165, 165, 165), 0.7),
    "auburn": ((30, 60, 150), 0.5),
}
SKIN_TONES: dict[str, tuple[Color, float]] = {
    "light": ((190, 215, 250), 1.0),
    "fair": ((150, 185, 230), 1.0),
    "medium": ((110, 150, 200), 1.0),
    "tan": ((75, 110, 160), 1.0),
    "dark": ((45, 65, 100), 1.0),
}
SHOE_COLORS: dict[str, tuple[Color, float]] = {
    "black": ((25, 25, 25), 3.0),
    "white": ((235, 235, 235), 2.0),
    "brown": ((35, 60, 100), 1.0),
    "grey": ((130, 130, 130), 1.0),
    "red": ((40, 40, 200), 0.5),
    "blue": ((200, 110, 40), 0.5),
}
BAG_COLORS: dict[str, tuple[Color, float]] = {
    "black": ((30, 30, 30), 3.0),
    "brown": ((40, 75, 120), 1.5),
    "grey": ((140, 140, 140), 1.0),
    "navy": ((90, 45, 25), 1.0),
    "red": ((40, 40, 190), 0.7),
    "green": ((50, 140, 60), 0.5),
    "yellow": ((40, 200, 230), 0.5),
    "pink": ((190, 140, 240), 0.5),
}
HAT_COLORS = ("black", "white", "red", "navy", "beige", "grey")  # looked up in TOP_COLORS

TOP_PATTERNS: dict[str, float] = {
    "solid": 3.0,      # plain
    "hstripes": 1.2,   # horizontal stripes, all views
    "vstripes": 1.0,   # vertical stripes, all views
    "checks": 1.0,     # chequered, all views
    "twotone": 1.0,    # shoulders/chest in the accent colour, all views
    "logo": 1.2,       # a shape on the chest: front view only
    "backprint": 1.0,  # a wide block on the back: back view only
}
LOGO_SHAPES = ("circle", "square", "triangle", "diamond")
BOTTOM_KINDS: dict[str, float] = {"trousers": 3.0, "shorts": 1.0, "skirt": 1.0}
HAIR_LENGTHS: dict[str, float] = {"short": 2.0, "medium": 1.0, "long": 1.2}
BAGS: dict[str, float] = {"none": 2.0, "backpack": 1.2, "bag_left": 0.8, "bag_right": 0.8}
VIEWS = ("front", "back", "left", "right")  # the way the person faces; "left" shows their left


# --------------------------------------------------------------------------------------------
# Identities and cameras


@dataclasses.dataclass(frozen=True)
class PersonIdentity:
    """What stays the same about a person across cameras: clothes, hair, bags, build.

    Colours are palette names (see the ``*_COLORS`` tables). ``group`` is the colour group the
    identity was drawn in: members share ``top_color`` (and usually ``bottom_color``) so only
    the other attributes tell them apart.
    """

    top_color: str
    top_pattern: str
    accent_color: str
    logo_shape: str
    stripe_period: float  # pattern period as a fraction of body height
    sleeves: str  # "long" or "short"
    bottom_color: str
    bottom_kind: str
    skin: str
    hair_color: str
    hair_length: str
    hat: str  # "none" or a colour name
    shoes: str
    bag: str
    bag_color: str
    height: float  # relative body height
    build: float  # relative shoulder width
    legs: float  # leg length as a fraction of body height
    group: int = -1

    def salient(self) -> tuple[object, ...]:
        """The attributes that are easy to see at 128x64, one entry per cue."""
        pattern = (self.top_pattern,) if self.top_pattern == "solid" else (
            self.top_pattern, self.accent_color)
        bag = (self.bag,) if self.bag == "none" else (self.bag, self.bag_color)
        return (pattern, self.sleeves, self.bottom_kind, self.hair_color, self.hair_length,
                self.hat, bag, self.shoes)


@dataclasses.dataclass(frozen=True)
class CameraStyle:
    """How one camera sees everyone: colour, optics, framing, scene and habits of its passers-by."""

    gains: tuple[float, float, float]  # per-channel (B, G, R) colour cast
    brightness: float
    gamma: float
    saturation: float
    haze: float  # fraction of the haze colour mixed in (washed-out cameras)
    haze_color: Color
    blur: float  # Gaussian sigma in output pixels
    noise: float  # Gaussian noise sigma in grey levels
    scale: tuple[float, float]  # person height as a fraction of the crop height
    view_weights: tuple[float, float, float, float]  # front, back, left, right
    wall_color: Color
    floor_color: Color
    horizon: float  # wall/floor boundary as a fraction of the crop height
    structures: tuple[tuple[float, float, float, float, Color], ...]  # x0, y0, x1, y1, colour
    floor_lines: float  # spacing of floor tile lines as a fraction of the width (0 = none)
    clutter: float  # mean number of random background objects per image
    bystander: float  # probability of another person at the edge of the crop
    occlusion: float  # probability of an occluder in front of the person
    occluder_color: Color


def _pick(rng: np.random.Generator, table: Mapping[str, float | tuple[Color, float]]) -> str:
    """A name from a palette or attribute table, drawn by its weight."""
    names = list(table)
    weights = np.array([v[1] if isinstance(v, tuple) else v for v in table.values()],
                       dtype=np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _color_distance(a: Color, b: Color) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


def sample_identity(rng: np.random.Generator, top_color: str | None = None,
                    bottom_color: str | None = None, group: int = -1) -> PersonIdentity:
    """Draw one person; fixing the colours lets callers build groups that share them."""
    top = top_color if top_color is not None else _pick(rng, TOP_COLORS)
    bottom = bottom_color if bottom_color is not None else _pick(rng, BOTTOM_COLORS)
    # The accent must stand out from the base colour, or the pattern would be invisible.
    top_bgr = TOP_COLORS[top][0]
    accent_choices = [n for n, (c, _) in TOP_COLORS.items() if _color_distance(c, top_bgr) > 130]
    accent = accent_choices[int(rng.integers(len(accent_choices)))]
    hair_length = _pick(rng, HAIR_LENGTHS)
    bag = _pick(rng, BAGS)
    return PersonIdentity(
        top_color=top,
        top_pattern=_pick(rng, TOP_PATTERNS),
        accent_color=accent,
        logo_shape=LOGO_SHAPES[int(rng.integers(len(LOGO_SHAPES)))],
        stripe_period=float(rng.uniform(0.06, 0.085)),
        sleeves="long" if rng.random() < 0.6 else "short",
        bottom_color=bottom,
        bottom_kind=_pick(rng, BOTTOM_KINDS),
        skin=_pick(rng, SKIN_TONES),
        hair_color=_pick(rng, HAIR_COLORS),
        hair_length=hair_length,
        hat=HAT_COLORS[int(rng.integers(len(HAT_COLORS)))] if rng.random() < 0.15 else "none",
        shoes=_pick(rng, SHOE_COLORS),
        bag=bag,
        bag_color=_pick(rng, BAG_COLORS),
        height=float(rng.uniform(0.9, 1.06)),
        build=float(rng.uniform(0.85, 1.2)),
        legs=float(rng.uniform(0.44, 0.52)),
        group=group,
    )


def sample_identities(n: int, rng: np.random.Generator) -> list[PersonIdentity]:
    """Draw ``n`` people in colour groups of 3-6, then shuffle them.

    Members of a group share the top colour and, 70% of the time, the group's bottom colour;
    each new member is redrawn (up to 100 times) until it differs from every earlier member in
    at least two salient attributes and from everyone in colours plus salient attributes, so
    identities are confusable by colour but still separable by a model that looks closer.
    """
    people: list[PersonIdentity] = []
    seen: set[tuple[object, ...]] = set()
    group = 0
    while len(people) < n:
        size = min(int(rng.integers(3, 7)), n - len(people))
        top = _pick(rng, TOP_COLORS)
        bottom = _pick(rng, BOTTOM_COLORS)
        members: list[PersonIdentity] = []
        for _ in range(size):
            for _attempt in range(100):
                person = sample_identity(rng, top, bottom if rng.random() < 0.7 else None, group)
                key = (person.top_color, person.bottom_color) + person.salient()
                if key in seen:
                    continue
                if all(sum(a != b for a, b in zip(person.salient(), m.salient())) >= 2
                       for m in members):
                    break
            seen.add((person.top_color, person.bottom_color) + person.salient())
            members.append(person)
        people.extend(members)
        group += 1
    order = rng.permutation(len(people))
    return [people[i] for i in order]


def _random_color(rng: np.random.Generator, lo: int = 30, hi: int = 220) -> Color:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))  # type: ignore[return-value]


def _muted_color(rng: np.random.Generator) -> Color:
    """A scene colour: mostly grey with a tint, as walls and floors are."""
    grey = rng.uniform(50, 200)
    tint = rng.normal(0, 25, size=3)
    return tuple(int(np.clip(grey + t, 0, 255)) for t in tint)  # type: ignore[return-value]


def _near_color(rng: np.random.Generator, color: Color, spread: float) -> Color:
    return tuple(int(np.clip(c + rng.normal(0, spread), 0, 255)) for c in color)  # type: ignore


def sample_camera(rng: np.random.Generator) -> CameraStyle:
    """Draw one camera.

    Each effect is mild on its own, but cast, exposure, gamma and haze together move a colour
    about as far as neighbouring palette colours are apart (navy/black, beige/khaki), which is
    what stops colour matching across cameras. Ranges were set with a mean-colour, colour
    histogram and briefly trained CNN baseline, so change them with the same checks.
    """
    gains = np.clip(rng.normal(1.0, 0.06, size=3), 0.85, 1.15)
    view_weights = rng.dirichlet(np.full(4, 1.2)) + 0.05
    wall = _muted_color(rng)
    structures = []
    for _ in range(int(rng.integers(2, 7))):
        x0 = rng.uniform(-0.8, 1.6)
        w = rng.uniform(0.1, 0.6)
        y0 = rng.uniform(-0.1, 0.6)
        h = rng.uniform(0.1, 0.7)
        structures.append((float(x0), float(y0), float(x0 + w), float(y0 + h),
                           _random_color(rng, 20, 235) if rng.random() < 0.05
                           else _near_color(rng, wall, 14)))
    lo = rng.uniform(0.78, 0.88)
    return CameraStyle(
        gains=tuple(float(g) for g in gains),  # type: ignore[arg-type]
        brightness=float(rng.uniform(0.85, 1.12)),
        gamma=float(rng.uniform(0.85, 1.15)),
        saturation=float(rng.uniform(0.85, 1.1)),
        haze=float(rng.uniform(0.0, 0.12)),
        haze_color=_muted_color(rng),
        blur=float(rng.uniform(0.0, 0.9)),
        noise=float(rng.uniform(1.0, 6.0)),
        scale=(float(lo), float(min(lo + rng.uniform(0.06, 0.14), 0.96))),
        view_weights=tuple(float(w) for w in view_weights / view_weights.sum()),  # type: ignore
        wall_color=wall,
        floor_color=_near_color(rng, wall, 30),
        horizon=float(rng.uniform(0.4, 0.75)),
        structures=tuple(structures),
        floor_lines=float(rng.uniform(0.15, 0.4)) if rng.random() < 0.4 else 0.0,
        clutter=float(rng.uniform(0.0, 0.5)),
        bystander=float(rng.uniform(0.03, 0.12)),
        occlusion=float(rng.uniform(0.02, 0.1)),
        occluder_color=_muted_color(rng),
    )


# --------------------------------------------------------------------------------------------
# Drawing


@dataclasses.dataclass(frozen=True)
class _Pose:
    """Everything about one image of a person that is not the person: where, how big, which way."""

    view: str
    cx: float
    feet: float
    ph: float  # body height in canvas pixels
    arm_angles: tuple[float, float]  # radians from vertical, outward positive
    stride: float  # radians between the legs
    dark_side: float  # brightness of the far limbs in side views


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def _bgr(table: Mapping[str, tuple[Color, float]], name: str) -> Color:
    return table[name][0]


def _shade(color: Color, factor: float) -> Color:
    return tuple(int(min(255, c * factor)) for c in color)  # type: ignore[return-value]


def _limb(canvas: np.ndarray, p0: tuple[float, float], p1: tuple[float, float],
          thickness: float, color: Color) -> None:
    cv2.line(canvas, _pt(*p0), _pt(*p1), color, max(1, int(round(thickness))), cv2.LINE_8)


def _lerp(p0: tuple[float, float], p1: tuple[float, float], t: float) -> tuple[float, float]:
    return p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t


def _draw_background(camera: CameraStyle, rng: np.random.Generator, hc: int,
                     wc: int) -> np.ndarray:
    canvas = np.empty((hc, wc, 3), np.uint8)
    horizon = int((camera.horizon + rng.uniform(-0.06, 0.06)) * hc)
    canvas[:horizon] = camera.wall_color
    canvas[horizon:] = camera.floor_color
    # Detections frame the scene differently each time: shift the fixed scene sideways.
    dx = rng.uniform(-0.5, 0.5)
    for x0, y0, x1, y1, color in camera.structures:
        cv2.rectangle(canvas, _pt((x0 + dx) * wc, y0 * hc), _pt((x1 + dx) * wc, y1 * hc),
                      color, -1)
    if camera.floor_lines > 0:
        step = camera.floor_lines * wc
        offset = (dx * wc) % step
        for i in range(-8, 9):
            x = wc / 2 + offset + i * step
            cv2.line(canvas, _pt(x, horizon), _pt(wc / 2 + (x - wc / 2) * 3, hc),
                     _shade(camera.floor_color, 0.7), 1)
    for _ in range(int(rng.poisson(camera.clutter))):
        color = _random_color(rng, 15, 240) if rng.random() < 0.1 else _muted_color(rng)
        cx, cy = rng.uniform(0, wc), rng.uniform(0, hc)
        a, b = rng.uniform(0.03, 0.25) * wc, rng.uniform(0.02, 0.15) * hc
        if rng.random() < 0.5:
            cv2.rectangle(canvas, _pt(cx - a, cy - b), _pt(cx + a, cy + b), color, -1)
        else:
            cv2.ellipse(canvas, _pt(cx, cy), _pt(a, b), 0, 0, 360, color, -1)
    if rng.random() < camera.bystander:
        _draw_bystander(canvas, rng, hc, wc)
    return canvas


def _draw_bystander(canvas: np.ndarray, rng: np.random.Generator, hc: int, wc: int) -> None:
    """Part of another pedestrian at the crop edge, as overlapping detections contain."""
    side = -1 if rng.random() < 0.5 else 1
    cx = wc / 2 + side * rng.uniform(0.45, 0.7) * wc
    ph = rng.uniform(0.7, 0.95) * hc
    feet = rng.uniform(0.9, 1.0) * hc
    top = _bgr(TOP_COLORS, _pick(rng, TOP_COLORS))
    bottom = _bgr(BOTTOM_COLORS, _pick(rng, BOTTOM_COLORS))
    hw = 0.13 * ph
    hip = feet - 0.47 * ph
    cv2.rectangle(canvas, _pt(cx - 0.8 * hw, hip), _pt(cx + 0.8 * hw, feet), bottom, -1)
    cv2.rectangle(canvas, _pt(cx - hw, feet - 0.84 * ph), _pt(cx + hw, hip + 0.03 * ph), top, -1)
    cv2.ellipse(canvas, _pt(cx, feet - 0.93 * ph), _pt(0.055 * ph, 0.068 * ph), 0, 0, 360,
                _bgr(HAIR_COLORS, _pick(rng, HAIR_COLORS)), -1)


def _sample_pose(identity: PersonIdentity, camera: CameraStyle, rng: np.random.Generator,
                 hc: int, wc: int) -> _Pose:
    view = VIEWS[int(rng.choice(4, p=np.asarray(camera.view_weights)))]
    scale = rng.uniform(*camera.scale) * identity.height / 1.06
    ph = scale * hc * rng.uniform(0.96, 1.04)
    # Loose detections: the person is off-centre, and now and then the feet are cut off.
    feet = hc * rng.uniform(0.9, 1.0) + ph * rng.normal(0, 0.025)
    cx = wc / 2 + rng.normal(0, 0.06) * wc
    if view in ("front", "back"):
        arms = (rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3))
        stride = rng.uniform(0.0, 0.15)
    else:
        swing = rng.uniform(-0.6, 0.6)
        arms = (swing, -swing)
        stride = rng.uniform(0.1, 0.55)
    return _Pose(view=view, cx=float(cx), feet=float(feet), ph=float(ph),
                 arm_angles=(float(arms[0]), float(arms[1])), stride=float(stride),
                 dark_side=float(rng.uniform(0.7, 0.9)))


def _pattern_fill(canvas: np.ndarray, polygon: np.ndarray, identity: PersonIdentity,
                  pose: _Pose, torso_top: float, torso_bottom: float) -> None:
    """Fill the torso polygon with the identity's base colour and all-round pattern."""
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 1
    hc, wc = canvas.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, wc), min(y1, hc)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon - (x0, y0)).astype(np.int32)], 1)
    base = np.array(_bgr(TOP_COLORS, identity.top_color), np.uint8)
    accent = np.array(_bgr(TOP_COLORS, identity.accent_color), np.uint8)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] - torso_top
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] - pose.cx
    period = identity.stripe_period * pose.ph
    pattern = identity.top_pattern
    if pattern == "hstripes":
        on = np.broadcast_to((ys // (period / 2)) % 2 == 1, mask.shape)
    elif pattern == "vstripes":
        on = np.broadcast_to((xs // (period / 2)) % 2 == 1, mask.shape)
    elif pattern == "checks":
        on = ((ys // (period / 2)) + (xs // (period / 2))) % 2 == 1
    elif pattern == "twotone":
        on = np.broadcast_to(ys < 0.4 * (torso_bottom - torso_top), mask.shape)
    else:
        on = np.zeros(mask.shape, bool)
    region = canvas[y0:y1, x0:x1]
    inside = mask.astype(bool)
    region[inside & ~on] = base
    region[inside & on] = accent


def _draw_logo(canvas: np.ndarray, identity: PersonIdentity, cx: float, cy: float,
               size: float) -> None:
    color = _bgr(TOP_COLORS, identity.accent_color)
    shape = identity.logo_shape
    if shape == "circle":
        cv2.circle(canvas, _pt(cx, cy), max(1, int(round(size))), color, -1)
        return
    if shape == "square":
        pts = [(cx - size, cy - size), (cx + size, cy - size), (cx + size, cy + size),
               (cx - size, cy + size)]
    elif shape == "triangle":
        pts = [(cx, cy - 1.2 * size), (cx + 1.2 * size, cy + size), (cx - 1.2 * size, cy + size)]
    else:
        pts = [(cx, cy - 1.3 * size), (cx + size, cy), (cx, cy + 1.3 * size), (cx - size, cy)]
    cv2.fillPoly(canvas, [np.round(np.array(pts)).astype(np.int32)], color)


def _draw_person(canvas: np.ndarray, identity: PersonIdentity, pose: _Pose) -> None:
    ph, cx, feet, view = pose.ph, pose.cx, pose.feet, pose.view
    side = view in ("left", "right")
    facing = -1.0 if view == "left" else 1.0  # image direction the face points in side views
    top = feet - ph
    skin = _bgr(SKIN_TONES, identity.skin)
    top_bgr = _bgr(TOP_COLORS, identity.top_color)
    bottom_bgr = _bgr(BOTTOM_COLORS, identity.bottom_color)
    hair_bgr = _bgr(HAIR_COLORS, identity.hair_color)
    shoe_bgr = _bgr(SHOE_COLORS, identity.shoes)
    bag_bgr = _bgr(BAG_COLORS, identity.bag_color)

    head_rx, head_ry = 0.052 * ph, 0.066 * ph
    head_c = (cx + (0.01 * ph * facing if side else 0.0), top + head_ry)
    neck_y = top + 2 * head_ry
    shoulder_y = neck_y + 0.025 * ph
    hip_y = feet - identity.legs * ph
    sw = 0.12 * ph * identity.build * (0.6 if side else 1.0)  # half shoulder width
    hw = 0.86 * sw  # half hip width
    torso_bottom = hip_y + 0.035 * ph
    leg_w = 0.085 * ph * math.sqrt(identity.build)
    arm_w = 0.055 * ph * math.sqrt(identity.build)
    arm_len = 0.37 * ph
    ankle_y = feet - 0.025 * ph

    # Legs: in side views one leg steps forward and the far one is in shade.
    legs: list[tuple[tuple[float, float], tuple[float, float], float]] = []
    if side:
        leg_len = ankle_y - hip_y
        for sign, shade in ((-1.0, pose.dark_side), (1.0, 1.0)):
            a = sign * pose.stride / 2
            legs.append(((cx, hip_y), (cx + math.sin(a) * leg_len, hip_y + math.cos(a) * leg_len),
                         shade))
    else:
        for sign in (-1.0, 1.0):
            hx = cx + sign * 0.5 * hw
            legs.append(((hx, hip_y), (hx + sign * pose.stride * 0.2 * ph, ankle_y), 1.0))
    bottom_kind = identity.bottom_kind
    covered = {"trousers": 1.0, "shorts": 0.42, "skirt": 0.0}[bottom_kind]
    for hip, ankle, shade in legs:
        _limb(canvas, hip, ankle, leg_w, _shade(skin, shade))
        if covered > 0:
            _limb(canvas, hip, _lerp(hip, ankle, covered), leg_w * 1.05, _shade(bottom_bgr, shade))
        shoe_c = (ankle[0] + (facing * 0.02 * ph if side else 0.0), ankle[1] + 0.008 * ph)
        shoe_axes = (0.05 * ph if side else 0.033 * ph, 0.02 * ph)
        cv2.ellipse(canvas, _pt(*shoe_c), _pt(*shoe_axes), 0, 0, 360, _shade(shoe_bgr, shade), -1)
    if bottom_kind == "skirt":
        skirt_y = hip_y + 0.5 * (ankle_y - hip_y)
        flare = 1.5 if not side else 1.8
        pts = [(cx - hw, hip_y - 0.02 * ph), (cx + hw, hip_y - 0.02 * ph),
               (cx + flare * hw, skirt_y), (cx - flare * hw, skirt_y)]
        cv2.fillPoly(canvas, [np.round(np.array(pts)).astype(np.int32)], bottom_bgr)
    else:
        cv2.rectangle(canvas, _pt(cx - hw, hip_y - 0.02 * ph), _pt(cx + hw, hip_y + 0.07 * ph),
                      bottom_bgr, -1)

    # Arms: outward from the shoulders in front/back views, swinging in side views.
    arms = []
    for k, sign in enumerate((-1.0, 1.0)):
        a = pose.arm_angles[k]
        if side:
            start = (cx, shoulder_y + 0.5 * arm_w)
            end = (cx + math.sin(a) * arm_len, start[1] + math.cos(a) * arm_len)
            shade = pose.dark_side if k == 0 else 1.0
        else:
            start = (cx + sign * (sw - 0.4 * arm_w), shoulder_y + 0.5 * arm_w)
            end = (start[0] + sign * math.sin(a) * arm_len, start[1] + math.cos(a) * arm_len)
            shade = 1.0
        arms.append((start, end, shade))

    def draw_arm(start: tuple[float, float], end: tuple[float, float], shade: float) -> None:
        sleeve = 1.0 if identity.sleeves == "long" else 0.38
        _limb(canvas, start, end, arm_w, _shade(skin, shade))
        _limb(canvas, start, _lerp(start, end, sleeve), arm_w * 1.1, _shade(top_bgr, shade))
        cv2.circle(canvas, _pt(*end), max(1, int(round(0.55 * arm_w))), _shade(skin, shade), -1)

    if side:
        draw_arm(*arms[0])  # the far arm, behind the body

    # Long hair hangs behind the torso in front views and over it in back views.
    hair_len = {"short": 0.0, "medium": 0.05, "long": 0.17}[identity.hair_length]
    if view == "front" and hair_len > 0:
        cv2.rectangle(canvas, _pt(head_c[0] - 1.1 * head_rx, head_c[1]),
                      _pt(head_c[0] + 1.1 * head_rx, neck_y + hair_len * ph), hair_bgr, -1)

    # Bags on the far side of the body are drawn before it.
    bag_visible_side = None
    if identity.bag in ("bag_left", "bag_right"):
        own = -1.0 if identity.bag == "bag_left" else 1.0  # person's side, -1 = their left
        if view == "front":
            bag_visible_side = -own  # a person facing us has their left on our right
        elif view == "back":
            bag_visible_side = own
        elif (view == "left") == (identity.bag == "bag_left"):
            bag_visible_side = 0.0  # carried on the side facing the camera

    torso = np.array([(cx - sw, shoulder_y), (cx + sw, shoulder_y), (cx + hw, torso_bottom),
                      (cx - hw, torso_bottom)], dtype=np.float64)
    if side and identity.bag == "backpack":
        back = -facing
        x_in = cx + back * 0.8 * sw
        x_out = cx + back * (sw + 0.09 * ph)
        cv2.rectangle(canvas, _pt(min(x_in, x_out), shoulder_y + 0.02 * ph),
                      _pt(max(x_in, x_out), hip_y - 0.03 * ph), bag_bgr, -1)
    _pattern_fill(canvas, torso, identity, pose, shoulder_y, torso_bottom)
    cv2.rectangle(canvas, _pt(cx - 0.35 * head_rx, neck_y - 0.01 * ph),
                  _pt(cx + 0.35 * head_rx, shoulder_y + 0.005 * ph), skin, -1)
    chest_y = shoulder_y + 0.11 * ph
    if view == "front" and identity.top_pattern == "logo":
        _draw_logo(canvas, identity, cx, chest_y, 0.045 * ph)
    if view == "back" and identity.top_pattern == "backprint":
        cv2.rectangle(canvas, _pt(cx - 0.8 * sw, chest_y - 0.045 * ph),
                      _pt(cx + 0.8 * sw, chest_y + 0.045 * ph),
                      _bgr(TOP_COLORS, identity.accent_color), -1)
    if view == "back" and hair_len > 0:
        cv2.rectangle(canvas, _pt(cx - 0.95 * head_rx, head_c[1]),
                      _pt(cx + 0.95 * head_rx, neck_y + hair_len * ph), hair_bgr, -1)
    if identity.bag == "backpack":
        if view == "back":
            cv2.rectangle(canvas, _pt(cx - 0.62 * sw, shoulder_y + 0.03 * ph),
                          _pt(cx + 0.62 * sw, hip_y - 0.04 * ph), bag_bgr, -1)
            cv2.rectangle(canvas, _pt(cx - 0.45 * sw, hip_y - 0.14 * ph),
                          _pt(cx + 0.45 * sw, hip_y - 0.06 * ph), _shade(bag_bgr, 0.7), -1)
        elif view == "front":
            for sign in (-1.0, 1.0):
                _limb(canvas, (cx + sign * 0.55 * sw, shoulder_y),
                      (cx + sign * 0.5 * sw, shoulder_y + 0.2 * ph), 0.025 * ph, bag_bgr)
    if bag_visible_side is not None:
        bag_w, bag_h = 0.075 * ph, 0.055 * ph
        bx = cx + bag_visible_side * (sw + 0.3 * bag_w)
        if bag_visible_side != 0.0:
            _limb(canvas, (cx - bag_visible_side * 0.6 * sw, shoulder_y),
                  (bx, hip_y - bag_h), 0.018 * ph, bag_bgr)
        else:
            _limb(canvas, (cx, shoulder_y), (bx, hip_y - bag_h), 0.018 * ph, bag_bgr)
        cv2.rectangle(canvas, _pt(bx - bag_w, hip_y - bag_h), _pt(bx + bag_w, hip_y + bag_h),
                      bag_bgr, -1)

    if side:
        draw_arm(*arms[1])
    else:
        for arm in arms:
            draw_arm(*arm)

    # Head, then hair: a cap over the back of the head, a fringe at the front.
    cv2.ellipse(canvas, _pt(*head_c), _pt(head_rx, head_ry), 0, 0, 360, skin, -1)
    if view == "back":
        cv2.ellipse(canvas, _pt(*head_c), _pt(head_rx * 1.05, head_ry * 1.03), 0, 0, 360,
                    hair_bgr, -1)
    elif view == "front":
        cv2.ellipse(canvas, _pt(head_c[0], head_c[1] - 0.02 * ph), _pt(head_rx * 1.05, head_ry),
                    0, 180, 360, hair_bgr, -1)
    else:
        cv2.ellipse(canvas, _pt(head_c[0] - facing * 0.012 * ph, head_c[1] - 0.01 * ph),
                    _pt(head_rx, head_ry), 0, 0, 360, hair_bgr, -1)
        cv2.ellipse(canvas, _pt(head_c[0] + facing * 0.02 * ph, head_c[1] + 0.012 * ph),
                    _pt(head_rx * 0.75, head_ry * 0.75), 0, 0, 360, skin, -1)
        if hair_len > 0:
            hx = head_c[0] - facing * 0.6 * head_rx
            cv2.rectangle(canvas, _pt(hx - 0.4 * head_rx, head_c[1]),
                          _pt(hx + 0.4 * head_rx, neck_y + hair_len * ph), hair_bgr, -1)
    if identity.hat != "none":
        hat_bgr = _bgr(TOP_COLORS, identity.hat)
        cv2.ellipse(canvas, _pt(head_c[0], head_c[1] - 0.025 * ph),
                    _pt(head_rx * 1.08, head_ry * 0.95), 0, 180, 360, hat_bgr, -1)
        brim = facing if side else 0.0
        cv2.rectangle(canvas, _pt(head_c[0] - 1.1 * head_rx + brim * 0.5 * head_rx,
                                  head_c[1] - 0.03 * ph),
                      _pt(head_c[0] + 1.1 * head_rx + brim * 0.5 * head_rx,
                          head_c[1] - 0.015 * ph), hat_bgr, -1)


def _draw_occluder(canvas: np.ndarray, camera: CameraStyle, rng: np.random.Generator) -> None:
    if rng.random() >= camera.occlusion:
        return
    hc, wc = canvas.shape[:2]
    color = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in camera.occluder_color)
    kind = rng.integers(3)
    if kind == 0:  # something low in front: a bench, a car bonnet, a barrier
        cv2.rectangle(canvas, _pt(-1, hc * (1 - rng.uniform(0.15, 0.35))), _pt(wc, hc), color, -1)
    elif kind == 1:  # a pole or a door frame
        x = rng.uniform(0.1, 0.9) * wc
        w = rng.uniform(0.06, 0.16) * wc
        cv2.rectangle(canvas, _pt(x - w, -1), _pt(x + w, hc), color, -1)
    else:  # a passer-by closer to the camera, cut by the crop edge
        _draw_bystander_front(canvas, rng, hc, wc)


def _draw_bystander_front(canvas: np.ndarray, rng: np.random.Generator, hc: int,
                          wc: int) -> None:
    side = -1 if rng.random() < 0.5 else 1
    x_edge = wc / 2 + side * rng.uniform(0.2, 0.35) * wc
    x_far = wc + 10 if side > 0 else -10
    y0 = rng.uniform(0.2, 0.5) * hc
    cv2.rectangle(canvas, _pt(min(x_edge, x_far), y0), _pt(max(x_edge, x_far), hc),
                  _bgr(TOP_COLORS, _pick(rng, TOP_COLORS)), -1)


@dataclasses.dataclass(frozen=True)
class CameraLook:
    """One image's draw of its camera's variation: exposure, light ramp, gamma and blur.

    Drawn apart from its application so that footage can draw it once per camera and apply it
    to the regions of a frame that changed (the whole-frame pass is most of a frame's cost).
    """

    scale: tuple[float, float, float]  # per-channel (B, G, R) gain times exposure, float32 values
    ramp_angle: float  # direction of the light ramp, radians
    ramp_strength: float  # brightness change across the image
    gamma: float
    blur: float  # Gaussian sigma in pixels (none at or below 0.25)


def sample_camera_look(camera: CameraStyle, rng: np.random.Generator) -> CameraLook:
    """Draw one image's look of ``camera`` (the same draws, in the same order, as the crops')."""
    gains = np.asarray(camera.gains) * rng.normal(1.0, 0.025, size=3)
    scale = (gains * camera.brightness * rng.uniform(0.9, 1.1)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.0, 0.25)
    gamma = camera.gamma * rng.uniform(0.95, 1.05)
    sigma = camera.blur * rng.uniform(0.7, 1.3)
    return CameraLook(scale=tuple(float(s) for s in scale),  # type: ignore[arg-type]
                      ramp_angle=float(angle), ramp_strength=float(strength), gamma=float(gamma),
                      blur=float(sigma))


def apply_camera_look(img: np.ndarray, camera: CameraStyle, look: CameraLook,
                      noise: np.random.Generator | np.ndarray,
                      window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Colour cast, exposure, haze, uneven light, blur and sensor noise, then back to uint8.

    ``noise``: a generator to draw the sensor noise from, or the noise itself (float32 grey
    levels, ``img``'s shape). ``window`` (x0, y0, full width, full height) says where ``img``
    lies in a larger image, so that a region gets the light ramp it has in the whole; its blur
    reads only the region, so pad it by about four sigmas and keep the inside.
    """
    x = img.astype(np.float32) / 255.0
    x *= np.asarray(look.scale, np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * np.float32(camera.saturation)
    h, w = x.shape[:2]
    x0, y0, full_w, full_h = (0, 0, w, h) if window is None else window
    # Light from one side or from above: a linear ramp across the image.
    ramp = (np.cos(look.ramp_angle) * np.linspace(-0.5, 0.5, full_w)[None, x0:x0 + w]
            + np.sin(look.ramp_angle) * np.linspace(-0.5, 0.5, full_h)[y0:y0 + h, None])
    x *= (1.0 + look.ramp_strength * ramp).astype(np.float32)[:, :, None]
    np.clip(x, 0.0, 1.0, out=x)
    x **= np.float32(look.gamma)
    haze = np.asarray(camera.haze_color, np.float32) / 255.0
    x = x * np.float32(1 - camera.haze) + haze * np.float32(camera.haze)
    if look.blur > 0.25:
        x = cv2.GaussianBlur(x, (0, 0), look.blur)
    if isinstance(noise, np.random.Generator):
        noise = noise.normal(0.0, camera.noise, size=x.shape).astype(np.float32)
    x = x * 255.0 + noise
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _apply_camera(img: np.ndarray, camera: CameraStyle, rng: np.random.Generator) -> np.ndarray:
    """``camera``'s look with this image's own variation, drawn from ``rng``."""
    return apply_camera_look(img, camera, sample_camera_look(camera, rng), rng)


def draw_person_at(canvas: np.ndarray, identity: PersonIdentity, *, view: str, cx: float,
                   feet: float, height: float, stride: float = 0.0,
                   arm_angles: tuple[float, float] = (0.1, 0.1), dark_side: float = 0.8) -> None:
    """Draw ``identity`` into ``canvas`` (BGR uint8, in place) with the crops' own drawing code.

    For scenes other than crops (:mod:`reid.video.synthetic` draws whole frames): a model
    trained on the crops must meet the same people there. ``view`` is one of :data:`VIEWS`,
    ``cx`` / ``feet`` the body's centre line and the soles' row, ``height`` the body height, all
    in canvas pixels; ``stride`` (radians between the legs; negative: the far leg forward) and
    ``arm_angles`` (radians from vertical; in side views the far arm first) animate a walk.
    """
    if view not in VIEWS:
        raise ValueError(f"view: expected one of {', '.join(VIEWS)}, got {view!r}")
    _draw_person(canvas, identity, _Pose(view=view, cx=float(cx), feet=float(feet),
                                         ph=float(height), arm_angles=(float(arm_angles[0]),
                                                                       float(arm_angles[1])),
                                         stride=float(stride), dark_side=float(dark_side)))


def render_person(identity: PersonIdentity, camera: CameraStyle, rng: np.random.Generator,
                  height: int = 128, width: int = 64) -> np.ndarray:
    """One crop of ``identity`` seen by ``camera``: (height, width, 3) uint8 BGR.

    ``rng`` supplies everything that changes from image to image: viewpoint, pose, framing,
    background shift and clutter, occlusion, lighting and noise.
    """
    hc, wc = height * _SUPERSAMPLE, width * _SUPERSAMPLE
    canvas = _draw_background(camera, rng, hc, wc)
    pose = _sample_pose(identity, camera, rng, hc, wc)
    _draw_person(canvas, identity, pose)
    _draw_occluder(canvas, camera, rng)
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return _apply_camera(small, camera, rng)


# --------------------------------------------------------------------------------------------
# Dataset plan and writing


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
    """The arguments that determine a dataset's bytes (the worker count does not)."""

    ids: int = 200
    cameras: int = 4
    images_per_id: int = 20
    seed: int = 0
    height: int = 128
    width: int = 64
    test_ids: int | None = None  # None: half the identities

    def validate(self) -> None:
        """Refuse arguments that cannot give a valid Market-1501-style dataset."""
        names = ("ids", "cameras", "images_per_id", "seed", "height", "width")
        for name in names + (("test_ids",) if self.test_ids is not None else ()):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise SyntheticError(f"{name}: expected an integer, got {value!r}")
        if not 2 <= self.ids <= MAX_IDS:
            raise SyntheticError(f"ids: need 2..{MAX_IDS} identities (split into train and test; "
                                 f"4-digit pids), got {self.ids}")
        if self.test_ids is not None and not 1 <= self.test_ids <= self.ids - 1:
            raise SyntheticError(f"test_ids: need 1..{self.ids - 1} (ids - 1: at least one "
                                 f"identity must be left to train on), got {self.test_ids}")
        if not 2 <= self.cameras <= MAX_CAMERAS:
            raise SyntheticError(f"cameras: need 2..{MAX_CAMERAS} cameras (queries need a match "
                                 f"in another camera; one-digit camera ids), got {self.cameras}")
        if not MIN_IMAGES_PER_ID <= self.images_per_id <= 999_999:
            raise SyntheticError(
                f"images_per_id: need {MIN_IMAGES_PER_ID}..999999 (at least 2 cameras x 2 images, "
                f"so every query keeps a cross-camera match in the gallery; 6-digit image "
                f"numbers), got {self.images_per_id}")
        if self.seed < 0 or self.seed >= 2**32:
            raise SyntheticError(f"seed: need 0 <= seed < 2**32, got {self.seed}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if not MIN_SIZE <= value <= MAX_SIZE:
                raise SyntheticError(f"{name}: need {MIN_SIZE}..{MAX_SIZE} pixels, got {value}")

    @property
    def num_test_ids(self) -> int:
        return self.ids - self.ids // 2 if self.test_ids is None else self.test_ids

    @property
    def num_train_ids(self) -> int:
        return self.ids - self.num_test_ids


@dataclasses.dataclass(frozen=True)
class PlannedImage:
    """One file to draw: who, which camera, which of the identity's images, where it goes."""

    pid: int
    camid: int
    index: int
    split: str  # one of SPLIT_DIRS

    @property
    def filename(self) -> str:
        return f"{self.pid:04d}_c{self.camid}s1_{self.index:06d}_00.jpg"

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.filename}"


@dataclasses.dataclass(frozen=True)
class DatasetPlan:
    """Everything about a dataset except the pixels; cheap to compute, and what tests inspect."""

    params: SyntheticParams
    identities: dict[int, PersonIdentity]  # pid -> identity
    cameras: dict[int, CameraStyle]  # camid -> style
    images: tuple[PlannedImage, ...]

    @property
    def train_pids(self) -> list[int]:
        return list(range(1, self.params.num_train_ids + 1))

    @property
    def test_pids(self) -> list[int]:
        return list(range(self.params.num_train_ids + 1, self.params.ids + 1))


def _camera_counts(rng: np.random.Generator, cameras: int, k: int) -> dict[int, int]:
    """Spread ``k`` images over 2..min(C, k//2) cameras, at least two images in each.

    Two per camera means that after one query per camera the gallery still holds an image from
    every camera the person was seen in, so each query has a true match in another camera.
    """
    m = int(rng.integers(2, min(cameras, k // 2) + 1))
    chosen = np.sort(rng.choice(np.arange(1, cameras + 1), size=m, replace=False))
    extra = rng.multinomial(k - 2 * m, rng.dirichlet(np.full(m, 2.0)))
    return {int(c): 2 + int(e) for c, e in zip(chosen, extra)}


def plan_dataset(params: SyntheticParams) -> DatasetPlan:
    """Identities, cameras and the file list; the first pids train, the last ``test_ids`` test."""
    params.validate()
    identities = sample_identities(params.ids, np.random.default_rng([params.seed, 0, 1]))
    camera_rng = np.random.default_rng([params.seed, 0, 2])
    cameras = {c: sample_camera(camera_rng) for c in range(1, params.cameras + 1)}
    assign_rng = np.random.default_rng([params.seed, 0, 3])
    images: list[PlannedImage] = []
    for pid in range(1, params.ids + 1):
        counts = _camera_counts(assign_rng, params.cameras, params.images_per_id)
        index = 0
        for camid, count in counts.items():
            for j in range(count):
                if pid <= params.num_train_ids:
                    split = TRAIN_DIR
                else:
                    split = QUERY_DIR if j == 0 else GALLERY_DIR
                images.append(PlannedImage(pid, camid, index, split))
                index += 1
    return DatasetPlan(params=params,
                       identities={pid: ident for pid, ident in enumerate(identities, start=1)},
                       cameras=cameras, images=tuple(images))


def encode_bgr_jpeg(img: np.ndarray) -> bytes:
    """JPEG bytes of an image in OpenCV's BGR order, as :func:`render_person` draws it (the
    index's pictures are RGB: :func:`reid.index.media.encode_jpeg`)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise SyntheticError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


_Job = tuple[str, PersonIdentity, CameraStyle, int, int, int, int, int]


def _render_job(job: _Job) -> None:
    path, identity, camera, seed, pid, index, height, width = job
    rng = np.random.default_rng([seed, pid, index])
    img = render_person(identity, camera, rng, height, width)
    pathlib.Path(path).write_bytes(encode_bgr_jpeg(img))


def _init_worker() -> None:
    # Each worker draws one small image at a time; OpenCV's own threads would only contend.
    cv2.setNumThreads(1)


@dataclasses.dataclass(frozen=True)
class SplitCounts:
    images: int
    ids: int
    cameras: int


@dataclasses.dataclass(frozen=True)
class SyntheticSummary:
    """What was written (or found already there) and how long it took."""

    out_dir: str
    params: SyntheticParams
    splits: dict[str, SplitCounts]
    seconds: float
    skipped: bool
    replaced: bool = False  # an earlier synthetic dataset in out_dir was redrawn

    def text(self) -> str:
        p = self.params
        if self.skipped:
            status = "already complete with the same parameters; skipped (use --force to redraw)"
        else:
            images = sum(c.images for c in self.splits.values())
            status = (f"{images} images written in {self.seconds:.1f} s"
                      + (" (replaced the previous synthetic dataset)" if self.replaced else ""))
        head = f"synthetic dataset at {self.out_dir}: {status}"
        lines = [head, f"  ids={p.ids} (test {p.num_test_ids}) cameras={p.cameras} "
                       f"images_per_id={p.images_per_id} seed={p.seed} size={p.height}x{p.width}"]
        for split in SPLIT_DIRS:
            c = self.splits[split]
            lines.append(f"  {split:<18} {c.images:>7} images  {c.ids:>5} ids  "
                         f"{c.cameras:>2} cameras")
        return "\n".join(lines)


def _split_counts(plan: DatasetPlan) -> dict[str, SplitCounts]:
    out = {}
    for split in SPLIT_DIRS:
        imgs = [im for im in plan.images if im.split == split]
        out[split] = SplitCounts(len(imgs), len({im.pid for im in imgs}),
                                 len({im.camid for im in imgs}))
    return out


def _manifest(plan: DatasetPlan) -> dict[str, object]:
    return {
        "generator": "reid.data.synthetic",
        "format": FORMAT_VERSION,
        "params": dataclasses.asdict(plan.params),
        "counts": {split: c.images for split, c in _split_counts(plan).items()},
    }


def _read_manifest(out_dir: pathlib.Path) -> dict[str, object] | None:
    try:
        data = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(out_dir: str | os.PathLike, params: SyntheticParams) -> bool:
    """True if ``out_dir`` holds this generator's dataset for ``params``, every file present."""
    out = pathlib.Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None or manifest.get("format") != FORMAT_VERSION:
        return False
    if manifest.get("params") != dataclasses.asdict(params):
        return False
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        return False
    for split in SPLIT_DIRS:
        folder = out / split
        if not folder.is_dir():
            return False
        if sum(1 for n in os.listdir(folder) if n.endswith(".jpg")) != counts.get(split):
            return False
    return True


def _check_replaceable(out: pathlib.Path) -> None:
    """Only ever replace an empty folder or one this generator wrote: never someone's data."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SyntheticError(f"{out}: exists and is not a folder")
    if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise SyntheticError(f"{out}: exists, is not empty and has no {MANIFEST_NAME}, so it was "
                             f"not written by this generator; refusing to replace it")
    theirs = sorted(set(_files_under(out)) - _files_written(out))
    if theirs:  # notes, images added by hand: replacing the folder would delete them
        shown = ", ".join(theirs[:3]) + (", ..." if len(theirs) > 3 else "")
        raise SyntheticError(f"{out}: holds {len(theirs)} file(s) this generator did not write "
                             f"({shown}); move them out or choose another --out")


def _files_under(out: pathlib.Path) -> list[str]:
    return [str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir()]


def _files_written(out: pathlib.Path) -> set[str]:
    """The files of the dataset that ``out``'s manifest describes (empty if it names none)."""
    manifest = _read_manifest(out)
    try:
        params = SyntheticParams(**manifest["params"])  # type: ignore[index, arg-type]
        params.validate()
    except (TypeError, KeyError, SyntheticError):
        return set()
    return {MANIFEST_NAME, *(im.relpath for im in plan_dataset(params).images)}


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _render_all(jobs: Sequence[_Job], workers: int) -> None:
    if workers <= 1 or len(jobs) < POOL_MIN_IMAGES:
        for job in jobs:
            _render_job(job)
        return
    # spawn, not fork: the caller may already run TensorFlow's threads, which fork can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for _ in pool.imap_unordered(_render_job, jobs, chunksize=32):
            pass


def generate_dataset(out_dir: str | os.PathLike, ids: int = 200, cameras: int = 4,
                     images_per_id: int = 20, seed: int = 0, height: int = 128, width: int = 64,
                     workers: int | None = None, force: bool = False,
                     test_ids: int | None = None) -> SyntheticSummary:
    """Write a Market-1501-layout dataset to ``out_dir`` (train / query / gallery).

    Skips the work when ``out_dir`` already holds a complete dataset with the same parameters,
    unless ``force``. Replaces an earlier synthetic dataset with other parameters, but refuses to
    touch a non-empty folder it did not write. The last ``test_ids`` identities (default: half)
    form the query/gallery split, the others train. ``workers`` (default: usable cores) only
    changes the speed, never the bytes.
    """
    params = SyntheticParams(ids, cameras, images_per_id, seed, height, width, test_ids)
    params.validate()
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise SyntheticError(f"workers: need a positive integer, got {workers!r}")
    out = pathlib.Path(out_dir)
    start = time.perf_counter()
    plan = plan_dataset(params)
    if not force and is_complete(out, params):
        return SyntheticSummary(str(out), params, _split_counts(plan),
                                time.perf_counter() - start, skipped=True)
    _check_replaceable(out)
    replaced = out.exists() and any(out.iterdir())
    # An old ``out`` (checked above to be one of ours) is moved aside, then deleted.
    with staged_dir(out, replace=True) as tmp:
        for split in SPLIT_DIRS:
            (tmp / split).mkdir()
        jobs: list[_Job] = [
            (str(tmp / im.relpath), plan.identities[im.pid], plan.cameras[im.camid], seed,
             im.pid, im.index, height, width)
            for im in plan.images
        ]
        _render_all(jobs, workers if workers is not None else _default_workers())
        # The manifest goes in last: its presence is what marks the folder complete.
        (tmp / MANIFEST_NAME).write_text(json.dumps(_manifest(plan), indent=2) + "\n",
                                         encoding="utf-8")
    return SyntheticSummary(str(out), params, _split_counts(plan),
                            time.perf_counter() - start, skipped=False, replaced=replaced)
