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

from reid.data import load_dataset
from reid.data.pipeline import BadImageError, eval_dataset
from reid.data.preprocessing import normalize_pixels
from reid.data.records import DatasetError, ImageRecord, make_dataset
from reid.engine.checkpoint import latest_checkpoint, load_checkpoint
from reid.engine.evaluator import evaluate_embedder
from reid.engine.trainer import (Trainer, TrainingError, format_duration, prepare_run_dir,
                                 time_left)
from reid.modeling import Embedder, ModelError
from reid.modeling.reid_model import NECK_LAYER
from reid.run_layout import LATEST, RunLayout
from tiny_model import tiny_config
from tool_runner import tool_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
def test_a_crash_in_validation_keeps_the_epoch_and_a_resumed_run_ends_as_an_uninterrupted_one(
        trained_run, tmp_path, monkeypatch):
    # The shared run trained its 2 epochs straight through. A copy is put back to its epoch-1
    # checkpoint, as a run killed then leaves it, and resumed; validation crashes after epoch 2.
    cfg, dataset = trained_run.config, trained_run.dataset()
    layout = RunLayout(trained_run.copy(tmp_path / "r"))
    (layout.checkpoints / LATEST).write_text("epoch-0001\n")
    shutil.rmtree(layout.model)
    lines: list[str] = []
    trainer = Trainer(cfg, dataset, prepare_run_dir(layout.root, cfg, True), progress=False,
                      log=lines.append)

    def crash(writer):
        raise RuntimeError("validation failed")

    monkeypatch.setattr(trainer, "validate", crash)
    with pytest.raises(RuntimeError, match="validation failed"):
        trainer.fit(resume=True)
    monkeypatch.undo()
    assert lines[:2] == [f"resumed {layout.root} after epoch 1", "epoch 2/2"]
    assert not layout.model.exists()  # a run that has not finished exports nothing
    # Epoch 2's training survived the crash: its checkpoint is the latest, and holds the
    # weights the trainer ended with.
    again, again_state = load_checkpoint(latest_checkpoint(layout.checkpoints))
    assert again_state["epoch"] == 2
    for a, b in zip(weights_of(trainer), again["model"], strict=True):
        np.testing.assert_array_equal(a, b)
    # Epoch 2 trained again from epoch 1's checkpoint is the uninterrupted run's epoch 2, bit
    # for bit: weights, optimizer and center-loss state, and the losses on the way.
    straight, straight_state = load_checkpoint(latest_checkpoint(trained_run.root /
                                                                 "checkpoints"))
    assert straight_state["epoch"] == 2
    assert sorted(again) == sorted(straight) == ["centers", "model", "optimizer"]
    for group, arrays in straight.items():
        for a, b in zip(arrays, again[group], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=group)
    terms = ("loss", "ce", "triplet", "center", "lr")
    assert [[h[t] for t in terms] for h in again_state["history"]] == [
        [h[t] for t in terms] for h in straight_state["history"]]
    # The comparison can fail: epoch 1's weights are not epoch 2's.
    first, _ = load_checkpoint(trained_run.root / "checkpoints" / "epoch-0001")
    assert any(not np.array_equal(a, b) for a, b in zip(first["model"], straight["model"]))


@pytest.mark.slow
def test_export_is_loadable_and_matches_the_trained_model(trained_run, trained_model, tmp_path):
    cfg = trained_run.config
    embedder = Embedder.load(trained_run.model, runtime="keras")
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 64, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(embedder.embed(pixels), np.asarray(
        trained_model.models.embedding_model(normalize_pixels(pixels))), atol=1e-5)
    assert embedder.spec["config_name"] == "tiny"
    # The last epoch's validation describes the exported model (the demo shows it as such).
    again = evaluate_embedder(embedder, trained_model.dataset, cfg.eval, progress=False)
    assert trained_run.final_metrics["mAP"] == pytest.approx(again["mAP"], abs=1e-4)
    assert trained_run.final_metrics["rank1"] == pytest.approx(again["rank1"], abs=1e-4)
    assert trained_run.final_metrics["num_query"] == again["num_query"]
    # A run that was already complete trains nothing and so has no validation of its own.
    run = trained_run.copy(tmp_path / "r")
    rerun = Trainer(cfg, trained_model.dataset, prepare_run_dir(run, cfg, True),
                    progress=False, log=lambda _: None).fit(resume=True)
    assert rerun.epochs == 2 and len(rerun.history) == 2 and rerun.final_metrics is None
    assert (run / "config.yaml").exists()
    assert list((run / "logs").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_frozen_backbone_stays_fixed_then_trains_and_a_collapse_is_warned_about(tiny_data,
                                                                                 tmp_path):
    cfg = tiny_config(tiny_data, model__freeze_backbone_epochs=1, train__epochs=2,
                      train__steps_per_epoch=2)
    lines: list[str] = []
    trainer = Trainer(cfg, load_dataset(cfg.data), prepare_run_dir(tmp_path / "r", cfg, False),
                      progress=False, log=lines.append)
    # Training normalises with batch statistics; validation with these, which put every
    # image at about the same point: what a collapsed run gives.
    neck = trainer.models.embedding_model.get_layer(NECK_LAYER)
    neck.moving_mean.assign(np.full(neck.moving_mean.shape, -1e4, np.float32))
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
    # The last epoch's validation saw the collapse and said so.
    assert trainer.history[-1]["val"]["embedding_spread"] < 1e-4
    assert any(line.startswith("  warning: the embeddings of the validation images have "
                               "collapsed") for line in lines)


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


@pytest.mark.slow
def test_finished_run_resumed_with_neck_feat_before_re_exports_the_same_weights(
        trained_run, tmp_path, monkeypatch):
    # model.neck_feat takes no part in training, so a finished run can be re-exported with the
    # other side of the neck without training again (how bench/accuracy.py re-scores a run).
    run = trained_run.copy(tmp_path / "run")
    joined_dim = Embedder.load(trained_run.model, runtime="keras").embedding_dim
    monkeypatch.setattr(Trainer, "export_litert", lambda self, model_dir: None)  # tested above
    before_cfg = trained_run.config_with(model__neck_feat="before")
    trainer = Trainer(before_cfg, trained_run.dataset(),
                      prepare_run_dir(run, before_cfg, resume=True), progress=False,
                      log=lambda _: None)
    result = trainer.fit(resume=True)
    assert result.epochs == 2 and len(result.history) == 2  # nothing trained again

    pixels = np.random.default_rng(0).uniform(0, 255, (3, 64, 32, 3)).astype(np.float32)
    features = trainer.models.training_model(normalize_pixels(pixels),
                                             training=False)["features"].numpy()
    want = features / np.linalg.norm(features, axis=1, keepdims=True)
    np.testing.assert_allclose(Embedder.load(result.model_dir, runtime="keras").embed(pixels),
                               want, rtol=1e-4, atol=1e-5)
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
def test_training_ends_with_a_litert_export_that_serves(trained_run, trained_model):
    served = Embedder.load(trained_run.model)
    assert served.runtime == "litert"
    assert served.fingerprint == Embedder.load(trained_run.model, runtime="keras").fingerprint
    assert any(line.startswith(f"litert: {trained_run.model / 'embedder.tflite'}")
               for line in trained_run.log)
    images = np.concatenate([np.asarray(b) for b in eval_dataset(
        [r.path for r in trained_model.dataset.query], 64, 32, 64)])
    np.testing.assert_allclose(served.embed(images), trained_model.models.embedding_model(
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
