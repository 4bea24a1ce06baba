"""Converting an export for a faster runtime (LiteRT, ONNX), checked against the Keras model.

A conversion is trusted only as far as it was measured: each one embeds a sample of real crops
with the Keras model and with the converted one, and records the largest difference, the
lowest cosine similarity and how far the two agree on every image's 10 nearest neighbours
among the others. Outside :data:`TOLERANCES` it is refused with the numbers, and nothing is
written. The record also keeps the images/s measured on the way, which ``runtime="auto"``
compares. Needs TensorFlow (and ``tf2onnx`` for ONNX); running the result does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
import pathlib
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np

from reid.modeling.embedder import Embedder
from reid.modeling.errors import ModelError, first_line
from reid.modeling.runtime import file_runner
from reid.modeling.spec import CONVERTED_FORMAT, FLOAT32, SPEC_FILE, ConvertedFormat, read_spec
from reid.utils.io import atomic_path, atomic_write_text, file_sha256
from reid.utils.quiet import held_stderr

#: Neighbours compared by the parity check.
PARITY_K = 10
#: Images a conversion is checked on, and an int8 one calibrated on, when the caller has more.
PARITY_IMAGES = 256
CALIBRATION_IMAGES = 200
#: Fewest crops an int8 conversion calibrates on. Calibration fixes every activation's int8
#: range from what these crops produce, so a few crops leave the others' activations clipped;
#: TFLite's guidance for the representative dataset is "around ~100-500 samples" of the
#: training or validation data (the run's training split gives thousands; the demo's too).
#: A crop of one colour (a blank frame, a 1x1 image resized) or a repeat of another adds no
#: range, and does not count.
MIN_CALIBRATION_IMAGES = 100
#: Similarities closer than this count as ties when neighbours are compared.
TIES = 1e-4
#: Batch size of the throughput measured while checking.
SPEED_BATCH = 64


@dataclasses.dataclass(frozen=True)
class Tolerance:
    min_cosine: float  # lowest cosine similarity between an image's two embeddings
    topk_agreement: float  # mean share of the 10 nearest neighbours both agree on


#: By quantization (None: float32, which must agree to rounding: its fingerprint is the Keras
#: model's, so its embeddings share indexes with Keras ones).
TOLERANCES = {None: Tolerance(0.9999, 0.95), "float16": Tolerance(0.999, 0.9),
              "int8": Tolerance(0.95, 0.6)}


def topk_agreement(reference: np.ndarray, other: np.ndarray, k: int = PARITY_K,
                   ties: float = TIES) -> float:
    """The share of each row's k nearest neighbours under ``other`` that are among its k
    nearest under ``reference``, up to ties: a neighbour counts when the reference's similarity
    to it is within ``ties`` of the reference's k-th best. Neighbours are the other rows, by
    inner product (cosine for unit rows). Without the ties, two near-identical embeddings of
    a near-collapsed model would disagree on orderings that are rounding noise."""
    n = len(reference)
    k = min(k, n - 1)
    if k < 1:
        return 1.0

    def similarities(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return sims

    ref, oth = similarities(reference), similarities(other)
    top = np.argsort(-oth, axis=1, kind="stable")[:, :k]
    kth = -np.sort(-ref, axis=1)[:, k - 1]
    return float(np.mean(np.take_along_axis(ref, top, axis=1) >= kth[:, None] - ties))


def parity_report(reference: np.ndarray, other: np.ndarray, tolerance: Tolerance,
                  k: int = PARITY_K) -> dict[str, Any]:
    """How closely ``other`` (converted embeddings) follows ``reference`` (Keras), row by row,
    and whether that is within ``tolerance``."""
    reference = np.asarray(reference, np.float64)
    other = np.asarray(other, np.float64)
    if reference.shape != other.shape or not len(reference):
        raise ModelError(f"parity: embeddings of shapes {reference.shape} and {other.shape}")
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    cosine = np.sum(reference * other, axis=1) / np.maximum(norms, 1e-300)
    report = {"images": len(reference), "max_abs_diff": float(np.abs(reference - other).max()),
              "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
              f"top{k}_agreement": topk_agreement(reference, other, k),
              "tolerance": dataclasses.asdict(tolerance)}
    report["passed"] = bool(report["min_cosine"] >= tolerance.min_cosine
                            and report[f"top{k}_agreement"] >= tolerance.topk_agreement)
    return report


def parity_failure(report: dict[str, Any], k: int = PARITY_K) -> str:
    """What fell short, by how much."""
    tolerance = report["tolerance"]
    parts = []
    if report["min_cosine"] < tolerance["min_cosine"]:
        parts.append(f"min cosine {report['min_cosine']:.6f} < {tolerance['min_cosine']} (short "
                     f"by {tolerance['min_cosine'] - report['min_cosine']:.2g})")
    agreement = report[f"top{k}_agreement"]
    if agreement < tolerance["topk_agreement"]:
        parts.append(f"top-{k} agreement {agreement:.3f} < {tolerance['topk_agreement']} "
                     f"(short by {tolerance['topk_agreement'] - agreement:.3f})")
    return ", ".join(parts)


def calibration_set(images: np.ndarray, source: str) -> np.ndarray:
    """The crops int8 calibrates on: ``images`` without those of one colour and without
    repeats, at most :data:`CALIBRATION_IMAGES`; a ModelError naming ``source`` (where they
    came from) and the count when fewer than :data:`MIN_CALIBRATION_IMAGES` remain."""
    images = np.asarray(images, np.float32)
    channels = images.shape[-1] if images.ndim == 4 else 1
    flat = (images.reshape(len(images), -1) if len(images)
            else np.zeros((0, channels), np.float32))
    # One colour: every pixel the same in each channel (a solid red crop too, not only grey).
    per_channel = flat.reshape(len(flat), flat.shape[1] // channels, channels)
    blank = np.ptp(per_channel, axis=1).max(axis=1) == 0
    seen: set[bytes] = set()
    keep = []
    for i in np.flatnonzero(~blank):
        digest = hashlib.sha256(flat[i].tobytes()).digest()
        if digest not in seen:
            seen.add(digest)
            keep.append(i)
    if len(keep) < MIN_CALIBRATION_IMAGES:
        repeats = len(flat) - int(blank.sum()) - len(keep)
        raise ModelError(f"{source}: int8 calibration needs at least {MIN_CALIBRATION_IMAGES} "
                         f"different crops that are not of one colour, got {len(keep)} (of "
                         f"{len(flat)} read: {int(blank.sum())} of one colour, {repeats} "
                         f"repeated); calibrate on more of the crops it will embed")
    return images[keep[:CALIBRATION_IMAGES]]


def _litert_bytes(model: Any, quantize: str | None, calibration: np.ndarray | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None or not len(calibration):
            raise ModelError("int8 quantization needs calibration images (given, or a run whose "
                             "training split is readable)", field="calibration")
        # Weights and activations in int8, the interface in float32: callers do not change.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
    # The converter saves the model first, and Keras prints that it did, endpoints and all;
    # int8 warns that the float interface has no input statistics, which is what we asked for.
    with contextlib.redirect_stdout(io.StringIO()), held_stderr(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def _onnx_bytes(model: Any) -> bytes:
    try:
        import tf2onnx
    except ImportError:
        raise ModelError("tf2onnx is not installed: pip install 'reid[onnx]'") from None
    import tensorflow as tf

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    height, width = tuple(model.input_shape)[1:3]
    signature = (tf.TensorSpec((None, height, width, 3), tf.float32, name="images"),)
    # A tf.function, not from_keras: tf2onnx's Keras entry point predates Keras 3.
    function = tf.function(lambda images: model(images, training=False))
    with contextlib.redirect_stdout(io.StringIO()), held_stderr():
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=17)
    return proto.SerializeToString()


def _versions(runtime: str) -> dict[str, str]:
    packages = ["tensorflow", "keras"] + (["ai-edge-litert"] if runtime == "litert" else
                                          ["tf2onnx", "onnxruntime"])
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def _measure(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray
             ) -> tuple[np.ndarray, dict[str, float]]:
    """(``run``'s embeddings of ``images`` in batches of SPEED_BATCH, speed): images/s over
    the whole sample after one warm-up batch, and the median of five single-image calls."""
    run(images[:SPEED_BATCH])
    start = time.perf_counter()
    rows = [run(images[i:i + SPEED_BATCH]) for i in range(0, len(images), SPEED_BATCH)]
    seconds = time.perf_counter() - start
    single = []
    for i in range(5):
        one = images[i % len(images)][None]
        start = time.perf_counter()
        run(one)
        single.append(time.perf_counter() - start)
    return np.concatenate(rows), {"images_per_s": len(images) / max(seconds, 1e-9),
                                  "batch_size": SPEED_BATCH,
                                  "ms_per_image_alone": float(np.median(single) * 1000)}


def convert_export(model_dir: str | pathlib.Path, fmt: ConvertedFormat, images: np.ndarray,
                   calibration: np.ndarray | None = None,
                   log: Callable[[str], None] = print,
                   tolerance: Tolerance | None = None,
                   calibration_source: str = "calibration images") -> dict[str, Any]:
    """Convert the Keras model of export ``model_dir`` to ``fmt``, check it on ``images``
    (crops as RGB pixels, which the embedders prepare as the spec says) and write the model
    file and its record beside the export; returns the record. A conversion outside
    ``tolerance`` (default: the format's in :data:`TOLERANCES`) raises ModelError, and leaves
    the folder as it was. int8 calibrates on ``calibration`` (:func:`calibration_set`;
    ``calibration_source`` names them in errors)."""
    tolerance = tolerance or TOLERANCES[fmt.quantize]
    folder = pathlib.Path(model_dir)
    spec = read_spec(folder)
    images = np.asarray(images, np.float32)[:PARITY_IMAGES]
    if len(images) < 2:
        raise ModelError(f"{folder}: a conversion is checked on at least 2 images, got "
                         f"{len(images)}")
    if fmt.quantize == "int8" and calibration is not None:
        calibration = calibration_set(calibration, calibration_source)
    keras_embedder = Embedder.load(folder, runtime="keras")
    log(f"converting {folder} to {fmt.name} ...")
    start = time.perf_counter()
    if fmt.runtime == "litert":
        # int8 calibrates on what the network sees: the crops prepared as the spec says.
        content = _litert_bytes(keras_embedder.keras_model, fmt.quantize,
                                None if calibration is None or fmt.quantize != "int8"
                                else keras_embedder.preprocess(calibration))
    else:
        content = _onnx_bytes(keras_embedder.keras_model)
    convert_seconds = time.perf_counter() - start

    target = folder / fmt.file
    with atomic_path(target) as tmp:
        tmp.write_bytes(content)
        reference, keras_speed = _measure(keras_embedder.embed, images)
        try:
            served = Embedder._of(file_runner(fmt.runtime, tmp), {**spec, "runtime": fmt.name},
                                  str(folder / SPEC_FILE))
            converted, speed = _measure(served.embed, images)
        except RuntimeError as exc:  # the runtime's own failure, e.g. a quantized division
            raise ModelError(f"{folder}: the {fmt.name} conversion does not run "
                             f"({first_line(exc)}); nothing written") from None
        report = parity_report(reference, converted, tolerance)
        if not report["passed"]:
            raise ModelError(f"{folder}: the {fmt.name} conversion is outside tolerance on "
                             f"{len(images)} images: {parity_failure(report)}; nothing written")
        digest = file_sha256(tmp)
    fingerprint = spec["fingerprint"] if fmt.quantize is None else digest
    record = {
        "format": CONVERTED_FORMAT, "format_version": 1, "name": fmt.name,
        "runtime": fmt.runtime, "precision": fmt.quantize or FLOAT32, "file": fmt.file,
        "bytes": len(content), "sha256": digest, "source_fingerprint": spec["fingerprint"],
        "fingerprint": fingerprint, "versions": _versions(fmt.runtime), "parity": report,
        "speed": speed, "keras_speed": keras_speed, "convert_seconds": convert_seconds,
        "calibration_images": (0 if fmt.quantize != "int8" or calibration is None
                               else len(calibration)),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
    }
    # Last: the record names the file's checksum, so a crash before it leaves no record, and
    # an old record beside a new file is caught on load.
    atomic_write_text(folder / fmt.record, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def format_record(record: dict[str, Any], folder: str | pathlib.Path) -> str:
    """The lines a tool prints about a conversion."""
    parity, speed, keras = record["parity"], record["speed"], record["keras_speed"]
    return "\n".join([
        f"{record['name']}: {pathlib.Path(folder) / record['file']} ({record['bytes'] / 1e6:.1f} "
        f"MB, {record['precision']}, converted in {record['convert_seconds']:.1f} s)",
        f"  parity on {parity['images']} images: max |diff| {parity['max_abs_diff']:.2g}, min "
        f"cosine {parity['min_cosine']:.6f}, top-{PARITY_K} agreement "
        f"{parity[f'top{PARITY_K}_agreement']:.3f}",
        f"  speed: {speed['images_per_s']:.0f} images/s at batch {speed['batch_size']} "
        f"(Keras {keras['images_per_s']:.0f}), {speed['ms_per_image_alone']:.1f} ms for one "
        f"image (Keras {keras['ms_per_image_alone']:.1f})",
        f"  fingerprint {record['fingerprint'][:12]}"
        + (" (the Keras model's: indexes are shared)" if record["precision"] == FLOAT32
           else " (its own: index with this export to query with it)"),
    ])


def sample(items: list, n: int, seed: int = 0) -> list:
    """At most ``n`` of ``items``, a seeded uniform sample kept in order: the check and the
    calibration see every identity and camera of a split, not only its first files."""
    if len(items) <= n:
        return list(items)
    chosen = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in chosen]


def convert_with_images(model_dir: str | pathlib.Path, fmt: ConvertedFormat,
                        parity_paths: list[str], calibration_paths: list[str] | None = None,
                        log: Callable[[str], None] = print,
                        tolerance: Tolerance | None = None) -> dict[str, Any]:
    """:func:`convert_export` on image files: a sample of ``parity_paths`` to check on and,
    for int8, of ``calibration_paths`` (training images) to calibrate on. Unreadable files
    are an error naming them (check them, or skip them, before)."""
    from reid.data.pipeline import check_images, eval_dataset

    spec = read_spec(pathlib.Path(model_dir))
    height, width = spec["input_height"], spec["input_width"]

    def load(paths: list[str]) -> np.ndarray:
        paths = check_images(paths)
        return np.concatenate([np.asarray(batch) for batch in
                               eval_dataset(paths, height, width, SPEED_BATCH)])

    images = load(sample(list(parity_paths), PARITY_IMAGES))
    calibration, source = None, "calibration images"
    if fmt.quantize == "int8" and calibration_paths:
        calibration = load(sample(list(calibration_paths), CALIBRATION_IMAGES, seed=1))
        source = _folder_of(calibration_paths)
    return convert_export(model_dir, fmt, images, calibration, log, tolerance,
                          calibration_source=source)


def _folder_of(paths: list[str]) -> str:
    """The folder that holds ``paths`` (their deepest common one), to name them in a message."""
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:  # on different drives
        return os.path.dirname(paths[0])
