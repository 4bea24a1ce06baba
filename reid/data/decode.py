"""Decoding and resizing one image without TensorFlow, as :func:`reid.data.pipeline.decode_resize`
does it: so that a query served by LiteRT or ONNX Runtime starts without importing TensorFlow
(several seconds) and still sees the image as the gallery's pipeline saw it.

JPEG, PNG and BMP are decoded by OpenCV (libjpeg-turbo, like TensorFlow); the resize is
:func:`reid.data.preprocessing.resize_bilinear`. Pixel values agree with TensorFlow's to float32
rounding (tested on every resize case); GIF is left to TensorFlow's pipeline, which sizes it as
OpenCV does not.
"""

from __future__ import annotations

import io
import os

import cv2
import numpy as np

from reid.data.image_size import decoded_size, oversize_reason
from reid.data.preprocessing import resize_bilinear
from reid.errors import ReidError


class BadImageError(ReidError, ValueError):
    """An image cannot be read or decoded; the message names the file."""


def decode_rgb(path: str | os.PathLike) -> np.ndarray:
    """uint8 (h, w, 3) RGB of an image file; BadImageError naming the file otherwise."""
    path = os.fspath(path)
    too_big = oversize_reason(path)
    if too_big is not None:
        raise BadImageError(f"{path}: not decoded: {too_big}")
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise BadImageError(f"{path}: cannot read image ({exc.strerror})") from None
    return decode_rgb_bytes(data, path)


def decode_rgb_bytes(data: bytes | np.ndarray, name: str) -> np.ndarray:
    """uint8 (h, w, 3) RGB of an image file's bytes (``name`` for the message); the caller
    bounds their size (:func:`decode_rgb` by the file's header)."""
    # TensorFlow's decoders ignore EXIF orientation (a phone's "rotate 90 degrees"); so must
    # this one, or a query would be turned against the gallery.
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    data = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    # OpenCV decodes many formats (TIFF, PPM, JPEG 2000, ...) whose size nothing here reads:
    # only those whose size is known (reid.data.image_size) reach it.
    # GIF is TensorFlow's (reid.index.query.load_query_image falls back to it): OpenCV 5 reads
    # GIFs too, but onto the screen's canvas, where TensorFlow sizes by the largest frame.
    known = (data.size and data[:4].tobytes() != b"GIF8"
             and decoded_size(io.BytesIO(data)) is not None)
    image = cv2.imdecode(data, flags) if known else None
    if image is None:
        raise BadImageError(f"{name}: cannot read or decode image (not a JPEG, PNG or BMP "
                            f"OpenCV can decode)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_image_rgb(path: str | os.PathLike, height: int, width: int) -> np.ndarray:
    """One image as the evaluation pipeline decodes and resizes it, without TensorFlow:
    float32 (height, width, 3) RGB pixels in [0, 255] (the embedder normalises them)."""
    return resize_bilinear(decode_rgb(path), height, width)
