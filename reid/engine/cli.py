"""What the command-line tools do, as functions: tools/*.py only parse arguments and call these."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from reid.config import ConfigError, load_config
from reid.engine.trainer import TrainResult, Trainer, load_run_config, prepare_run_dir


def run_training(config_path: pathlib.Path | None, output: pathlib.Path | None,
                 overrides: Sequence[str] = (), resume: bool = False,
                 progress: bool = True) -> TrainResult:
    """Validate everything (config, data, model) before the first step, then train."""
    from reid.data import load_dataset

    if resume:
        if output is None:
            if config_path is None:
                raise ConfigError("--resume needs --output (the run folder) or --config")
            output = pathlib.Path("runs") / config_path.stem
        cfg = load_run_config(output, overrides)
    else:
        if config_path is None:
            raise ConfigError("--config is required (or --resume with --output)")
        cfg = load_config(config_path, overrides)
        output = output or pathlib.Path("runs") / cfg.name
    dataset = load_dataset(cfg.data)
    print(dataset.summary())
    run_dir = prepare_run_dir(output, cfg, resume)
    trainer = Trainer(cfg, dataset, run_dir, progress=progress)
    return trainer.fit(resume=resume)
