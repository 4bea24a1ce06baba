"""The training loop: P x K batches, triplet + cross-entropy (+ center) loss, AdamW, warm-up.

A hand-written loop around one ``tf.function`` step rather than ``Model.fit``: the loss needs
the pre-BN features and the logits together, the center loss updates its centers outside the
optimizer, and each epoch's data is a pure function of (seed, epoch), which is what makes
``resume`` reproduce an uninterrupted run. ``bench/train_speed.py`` checks it is not slower
than ``fit``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from reid.calibration import (AUTO_FAR, Calibration, CalibrationError, far_key,
                              with_calibration)
from reid.config import Config, load_saved_config, save_config
from reid.data.pipeline import TrainInput, check_images
from reid.data.records import DatasetError, ReidDataset
from reid.engine.checkpoint import (assign_group, latest_checkpoint, load_checkpoint,
                                    save_checkpoint)
from reid.engine.distribute import (Placement, average_across_replicas, barrier,
                                    local_replicas, make_placement, moving_statistics,
                                    synchronize_batchnorm)
from reid.engine.evaluator import (calibrate_features, features_as_queried_and_scored,
                                   score_features)
from reid.evaluation import collapse_warning
from reid.engine.schedule import WarmupSchedule
from reid.errors import ReidError
from reid.losses import ReidLoss
from reid.modeling import Embedder, build_reid_model, export_embedder, weights_fingerprint
from reid.modeling.errors import first_line
from reid.modeling.reid_model import FEATURES, LOGITS, ReidModels
from reid.run_layout import RunLayout
from reid.utils.io import atomic_write_text


class TrainingError(ReidError, RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""


@dataclasses.dataclass
class TrainResult:
    run_dir: pathlib.Path
    epochs: int
    history: list[dict[str, Any]]
    model_dir: pathlib.Path | None
    best_model_dir: pathlib.Path | None
    #: The full validation of the last epoch, when this call trained it: the demo shows it
    #: rather than evaluating the same model a second time.
    final_metrics: dict[str, Any] | None = None


def checked_test_splits(dataset: ReidDataset, skip_bad: bool) -> ReidDataset:
    """``dataset`` once every query and gallery image has decoded, as the training split's do
    before the first step: a bad one must not crash validation after an epoch's work. With
    ``skip_bad`` (``data.skip_bad_images``) bad ones are dropped, with a warning listing them."""
    records = dataset.query + dataset.gallery
    good = set(check_images([r.path for r in records], skip_bad))
    if len(good) == len(records):
        return dataset
    return dataclasses.replace(dataset, query=tuple(r for r in dataset.query if r.path in good),
                               gallery=tuple(r for r in dataset.gallery if r.path in good))


def training_dataset(dataset: ReidDataset, cfg: Config) -> ReidDataset:
    """What training sees: with ``data.val_ids``, the training identities held out for
    validation replace the test split (:mod:`reid.data.validation`)."""
    from reid.data.validation import with_validation_split

    if not cfg.data.val_ids:
        return dataset
    return with_validation_split(dataset, cfg.data.val_ids, cfg.data.seed)


def check_dataset_fills_pk_batches(dataset: ReidDataset, cfg: Config, replicas: int = 1) -> None:
    """Refuse, before any work, a dataset the P x K sampler cannot serve (on ``replicas``
    replicas a step takes replicas x P identities)."""
    data = cfg.data
    if dataset.num_train_pids < 2:
        raise DatasetError(f"{dataset.root}: training needs at least 2 identities, found "
                           f"{dataset.num_train_pids}")
    if dataset.num_train_pids < data.ids_per_batch * replicas:
        held = (f" once {dataset.held_out} are held out for validation (data.val_ids)"
                if dataset.held_out else "")
        each = (f" on each of {replicas} replicas ({data.ids_per_batch * replicas} a step)"
                if replicas > 1 else "")
        raise DatasetError(f"{dataset.root}: data.ids_per_batch is {data.ids_per_batch}{each} but "
                           f"the training split has only {dataset.num_train_pids} "
                           f"identities{held}")
    if not data.sample_with_replacement:
        counts = np.bincount([r.pid for r in dataset.train])
        if counts.max() < data.images_per_id:
            raise DatasetError(
                f"{dataset.root}: data.images_per_id is {data.images_per_id} but no identity has "
                f"more than {counts.max()} images; lower it or set "
                f"data.sample_with_replacement: true")


def prepare_run_dir(run_dir: str | pathlib.Path, cfg: Config, resume: bool,
                    write: bool = True) -> pathlib.Path:
    """Create the run folder, refusing to overwrite a run that already has checkpoints.
    Without ``write`` (a worker that is not the chief) only the checks are made."""
    layout = RunLayout(run_dir)
    run_dir = layout.root
    has_checkpoints = layout.has_checkpoints
    if has_checkpoints and not resume:
        raise TrainingError(f"{run_dir}: already holds a training run; resume it or choose "
                            f"another run folder", field=("resume", "run_dir"))
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
    saved = layout.config
    if resume and has_checkpoints and saved.exists():
        changed = _changed_keys(load_saved_config(saved).to_dict(), cfg.to_dict())
        if changed:
            raise TrainingError(f"{run_dir}: cannot resume with a different config "
                                f"({', '.join(changed)} changed); choose another run folder",
                                field="run_dir")
    if write:
        save_config(cfg, saved)
    return run_dir


# Keys a resumed run may change: how long to train, how often to validate, and which feature
# the exported embedding is (it takes no part in training, so the weights are the same).
RESUMABLE_CHANGES = {"train.epochs", "train.eval_every", "model.neck_feat"}


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{section}.{key}" for section, values in new.items()
            for key, value in values.items()
            if old.get(section, {}).get(key) != value
            and f"{section}.{key}" not in RESUMABLE_CHANGES]


#: How a calibration made on a run's validation identities names its source.
VALIDATION_SOURCE = "validation:"


def _export_state(model_dir: pathlib.Path) -> tuple[str | None, bool]:
    """(weights fingerprint, whether it holds a calibration to keep) of the export in
    ``model_dir``; (None, False) when there is none. Training's own validation calibration
    from before gallery rules existed counts as none, so resuming the finished run calibrates
    it again; one a user made since (tools/calibrate.py, another source) is kept."""
    from reid.calibration import SPEC_KEY
    from reid.modeling.spec import read_spec
    from reid.modeling.errors import ModelError

    try:
        spec = read_spec(model_dir)
        stored = spec.get(SPEC_KEY)
        calibrated = isinstance(stored, dict) and (
            bool(stored.get("gallery"))
            or not str(stored.get("source", "")).startswith(VALIDATION_SOURCE))
        return str(spec["fingerprint"]), calibrated
    except (ModelError, KeyError):
        return None, False


def time_left(durations: Sequence[float], epochs_left: int) -> float | None:
    """Seconds the remaining epochs will take, from the epochs timed so far (None before one).

    The first epoch of a process also traces the step, so once a later epoch is timed it is
    left out: it would inflate the estimate of every remaining epoch.
    """
    timed = list(durations[1:]) if len(durations) > 1 else list(durations)
    if not timed:
        return None
    return epochs_left * sum(timed) / len(timed)


def format_duration(seconds: float) -> str:
    """``75 -> '1 min 15 s'``: the precision a person waiting for a run wants."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Trainer:
    """Everything one training run holds: input, model, loss, optimizer, logs and checkpoints.

    On several replicas (``placement``, :mod:`reid.engine.distribute`) every worker runs this
    same loop; only the chief writes checkpoints, TensorBoard logs and exports, validates and
    shows progress. The other workers read the run folder (``--resume`` restores every worker
    from the chief's latest checkpoint, so the folder must be shared storage when they are on
    other machines) and write nothing.
    """

    def __init__(self, cfg: Config, dataset: ReidDataset, run_dir: str | pathlib.Path,
                 progress: bool = True, log: Callable[[str], None] = print,
                 placement: Placement | None = None) -> None:
        self.placement = placement or make_placement(cfg.train.strategy)
        replicas = self.placement.replicas
        check_dataset_fills_pk_batches(dataset, cfg, replicas)
        if cfg.train.warmup_epochs > cfg.train.epochs:
            warnings.warn(f"train.warmup_epochs is {cfg.train.warmup_epochs} but train.epochs is "
                          f"{cfg.train.epochs}: the learning rate never reaches train.lr "
                          f"({cfg.train.lr:g})", stacklevel=2)
        self.cfg = cfg
        self.dataset = checked_test_splits(dataset, cfg.data.skip_bad_images)
        self.layout = RunLayout(run_dir)
        self.run_dir = self.layout.root
        self.is_chief = self.placement.is_chief
        self.progress = progress and self.is_chief
        self.log = log if self.is_chief else (
            lambda line: log(f"[worker {self.placement.worker}] {line}"))
        keras.utils.set_random_seed(cfg.train.seed)
        steps = cfg.train.steps_per_epoch or None
        self.input = TrainInput(dataset.train, cfg.data, check=True, num_batches=steps,
                                replicas=replicas)
        shape = (cfg.data.height, cfg.data.width, 3)
        with self.placement.strategy.scope():  # variables mirrored on every replica
            self.models: ReidModels = build_reid_model(cfg.model, shape, dataset.num_train_pids)
            self.loss = ReidLoss(cfg.loss, num_classes=dataset.num_train_pids,
                                 feature_dim=self.models.feature_dim)
            self.schedule = WarmupSchedule(cfg.train, self.input.batches_per_epoch)
            self.optimizer = keras.optimizers.AdamW(learning_rate=self.schedule,
                                                    weight_decay=cfg.train.weight_decay)
            # Build the optimizer over every variable up front so its state has the same layout
            # whether or not the backbone starts frozen, and checkpoints can be restored by
            # position.
            self.all_trainable = list(self.models.training_model.trainable_variables)
            self.optimizer.build(self.all_trainable)
        #: Batch-norm moving statistics averaged across replicas after each step (none when
        #: the statistics are synchronised, and so already the same everywhere).
        self._replica_statistics: list = []
        if replicas > 1 and cfg.train.sync_batchnorm:
            synchronize_batchnorm(self.models.training_model)
        elif replicas > 1:
            self._replica_statistics = moving_statistics(self.models.training_model)
        self._steps: dict[bool, Callable] = {}
        self.history: list[dict[str, Any]] = []
        self.best_map = -1.0
        self.epoch = 0
        #: Thresholds calibrated by the latest validation, stored in the exports made after it.
        self.calibration: Calibration | None = None

    # -- state -----------------------------------------------------------------------------
    def _variable_groups(self) -> dict[str, list]:
        groups = {"model": list(self.models.training_model.weights),
                  "optimizer": list(self.optimizer.variables)}
        if self.loss.center is not None:
            groups["centers"] = [self.loss.center.centers]
        return groups

    def save(self) -> None:
        if not self.is_chief:
            return
        state = {"history": self.history, "best_map": self.best_map,
                 "replicas": self.placement.replicas}
        save_checkpoint(self.layout.checkpoints, self.epoch, self._variable_groups(), state)

    def restore(self) -> bool:
        """Load the latest checkpoint of the run folder, if any; True when one was loaded."""
        path = latest_checkpoint(self.layout.checkpoints)
        if path is None:
            return False
        groups, state = load_checkpoint(path)
        replicas = int(state.get("replicas", 1))
        if replicas != self.placement.replicas:
            raise TrainingError(f"{path}: written by a run on {replicas} replica(s), this one "
                                f"has {self.placement.replicas}; a step's batch (replicas x P x "
                                f"K) would change, so resume on {replicas}")
        for name, variables in self._variable_groups().items():
            if name not in groups:
                raise TrainingError(f"{path}: has no '{name}' variables; was it written with "
                                    f"another config?")
            assign_group(variables, groups[name], f"{path}/{name}.npz")
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        self.best_map = float(state.get("best_map", -1.0))
        return True

    # -- one step --------------------------------------------------------------------------
    def compiled_step(self, frozen: bool) -> Callable:
        """The compiled step for the current phase: frozen backbone or all layers trained.
        It takes a step's per-replica batches and returns the loss terms averaged over the
        replicas."""
        if frozen not in self._steps:
            model, loss, optimizer = self.models.training_model, self.loss, self.optimizer
            variables = list(model.trainable_variables)
            strategy, statistics = self.placement.strategy, self._replica_statistics

            def replica_step(images, labels):
                replicas = tf.distribute.get_replica_context().num_replicas_in_sync
                with tf.GradientTape() as tape:
                    outputs = model(images, training=True)
                    total, terms = loss(labels, outputs[FEATURES], outputs[LOGITS])
                    # The optimizer sums the replicas' gradients: of the global batch's mean.
                    share = total / replicas
                grads = tape.gradient(share, variables)
                optimizer.apply_gradients(zip(grads, variables))
                loss.update_centers(labels, outputs[FEATURES])
                average_across_replicas(statistics)
                return terms

            @tf.function
            def step(images, labels):
                terms = strategy.run(replica_step, args=(images, labels))
                return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                        for name, value in terms.items()}

            self._steps[frozen] = step
        return self._steps[frozen]

    def _epoch_batches(self) -> Any:
        """This epoch's batches, each replica's its own (:mod:`reid.engine.distribute`)."""
        epoch = self.epoch
        return self.placement.strategy.distribute_datasets_from_function(
            lambda context: self.input.epoch(epoch, local_replicas(context)))

    def _set_frozen(self, frozen: bool) -> None:
        self.models.backbone.trainable = not frozen

    # -- epochs ----------------------------------------------------------------------------
    def train_epoch(self, writer) -> dict[str, float]:
        cfg = self.cfg
        frozen = self.epoch < cfg.model.freeze_backbone_epochs
        self._set_frozen(frozen)
        step = self.compiled_step(frozen)
        n = self.input.batches_per_epoch
        bar = keras.utils.Progbar(n, stateful_metrics=["lr"]) if self.progress else None
        sums: dict[str, float] = {}
        start = time.perf_counter()
        for i, (images, labels) in enumerate(self._epoch_batches(), start=1):
            terms = {k: float(v) for k, v in step(images, labels).items()}
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            if bar is not None:
                lr = float(self.schedule(self.optimizer.iterations))
                bar.update(i, list(terms.items()) + [("lr", lr)])
        seconds = time.perf_counter() - start
        stats = {k: v / n for k, v in sums.items()}
        stats["lr"] = float(self.schedule(self.optimizer.iterations - 1))
        stats["images_per_second"] = n * self.input.global_batch_size / seconds
        stats["seconds"] = seconds
        self.epoch += 1
        with writer.as_default(step=self.epoch):
            for k, v in stats.items():
                tf.summary.scalar(f"train/{k}", v)
        return stats

    def _train_epoch_of_all(self, writer) -> dict[str, float]:
        """:meth:`train_epoch`, with a worker that stopped or cannot be reached said in one
        line (the collectives abort on every other worker within seconds)."""
        try:
            return self.train_epoch(writer)
        except (tf.errors.UnavailableError, tf.errors.CancelledError) as exc:
            if self.placement.workers == 1:
                raise
            raise TrainingError(f"epoch {self.epoch + 1}: another worker stopped or cannot be "
                                f"reached ({type(exc).__name__}); start every worker again, "
                                f"resuming {self.run_dir}", field=("resume", "run_dir")
                                ) from None

    def embedder(self) -> Embedder:
        return Embedder(self.models.export_model(), self._spec())

    def _spec(self) -> dict[str, Any]:
        model = self.cfg.model
        spec = {"config_name": self.cfg.name, "epoch": self.epoch, "backbone": model.backbone,
                "alpha": model.alpha}
        return spec if self.calibration is None else with_calibration(spec, self.calibration)

    def validate(self, writer) -> dict[str, Any]:
        """Score the model on the validation split; on held-out identities (``data.val_ids``)
        also calibrate its match thresholds there, for the exports that follow."""
        plain, scored = features_as_queried_and_scored(self.embedder(), self.dataset,
                                                       self.cfg.eval, progress=self.progress)
        metrics = score_features(scored, self.cfg.eval)
        self.calibration = None
        if self.dataset.held_out:  # never on a test split
            try:
                self.calibration = calibrate_features(
                    plain, f"{VALIDATION_SOURCE} {self.dataset.held_out} training identities "
                           f"held out of {self.dataset.root}")
            except CalibrationError as exc:  # one identity has no impostor pairs
                self.log(f"  warning: no match threshold calibrated ({exc}); hold out more "
                         f"identities (data.val_ids) or use tools/calibrate.py")
            else:
                if far_key(AUTO_FAR) not in self.calibration.thresholds:
                    self.log(f"  warning: {self.calibration.impostor_pairs} validation impostor "
                             f"pairs cannot resolve a false-match rate of {AUTO_FAR:g}, so "
                             f"queries will rank without a match threshold; hold out more "
                             f"identities (data.val_ids) or use tools/calibrate.py")
        with writer.as_default(step=self.epoch):
            for k in ("mAP", "rank1", "rank5", "rank10", "mINP"):
                tf.summary.scalar(f"val/{k}", metrics[k])
                if "rerank" in metrics:
                    tf.summary.scalar(f"val_rerank/{k}", metrics["rerank"][k])
        return metrics

    def export_litert(self, model_dir: pathlib.Path) -> None:
        """Convert the final export for LiteRT, checked on validation crops (training ones
        when there are none). A conversion that fails is reported, not fatal: the Keras
        export serves, and tools/export.py can try again."""
        from reid.modeling.convert import convert_with_images, format_record
        from reid.modeling.spec import CONVERTED
        from reid.modeling.runtime import runtime_installed

        if not runtime_installed("litert"):  # no wheels for this platform (Windows)
            self.log("note: no LiteRT export (ai-edge-litert is not installed here); the Keras "
                     "model serves, or convert for ONNX Runtime with tools/export.py")
            return
        records = self.dataset.query + self.dataset.gallery or self.dataset.train
        try:
            record = convert_with_images(model_dir, CONVERTED["litert"],
                                         [r.path for r in records], log=self.log)
        except Exception as exc:  # noqa: BLE001 - the converter's errors are plain Exceptions
            # The run is done and exported; a conversion must not make it look failed.
            self.log(f"warning: no LiteRT export ({type(exc).__name__}: {first_line(exc)}); "
                     f"the Keras model serves")
            return
        self.log(format_record(record, model_dir))

    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``train.epochs`` (or stop after ``stop_after`` more epochs, for tests)."""
        cfg = self.cfg
        if self.placement.name != "default":
            self.log(f"training on {self.placement.describe()}: {self.input.global_batch_size} "
                     f"images a step")
        if resume and self.restore():
            self.log(f"resumed {self.run_dir} after epoch {self.epoch}")
        writer = (tf.summary.create_file_writer(str(self.layout.logs)) if self.is_chief
                  else tf.summary.create_noop_writer())
        evaluate = bool(self.dataset.query) and bool(self.dataset.gallery) and self.is_chief
        if evaluate and not self.dataset.held_out:
            self.log("warning: no training identities held out (data.val_ids: 0), so "
                     "validation and model_best/ use the test split (choices made there flatter "
                     "the test figures) and no match threshold is calibrated; hold out training "
                     "identities with data.val_ids, or calibrate later with tools/calibrate.py")
        done = 0
        best_dir = self.layout.best_model if self.layout.best_model.exists() else None
        durations: list[float] = []  # this process's epochs, validation and checkpoint included
        final_metrics = None
        while self.epoch < cfg.train.epochs and (stop_after is None or done < stop_after):
            left = time_left(durations, cfg.train.epochs - self.epoch)
            shown = "" if left is None else f" (about {format_duration(left)} left)"
            self.log(f"epoch {self.epoch + 1}/{cfg.train.epochs}{shown}")
            epoch_start = time.perf_counter()
            record: dict[str, Any] = {"epoch": self.epoch + 1,
                                      **self._train_epoch_of_all(writer)}
            self.history.append(record)
            self.save()  # before validation: a crash there must not cost the epoch's training
            last = self.epoch == cfg.train.epochs
            every = cfg.train.eval_every
            if evaluate and ((every and self.epoch % every == 0) or last):
                metrics = self.validate(writer)
                record["val"] = {k: v for k, v in metrics.items() if k != "rerank"}
                final_metrics = metrics if last else None
                self.log(f"  validation mAP {metrics['mAP']:.4f} rank-1 {metrics['rank1']:.4f}")
                collapsed = collapse_warning(metrics["embedding_spread"], "the validation images")
                if collapsed:
                    self.log(f"  {collapsed}")
                if metrics["mAP"] > self.best_map:
                    self.best_map = metrics["mAP"]
                    best_dir = self.layout.best_model
                    export_embedder(self.models.export_model(), best_dir, self._spec())
                self.save()  # again, with the validation in the history and the best mAP
            writer.flush()
            done += 1
            durations.append(time.perf_counter() - epoch_start)
        model_dir = None
        if self.epoch >= cfg.train.epochs and self.is_chief:
            model_dir = self.layout.model
            fingerprint, calibrated = _export_state(model_dir)
            if (done == 0 and fingerprint == weights_fingerprint(self.models.export_model())
                    and (calibrated or not (evaluate and self.dataset.held_out))):
                # A finished run resumed as it was: its export stands, with any calibration
                # tools/calibrate.py made since.
                self.log(f"{model_dir}: up to date")
            else:
                if done == 0 and evaluate and self.dataset.held_out:
                    # A finished run re-exported as another feature (model.neck_feat), or
                    # exported before calibration existed: calibrate what is exported now.
                    self.validate(writer)
                export_embedder(self.models.export_model(), model_dir, self._spec())
                atomic_write_text(self.layout.history, json.dumps(self.history, indent=1))
                if cfg.train.export_litert:
                    self.export_litert(model_dir)
        if self.placement.workers > 1:
            barrier(self.placement)  # the others wait for the chief's exports
            fingerprint = weights_fingerprint(self.models.training_model)[:16]
            self.log(f"trained weights {fingerprint} after epoch {self.epoch}")
        return TrainResult(self.run_dir, self.epoch, self.history, model_dir, best_dir,
                           final_metrics)
