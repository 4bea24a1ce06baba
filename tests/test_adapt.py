"""Adaptation to a new site (reid.engine.adapt, tools/adapt.py): AdaBN against numpy and
against Keras's own batch statistics, the site calibration's pairs by brute force, and one tiny
adaptation of the shared trained run, through the tool, to a footage index of the synthetic test
identities (tracks: each person's crops per camera; cannot-link: neighbours seen at once in one
camera), stopped by its time budget after AdaBN and resumed for one round of self-training that
is calibrated on another index, of the training identities (footage it did not adapt on)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import pathlib
import warnings

import numpy as np
import pytest
from tool_runner import tool_main

#: Tiny settings; the budget ends the first call after AdaBN.
ADAPT = ["adapt.epochs_per_round=1", "adapt.steps_per_epoch=1", "adapt.k1=4", "adapt.k2=2",
         "adapt.eps=0.5", "adapt.min_samples=2"]


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

    keras.utils.set_random_seed(2)
    model = build_reid_model(ModelConfig(alpha=0.35, weights=None), (64, 32, 3), 3).training_model
    norms = batch_norm_layers(model)
    images = np.random.default_rng(3).uniform(-1, 1, (6, 64, 32, 3)).astype(np.float32)
    weights = model.get_weights()
    standardise_batch_norms(model, images)
    theirs = [(np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)) for bn in norms]
    model.set_weights(weights)  # as built again
    assert adapt_batchnorm(model, [images]) == len(norms) > 50
    for bn, (mean, variance) in zip(norms, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(bn.moving_mean), mean, rtol=1e-4, atol=1e-5,
                                   err_msg=bn.name)
        np.testing.assert_allclose(np.asarray(bn.moving_variance), variance, rtol=1e-3,
                                   atol=1e-5, err_msg=bn.name)


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

def _footage_index(data: pathlib.Path, split: str, index: pathlib.Path, every: float = 10.0
                   ) -> dict[str, int]:
    """A footage index of the 10 identities of ``split``, each 6 near-copies of one of its
    pictures (a pixel's shift and noise): the tiny network's embeddings are barely
    discriminative, and near-copies are what it can tell apart, so the pseudo-labels' purity
    says whether labels follow their crops through the adaptation. Each identity is a track of
    3 crops in each of cameras A and B, person n on screen from ``every`` n s for 15 s in
    alternate columns: neighbours are seen at once (cannot-link; none when ``every`` >= 15),
    never in one place. The index's model is made up: adaptation reads only the crops. Returns
    the identity of each stored crop by its path."""
    import cv2

    from reid.index import GalleryIndex, ModelInfo, media
    from reid.index.footage import FootageEntry, TrackRecord, VideoRecord

    rng = np.random.default_rng(0)
    pictures = {}
    for path in sorted((data / split).glob("*.jpg")):
        pictures.setdefault(int(path.name[:4]), path)
    gallery = GalleryIndex(ModelInfo(fingerprint="d" * 64, embedding_dim=4, model_dir="/made/up"))
    pid_of = {}
    for camera in "AB":
        video = f"/videos/{index.name}-{camera}.avi"
        tracks, entries = [], []
        for n, (pid, picture) in enumerate(sorted(pictures.items())):
            image = cv2.cvtColor(cv2.imread(str(picture)), cv2.COLOR_BGR2RGB).astype(np.float64)
            start, box = every * n, (50.0 * (n % 2), 10.0, 50.0 * (n % 2) + 40, 130.0)
            tracks.append(TrackRecord(camera, n, video, int(start * 10), int(start * 10) + 150,
                                      start, start + 15, 3))
            for k, t in enumerate((start, start + 7.5, start + 15)):
                crop = (np.roll(image, int(rng.integers(-1, 2)), axis=1)
                        + rng.normal(0, 3, image.shape))
                thumb = media.store(index, media.encode_jpeg(np.clip(crop, 0, 255)
                                                             .astype(np.uint8)))
                pid_of[str(media.path(index, thumb))] = pid
                entries.append(FootageEntry("crop", camera, n, int(t * 10), t, box, 0.9, thumb))
            entries.append(FootageEntry("track", camera, n, int(start * 10) + 75, start + 7.5,
                                        box, 0.9, thumb))
        vectors = rng.normal(size=(len(entries), 4))
        frames = int(every * len(pictures) + 15) * 10
        gallery.add_footage(VideoRecord(video, camera, 10.0, 640, 360, frames, True),
                            tracks, entries,
                            (vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
                            .astype(np.float32))
    gallery.save(index)
    return pid_of


def _digests(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_tool(name: str, argv: list[str]) -> tuple[int, str]:
    """A tool's main(argv) in-process: (exit status, what it printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tool_main(name)(argv)
    return code, out.getvalue()


@contextlib.contextmanager
def eager_functions():
    """TensorFlow functions run eagerly for a while: the adaptation's one training step of the
    tiny network then takes about a second where tracing its graph takes about nine, with the
    same result (the graph-mode step is what the training tests check)."""
    import tensorflow as tf

    before = tf.config.functions_run_eagerly()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Even though the `tf.config.experimental_run")
        tf.config.run_functions_eagerly(True)
        try:
            yield
        finally:
            tf.config.run_functions_eagerly(before)


@pytest.fixture
def eagerly():
    with eager_functions():
        yield


@dataclasses.dataclass
class Adapted:
    day1: pathlib.Path        # the footage adapted on
    day2: pathlib.Path        # footage of the same site it did not see: calibrates
    target: object            # footage_target(day1), as the tool reads it
    held_out: object          # footage_target(day2)
    pids: np.ndarray          # the identity of each crop of target
    out: pathlib.Path
    first_log: str
    first_spec: dict
    first_history: list
    second_log: str
    converted: list
    source_before: dict[str, str]


@pytest.fixture(scope="module")
def adapted(trained_run, tmp_path_factory) -> Adapted:
    from reid.index.target import footage_target
    from reid.modeling.spec import read_spec

    folder = tmp_path_factory.mktemp("adapt")
    day1, day2 = folder / "day1", folder / "day2"
    pid_of = _footage_index(trained_run.data, "bounding_box_test", day1)
    _footage_index(trained_run.data, "bounding_box_train", day2)
    target, held_out = footage_target([str(day1)]), footage_target([str(day2)])
    before = _digests(trained_run.root)
    out = folder / "site"
    source = ["--model", str(trained_run.root), "--output", str(out), "--footage", str(day1),
              "--no-progress"]
    with eager_functions():
        code, first_log = _run_tool("adapt", [*source, "--rounds", "3", "--minutes", "1e-4",
                                              "--set", *ADAPT, "train.export_litert=false"])
    assert code == 0, first_log
    first_spec = read_spec(out / "model")
    first_history = json.loads((out / "history.json").read_text())
    converted = []

    def convert(model_dir, fmt, paths, *args, **kwargs):
        converted.append((pathlib.Path(model_dir), fmt.name, list(paths)))
        raise RuntimeError("no conversion in this test")

    with pytest.MonkeyPatch.context() as patch, eager_functions():
        patch.setattr("reid.modeling.convert.convert_with_images", convert)
        code, second_log = _run_tool("adapt", [
            *source, "--resume", "--rounds", "1", "--minutes", "0", "--calibrate-on", str(day2),
            "--set", "train.export_litert=true"])
    assert code == 0, second_log
    return Adapted(day1, day2, target, held_out, np.array([pid_of[p] for p in target.paths]),
                   out, first_log, first_spec, first_history, second_log, converted, before)


def test_the_budget_ends_after_adabn_and_a_resume_continues_after_the_last_round(
        adapted, trained_run):
    first_log, second_log = adapted.first_log.splitlines(), adapted.second_log.splitlines()
    assert "stopped: time budget of 0.0001 min spent; resume to continue" in first_log
    adabn = [line for line in first_log if line.startswith("AdaBN: ")]
    assert len(adabn) == 1 and "batch-norm layers set to the statistics of 60 target crops" in (
        adabn[0])
    assert "(0 round(s) of self-training)" in adapted.first_log
    source_spec = json.loads((trained_run.model / "spec.json").read_text())
    assert adapted.first_spec["fingerprint"] != source_spec["fingerprint"]  # AdaBN moved them
    assert adapted.first_history == [{"round": 0, "adabn": adapted.first_history[0]["adabn"]}]
    # The resumed call starts where the first stopped: no second AdaBN, round 1 added.
    assert f"resumed {adapted.out} after round 0" in second_log
    assert not any(line.startswith("AdaBN") for line in second_log)
    assert not any(line.startswith("stopped") for line in second_log)
    assert "(1 round(s) of self-training)" in adapted.second_log
    history = json.loads((adapted.out / "history.json").read_text())
    assert history[0] == adapted.first_history[0] and [r["round"] for r in history] == [0, 1]
    assert (adapted.out / "checkpoints" / "latest").read_text().strip() == "epoch-0001"


@pytest.mark.usefixtures("eagerly")
def test_the_adapted_run_is_complete_and_every_tool_takes_it(adapted, trained_run):
    from reid.modeling import resolve_model_dir
    from reid.modeling.spec import read_spec
    from reid.run_layout import load_run_config

    out = adapted.out
    cfg = load_run_config(out)
    assert cfg.adapt.source == str(trained_run.root)
    assert cfg.adapt.target == adapted.target.source and cfg.adapt.rounds == 1
    assert cfg.model == trained_run.config.model  # the source's network, and its config
    model_dir = resolve_model_dir(out)
    assert model_dir == out / "model"
    spec = read_spec(model_dir)
    assert spec["adapted"]["rounds"] == 1
    assert spec["fingerprint"] != adapted.first_spec["fingerprint"]  # round 1 trained
    # Each tool loads the model, checking its weights against the spec's fingerprint.
    code, printed = _run_tool("evaluate", ["--model", str(out), "--data-root",
                                           str(trained_run.data), "--no-progress"])
    assert code == 0 and "queries 20, gallery 40" in printed
    assert f"calibrated thresholds ({adapted.held_out.source}" in printed
    index = out.parent / "index"
    assert _run_tool("build_index", ["--model", str(out), "--images",
                                     str(trained_run.data / "query"), "--index", str(index),
                                     "--no-progress"])[0] == 0
    code, printed = _run_tool("query", ["--index", str(index), "--image",
                                        adapted.target.paths[0], "--top-k", "3"])
    assert code == 0 and f"calibrated on {adapted.held_out.source}" in printed  # the site's
    # LiteRT conversion asked on the target's crops; its failure is a warning, not a failure.
    assert adapted.converted == [(model_dir, "litert", list(adapted.target.paths))]
    assert "warning: no LiteRT export (RuntimeError" in adapted.second_log


def test_pseudo_identities_keep_tracks_whole_and_apart_and_join_them_above_chance(adapted):
    saved = np.load(adapted.out / "pseudo_labels" / "round-0001.npz")
    labels, tracks = saved["labels"], saved["tracks"]
    assert list(saved["paths"]) == list(adapted.target.paths)
    history = json.loads((adapted.out / "history.json").read_text())
    assert history[1]["identities"] == len(set(labels[labels >= 0].tolist()))
    of_track = {}
    for track, label in zip(tracks.tolist(), labels.tolist()):
        assert of_track.setdefault(track, label) == label  # must-link
    assert len(adapted.target.cannot_link) == 18  # neighbours, in each camera
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


def test_the_site_calibration_comes_from_footage_not_adapted_on(adapted, trained_run):
    from reid.calibration import spec_calibration
    from reid.engine.adapt import NOT_ON_TRAINED_FOOTAGE
    from reid.modeling.spec import read_spec

    # The footage adapted on alone: no thresholds (nor the source's, of another domain).
    assert "calibration" in read_spec(trained_run.model)
    assert "calibration" not in adapted.first_spec
    assert NOT_ON_TRAINED_FOOTAGE in adapted.first_log.splitlines()
    # Footage it did not see: its tracks seen at once are the impostor pairs.
    held_out = adapted.held_out
    calibration = spec_calibration(read_spec(adapted.out / "model"), "spec")
    crops = np.bincount(np.array(held_out.tracks))
    assert len(held_out.cannot_link) == 18
    assert calibration.impostor_pairs == sum(crops[a] * crops[b]
                                             for a, b in held_out.cannot_link)
    assert calibration.source.startswith(held_out.source)
    assert f"site calibration on {held_out.source} (not adapted on): 18 pairs of tracks seen " \
        f"at once, 162 impostor crop pairs" in adapted.second_log
    assert NOT_ON_TRAINED_FOOTAGE not in adapted.second_log


@pytest.mark.usefixtures("eagerly")
def test_a_finished_run_resumed_with_footage_to_calibrate_on_is_calibrated_again(
        adapted, trained_run, tmp_path):
    import shutil

    from reid.calibration import spec_calibration
    from reid.engine.adapt import adapt_run
    from reid.modeling.spec import read_spec

    run = shutil.copytree(adapted.out, tmp_path / "site")
    before = read_spec(run / "model")
    lines: list[str] = []
    result = adapt_run(trained_run.root, adapted.target, run, calibrate_on=adapted.held_out,
                       overrides=["train.export_litert=false"], resume=True, log=lines.append,
                       progress=False)
    assert result.rounds == 1 and f"{run / 'model'}: up to date" not in lines
    after = read_spec(run / "model")
    assert after["fingerprint"] == before["fingerprint"]  # nothing trained
    assert after["calibration_history"] == [before["calibration"]]  # the one it replaces, kept
    assert spec_calibration(after, "spec").to_json() == result.calibration.to_json()
    assert any(line.startswith(f"site calibration on {adapted.held_out.source}")
               for line in lines)


def test_crops_are_said_to_give_no_calibration(trained_run, adapted):
    from reid.engine.adapt import NOT_ON_TRAINED_FOOTAGE, no_calibration_reason
    from reid.index.target import image_target

    crops = no_calibration_reason(image_target([trained_run.data / "query"]))
    assert crops.startswith("no site calibration: crops give no impostor pairs")
    assert no_calibration_reason(adapted.target) == NOT_ON_TRAINED_FOOTAGE


def test_the_source_run_is_never_modified(adapted, trained_run):
    assert _digests(trained_run.root) == adapted.source_before


@pytest.mark.parametrize("case", ["same", "same by another path", "no tracks seen at once",
                                  "given twice"])
def test_footage_adapted_on_cannot_calibrate(case, adapted, trained_run, tmp_path, capsys):
    calibrate_on = {"same": [adapted.day1], "same by another path": [adapted.day1 / ".." / "day1"],
                    "no tracks seen at once": [tmp_path / "alone"],
                    "given twice": [adapted.day2, adapted.day2]}[case]
    if case == "no tracks seen at once":
        _footage_index(trained_run.data, "bounding_box_train", calibrate_on[0], every=20.0)
    out = tmp_path / "new"
    code = tool_main("adapt")(["--model", str(trained_run.root), "--output", str(out),
                               "--footage", str(adapted.day1), "--calibrate-on",
                               *map(str, calibrate_on)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and not out.exists()
    if case == "given twice":  # the reader's error, naming this flag
        assert err[0] == (f"error: {adapted.day2}: index given twice (also as {adapted.day2}) "
                          f"(--calibrate-on)")
    elif case == "no tracks seen at once":
        assert err[0] == (f"error: the footage of {calibrate_on[0]}: no two tracks seen at once "
                          f"in one camera, so no impostor pairs to calibrate on (--calibrate-on)")
    else:
        assert err[0].startswith(f"error: {calibrate_on[0]}: adapted on as well (60 of its 60 "
                                 f"crops); the footage adapted on cannot calibrate the model "
                                 f"trained on it")
        assert err[0].endswith("(--calibrate-on)")


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


def test_the_source_s_heads_outside_its_export_come_from_its_checkpoint(tmp_path):
    """With neck_feat before and stripe heads, the export leaves out the BNNeck and the stripe
    bottleneck: they are read from the source's checkpoint (a training run's, with its own
    classifiers, which are left out), never started fresh; an adapted run's checkpoint (the
    carried weights) loads the same way."""
    from tiny_model import tiny_config

    from reid.engine.adapt import CLASSIFIERS, _build, carried_weights, load_source_heads
    from reid.engine.checkpoint import save_checkpoint

    cfg = tiny_config(tmp_path, model__neck_feat="before", model__parts=2)
    source = _build(cfg, num_classes=7)
    rng = np.random.default_rng(0)
    saved = [rng.normal(size=tuple(w.shape)).astype(np.float32)
             for w in source.training_model.weights]
    save_checkpoint(tmp_path / "checkpoints", 3, {"model": saved}, {})
    target = _build(cfg, num_classes=1)
    classifiers = {id(w): keras_value(w) for layer in target.training_model.layers
                   if layer.name in CLASSIFIERS for w in layer.weights}
    exported = {id(w) for w in target.export_model().weights}
    assert load_source_heads(tmp_path / "checkpoints", target) is not None
    outside = 0
    for variable, array in zip(target.training_model.weights, saved):
        if id(variable) in classifiers:
            np.testing.assert_array_equal(keras_value(variable), classifiers[id(variable)])
        else:
            np.testing.assert_array_equal(keras_value(variable), array)
            outside += id(variable) not in exported
    assert outside > 0  # the necks outside the export were read, not left fresh
    # An adapted run's checkpoint: the carried weights only.
    carried = [rng.normal(size=tuple(w.shape)).astype(np.float32) for w in carried_weights(target)]
    save_checkpoint(tmp_path / "adapted", 1, {"model": carried}, {})
    fresh = _build(cfg, num_classes=1)
    load_source_heads(tmp_path / "adapted", fresh)
    for variable, array in zip(carried_weights(fresh), carried):
        np.testing.assert_array_equal(keras_value(variable), array)
    assert load_source_heads(tmp_path / "none", fresh) is None


def keras_value(variable) -> np.ndarray:
    import keras

    return np.array(keras.ops.convert_to_numpy(variable))


def test_each_round_ends_with_the_target_s_batch_norm_statistics(adapted):
    """After a round's training, the batch norms hold the target crops' statistics again (AdaBN
    once more), not the last training batches': setting them a second time, from the same
    batches, changes nothing."""
    from reid.config import load_saved_config
    from reid.data.pipeline import eval_dataset
    from reid.engine.adapt import adapt_batchnorm, batch_norm_layers
    from reid.modeling import Embedder

    cfg = load_saved_config(adapted.out / "config.yaml")
    embedder = Embedder.load(adapted.out / "model", "keras")
    model = embedder.keras_model
    paths = list(adapted.target.paths)
    order = np.random.default_rng(cfg.data.seed).permutation(len(paths))
    height, width = embedder.input_size
    batches = [embedder.preprocess(batch.numpy()) for batch in
               eval_dataset([paths[i] for i in order], height, width, cfg.eval.batch_size)]
    before = [(keras_value(bn.moving_mean), keras_value(bn.moving_variance))
              for bn in batch_norm_layers(model)]
    assert adapt_batchnorm(model, batches) == len(before)
    for (mean, variance), bn in zip(before, batch_norm_layers(model)):
        np.testing.assert_allclose(keras_value(bn.moving_mean), mean, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(keras_value(bn.moving_variance), variance, rtol=1e-3,
                                   atol=1e-5)
