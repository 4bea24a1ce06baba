"""The exported embedding model and the one interface through which everything embeds images.

An export is a folder with two files:

* ``embedder.keras``: the Keras embedding model (images -> L2-normalised embeddings);
* ``spec.json``: what a caller must know to feed it (input size, RGB order, resize method,
  normalisation ``x / 127.5 - 1``), the embedding size, a SHA-256 fingerprint of the weights,
  plus whatever the exporter adds (config name, training run, ...).

Indexes and evaluation results store the fingerprint, so a gallery index built with one model
is never silently searched with embeddings from another. Callers go through :class:`Embedder`
only, so a faster runtime (ONNX, TFLite) can later serve the same interface.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from reid.modeling import layers as _layers  # noqa: F401 - registers the custom layers
from reid.modeling.backbone import ModelError
from reid.run_layout import RunLayout
from reid.utils.io import atomic_path, atomic_write_text

MODEL_FILE = "embedder.keras"
SPEC_FILE = "spec.json"
FORMAT = "reid-embedder"
FORMAT_VERSION = 1

#: Preprocessing the exported model expects; an exporter may override these in ``spec``.
DEFAULT_PREPROCESSING: dict[str, Any] = {
    "color_order": "RGB",
    "resize": "bilinear",
    "normalization": "mobilenet_v2",
    "normalization_formula": "x / 127.5 - 1",
}


def weights_fingerprint(model: keras.Model) -> str:
    """SHA-256 (hex) over every weight array of ``model``, in ``model.weights`` order.

    Each array's dtype and shape are hashed before its bytes, so two models that differ only
    in how the same numbers are shaped do not collide. Moving statistics of batch norms are
    included: they change the embeddings as much as trained weights do.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _model_io(model: keras.Model) -> tuple[int, int, int]:
    """(height, width, embedding_dim) of an embedding model, which must have fixed sizes."""
    in_shape = tuple(model.input_shape)
    out_shape = tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[3] != 3 or None in in_shape[1:]:
        raise ModelError(f"embedding model {model.name}: expected a fixed (height, width, 3) "
                         f"image input, got {in_shape}")
    if len(out_shape) != 2 or out_shape[1] is None:
        raise ModelError(f"embedding model {model.name}: expected a (batch, dim) output, "
                         f"got {out_shape}")
    return int(in_shape[1]), int(in_shape[2]), int(out_shape[1])


def make_spec(model: keras.Model, extra: Mapping[str, Any] | None = None,
              source: str = "spec") -> dict[str, Any]:
    """The full spec of ``model``: default preprocessing, ``extra``, and the facts read from it.

    Facts (input size, embedding size, fingerprint, format) always come from the model; an
    ``extra`` that states one differently is an error rather than a silent override, because a
    spec that lies about the model would make every consumer preprocess or compare wrongly.
    """
    extra = dict(extra or {})
    height, width, dim = _model_io(model)
    facts = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_file": MODEL_FILE,
             "input_height": height, "input_width": width, "input_channels": 3,
             "embedding_dim": dim, "l2_normalized": True,
             "fingerprint": weights_fingerprint(model)}
    for key, value in facts.items():
        if key == "fingerprint" and key in extra and extra[key] != value:
            raise ModelError(f"{source}: fingerprint {str(extra[key])[:12]}... does not match the "
                             f"model's weights ({value[:12]}...): files from different exports?")
        if key in extra and extra[key] != value:
            raise ModelError(f"{source}: {key} is {extra[key]!r} but the model's is {value!r}")
    spec = {**DEFAULT_PREPROCESSING, **extra, **facts}
    try:
        json.dumps(spec)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: not JSON-serialisable ({exc})") from None
    return spec


def export_embedder(embedding_model: keras.Model, out_dir: str | pathlib.Path,
                    spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``embedder.keras`` and ``spec.json`` into ``out_dir``; return the written spec.

    Each file is written atomically; the spec goes last and carries the weights' fingerprint,
    which :meth:`Embedder.load` checks, so a crash between the two writes (new model, old spec)
    is reported on load instead of serving mismatched embeddings. Other files in ``out_dir``
    (a run folder) are left alone.
    """
    out = pathlib.Path(out_dir)
    full_spec = make_spec(embedding_model, spec)
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out}: export folder is a file")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / MODEL_FILE) as tmp:
        embedding_model.save(tmp)
    atomic_write_text(out / SPEC_FILE, json.dumps(full_spec, indent=2, sort_keys=True) + "\n")
    return full_spec


class Embedder:
    """Images (already resized and normalised per :attr:`spec`) -> L2-normalised embeddings.

    Inference runs through one ``tf.function`` with a fixed input signature (any batch size),
    traced once: ``Model.predict`` costs tens of milliseconds of setup per call, which
    dominates when a search embeds one query image.
    """

    def __init__(self, model: keras.Model, spec: Mapping[str, Any] | None = None, *,
                 source: str = "spec") -> None:
        self._spec = make_spec(model, spec, source)
        self._model = model
        height, width = self.input_size
        signature = [tf.TensorSpec((None, height, width, 3), tf.float32, name="images")]

        @tf.function(input_signature=signature)
        def embed_fn(images: tf.Tensor) -> tf.Tensor:
            return model(images, training=False)

        self._embed_fn = embed_fn

    @classmethod
    def load(cls, model_dir: str | pathlib.Path) -> Embedder:
        """Load an export of :func:`export_embedder`; errors name the missing or bad file."""
        folder = pathlib.Path(model_dir)
        if not folder.is_dir():
            raise ModelError(f"{folder}: embedder folder not found")
        spec_path, model_path = folder / SPEC_FILE, folder / MODEL_FILE
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
        if not model_path.is_file():
            raise ModelError(f"{model_path}: embedding model file not found")
        try:
            model = keras.saving.load_model(model_path, compile=False)
        except Exception as exc:  # noqa: BLE001 - zip, h5 and deserialisation errors vary
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{model_path}: cannot load the embedding model ({first})") from None
        return cls(model, spec, source=str(spec_path))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._spec)

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

    @property
    def model(self) -> keras.Model:
        return self._model

    def _check_batch(self, batch: Any) -> Any:
        shape = tuple(batch.shape)
        height, width = self.input_size
        if len(shape) != 4 or tuple(shape[1:]) != (height, width, 3):
            raise ModelError(f"embed: expected images of shape (N, {height}, {width}, 3), "
                             f"got {shape}")
        dtype = tf.as_dtype(batch.dtype)
        if not dtype.is_floating:
            raise ModelError(f"embed: expected float images normalised as "
                             f"{self._spec.get('normalization_formula', 'the spec says')}, got "
                             f"{dtype.name} (raw pixels?)")
        return batch

    def embed(self, batch: np.ndarray | tf.Tensor) -> np.ndarray:
        """``(N, H, W, 3)`` float images -> ``(N, D)`` float32 unit-norm rows."""
        if not isinstance(batch, tf.Tensor):
            batch = np.asarray(batch)
        self._check_batch(batch)
        if batch.shape[0] == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        images = tf.cast(batch, tf.float32) if batch.dtype != np.float32 else batch
        return np.asarray(self._embed_fn(images), dtype=np.float32)

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
        bar = keras.utils.Progbar(total, unit_name="batch") if progress else None
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
