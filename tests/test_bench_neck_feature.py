"""bench/neck_feature.py: its training-identity split, and a run scored four ways end to end."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from reid.config import config_from_dict
from reid.data import load_dataset
from reid.data.records import ImageRecord
from reid.data.pipeline import eval_dataset
from reid.data.preprocessing import normalize_pixels
from reid.synthetic.crops import generate_dataset
from reid.engine.trainer import Trainer, prepare_run_dir, training_dataset
from reid.evaluation.verification import equal_error_rate, pair_scores
from reid.modeling.reid_model import NECK_LAYER, PART_NECK_LAYER
from reference import brute_force_map_rank1
from tool_runner import load_bench

def test_training_identity_split_takes_the_first_image_of_each_identity_and_camera():
    bench = load_bench("neck_feature")
    recs = [ImageRecord(p, pid, cam) for p, pid, cam in [
        ("b/0001_c1_2.jpg", 0, 1), ("a/0001_c1_1.jpg", 0, 1), ("a/0001_c2_1.jpg", 0, 2),
        ("c/0002_c1_1.jpg", 1, 1), ("a/0002_c2_9.jpg", 1, 2), ("b/0002_c2_3.jpg", 1, 2)]]
    queries, gallery = bench.training_identity_split(recs)
    assert [r.path for r in queries] == ["a/0001_c1_1.jpg", "a/0001_c2_1.jpg",
                                        "a/0002_c2_9.jpg", "c/0002_c1_1.jpg"]
    assert sorted(r.path for r in gallery) == ["b/0001_c1_2.jpg", "b/0002_c2_3.jpg"]


def neck_inputs(models, records, cfg) -> list[np.ndarray]:
    """What the global neck (and the stripes' neck, when there are stripes) normalise, at
    inference, on ``records``: read off the network, the rest is done by hand below."""
    paths = [r.path for r in records]
    images = np.concatenate(list(eval_dataset(paths, cfg.data.height, cfg.data.width, 64)
                                 .as_numpy_iterator()))
    model = models.training_model
    necks = [NECK_LAYER] + ([PART_NECK_LAYER] if cfg.model.parts else [])
    probe = keras.Model(model.input, [model.get_layer(n).input for n in necks])
    outputs = probe(normalize_pixels(images), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(o, np.float64) for o in outputs]


def neck_by_hand(neck, x: np.ndarray) -> np.ndarray:
    """A BNNeck's inference formula (no shift: ``center=False``)."""
    mean, var, gamma = (np.asarray(w, np.float64)
                        for w in (neck.moving_mean, neck.moving_variance, neck.gamma))
    beta = 0.0 if neck.beta is None else np.asarray(neck.beta, np.float64)
    return (x - mean) / np.sqrt(var + neck.epsilon) * gamma + beta


def numpy_embeddings(models, records, cfg):
    """Both sides of the neck, computed here: the global pre-neck feature, and that feature put
    through the BNNeck by hand, joined with the stripes' necks when there are stripes (what
    ``neck_feat: after`` retrieves with), each L2-normalised."""
    features = neck_inputs(models, records, cfg)
    model = models.training_model
    after = [neck_by_hand(model.get_layer(NECK_LAYER), features[0])]
    if cfg.model.parts:
        after.append(neck_by_hand(model.get_layer(PART_NECK_LAYER), features[1]))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    mean = np.asarray(model.get_layer(NECK_LAYER).moving_mean, np.float64)
    return {"before": unit(features[0]), "after": unit(np.concatenate(after, axis=1)),
            "centered": unit(features[0] - mean)}


def standardise_neck(neck, raw: np.ndarray, rng: np.random.Generator) -> None:
    """Give a neck the statistics a trained one would have, with some spread of scales."""
    neck.moving_mean.assign(raw.mean(axis=0).astype(np.float32))
    neck.moving_variance.assign((raw.var(axis=0) * rng.uniform(0.5, 2.0, raw.shape[1]))
                                .astype(np.float32))
    neck.gamma.assign(rng.uniform(0.5, 2.0, raw.shape[1]).astype(np.float32))


@pytest.mark.parametrize("parts", [0, 2])
def test_a_run_is_scored_four_ways(tmp_path, capsys, parts):
    bench = load_bench("neck_feature")
    generate_dataset(tmp_path / "data", ids=14, cameras=2, images_per_id=6, seed=2, height=64,
                     width=32)
    cfg = config_from_dict({
        "data": {"root": str(tmp_path / "data"), "height": 64, "width": 32, "ids_per_batch": 4,
                 "images_per_id": 2, "pad": 2, "val_ids": 3},
        "model": {"alpha": 0.35, "weights": None, "parts": parts, "part_dim": 8},
        "train": {"epochs": 1, "warmup_epochs": 0, "seed": 1},
        "eval": {"batch_size": 32}}, name="tiny")
    run = prepare_run_dir(tmp_path / "run", cfg, resume=False)
    full = load_dataset(cfg.data)
    dataset = training_dataset(full, cfg)  # 3 training identities held out for validation
    trainer = Trainer(cfg, dataset, run, progress=False)
    # A few training steps collapse a tiny network's inference features (its batch norms'
    # moving statistics have barely moved), which makes every ranking a tie. Untrained weights
    # with necks that standardise their features, as trained necks do, give two embeddings
    # that rank differently, which is all this test needs.
    model = trainer.models.training_model
    raw = neck_inputs(trainer.models, dataset.train, cfg)
    rng = np.random.default_rng(0)
    standardise_neck(model.get_layer(NECK_LAYER), raw[0], rng)
    if parts:
        standardise_neck(model.get_layer(PART_NECK_LAYER), raw[1], rng)
    trainer.save()
    capsys.readouterr()
    assert bench.main(["--run", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out

    splits = {"test": (full.query, full.gallery), "validation": (dataset.query, dataset.gallery)}
    want, eers = {}, {}
    for split, (query, gallery) in splits.items():
        q, g = (numpy_embeddings(trainer.models, recs, cfg) for recs in (query, gallery))
        ids = ([r.pid for r in query], [r.pid for r in gallery],
               [r.camid for r in query], [r.camid for r in gallery])
        for mode in ("after", "before", "centered"):
            want[f"{mode}, {split}"] = brute_force_map_rank1(q[mode], g[mode], *ids)
            eers[f"{mode}, {split}"] = equal_error_rate(*pair_scores(q[mode], g[mode], *ids))[0]
    for name, (m_ap, rank1) in want.items():
        ranking, separation = [line for line in out.splitlines() if line.startswith(name)]
        shown = [float(v) for v in re.findall(r"\d\.\d{4}", ranking)]
        assert shown[:2] == pytest.approx([m_ap, rank1], abs=6e-5), name
        assert float(separation.split()[2]) == pytest.approx(eers[name], abs=6e-5), name
    # The sides really differ here, so a swap of two would fail above.
    assert len({round(want[f"{m}, test"][0], 3) for m in ("after", "before", "centered")}) == 3
    assert re.search(r"whitened, validation +\d\.\d{4}", out)
    assert "highest validation mAP among the exportable features: " in out


def test_a_folder_without_checkpoints_is_a_one_line_error(tmp_path, capsys):
    bench = load_bench("neck_feature")
    cfg = config_from_dict({"data": {"root": str(tmp_path)}}, name="empty")
    run = prepare_run_dir(tmp_path / "run", cfg, resume=False)
    assert bench.main(["--run", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {run}/checkpoints: no checkpoint to score"


def test_pca_whitening_gives_identity_covariance_on_its_fit_set():
    bench = load_bench("neck_feature")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 20)) @ rng.normal(size=(20, 20)) + 3.0
    mean, projection = bench.pca_whitening(features, dims=8)
    whitened = (features - mean) @ projection
    assert projection.shape == (20, 8)
    np.testing.assert_allclose(whitened.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(8), atol=1e-8)
    # The 8 directions are the leading principal ones (numpy's eigenvectors of the covariance).
    values, vectors = np.linalg.eigh(np.cov(features, rowvar=False))
    leading = vectors[:, np.argsort(values)[::-1][:8]]
    directions = projection / np.linalg.norm(projection, axis=0)
    np.testing.assert_allclose(np.abs(np.sum(directions * leading, axis=0)), 1, atol=1e-6)


def test_d_prime_by_hand():
    bench = load_bench("neck_feature")
    # Means 0.8 and 0.2, variances 0.01 and 0.03: (0.8 - 0.2) / sqrt(0.02).
    genuine = np.array([0.7, 0.9])
    impostor = np.array(0.2 + np.sqrt(0.03) * np.array([-1.0, 1.0]))
    assert bench.d_prime(genuine, impostor) == pytest.approx(0.6 / np.sqrt(0.02))
