"""The re-id network, its custom layers, the backbone's weights and the exported embedder.

Networks are tiny (alpha 0.35, 64x32 inputs, random weights) so the whole file runs in seconds;
weights files are written here with random values, and the offline ImageNet file in
../shared/weights is read as well where it is present.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from reid.config import ModelConfig
from reid.data.preprocessing import normalize_pixels
from reid.modeling import (EMBEDDING, FEATURES, LOGITS, Embedder, GeMPooling2D, L2Normalize,
                           ModelError, build_backbone, build_reid_model, export_embedder,
                           make_spec, rebuild_backbone, weights_fingerprint)
from reid.modeling.reid_model import NECK_LAYER

SHAPE = (64, 32, 3)
NUM_CLASSES = 7
SHARED_WEIGHTS = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "weights"
                  / "mobilenet_v2_1.0_imagenet_no_top.weights.h5")


@pytest.fixture(scope="module")
def random_weights_file(tmp_path_factory) -> pathlib.Path:
    """A MobileNetV2 alpha 0.35 ``.weights.h5`` with random values, as Keras writes one."""
    keras.utils.set_random_seed(5)
    network = keras.applications.MobileNetV2(input_shape=(128, 64, 3), alpha=0.35,
                                             include_top=False, weights=None)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_0.35_random.weights.h5"
    network.save_weights(path)
    return path


@pytest.fixture(params=["random", "shared"])
def weights_file(request, random_weights_file) -> tuple[pathlib.Path, float]:
    """(file, its alpha): the random file always, the shared ImageNet file when present."""
    if request.param == "random":
        return random_weights_file, 0.35
    if not SHARED_WEIGHTS.is_file():
        pytest.skip(f"real weights not present at {SHARED_WEIGHTS}")
    return SHARED_WEIGHTS, 1.0


def small_cfg(**changes) -> ModelConfig:
    return dataclasses.replace(ModelConfig(alpha=0.35, weights=None), **changes)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *SHAPE)).astype(np.float32)


def pixels(n: int, seed: int = 0) -> np.ndarray:
    """RGB pixels in [0, 255], what an embedder takes (the network takes them normalised)."""
    return np.random.default_rng(seed).uniform(0, 255, (n, *SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def gem_models():
    """A head with every optional part: GeM, dropout and a bottleneck. Do not mutate."""
    keras.utils.set_random_seed(1)
    return build_reid_model(small_cfg(pooling="gem", embedding_dim=96, dropout=0.2), SHAPE,
                            NUM_CLASSES)


# --- the network -----------------------------------------------------------------------------

@pytest.mark.parametrize("pooling", ["avg", "gem"])
@pytest.mark.parametrize("dim", [0, 128])
def test_output_shapes_and_head_arithmetic(pooling, dim):
    models = build_reid_model(small_cfg(pooling=pooling, embedding_dim=dim), SHAPE, NUM_CLASSES)
    expected_dim = 1280 if dim == 0 else dim  # MobileNetV2 keeps 1280 channels for alpha <= 1
    assert models.feature_dim == expected_dim and models.num_classes == NUM_CLASSES
    out = models.training_model(images(5), training=False)
    assert set(out) == {FEATURES, LOGITS, EMBEDDING}
    assert out[FEATURES].shape == (5, expected_dim)
    assert out[LOGITS].shape == (5, NUM_CLASSES)
    assert out[EMBEDDING].shape == (5, expected_dim)
    assert ("bottleneck" in [layer.name for layer in models.training_model.layers]) == (dim > 0)

    # In inference the fresh neck is gamma * (f - 0) / sqrt(1 + eps) with gamma = 1, so the
    # embedding is the normalised feature and the logits are neck @ W (numpy references).
    kernel = models.training_model.get_layer("classifier").kernel.numpy().astype(np.float64)
    features = out[FEATURES].numpy().astype(np.float64)
    np.testing.assert_allclose(out[EMBEDDING].numpy(),
                               features / np.linalg.norm(features, axis=1, keepdims=True),
                               atol=1e-5)
    want = features / np.sqrt(1.0 + 1e-5) @ kernel
    np.testing.assert_allclose(out[LOGITS].numpy(), want, rtol=0, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(np.linalg.norm(models.embedding_model(images(5)), axis=1), 1.0,
                               atol=1e-5)

    # In training the neck normalises with the batch's own statistics (biased variance).
    out = models.training_model(images(5), training=True)
    features = out[FEATURES].numpy().astype(np.float64)
    neck = (features - features.mean(axis=0)) / np.sqrt(features.var(axis=0) + 1e-5)
    np.testing.assert_allclose(out[EMBEDDING].numpy(),
                               neck / np.linalg.norm(neck, axis=1, keepdims=True), atol=1e-4)
    want = neck @ kernel
    np.testing.assert_allclose(out[LOGITS].numpy(), want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_classifier_has_no_bias_and_neck_has_no_shift(gem_models):
    model = gem_models.training_model
    classifier = model.get_layer("classifier")
    assert [w.name for w in classifier.weights] == ["kernel"]
    assert classifier.kernel.shape == (96, NUM_CLASSES)
    neck = model.get_layer("bnneck")
    assert neck.beta is None
    assert sorted(w.name for w in neck.weights) == ["gamma", "moving_mean", "moving_variance"]
    assert [w.name for w in model.get_layer("bottleneck").weights] == ["kernel"]


def test_embedding_model_shares_weights_with_training_model():
    models = build_reid_model(small_cfg(embedding_dim=32), SHAPE, NUM_CLASSES)
    train_ids = {id(v) for v in models.training_model.weights}
    assert {id(v) for v in models.embedding_model.weights} <= train_ids
    assert {id(v) for v in models.backbone.weights} <= train_ids
    x = images(3)
    before = models.embedding_model(x).numpy()
    np.testing.assert_allclose(models.training_model(x)[EMBEDDING], before, atol=1e-6)
    conv = models.backbone.get_layer("Conv1").kernel
    conv.assign(conv.numpy() * -2.0)  # a change through the backbone reaches both models
    after = models.embedding_model(x).numpy()
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(models.training_model(x)[EMBEDDING], after, atol=1e-6)


def test_freezing_the_backbone_leaves_only_the_head_trainable():
    models = build_reid_model(small_cfg(pooling="gem", embedding_dim=16), SHAPE, NUM_CLASSES)
    models.backbone.trainable = False
    names = sorted(v.path for v in models.training_model.trainable_weights)
    assert names == ["bnneck/gamma", "bottleneck/kernel", "classifier/kernel", "pool/p"]


def test_bad_arguments_are_model_errors():
    with pytest.raises(ModelError, match="num_classes"):
        build_reid_model(small_cfg(), SHAPE, 0)
    with pytest.raises(ModelError, match="at least 32"):
        build_reid_model(small_cfg(), (16, 32, 3), 3)
    with pytest.raises(ModelError, match="channels"):
        build_reid_model(small_cfg(), (64, 32, 1), 3)


# --- last stride -----------------------------------------------------------------------------

def test_last_stride_one_doubles_the_map_with_the_same_weights():
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(input_shape=SHAPE, alpha=0.35, include_top=False,
                                          weights=None)
    s2, s1 = rebuild_backbone(base, 2), rebuild_backbone(base, 1)
    assert s2.output.shape[1:3] == (2, 1) and s1.output.shape[1:3] == (4, 2)
    for a, b, c in zip(base.get_weights(), s2.get_weights(), s1.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # At the changed convolution, the stride-2 output is the stride-1 output at every other
    # position: keras pads an even map by (0, 1), so stride-2 window j is centred on row 2j+1.
    x = images(2)
    probe = [keras.Model(m.input, m.get_layer("block_13_depthwise").output) for m in (s2, s1)]
    full, half = probe[1](x).numpy(), probe[0](x).numpy()
    assert full.shape[1:3] == (2 * half.shape[1], 2 * half.shape[2])
    np.testing.assert_allclose(full[:, 1::2, 1::2], half, rtol=1e-5, atol=1e-5)
    # ... and the layers before it are untouched.
    before = [keras.Model(m.input, m.get_layer("block_12_add").output)(x) for m in (s2, s1)]
    np.testing.assert_array_equal(before[0], before[1])


def test_last_stride_through_the_config():
    assert build_backbone(small_cfg(last_stride=2), (128, 64, 3)).output.shape[1:] == (4, 2, 1280)
    assert build_backbone(small_cfg(last_stride=1), (128, 64, 3)).output.shape[1:] == (8, 4, 1280)


# --- custom layers ---------------------------------------------------------------------------

def test_gem_against_numpy():
    x = np.random.default_rng(3).uniform(0.05, 6.0, (4, 5, 3, 8)).astype(np.float32)
    for p in (1.0, 3.0, 7.5):
        got = GeMPooling2D(p=p)(x).numpy()
        want = np.mean(x.astype(np.float64) ** p, axis=(1, 2)) ** (1 / p)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(GeMPooling2D(p=1.0)(x), x.mean(axis=(1, 2)), rtol=1e-5)


def test_gem_with_large_p_approaches_max_without_overflow():
    x = np.random.default_rng(4).uniform(0.05, 6.0, (2, 4, 2, 5)).astype(np.float32)
    n = 4 * 2
    mx, mean = x.max(axis=(1, 2)), x.mean(axis=(1, 2))
    p = 300.0  # 6**300 overflows float32: the value must still be finite and right
    got = GeMPooling2D(p=p)(x).numpy()
    assert np.all(np.isfinite(got))
    # power-mean bounds: max * n**(-1/p) <= M_p <= max
    assert np.all(got <= mx * (1 + 1e-6)) and np.all(got >= mx * n ** (-1 / p) * (1 - 1e-6))
    assert np.all(np.abs(got - mx) < np.abs(got - mean))


def test_gem_p_is_a_trainable_weight_starting_at_gem_p(gem_models):
    pool = gem_models.training_model.get_layer("pool")
    assert isinstance(pool, GeMPooling2D)
    assert pool.p.trainable and float(pool.p.numpy()) == ModelConfig().gem_p
    x = tf.constant(np.random.default_rng(5).uniform(0.1, 2, (2, 3, 3, 4)), tf.float32)
    layer = GeMPooling2D(p=2.0)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x))
    (grad,) = tape.gradient(y, [layer.p])
    assert grad is not None and np.isfinite(grad.numpy()) and grad.numpy() != 0


def test_l2_normalize_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1e-3, 0.0], [3e-10, -4e-10]], np.float32)
    np.testing.assert_allclose(L2Normalize()(x).numpy(),
                               [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0], [0.6, -0.8]], atol=1e-6)
    zero = tf.zeros((1, 3))
    with tf.GradientTape() as tape:
        tape.watch(zero)
        y = tf.reduce_sum(L2Normalize()(zero))
    assert np.all(np.isfinite(tape.gradient(y, zero).numpy()))


def test_l2_normalize_gradient_is_the_unit_vectors():
    """d(x/|x|)/dx = (I - y y^T) / |x|, at any scale (the rows are pre-scaled inside)."""
    rng = np.random.default_rng(0)
    for scale in (1.0, 1e-9):
        x = tf.constant(rng.normal(size=(1, 5)) * scale, tf.float64)
        weights = rng.normal(size=(1, 5))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = L2Normalize()(x)
            loss = tf.reduce_sum(y * weights)
        norm = np.linalg.norm(x.numpy())
        unit = x.numpy()[0] / norm
        expected = (np.eye(5) - np.outer(unit, unit)) @ weights[0] / norm
        # The layer computes in float32.
        np.testing.assert_allclose(tape.gradient(loss, x).numpy()[0], expected, rtol=1e-5,
                                   atol=1e-6 * np.abs(expected).max())


# --- backbone weights ------------------------------------------------------------------------

def test_missing_or_misnamed_weights_path(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ModelError, match=f"{re.escape(str(missing))}.*not found"):
        build_reid_model(small_cfg(weights=str(missing)), SHAPE, 3)
    misnamed = tmp_path / "backbone.h5"
    misnamed.write_bytes(b"")
    with pytest.raises(ModelError, match=f"{re.escape(str(misnamed))}.*\\.weights\\.h5"):
        build_reid_model(small_cfg(weights=str(misnamed)), SHAPE, 3)


def test_corrupt_weights_file(tmp_path):
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"this is not hdf5")
    with pytest.raises(ModelError, match=f"{re.escape(str(junk))}.*HDF5") as err:
        build_backbone(small_cfg(weights=str(junk)), SHAPE)
    assert "\n" not in str(err.value)


def test_weights_of_another_network_are_refused(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(ModelError, match=f"{re.escape(str(path))}.*holds 2 weight arrays") as err:
        build_backbone(small_cfg(weights=str(path)), SHAPE)
    assert "\n" not in str(err.value)


def test_weights_for_another_alpha_are_refused(weights_file):
    path, alpha = weights_file
    other = 0.5 if alpha != 0.5 else 0.75
    with pytest.raises(ModelError) as err:
        build_backbone(small_cfg(alpha=other, weights=str(path)), SHAPE)
    message = str(err.value)
    assert str(path) in message and f"alpha={other}" in message
    assert "shape" in message and "\n" not in message and len(message) < 400


@pytest.mark.parametrize("last_stride", [1, 2])
def test_weights_file_is_loaded(weights_file, last_stride):
    path, alpha = weights_file
    backbone = build_backbone(ModelConfig(alpha=alpha, weights=str(path),
                                          last_stride=last_stride), (128, 64, 3))
    # Every array of the file, and nothing else, ends up in the backbone (compared by content,
    # since the file names arrays by layer type and count, not by layer name).
    with h5py.File(path, "r") as f:
        in_file = []
        f.visititems(lambda _n, o: in_file.append(hashlib.sha256(o[()].tobytes()).hexdigest())
                     if isinstance(o, h5py.Dataset) else None)
    in_model = [hashlib.sha256(w.tobytes()).hexdigest() for w in backbone.get_weights()]
    assert len(in_file) == len(in_model) > 100
    assert sorted(in_file) == sorted(in_model)
    assert backbone.output.shape[1:3] == ((8, 4) if last_stride == 1 else (4, 2))


# --- export and the Embedder -----------------------------------------------------------------

def test_export_and_load_round_trip(gem_models, tmp_path):
    out = tmp_path / "run" / "embedder"
    written = export_embedder(gem_models.embedding_model, out, {"config": "tiny", "epoch": 3})
    assert sorted(p.name for p in out.iterdir()) == ["embedder.keras", "spec.json"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["embedder"]
    spec = json.loads((out / "spec.json").read_text())
    assert spec == written
    assert (spec["input_height"], spec["input_width"], spec["embedding_dim"]) == (64, 32, 96)
    assert (spec["normalization"], spec["resize"], spec["color_order"]) == (
        "mobilenet_v2", "bilinear", "RGB")
    assert (spec["config"], spec["epoch"]) == ("tiny", 3)

    loaded = Embedder.load(out)
    assert loaded.input_size == (64, 32) and loaded.embedding_dim == 96
    assert loaded.fingerprint == spec["fingerprint"] == weights_fingerprint(
        gem_models.embedding_model)
    x = pixels(6, seed=9)
    want = gem_models.embedding_model(normalize_pixels(x), training=False).numpy()
    got = loaded.embed(x)
    assert got.dtype == np.float32 and got.shape == (6, 96)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    # Re-exporting over the folder replaces both files and leaves no temporary files.
    export_embedder(gem_models.embedding_model, out, {"config": "again"})
    assert sorted(p.name for p in out.iterdir()) == ["embedder.keras", "spec.json"]
    assert Embedder.load(out).spec["config"] == "again"


def test_fingerprint_follows_the_weights():
    models = build_reid_model(small_cfg(embedding_dim=8), SHAPE, NUM_CLASSES)
    first = weights_fingerprint(models.embedding_model)
    assert len(first) == 64 and first == weights_fingerprint(models.embedding_model)
    gamma = models.embedding_model.get_layer("bnneck").gamma
    original = gamma.numpy()
    changed = original.copy()
    changed[3] += 1e-6
    gamma.assign(changed)
    assert weights_fingerprint(models.embedding_model) != first
    gamma.assign(original)
    assert weights_fingerprint(models.embedding_model) == first
    # Moving statistics change the embeddings, so they count too.
    mean = models.backbone.get_layer("bn_Conv1").moving_mean
    mean.assign(mean.numpy() + 0.5)
    assert weights_fingerprint(models.embedding_model) != first


def test_embed_checks_and_batching(gem_models):
    embedder = Embedder(gem_models.embedding_model, {"config": "mem"})
    x = pixels(7, seed=2)
    whole = embedder.embed(x)
    np.testing.assert_allclose(whole, gem_models.embedding_model(normalize_pixels(x)).numpy(),
                               atol=1e-5)
    parts = embedder.embed_batches([x[:3], (x[3:4], "label"), {"image": x[4:]}], progress=False)
    np.testing.assert_allclose(parts, whole, atol=1e-5)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.arange(7))).batch(2)
    np.testing.assert_allclose(embedder.embed_batches(dataset, progress=True), whole, atol=1e-5)
    # One trace serves every batch size: the signature has a free batch dimension.
    assert embedder._runner._run_fn.experimental_get_tracing_count() == 1
    assert embedder.embed(x[:0]).shape == (0, 96)
    assert embedder.embed_batches([], progress=False).shape == (0, 96)
    np.testing.assert_allclose(embedder.embed(x.astype(np.float64)), whole, atol=1e-5)
    # Pixels as decoded: uint8 as well as float, and any size, resized as the pipeline does.
    whole_numbers = np.round(x).astype(np.uint8)
    np.testing.assert_allclose(embedder.embed(whole_numbers),
                               embedder.embed(whole_numbers.astype(np.float32)), atol=1e-6)
    larger = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # 128x64
    np.testing.assert_allclose(embedder.embed(larger),
                               embedder.embed([embedder.resize(i) for i in larger]), atol=1e-6)
    assert embedder.resize(larger[0]).shape == (64, 32, 3)
    with pytest.raises(ModelError, match=r"\(N, h, w, 3\), got \(2, 64, 32, 4\)"):
        embedder.embed(np.zeros((2, 64, 32, 4), np.float32))
    with pytest.raises(ModelError, match=r"\(h, w, 3\), got \(64, 32\)"):
        embedder.embed([np.zeros((64, 32), np.uint8)])
    # Normalised already: the embedder would normalise them twice.
    with pytest.raises(ModelError, match=r"expected RGB pixels in \[0, 255\], got values from "
                                         r"-1 to 1 \(.*not normalised\)"):
        embedder.embed(np.linspace(-1, 1, 2 * 64 * 32 * 3).reshape(2, 64, 32, 3))


def test_spec_cannot_contradict_the_model(gem_models):
    with pytest.raises(ModelError, match="embedding_dim"):
        make_spec(gem_models.embedding_model, {"embedding_dim": 128})
    with pytest.raises(ModelError, match="JSON"):
        make_spec(gem_models.embedding_model, {"when": object()})
    with pytest.raises(ModelError, match="spec: resize 'nearest' is not one this version "
                                         "applies"):
        make_spec(gem_models.embedding_model, {"resize": "nearest"})


def test_load_errors_name_the_file(gem_models, tmp_path):
    with pytest.raises(ModelError, match="folder not found"):
        Embedder.load(tmp_path / "absent")
    out = tmp_path / "export"
    export_embedder(gem_models.embedding_model, out)
    spec_path, model_path = out / "spec.json", out / "embedder.keras"
    spec_re, model_re = re.escape(str(spec_path)), re.escape(str(model_path))
    good_spec = spec_path.read_text()

    spec_path.write_text("{not json")
    with pytest.raises(ModelError, match=f"{spec_re}: cannot read"):
        Embedder.load(out)
    spec = json.loads(good_spec)
    spec["fingerprint"] = "0" * 64  # a spec left over from another export
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(ModelError, match=f"{spec_re}: fingerprint .* different exports"):
        Embedder.load(out)
    spec = json.loads(good_spec)
    spec["normalization"] = "imagenet"  # a preprocessing this code does not apply
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(ModelError, match=f"{spec_re}: normalization 'imagenet' is not one this "
                                         f"version applies \\(known: mobilenet_v2\\)"):
        Embedder.load(out)
    spec_path.unlink()
    with pytest.raises(ModelError, match=f"{spec_re}: embedder spec not found"):
        Embedder.load(out)

    spec_path.write_text(good_spec)
    model_path.write_bytes(b"truncated")
    with pytest.raises(ModelError, match=f"{model_re}: cannot load") as err:
        Embedder.load(out)
    assert "\n" not in str(err.value)
    model_path.unlink()
    with pytest.raises(ModelError, match=f"{model_re}: embedding model file not found"):
        Embedder.load(out)


def test_backbone_batch_norm_momentum_comes_from_config():
    import keras

    from reid.config import ModelConfig
    from reid.modeling import build_backbone

    backbone = build_backbone(ModelConfig(alpha=0.35, weights=None, bn_momentum=0.8), (64, 32, 3))
    momenta = {layer.momentum for layer in backbone.layers
               if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.8}


@pytest.mark.parametrize("height,parts", ((7, 3), (8, 4), (5, 5), (6, 1)))
def test_stripe_pooling_matches_numpy_row_bands(height, parts):
    from reid.modeling.layers import StripePooling2D

    x = np.random.default_rng(height).normal(size=(2, height, 3, 4)).astype(np.float32)
    got = StripePooling2D(parts)(x).numpy()
    bounds = [round(np.floor(i * height / parts)) for i in range(parts + 1)]
    want = np.stack([x[:, lo:hi].mean(axis=(1, 2)) for lo, hi in zip(bounds, bounds[1:])], 1)
    assert got.shape == (2, parts, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Every row is in exactly one stripe, and no stripe is empty.
    assert bounds[0] == 0 and bounds[-1] == height and all(np.diff(bounds) >= 1)


def test_stripe_pooling_refuses_a_map_lower_than_its_stripes():
    from reid.modeling.layers import StripePooling2D

    with pytest.raises(ValueError, match="at least 4 rows"):
        StripePooling2D(4)(np.zeros((1, 3, 2, 5), np.float32))


def test_part_model_heads_embedding_and_export(tmp_path):
    parts, part_dim = 3, 16
    models = build_reid_model(small_cfg(parts=parts, part_dim=part_dim), SHAPE, NUM_CLASSES)
    x = normalize_pixels(pixels(4, seed=5))
    out = models.training_model(x, training=False)
    assert tuple(out[LOGITS].shape) == (4, 1 + parts, NUM_CLASSES)
    global_dim = out[FEATURES].shape[1]
    assert models.feature_dim == global_dim  # the triplet and center losses stay global
    assert tuple(out[EMBEDDING].shape) == (4, global_dim + parts * part_dim)
    np.testing.assert_allclose(np.linalg.norm(out[EMBEDDING].numpy(), axis=1), 1.0, atol=1e-5)
    # Each stripe has its own bottleneck and classifier.
    assert models.training_model.get_layer("part_bottleneck").kernel.shape == (
        parts, global_dim, part_dim)
    assert models.training_model.get_layer("part_classifier").kernel.shape == (
        parts, part_dim, NUM_CLASSES)
    # The global head's logits are the classifier applied to the global neck alone.
    neck = keras.Model(models.training_model.input,
                       models.training_model.get_layer("bnneck").output)(x, training=False)
    want = neck.numpy() @ models.training_model.get_layer("classifier").kernel.numpy()
    np.testing.assert_allclose(out[LOGITS].numpy()[:, 0], want, rtol=1e-4, atol=1e-6)

    export_embedder(models.embedding_model, tmp_path / "embedder", {"config": "parts"})
    loaded = Embedder.load(tmp_path / "embedder")
    assert loaded.embedding_dim == global_dim + parts * part_dim
    np.testing.assert_allclose(loaded.embed(pixels(4, seed=5)), out[EMBEDDING].numpy(),
                               atol=1e-5)


def test_more_parts_than_feature_rows_is_a_config_error():
    # 64x32 input, last stride 1: a 4-row map.
    with pytest.raises(ModelError, match="model.parts: 5 stripes need a feature map at least 5"):
        build_reid_model(small_cfg(parts=5), SHAPE, NUM_CLASSES)


@pytest.mark.parametrize("parts", [0, 3])
def test_neck_feat_before_embeds_the_triplet_feature(parts):
    keras.utils.set_random_seed(3)
    models = build_reid_model(small_cfg(parts=parts, part_dim=16, neck_feat="before"), SHAPE,
                              NUM_CLASSES)
    x = images(4, seed=7)
    out = models.training_model(x, training=False)
    features = out[FEATURES].numpy()
    want = features / np.linalg.norm(features, axis=1, keepdims=True)
    np.testing.assert_allclose(out[EMBEDDING].numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(models.embedding_model(x, training=False).numpy(), want,
                               rtol=1e-5, atol=1e-6)
    # The heads are the same either way: the stripes still have their classifiers.
    assert tuple(out[LOGITS].shape) == ((4, NUM_CLASSES) if parts == 0
                                        else (4, 1 + parts, NUM_CLASSES))
    # With the default, the stripe necks join the global neck.
    after = build_reid_model(small_cfg(parts=parts, part_dim=16), SHAPE, NUM_CLASSES)
    assert after.embedding_model.output_shape[1] == 1280 + parts * 16


def test_neck_feat_must_be_a_known_side():
    with pytest.raises(ModelError, match="model.neck_feat: expected one of after, before, "
                                         "centered, got 'mid'"):
        build_reid_model(small_cfg(neck_feat="mid"), SHAPE, NUM_CLASSES)


def test_neck_feat_centered_subtracts_the_necks_moving_mean(tmp_path):
    keras.utils.set_random_seed(4)
    models = build_reid_model(small_cfg(neck_feat="centered"), SHAPE, NUM_CLASSES)
    before = build_reid_model(small_cfg(neck_feat="before"), SHAPE, NUM_CLASSES)
    # Training checkpoints hold the training model's weights by position: the same for both.
    assert ([tuple(w.shape) for w in models.training_model.weights]
            == [tuple(w.shape) for w in before.training_model.weights])
    mean = np.random.default_rng(0).uniform(0, 2, 1280).astype(np.float32)
    models.training_model.get_layer(NECK_LAYER).moving_mean.assign(mean)
    x = normalize_pixels(pixels(4, seed=8))
    features = models.training_model(x, training=False)[FEATURES].numpy()
    want = (features - mean) / np.linalg.norm(features - mean, axis=1, keepdims=True)
    np.testing.assert_allclose(models.export_model()(x, training=False).numpy(), want,
                               rtol=1e-5, atol=1e-6)
    # The mean travels with the export.
    export_embedder(models.export_model(), tmp_path / "m")
    np.testing.assert_allclose(Embedder.load(tmp_path / "m", "keras").embed(pixels(4, seed=8)),
                               want, rtol=1e-5, atol=1e-6)


def test_a_spec_without_the_input_size_is_refused_by_name():
    from reid.modeling.spec import Preprocessing

    with pytest.raises(ModelError, match=r"m/spec.json: no input_width \(the model's input size"):
        Preprocessing.of({"input_height": 96}, "m/spec.json")
    assert Preprocessing.of({"input_height": 96, "input_width": 48}).height == 96
