"""Who the synthetic pedestrians are and which cameras see them: identities and camera styles.

If identity were readable from the mean colour of a crop, any model (even an untrained one)
would look good and the demo would prove nothing. So:

* identities come in groups that share the top colour (and usually the bottom colour) and differ
  only in cues a network has to learn to look at: clothing pattern, sleeves, trousers/shorts/skirt,
  hair, hat, shoes, bags and body proportions;
* every camera has its own colour cast, exposure, blur, noise, background, framing, viewpoint
  habits and occluders, so the same person's colours shift between cameras.

Everything here is drawn from a generator the caller seeds; the pixels are
:mod:`reid.synthetic.drawing`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

Color = tuple[int, int, int]  # BGR, as OpenCV draws


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


def pick(rng: np.random.Generator, table: Mapping[str, float | tuple[Color, float]]) -> str:
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
    top = top_color if top_color is not None else pick(rng, TOP_COLORS)
    bottom = bottom_color if bottom_color is not None else pick(rng, BOTTOM_COLORS)
    # The accent must stand out from the base colour, or the pattern would be invisible.
    top_bgr = TOP_COLORS[top][0]
    accent_choices = [n for n, (c, _) in TOP_COLORS.items() if _color_distance(c, top_bgr) > 130]
    accent = accent_choices[int(rng.integers(len(accent_choices)))]
    hair_length = pick(rng, HAIR_LENGTHS)
    bag = pick(rng, BAGS)
    return PersonIdentity(
        top_color=top,
        top_pattern=pick(rng, TOP_PATTERNS),
        accent_color=accent,
        logo_shape=LOGO_SHAPES[int(rng.integers(len(LOGO_SHAPES)))],
        stripe_period=float(rng.uniform(0.06, 0.085)),
        sleeves="long" if rng.random() < 0.6 else "short",
        bottom_color=bottom,
        bottom_kind=pick(rng, BOTTOM_KINDS),
        skin=pick(rng, SKIN_TONES),
        hair_color=pick(rng, HAIR_COLORS),
        hair_length=hair_length,
        hat=HAT_COLORS[int(rng.integers(len(HAT_COLORS)))] if rng.random() < 0.15 else "none",
        shoes=pick(rng, SHOE_COLORS),
        bag=bag,
        bag_color=pick(rng, BAG_COLORS),
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
        top = pick(rng, TOP_COLORS)
        bottom = pick(rng, BOTTOM_COLORS)
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


def random_color(rng: np.random.Generator, lo: int = 30, hi: int = 220) -> Color:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))  # type: ignore[return-value]


def muted_color(rng: np.random.Generator) -> Color:
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
    wall = muted_color(rng)
    structures = []
    for _ in range(int(rng.integers(2, 7))):
        x0 = rng.uniform(-0.8, 1.6)
        w = rng.uniform(0.1, 0.6)
        y0 = rng.uniform(-0.1, 0.6)
        h = rng.uniform(0.1, 0.7)
        structures.append((float(x0), float(y0), float(x0 + w), float(y0 + h),
                           random_color(rng, 20, 235) if rng.random() < 0.05
                           else _near_color(rng, wall, 14)))
    lo = rng.uniform(0.78, 0.88)
    return CameraStyle(
        gains=tuple(float(g) for g in gains),  # type: ignore[arg-type]
        brightness=float(rng.uniform(0.85, 1.12)),
        gamma=float(rng.uniform(0.85, 1.15)),
        saturation=float(rng.uniform(0.85, 1.1)),
        haze=float(rng.uniform(0.0, 0.12)),
        haze_color=muted_color(rng),
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
        occluder_color=muted_color(rng),
    )
