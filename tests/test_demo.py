"""`make demo` end to end: the demo configuration learns what it promises, and runs twice.

This is the whole demo (dataset, untrained and trained evaluation, training, index, queries,
pictures) with the shipped configs/synthetic.yaml, in a temporary folder: minutes, not seconds.
"""

from __future__ import annotations

import json
import pathlib

import cv2
import pytest

from reid.demo import DemoPaths, run_demo

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_learns_far_beyond_the_untrained_model_and_runs_twice(tmp_path):
    paths = DemoPaths(data=tmp_path / "data", run=tmp_path / "run",
                      index=tmp_path / "run" / "gallery_index",
                      pictures=tmp_path / "run" / "queries")
    config = ROOT / "configs" / "synthetic.yaml"
    first: list[str] = []
    metrics = run_demo(config, paths, progress=False, log=first.append)
    print("\n".join(first))

    # What issue 6 promises of the demo configuration on the synthetic test split.
    assert metrics["untrained"]["mAP"] <= 0.30
    assert metrics["trained"]["mAP"] >= 0.80

    picture = cv2.imread(str(paths.pictures / "ranked_lists.png"))
    assert picture is not None and picture.shape[0] >= 3 * 128  # three query rows
    assert (paths.run / "model" / "spec.json").is_file()
    saved = json.loads((paths.run / "demo_metrics.json").read_text())
    assert saved["trained"]["mAP"] == pytest.approx(metrics["trained"]["mAP"])
    summary = "\n".join(first[first.index("== summary"):])
    for expected in ("python tools/train.py", "python tools/query.py", str(paths.index)):
        assert expected in summary

    # A second run reuses the dataset and the finished training run, and ends the same way.
    second: list[str] = []
    again = run_demo(config, paths, progress=False, log=second.append)
    assert any("skipped" in line for line in second)
    assert again["train_seconds"] < 0.2 * metrics["train_seconds"]
    assert again["trained"]["mAP"] == pytest.approx(metrics["trained"]["mAP"], abs=1e-6)
    assert (paths.pictures / "ranked_lists.png").is_file()
