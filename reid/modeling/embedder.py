"""The exported embedding model and the one interface through which everything embeds images.

An export is a folder::

    model/
      embedder.keras           the Keras embedding model (images -> L2-normalised embeddings)
      spec.json                what a caller must know to feed it: input size, RGB order, resize
                               method, normalisation ``x / 127.5 - 1``, the embedding size, a
                               SHA-256 fingerprint of the weights, and what the exporter adds
      embedder.tflite          converted models (tools/export.py; training writes the first),
      embedder.tflite.json     each with a record: runtime, versions, checksum and the parity
      embedder.onnx ...        against the Keras model measured when it was converted

Indexes and evaluation results store the fingerprint, so a gallery index built with one model
is never silently searched with embeddings from another. A float32 conversion has the Keras
model's fingerprint (its embeddings agree to about 1e-7, checked when converting), so indexes
built through any float32 runtime are interchangeable; a quantized one has its own. Callers go
through :class:`Embedder` only, whatever runtime serves it; loading a converted export imports
neither TensorFlow nor Keras (:mod:`reid.modeling.runtime`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from reid.modeling.errors import ModelError, first_line
from reid.modeling.runtime import KerasRunner, Runner, file_runner, runtime_installed
from reid.run_layout import RunLayout
from reid.utils.io import file_sha256

MODEL_FILE = "embedder.keras"
SPEC_FILE = "spec.json"
FORMAT = "reid-embedder"
FORMAT_VERSION = 1
CONVERTED_FORMAT = "reid-converted-embedder"

#: Preprocessing the exported model expects; an exporter may override these in ``spec``.
DEFAULT_PREPROCESSING: dict[str, Any] = {
    "color_order": "RGB",
    "resize": "bilinear",
    "normalization": "mobilenet_v2",
    "normalization_formula": "x / 127.5 - 1",
}


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
        raise ModelError(f"precision {precision!r}: no runtime gives it (known: {FLOAT32}, "
                         f"{', '.join(sorted({f.quantize for f in CONVERTED.values() if f.quantize}))})")
    return (["auto", "keras"] if precision == FLOAT32 else []) + names


def converted_format(fmt: str, quantize: str | None) -> ConvertedFormat:
    """The export that ``tools/export.py --format FMT [--quantize Q]`` writes."""
    name = fmt if quantize is None else f"{fmt}-{quantize}"
    if name not in CONVERTED:
        raise ModelError(f"--format {fmt}" + (f" --quantize {quantize}" if quantize else "")
                         + f": no such export (choose from {', '.join(CONVERTED)})")
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


def conversion_command(folder: pathlib.Path, fmt: ConvertedFormat) -> str:
    """The command that (re)makes ``fmt``'s conversion of ``folder``."""
    return (f"tools/export.py --model {folder} --format {fmt.runtime}"
            + (f" --quantize {fmt.quantize}" if fmt.quantize else ""))


def read_converted(folder: pathlib.Path, fmt: ConvertedFormat, spec: Mapping[str, Any],
                   verify: bool = True) -> dict[str, Any] | None:
    """The record of ``fmt``'s conversion in ``folder`` once it is known to belong to this
    export and to be intact; None when there is none. ``verify`` checks the file's SHA-256."""
    record_path, model_path = folder / fmt.record, folder / fmt.file
    if not record_path.exists():
        return None
    try:
        record = json.loads(record_path.read_text())
        if not isinstance(record, dict) or record.get("format") != CONVERTED_FORMAT:
            raise ValueError(f"not a {CONVERTED_FORMAT} record")
        source, size, digest = (record["source_fingerprint"], int(record["bytes"]),
                                str(record["sha256"]))
        passed = bool(record["parity"]["passed"])
        if not isinstance(record["fingerprint"], str):
            raise TypeError("fingerprint is not a string")
        float(record["speed"]["images_per_s"])  # what auto compares
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{record_path}: cannot read the conversion record ({exc!r}); "
                         f"convert again with {conversion_command(folder, fmt)}") from None
    redo = f"convert again with {conversion_command(folder, fmt)}"
    if source != spec["fingerprint"]:
        raise ModelError(f"{record_path}: converted from other weights (fingerprint "
                         f"{str(source)[:12]}, the export's is {spec['fingerprint'][:12]}); {redo}")
    if not model_path.is_file():
        raise ModelError(f"{model_path}: converted model missing; {redo}")
    if model_path.stat().st_size != size or (verify and file_sha256(model_path) != digest):
        raise ModelError(f"{model_path}: does not match its record (damaged or replaced); {redo}")
    if not passed:
        raise ModelError(f"{record_path}: this conversion failed its parity check; {redo}")
    return record


def _auto_format(folder: pathlib.Path, spec: Mapping[str, Any]
                 ) -> tuple[ConvertedFormat | None, dict[str, Any] | None]:
    """The float32 conversion present that embedded fastest when it was converted."""
    best: tuple[float, ConvertedFormat, dict[str, Any]] | None = None
    for fmt in CONVERTED.values():
        if fmt.quantize is not None:
            continue
        if not runtime_installed(fmt.runtime):
            continue  # a conversion made elsewhere; nothing to run it with here
        try:
            record = read_converted(folder, fmt, spec)
        except ModelError as exc:
            # A conversion interrupted or damaged must not make the export unusable.
            warnings.warn(f"{exc}; using another runtime", stacklevel=3)
            continue
        if record is None:
            continue
        speed = float(record["speed"]["images_per_s"])
        if best is None or speed > best[0]:
            best = (speed, fmt, record)
    return (None, None) if best is None else (best[1], best[2])


class Embedder:
    """Images (already resized and normalised per :attr:`spec`) -> L2-normalised embeddings,
    through whichever runtime serves the export (:attr:`runtime`)."""

    def __init__(self, model: Any, spec: Mapping[str, Any] | None = None, *,
                 source: str = "spec") -> None:
        """An embedder of an in-memory Keras model (training's validation, tests)."""
        from reid.modeling.export import make_spec

        self._spec = make_spec(model, spec, source)
        self._spec.update(runtime="keras", precision=FLOAT32)
        self._runner: Runner = KerasRunner(model)

    @classmethod
    def _of(cls, runner: Runner, spec: Mapping[str, Any]) -> Embedder:
        embedder = cls.__new__(cls)
        embedder._spec = dict(spec)
        embedder._runner = runner
        return embedder

    @classmethod
    def load(cls, model_dir: str | pathlib.Path, runtime: str = "auto",
             threads: int | None = None) -> Embedder:
        """Load an export; errors name the missing or bad file.

        ``runtime``: ``keras``, a converted export by name (``litert``, ``litert-int8``,
        ``onnx``, ...), or ``auto``: the fastest float32 conversion present whose parity
        passed (speed as measured when it was converted), else the Keras model.
        """
        folder = pathlib.Path(model_dir)
        if not folder.is_dir():
            raise ModelError(f"{folder}: embedder folder not found")
        if runtime not in RUNTIME_CHOICES:
            raise ModelError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIME_CHOICES)}")
        spec = read_spec(folder)
        if runtime == "auto":
            fmt, record = _auto_format(folder, spec)
        elif runtime == "keras":
            fmt, record = None, None
        else:
            fmt = CONVERTED[runtime]
            record = read_converted(folder, fmt, spec)
            if record is None:
                raise ModelError(f"{folder}: no {fmt.name} export here; make it with "
                                 f"{conversion_command(folder, fmt)}")
        if fmt is None:
            return cls._load_keras(folder, spec)
        runner = file_runner(fmt.runtime, folder / fmt.file, threads)
        return cls._of(runner, {**spec, "runtime": fmt.name,
                                "precision": fmt.quantize or FLOAT32,
                                "fingerprint": record["fingerprint"]})

    @classmethod
    def _load_keras(cls, folder: pathlib.Path, spec: dict[str, Any]) -> Embedder:
        from reid.utils.quiet import start_tensorflow_quietly

        start_tensorflow_quietly()  # this may be the process's first TensorFlow import
        import keras

        from reid.modeling import layers as _layers  # noqa: F401 - registers the custom layers

        model_path = folder / MODEL_FILE
        if not model_path.is_file():
            raise ModelError(f"{model_path}: embedding model file not found")
        try:
            model = keras.saving.load_model(model_path, compile=False)
        except Exception as exc:  # noqa: BLE001 - zip, h5 and deserialisation errors vary
            raise ModelError(f"{model_path}: cannot load the embedding model "
                             f"({first_line(exc)})") from None
        return cls(model, spec, source=str(folder / SPEC_FILE))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._spec)

    @property
    def runtime(self) -> str:
        """``keras`` or the name of the converted export serving this embedder."""
        return self._spec["runtime"]

    @property
    def precision(self) -> str:
        """``float32``, or the quantization of a quantized export."""
        return self._spec["precision"]

    @property
    def keras_model(self) -> Any:
        """The Keras model, for an embedder served by Keras (converting, training)."""
        if not isinstance(self._runner, KerasRunner):
            raise ModelError(f"this embedder runs on {self.runtime}, not on Keras: load it with "
                             f"runtime='keras'")
        return self._runner.model

    @property
    def fingerprint(self) -> str:
        return self._spec["fingerprint"]

    @property
    def embedding_dim(self) -> int:
        return self._spec["embedding_dim"]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the images must have."""
        return self._spec["input_height"], self._spec["input_width"]

    def _check_batch(self, batch: np.ndarray) -> None:
        height, width = self.input_size
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (height, width, 3):
            raise ModelError(f"embed: expected images of shape (N, {height}, {width}, 3), "
                             f"got {tuple(batch.shape)}")
        if not np.issubdtype(batch.dtype, np.floating):
            raise ModelError(f"embed: expected float images normalised as "
                             f"{self._spec.get('normalization_formula', 'the spec says')}, got "
                             f"{batch.dtype} (raw pixels?)")

    def embed(self, batch: Any) -> np.ndarray:
        """``(N, H, W, 3)`` float images (NumPy or a tensor) -> ``(N, D)`` float32 unit rows."""
        batch = np.asarray(batch)
        self._check_batch(batch)
        if batch.shape[0] == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        return self._runner.run(batch.astype(np.float32, copy=False))

    def embed_batches(self, batches: Iterable[Any], progress: bool = True) -> np.ndarray:
        """Embed every batch of an iterable or ``tf.data.Dataset`` and stack the rows in order.

        An element may be an image batch, a tuple/list whose first item is the image batch
        (``(images, labels)``), or a dict with an ``"image"`` key. The progress bar counts
        batches; its total is shown when ``len(batches)`` is known.
        """
        try:
            total = len(batches)  # type: ignore[arg-type]
        except TypeError:  # generators, datasets of unknown cardinality
            total = None
        bar = None
        if progress:
            import keras

            bar = keras.utils.Progbar(total, unit_name="batch")
        rows = []
        for step, item in enumerate(batches, start=1):
            if isinstance(item, (tuple, list)):
                item = item[0]
            elif isinstance(item, Mapping):
                if "image" not in item:
                    raise ModelError(f"embed_batches: a dict batch needs an 'image' key, got "
                                     f"keys {sorted(item)}")
                item = item["image"]
            rows.append(self.embed(item))
            if bar is not None:
                bar.update(step)
        if not rows:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.concatenate(rows, axis=0)


def resolve_model_dir(path: str | pathlib.Path) -> pathlib.Path:
    """An exported model folder from either itself or a training run folder.

    A run folder holds ``model/`` (the final epoch) and, when validation ran, ``model_best/``;
    the final model is preferred because it is what the run was configured to produce.
    """
    run = RunLayout(path)
    for candidate in (run.root, run.model, run.best_model):
        if (candidate / SPEC_FILE).is_file():
            return candidate
    if not run.root.exists():
        raise ModelError(f"{run.root}: model folder not found")
    raise ModelError(f"{run.root}: no exported model here (expected {SPEC_FILE} in it or in its "
                     f"{run.model.name}/ folder; did training finish?)")
