"""Per-epoch training checkpoints that a kill or a power loss at any moment cannot corrupt.

Each checkpoint is a folder ``checkpoints/epoch-NNNN`` written under a temporary name, fsynced
and renamed into place when complete (:func:`reid.utils.io.staged_dir`); the pointer file
``checkpoints/latest`` is then replaced atomically and durably. Until that replace, ``latest``
names the previous, complete checkpoint. An ``epoch-NNNN`` that exists already (say, from a run
killed before it moved ``latest``) is replaced.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reid.errors import ReidError
from reid.run_layout import LATEST
from reid.utils.io import atomic_write_text, staged_dir

_TMP_PREFIX = ".tmp-"  # staging folders; what a killed save leaves is removed by _prune


class CheckpointError(ReidError, RuntimeError):
    """A checkpoint cannot be read back; the message names the file."""


def save_checkpoint(
    checkpoint_dir: str | pathlib.Path,
    epoch: int,
    variables: Mapping[str, Sequence[Any]],
    state: Mapping[str, Any],
    keep: int = 2,
) -> pathlib.Path:
    """Write variable groups (name -> list of arrays/variables) and JSON state for ``epoch``.

    Variables are stored by position within their group: the caller rebuilds the same model and
    optimizer, so the order is the same, and the shapes are checked on load.
    """
    checkpoint_dir = pathlib.Path(checkpoint_dir)
    final = checkpoint_dir / f"epoch-{epoch:04d}"
    with staged_dir(final, replace=True, prefix=_TMP_PREFIX) as tmp:
        for group, values in variables.items():
            arrays = {f"v{i:05d}": np.asarray(v) for i, v in enumerate(values)}
            np.savez(tmp / f"{group}.npz", **arrays)
        (tmp / "state.json").write_text(json.dumps({"epoch": epoch, **state}, indent=1))
    atomic_write_text(checkpoint_dir / LATEST, final.name + "\n")
    _prune(checkpoint_dir, keep, final.name)
    return final


def _prune(checkpoint_dir: pathlib.Path, keep: int, newest: str) -> None:
    epochs = sorted(p for p in checkpoint_dir.glob("epoch-*") if p.is_dir())
    for old in epochs[:-keep] if keep > 0 else []:
        if old.name != newest:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in checkpoint_dir.glob(f"{_TMP_PREFIX}*"):  # leftovers of a run killed mid-save
        shutil.rmtree(tmp, ignore_errors=True)


def latest_checkpoint(checkpoint_dir: str | pathlib.Path) -> pathlib.Path | None:
    pointer = pathlib.Path(checkpoint_dir) / LATEST
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / "state.json").exists():
        raise CheckpointError(f"{pointer}: names {path.name}, which is missing or incomplete")
    return path


def load_checkpoint(path: str | pathlib.Path) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
    """Read what :func:`save_checkpoint` wrote: (groups of arrays, state)."""
    path = pathlib.Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        groups = {}
        for file in sorted(path.glob("*.npz")):
            with np.load(file) as data:
                groups[file.stem] = [data[k] for k in sorted(data.files)]
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
    return groups, state


def assign_group(variables: Sequence[Any], arrays: Sequence[np.ndarray], what: str) -> None:
    """Assign saved arrays to live variables, refusing any difference in count or shape."""
    if len(variables) != len(arrays):
        raise CheckpointError(f"{what}: checkpoint has {len(arrays)} variables, the model "
                              f"{len(variables)}; was it written with another config?")
    for var, arr in zip(variables, arrays):
        if tuple(var.shape) != arr.shape:
            raise CheckpointError(f"{what}: variable {getattr(var, 'path', var.name)} has shape "
                                  f"{tuple(var.shape)}, checkpoint {arr.shape}")
        var.assign(arr)
