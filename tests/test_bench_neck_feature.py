"""bench/neck_feature.py: its training-identity split, and a run scored both ways end to end."""

from __future__ import annotations

import importlib.util
import pathlib
import re

from reid.config import config_from_dict
from reid.data import load_dataset
from reid.data.records import ImageRecord
from reid.data.synthetic import generate_dataset
from reid.engine.trainer import Trainer, prepare_run_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_neck_feature",
                                                  ROOT / "bench" / "neck_feature.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_identity_split_takes_the_first_image_of_each_identity_and_camera():
    bench = load_bench()
    recs = [ImageRecord(p, pid, cam) for p, pid, cam in [
        ("b/0001_c1_2.jpg", 0, 1), ("a/0001_c1_1.jpg", 0, 1), ("a/0001_c2_1.jpg", 0, 2),
        ("c/0002_c1_1.jpg", 1, 1), ("a/0002_c2_9.jpg", 1, 2), ("b/0002_c2_3.jpg", 1, 2)]]
    queries, gallery = bench.training_identity_split(recs)
    assert [r.path for r in queries] == ["a/0001_c1_1.jpg", "a/0001_c2_1.jpg",
                                        "a/0002_c2_9.jpg", "c/0002_c1_1.jpg"]
    assert sorted(r.path for r in gallery) == ["b/0001_c1_2.jpg", "b/0002_c2_3.jpg"]


def test_a_run_is_scored_after_and_before_the_neck(tmp_path, capsys):
    bench = load_bench()
    generate_dataset(tmp_path / "data", ids=10, cameras=2, images_per_id=6, seed=2, height=64,
                     width=32)
    cfg = config_from_dict({
        "data": {"root": str(tmp_path / "data"), "height": 64, "width": 32, "ids_per_batch": 4,
                 "images_per_id": 2, "pad": 2},
        "model": {"alpha": 0.35, "weights": None, "parts": 2, "part_dim": 8},
        "train": {"epochs": 1, "steps_per_epoch": 2, "warmup_epochs": 0, "seed": 1},
        "eval": {"batch_size": 32}}, name="tiny")
    run = prepare_run_dir(tmp_path / "run", cfg, resume=False)
    Trainer(cfg, load_dataset(cfg.data), run, progress=False).fit()
    capsys.readouterr()
    assert bench.main(["--run", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for name in ("after, test", "after, training ids", "before, test", "before, training ids"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        values = [float(v) for v in re.findall(r"\d\.\d{4}", line)]
        assert len(values) == 5 and all(0.0 <= v <= 1.0 for v in values)


def test_a_folder_without_checkpoints_is_a_one_line_error(tmp_path, capsys):
    bench = load_bench()
    cfg = config_from_dict({"data": {"root": str(tmp_path)}}, name="empty")
    run = prepare_run_dir(tmp_path / "run", cfg, resume=False)
    assert bench.main(["--run", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {run}/checkpoints: no checkpoint to score"
