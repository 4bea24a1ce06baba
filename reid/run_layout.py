"""What a training run folder holds, and under which names: the one place that spells them.

Training writes a run folder; resuming, evaluation, indexing, the demo and the benchmarks read
it. They all go through :class:`RunLayout`, so they cannot disagree about where a part lives.
The module imports nothing heavy, so the model loader can use it without pulling in training.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from reid.config import Config, ConfigError, load_saved_config

#: The file in a checkpoints folder naming the newest checkpoint (:mod:`reid.engine.checkpoint`).
LATEST = "latest"


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """The parts of the run folder ``root`` (which need not exist yet)."""

    root: pathlib.Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", pathlib.Path(root))

    @property
    def config(self) -> pathlib.Path:
        """The resolved config the run was started with; resuming continues with it."""
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> pathlib.Path:
        """Per-epoch checkpoints (see :mod:`reid.engine.checkpoint`)."""
        return self.root / "checkpoints"

    @property
    def logs(self) -> pathlib.Path:
        """TensorBoard event files."""
        return self.root / "logs"

    @property
    def model(self) -> pathlib.Path:
        """The exported embedding model of the final epoch, written when training finished."""
        return self.root / "model"

    @property
    def best_model(self) -> pathlib.Path:
        """The export of the epoch with the best validation mAP, when validation ran."""
        return self.root / "model_best"

    @property
    def history(self) -> pathlib.Path:
        """Every epoch's losses and validation metrics as JSON, written when training finished."""
        return self.root / "history.json"

    @property
    def has_checkpoints(self) -> bool:
        """Whether a training run has saved a checkpoint here (so it can be resumed)."""
        return (self.checkpoints / LATEST).exists()


def load_run_config(run_dir: str | os.PathLike, overrides=()) -> Config:
    """The resolved config a run was started with (``--resume`` continues with it); read
    without TensorFlow, so tools/train.py can tell a multi-worker run before starting it."""
    path = RunLayout(run_dir).config
    if not path.exists():
        raise ConfigError(f"{path}: not found; is {run_dir} a training run folder?")
    return load_saved_config(path, overrides)
