"""Golden embeddings: every path that embeds an image (the Embedder itself, a query, an index
build, evaluation, the service, footage ingest) gives what an independent reference gives, to
1e-6: the image decoded, resized with TensorFlow's bilinear resize (antialiased when it shrinks,
as the training pipeline resizes), normalised as the export's spec says, written out here
(``x / 127.5 - 1``), run through the Keras model directly and L2-normalised.

The model and the images are fixed (the tests' tiny model; a few drawn pictures of different
sizes, one of them through a JPEG round trip), so the figures cannot drift with a training run.
A normalisation applied twice, or not at all, moves every embedding far beyond the tolerance
(checked below on the reference itself), so any path that does either fails here.
"""

from __future__ import annotations

import dataclasses
import pathlib

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from reid.data.records import ImageRecord
from reid.engine.evaluator import embed_records
from reid.index import GalleryIndex
from reid.index.build import build_gallery
from reid.index.query import embed_queries
from reid.modeling import Embedder
from reid.serve.app import create_app
from reid.video.ingest import _TrackWriter
from tiny_model import export_tiny_model

HEIGHT, WIDTH = 64, 32  # the tiny model's input
TOLERANCE = 1e-6


def drawn_images() -> dict[str, np.ndarray]:
    """uint8 RGB pictures: larger than the input (shrunk, antialiased), smaller (enlarged), its
    own size, and wider but shorter (one side shrinks, the other grows)."""
    rng = np.random.default_rng(30)
    images = {}
    for name, (height, width) in {"large": (150, 70), "small": (40, 20), "exact": (64, 32),
                                  "mixed": (50, 48)}.items():
        rows, cols = np.mgrid[0:height, 0:width]
        image = np.stack([255 * rows / height, 255 * cols / width,
                          127 + 120 * np.sin((rows + 2 * cols) / 5)], axis=-1)
        image += rng.normal(0, 25, image.shape)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[top:top + height // 3, left:left + width // 3] = rng.integers(0, 256, 3)
        images[name] = np.clip(image, 0, 255).astype(np.uint8)
    return images


def reference_pixels(images: list[np.ndarray]) -> np.ndarray:
    """The pictures resized as the training pipeline defines it: TensorFlow's bilinear resize,
    antialiased when a side shrinks, clipped to [0, 255]."""
    batch = []
    for image in images:
        shrinks = image.shape[0] > HEIGHT or image.shape[1] > WIDTH
        x = tf.image.resize(tf.cast(image, tf.float32), [HEIGHT, WIDTH], method="bilinear",
                            antialias=shrinks)
        batch.append(tf.clip_by_value(x, 0.0, 255.0).numpy())
    return np.stack(batch)


def unit_rows(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
    out = model(inputs.astype(np.float32), training=False).numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def mobilenet_v2(pixels: np.ndarray) -> np.ndarray:
    """The spec's normalisation, written out."""
    return pixels / np.float32(127.5) - np.float32(1.0)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """(model folder, image files, their decoded pixels, reference embeddings, Keras model,
    the export's embedder on Keras, an index built from the files)."""
    root = tmp_path_factory.mktemp("golden")
    folder = export_tiny_model(root / "model")
    files = []
    for name, image in drawn_images().items():
        path = root / "images" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), image[:, :, ::-1])
        files.append(path)
    # A JPEG round trip: what the reference sees is what the JPEG decodes to.
    path = root / "images" / "photo.jpg"
    cv2.imwrite(str(path), drawn_images()["large"][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    files.append(path)
    decoded = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
               for p in files]
    embedder = Embedder.load(folder, runtime="keras")
    model = embedder.keras_model  # the reference calls it directly, past the embedder
    want = unit_rows(model, mobilenet_v2(reference_pixels(decoded)))
    index = root / "index"
    build_gallery(files, index, folder, progress=False, log=lambda _: None)
    return Golden(folder, files, decoded, want, model, embedder, index)


@dataclasses.dataclass(frozen=True)
class Golden:
    folder: pathlib.Path
    files: list[pathlib.Path]
    decoded: list[np.ndarray]
    want: np.ndarray
    model: keras.Model
    embedder: Embedder
    index: pathlib.Path


def test_the_reference_tells_a_doubled_or_missing_normalisation(golden):
    """The tolerance has teeth: the pictures' embeddings differ from each other, and normalising
    twice or not at all moves each of them by far more than it."""
    want = golden.want
    spec = golden.embedder.spec
    assert (spec["normalization"], spec["normalization_formula"]) == ("mobilenet_v2",
                                                                      "x / 127.5 - 1")
    gaps = np.abs(want[:, None] - want[None]).max(axis=2)
    assert gaps[~np.eye(len(want), dtype=bool)].min() > 100 * TOLERANCE
    pixels = reference_pixels(golden.decoded)
    for wrong in (mobilenet_v2(mobilenet_v2(pixels)), pixels):
        assert np.abs(unit_rows(golden.model, wrong) - want).max(axis=1).min() > 100 * TOLERANCE


def test_the_embedder_applies_its_spec(golden):
    embedder, decoded, want = golden.embedder, golden.decoded, golden.want
    np.testing.assert_allclose(embedder.embed(decoded), want, atol=TOLERANCE)
    floats = [image.astype(np.float32) for image in decoded]
    np.testing.assert_allclose(embedder.embed(floats), want, atol=TOLERANCE)
    exact = [i for i, image in enumerate(decoded) if image.shape[:2] == (HEIGHT, WIDTH)]
    np.testing.assert_allclose(embedder.embed(np.stack([decoded[i] for i in exact])),
                               want[exact], atol=TOLERANCE)
    resized = np.stack([embedder.resize(image) for image in decoded])
    np.testing.assert_allclose(embedder.embed(resized), want, atol=TOLERANCE)


def test_query_index_and_evaluation_embed_as_the_reference(golden):
    gallery = GalleryIndex.load(golden.index)
    by_path = {e.path: e.id for e in gallery.entries()}
    stored = gallery.vectors_of([by_path[str(p.resolve())] for p in golden.files])
    np.testing.assert_allclose(stored, golden.want, atol=TOLERANCE)
    np.testing.assert_allclose(embed_queries(golden.embedder, golden.files), golden.want,
                               atol=TOLERANCE)
    records = [ImageRecord(str(p), i, 0) for i, p in enumerate(golden.files)]
    np.testing.assert_allclose(embed_records(golden.embedder, records, batch_size=2,
                                             progress=False), golden.want, atol=TOLERANCE)


def test_the_service_embeds_as_the_reference(golden):
    gallery = GalleryIndex.load(golden.index)
    client = TestClient(create_app(golden.index), base_url="http://127.0.0.1:8000")
    for path, vector in zip(golden.files, golden.want):
        answer = client.post("/api/search", files={"image": (path.name, path.read_bytes())},
                             data={"k": str(len(golden.files)), "threshold": "none"})
        assert answer.status_code == 200, answer.text
        scores = {h["id"]: h["score"] for h in answer.json()["hits"]}
        np.testing.assert_allclose([scores[i] for i in gallery.ids], gallery.vectors @ vector,
                                   atol=TOLERANCE)


def test_footage_ingest_embeds_as_the_reference(golden, tmp_path):
    writer = _TrackWriter("cam", tmp_path, golden.embedder, {"embed": 0.0}, lambda: None)
    writer._pending = list(enumerate(golden.decoded))  # a finished track's crops, as cut
    writer._embed()
    np.testing.assert_allclose(np.stack([writer._crop_vectors[i]
                                         for i in range(len(golden.decoded))]),
                               golden.want, atol=TOLERANCE)
