"""The MobileNetV2 backbone: built from keras.applications, initialised, optionally last stride 1.

Every way the backbone's weights can be wrong (a missing file, a file that is not HDF5, a file
for another width multiplier, ImageNet weights that cannot be downloaded) is turned into one
:class:`ModelError` line naming the file or setting, raised while the model is built: before
any training step, not after an epoch.
"""

from __future__ import annotations

import copy
import pathlib
import re
import warnings
from typing import Any

import keras
import numpy as np

from reid.config import ModelConfig

#: Layers of keras' MobileNetV2 that perform its last downsampling (16x -> 32x).
LAST_DOWNSAMPLING_PAD = "block_13_pad"
LAST_DOWNSAMPLING_CONV = "block_13_depthwise"

#: MobileNetV2 refuses smaller inputs (keras.applications' own minimum).
MIN_INPUT_SIZE = 32


class ModelError(ValueError):
    """A model cannot be built, loaded or exported; the message names the file or setting."""


def resolve_weights(weights: str | None) -> str | pathlib.Path | None:
    """``None``, ``"imagenet"`` or an existing ``.weights.h5`` path, checked before building.

    Keras would otherwise fail on a wrong path with a message about its own arguments, and only
    after the network is built; a typo in a config should name the path it did not find.
    """
    if weights is None or weights == "imagenet":
        return weights
    if not isinstance(weights, (str, pathlib.Path)):
        raise ModelError(f"model.weights: expected imagenet, null or a path to a .weights.h5 "
                         f"file, got {weights!r}")
    path = pathlib.Path(weights)
    if not path.name.endswith(".weights.h5"):
        raise ModelError(f"model.weights: {weights}: expected imagenet, null or a path ending "
                         f"in .weights.h5")
    if not path.is_file():
        raise ModelError(f"model.weights: {weights}: weights file not found")
    return path


def check_input_shape(input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """``(H, W, 3)`` with sides MobileNetV2 accepts, as plain ints."""
    try:
        h, w, c = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ModelError(f"input shape: expected (height, width, 3), got {input_shape!r}") from None
    if c != 3:
        raise ModelError(f"input shape: expected 3 (RGB) channels, got {input_shape!r}")
    if h < MIN_INPUT_SIZE or w < MIN_INPUT_SIZE:
        raise ModelError(f"input shape: height and width must be at least {MIN_INPUT_SIZE} for "
                         f"MobileNetV2, got {h}x{w}")
    return h, w, c


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _count_file_arrays(path: pathlib.Path) -> int:
    """Number of weight arrays in a Keras ``.weights.h5`` file (every dataset is one)."""
    import h5py  # a Keras dependency; imported here as only weight files need it

    count = 0

    def visit(_name: str, obj: Any) -> None:
        nonlocal count
        if isinstance(obj, h5py.Dataset):
            count += 1

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as exc:
        raise ModelError(f"model.weights: {path}: not a readable HDF5 weights file "
                         f"({_first_line(exc)})") from None
    return count


_SHAPE_MISMATCH = re.compile(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))"
                             r".*?Variable path=([^,\s]+)", re.S)


def load_weights_file(model: keras.Model, path: pathlib.Path, what: str) -> None:
    """Load a ``.weights.h5`` file into ``model``, or raise one ModelError line saying why not.

    Keras' own failure is a multi-kilobyte message that prints whole arrays, and a file with
    fewer or more arrays may load partially with only warnings; counting the arrays first and
    condensing Keras' shape error gives the user the file, the model and the first mismatch.
    """
    n_file = _count_file_arrays(path)
    n_model = len(model.weights)
    if n_file != n_model:
        raise ModelError(f"model.weights: {path}: does not fit {what}: the file holds {n_file} "
                         f"weight arrays, the model has {n_model}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns per layer before it raises
            model.load_weights(path)
    except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, h5py KeyError/OSError
        match = _SHAPE_MISMATCH.search(str(exc))
        if match:
            ours, theirs, var = match.groups()
            detail = f"{var} has shape {ours} in the model but {theirs} in the file"
        else:
            detail = _first_line(exc)
        raise ModelError(f"model.weights: {path}: does not fit {what}: {detail}") from None


def _keras_mobilenet_v2(alpha: float, input_shape: tuple[int, int, int],
                        imagenet: bool) -> keras.Model:
    if not imagenet:
        return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha,
                                              include_top=False, weights=None)
    try:
        with warnings.catch_warnings():
            # Keras warns that non-square inputs get the 224x224 weights; without the top
            # classifier the weights do not depend on the input size, so that is what we want.
            warnings.filterwarnings("ignore", message=".*input_shape. is undefined or non-square")
            return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha,
                                                  include_top=False, weights="imagenet")
    except Exception as exc:  # noqa: BLE001 - a failed download raises a bare Exception
        raise ModelError(f"model.weights: imagenet: cannot get the ImageNet weights of "
                         f"MobileNetV2 alpha={alpha} ({_first_line(exc)}); set model.weights to "
                         f"a local .weights.h5 file or null") from None


def rebuild_backbone(model: keras.Model, last_stride: int, name: str = "backbone",
                     bn_momentum: float | None = None) -> keras.Model:
    """A copy of a keras MobileNetV2 with the same weights, renamed, with the given last stride.

    ``bn_momentum`` replaces the momentum of every batch norm: Keras's MobileNetV2 uses 0.999,
    whose moving statistics need thousands of steps to settle, so a short CPU run would be
    evaluated with statistics that still mostly describe the initialisation.

    Stride 1 (the strong baseline's "last stride" trick) keeps the 16x map of the last stage,
    so pooling sees twice the rows and columns of a small person image. Block 13's depthwise
    3x3 convolution becomes stride 1 with a symmetric one-pixel pad, so its 'valid' convolution
    keeps the size; no weight changes shape, so the pretrained weights carry over unchanged.
    """
    if last_stride not in (1, 2):
        raise ModelError(f"model.last_stride: expected 1 or 2, got {last_stride!r}")
    config = copy.deepcopy(model.get_config())
    config["name"] = name
    if bn_momentum is not None:
        for layer in config["layers"]:
            if layer["class_name"] == "BatchNormalization":
                layer["config"]["momentum"] = bn_momentum
    if last_stride == 1:
        by_name = {layer["config"]["name"]: layer["config"] for layer in config["layers"]}
        missing = [n for n in (LAST_DOWNSAMPLING_PAD, LAST_DOWNSAMPLING_CONV) if n not in by_name]
        if missing:
            raise ModelError(f"model.last_stride: 1 needs MobileNetV2's layer(s) "
                             f"{', '.join(missing)}, which {model.name} lacks")
        by_name[LAST_DOWNSAMPLING_PAD]["padding"] = ((1, 1), (1, 1))
        by_name[LAST_DOWNSAMPLING_CONV]["strides"] = (1, 1)
        by_name[LAST_DOWNSAMPLING_CONV]["padding"] = "valid"
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _conv_batch_norm_pairs(model: keras.Model) -> list[tuple[keras.layers.Layer,
                                                              keras.layers.BatchNormalization]]:
    """Each convolution whose output feeds a batch norm directly, with that batch norm."""
    producer = {id(layer.output): layer for layer in model.layers
                if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))}
    return [(producer[id(layer.input)], layer) for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization) and id(layer.input) in producer]


def rescale_conv_kernels(model: keras.Model) -> int:
    """Give every output channel of each conv -> batch-norm pair a He-normal RMS, in place.

    A batch norm makes the channel before it blind to the scale of its kernel slice, but Adam's
    step is about the same size whatever that scale is, so the scale decides how fast the slice
    turns. In a file with batch norm folded into the kernels (as the shared ImageNet file is)
    the expand kernels are 4-8x smaller than He's sqrt(2 / fan_in) and the project kernels
    2-8x larger, so one learning rate moves some layers far faster than others; this evens
    that out (on CUHK03 it learned no better: docs/BENCHMARKS.md).
    Multiplying channel j by ``c`` and the batch norm's moving mean by ``c``, its moving
    variance by ``c**2`` and its gamma by ``sqrt(c**2 var + eps) / (c sqrt(var + eps))``
    leaves the network's inference output unchanged. Batch statistics scale with the channel,
    so training-mode output changes only through ``eps``, which is felt in channels whose
    variance is near ``eps``. Channels whose kernel is all zero are left alone. Returns the
    number of convolutions rescaled.
    """
    pairs = _conv_batch_norm_pairs(model)
    for conv, norm in pairs:
        weights = conv.get_weights()
        kernel = weights[0]
        depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
        # A depthwise kernel is (kh, kw, in, multiplier); output channel i * multiplier + m.
        per_channel = kernel.reshape(-1, kernel.shape[2] * kernel.shape[3]) if depthwise \
            else kernel.reshape(-1, kernel.shape[3])
        fan_in = kernel.shape[0] * kernel.shape[1] * (1 if depthwise else kernel.shape[2])
        rms = np.sqrt(np.mean(np.square(per_channel, dtype=np.float64), axis=0))
        scale = np.where(rms > 0, np.sqrt(2.0 / fan_in) / np.where(rms > 0, rms, 1.0), 1.0)
        weights[0] = (per_channel * scale).reshape(kernel.shape).astype(kernel.dtype)
        if len(weights) > 1:  # a bias is part of the channel's value
            weights[1] = (weights[1] * scale).astype(weights[1].dtype)
        conv.set_weights(weights)

        values = dict(zip((v.path.rsplit("/", 1)[-1] for v in norm.weights), norm.get_weights()))
        mean, var = values["moving_mean"], values["moving_variance"]
        eps = norm.epsilon
        new_var = var * scale ** 2
        if "gamma" in values:
            values["gamma"] = values["gamma"] * np.sqrt(new_var + eps) / (
                scale * np.sqrt(var + eps))
        elif not np.allclose(scale, 1.0):
            raise ModelError(f"model.rescale_kernels: batch norm {norm.name} has no scale "
                             f"(gamma) to keep its output unchanged")
        values["moving_mean"], values["moving_variance"] = mean * scale, new_var
        norm.set_weights([values[v.path.rsplit("/", 1)[-1]].astype(v.dtype)
                          for v in norm.weights])
    return len(pairs)


def build_backbone(model_cfg: ModelConfig, input_shape: tuple[int, int, int]) -> keras.Model:
    """The initialised MobileNetV2 feature extractor (no top), named ``backbone``.

    Its output is the last 1x1 convolution's map: ``(H/32, W/32, 1280 * max(1, alpha))``, or
    ``H/16, W/16`` with ``last_stride: 1`` (sizes rounded up).
    """
    if model_cfg.backbone != "mobilenet_v2":
        raise ModelError(f"model.backbone: unsupported backbone {model_cfg.backbone!r} "
                         f"(supported: mobilenet_v2)")
    input_shape = check_input_shape(input_shape)
    weights = resolve_weights(model_cfg.weights)
    base = _keras_mobilenet_v2(model_cfg.alpha, input_shape, imagenet=weights == "imagenet")
    if isinstance(weights, pathlib.Path):
        load_weights_file(base, weights, f"MobileNetV2 alpha={model_cfg.alpha}")
    if model_cfg.rescale_kernels:
        rescale_conv_kernels(base)
    return rebuild_backbone(base, model_cfg.last_stride, bn_momentum=model_cfg.bn_momentum)
