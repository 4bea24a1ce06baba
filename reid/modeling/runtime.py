"""Running a network: one small interface over Keras, LiteRT and ONNX Runtime.

A runner takes a float32 NumPy batch and returns the network's float32 output; it knows nothing
else about the network, so the person detector runs through it as the embedder does (with
``run_all``, which feeds the input's own dtype and returns every output: an SSD answers with
four). The LiteRT and ONNX Runtime runners import neither TensorFlow nor Keras: a process that
only runs a converted model starts in a fraction of a second instead of TensorFlow's several
seconds. Measured on these machines (MobileNetV2 at 256x128, batch 64): Keras ``tf.function``
about 178 images/s, LiteRT with XNNPACK about 390, ONNX Runtime about 410; one image 14 ms
against 2.2 ms (docs/BENCHMARKS.md, ``bench/embed_speed.py``).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Protocol

import numpy as np

from reid.modeling.errors import ModelError, first_line
from reid.utils.quiet import held_stderr

class Runner(Protocol):
    """A loaded network: ``run(batch)`` -> its (first) output, as float32 NumPy."""

    runtime: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class MultiOutputRunner(Runner, Protocol):
    """A runner that also shows its input and returns every output: what a detector needs,
    whose model takes uint8 or float32 pixels and answers with boxes, classes, scores and a
    count. ``input_shape`` holds None where the model accepts any size."""

    input_shape: tuple[int | None, ...]
    input_dtype: np.dtype
    output_names: list[str]

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]: ...


#: The package each file runtime needs. ``ai-edge-litert`` has no wheels for some platforms
#: (Windows), so it is installed only where it has (setup.cfg's environment marker), and
#: ONNX Runtime is an extra: ``auto`` passes over a runtime that is not installed.
RUNTIME_MODULES = {"litert": "ai_edge_litert", "onnx": "onnxruntime"}


def runtime_installed(runtime: str) -> bool:
    """True when the package ``runtime`` (litert, onnx; keras always) needs can be imported."""
    import importlib.util

    module = RUNTIME_MODULES.get(runtime)
    try:
        return module is None or importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def usable_cores() -> int:
    """Cores this process may run on (its affinity, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)



class LiteRTRunner:
    """A ``.tflite`` model through ``ai-edge-litert`` (XNNPACK on CPU), any batch size.

    The interpreter's input is resized only when the batch size changes, so a run of equal
    batches (and a stream of single queries) allocates once, which also makes a runner
    unsafe to share between threads: give each thread its own. ``threads`` defaults to the
    cores this process may use: the interpreter's own default is one thread, which halved
    MobileNetV2's speed at 256x128 on two cores (137 against 274 images/s, 6.1 against 3.2 ms
    for one image).
    """

    runtime = "litert"

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError("LiteRT is not installed (ai-edge-litert has no wheels for this "
                             "platform, such as Windows): use the ONNX export (pip install "
                             "'reid[onnx]') or the Keras model") from None
        self.path = pathlib.Path(path)
        try:
            with held_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self._interpreter = Interpreter(model_path=str(self.path),
                                                num_threads=threads or usable_cores())
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path}: cannot load the LiteRT model "
                             f"({first_line(exc)})") from None
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()
        self._output = self._outputs[0]
        self._batch: int | None = None
        self.input_shape = tuple(int(n) if n > 0 else None
                                 for n in self._input.get("shape_signature", self._input["shape"]))
        self.input_dtype = np.dtype(self._input["dtype"])
        self.output_names = [str(o["name"]) for o in self._outputs]

    def _invoke(self, batch: np.ndarray) -> None:
        if batch.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            with held_stderr():
                self._interpreter.allocate_tensors()
            self._batch = batch.shape[0]
        self._interpreter.set_tensor(self._input["index"], batch)
        self._interpreter.invoke()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self._invoke(np.ascontiguousarray(batch, dtype=np.float32))
        return np.array(self._interpreter.get_tensor(self._output["index"]), dtype=np.float32)

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output in the model's order, in its own dtype; the batch is cast to the
        input's dtype (uint8 pixels for a quantized detector)."""
        self._invoke(np.ascontiguousarray(batch, dtype=self.input_dtype))
        return [np.array(self._interpreter.get_tensor(o["index"])) for o in self._outputs]


#: ONNX tensor types of the inputs a runner can feed, as NumPy dtypes.
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


class OnnxRunner:
    """An ``.onnx`` model through ONNX Runtime's CPU provider, any batch size."""

    runtime = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("ONNX Runtime is not installed: pip install 'reid[onnx]' (or use "
                             "the LiteRT export)") from None
        self.path = pathlib.Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(self.path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"{self.path}: cannot load the ONNX model "
                             f"({first_line(exc)})") from None
        model_input = self._session.get_inputs()[0]
        self._input = model_input.name
        self.input_shape = tuple(n if isinstance(n, int) and n > 0 else None
                                 for n in model_input.shape)
        self.input_dtype = np.dtype(ONNX_TYPES.get(model_input.type, np.float32))
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self._session.run(None, {self._input: batch})[0], dtype=np.float32)

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output in the model's order, in its own dtype; the batch is cast to the
        input's dtype."""
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        return [np.asarray(out) for out in self._session.run(None, {self._input: batch})]


class KerasRunner:
    """A Keras model through one ``tf.function`` with a fixed input signature (any batch size),
    traced once: ``Model.predict`` costs tens of milliseconds of set-up per call, which
    dominates when a search embeds one query image."""

    runtime = "keras"

    def __init__(self, model: Any) -> None:
        import tensorflow as tf

        self.model = model
        shape = (None, *tuple(model.input_shape)[1:])
        signature = [tf.TensorSpec(shape, tf.float32, name="images")]

        @tf.function(input_signature=signature)
        def run_fn(images: tf.Tensor) -> tf.Tensor:
            return model(images, training=False)

        self._run_fn = run_fn

    def run(self, batch: Any) -> np.ndarray:
        return np.asarray(self._run_fn(batch), dtype=np.float32)


def file_runner(runtime: str, path: str | os.PathLike,
                threads: int | None = None) -> MultiOutputRunner:
    """The runner of a converted model file (``litert`` or ``onnx``)."""
    runners = {"litert": LiteRTRunner, "onnx": OnnxRunner}
    if runtime not in runners:
        raise ModelError(f"runtime {runtime!r}: expected one of {', '.join(runners)}")
    return runners[runtime](path, threads)
