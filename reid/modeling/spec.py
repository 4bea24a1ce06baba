"""The export format: an exported model's file names, its spec (what a caller must know to
feed the model) and the preprocessing the spec names; reading and writing the spec. No Keras
and no TensorFlow: a query served by a converted model reads all of this without them.

An export is a folder::

    model/
      embedder.keras           the Keras embedding model (images -> L2-normalised embeddings)
      spec.json                what a caller must know to feed it: input size, RGB order, resize
                               method, normalisation ``x / 127.5 - 1``, the embedding size, a
                               SHA-256 fingerprint of the weights, and what the exporter adds
      embedder.tflite          converted models (tools/export.py; training writes the first),
      embedder.tflite.json     each with a record: runtime, versions, checksum and the parity
      embedder.onnx ...        against the Keras model measured when it was converted

Writing one needs Keras (:mod:`reid.modeling.export`); loading one is
:meth:`reid.modeling.Embedder.load`, which applies the spec's preprocessing to every image.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from reid.data import preprocessing
from reid.modeling.errors import ModelError
from reid.utils.io import atomic_write_text

MODEL_FILE = "embedder.keras"
SPEC_FILE = "spec.json"
FORMAT = "reid-embedder"
FORMAT_VERSION = 1
CONVERTED_FORMAT = "reid-converted-embedder"

#: Preprocessing the exported model expects (:mod:`reid.data.preprocessing`); an exporter may
#: state these in ``spec``, and the embedder applies what its spec states.
DEFAULT_PREPROCESSING: dict[str, Any] = {
    "color_order": preprocessing.COLOR_ORDER,
    "resize": preprocessing.RESIZE,
    "normalization": preprocessing.NORMALIZATION,
    "normalization_formula": preprocessing.NORMALIZATION_FORMULA,
}
#: Spec keys that decide how an image must be prepared for the model: an index keeps them and
#: refuses a model that prepares images otherwise.
PREPROCESSING_KEYS = ("input_height", "input_width", *DEFAULT_PREPROCESSING)


@dataclasses.dataclass(frozen=True)
class ConvertedFormat:
    """One kind of converted export: the runtime that serves it and where it lives."""

    name: str  # what --runtime and tools/export.py call it
    runtime: str
    quantize: str | None  # None: float32, interchangeable with the Keras model
    file: str

    @property
    def record(self) -> str:
        return self.file + ".json"


#: Every converted export, by name.
CONVERTED = {f.name: f for f in (
    ConvertedFormat("litert", "litert", None, "embedder.tflite"),
    ConvertedFormat("litert-float16", "litert", "float16", "embedder.float16.tflite"),
    ConvertedFormat("litert-int8", "litert", "int8", "embedder.int8.tflite"),
    ConvertedFormat("onnx", "onnx", None, "embedder.onnx"),
)}
#: What ``--runtime`` accepts. ``auto``: the fastest float32 conversion present, else Keras.
RUNTIME_CHOICES = ("auto", "keras", *CONVERTED)
#: The precision of the Keras model and of every conversion that keeps its fingerprint.
FLOAT32 = "float32"


def runtimes_of_precision(precision: str) -> list[str]:
    """The ``--runtime`` values whose embeddings have ``precision``."""
    names = [f.name for f in CONVERTED.values() if (f.quantize or FLOAT32) == precision]
    if not names:
        quantized = sorted({f.quantize for f in CONVERTED.values() if f.quantize})
        raise ModelError(f"precision {precision!r}: no runtime gives it (known: {FLOAT32}, "
                         f"{', '.join(quantized)})")
    return (["auto", "keras"] if precision == FLOAT32 else []) + names


def converted_format(fmt: str, quantize: str | None) -> ConvertedFormat:
    """The conversion of format ``fmt`` (its runtime: litert, onnx), quantized as ``quantize``
    (None: float32)."""
    name = fmt if quantize is None else f"{fmt}-{quantize}"
    if name not in CONVERTED:
        raise ModelError(f"{name}: no such export (choose from {', '.join(CONVERTED)})",
                         field=("format", "quantize") if quantize else "format")
    return CONVERTED[name]


def read_spec(folder: pathlib.Path) -> dict[str, Any]:
    """The ``spec.json`` of an export; errors name the file."""
    spec_path = folder / SPEC_FILE
    try:
        spec = json.loads(spec_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{spec_path}: embedder spec not found (is {folder} an exported "
                         f"embedder?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{spec_path}: cannot read the embedder spec ({exc})") from None
    if not isinstance(spec, dict):
        raise ModelError(f"{spec_path}: expected a JSON object, got {type(spec).__name__}")
    if spec.get("format") != FORMAT or spec.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{spec_path}: not a {FORMAT} v{FORMAT_VERSION} spec (format "
                         f"{spec.get('format')!r}, version {spec.get('format_version')!r})")
    return spec


def write_spec(folder: pathlib.Path, spec: Mapping[str, Any]) -> None:
    """Write ``spec`` as the export's ``spec.json``, atomically (sorted keys, indented)."""
    atomic_write_text(pathlib.Path(folder) / SPEC_FILE,
                      json.dumps(dict(spec), indent=2, sort_keys=True) + "\n")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What a spec says to do to an RGB image before the model sees it, as functions."""

    height: int
    width: int
    resize: Callable[[np.ndarray, int, int], np.ndarray]
    normalize: Callable[[Any], Any]

    @classmethod
    def of(cls, spec: Mapping[str, Any], source: str = "spec") -> Preprocessing:
        """The preprocessing ``spec`` states (a key it leaves out takes its default); a
        ModelError naming ``source`` and the key for one this code does not implement."""
        stated = {key: spec.get(key, default) for key, default in DEFAULT_PREPROCESSING.items()}
        known = {"color_order": (preprocessing.COLOR_ORDER,), "resize": preprocessing.RESIZES,
                 "normalization": preprocessing.NORMALIZATIONS}
        for key, choices in known.items():
            if stated[key] not in choices:
                raise ModelError(f"{source}: {key} {stated[key]!r} is not one this version "
                                 f"applies (known: {', '.join(choices)})")
        missing = [key for key in ("input_height", "input_width") if key not in spec]
        if missing:
            raise ModelError(f"{source}: no {' or '.join(missing)} (the model's input size)")
        return cls(int(spec["input_height"]), int(spec["input_width"]),
                   preprocessing.RESIZES[stated["resize"]],
                   preprocessing.NORMALIZATIONS[stated["normalization"]])
