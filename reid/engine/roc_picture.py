"""The ROC curve as a picture (``tools/evaluate.py --save-roc``), drawn with OpenCV.

The false-accept rate runs on a log axis from 1e-4 to 1, where a re-id threshold is chosen;
the true-accept rate on a linear one. The reported operating points (TAR at FAR 1e-2, 1e-3,
1e-4) are marked. OpenCV rather than matplotlib: it is already a dependency.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

from reid.evaluation.errors import EvaluationError
from reid.utils.io import atomic_path

WIDTH, HEIGHT = 640, 480
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 40, 60
#: The log axis's range of false-accept rates.
FAR_MIN, FAR_MAX = 1e-4, 1.0
CURVE = (200, 90, 30)  # BGR
MARK = (40, 40, 220)
GRID = (225, 225, 225)
TEXT = (40, 40, 40)


def to_pixel(far: float, tar: float) -> tuple[int, int]:
    """(x, y) of a point of the plot; FARs below the axis sit on its left edge."""
    span = math.log10(FAR_MAX) - math.log10(FAR_MIN)
    fraction = (math.log10(max(far, FAR_MIN)) - math.log10(FAR_MIN)) / span
    x = MARGIN_LEFT + fraction * (WIDTH - MARGIN_LEFT - MARGIN_RIGHT)
    y = HEIGHT - MARGIN_BOTTOM - tar * (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)
    return int(round(x)), int(round(y))


def render_roc(far: np.ndarray, tar: np.ndarray, marks: dict[float, float],
               title: str = "ROC") -> np.ndarray:
    """BGR picture of the curve through (far, tar), with ``marks`` {FAR: TAR} circled."""
    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for exponent in range(-4, 1):
        x, _ = to_pixel(10.0 ** exponent, 0)
        cv2.line(image, (x, MARGIN_TOP), (x, HEIGHT - MARGIN_BOTTOM), GRID, 1)
        cv2.putText(image, f"1e{exponent}", (x - 18, HEIGHT - MARGIN_BOTTOM + 20), font, 0.45,
                    TEXT, 1, cv2.LINE_AA)
    for tenth in range(0, 11, 2):
        _, y = to_pixel(FAR_MIN, tenth / 10)
        cv2.line(image, (MARGIN_LEFT, y), (WIDTH - MARGIN_RIGHT, y), GRID, 1)
        cv2.putText(image, f"{tenth / 10:.1f}", (MARGIN_LEFT - 35, y + 5), font, 0.45, TEXT, 1,
                    cv2.LINE_AA)
    cv2.putText(image, "false accept rate", (WIDTH // 2 - 70, HEIGHT - 15), font, 0.5, TEXT, 1,
                cv2.LINE_AA)
    cv2.putText(image, "true accept rate", (5, MARGIN_TOP - 15), font, 0.5, TEXT, 1, cv2.LINE_AA)
    cv2.putText(image, title, (WIDTH // 2 - 60, 25), font, 0.6, TEXT, 1, cv2.LINE_AA)
    points = np.array([to_pixel(f, t) for f, t in zip(far, tar)], np.int32)
    if len(points) > 1:
        cv2.polylines(image, [points.reshape(-1, 1, 2)], False, CURVE, 2, cv2.LINE_AA)
    for rate, value in marks.items():
        x, y = to_pixel(rate, value)
        cv2.circle(image, (x, y), 5, MARK, 2, cv2.LINE_AA)
        cv2.putText(image, f"{value:.3f}", (x + 7, y - 7), font, 0.45, MARK, 1, cv2.LINE_AA)
    return image


def save_roc(path: str | os.PathLike, far: np.ndarray, tar: np.ndarray,
             marks: dict[float, float], title: str = "ROC") -> None:
    """Write :func:`render_roc` to ``path`` (PNG or JPEG by its suffix), atomically."""
    picture = render_roc(far, tar, marks, title)
    with atomic_path(path) as tmp:
        try:
            written = cv2.imwrite(str(tmp), picture)
        except cv2.error:  # OpenCV 5 raises for a suffix it has no writer for
            written = False
        if not written:
            raise EvaluationError(f"{path}: cannot write the ROC picture (use .png or .jpg)",
                                  field="save_roc")
