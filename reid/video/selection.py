"""Which crops of a track to embed: a few good ones, spread over the track.

A track holds one box per frame, hundreds for a person who lingers; embedding all would cost
more than detecting, and most are near-copies. Re-identification wants crops that are large,
sharp, confidently detected and whole, taken at different moments (a person turns, a bag
swings round). So the quality of a crop is the product of its detector score, its height
(saturating at the model's input height), its sharpness (variance of the Laplacian, saturating)
and a penalty for touching the frame's edge, where people are cut off; the track's time span
is cut into as many equal parts as crops are wanted, and each part gives its best crop.

A track is only known whole when it ends, so candidates are kept online in a bounded pool: when
it overflows it is thinned to the best candidate of each of ``pool`` equal parts of the span so
far, which keeps the pool's memory fixed however long the track lasts.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

#: Sharpness (variance of the Laplacian of the grey crop) at which the sharpness term is 1/2.
SHARPNESS_HALF = 100.0
#: Factor on the quality of a box within this many pixels of the frame's edge.
EDGE_PENALTY = 0.5
EDGE_MARGIN = 2


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One box of a track, with its crop (RGB uint8) and quality."""

    frame: int
    time: float
    box: tuple[float, float, float, float]
    score: float
    quality: float
    crop: np.ndarray


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: low when blurred or featureless."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def crop_quality(crop: np.ndarray, box: tuple[float, float, float, float], score: float,
                 frame_size: tuple[int, int], full_height: int) -> float:
    """Quality in [0, 1] of a crop cut from a frame of ``frame_size`` (height, width);
    ``full_height``: the height at which a crop has all the detail the model can use."""
    x1, y1, x2, y2 = box
    height, width = frame_size
    size_term = min(1.0, (y2 - y1) / full_height)
    sharp = sharpness(crop)
    sharp_term = sharp / (sharp + SHARPNESS_HALF)
    at_edge = (x1 <= EDGE_MARGIN or y1 <= EDGE_MARGIN or x2 >= width - EDGE_MARGIN
               or y2 >= height - EDGE_MARGIN)
    return float(score) * size_term * sharp_term * (EDGE_PENALTY if at_edge else 1.0)


def spread_best(candidates: list[Candidate], parts: int) -> list[Candidate]:
    """The best candidate of each of ``parts`` equal parts of the candidates' time span (parts
    without a candidate give none), in time order. With all at one moment, the ``parts`` best."""
    if len(candidates) <= parts:
        return sorted(candidates, key=lambda c: c.frame)
    first = min(c.frame for c in candidates)
    last = max(c.frame for c in candidates)
    if last == first:
        return sorted(sorted(candidates, key=lambda c: -c.quality)[:parts], key=lambda c: c.frame)
    best: dict[int, Candidate] = {}
    for c in candidates:
        part = min(parts - 1, int((c.frame - first) * parts / (last - first + 1)))
        if part not in best or c.quality > best[part].quality:
            best[part] = c
    return [best[p] for p in sorted(best)]


class CandidatePool:
    """A track's candidates, at most ``2 * pool`` at any time (see the module docstring)."""

    def __init__(self, pool: int) -> None:
        self.pool = max(1, pool)
        self.candidates: list[Candidate] = []
        self.boxes = 0  # every box the track had, kept or not
        self.first_frame: int | None = None
        self.last_frame: int | None = None
        self.first_time = 0.0
        self.last_time = 0.0

    def add(self, candidate: Candidate) -> None:
        if self.first_frame is None:
            self.first_frame, self.first_time = candidate.frame, candidate.time
        self.last_frame, self.last_time = candidate.frame, candidate.time
        self.boxes += 1
        self.candidates.append(candidate)
        if len(self.candidates) > 2 * self.pool:
            self.candidates = spread_best(self.candidates, self.pool)

    def choose(self, count: int) -> list[Candidate]:
        """The ``count`` crops to embed, spread over the track."""
        return spread_best(self.candidates, count)

    def best(self) -> Candidate:
        """The candidate of highest quality: the track's face in pictures."""
        return max(self.candidates, key=lambda c: c.quality)
