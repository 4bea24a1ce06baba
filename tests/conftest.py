"""What several test files share, made once a test session: the tiny synthetic dataset
(``tiny_data``) and a finished tiny training run (``trained_run``, and ``trained_model``, its
weights restored in this process).

Training is what makes the suite slow (tracing the training step alone takes about 10 s on
2 cores), and most tests of training need a finished run rather than a run of their own. Under
pytest-xdist each worker is a process with a temporary folder of its own: the first worker that
needs a shared item makes it in the folder every worker of the session sees, under a lock, and
the others wait for it and read it. Tests never change a shared item; a test that changes a
run changes a copy (:meth:`TrainedRun.copy`).

TensorFlow runs deterministically in the tests and in the tools they start
(``TF_DETERMINISTIC_OPS``): the same training gives the same weights bit for bit, so tests
compare trainings exactly, and an op without a deterministic implementation fails loudly
instead of making a figure vary from run to run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from tiny_model import standardise_batch_norms, tiny_config

os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

#: The shared run, over tiny_config: validated after each of its 2 epochs on 5 held-out
#: identities (enough impostor pairs to calibrate a false-match rate of 1e-2), with the center
#: loss (its centers are part of what a resume restores) and 2 stripes (the export joins them
#: to the global feature), exported and converted for LiteRT.
SHARED_RUN = {"train__epochs": 2, "train__eval_every": 1, "data__val_ids": 5,
              "loss__center_weight": 0.001, "model__parts": 2, "model__part_dim": 8,
              "train__export_litert": True}


@pytest.fixture(scope="session")
def shared_folder(tmp_path_factory) -> pathlib.Path:
    """This session's folder that every pytest-xdist worker sees (each worker's own temporary
    folder is inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def made_once(folder: pathlib.Path) -> Iterator[bool]:
    """Hold ``folder``'s lock; give True when the caller must make ``folder`` (nothing complete
    is there: what a failed attempt left is cleared first), False when it is made already."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    complete = folder.with_name(f"{folder.name}.complete")
    with open(folder.with_name(f"{folder.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if complete.exists():
            yield False
            return
        shutil.rmtree(folder, ignore_errors=True)
        yield True
        complete.touch()


@pytest.fixture(scope="session")
def tiny_data(shared_folder) -> pathlib.Path:
    """Drawn pedestrians at 64x32: 20 identities (10 train, 10 test), 6 images each, 2 cameras."""
    folder = shared_folder / "tiny-data"
    with made_once(folder) as make:
        if make:
            from reid.synthetic.crops import generate_dataset

            generate_dataset(folder, ids=20, cameras=2, images_per_id=6, seed=1, height=64,
                             width=32)
    return folder


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A finished run of :data:`SHARED_RUN` on ``tiny_data``; read-only (``copy`` it)."""

    data: pathlib.Path
    root: pathlib.Path
    #: What training logged, line by line.
    log: list[str]
    #: The validation of its last epoch (``TrainResult.final_metrics``).
    final_metrics: dict[str, Any]

    def config_with(self, **overrides: Any):
        """The run's config with ``overrides`` (``section__key=value``, as tiny_config)."""
        return tiny_config(self.data, **{**SHARED_RUN, **overrides})

    @property
    def config(self):
        return self.config_with()

    @property
    def model(self) -> pathlib.Path:
        from reid.run_layout import RunLayout

        return RunLayout(self.root).model

    def dataset(self):
        """What it trained and validated on: the training split less 5 identities, held out."""
        from reid.data import load_dataset
        from reid.engine.trainer import training_dataset

        return training_dataset(load_dataset(self.config.data), self.config)

    def copy(self, to: pathlib.Path) -> pathlib.Path:
        shutil.copytree(self.root, to)
        return to


@pytest.fixture(scope="session")
def trained_run(shared_folder, tiny_data) -> TrainedRun:
    folder = shared_folder / "trained-run"
    run = TrainedRun(tiny_data, folder / "run", [], {})
    with made_once(folder) as make:
        if make:
            import numpy as np

            from reid.data.pipeline import load_image
            from reid.data.preprocessing import normalize_pixels
            from reid.engine.trainer import Trainer, prepare_run_dir

            lines: list[str] = []
            cfg, dataset = run.config, run.dataset()
            trainer = Trainer(cfg, dataset, prepare_run_dir(run.root, cfg, resume=False),
                              progress=False, log=lines.append)
            # Six steps leave the network's inference features collapsed to one point, which
            # makes every ranking and threshold a tie: start from the crops' statistics.
            crops = np.stack([load_image(r.path, 64, 32) for r in dataset.train])
            standardise_batch_norms(trainer.models.training_model, normalize_pixels(crops))
            result = trainer.fit()
            (folder / "result.json").write_text(json.dumps(
                {"log": lines, "final_metrics": result.final_metrics}, default=float))
    saved = json.loads((folder / "result.json").read_text())
    return dataclasses.replace(run, log=saved["log"], final_metrics=saved["final_metrics"])


@pytest.fixture(scope="session")
def trained_model(trained_run):
    """A Trainer holding the shared run's trained weights, restored from its last checkpoint
    (the run is not written to); read-only."""
    from reid.engine.trainer import Trainer

    trainer = Trainer(trained_run.config, trained_run.dataset(), trained_run.root,
                      progress=False, log=lambda _: None)
    assert trainer.restore() and trainer.epoch == 2
    return trainer
