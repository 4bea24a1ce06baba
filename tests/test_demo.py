"""`make demo`'s wiring, end to end, with tiny overrides: every step, the picture, the summary,
and a second run (tools/demo.py in a fresh process) that reuses the dataset and the finished
training run.

What the shipped configs/synthetic.yaml learns (the demo's accuracy promise) takes minutes of
training and is measured by bench/demo.py (`make bench-demo`), not here.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import cv2
import pytest

from reid.synthetic.crops import SPLIT_DIRS
from reid.demo import DemoPaths, run_demo

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "synthetic.yaml"
TINY = ("data.height=64", "data.width=32", "model.alpha=0.35", "data.ids_per_batch=4",
        "data.images_per_id=2", "train.epochs=1", "train.steps_per_epoch=2",
        "eval.batch_size=64", "data.val_ids=2")
STEPS = ("== 1. synthetic pedestrians", "== 2. untrained model", "== 3. training",
         "== 4. trained model", "== 5. gallery index", "== 6. querying",
         "== 7. camera footage", "== summary")


def snapshot(folder: pathlib.Path) -> dict[str, int]:
    """Modification time (ns) of every file under ``folder``: what a rewrite would change."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*")) if p.is_file()}


def headers_in_order(lines: list[str]) -> list[str]:
    return [step for step in STEPS for line in lines if line.startswith(step)]


@pytest.mark.slow
def test_demo_runs_every_step_and_a_second_run_reuses_what_is_there(tmp_path):
    paths = DemoPaths(data=tmp_path / "data", run=tmp_path / "run")
    first: list[str] = []
    metrics = run_demo(CONFIG, paths, TINY, synthetic_ids=12, synthetic_test_ids=4,
                       progress=False, log=first.append)
    print("\n".join(first))
    lines = "\n".join(first).splitlines()
    assert headers_in_order(lines) == list(STEPS)
    order = [next(i for i, line in enumerate(lines) if line.startswith(s)) for s in STEPS]
    assert order == sorted(order)

    # The dataset has what was asked: 8 training and 4 test identities, every split written.
    for split in SPLIT_DIRS:
        assert list((paths.data / split).glob("*.jpg")), split
    train_pids = {p.name.split("_")[0] for p in (paths.data / "bounding_box_train").glob("*.jpg")}
    test_pids = {p.name.split("_")[0] for p in (paths.data / "query").glob("*.jpg")}
    assert len(train_pids) == 8 and len(test_pids) == 4 and not train_pids & test_pids

    # Untrained and trained rows, with and without re-ranking, are in the summary table.
    summary = "\n".join(lines[lines.index("== summary"):])
    rows = {"untrained": metrics["untrained"], "trained": metrics["trained"],
            "untrained + re-ranking": metrics["untrained"]["rerank"],
            "trained + re-ranking": metrics["trained"]["rerank"]}
    for name, row in rows.items():
        (shown,) = [line.split() for line in lines[lines.index("== summary"):]
                    if line.startswith(name.ljust(24))]
        assert shown[-5:] == [f"{row[k]:.4f}" for k in ("mAP", "rank1", "rank5", "rank10",
                                                          "mINP")], name
    for key in ("untrained", "trained"):
        assert 0.0 <= metrics[key]["mAP"] <= 1.0 and "rerank" in metrics[key]
        assert metrics[key]["num_query"] == len(list((paths.data / "query").glob("*.jpg")))
    for expected in ("python tools/make_synthetic.py", "python tools/train.py",
                     "python tools/evaluate.py", "python tools/build_index.py",
                     "python tools/query.py", str(paths.index), "tensorboard --logdir"):
        assert expected in summary, expected

    # Training ran its one epoch, exported the model and logged to TensorBoard.
    assert any(line.startswith("epoch 1/1") for line in lines)
    assert (paths.run / "model" / "spec.json").is_file()
    assert list((paths.run / "logs").glob("events.out.tfevents.*"))
    gallery_size = len(list((paths.data / "bounding_box_test").glob("*.jpg")))
    assert f"index:    {paths.index} ({gallery_size} images)" in summary

    # Three query rows, each the query and its top 10 (at most 4 x 20 gallery crops here).
    picture = cv2.imread(str(paths.pictures / "ranked_lists.png"))
    assert picture is not None and picture.shape[0] >= 3 * 128 and picture.shape[1] >= 11 * 64
    saved = json.loads((paths.run / "demo_metrics.json").read_text())
    assert saved["trained"]["mAP"] == pytest.approx(metrics["trained"]["mAP"])

    # The footage step: its index, its scores against the ground truth, its two pictures.
    assert 0.5 < saved["footage"]["idf1"] <= 1.0 and 0.0 <= saved["footage"]["track_map"] <= 1.0
    assert f"footage:  {paths.footage_index} (3 cameras" in summary
    for name in ("footage_sheet.png", "footage_timeline.png"):
        assert cv2.imread(str(paths.pictures / name)) is not None, name

    # A second run, the real command in a fresh process, redraws nothing, trains nothing, says
    # nothing on stderr (no TensorFlow start-up lines) and ends with the same figures.
    data_files, checkpoints = snapshot(paths.data), snapshot(paths.run / "checkpoints")
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--data", str(paths.data), "--output",
         str(paths.run), "--ids", "12", "--test-ids", "4", "--no-progress", "--set", *TINY],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert headers_in_order(lines) == list(STEPS)
    assert any("already complete with the same parameters; skipped" in line for line in lines)
    assert any(line.startswith("resumed ") and "after epoch 1" in line for line in lines)
    assert not any(line.startswith("epoch 1/1") for line in lines)
    assert snapshot(paths.data) == data_files
    assert snapshot(paths.run / "checkpoints") == checkpoints
    again = json.loads((paths.run / "demo_metrics.json").read_text())
    assert again["trained"]["mAP"] == pytest.approx(metrics["trained"]["mAP"], abs=1e-6)
    assert again["untrained"]["mAP"] == pytest.approx(metrics["untrained"]["mAP"], abs=1e-6)
    assert (paths.pictures / "ranked_lists.png").is_file()


def test_training_speed_weighs_each_epoch_by_its_time():
    from reid.demo import training_speed

    history = [{"seconds": 10.0, "images_per_second": 100.0},
               {"seconds": 30.0, "images_per_second": 200.0}]
    assert training_speed(history) == (1000 + 6000) / 40
    assert training_speed([]) == 0.0
