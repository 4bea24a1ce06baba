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


@pytest.fixture(scope="module")
def end_to_end(model_and_data, tmp_path_factory):
    """tools/evaluate.py run once as a user runs it (a process of its own), on an export
    without a calibration: (its output, its JSON, the features it saved, a folder)."""
    model, data = model_and_data
    tmp_path = tmp_path_factory.mktemp("end-to-end")
    out, feats = tmp_path / "metrics.json", tmp_path / "feats.npz"
    result = run("--model", str(model), "--data-root", str(data), "--rerank", "--json", str(out),
                 "--save-features", str(feats), "--no-progress")
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text()), feats, tmp_path


@pytest.mark.slow
def test_evaluate_tool_end_to_end(model_and_data, end_to_end):
    _, data = model_and_data
    result, metrics, feats, tmp_path = end_to_end
    assert "re-ranked" in result.stdout and "mAP" in result.stdout
    assert set(metrics) == {"mAP", "rank1", "rank5", "rank10", "mINP", "num_query",
                            "num_gallery", "rerank", "verification"}
    assert "verification (" in result.stdout
    # The open-set DIR of the summary is labelled as the oracle's it is (2 left-out queries
    # cannot set a threshold at FPIR 1e-2: "-"), and a model without a calibration says it
    # has no gallery-level decision.
    assert metrics["verification"]["dir@fpir0.01"] is None
    assert ("open set, a third of the identities out of the gallery: DIR - at FPIR 0.01 with "
            "the threshold set on the left-out queries themselves (an oracle's figure, not a "
            "calibrated one)\ngallery-level decision: none calibrated (the model holds no "
            "calibration; tools/calibrate.py makes one)\n") in result.stdout
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


def open_set_by_brute_force(saved, seed: int):
    """One draw of the open-set protocol, one query at a time: (N, [(best score, right?)] of
    the present people, [best score] of the absent), a third of the identities (the
    library's seeded split) left out of the gallery, a query's own camera not a candidate."""
    from reid.evaluation.verification import open_set_split

    q, g = (saved[k] / np.linalg.norm(saved[k], axis=1, keepdims=True)
            for k in ("query", "gallery"))
    q_pids, g_pids, q_cams, g_cams = (saved[k].tolist()
                                      for k in ("q_pids", "g_pids", "q_camids", "g_camids"))
    left_out = set(open_set_split(saved["g_pids"], 1 / 3, seed).tolist())
    kept = [j for j in range(len(g)) if g_pids[j] not in left_out and g_pids[j] != -1]
    present, absent = [], []
    for i in range(len(q)):
        candidates = [j for j in kept if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        best = max(candidates, key=lambda j: float(q[i] @ g[j]))
        score = float(q[i] @ g[best])
        if q_pids[i] in left_out:
            absent.append(score)
        elif any(g_pids[j] == q_pids[i] for j in candidates):
            present.append((score, g_pids[best] == q_pids[i]))
    return len(kept), present, absent


@pytest.mark.slow
def test_evaluate_tool_checks_the_gallery_level_decision(model_and_data, end_to_end, tmp_path,
                                                         capsys):
    """A calibration with a gallery rule (hand-made, so its thresholds fall among this model's
    scores), checked over 3 draws: each draw's N, threshold, observed FPIR and DIR are those a
    loop counts, the text says them, and the per-pair figures read as FPIR."""
    from reid.calibration import GalleryRule, calibrate
    from reid.engine.commands import store_calibration

    model, data = model_and_data
    draws = 3
    # Thresholds in the widest gaps between the absent's (0.1) and present's (0.01) best scores.
    pooled = [open_set_by_brute_force(np.load(end_to_end[2]), d) for d in range(draws)]
    size = pooled[0][0]

    def widest_gap(scores):
        scores = sorted(set(scores))
        gap = max(range(len(scores) - 1), key=lambda k: scores[k + 1] - scores[k])
        return (scores[gap] + scores[gap + 1]) / 2

    wanted = {0.1: widest_gap([s for _, _, absent in pooled for s in absent]),
              0.01: widest_gap([s for _, present, _ in pooled for s, _ in present])}
    slopes = (0.01, 0.02)
    rule = GalleryRule("crops", (0.1, 0.01),
                       tuple(wanted[f] - b * np.log(size) for f, b in zip(wanted, slopes)),
                       slopes, (10, 100), 200)
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    store_calibration(copy, calibrate(np.linspace(0.5, 1, 50), np.linspace(-1, 0.6, 500),
                                      "hand-made", {"crops": rule}))
    out, feats = tmp_path / "metrics.json", tmp_path / "feats.npz"
    assert evaluate(["--model", str(copy), "--data-root", str(data), "--draws", str(draws),
                     "--json", str(out), "--save-features", str(feats), "--no-progress"]) == 0
    text = capsys.readouterr().out
    calibrated = json.loads(out.read_text())["calibrated"]
    gallery = calibrated["gallery"]
    assert gallery["rule"] == "200 probes against galleries of 10-100 crops"
    saved = np.load(feats)
    expected_lines = []
    for fpir, slope in zip((0.1, 0.01), slopes):
        figures = gallery["rates"][f"{fpir:g}"]
        each = figures["per_draw"]
        for d in range(draws):
            size, present, absent = open_set_by_brute_force(saved, d)
            assert gallery["draws"][d] == {"seed": d, "gallery_size": size,
                                           "present": len(present), "absent": len(absent)}
            t = rule.intercepts[(0.1, 0.01).index(fpir)] + slope * np.log(size)
            assert each["threshold"][d] == pytest.approx(t, abs=1e-12)
            assert each["reported_present"][d] == sum(s >= t for s in absent)
            assert each["fpir"][d] == sum(s >= t for s in absent) / len(absent)
            assert each["dir"][d] == sum(ok and s >= t for s, ok in present) / len(present)
            assert each["oracle_dir"][d] is None  # 2 absent queries set no threshold at 0.1
        for name in ("threshold", "fpir", "dir"):
            assert figures[name] == pytest.approx(np.mean(each[name]))
        absent = sum(r["absent"] for r in gallery["draws"])
        observed = each["fpir"]
        expected_lines.append(
            f"  requested FPIR {fpir:g} -> observed {figures['fpir']:.3f}, DIR "
            f"{figures['dir']:.3f} (threshold {figures['threshold']:.4f} for N = {size}; "
            f"{sum(each['reported_present'])} of {absent} left-out queries reported present, "
            f"per draw " + (f"{min(observed):.3f}-{max(observed):.3f})"
                            if min(observed) != max(observed) else f"{min(observed):.3f})"))
    assert 0 < gallery["rates"]["0.1"]["fpir"] < 1  # the check is not a trivial one
    assert ("gallery-level decision (200 probes against galleries of 10-100 crops), a third of "
            "the identities out of the gallery, means of 3 seeded draws:\n"
            + "\n".join(expected_lines) + "\n") in text
    # The per-pair thresholds' rates per query are FPIRs now, over the same draws.
    pair = calibrated["open_set"]["far=0.01"]
    for d in range(draws):
        _, present, absent = open_set_by_brute_force(saved, d)
        assert pair["per_draw"]["fpir"][d] == sum(s >= pair["threshold"] for s in absent) / len(
            absent)
    assert "stranger_match_rate" not in json.dumps(calibrated) and "matched anyway" not in text
    assert "(share of them reported present)" in text
    assert ("calibrated thresholds (hand-made) on these pairs, as queries score; open-set "
            "figures: means of 3 draws:") in text


def test_evaluate_tool_says_what_a_calibration_without_the_rate_or_rule_gives(capsys):
    """Numbers only: a rule that stops at FPIR 0.1 cannot answer 0.01, and a calibration
    without a rule (made before they existed) says so in one line."""
    from reid.calibration import GalleryRule, calibrate, format_observed_rates
    from reid.engine.evaluator import Features, calibrated_figures

    rng = np.random.default_rng(0)
    pids, cams = np.repeat(np.arange(1, 10), 2), np.tile([0, 1], 9)
    centres = rng.normal(size=(10, 8))
    features = Features(centres[pids] + 0.5 * rng.normal(size=(18, 8)),
                        centres[pids] + 0.5 * rng.normal(size=(18, 8)), pids, pids, cams, 1 - cams)
    pairs = (np.linspace(0.5, 1, 50), np.linspace(-1, 0.6, 500))
    rule = GalleryRule("crops", (0.2, 0.1), (0.3, 0.4), (0.05, 0.05), (10, 40), 30)
    figures = calibrated_figures(calibrate(*pairs, "short", {"crops": rule}), features)
    assert figures["gallery"]["rates"]["0.01"]["threshold"] is None
    assert figures["gallery"]["rates"]["0.01"]["per_draw"]["fpir"] == [None]
    assert figures["gallery"]["rates"]["0.1"]["threshold"] == pytest.approx(0.4 + 0.05 * np.log(12))
    lines = format_observed_rates(figures).splitlines()
    assert lines[-1] == "  requested FPIR 0.01 -> not calibrated: the rule holds rates 0.1 to 0.2"
    old = calibrated_figures(calibrate(*pairs, "old"), features)
    assert "gallery" not in old
    assert format_observed_rates(old).splitlines()[-1] == (
        "gallery-level decision: none calibrated (this calibration holds no gallery rule for "
        "crops: made before they existed, or from too few images); recalibrate with "
        "tools/calibrate.py")
    with pytest.raises(ValueError, match="draws 0"):
        calibrated_figures(calibrate(*pairs, "old"), features, draws=0)


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
