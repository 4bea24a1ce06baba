"""Adaptation to a new site (reid.engine.adapt, tools/adapt.py): AdaBN against numpy and
against Keras's own batch statistics, the site calibration's pairs by brute force, and one tiny
adaptation of the shared trained run to the synthetic test identities (tracks: each person's
crops per camera; cannot-link: neighbours in one camera), stopped by its time budget after
AdaBN and resumed for one round of self-training."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

import numpy as np
import pytest
from tool_runner import tool_main

from reid.config import AdaptConfig

ADAPT = AdaptConfig(rounds=3, epochs_per_round=1, steps_per_epoch=2, k1=4, k2=2, eps=0.5,
                    min_samples=2,
                    minutes=1e-4)  # the budget ends the first call after AdaBN


# --- AdaBN ------------------------------------------------------------------------------------

def _hand_model():
    """image (2, 3, 2) -> 1x1 conv -> bn1 -> pool -> [nested: dense -> bn2] -> dropout -> bn3,
    with every batch norm's scale, shift and moving statistics made non-trivial."""
    import keras

    keras.utils.set_random_seed(5)
    inputs = keras.Input((2, 3, 2))
    x = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="bn1")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    sub_in = keras.Input((3,))
    y = keras.layers.BatchNormalization(epsilon=1e-2, name="bn2")(
        keras.layers.Dense(2, name="dense")(sub_in))
    x = keras.Model(sub_in, y, name="nested")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.BatchNormalization(center=False, name="bn3")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in _norms(model):
        layer.set_weights([rng.uniform(0.5, 2.0, w.shape) if "variance" in w.path or
                           "gamma" in w.path else rng.normal(size=w.shape)
                           for w in layer.weights])
    return model


def _norms(model):
    return [model.get_layer("bn1"), model.get_layer("nested").get_layer("bn2"),
            model.get_layer("bn3")]


def test_adabn_sets_each_batch_norm_to_its_inputs_statistics_over_all_batches():
    from reid.engine.adapt import adapt_batchnorm

    model = _hand_model()
    bn1, bn2, bn3 = _norms(model)
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer("conv").get_weights())
    dense_w, dense_b = (np.asarray(w, np.float64)
                        for w in model.get_layer("nested").get_layer("dense").get_weights())

    def normalised(x, layer, axes):  # training-mode batch norm of x by its own moments
        gamma = np.asarray(layer.gamma)
        beta = np.asarray(layer.beta) if layer.center else 0.0
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta

    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(n, 2, 3, 2)).astype(np.float32) for n in (5, 3, 7)]
    inputs = {1: [], 2: [], 3: []}
    for batch in batches:  # by hand: each layer normalises by the batch's own statistics
        h1 = batch.astype(np.float64) @ kernel[0, 0] + bias
        inputs[1].append(h1.reshape(-1, 3))
        h2 = normalised(h1, bn1, (0, 1, 2)).mean(axis=(1, 2)) @ dense_w + dense_b
        inputs[2].append(h2)
        inputs[3].append(normalised(h2, bn2, 0))  # dropout is off: inference

    assert adapt_batchnorm(model, iter(batches)) == 3
    for layer, key in zip((bn1, bn2, bn3), (1, 2, 3)):
        seen = np.concatenate(inputs[key])
        np.testing.assert_allclose(np.asarray(layer.moving_mean), seen.mean(axis=0), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(np.asarray(layer.moving_variance), seen.var(axis=0),
                                   rtol=1e-5, atol=1e-6)
        assert "call" not in vars(layer)  # the layer is itself again


def test_adabn_on_one_batch_is_keras_training_mode_statistics():
    """On the tiny re-id network, one batch: what Keras's own batch norms store after a
    training-mode pass at momentum 0 (tests/tiny_model.standardise_batch_norms)."""
    import keras
    from tiny_model import standardise_batch_norms

    from reid.config import ModelConfig
    from reid.engine.adapt import adapt_batchnorm, batch_norm_layers
    from reid.modeling import build_reid_model

    def build():
        keras.utils.set_random_seed(2)
        return build_reid_model(ModelConfig(alpha=0.35, weights=None), (64, 32, 3), 3)

    ours, theirs = build().training_model, build().training_model
    images = np.random.default_rng(3).uniform(-1, 1, (6, 64, 32, 3)).astype(np.float32)
    assert adapt_batchnorm(ours, [images]) == len(batch_norm_layers(ours)) > 50
    standardise_batch_norms(theirs, images)
    for a, b in zip(batch_norm_layers(ours), batch_norm_layers(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a.moving_mean), np.asarray(b.moving_mean),
                                   rtol=1e-4, atol=1e-5, err_msg=a.name)
        np.testing.assert_allclose(np.asarray(a.moving_variance), np.asarray(b.moving_variance),
                                   rtol=1e-3, atol=1e-5, err_msg=a.name)


# --- the site calibration's pairs -------------------------------------------------------------

def test_track_vector_pairs_are_those_of_a_brute_force_loop():
    from reid.index.site_calibration import track_vector_pairs

    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(9, 5))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tracks = [0, 0, 1, 1, 1, 2, -1, 3, 2]
    cameras = [1, 1, 1, 1, 1, 2, 0, 2, 2]
    cannot = {(0, 1), (3, 2), (1, 9)}  # track 9 has no crops: no pairs
    pairs = track_vector_pairs(vectors, tracks, cameras, cannot, dropped=2)

    crops = {t: [i for i, u in enumerate(tracks) if u == t] for t in (0, 1, 2, 3)}

    def mean(t):
        m = vectors[crops[t]].mean(axis=0)
        return m / np.linalg.norm(m)

    impostor, to_track = [], []
    for a, b in [(0, 1), (2, 3)]:
        impostor += [vectors[i] @ vectors[j] for i in crops[a] for j in crops[b]]
        to_track += [vectors[i] @ mean(b) for i in crops[a]]
        to_track += [vectors[j] @ mean(a) for j in crops[b]]
    genuine = [vectors[i] @ vectors[j] for t in crops for i in crops[t] for j in crops[t] if i < j]
    np.testing.assert_allclose(sorted(pairs.impostor), sorted(impostor))
    np.testing.assert_allclose(sorted(pairs.track_impostor), sorted(to_track))
    np.testing.assert_allclose(sorted(pairs.genuine), sorted(genuine))
    assert (pairs.tracks, pairs.cameras, pairs.co_occurring, pairs.dropped, pairs.kept) == (
        4, 2, 4, 2, 2)
    assert pairs.probes == 8 and pairs.genuine_tracks == 3  # track 3 has one crop


# --- a tiny adaptation ------------------------------------------------------------------------

def _synthetic_target(data: pathlib.Path, folder: pathlib.Path):
    """Crops of the 10 test identities, each 6 near-copies of one of its pictures (a pixel's
    shift and noise): the tiny network's embeddings are barely discriminative, and near-copies
    are what it can tell apart, so the pseudo-labels' purity says whether labels follow their
    crops through the adaptation. Each identity's crops are two tracks of 3 (cameras 1 and 2 in
    turn); tracks of neighbouring identities are cannot-link. Returns the target and the
    identity of each crop."""
    import cv2

    from reid.index.target import TargetCrops

    folder.mkdir()
    rng = np.random.default_rng(0)
    pictures = {}
    for path in sorted((data / "bounding_box_test").glob("*.jpg")):
        pictures.setdefault(int(path.name[:4]), path)
    paths, cameras, tracks, pids = [], [], [], []
    for n, (pid, picture) in enumerate(sorted(pictures.items())):
        image = cv2.imread(str(picture)).astype(np.float64)
        for k in range(6):
            crop = np.roll(image, int(rng.integers(-1, 2)), axis=1) + rng.normal(0, 3, image.shape)
            path = folder / f"{pid:04d}_c{1 + k % 2}s1_{k:06d}_00.png"
            cv2.imwrite(str(path), np.clip(crop, 0, 255).astype(np.uint8))
            paths.append(str(path))
            cameras.append(1 + k % 2)
            tracks.append(2 * n + k // 3)
            pids.append(pid)
    count = max(tracks) + 1
    cannot = frozenset((a, b) for a in range(count) for b in range(a + 1, count)
                       if abs(a // 2 - b // 2) == 1 and a % 2 == b % 2)
    return (TargetCrops(tuple(paths), tuple(cameras), tuple(tracks), cannot,
                        f"near-copies of the synthetic test identities in {folder}"),
            np.array(pids))


def _digests(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclasses.dataclass
class Adapted:
    target: object
    pids: np.ndarray
    out: pathlib.Path
    first: object
    first_log: list[str]
    first_fingerprint: str
    second: object
    second_log: list[str]
    converted: list
    source_before: dict[str, str]


@pytest.fixture(scope="module")
def adapted(trained_run, tmp_path_factory) -> Adapted:
    from reid.engine.adapt import adapt_run
    from reid.modeling.spec import read_spec

    folder = tmp_path_factory.mktemp("adapt")
    target, pids = _synthetic_target(trained_run.data, folder / "crops")
    before = _digests(trained_run.root)
    out = folder / "site"
    first_log: list[str] = []
    first = adapt_run(trained_run.root, target, out, ADAPT,
                      overrides=["train.export_litert=false"], log=first_log.append,
                      progress=False)
    fingerprint = read_spec(out / "model")["fingerprint"]
    converted = []

    def convert(model_dir, fmt, paths, *args, **kwargs):
        converted.append((pathlib.Path(model_dir), fmt.name, list(paths)))
        raise RuntimeError("no conversion in this test")

    second_log: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("reid.modeling.convert.convert_with_images", convert)
        second = adapt_run(trained_run.root, target, out,
                           dataclasses.replace(ADAPT, rounds=1, minutes=0),
                           overrides=["train.export_litert=true"], resume=True,
                           log=second_log.append, progress=False)
    return Adapted(target, pids, out, first, first_log, fingerprint, second, second_log,
                   converted, before)


def test_the_budget_ends_after_adabn_and_a_resume_continues_after_the_last_round(
        adapted, trained_run):
    first, second = adapted.first, adapted.second
    assert first.rounds == 0 and first.stopped.startswith("time budget of 0.0001 min spent")
    adabn = [line for line in adapted.first_log if line.startswith("AdaBN: ")]
    assert len(adabn) == 1 and "batch-norm layers set to the statistics of 60 target crops" in (
        adabn[0])
    source_spec = json.loads((trained_run.model / "spec.json").read_text())
    assert adapted.first_fingerprint != source_spec["fingerprint"]  # AdaBN moved statistics
    assert first.history == [{"round": 0, "adabn": first.history[0]["adabn"]}]
    # The resumed call starts where the first stopped: no second AdaBN, round 1 added.
    assert f"resumed {adapted.out} after round 0" in adapted.second_log
    assert not any(line.startswith("AdaBN") for line in adapted.second_log)
    assert second.rounds == 1 and second.stopped is None
    assert second.history[0] == first.history[0] and second.history[1]["round"] == 1
    assert (adapted.out / "checkpoints" / "latest").read_text().strip() == "epoch-0001"


def test_the_adapted_run_is_complete_and_every_tool_takes_it(adapted, trained_run, capsys):
    from reid.modeling import load_model
    from reid.modeling.spec import read_spec
    from reid.run_layout import load_run_config

    out, second = adapted.out, adapted.second
    cfg = load_run_config(out)
    assert cfg.adapt.source == str(trained_run.root)
    assert cfg.adapt.target == adapted.target.source and cfg.adapt.rounds == 1
    assert cfg.model == trained_run.config.model  # the source's network, and its config
    assert json.loads((out / "history.json").read_text()) == json.loads(
        json.dumps(second.history))
    embedder, model_dir, _ = load_model(out)
    assert model_dir == out / "model" == second.model_dir
    spec = read_spec(model_dir)
    assert spec["adapted"]["rounds"] == 1 and spec["fingerprint"] == embedder.fingerprint
    assert spec["fingerprint"] != adapted.first_fingerprint  # round 1 trained
    vectors = embedder.embed(np.full((2, 64, 32, 3), 128, np.uint8))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    code = tool_main("evaluate")(["--model", str(out), "--data-root", str(trained_run.data),
                                  "--no-progress"])
    assert code == 0 and "queries 20, gallery 40" in capsys.readouterr().out
    index = adapted.out.parent / "index"
    assert tool_main("build_index")(["--model", str(out), "--images",
                                     str(trained_run.data / "query"), "--index", str(index),
                                     "--no-progress"]) == 0
    assert tool_main("query")(["--index", str(index), "--image",
                               adapted.target.paths[0], "--top-k", "3"]) == 0
    assert f"calibrated on {adapted.target.source}" in capsys.readouterr().out  # the site's
    # LiteRT conversion asked on the target's crops; its failure is a warning, not a failure.
    assert adapted.converted == [(model_dir, "litert", list(adapted.target.paths))]
    assert any(line.startswith("warning: no LiteRT export (RuntimeError")
               for line in adapted.second_log)


def test_pseudo_identities_keep_tracks_whole_and_apart_and_join_them_above_chance(adapted):
    saved = np.load(adapted.out / "pseudo_labels" / "round-0001.npz")
    labels, tracks = saved["labels"], saved["tracks"]
    assert list(saved["paths"]) == list(adapted.target.paths)
    assert adapted.second.history[1]["identities"] == len(set(labels[labels >= 0].tolist()))
    of_track = {}
    for track, label in zip(tracks.tolist(), labels.tolist()):
        assert of_track.setdefault(track, label) == label  # must-link
    for a, b in adapted.target.cannot_link:
        assert of_track[a] < 0 or of_track[a] != of_track[b]  # cannot-link

    def precision(assigned):  # of the pairs of crops of two tracks given one identity
        joined = ((assigned[:, None] == assigned[None, :]) & (assigned[:, None] >= 0)
                  & (tracks[:, None] != tracks[None, :]))
        return (adapted.pids[:, None] == adapted.pids[None, :])[joined].mean()

    # Chance: the same pseudo-identities given to the tracks at random.
    rng = np.random.default_rng(0)
    track_labels = np.array([of_track[t] for t in range(len(of_track))])
    chance = [precision(rng.permutation(track_labels)[tracks]) for _ in range(200)]
    assert precision(labels) > max(chance)


def test_the_site_calibration_rests_on_the_targets_co_occurring_tracks(adapted):
    from reid.calibration import spec_calibration
    from reid.modeling.spec import read_spec

    target, calibration = adapted.target, adapted.second.calibration
    crops = np.bincount(np.array(target.tracks))
    assert calibration.impostor_pairs == sum(crops[a] * crops[b] for a, b in target.cannot_link)
    assert calibration.source.startswith(target.source)
    stored = spec_calibration(read_spec(adapted.out / "model"), "spec")
    assert stored.to_json() == calibration.to_json()


def test_the_source_run_is_never_modified(adapted, trained_run):
    assert _digests(trained_run.root) == adapted.source_before


def test_the_tool_adapts_crops_with_adabn_alone_and_keeps_no_source_thresholds(
        trained_run, tmp_path, capsys):
    from reid.modeling.spec import read_spec

    out = tmp_path / "crops"
    code = tool_main("adapt")(["--model", str(trained_run.root), "--output", str(out),
                               "--images", str(trained_run.data / "query"), "--rounds", "0",
                               "--set", "train.export_litert=false", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "no site calibration: crops give no impostor pairs" in printed
    assert "calibration" in read_spec(trained_run.model)  # the source had thresholds
    assert "calibration" not in read_spec(out / "model")  # of another domain: not kept
    assert json.loads((out / "history.json").read_text())[0]["adabn"]["images"] == 20


@pytest.mark.parametrize("case", ["exists", "source", "inside", "model override"])
def test_tool_errors_are_one_line(case, trained_run, tmp_path, capsys):
    out = {"exists": tmp_path / "taken", "source": trained_run.root,
           "inside": trained_run.root / "adapted", "model override": tmp_path / "new"}[case]
    if case == "exists":
        out.mkdir()
        (out / "something").write_text("kept")
    extra = ["--set", "model.alpha=0.5"] if case == "model override" else []
    code = tool_main("adapt")(["--model", str(trained_run.root), "--output", str(out),
                               "--images", str(trained_run.data / "query"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    expected = {
        "exists": f"error: {out}: already exists; resume its adaptation or choose another "
                  f"output folder (--resume, --output)",
        "source": f"error: {out}: is the source run {trained_run.root} or holds it",
        "inside": f"error: {out}: is the source run {trained_run.root} or holds it",
        "model override": "error: override 'model.alpha=0.5': the network is the source run's",
    }[case]
    assert err[0].startswith(expected)
    assert case != "exists" or (out / "something").read_text() == "kept"
    assert case == "exists" or not (tmp_path / "new").exists()
