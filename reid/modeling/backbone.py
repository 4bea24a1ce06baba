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

from reid.config import ModelConfig
from reid.modeling.errors import ModelError, first_line

#: Layers of keras' MobileNetV2 that perform its last downsampling (16x -> 32x).
LAST_DOWNSAMPLING_PAD = "block_13_pad"
LAST_DOWNSAMPLING_CONV = "block_13_depthwise"

#: MobileNetV2 refuses smaller inputs (keras.applications' own minimum).
MIN_INPUT_SIZE = 32


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
                         f"({first_line(exc)})") from None
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
            detail = first_line(exc)
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
                         f"MobileNetV2 alpha={alpha} ({first_line(exc)}); set model.weights to "
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
    backbone = rebuild_backbone(base, model_cfg.last_stride, bn_momentum=model_cfg.bn_momentum)
    if model_cfg.zero_init_residual:
        zero_init_residual(backbone)
    return backbone


def zero_init_residual(backbone: keras.Model) -> list[str]:
    """Set the scale (gamma) of the batch norm that ends each residual block to 0, so that
    every ``block_N_add`` starts by passing its input through unchanged: a deep network from
    random weights then trains like a shallow one at first, and does not sit on the plateau
    where a randomly initialised MobileNetV2 spends its first epochs. Returns the layers set."""
    names = []
    for layer in backbone.layers:
        if layer.name.startswith("block_") and layer.name.endswith("_add"):
            norm = backbone.get_layer(layer.name.removesuffix("_add") + "_project_BN")
            norm.gamma.assign(keras.ops.zeros_like(norm.gamma))
            names.append(norm.name)
    return names
