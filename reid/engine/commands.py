"""Training and evaluation as commands: tools/train.py, tools/evaluate.py and the benchmarks
parse their arguments and call these."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from reid.calibration import Calibration
from reid.config import Config, ConfigError, load_config
from reid.run_layout import RunLayout, load_run_config

if TYPE_CHECKING:
    from reid.engine.supervisor import Supervision
    from reid.engine.trainer import TrainResult


def run_config_beside(model: pathlib.Path) -> pathlib.Path | None:
    """The ``config.yaml`` of the run an export belongs to: ``model`` is a run folder or one of
    its exports (``model/``, ``model_best/``); None for an export on its own."""
    saved = (RunLayout(folder).config for folder in (model, model.parent))
    return next((path for path in saved if path.is_file()), None)


def training_config(config_path: pathlib.Path | None, output: pathlib.Path | None,
                    overrides: Sequence[str] = (), resume: bool = False
                    ) -> tuple[Config, pathlib.Path]:
    """The config of a training run and its run folder, read without TensorFlow (so that
    tools/train.py can tell a multi-worker run before TensorFlow starts)."""
    if resume:
        if output is None:
            if config_path is None:
                raise ConfigError("resume needs the run folder, or the config whose run it is",
                                  field=("resume", "run_dir", "config"))
            output = pathlib.Path("runs") / config_path.stem
        return load_run_config(output, overrides), output
    if config_path is None:
        raise ConfigError("config is required, unless resuming a run folder",
                          field=("config", "resume", "run_dir"))
    cfg = load_config(config_path, overrides)
    return cfg, output or pathlib.Path("runs") / cfg.name


def run_training(config_path: pathlib.Path | None, output: pathlib.Path | None,
                 overrides: Sequence[str] = (), resume: bool = False,
                 progress: bool = True, supervision: Supervision | None = None) -> TrainResult:
    """Validate everything (config, data, model) before the first step, then train.

    ``supervision``: this process is a worker that tools/train.py supervises, told how far
    it got (:mod:`reid.engine.supervisor`).
    """
    from reid.data import load_dataset
    from reid.engine.distribute import make_placement
    from reid.engine.trainer import Trainer, prepare_run_dir, training_dataset

    cfg, output = training_config(config_path, output, overrides, resume)
    # Before any other TensorFlow work: a multi-worker strategy sets up the runtime's
    # collectives, and waits here for every worker to start.
    placement = make_placement(cfg.train.strategy, log=lambda line: print(line, flush=True),
                               cluster_timeout=cfg.train.cluster_timeout_seconds,
                               supervision=supervision)
    dataset = training_dataset(load_dataset(cfg.data), cfg)
    if placement.is_chief:
        print(dataset.summary())
    run_dir = prepare_run_dir(output, cfg, resume, write=placement.is_chief)
    if supervision is not None:
        supervision.training(run_dir)
    trainer = Trainer(cfg, dataset, run_dir, progress=progress, placement=placement)
    return trainer.fit(resume=resume)


def run_evaluation(model: pathlib.Path | None, data_root: pathlib.Path | None,
                   dataset_layout: str | None = None, features_path: pathlib.Path | None = None,
                   rerank: bool = False, overrides: Sequence[str] = (),
                   save_features: pathlib.Path | None = None,
                   progress: bool = True, runtime: str = "auto",
                   save_roc: pathlib.Path | None = None, draws: int = 1) -> dict:
    """Score an exported model on a dataset's query/gallery split, or saved features.

    The evaluation settings come from the model's run folder (``config.yaml``) when there is
    one, so a run is scored as it was validated; ``overrides`` and ``rerank`` adjust them. A
    calibrated model's decisions are checked too (``calibrated``:
    :func:`reid.engine.evaluator.calibrated_figures`), the open-set figures over ``draws``
    seeded draws of the identities left out of the gallery.
    """
    from reid.config import check_override_sections, config_from_dict
    from reid.calibration import spec_calibration
    from reid.engine.evaluator import (Features, calibrated_figures,
                                       features_as_queried_and_scored, score_features)

    check_override_sections(overrides, ["eval"] if features_path else ["data", "eval"],
                            "evaluation" + (" of saved features" if features_path else ""))
    if save_roc is not None and save_roc.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"ROC picture {save_roc}: expected a .png or .jpg file name",
                          field="save_roc")
    if save_roc is not None and not save_roc.parent.is_dir():
        raise ConfigError(f"ROC picture {save_roc}: folder {save_roc.parent} not found",
                          field="save_roc")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws {draws}: expected a positive number of draws of the "
                          f"identities left out of the gallery", field="draws")
    if rerank:
        overrides = [*overrides, "eval.rerank=true"]
    cfg = Config()
    run_config = None if model is None else run_config_beside(model)
    if run_config is not None:
        cfg = load_config(run_config, overrides)
    elif overrides:
        cfg = config_from_dict({}, "<defaults>", overrides)
    calibration = None
    if features_path is not None:
        features = Features.load(features_path)
    else:
        from reid.data import load_dataset
        from reid.data.pipeline import check_images
        from reid.modeling import Embedder, resolve_model_dir

        if model is None or data_root is None:
            raise ConfigError("evaluation needs a model and a dataset, or saved features",
                              field=("model", "data_root", "features"))
        data = dataclasses.replace(cfg.data, root=str(data_root),
                                   dataset=dataset_layout or cfg.data.dataset)
        dataset = load_dataset(data, splits=("query", "gallery"))  # no training split needed
        check_images([r.path for r in dataset.query + dataset.gallery])
        model_dir = resolve_model_dir(model)
        embedder = Embedder.load(model_dir, runtime)
        calibration = spec_calibration(embedder.spec, str(model_dir))
        # Scored as cfg.eval says; calibrated thresholds are checked as queries score (plain).
        plain, features = features_as_queried_and_scored(embedder, dataset, cfg.eval, progress)
    if save_features is not None:
        features.save(save_features)
    from reid.evaluation.verification import verification_summary

    metrics = score_features(features, cfg.eval)
    labels = (features.q_pids, features.g_pids, features.q_camids, features.g_camids)
    metrics["verification"] = verification_summary(features.query, features.gallery, *labels)
    if calibration is not None:
        metrics["calibrated"] = calibrated_figures(calibration, plain, draws=draws)
    if save_roc is not None:
        from reid.engine.roc_picture import save_roc as draw
        from reid.evaluation.verification import REPORTED_FARS, pair_scores, roc_curve

        far, tar, _ = roc_curve(*pair_scores(features.query, features.gallery, *labels))
        marks = {rate: metrics["verification"][f"tar@far{rate:g}"] for rate in REPORTED_FARS
                 if metrics["verification"][f"tar@far{rate:g}"] is not None}
        draw(save_roc, far, tar, marks, title=f"ROC, EER {metrics['verification']['eer']:.4f}")
    return metrics


def run_calibration(model: pathlib.Path, data_root: pathlib.Path,
                    dataset_layout: str | None = None, runtime: str = "auto",
                    progress: bool = True) -> tuple[pathlib.Path, Calibration]:
    """Calibrate the match thresholds of an export on labelled data and store them in its spec.

    The pairs are those the ranking protocol scores between the dataset's query and gallery
    splits, embedded as queries are (no flip). Only the spec changes (:func:`store_calibration`);
    the calibration it replaces moves to its ``calibration_history``.
    """
    from reid.data import load_dataset
    from reid.data.pipeline import check_images
    from reid.engine.evaluator import calibrate_features, features_of_records
    from reid.modeling import Embedder, resolve_model_dir
    from reid.modeling.spec import FLOAT32

    model_dir = resolve_model_dir(model)
    run_config = run_config_beside(model_dir)
    cfg = load_config(run_config) if run_config is not None else Config()
    data = dataclasses.replace(cfg.data, root=str(data_root),
                               dataset=dataset_layout or cfg.data.dataset)
    dataset = load_dataset(data, splits=("query", "gallery"))  # no training split needed
    if not dataset.query or not dataset.gallery:
        raise ConfigError(f"{data_root}: calibration needs labelled query and gallery images; "
                          f"found {len(dataset.query)} and {len(dataset.gallery)}")
    check_images([r.path for r in dataset.query + dataset.gallery])
    embedder = Embedder.load(model_dir, runtime)
    if embedder.precision != FLOAT32:
        raise ConfigError(f"runtime {runtime}: calibrate with a float32 runtime (auto, keras, "
                          f"litert or onnx); the thresholds serve every runtime of its "
                          f"fingerprint", field="runtime")
    eval_cfg = dataclasses.replace(cfg.eval, flip=False)
    features = features_of_records(embedder, dataset.query, dataset.gallery, eval_cfg, progress)
    identities = len(set(features.q_pids.tolist()))
    calibration = calibrate_features(features, f"{data_root} ({identities} identities, "
                                               f"tools/calibrate.py)")
    store_calibration(model_dir, calibration)
    return model_dir, calibration


def run_validation_calibration(run: pathlib.Path, data_root: pathlib.Path | None = None,
                               runtime: str = "auto", progress: bool = True
                               ) -> tuple[pathlib.Path, Calibration]:
    """Calibrate a training run's export again on the run's own validation identities (the
    ``data.val_ids`` its training held out, drawn as training drew them), as its last
    validation did: for a run calibrated by older code, without training or resuming it.
    ``data_root`` replaces the config's when the data has moved."""
    from reid.data import load_dataset
    from reid.engine.evaluator import calibrate_features, features_of_records
    from reid.engine.trainer import VALIDATION_SOURCE, training_dataset
    from reid.modeling import Embedder, resolve_model_dir
    from reid.modeling.spec import FLOAT32

    model_dir = resolve_model_dir(run)
    run_config = run_config_beside(model_dir)
    if run_config is None:
        raise ConfigError(f"{run}: not a training run (no config.yaml beside its export); "
                          f"calibrate an exported model on labelled images instead",
                          field="model")
    overrides = [] if data_root is None else [f"data.root={data_root}"]
    cfg = load_config(run_config, overrides)
    if not cfg.data.val_ids:
        raise ConfigError(f"{run_config}: data.val_ids is 0, the run held out no validation "
                          f"identities to calibrate on; calibrate on labelled images instead",
                          field="model")
    dataset = training_dataset(load_dataset(cfg.data, splits=("train",)), cfg)
    embedder = Embedder.load(model_dir, runtime)
    if embedder.precision != FLOAT32:
        raise ConfigError(f"runtime {runtime}: calibrate with a float32 runtime (auto, keras, "
                          f"litert or onnx); the thresholds serve every runtime of its "
                          f"fingerprint", field="runtime")
    features = features_of_records(embedder, dataset.query, dataset.gallery,
                                   dataclasses.replace(cfg.eval, flip=False), progress)
    calibration = calibrate_features(features, f"{VALIDATION_SOURCE} {dataset.held_out} "
                                               f"training identities held out of "
                                               f"{cfg.data.root}")
    store_calibration(model_dir, calibration)
    return model_dir, calibration


def store_calibration(model_dir: pathlib.Path, calibration: Calibration) -> None:
    """Write ``calibration`` into the export's spec, atomically and one writer at a time, so
    a calibration made meanwhile by another process ends in the history, not lost."""
    from reid.calibration import with_calibration
    from reid.modeling.spec import SPEC_FILE, read_spec, write_spec
    from reid.utils.io import exclusive_update

    with exclusive_update(model_dir / SPEC_FILE):
        write_spec(model_dir, with_calibration(read_spec(model_dir), calibration))


def run_export(model: pathlib.Path, fmt_name: str, quantize: str | None = None,
               images: Sequence[str] | None = None, calibration: Sequence[str] | None = None,
               log=print) -> str:
    """Convert the export of ``model`` (a run or export folder); returns what to print.

    The crops it is checked on are ``images``, else the run's query and gallery splits; int8
    calibrates on ``calibration``, else the run's training split (as the issue of choices
    on validation data asks, never on a test split the user scores on: the check only
    compares two runtimes of one model, it chooses nothing).
    """
    from reid.index.build import collect_images
    from reid.modeling import resolve_model_dir
    from reid.modeling.convert import convert_with_images, format_record
    from reid.modeling.spec import converted_format

    fmt = converted_format(fmt_name, quantize)
    model_dir = resolve_model_dir(model)
    run_config = run_config_beside(model_dir)
    dataset = None
    if (images is None or (calibration is None and quantize == "int8")) and run_config is None:
        int8 = quantize == "int8"
        raise ConfigError(f"{model_dir}: no run config beside the export to find crops in; give "
                          f"the images to check the conversion on"
                          + (" and to calibrate int8 on" if int8 else ""),
                          field=("images", "calibration") if int8 else "images")
    if run_config is not None and (images is None or (calibration is None
                                                      and quantize == "int8")):
        from reid.data import load_dataset

        dataset = load_dataset(load_config(run_config).data)
    parity = (collect_images(images).paths if images is not None
              else [r.path for r in dataset.query + dataset.gallery])
    if not parity:
        raise ConfigError(f"{run_config}: the run's dataset has no query or gallery images to "
                          f"check the conversion on; give the images to check it on",
                          field="images")
    calibrate = None
    if quantize == "int8":
        calibrate = (collect_images(calibration).paths if calibration is not None
                     else [r.path for r in dataset.train])
    record = convert_with_images(model_dir, fmt, parity, calibrate, log)
    return format_record(record, model_dir)
