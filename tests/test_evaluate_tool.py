"""tools/evaluate.py end to end on a tiny synthetic dataset, checked against a brute-force loop."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from reid.config import ModelConfig
from reid.synthetic.crops import generate_dataset
from reid.modeling import build_reid_model, export_embedder
from reference import brute_force_map_rank1
from tool_runner import tool_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluate")
    data = base / "data"
    generate_dataset(data, ids=8, cameras=2, images_per_id=6, seed=2, height=64, width=32)
    # Evaluation reads the query and gallery only: a folder without a training split will do.
    shutil.rmtree(data / "bounding_box_train")
    models = build_reid_model(ModelConfig(alpha=0.35, weights=None), (64, 32, 3), num_classes=4)
    export_embedder(models.embedding_model, base / "model")
    return base / "model", data


evaluate = tool_main("evaluate")


def run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


@pytest.mark.slow
def test_evaluate_tool_end_to_end(model_and_data, tmp_path):
    model, data = model_and_data
    out, feats = tmp_path / "metrics.json", tmp_path / "feats.npz"
    result = run("--model", str(model), "--data-root", str(data), "--rerank", "--json", str(out),
                 "--save-features", str(feats), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "re-ranked" in result.stdout and "mAP" in result.stdout
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"mAP", "rank1", "rank5", "rank10", "mINP", "num_query",
                            "num_gallery", "rerank", "verification"}
    assert "verification (" in result.stdout and "open set" in result.stdout
    saved = np.load(feats)
    genuine = sum(1 for qp, qc in zip(saved["q_pids"], saved["q_camids"])
                  for gp, gc in zip(saved["g_pids"], saved["g_camids"])
                  if qp == gp and qc != gc)
    verification = metrics["verification"]
    assert verification["genuine_pairs"] == genuine
    assert verification["genuine_pairs"] + verification["impostor_pairs"] == sum(
        1 for qp, qc in zip(saved["q_pids"], saved["q_camids"])
        for gp, gc in zip(saved["g_pids"], saved["g_camids"]) if not (qp == gp and qc == gc))
    assert 0.0 <= verification["eer"] <= 1.0
    roc = tmp_path / "roc.png"
    assert evaluate(["--features", str(feats), "--save-roc", str(roc)]) == 0
    assert cv2.imread(str(roc)).shape == (480, 640, 3)
    assert metrics["num_query"] == len(saved["query"]) == len(list((data / "query").glob("*.jpg")))
    assert metrics["num_gallery"] == len(list((data / "bounding_box_test").glob("*.jpg")))
    want_map, want_rank1 = brute_force_map_rank1(saved["query"], saved["gallery"], saved["q_pids"],
                                                 saved["g_pids"], saved["q_camids"],
                                                 saved["g_camids"])
    assert metrics["mAP"] == pytest.approx(want_map, abs=1e-6)
    assert metrics["rank1"] == pytest.approx(want_rank1, abs=1e-6)

    # The same features scored from the .npz give the same numbers (in-process from here on).
    assert evaluate(["--features", str(feats), "--json", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["mAP"] == pytest.approx(metrics["mAP"])


def test_evaluate_tool_errors_are_one_line(tmp_path, capsys):
    def error_of(*args) -> str:
        assert evaluate(list(args)) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    assert "missing.npz" in error_of("--features", str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, query=np.zeros((2, 3)))
    assert "missing arrays gallery" in error_of("--features", str(bad))
    text = tmp_path / "notes.txt"
    text.write_text("not features")
    assert error_of("--features", str(text)).startswith(
        f"error: {text}: cannot read features: not an .npz archive")
    single = tmp_path / "one.npy"
    np.save(single, np.zeros(3))
    assert error_of("--features", str(single)).startswith(
        f"error: {single}: cannot read features: a single array")
    assert "--data-root" in error_of("--model", str(tmp_path))
    assert error_of("--features", str(bad), "--save-roc", str(tmp_path / "roc.gif")) == (
        f"error: ROC picture {tmp_path / 'roc.gif'}: expected a .png or .jpg file name "
        f"(--save-roc)")
    # An override of a section evaluation does not read would otherwise do nothing, silently.
    assert error_of("--features", str(bad), "--set", "train.epochs=3") == (
        "error: override 'train.epochs=3': evaluation of saved features reads only the 'eval' "
        "section of a config")
    assert error_of("--model", str(tmp_path), "--data-root", str(tmp_path), "--set",
                    "index.type=hnsw") == (
        "error: override 'index.type=hnsw': evaluation reads only the 'data' and 'eval' "
        "sections of a config")


def test_evaluate_tool_flags_collapsed_features(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pids, cams = np.repeat(np.arange(4), 2), np.tile([0, 1], 4)
    one = rng.normal(size=16)
    features = tmp_path / "collapsed.npz"
    np.savez(features, query=one + 1e-6 * rng.normal(size=(8, 16)),
             gallery=one + 1e-6 * rng.normal(size=(8, 16)), q_pids=pids, g_pids=pids,
             q_camids=cams, g_camids=1 - cams)
    assert evaluate(["--features", str(features)]) == 0
    assert capsys.readouterr().err.startswith(
        "warning: the embeddings of the query and gallery images have collapsed")
    spread = tmp_path / "spread.npz"
    np.savez(spread, query=rng.normal(size=(8, 16)), gallery=rng.normal(size=(8, 16)),
             q_pids=pids, g_pids=pids, q_camids=cams, g_camids=1 - cams)
    assert evaluate(["--features", str(spread)]) == 0
    assert capsys.readouterr().err == ""
