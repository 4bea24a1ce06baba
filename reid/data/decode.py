"""Decoding and resizing one image without TensorFlow, as :func:`reid.data.pipeline.decode_resize`
does it: so that a query served by LiteRT or ONNX Runtime starts without importing TensorFlow
(several seconds) and still sees the image as the gallery's pipeline saw it.

JPEG, PNG and BMP are decoded by OpenCV (libjpeg-turbo, like TensorFlow). The resize is
TensorFlow's bilinear ``scale_and_translate``: a triangle kernel, widened by the shrink factor
when shrinking (``antialias=True``), weights normalised over the pixels inside the image, as
two matrix products. Pixel values agree with TensorFlow's to float32 rounding (tested on every
resize case); GIF is left to TensorFlow's pipeline, which sizes it as OpenCV does not.
"""

from __future__ import annotations

import functools
import io
import math
import os
from typing import Any

import cv2
import numpy as np

from reid.data.image_size import decoded_size, oversize_reason
from reid.errors import ReidError


class BadImageError(ReidError, ValueError):
    """An image cannot be read or decoded; the message names the file."""


@functools.lru_cache(maxsize=512)
def resize_weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """(out_size, in_size) matrix of one axis of TensorFlow's bilinear resize: output pixel i
    samples the input at (i + 0.5) * in/out with a triangle of radius max(in/out, 1) when
    ``antialias`` (else 1), each row's weights summing to one over the pixels inside."""
    inv_scale = in_size / out_size
    kernel_scale = max(inv_scale, 1.0) if antialias else 1.0
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        centre = (i + 0.5) * inv_scale
        first = max(0, math.ceil(centre - kernel_scale - 0.5))
        last = min(in_size - 1, math.floor(centre + kernel_scale - 0.5))
        j = np.arange(first, last + 1)
        w = np.maximum(0.0, 1.0 - np.abs((j + 0.5 - centre) / kernel_scale))
        total = w.sum()
        if total > 0:
            weights[i, j] = w / total
        else:  # no pixel under the kernel: the nearest one
            weights[i, min(in_size - 1, max(0, int(centre)))] = 1.0
    weights.flags.writeable = False  # cached and shared: a service resizes every query
    return weights


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 (height, width, C) from (h, w, C), as the pipeline resizes: antialiased when
    either side shrinks, clipped to [0, 255]."""
    h, w = image.shape[:2]
    antialias = h > height or w > width
    rows = resize_weights(h, height, antialias)
    cols = resize_weights(w, width, antialias)
    # float32, as TensorFlow computes it (and half the memory of float64 on a large frame).
    out = np.einsum("ih,hwc,jw->ijc", rows.astype(np.float32), image.astype(np.float32),
                    cols.astype(np.float32), optimize=True)
    return np.clip(out, 0.0, 255.0).astype(np.float32)


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


def normalize_pixels(pixels: Any) -> Any:
    """[0, 255] pixels to [-1, 1], as ``keras.applications.mobilenet_v2.preprocess_input`` (and
    the spec's ``normalization_formula``) say; any array type with arithmetic (NumPy, tensors).
    Written out rather than calling Keras because that function divides NumPy inputs in place."""
    return pixels / 127.5 - 1.0


def load_image_rgb(path: str | os.PathLike, height: int, width: int) -> np.ndarray:
    """One image as the evaluation pipeline sees it, without TensorFlow: float32
    (height, width, 3), normalised to [-1, 1]."""
    return normalize_pixels(resize_bilinear(decode_rgb(path), height, width)).astype(np.float32)
