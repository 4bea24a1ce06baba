"""Training engine: checks before work starts, exact resume, and that training really learns."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from reid.config import config_from_dict
from reid.data import load_dataset
from reid.data.pipeline import BadImageError, eval_dataset
from reid.data.preprocessing import normalize_pixels
from reid.data.records import DatasetError, ImageRecord, make_dataset
from reid.synthetic.crops import generate_dataset
from reid.engine.evaluator import evaluate_embedder
from reid.engine.trainer import (Trainer, TrainingError, format_duration, prepare_run_dir,
                                 time_left)
from reid.modeling import Embedder, ModelError
from reid.modeling.reid_model import NECK_LAYER
from tool_runner import tool_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(root, **overrides):
    """A config small enough to train in seconds: alpha 0.35 at 64x32, 4 ids x 2 images."""
    raw = {
        "data": {"root": str(root), "height": 64, "width": 32, "ids_per_batch": 4,
                 "images_per_id": 2, "pad": 2},
        "model": {"alpha": 0.35, "weights": None},
        "train": {"epochs": 2, "steps_per_epoch": 3, "warmup_epochs": 1, "lr": 1e-3, "seed": 3,
                  "export_litert": False},
        "eval": {"batch_size": 32},
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    return config_from_dict(raw, name="tiny")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, ids=12, cameras=2, images_per_id=6, seed=1, height=64, width=32)
    return root


def records(n_ids, per_id):
    return [ImageRecord(f"/nowhere/{pid}_{i}.jpg", pid, 1) for pid in range(n_ids)
            for i in range(per_id)]


def test_fewer_than_two_identities_is_refused(tmp_path):
    dataset = make_dataset("one", str(tmp_path), records(1, 8), [], [])
    with pytest.raises(DatasetError, match="at least 2 identities, found 1"):
        Trainer(tiny_config(tmp_path), dataset, tmp_path / "run")


def test_k_larger_than_every_identity_without_replacement_is_refused(tmp_path):
    dataset = make_dataset("few", str(tmp_path), records(6, 3), [], [])
    cfg = tiny_config(tmp_path, data__images_per_id=4, data__sample_with_replacement=False)
    with pytest.raises(DatasetError, match="images_per_id is 4 but no identity has more than 3"):
        Trainer(cfg, dataset, tmp_path / "run")


def test_weights_that_do_not_fit_are_refused(tiny_data, tmp_path):
    bogus = tmp_path / "other.weights.h5"
    bogus.write_bytes(b"not an h5 file")
    cfg = tiny_config(tiny_data, model__weights=str(bogus))
    with pytest.raises(ModelError, match="other.weights.h5"):
        Trainer(cfg, load_dataset(cfg.data), tmp_path / "run")


def test_existing_run_is_not_overwritten(tmp_path):
    cfg = tiny_config(tmp_path)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "latest").write_text("epoch-0001\n")
    with pytest.raises(TrainingError, match="already holds a training run; resume it or "
                                            "choose another run folder"):
        prepare_run_dir(tmp_path / "run", cfg, resume=False)


def run_tool(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_cli_errors_are_one_line(tmp_path, capsys):
    # One run in a fresh process (the real command), the rest in-process.
    missing = tmp_path / "no-such-dataset"
    result = run_tool("--config", str(ROOT / "configs" / "synthetic.yaml"), "--output",
                      str(tmp_path / "run"), "--set", f"data.root={missing}")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(missing) in last
    code = tool_main("train")(["--config", str(ROOT / "configs" / "synthetic.yaml"), "--output",
                               str(tmp_path / "run"), "--set", "train.epochs=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: ") and "train.epochs: expected a value >= 1" in err[0]
    assert not (tmp_path / "run").exists()
    # The library names the values; the tool's line names the flags its user typed.
    assert tool_main("train")(["--resume"]) == 1
    assert capsys.readouterr().err == ("error: --resume needs the run folder, or the config "
                                       "whose run it is (--output, --config)\n")


def weights_of(trainer):
    return [np.array(w) for w in trainer.models.training_model.weights]


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, loss__center_weight=0.001, train__epochs=3)
    dataset = load_dataset(cfg.data)

    straight = Trainer(cfg, dataset, prepare_run_dir(tmp_path / "a", cfg, False), progress=False)
    straight.fit()

    first = Trainer(cfg, dataset, prepare_run_dir(tmp_path / "b", cfg, False), progress=False)
    first.fit(stop_after=2)  # "killed" after epoch 2
    assert first.epoch == 2
    assert not (tmp_path / "b" / "model").exists()
    resumed = Trainer(cfg, dataset, prepare_run_dir(tmp_path / "b", cfg, True), progress=False)
    result = resumed.fit(resume=True)
    assert result.epochs == 3

    for a, b in zip(weights_of(straight), weights_of(resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    np.testing.assert_allclose([h["loss"] for h in result.history],
                               [h["loss"] for h in straight.history], rtol=1e-4)
    # A different seed really gives different weights: the comparison above can fail.
    other = tiny_config(tiny_data, loss__center_weight=0.001, train__epochs=1, train__seed=4)
    different = Trainer(other, dataset, prepare_run_dir(tmp_path / "c", other, False),
                        progress=False)
    assert any(not np.allclose(a, b) for a, b in zip(weights_of(first), weights_of(different)))


@pytest.mark.slow
def test_export_is_loadable_and_matches_the_trained_model(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, train__epochs=1)
    trainer = Trainer(cfg, load_dataset(cfg.data), prepare_run_dir(tmp_path / "r", cfg, False),
                      progress=False)
    result = trainer.fit()
    embedder = Embedder.load(result.model_dir)
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 64, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(embedder.embed(pixels), np.asarray(
        trainer.models.embedding_model(normalize_pixels(pixels))), atol=1e-5)
    assert embedder.spec["config_name"] == "tiny"
    # The last epoch's validation describes the exported model (the demo shows it as such).
    again = evaluate_embedder(embedder, trainer.dataset, cfg.eval, progress=False)
    assert result.final_metrics["mAP"] == pytest.approx(again["mAP"], abs=1e-4)
    assert result.final_metrics["rank1"] == pytest.approx(again["rank1"], abs=1e-4)
    # A run that was already complete trains nothing and so has no validation of its own.
    rerun = Trainer(cfg, trainer.dataset, prepare_run_dir(tmp_path / "r", cfg, True),
                    progress=False).fit(resume=True)
    assert rerun.epochs == 1 and rerun.final_metrics is None
    assert (tmp_path / "r" / "config.yaml").exists()
    assert list((tmp_path / "r" / "logs").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_frozen_backbone_stays_fixed_then_trains(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, model__freeze_backbone_epochs=1, train__epochs=2,
                      train__steps_per_epoch=2)
    trainer = Trainer(cfg, load_dataset(cfg.data), prepare_run_dir(tmp_path / "r", cfg, False),
                      progress=False)
    backbone = trainer.models.backbone
    kernels = [v for v in backbone.trainable_variables if "kernel" in v.path]
    start = [np.array(v) for v in kernels]
    head = trainer.models.training_model.get_layer("classifier").kernel
    head_start = np.array(head)
    trainer.fit(stop_after=1)
    assert all(np.array_equal(a, np.array(v)) for a, v in zip(start, kernels))
    assert not np.array_equal(head_start, np.array(head))  # the head did train
    trainer.fit()
    assert backbone.trainable
    assert any(not np.array_equal(a, np.array(v)) for a, v in zip(start, kernels))


def test_resume_with_another_config_is_refused(tmp_path):
    cfg = tiny_config(tmp_path)
    run = prepare_run_dir(tmp_path / "run", cfg, resume=False)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest").write_text("epoch-0001\n")
    longer = tiny_config(tmp_path, train__epochs=9)
    assert prepare_run_dir(run, longer, resume=True) == run  # more epochs: allowed
    wider = tiny_config(tmp_path, model__alpha=0.5)
    with pytest.raises(TrainingError, match=r"model\.alpha changed"):
        prepare_run_dir(run, wider, resume=True)


def test_finished_run_resumed_with_neck_feat_before_re_exports_the_same_weights(tiny_data,
                                                                                tmp_path):
    # model.neck_feat takes no part in training, so a finished run can be re-exported with the
    # other side of the neck without training again (how bench/accuracy.py re-scores a run).
    cfg = tiny_config(tiny_data, train__epochs=1, model__parts=2, model__part_dim=8)
    dataset = load_dataset(cfg.data)
    run = prepare_run_dir(tmp_path / "run", cfg, resume=False)
    first = Trainer(cfg, dataset, run, progress=False).fit()
    joined_dim = Embedder.load(first.model_dir).embedding_dim
    before_cfg = tiny_config(tiny_data, train__epochs=1, model__parts=2, model__part_dim=8,
                             model__neck_feat="before")
    trainer = Trainer(before_cfg, dataset, prepare_run_dir(run, before_cfg, resume=True),
                      progress=False)
    result = trainer.fit(resume=True)
    assert result.epochs == 1 and len(result.history) == 1  # nothing trained again

    pixels = np.random.default_rng(0).uniform(0, 255, (3, 64, 32, 3)).astype(np.float32)
    features = trainer.models.training_model(normalize_pixels(pixels),
                                             training=False)["features"].numpy()
    want = features / np.linalg.norm(features, axis=1, keepdims=True)
    np.testing.assert_allclose(Embedder.load(result.model_dir).embed(pixels), want,
                               rtol=1e-4, atol=1e-5)
    assert joined_dim == features.shape[1] + 2 * 8  # the first export joined the stripes


def test_time_left_leaves_out_the_tracing_epoch_once_another_is_timed():
    assert time_left([], 5) is None
    assert time_left([30.0], 4) == 120.0  # only the first epoch is known: use it
    assert time_left([30.0, 10.0, 12.0], 3) == 33.0  # 3 x mean(10, 12)
    assert time_left([30.0, 10.0], 0) == 0.0


def test_format_duration_by_hand():
    assert format_duration(0.4) == "0 s"
    assert format_duration(59.6) == "1 min 0 s"
    assert format_duration(75) == "1 min 15 s"
    assert format_duration(3 * 3600 + 125) == "3 h 2 min"


def _copy_with_bad_gallery_image(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst)
    bad = dst / "bounding_box_test" / "0099_c1s1_000001_00.jpg"
    bad.write_bytes(b"not a jpeg")
    return bad


def test_a_warm_up_longer_than_the_run_is_warned_about(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, train__epochs=2, train__warmup_epochs=3)
    with pytest.warns(UserWarning, match="train.warmup_epochs is 3 but train.epochs is 2: the "
                                         "learning rate never reaches train.lr"):
        Trainer(cfg, load_dataset(cfg.data), prepare_run_dir(tmp_path / "r", cfg, False),
                progress=False)


def test_a_bad_gallery_image_is_refused_before_the_first_step(tiny_data, tmp_path):
    bad = _copy_with_bad_gallery_image(tiny_data, tmp_path / "data")
    cfg = tiny_config(tmp_path / "data")
    with pytest.raises(BadImageError, match=re.escape(str(bad))):
        Trainer(cfg, load_dataset(cfg.data), prepare_run_dir(tmp_path / "r", cfg, False),
                progress=False)
    skipping = tiny_config(tmp_path / "data", data__skip_bad_images=True)
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        trainer = Trainer(skipping, load_dataset(skipping.data),
                          prepare_run_dir(tmp_path / "s", skipping, False), progress=False)
    assert str(bad) not in {r.path for r in trainer.dataset.gallery}
    assert len(trainer.dataset.gallery) == len(load_dataset(skipping.data).gallery) - 1


@pytest.mark.slow
def test_a_crash_in_validation_keeps_the_epochs_checkpoint(tiny_data, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_data, train__epochs=2, train__eval_every=1)
    dataset = load_dataset(cfg.data)
    trainer = Trainer(cfg, dataset, prepare_run_dir(tmp_path / "r", cfg, False), progress=False)

    def crash(writer):
        raise RuntimeError("validation failed")

    monkeypatch.setattr(trainer, "validate", crash)
    with pytest.raises(RuntimeError, match="validation failed"):
        trainer.fit()
    monkeypatch.undo()
    resumed = Trainer(cfg, dataset, prepare_run_dir(tmp_path / "r", cfg, True), progress=False)
    assert resumed.restore() and resumed.epoch == 1  # epoch 1's training survived
    for a, b in zip(weights_of(trainer), weights_of(resumed), strict=True):
        np.testing.assert_allclose(a, b)


@pytest.mark.slow
def test_validation_warns_when_the_embeddings_collapse(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, train__epochs=1)
    lines: list[str] = []
    trainer = Trainer(cfg, load_dataset(cfg.data), prepare_run_dir(tmp_path / "r", cfg, False),
                      progress=False, log=lines.append)
    # Training normalises with batch statistics; validation with these, which put every
    # image at about the same point: what a collapsed run gives.
    neck = trainer.models.embedding_model.get_layer(NECK_LAYER)
    neck.moving_mean.assign(np.full(neck.moving_mean.shape, -1e4, np.float32))
    trainer.fit()
    assert trainer.history[-1]["val"]["embedding_spread"] < 1e-4
    assert any(line.startswith("  warning: the embeddings of the validation images have "
                               "collapsed") for line in lines)


@pytest.mark.slow
def test_training_ends_with_a_litert_export_that_serves(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, train__epochs=1, train__export_litert=True)
    lines: list[str] = []
    trainer = Trainer(cfg, load_dataset(cfg.data), prepare_run_dir(tmp_path / "r", cfg, False),
                      progress=False, log=lines.append)
    result = trainer.fit()
    served = Embedder.load(result.model_dir)
    assert served.runtime == "litert"
    assert served.fingerprint == Embedder.load(result.model_dir, runtime="keras").fingerprint
    assert any(line.startswith(f"litert: {result.model_dir / 'embedder.tflite'}")
               for line in lines)
    images = np.concatenate([np.asarray(b) for b in
                             eval_dataset([r.path for r in trainer.dataset.query], 64, 32, 64)])
    np.testing.assert_allclose(served.embed(images), trainer.models.embedding_model(
        normalize_pixels(images)).numpy(), atol=1e-5)


def test_a_failed_litert_conversion_is_a_warning_not_a_failed_run(tiny_data, tmp_path,
                                                                  monkeypatch):
    from reid.modeling import convert

    class ConverterError(Exception):  # what tf.lite raises: not a ValueError or RuntimeError
        pass

    def fails(*args, **kwargs):
        raise ConverterError("op not supported\nmore detail")

    monkeypatch.setattr(convert, "convert_with_images", fails)
    cfg = tiny_config(tiny_data)
    lines: list[str] = []
    trainer = Trainer(cfg, load_dataset(cfg.data), prepare_run_dir(tmp_path / "r", cfg, False),
                      progress=False, log=lines.append)
    trainer.export_litert(tmp_path / "r" / "model")
    assert lines == ["warning: no LiteRT export (ConverterError: op not supported); the Keras "
                     "model serves"]
