"""The run folder's layout: where each part lives, and when a folder holds a resumable run."""

from __future__ import annotations

import pathlib

from reid.engine.checkpoint import save_checkpoint
from reid.run_layout import RunLayout


def test_parts_are_inside_the_root_and_distinct(tmp_path):
    layout = RunLayout(str(tmp_path / "run"))
    parts = [layout.config, layout.checkpoints, layout.logs, layout.model, layout.best_model,
             layout.history]
    assert layout.root == tmp_path / "run" and isinstance(layout.root, pathlib.Path)
    assert all(p.parent == layout.root for p in parts)
    assert len(set(parts)) == len(parts)
    assert layout == RunLayout(tmp_path / "run")


def test_has_checkpoints_once_a_checkpoint_is_saved(tmp_path):
    layout = RunLayout(tmp_path)
    assert not layout.has_checkpoints
    layout.checkpoints.mkdir()
    assert not layout.has_checkpoints  # an empty folder is not a run to resume
    save_checkpoint(layout.checkpoints, 1, {"model": []}, {})
    assert layout.has_checkpoints
