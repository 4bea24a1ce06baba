"""Writing an export: the Keras embedding model and its spec (:mod:`reid.modeling.spec`
describes the folder; :class:`reid.modeling.Embedder` loads it). Needs Keras, unlike loading a
converted export.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from reid.modeling import layers as _layers  # noqa: F401 - registers the custom layers
from reid.modeling.errors import ModelError
from reid.modeling.spec import (DEFAULT_PREPROCESSING, FORMAT, FORMAT_VERSION, MODEL_FILE,
                                Preprocessing, write_spec)
from reid.utils.io import atomic_path


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
    for key in ("runtime", "precision"):  # how a loaded embedder runs, not part of the export
        extra.pop(key, None)
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
    Preprocessing.of(spec, source)  # a preprocessing no embedder applies is refused here
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
    write_spec(out, full_spec)
    return full_spec
