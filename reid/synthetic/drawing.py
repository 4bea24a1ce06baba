"""Drawing the synthetic pedestrians: a person in a pose, a crop seen by a camera, a camera's look.

The viewpoint decides what is visible: a chest logo only from the front, a print on the back
and most of a backpack only from behind, a shoulder bag fully only from its own side. The crop
generator (:mod:`reid.synthetic.crops`) and the footage generator (:mod:`reid.synthetic.footage`)
draw with the same code, so a model trained on the crops meets the same people in the footage.
Images are BGR uint8, as OpenCV draws.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import cv2
import numpy as np

from reid.synthetic.sampling import (BAG_COLORS, BOTTOM_COLORS, HAIR_COLORS, SHOE_COLORS,
                                     SKIN_TONES, TOP_COLORS, VIEWS, CameraStyle, Color,
                                     PersonIdentity, muted_color, pick, random_color)

# Drawing happens at this multiple of the output size and is then area-downsampled, which gives
# anti-aliased edges for the price of one resize.
SUPERSAMPLE = 2


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
        color = random_color(rng, 15, 240) if rng.random() < 0.1 else muted_color(rng)
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
    top = _bgr(TOP_COLORS, pick(rng, TOP_COLORS))
    bottom = _bgr(BOTTOM_COLORS, pick(rng, BOTTOM_COLORS))
    hw = 0.13 * ph
    hip = feet - 0.47 * ph
    cv2.rectangle(canvas, _pt(cx - 0.8 * hw, hip), _pt(cx + 0.8 * hw, feet), bottom, -1)
    cv2.rectangle(canvas, _pt(cx - hw, feet - 0.84 * ph), _pt(cx + hw, hip + 0.03 * ph), top, -1)
    cv2.ellipse(canvas, _pt(cx, feet - 0.93 * ph), _pt(0.055 * ph, 0.068 * ph), 0, 0, 360,
                _bgr(HAIR_COLORS, pick(rng, HAIR_COLORS)), -1)


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
                  _bgr(TOP_COLORS, pick(rng, TOP_COLORS)), -1)


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

    For scenes other than crops (:mod:`reid.synthetic.footage` draws whole frames): a model
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
    hc, wc = height * SUPERSAMPLE, width * SUPERSAMPLE
    canvas = _draw_background(camera, rng, hc, wc)
    pose = _sample_pose(identity, camera, rng, hc, wc)
    _draw_person(canvas, identity, pose)
    _draw_occluder(canvas, camera, rng)
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return _apply_camera(small, camera, rng)
