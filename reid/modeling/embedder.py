"""The one interface through which everything embeds images: RGB pixels in, unit vectors out.

:class:`Embedder` serves an export (:mod:`reid.modeling.spec` describes the folder) through
whichever runtime is chosen, and applies the preprocessing its spec states to every image
(:mod:`reid.data.preprocessing`: the resize the training pipeline does, then the
normalisation), so that no caller prepares images itself and none can do it twice.

Indexes and evaluation results store the fingerprint, so a gallery index built with one model
is never silently searched with embeddings from another. A float32 conversion has the Keras
model's fingerprint (its embeddings agree to about 1e-7, checked when converting), so indexes
built through any float32 runtime are interchangeable; a quantized one has its own. Callers go
through :class:`Embedder` only, whatever runtime serves it; loading a converted export imports
neither TensorFlow nor Keras (:mod:`reid.modeling.runtime`).
"""

from __future__ import annotations

import json
import os
import pathlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from reid.data.preprocessing import PIXEL_MAX
from reid.modeling.errors import ModelError, first_line
from reid.modeling.runtime import KerasRunner, Runner, file_runner, runtime_installed
from reid.modeling.spec import (CONVERTED, CONVERTED_FORMAT, FLOAT32, MODEL_FILE,
                                RUNTIME_CHOICES, SPEC_FILE, ConvertedFormat, Preprocessing,
                                read_spec)
from reid.run_layout import RunLayout
from reid.utils.io import file_sha256


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
    """RGB images -> L2-normalised embeddings, through whichever runtime serves the export
    (:attr:`runtime`). Images are prepared as the spec says (:meth:`preprocess`): callers pass
    pixels as decoded, never normalised."""

    def __init__(self, model: Any, spec: Mapping[str, Any] | None = None, *,
                 source: str = "spec") -> None:
        """An embedder of an in-memory Keras model (training's validation, tests)."""
        from reid.modeling.export import make_spec

        spec = make_spec(model, spec, source)
        spec.update(runtime="keras", precision=FLOAT32)
        self._set(KerasRunner(model), spec, source)

    def _set(self, runner: Runner, spec: Mapping[str, Any], source: str) -> None:
        self._spec = dict(spec)
        self._preprocessing = Preprocessing.of(self._spec, source)
        self._runner = runner

    @classmethod
    def _of(cls, runner: Runner, spec: Mapping[str, Any], source: str) -> Embedder:
        embedder = cls.__new__(cls)
        embedder._set(runner, spec, source)
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
                                "fingerprint": record["fingerprint"]}, str(folder / SPEC_FILE))

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

    def resize(self, image: Any) -> np.ndarray:
        """One RGB image, ``(h, w, 3)`` of any size, uint8 or float in [0, 255] -> float32
        ``(H, W, 3)`` pixels at :attr:`input_size`, resized as the spec says (the training
        pipeline's resize; an image of that size already is left as it is). For a caller that
        must bound what it holds (a service decoding uploads) before :meth:`embed`."""
        return self._resized(self._pixels(image, ndim=3))

    def preprocess(self, images: Any) -> np.ndarray:
        """RGB images -> the network's input, ``(N, H, W, 3)`` float32: each resized as
        :meth:`resize` does, then normalised as the spec says. ``images``: an ``(N, h, w, 3)``
        array or tensor, or a sequence of ``(h, w, 3)`` arrays of any sizes; uint8, or float
        in [0, 255] (pixels as decoded, not normalised: the spec's normalisation is applied
        here, once)."""
        height, width = self.input_size
        if isinstance(images, Sequence) and not isinstance(images, np.ndarray):
            batch = [self._resized(self._pixels(image, ndim=3)) for image in images]
            batch = (np.stack(batch) if batch
                     else np.zeros((0, height, width, 3), np.float32))
        else:
            batch = self._pixels(images, ndim=4)
            if batch.shape[1:3] != (height, width):
                batch = (np.stack([self._resized(image) for image in batch]) if len(batch)
                         else np.zeros((0, height, width, 3), np.float32))
        return np.asarray(self._preprocessing.normalize(batch.astype(np.float32, copy=False)),
                          np.float32)

    def _pixels(self, images: Any, ndim: int) -> np.ndarray:
        """``images`` as an array of RGB pixels (an image or a batch), checked."""
        pixels = np.asarray(images)
        shape = "(h, w, 3)" if ndim == 3 else "(N, h, w, 3)"
        if pixels.ndim != ndim or pixels.shape[-1] != 3:
            raise ModelError(f"embed: expected RGB images of shape {shape}, got "
                             f"{tuple(pixels.shape)}")
        if pixels.dtype == np.uint8 or not pixels.size:
            return pixels
        if not (np.issubdtype(pixels.dtype, np.floating)
                or np.issubdtype(pixels.dtype, np.integer)):
            raise ModelError(f"embed: expected uint8 or float RGB pixels, got {pixels.dtype}")
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0.0 or high > PIXEL_MAX:
            raise ModelError(f"embed: expected RGB pixels in [0, {PIXEL_MAX:g}], got values from "
                             f"{low:.4g} to {high:.4g} (the embedder normalises them as its spec "
                             f"says: pass them as decoded, not normalised)")
        return pixels

    def _resized(self, image: np.ndarray) -> np.ndarray:
        height, width = self.input_size
        if image.shape[:2] == (height, width):
            return image.astype(np.float32, copy=False)
        return self._preprocessing.resize(image, height, width)

    def embed(self, images: Any) -> np.ndarray:
        """RGB images (as :meth:`preprocess` takes them) -> ``(N, D)`` float32 unit rows."""
        batch = self.preprocess(images)
        if batch.shape[0] == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        return self._runner.run(batch)

    def embed_batches(self, batches: Iterable[Any], progress: bool = True) -> np.ndarray:
        """Embed every batch of an iterable or ``tf.data.Dataset`` and stack the rows in order.

        An element may be a batch of RGB pixels (as :meth:`embed` takes them), a tuple/list
        whose first item is the image batch (``(images, labels)``), or a dict with an
        ``"image"`` key. The progress bar counts batches; its total is shown when
        ``len(batches)`` is known.
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


def load_model(model: str | os.PathLike, runtime: str = "auto"
               ) -> tuple[Embedder, pathlib.Path, str]:
    """(embedder, exported model folder, a line saying which export was used) of an export or
    a training run folder (:func:`resolve_model_dir`), served by ``runtime``."""
    run = RunLayout(model)
    given = run.root
    model_dir = resolve_model_dir(given)
    embedder = Embedder.load(model_dir, runtime)
    note = f"model {model_dir}"
    if model_dir == run.best_model:
        note += f" ({run.model} not found; using the best-validation export)"
    elif model_dir != given:
        note += f" (the final export of run folder {given})"
    note += (f", fingerprint {embedder.fingerprint[:12]}, {embedder.embedding_dim}-d, "
             f"runtime {embedder.runtime}")
    return embedder, model_dir, note
