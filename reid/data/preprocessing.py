"""The image preprocessing the re-id models expect, defined once: RGB pixels in [0, 255],
resized to the model's input with TensorFlow's bilinear resize (antialiased when a side
shrinks), then normalised as MobileNetV2 wants, ``x / 127.5 - 1``.

An export's spec names it (:data:`reid.modeling.spec.DEFAULT_PREPROCESSING`) and the
:class:`reid.modeling.Embedder` applies it to every image it embeds, with the NumPy functions
below. The tf.data pipelines (:mod:`reid.data.pipeline`: training batches, and the resize of
the evaluation batches) are the other implementation, in TensorFlow ops, and take their method
and normalisation from here; the two agree pixel for pixel (tests/test_runtime.py). Only NumPy
here: a query served by LiteRT or ONNX Runtime imports neither TensorFlow nor OpenCV for it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

#: The colour order of the pixels a model takes.
COLOR_ORDER = "RGB"
#: ``tf.image.resize``'s method; antialiased when either side shrinks (:func:`resize_bilinear`).
RESIZE = "bilinear"
#: The normalisation's name in a spec, and what it computes.
NORMALIZATION = "mobilenet_v2"
NORMALIZATION_FORMULA = "x / 127.5 - 1"
#: The range of the pixels before normalisation.
PIXEL_MAX = 255.0


def normalize_pixels(pixels: Any) -> Any:
    """[0, 255] pixels to [-1, 1], as ``keras.applications.mobilenet_v2.preprocess_input`` (and
    :data:`NORMALIZATION_FORMULA`) say; any array type with arithmetic (NumPy, tensors).
    Written out rather than calling Keras because that function divides NumPy inputs in place."""
    return pixels / 127.5 - 1.0


#: A spec's ``normalization`` -> the function that applies it.
NORMALIZATIONS: dict[str, Callable[[Any], Any]] = {NORMALIZATION: normalize_pixels}


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
    """float32 (height, width, C) from (h, w, C), as the pipeline resizes: TensorFlow's
    ``scale_and_translate`` (a triangle kernel, widened by the shrink factor when either side
    shrinks, weights normalised over the pixels inside the image) as two matrix products,
    clipped to [0, 255]. Equal to TensorFlow's to float32 rounding."""
    h, w = image.shape[:2]
    antialias = h > height or w > width
    rows = resize_weights(h, height, antialias)
    cols = resize_weights(w, width, antialias)
    # float32, as TensorFlow computes it (and half the memory of float64 on a large frame).
    out = np.einsum("ih,hwc,jw->ijc", rows.astype(np.float32), image.astype(np.float32),
                    cols.astype(np.float32), optimize=True)
    return np.clip(out, 0.0, PIXEL_MAX).astype(np.float32)


#: A spec's ``resize`` -> the function that applies it.
RESIZES: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {RESIZE: resize_bilinear}
