"""Checkpoints: round trip, pruning, and a save killed half way leaves the previous one usable."""

import numpy as np
import pytest

from reid.engine import checkpoint as ckpt


class Var:
    """Just enough of a variable: shape and assign."""

    def __init__(self, value):
        self.value = np.asarray(value, dtype=np.float32)
        self.name = "v"

    @property
    def shape(self):
        return self.value.shape

    def assign(self, value):
        self.value = np.asarray(value, dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        return self.value


def test_round_trip_and_latest(tmp_path):
    groups = {"model": [np.arange(6.0).reshape(2, 3), np.ones(4)], "optimizer": [np.array(3.0)]}
    ckpt.save_checkpoint(tmp_path, 1, groups, {"history": [1]})
    ckpt.save_checkpoint(tmp_path, 2, {"model": [g * 2 for g in groups["model"]],
                                       "optimizer": [np.array(4.0)]}, {"history": [1, 2]})
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "epoch-0002"
    loaded, state = ckpt.load_checkpoint(latest)
    assert state == {"epoch": 2, "history": [1, 2]}
    np.testing.assert_array_equal(loaded["model"][0], np.arange(6.0).reshape(2, 3) * 2)
    assert float(loaded["optimizer"][0]) == 4.0


def test_pruning_keeps_the_newest(tmp_path):
    for epoch in range(1, 6):
        ckpt.save_checkpoint(tmp_path, epoch, {"m": [np.zeros(1)]}, {}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == ["epoch-0004", "epoch-0005"]


def test_killed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 1, {"m": [np.full(3, 1.0)]}, {"history": ["one"]})

    def explode(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ckpt.np, "savez", explode)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, 2, {"m": [np.full(3, 2.0)]}, {"history": ["two"]})
    monkeypatch.undo()
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "epoch-0001"
    loaded, state = ckpt.load_checkpoint(latest)
    np.testing.assert_array_equal(loaded["m"][0], np.full(3, 1.0))
    assert not list(tmp_path.glob(".tmp-*"))


def test_assign_refuses_mismatch(tmp_path):
    variables = [Var(np.zeros((2, 2))), Var(np.zeros(3))]
    ckpt.assign_group(variables, [np.ones((2, 2)), np.full(3, 5.0)], "model")
    np.testing.assert_array_equal(variables[1].value, np.full(3, 5.0))
    with pytest.raises(ckpt.CheckpointError, match="checkpoint has 1 variables, the model 2"):
        ckpt.assign_group(variables, [np.ones((2, 2))], "model")
    with pytest.raises(ckpt.CheckpointError, match=r"shape \(3,\)"):
        ckpt.assign_group(variables, [np.ones((2, 2)), np.ones(4)], "model")


def test_dangling_pointer_is_named(tmp_path):
    (tmp_path / "latest").write_text("epoch-0009\n")
    with pytest.raises(ckpt.CheckpointError, match="epoch-0009"):
        ckpt.latest_checkpoint(tmp_path)


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os

    from reid.utils.io import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
