"""Adapting a trained run to a new site from its unlabelled crops: AdaBN, then self-training.

A model trained on one set of cameras fails on another (issue 32: 0.70 mAP at home, 0.05 on
CUHK03). Two cures that need no labels, in the order they are applied:

1. **AdaBN** (Li et al., 2016; :func:`adapt_batchnorm`): every batch norm's moving statistics
   are set to those of its input on the target images. Seconds, and the weights stay.
2. **Self-training rounds** (SpCL, Cluster Contrast, MMT): embed the target crops with the
   current model, cluster them into pseudo-identities
   (:func:`reid.engine.pseudo_labels.pseudo_identities`: k-reciprocal Jaccard distance,
   DBSCAN, footage's must-link tracks and cannot-link co-occurrences), and train on those with
   training's own machinery (:class:`reid.engine.trainer.Trainer`: P x K batches, triplet +
   cross-entropy), a new classifier each round sized to the round's identities, everything
   else carried over from the round before. Crops the clustering leaves out are not trained on.

:func:`adapt_run` writes a complete run folder (:class:`reid.run_layout.RunLayout`), so every
tool takes it as it takes a trained one: ``config.yaml`` (the source run's config, its
``adapt`` section saying how, from what and on what), ``checkpoints/`` (one per round, the
weights every round carries), ``model/`` (exported after every round, so an interrupted run
leaves the last finished round usable; at the end converted for LiteRT and, given footage
the adaptation did not train on, calibrated on its co-occurring tracks), ``history.json`` (a
record per round) and ``pseudo_labels/`` (each round's labels, to inspect). The source run is
only read.

The site calibration never comes from the crops adapted on: their co-occurring tracks are the
rounds' cannot-link constraints, which training pushes apart, so their impostor scores are
lower than the site's and the thresholds read off them too low (measured: the demo model
adapted on 121 synthetic footage tracks and calibrated on them reported 10 of 10 absent people
present where 0.1 was asked). As training holds out validation identities, the calibration
needs footage of the site the adaptation has not seen (another day's): ``calibrate_on``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from reid.calibration import SPEC_KEY, Calibration, CalibrationError, with_calibration
from reid.config import (AdaptConfig, Config, config_from_dict, load_saved_config,
                         parse_override, save_config)
from reid.engine.checkpoint import (assign_group, latest_checkpoint, load_checkpoint,
                                    save_checkpoint)
from reid.engine.trainer import format_duration, time_left
from reid.errors import ReidError
from reid.modeling import Embedder, build_reid_model, export_embedder, weights_fingerprint
from reid.modeling.errors import first_line
from reid.modeling.reid_model import (CENTERING_LAYER, CLASSIFIER_LAYER, PART_CLASSIFIER_LAYER,
                                      ReidModels)
from reid.run_layout import RunLayout
from reid.utils.io import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from reid.index.site_calibration import FootageCalibration
    from reid.index.target import TargetCrops

#: Layers sized to a round's identities: new each round, never carried or checkpointed.
CLASSIFIERS = (CLASSIFIER_LAYER, PART_CLASSIFIER_LAYER)
#: What a resumed adaptation may change: how long it runs, whether it converts, and the
#: records of where it came from (checked by fingerprint and digest instead).
RESUMABLE_CHANGES = {"adapt.rounds", "adapt.minutes", "adapt.source", "adapt.target",
                     "train.export_litert"}
#: The folder of each round's pseudo-labels in the run folder.
PSEUDO_LABELS = "pseudo_labels"
#: Said when footage was adapted on and no other footage was given to calibrate on.
NOT_ON_TRAINED_FOOTAGE = (
    "no site calibration: the footage adapted on cannot calibrate the model trained on it; "
    "re-index footage it has not seen with tools/reindex.py and run tools/calibrate.py "
    "--footage on it, or pass --calibrate-on")


class AdaptError(ReidError, RuntimeError):
    """Adaptation cannot start or continue; the message says why and what to do."""


@dataclasses.dataclass
class AdaptResult:
    run_dir: pathlib.Path
    #: Self-training rounds finished (0: AdaBN only, or none yet).
    rounds: int
    #: A record per round; round 0 is the AdaBN step.
    history: list[dict[str, Any]]
    model_dir: pathlib.Path
    #: The site calibration stored in the export (from held-out footage), else None.
    calibration: Calibration | None
    #: Why it stopped before ``adapt.rounds``, or None.
    stopped: str | None = None


# --- AdaBN ------------------------------------------------------------------------------------

def batch_norm_layers(model: keras.Layer) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model``, nested models included, each once."""
    found: dict[int, keras.layers.BatchNormalization] = {}

    def visit(layer: keras.Layer) -> None:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.setdefault(id(layer), layer)
        for sub in getattr(layer, "layers", ()):
            visit(sub)

    visit(model)
    return list(found.values())


class _Moments:
    """Count, mean and sum of squared deviations per channel over batches, in float64 (Chan,
    Golub and LeVeque's pairwise update): the exact mean and variance of every value seen, not
    a momentum average."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = np.zeros(0)
        self.squares = np.zeros(0)

    def add(self, count: int, mean: np.ndarray, variance: np.ndarray) -> None:
        mean = np.asarray(mean, np.float64)
        squares = np.asarray(variance, np.float64) * count
        if self.count == 0:
            self.count, self.mean, self.squares = count, mean, squares
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.squares = self.squares + squares + delta ** 2 * (self.count * count / total)
        self.count = total

    @property
    def variance(self) -> np.ndarray:
        return self.squares / self.count


def _batch_statistics_call(layer: keras.layers.BatchNormalization, moments: _Moments
                           ) -> Callable[..., Any]:
    """A ``call`` for ``layer`` that records the moments of its input and normalises it by
    them, as training-mode batch norm does, but without updating its moving statistics."""
    def call(inputs: Any, training: Any = None, mask: Any = None) -> Any:
        x = keras.ops.cast(inputs, "float32")
        axis = layer.axis % len(x.shape)
        axes = [i for i in range(len(x.shape)) if i != axis]
        mean, variance = keras.ops.moments(x, axes)
        moments.add(int(np.prod([x.shape[i] for i in axes])),
                    keras.ops.convert_to_numpy(mean), keras.ops.convert_to_numpy(variance))
        out = keras.ops.batch_normalization(
            x, mean, variance, axis=axis, epsilon=layer.epsilon,
            offset=layer.beta if layer.center else None,
            scale=layer.gamma if layer.scale else None)
        return keras.ops.cast(out, inputs.dtype)

    return call


def adapt_batchnorm(model: keras.Model, batches: Iterable[np.ndarray | tf.Tensor]) -> int:
    """AdaBN: set every batch norm's moving mean and variance to the mean and (population)
    variance of its input over every pixel of every target image in ``batches`` (the model's
    input, normalised); returns the number of layers set.

    Each layer's input is taken as training computes it: the model runs in inference mode
    (dropout off), except that every batch norm normalises by the statistics of the batch in
    hand, so a layer sees its input as the target's statistics upstream would shape it. The
    moments are accumulated over the batches in float64 (exact over all of them, not a
    momentum average), so shuffled batches of ordinary size give statistics that do not depend
    on how the images were batched beyond that upstream normalisation. A layer the batches never
    reach keeps its statistics. The model is changed only once every batch has run.

    Runs eagerly: each batch norm's ``call`` is replaced on the instance for the pass (Keras
    has no forward hooks) and restored after.
    """
    norms = batch_norm_layers(model)
    moments = [_Moments() for _ in norms]
    try:
        for layer, layer_moments in zip(norms, moments):
            layer.call = _batch_statistics_call(layer, layer_moments)
        for batch in batches:
            model(batch, training=False)
    finally:
        for layer in norms:
            if "call" in vars(layer):
                del layer.call
    reset = 0
    for layer, layer_moments in zip(norms, moments):
        if layer_moments.count:
            layer.moving_mean.assign(layer_moments.mean.astype(np.float32))
            layer.moving_variance.assign(layer_moments.variance.astype(np.float32))
            reset += 1
    return reset


# --- the network ------------------------------------------------------------------------------

def carried_weights(models: ReidModels) -> list[Any]:
    """The weights a round hands to the next (and a checkpoint keeps): every layer of the
    training model but the classifiers, in layer order. The same for every round, since only
    the classifiers' size depends on the round's identities."""
    return [weight for layer in models.training_model.layers if layer.name not in CLASSIFIERS
            for weight in layer.weights]


def carry_weights(source: ReidModels, target: ReidModels) -> None:
    """Copy :func:`carried_weights` of ``source`` into ``target`` (the same architecture)."""
    assign_group(carried_weights(target), [keras.ops.convert_to_numpy(w)
                                           for w in carried_weights(source)],
                 "the previous round's weights")


def load_source_weights(exported: keras.Model, models: ReidModels, where: str) -> None:
    """Copy the weights of an exported embedding model into ``models`` layer by name (the
    export holds every layer but the classifiers; the centering layer's mean is set again at
    export). A layer of the export the config does not build is an AdaptError."""
    layers = {layer.name: layer for layer in models.training_model.layers}
    for layer in exported.layers:
        if not layer.weights or layer.name == CENTERING_LAYER:
            continue
        if layer.name not in layers:
            raise AdaptError(f"{where}: the export has a layer {layer.name!r} that the run's "
                             f"config.yaml does not build; was the export made by this run?")
        try:
            layers[layer.name].set_weights(layer.get_weights())
        except ValueError as exc:
            raise AdaptError(f"{where}: layer {layer.name!r} of the export does not fit the "
                             f"network the run's config.yaml builds ({first_line(exc)})"
                             ) from None


def load_source_heads(checkpoints: pathlib.Path, models: ReidModels) -> pathlib.Path | None:
    """Copy into ``models`` the source run's latest checkpoint, classifiers left out; the path
    read, or None when the run has no checkpoint.

    The export leaves out more than the classifiers: with ``model.neck_feat: before`` the BNNeck,
    with ``model.parts`` the stripe bottleneck and its BNNeck. Started fresh, they would be
    trained from random weights, and the stripe heads' cross-entropy would reach the backbone
    through them. A training run's checkpoint holds every weight of its training model (its own
    classifiers, whose size is its number of identities); an adapted run's holds
    :func:`carried_weights`. The export is loaded over it (:func:`load_source_weights`), so the
    layers it holds are the export's."""
    path = latest_checkpoint(checkpoints)
    if path is None:
        return None
    groups, _ = load_checkpoint(path)
    arrays = groups.get("model", [])
    carried = carried_weights(models)
    if len(arrays) == len(carried):
        assign_group(carried, arrays, f"{path}/model.npz")
        return path
    variables = list(models.training_model.weights)
    if len(arrays) != len(variables):
        raise AdaptError(f"{path}/model.npz: {len(arrays)} weights, the network the run's "
                         f"config.yaml builds has {len(variables)}; was it written by this run?",
                         field="source")
    skip = {id(w) for layer in models.training_model.layers if layer.name in CLASSIFIERS
            for w in layer.weights}
    for variable, array in zip(variables, arrays):
        if id(variable) in skip:
            continue
        if tuple(variable.shape) != array.shape:
            raise AdaptError(f"{path}/model.npz: weight {getattr(variable, 'path', '?')} has "
                             f"shape {array.shape}, the network {tuple(variable.shape)}; was it "
                             f"written by this run?", field="source")
        variable.assign(array)
    return path


def _build(cfg: Config, num_classes: int) -> ReidModels:
    """The network of ``cfg`` with placeholder weights (they are always overwritten)."""
    model_cfg = dataclasses.replace(cfg.model, weights=None, zero_init_residual=False)
    return build_reid_model(model_cfg, (cfg.data.height, cfg.data.width, 3), num_classes)


# --- the run folder ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Source:
    run: pathlib.Path
    model_dir: pathlib.Path
    config: pathlib.Path
    fingerprint: str


def _source(source: str | os.PathLike) -> _Source:
    """The source run's export and config, checked (read only)."""
    from reid.engine.commands import run_config_beside
    from reid.modeling import resolve_model_dir
    from reid.modeling.spec import read_spec

    model_dir = resolve_model_dir(source)
    config = run_config_beside(model_dir)
    if config is None:
        raise AdaptError(f"{source}: not a training run (no config.yaml beside its export); "
                         f"adaptation trains the network its config builds", field="source")
    return _Source(config.parent, model_dir, config, str(read_spec(model_dir)["fingerprint"]))


def _inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_output(source: str | os.PathLike, output: str | os.PathLike, resume: bool) -> None:
    """Refuse, before any work, an output that is (in) the source run, or one that exists
    already unless resuming: the source is never modified, and no folder is overwritten."""
    out = pathlib.Path(output)
    src = _source(source)
    if _inside(out, src.run) or _inside(src.run, out):
        raise AdaptError(f"{out}: is the source run {src.run} or holds it; the source is never "
                         f"modified: choose another output folder", field="output")
    if resume or not out.exists():
        return
    if not out.is_dir() or any(out.iterdir()):
        raise AdaptError(f"{out}: already exists; resume its adaptation or choose another "
                         f"output folder", field=("resume", "output"))


def _target_digest(target: TargetCrops) -> str:
    """What a resumed adaptation must find the same: the crops, their cameras, tracks and
    cannot-link pairs."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(target.paths), list(target.cameras), list(target.tracks),
                              sorted(map(list, target.cannot_link))]).encode())
    return digest.hexdigest()


def _changed_keys(old: Config, new: Config) -> list[str]:
    old_dict, new_dict = old.to_dict(), new.to_dict()
    return [f"{section}.{key}" for section, values in new_dict.items()
            for key, value in values.items()
            if old_dict[section][key] != value and f"{section}.{key}" not in RESUMABLE_CHANGES]


def adapt_config(source: _Source, target: TargetCrops, layout: RunLayout,
                 settings: AdaptConfig | None, overrides: Sequence[str], resuming: bool
                 ) -> Config:
    """The config of the adapted run: the source run's (resuming: the adapted run's own), with
    ``overrides``, and ``settings`` (else the defaults, or the resumed run's) as its ``adapt``
    section, recording the source and the target."""
    for text in overrides:
        (section, _), _ = parse_override(text)
        if section == "model":
            raise AdaptError(f"override {text!r}: the network is the source run's; adaptation "
                             f"takes no 'model' overrides", field="overrides")
        if section == "adapt" and settings is not None:
            raise AdaptError(f"override {text!r}: the adapt settings are given already",
                             field="overrides")
    if resuming:
        base = load_saved_config(layout.config)
    else:
        base = dataclasses.replace(load_saved_config(source.config), adapt=AdaptConfig())
    raw = base.to_dict()
    if settings is not None:
        raw["adapt"] = dataclasses.asdict(settings)
    cfg = config_from_dict(raw, str(layout.config if resuming else source.config), overrides,
                           name=layout.root.name or "adapted")
    return dataclasses.replace(cfg, adapt=dataclasses.replace(
        cfg.adapt, source=str(source.run), target=target.source))


def _readable(target: TargetCrops, skip_bad: bool, field: str = "target",
              use: str = "adapt on") -> TargetCrops:
    """``target`` once its every image decodes (or, with ``skip_bad``, without those that do
    not, with a warning listing them)."""
    from reid.data.pipeline import check_images

    if not len(target.paths):
        raise AdaptError(f"{target.source}: no crops to {use}", field=field)
    good = set(check_images(list(target.paths), skip_bad))
    if len(good) == len(target.paths):
        return target
    keep = [i for i, path in enumerate(target.paths) if path in good]
    tracks = {target.tracks[i] for i in keep}
    return dataclasses.replace(
        target, paths=tuple(target.paths[i] for i in keep),
        cameras=tuple(target.cameras[i] for i in keep),
        tracks=tuple(target.tracks[i] for i in keep),
        cannot_link=frozenset(p for p in target.cannot_link if p[0] in tracks and p[1] in tracks))


def check_held_out(target: TargetCrops, calibrate_on: TargetCrops) -> None:
    """Refuse, before any work, a calibration target that shares a crop with the target adapted
    on (see the module docstring), naming its index, or one with no two tracks seen at once."""
    folders: dict[str, str] = {}

    def real(path: str) -> str:  # one realpath per folder: footage has thousands of crops
        folder, name = os.path.split(path)
        if folder not in folders:
            folders[folder] = os.path.realpath(folder or ".")
        return os.path.join(folders[folder], name)

    adapted_on = {real(p) for p in target.paths}
    shared = [i for i, p in enumerate(calibrate_on.paths) if real(p) in adapted_on]
    if shared:
        track = calibrate_on.tracks[shared[0]]
        where = (calibrate_on.track_keys[track][0] if 0 <= track < len(calibrate_on.track_keys)
                 else calibrate_on.source)
        raise AdaptError(f"{where}: adapted on as well ({len(shared):,} of its "
                         f"{len(calibrate_on):,} crops); the footage adapted on cannot calibrate "
                         f"the model trained on it (training pushed its tracks seen at once "
                         f"apart): calibrate on footage of the site it has not seen, e.g. "
                         f"another day's", field="calibrate_on")
    if not calibrate_on.cannot_link:
        raise AdaptError(f"{calibrate_on.source}: no two tracks seen at once in one camera, so "
                         f"no impostor pairs to calibrate on", field="calibrate_on")


# --- embedding --------------------------------------------------------------------------------

def _spec(cfg: Config, source: _Source, rounds: int, target: TargetCrops) -> dict[str, Any]:
    return {"config_name": cfg.name, "epoch": rounds, "backbone": cfg.model.backbone,
            "alpha": cfg.model.alpha,
            "adapted": {"source": str(source.model_dir), "source_fingerprint": source.fingerprint,
                        "rounds": rounds, "target": target.source}}


def embed_target(models: ReidModels, target: TargetCrops, batch_size: int, flip: bool,
                 progress: bool) -> np.ndarray:
    """The target crops embedded by the current model as the rest of reid embeds (an
    :class:`Embedder`), with ``flip``: the mean of each crop and its mirror image."""
    from reid.data.records import ImageRecord
    from reid.engine.evaluator import embed_records

    embedder = Embedder(models.export_model())
    records = [ImageRecord(path, 0, camid) for path, camid in zip(target.paths, target.cameras)]
    return embed_records(embedder, records, batch_size, flip, progress)


def _normalised_batches(models: ReidModels, paths: Sequence[str], batch_size: int,
                        seed: int) -> Iterator[np.ndarray]:
    """The crops at ``paths`` in seeded random order (a batch of one track or camera would
    normalise the layers upstream by that track's statistics), as the network's input."""
    from reid.data.pipeline import eval_dataset

    embedder = Embedder(models.export_model())
    height, width = embedder.input_size
    order = np.random.default_rng(seed).permutation(len(paths))
    for batch in eval_dataset([paths[i] for i in order], height, width, batch_size):
        yield embedder.preprocess(batch.numpy())


# --- one round --------------------------------------------------------------------------------

def round_config(cfg: Config, identities: int, round_number: int) -> Config:
    """The training config of one round: the run's, trained as ``adapt`` says (a constant
    rate, no warm-up, no validation, P at most the round's identities), seeded per round."""
    settings = cfg.adapt
    data = dataclasses.replace(cfg.data, ids_per_batch=min(cfg.data.ids_per_batch, identities),
                               val_ids=0, seed=cfg.data.seed + round_number)
    model = dataclasses.replace(cfg.model, weights=None, zero_init_residual=False,
                                freeze_backbone_epochs=0)
    train = dataclasses.replace(cfg.train, epochs=settings.epochs_per_round,
                                steps_per_epoch=settings.steps_per_epoch, lr=settings.lr,
                                warmup_epochs=0, schedule="step", lr_steps=[], eval_every=0,
                                export_litert=False, strategy="default",
                                seed=cfg.train.seed + round_number)
    return dataclasses.replace(cfg, data=data, model=model, train=train)


def _pseudo_dataset(target: TargetCrops, labels: np.ndarray, root: str):
    from reid.data.records import ImageRecord, make_dataset

    train = [ImageRecord(path, int(label), camid) for path, camid, label
             in zip(target.paths, target.cameras, labels) if label >= 0]
    return make_dataset("pseudo-identities", root, train, (), ())


def _save_pseudo_labels(layout: RunLayout, round_number: int, target: TargetCrops,
                        labels: np.ndarray) -> None:
    path = layout.root / PSEUDO_LABELS / f"round-{round_number:04d}.npz"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, labels=labels, paths=np.array(target.paths, dtype=str),
                     tracks=np.array(target.tracks, dtype=np.int64))


class _Clock:
    """The time budget of one call (``adapt.minutes``; 0 = none) and the estimates it is
    checked with."""

    def __init__(self, minutes: float) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + minutes * 60 if minutes else None
        self.rounds: list[float] = []  # whole rounds
        self.epochs: list[float] = []
        self.overheads: list[float] = []  # a round's embedding, clustering and saving

    def fits(self, *estimates: float | None) -> bool:
        """Whether work expected to take the sum of ``estimates`` (None: unknown, taken as 0)
        ends within the budget."""
        needed = sum(e for e in estimates if e is not None)
        return self.deadline is None or time.perf_counter() + needed <= self.deadline

    def left(self, rounds_left: int, epochs_left: int) -> str:
        """``" (about 3 min left)"`` from the rounds and epochs timed so far, or ``""``."""
        parts = [time_left(self.rounds, rounds_left) if rounds_left else 0.0,
                 time_left(self.epochs, epochs_left) if epochs_left else 0.0]
        if any(part is None for part in parts):
            return ""
        text = f"about {format_duration(sum(parts))} left"
        if self.deadline is not None:
            text += f", budget {format_duration(self.deadline - time.perf_counter())} left"
        return f" ({text})"


# --- the whole adaptation ---------------------------------------------------------------------

def adapt_run(source: str | os.PathLike, target: TargetCrops, output: str | os.PathLike,
              settings: AdaptConfig | None = None, *, overrides: Sequence[str] = (),
              calibrate_on: TargetCrops | None = None, resume: bool = False,
              log: Callable[[str], None] = print, progress: bool = True) -> AdaptResult:
    """Adapt the trained run ``source`` to ``target``'s crops into the new run folder
    ``output`` (the module docstring says what it holds); ``source`` is only read.

    ``settings``: the ``adapt`` section (None: the defaults, or the resumed run's, with any
    ``adapt.*`` of ``overrides``); ``overrides``: ``section.key=value`` for the other sections
    of the source run's config (not ``model``: the network is the source's). ``resume``:
    continue ``output`` after its last finished round (with more rounds or another time budget
    if ``settings`` say so; anything else that changed is refused). Crops the clustering leaves
    out are not trained on; a round that finds fewer than 2 pseudo-identities ends the rounds.

    ``calibrate_on``: footage of the site the adaptation does not train on (another day's), whose
    co-occurring tracks calibrate the final model (:func:`reid.index.site_calibration.
    calibrate_track_vectors`); one that shares a crop with ``target`` is refused. None: the
    export holds no thresholds (the source's are of another domain, and the target's own
    co-occurring tracks were trained apart), and the log says how to calibrate it. It is not
    part of what a resume must find the same: the call that finishes a run may bring it, and
    a finished run resumed with it is calibrated again.
    """
    from reid.engine.trainer import Trainer

    check_output(source, output, resume)
    if calibrate_on is not None:
        check_held_out(target, calibrate_on)
    src = _source(source)
    layout = RunLayout(output)
    resuming = resume and layout.has_checkpoints
    if resume and not resuming:
        log(f"{layout.root}: nothing to resume; starting")
    cfg = adapt_config(src, target, layout, settings, overrides, resuming)
    settings = cfg.adapt
    target = _readable(target, cfg.data.skip_bad_images)
    if calibrate_on is not None:
        calibrate_on = _readable(calibrate_on, cfg.data.skip_bad_images, "calibrate_on",
                                 "calibrate on")
    digest = _target_digest(target)
    log(f"source {src.model_dir}: fingerprint {src.fingerprint[:12]}")
    log(f"target: {target.summary()}")
    if calibrate_on is not None:
        log(f"to calibrate on (not adapted on): {calibrate_on.summary()}")
    clock = _Clock(settings.minutes)
    models = _build(cfg, num_classes=1)
    tracks = np.asarray(target.tracks, np.int64)
    history: list[dict[str, Any]] = []
    done = -1  # the last finished round; 0 is AdaBN
    trained = False  # whether this call changed the weights
    if resuming:
        done, history = _restore(layout, cfg, models, src, digest)
        log(f"resumed {layout.root} after round {done}")
    else:
        heads = load_source_heads(RunLayout(src.run).checkpoints, models)
        if heads is None:
            log(f"warning: {src.run} has no checkpoint: the layers its export leaves out (with "
                f"model.neck_feat before or model.parts: the necks) start fresh")
        exported = Embedder.load(src.model_dir, "keras")
        load_source_weights(exported.keras_model, models, str(src.model_dir))
        if weights_fingerprint(models.export_model()) != src.fingerprint:
            raise AdaptError(f"{src.model_dir}: the network {src.config} builds does not "
                             f"reproduce the export; was the export made by this run?",
                             field="source")
        del exported
        layout.root.mkdir(parents=True, exist_ok=True)  # only once the source has loaded
        save_config(cfg, layout.config)
        record: dict[str, Any] = {"round": 0, "adabn": None}
        if settings.adabn:
            start = time.perf_counter()
            layers = adapt_batchnorm(models.training_model, _normalised_batches(
                models, target.paths, cfg.eval.batch_size, cfg.data.seed))
            seconds = time.perf_counter() - start
            record["adabn"] = {"layers": layers, "images": len(target), "seconds": seconds}
            log(f"AdaBN: {layers} batch-norm layers set to the statistics of {len(target):,} "
                f"target crops ({format_duration(seconds)})")
        else:
            log("AdaBN: off (adapt.adabn: false)")
        history.append(record)
        done, trained = 0, True
        _finish_round(layout, cfg, models, src, target, digest, 0, history)
    stopped = None
    budget_spent = f"time budget of {settings.minutes:g} min spent; resume to continue"
    while done < settings.rounds:
        number = done + 1
        rounds_left = settings.rounds - done
        # A round needs its embedding and clustering and at least one epoch.
        if not clock.fits(time_left(clock.overheads, 1), time_left(clock.epochs, 1)):
            stopped = budget_spent
            break
        log(f"round {number}/{settings.rounds}"
            f"{clock.left(rounds_left, 0)}")
        round_start = time.perf_counter()
        features = embed_target(models, target, cfg.eval.batch_size, cfg.eval.flip, progress)
        labels = _pseudo_labels(features, tracks, target, settings)
        log(f"  {labels.summary()}")
        record = {"round": number, "crops": len(target), "clusters": labels.clusters,
                  "outliers": labels.outliers, "identities": labels.identities,
                  "split": labels.split}
        if labels.identities < 2:
            stopped = (f"round {number} found {labels.identities} pseudo-identities: nothing "
                       f"to train on (the model stays as round {done} left it)")
            break
        trainer = Trainer(round_config(cfg, labels.identities, number),
                          _pseudo_dataset(target, labels.labels, str(layout.root)), layout.root,
                          progress=progress, log=log)
        carry_weights(models, trainer.models)
        record["ids_per_batch"] = trainer.cfg.data.ids_per_batch
        record["epochs"] = []
        writer = tf.summary.create_file_writer(str(layout.logs / f"round-{number:04d}"))
        for epoch in range(1, settings.epochs_per_round + 1):
            if not clock.fits(time_left(clock.epochs, 1)):
                stopped = budget_spent
                break
            epochs_left = settings.epochs_per_round - epoch + 1
            log(f"  epoch {epoch}/{settings.epochs_per_round}"
                f"{clock.left(rounds_left - 1, epochs_left)}")
            start = time.perf_counter()
            record["epochs"].append(trainer.train_epoch(writer))
            clock.epochs.append(time.perf_counter() - start)
        writer.close()
        if not record["epochs"]:
            break  # nothing trained: the round is not finished
        models = trainer.models
        if settings.adabn:
            # Training's batch norms (momentum 0.9) average the last augmented P x K batches
            # within a few dozen steps: the target's statistics are set again, as AdaBN did.
            adapt_batchnorm(models.training_model, _normalised_batches(
                models, target.paths, cfg.eval.batch_size, cfg.data.seed))
        record["seconds"] = time.perf_counter() - round_start
        clock.rounds.append(record["seconds"])
        history.append(record)
        done, trained = number, True
        _save_pseudo_labels(layout, number, target, labels.labels)
        _finish_round(layout, cfg, models, src, target, digest, number, history)
        clock.overheads.append(time.perf_counter() - round_start
                               - sum(epoch["seconds"] for epoch in record["epochs"]))
        if stopped:
            break
    if stopped:
        log(f"stopped: {stopped}")
    calibration = _complete_export(layout, cfg, models, src, target, calibrate_on, done,
                                   trained, log, progress)
    return AdaptResult(layout.root, done, history, layout.model, calibration, stopped)


def _pseudo_labels(features: np.ndarray, tracks: np.ndarray, target: TargetCrops,
                   settings: AdaptConfig):
    from reid.engine.pseudo_labels import pseudo_identities

    return pseudo_identities(features, tracks, target.cannot_link, k1=settings.k1,
                             k2=settings.k2, eps=settings.eps, min_samples=settings.min_samples,
                             min_images=settings.min_images,
                             cameras=np.asarray(target.cameras, np.int64))


def _finish_round(layout: RunLayout, cfg: Config, models: ReidModels, source: _Source,
                  target: TargetCrops, digest: str, number: int,
                  history: list[dict[str, Any]]) -> None:
    """What a finished round leaves: its checkpoint, the history and the export of its weights
    (Keras only: the conversions of other weights are removed, and the final ones made at the
    end), so that the run is usable whenever it stops."""
    state = {"round": number, "history": history, "source_fingerprint": source.fingerprint,
             "target_digest": digest}
    save_checkpoint(layout.checkpoints, number, {"model": carried_weights(models)}, state)
    atomic_write_text(layout.history, json.dumps(history, indent=1, default=float))
    _remove_conversions(layout.model)
    export_embedder(models.export_model(), layout.model, _spec(cfg, source, number, target))


def _remove_conversions(model_dir: pathlib.Path) -> None:
    from reid.modeling.spec import CONVERTED

    for fmt in CONVERTED.values():
        for name in (fmt.record, fmt.file):  # the record first: it vouches for the file
            (model_dir / name).unlink(missing_ok=True)


def _restore(layout: RunLayout, cfg: Config, models: ReidModels, source: _Source,
             digest: str) -> tuple[int, list[dict[str, Any]]]:
    """Load the last finished round of ``layout`` into ``models``: (round, history). The config
    may change only in :data:`RESUMABLE_CHANGES`; the source and the target must be the same."""
    changed = _changed_keys(load_saved_config(layout.config), cfg)
    if changed:
        raise AdaptError(f"{layout.root}: cannot resume with a different config "
                         f"({', '.join(changed)} changed); choose another output folder",
                         field="output")
    path = latest_checkpoint(layout.checkpoints)
    groups, state = load_checkpoint(path)
    if "source_fingerprint" not in state:
        raise AdaptError(f"{layout.root}: holds a training run, not an adaptation; adapt into "
                         f"another output folder", field="output")
    if state.get("source_fingerprint") != source.fingerprint:
        raise AdaptError(f"{layout.root}: was adapted from other weights than {source.model_dir} "
                         f"now holds; resume it from the run it started from", field="source")
    if state.get("target_digest") != digest:
        raise AdaptError(f"{layout.root}: the target's crops, tracks or cameras are not those the "
                         f"adaptation started on; adapt into another output folder",
                         field="output")
    assign_group(carried_weights(models), groups["model"], f"{path}/model.npz")
    save_config(cfg, layout.config)
    return int(state["round"]), list(state["history"])


def _complete_export(layout: RunLayout, cfg: Config, models: ReidModels, source: _Source,
                     target: TargetCrops, calibrate_on: TargetCrops | None, rounds: int,
                     trained: bool, log: Callable[[str], None], progress: bool
                     ) -> Calibration | None:
    """Calibrate the final export on ``calibrate_on`` (footage not adapted on: its co-occurring
    tracks) and convert it for LiteRT; a finished run resumed as it was, with nothing to
    calibrate on, is left as it is."""
    from reid.calibration import format_calibration, spec_calibration
    from reid.modeling.errors import ModelError
    from reid.modeling.spec import read_spec

    model_dir = layout.model
    try:
        spec = read_spec(model_dir)
    except ModelError:  # a run killed while it exported its first round
        spec = {}
    if not trained and spec.get("adapted", {}).get("complete") and calibrate_on is None:
        log(f"{model_dir}: up to date")
        return spec_calibration(spec, str(model_dir))
    calibration = None
    if calibrate_on is not None:
        try:
            made = _site_calibration(models, calibrate_on, cfg.eval.batch_size, progress)
        except CalibrationError as exc:
            log(f"no site calibration: {first_line(exc)}")
        else:
            calibration = made.calibration
            pairs = made.pairs
            log(f"site calibration on {calibrate_on.source} (not adapted on): {pairs.kept} "
                f"pairs of tracks seen at once, {len(pairs.impostor):,} impostor crop pairs, "
                f"{len(pairs.track_impostor):,} crop-to-track scores")
            log(format_calibration(calibration))
            missing = made.missing()
            if missing:
                log(f"warning: the site calibration cannot serve a default query: {missing}")
    else:
        log(no_calibration_reason(target))
    made_for = spec
    spec = _spec(cfg, source, rounds, target)
    if not trained:  # the same weights: what calibrated them before is kept, or in the history
        spec.update({key: made_for[key] for key in (SPEC_KEY, "calibration_history")
                     if key in made_for})
    if calibration is not None:
        spec = with_calibration(spec, calibration)
    spec["adapted"]["complete"] = True  # calibrated and converted: a resume leaves it
    export_embedder(models.export_model(), model_dir, spec)
    log(f"exported the adapted model: {model_dir}")
    if cfg.train.export_litert:
        _export_litert(model_dir, target, log)
    return calibration


def no_calibration_reason(target: TargetCrops) -> str:
    """What the log says when there is no footage to calibrate on but the target: the footage
    adapted on (see the module docstring), or crops, which have no tracks seen at once."""
    if target.track_count:
        return NOT_ON_TRAINED_FOOTAGE
    return ("no site calibration: crops give no impostor pairs (no tracks seen at once), and "
            "the source's thresholds were calibrated on another domain, so none are kept; "
            "calibrate an index of the site's footage built with this model, or this model on "
            "labelled crops of the site (tools/calibrate.py)")


def _site_calibration(models: ReidModels, footage: TargetCrops, batch_size: int,
                      progress: bool) -> FootageCalibration:
    """The unlabelled rule of :mod:`reid.index.site_calibration` on ``footage``'s tracks,
    embedded as queries and indexes embed (no flip); a CalibrationError when they give no
    pairs."""
    from reid.index.site_calibration import calibrate_track_vectors

    vectors = embed_target(models, footage, batch_size, False, progress)
    return calibrate_track_vectors(vectors, footage.tracks, footage.cameras,
                                   footage.cannot_link, footage.source, footage.unlinked)


def _export_litert(model_dir: pathlib.Path, target: TargetCrops,
                   log: Callable[[str], None]) -> None:
    """Convert the export for LiteRT, checked on target crops, as training's last step does
    (:meth:`reid.engine.trainer.Trainer.export_litert`): a failure is a warning."""
    from reid.modeling.convert import convert_with_images, format_record
    from reid.modeling.runtime import runtime_installed
    from reid.modeling.spec import CONVERTED

    if not runtime_installed("litert"):
        log("note: no LiteRT export (ai-edge-litert is not installed here); the Keras model "
            "serves")
        return
    try:
        record = convert_with_images(model_dir, CONVERTED["litert"], list(target.paths),
                                     log=log)
    except Exception as exc:  # noqa: BLE001 - the converter's errors are plain Exceptions
        log(f"warning: no LiteRT export ({type(exc).__name__}: {first_line(exc)}); the Keras "
            f"model serves")
        return
    log(format_record(record, model_dir))
