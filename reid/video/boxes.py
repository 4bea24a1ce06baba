"""Person boxes in a frame: the one type a detector returns and a tracker takes."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Detections:
    """People found in one frame: ``boxes`` (N, 4) float32 pixel corners x1, y1, x2, y2 (x2, y2
    exclusive, as OpenCV slices), ``scores`` (N,) float32 in [0, 1]."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"Detections: {len(boxes)} boxes but {len(scores)} scores")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> Detections:
        """The detections at ``keep`` (a boolean mask or indices), in that order."""
        return Detections(self.boxes[keep], self.scores[keep])
