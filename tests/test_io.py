"""reid.utils.io.staged_dir: a folder appears complete and durable, or not at all."""

from __future__ import annotations

import os
import pathlib

import pytest

from reid.utils import io


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_finished_folder_is_fsynced_then_renamed_into_place(tmp_path, monkeypatch):
    final = tmp_path / "out" / "data"
    synced: list[str] = []
    renamed_when_synced: list[bool] = []

    def fsync_dir(path):
        synced.append(os.fspath(path))
        renamed_when_synced.append(final.exists())

    monkeypatch.setattr(io, "fsync_file", lambda path: synced.append(os.fspath(path)))
    monkeypatch.setattr(io, "fsync_dir", fsync_dir)
    umask = os.umask(0o022)
    try:
        with io.staged_dir(final) as staging:
            assert staging.parent == final.parent and staging.name.startswith(".data.tmp-")
            (staging / "a.txt").write_text("a")
            (staging / "sub").mkdir()
            (staging / "sub" / "b.txt").write_text("b")
            assert not final.exists()
    finally:
        os.umask(umask)
    assert _tree(final) == {"a.txt": b"a", "sub/b.txt": b"b"}
    assert os.listdir(final.parent) == ["data"]
    assert final.stat().st_mode & 0o777 == 0o755  # the umask's, not mkdtemp's 0700
    inside = [os.path.relpath(p, staging) for p in synced[:-1]]
    assert sorted(inside) == [".", "a.txt", "sub", os.path.join("sub", "b.txt")]
    assert inside.index(os.path.join("sub", "b.txt")) < inside.index("sub") < inside.index(".")
    assert synced[-1] == os.fspath(final.parent)
    assert renamed_when_synced == [False, False, True]  # the parent only after the rename


@pytest.mark.parametrize("replace", [False, True])
def test_a_failed_write_leaves_the_destination_untouched(tmp_path, replace):
    final = tmp_path / "data"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with io.staged_dir(final, replace=replace) as staging:
            (staging / "new.txt").write_text("half")
            raise KeyboardInterrupt
    assert _tree(final) == {"old.txt": b"old"}
    assert os.listdir(tmp_path) == ["data"]


def test_a_new_name_refuses_to_replace(tmp_path):
    final = tmp_path / "v000001"
    final.mkdir()  # empty: a plain rename would silently replace it
    with pytest.raises(FileExistsError, match="v000001"):
        with io.staged_dir(final, prefix=".tmp-") as staging:
            (staging / "x").write_text("x")
    assert os.listdir(final) == []
    assert os.listdir(tmp_path) == ["v000001"]


def test_replace_swaps_the_old_folder_out(tmp_path):
    final = tmp_path / "data"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with io.staged_dir(final, replace=True) as staging:
        (staging / "new.txt").write_text("new")
    assert _tree(final) == {"new.txt": b"new"}
    assert os.listdir(tmp_path) == ["data"]  # the old one is deleted, not left aside


def test_replace_puts_the_old_folder_back_when_the_rename_fails(tmp_path, monkeypatch):
    final = tmp_path / "data"
    final.mkdir()
    (final / "old.txt").write_text("old")

    def fail(staging, target):
        raise OSError("rename failed")

    monkeypatch.setattr(io, "_rename_into_place", fail)
    with pytest.raises(OSError, match="rename failed"):
        with io.staged_dir(final, replace=True) as staging:
            (staging / "new.txt").write_text("new")
    assert _tree(final) == {"old.txt": b"old"}
    assert os.listdir(tmp_path) == ["data"]
