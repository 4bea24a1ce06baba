"""Typed, validated configuration loaded from YAML with dotted command-line overrides.

Every key has a type, a default, a range or a set of choices and a help line in its field
metadata. The loader rejects unknown keys, wrong types and out-of-range values before anything
runs, naming the file and the key, and the help lines generate the config reference in the docs.

Sections are frozen, so what was validated is what runs: code that needs other values makes a
changed copy (``dataclasses.replace``) or passes an override. The two list keys stay lists, as
YAML writes them; nothing changes them in place.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from reid.choices import (BACKBONES, CONFIG_METRICS, DATASET_LAYOUTS, DETECTORS,
                          EVAL_DISTANCES, INDEX_TYPES, LAST_STRIDES, MINERS, NECK_FEATURES,
                          POOLINGS, SCHEDULES, STRATEGIES, WIDTH_MULTIPLIERS)
from reid.errors import ReidError


class ConfigError(ReidError, ValueError):
    """A configuration file or override is invalid; the message names the source and key."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; users write learning rates that way, so read floats
    as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _field(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           choices: Sequence[Any] | None = None, length: int | None = None) -> Any:
    """A dataclass field whose metadata carries its validation rules and documentation."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "length": length}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = _field("market1501", "Dataset layout: market1501 and dukemtmc (Market-1501 "
                          "file names), manifest (train/query/gallery.csv with path,pid,camid), "
                          "folders (root/<split>/<pid>/*.jpg).",
                          choices=DATASET_LAYOUTS)
    root: str = _field("data/synthetic", "Dataset folder (relative paths are from the working "
                       "directory).")
    height: int = _field(256, "Input height in pixels.", min=32, max=1024)
    width: int = _field(128, "Input width in pixels.", min=32, max=1024)
    ids_per_batch: int = _field(16, "P: identities in each training batch (in each replica's, "
                                "with train.strategy).", min=2, max=1024)
    images_per_id: int = _field(4, "K: images of each identity in a training batch.", min=1,
                                max=256)
    sample_with_replacement: bool = _field(True, "Repeat images of identities with fewer than K "
                                           "images; when false such identities are left out.")
    flip_prob: float = _field(0.5, "Probability of a horizontal flip.", min=0.0, max=1.0)
    pad: int = _field(10, "Pixels of zero padding before the random crop back to size.", min=0,
                      max=256)
    erasing_prob: float = _field(0.5, "Probability of random erasing.", min=0.0, max=1.0)
    erasing_area: list[float] = _field([0.02, 0.4], "Range of the erased fraction of the image.",
                                       min=0.0, max=1.0, length=2)
    erasing_aspect: float = _field(0.3, "Smallest aspect ratio of the erased box (the largest is "
                                   "its inverse).", min=0.01, max=1.0)
    color_jitter: float = _field(0.0, "Strength of random brightness/contrast/saturation/hue "
                                 "changes (0 = off).", min=0.0, max=1.0)
    grayscale_prob: float = _field(0.0, "Probability of turning a training image grey (its "
                                   "luma in every channel), after colour jitter: less reliance "
                                   "on colours another site's cameras render differently "
                                   "(0 = off).", min=0.0, max=1.0)
    skip_bad_images: bool = _field(False, "Drop unreadable images (training, query, gallery) "
                                   "with a warning listing them, instead of stopping.")
    seed: int = _field(0, "Seed for sampling and augmentation.", min=0)
    val_ids: int | float = _field(0.1, "Training identities held out as a validation "
                                  "query/gallery (a count, or a share in (0, 1); seeded by "
                                  "data.seed): training's validation, model_best/ and the "
                                  "calibrated match thresholds use them, never the test split. "
                                  "0: validate on the test split and calibrate nothing (the "
                                  "run's log warns).",
                                  min=0)

    def validate(self, where: str) -> None:
        lo, hi = self.erasing_area
        if lo > hi:
            raise ConfigError(f"{where}: data.erasing_area: expected [min, max] with min <= max, "
                              f"got {self.erasing_area}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: str = _field("mobilenet_v2", "Backbone network from keras.applications.",
                           choices=BACKBONES)
    alpha: float = _field(1.0, "MobileNetV2 width multiplier.",
                          choices=WIDTH_MULTIPLIERS)
    weights: str | None = _field("imagenet", "Backbone initialisation: imagenet, null (random) or "
                                 "a path to a .weights.h5 file.")
    pooling: str = _field("avg", "Global pooling: avg or gem (generalised mean).",
                          choices=POOLINGS)
    gem_p: float = _field(3.0, "Initial exponent of GeM pooling.", min=1.0, max=20.0)
    embedding_dim: int = _field(0, "Bottleneck embedding size; 0 keeps the backbone's channels "
                                "(1280) without a bottleneck layer.", min=0, max=8192)
    dropout: float = _field(0.0, "Dropout rate before the bottleneck.", min=0.0, max=0.9)
    last_stride: int = _field(1, "Stride of the backbone's last downsampling stage (1 doubles the "
                              "final feature map, as in the strong baseline).",
                              choices=LAST_STRIDES)
    bn_momentum: float = _field(0.9, "Momentum of the backbone's batch-norm moving statistics "
                                "(Keras's MobileNetV2 uses 0.999, which takes thousands of steps "
                                "to settle; 0.9 is PyTorch's default).", min=0.0, max=0.9999)
    freeze_backbone_epochs: int = _field(0, "Train only the heads for this many first epochs.",
                                         min=0)
    neck_feat: str = _field("after", "Which side of the BNNeck the retrieval embedding comes "
                            "from: after (the classifier's input, joined with the stripe necks "
                            "when model.parts > 0), before (the global feature the triplet loss "
                            "trains; stripes then serve training only) or centered (before, "
                            "minus the training mean the neck tracks: cosine scores spread out "
                            "over [-1, 1]; on CUHK03 it separated matches no better than before).",
                            choices=NECK_FEATURES)
    parts: int = _field(0, "Horizontal stripes pooled on their own, each with a bottleneck, "
                        "BNNeck and classifier (PCB); with neck_feat: after the embedding joins "
                        "them to the global feature (0 = off).", min=0, max=32)
    part_dim: int = _field(256, "Size of each stripe's bottleneck feature.", min=1, max=4096)
    zero_init_residual: bool = _field(
        False, "Random initialisation only (weights: null): start the last batch norm of every "
        "residual block at scale 0, so each block begins as the identity (Goyal et al., 2017). "
        "From random weights the demo's network then leaves its starting plateau within the "
        "first epochs instead of after a third of the run (docs/BENCHMARKS.md).")

    def validate(self, where: str) -> None:
        if self.zero_init_residual and self.weights is not None:
            raise ConfigError(f"{where}: model.zero_init_residual: only for random "
                              f"initialisation (model.weights: null), not over the weights "
                              f"{self.weights!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    ce_weight: float = _field(1.0, "Weight of the identity cross-entropy.", min=0.0)
    label_smoothing: float = _field(0.1, "Label smoothing of the cross-entropy.", min=0.0, max=0.99)
    triplet_weight: float = _field(1.0, "Weight of the triplet loss.", min=0.0)
    triplet_margin: float = _field(0.3, "Triplet margin (unused by soft_margin).", min=0.0)
    triplet_miner: str = _field("batch_hard", "Triplet mining: batch_hard, batch_all, semi_hard "
                                "or soft_margin.",
                                choices=MINERS)
    triplet_distance: str = _field("euclidean", "Distance the triplet loss uses.",
                                   choices=CONFIG_METRICS)
    center_weight: float = _field(0.0, "Weight of the center loss, the batch mean of "
                                  "0.5*||x - c||^2 (0 = off; 0.001 here equals the strong "
                                  "baseline's 0.0005 on its unhalved loss).", min=0.0)
    center_lr: float = _field(0.5, "Learning rate of the class centers.", min=0.0)
    contrastive_weight: float = _field(0.0, "Weight of the pairwise contrastive loss (0 = off).",
                                       min=0.0)
    contrastive_margin: float = _field(0.5, "Margin of the contrastive loss.", min=0.0)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = _field(60, "Training epochs.", min=1, max=100000)
    steps_per_epoch: int = _field(0, "Batches per epoch; 0 = training images / batch size.", min=0)
    lr: float = _field(3.5e-4, "Peak learning rate of Adam.", min=0.0, max=10.0)
    weight_decay: float = _field(5e-4, "Decoupled weight decay (AdamW).", min=0.0, max=1.0)
    warmup_epochs: int = _field(10, "Epochs of linear warm-up.", min=0)
    warmup_factor: float = _field(0.01, "Learning-rate fraction at the start of warm-up.",
                                  min=0.0, max=1.0)
    schedule: str = _field("step", "Schedule after warm-up: step or cosine.",
                           choices=SCHEDULES)
    lr_steps: list[int] = _field([40, 70], "Epochs at which the step schedule multiplies the rate "
                                 "by lr_gamma.", min=0)
    lr_gamma: float = _field(0.1, "Step schedule factor.", min=0.0, max=1.0)
    seed: int = _field(0, "Seed for weight initialisation and dropout (data order and "
                       "augmentation follow data.seed).", min=0)
    eval_every: int = _field(0, "Evaluate on query/gallery every N epochs (0 = only at the end).",
                             min=0)
    strategy: str = _field("default", "Devices to train on: default (one), mirrored (every local "
                           "GPU) or multi_worker (the workers TF_CONFIG names); each replica "
                           "trains on its own P x K batch.", choices=STRATEGIES)
    sync_batchnorm: bool = _field(False, "With several replicas, compute batch-norm statistics "
                                  "over the global batch (SyncBatchNormalization) instead of "
                                  "each replica's own P x K batch.")
    cluster_timeout_seconds: float = _field(
        600.0, "multi_worker: how long a worker waits for every worker TF_CONFIG names to "
        "start, after which it ends with an error naming those it cannot reach. Generous, so "
        "that workers started by hand on several machines make it.", min=1.0)
    export_litert: bool = _field(True, "After the last epoch, also convert the exported model "
                                 "for LiteRT (checked against Keras on validation crops), so "
                                 "indexing and queries run on the fast runtime from the start.")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    batch_size: int = _field(128, "Images per inference batch.", min=1, max=4096)
    distance: str = _field("cosine", "Query-gallery distance: cosine or euclidean.",
                           choices=EVAL_DISTANCES)
    max_rank: int = _field(50, "Length of the CMC curve.", min=1)
    rerank: bool = _field(False, "Also report k-reciprocal re-ranking.")
    rerank_k1: int = _field(20, "Re-ranking k1.", min=1)
    rerank_k2: int = _field(6, "Re-ranking k2.", min=1)
    rerank_lambda: float = _field(0.3, "Weight of the original distance in re-ranking.",
                                  min=0.0, max=1.0)
    flip: bool = _field(False, "Average the features of each image and its mirror image.")
    query_expansion: int = _field(0, "Average query expansion over this many top gallery "
                                  "matches (0 = off).", min=0)
    qe_alpha: float = _field(3.0, "Exponent of alpha-QE weights.", min=0.0)


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    type: str = _field("flat", "FAISS index: flat (exact inner product), hnsw or ivfpq.",
                       choices=INDEX_TYPES)
    hnsw_m: int = _field(32, "HNSW neighbours per node.", min=4, max=256)
    hnsw_ef_construction: int = _field(200, "HNSW build-time search depth.", min=8)
    hnsw_ef_search: int = _field(128, "HNSW query-time search depth.", min=8)
    ivf_nlist: int = _field(0, "IVF cells; 0 = 4 * sqrt(gallery size).", min=0)
    pq_m: int = _field(64, "Product-quantizer sub-vectors (must divide the embedding size).",
                       min=1)
    pq_nbits: int = _field(8, "Bits per sub-vector code.", min=4, max=12)
    nprobe: int = _field(16, "IVF cells visited per query.", min=1)
    batch_size: int = _field(64, "Images per embedding batch while indexing.", min=1, max=4096)


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    detector: str = _field("ssdlite", "Person detector: ssdlite (installed with the package), or "
                           "litert / onnx for the SSD-style file in video.detector_model.",
                           choices=DETECTORS)
    detector_model: str | None = _field(None, "A .tflite or .onnx detector with TF Object "
                                        "Detection API outputs (boxes, classes, scores, count); "
                                        "for detector litert / onnx. Its input is fed as the "
                                        "model declares it: uint8 pixels, int8 pixels - 128, or "
                                        "float32 scaled to [-1, 1] (TFLite SSD exports).")
    person_class: int = _field(1, "The detector's class id of a person: 1 in the TF Object "
                               "Detection API's COCO labels (ssdlite); many TFLite COCO exports "
                               "count from 0, and want 0.", min=0)
    tiles: list[int] = _field([1, 1], "Detect in columns x rows overlapping tiles as well as the "
                              "whole frame: small people become big enough to find.", length=2)
    tile_overlap: float = _field(0.2, "Share of a tile's width and height that overlaps its "
                                 "neighbour, so a person on a seam is whole in one tile.",
                                 min=0.0, max=0.5)
    score_threshold: float = _field(0.4, "Lowest detector score kept.", min=0.0, max=1.0)
    nms_iou: float = _field(0.5, "Boxes overlapping more than this (IoU) are one person: the "
                            "higher score is kept (merges the tiles' and the frame's boxes).",
                            min=0.0, max=1.0)
    min_box_height: int = _field(40, "Boxes shorter than this many pixels are dropped: too small "
                                 "to re-identify.", min=1)
    track_gap_seconds: float = _field(1.0, "A track not seen for this long ends; the person "
                                      "seen again starts a new track.", min=0.1)
    track_min_boxes: int = _field(3, "Tracks with fewer boxes are not indexed (flicker, false "
                                  "detections).", min=1)
    crops_per_track: int = _field(3, "Crops of each track embedded and kept, chosen by size, "
                                  "sharpness and detector score, spread over the track.", min=1,
                                  max=32)
    frame_width: int = _field(640, "Width of the full frame stored per track, for the contact "
                              "sheet (0: store none).", min=0)

    def validate(self, source: str) -> None:
        if any(n < 1 for n in self.tiles):
            raise ConfigError(f"{source}: video.tiles: expected columns and rows >= 1, got "
                              f"{self.tiles}")
        if self.detector != "ssdlite" and not self.detector_model:
            raise ConfigError(f"{source}: video.detector_model: detector {self.detector} needs "
                              f"the model file")


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    """Unsupervised adaptation of a trained run to a new site (tools/adapt.py,
    :mod:`reid.engine.adapt`). ``rounds`` defaults to 0 (AdaBN only), chosen on validation
    targets (a CUHK03 camera pair, synthetic footage: docs/BENCHMARKS.md), where every setting of
    rounds tried lowered mAP; the clustering and rate are SpCL's (Ge et al., 2020), starting
    points for ``--rounds`` that are still to be chosen the same way, never on the target a
    figure is reported on."""

    adabn: bool = _field(True, "First set every batch norm's statistics to the target images' "
                         "(AdaBN): seconds, and no labels needed.")
    rounds: int = _field(0, "Self-training rounds: embed the target crops, cluster them into "
                         "pseudo-identities (each camera's mean feature taken out), train on "
                         "those. 0 = AdaBN only: on the validation targets measured so far every "
                         "setting of rounds lowered mAP (docs/BENCHMARKS.md).", min=0, max=1000)
    epochs_per_round: int = _field(2, "Training epochs of each round (a new classifier each "
                                   "round, sized to its pseudo-identities).", min=1, max=1000)
    steps_per_epoch: int = _field(100, "P x K batches per epoch of a round; 0 = the round's "
                                  "pseudo-labelled crops / batch size.", min=0)
    lr: float = _field(3.5e-4, "Learning rate of the rounds, constant (SpCL's; adaptation "
                       "fine-tunes a trained model, below configs/cuhk03.yaml's peak of 6e-3).",
                       min=0.0, max=10.0)
    k1: int = _field(30, "Neighbours of the k-reciprocal Jaccard distance the crops are "
                     "clustered on.", min=1)
    k2: int = _field(6, "Neighbours averaged into each crop's encoding (query expansion) in the "
                     "Jaccard distance.", min=1)
    eps: float = _field(0.6, "DBSCAN radius in Jaccard distance: larger joins more crops into "
                        "fewer, less pure pseudo-identities.", min=0.0, max=0.999)
    min_samples: int = _field(4, "DBSCAN: crops within eps that make a core point (a track "
                              "counts its crops).", min=1)
    min_images: int = _field(2, "Pseudo-identities of fewer crops are left out of training.",
                             min=1)
    minutes: float = _field(0.0, "Time budget of one adaptation, checked before each round and "
                            "epoch; what is finished is kept and --resume continues (0 = none).",
                            min=0.0)
    source: str | None = _field(None, "The run adapted from: recorded by the adaptation, not "
                                "read.")
    target: str | None = _field(None, "What the target crops were read from: recorded by the "
                                "adaptation, not read.")


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    index: IndexConfig = dataclasses.field(default_factory=IndexConfig)
    video: VideoConfig = dataclasses.field(default_factory=VideoConfig)
    adapt: AdaptConfig = dataclasses.field(default_factory=AdaptConfig)
    name: str = dataclasses.field(default="config", metadata={"help": "Run name (file stem).",
                                                              "internal": True})

    @property
    def batch_size(self) -> int:
        return self.data.ids_per_batch * self.data.images_per_id

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the sections, ready for YAML; the run name is not a key."""
        d = dataclasses.asdict(self)
        d.pop("name")
        return d


SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name]
                             for f in dataclasses.fields(Config) if not f.metadata.get("internal")}

#: Removed keys -> the value that did what the code now always does. Run folders saved before
#: the removal hold the key in their config.yaml and must still resume and evaluate, so it is
#: accepted (and dropped) at that value; any other value asks for code that is gone.
RETIRED_KEYS: dict[tuple[str, str], Any] = {("model", "rescale_kernels"): False}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else tp.__name__


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against ``tp``; ints are accepted for floats. Raises ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            if arg is not type(None):
                try:
                    return _coerce(value, arg, where)
                except ConfigError:
                    pass
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _check_range(value: Any, meta: Mapping[str, Any], where: str) -> None:
    values = value if isinstance(value, list) else [value]
    if meta.get("length") is not None and isinstance(value, list) and len(value) != meta["length"]:
        raise ConfigError(f"{where}: expected a list of {meta['length']} values, got {value!r}")
    for v in values:
        if v is None:
            continue
        if meta.get("choices") is not None and v not in meta["choices"]:
            choices = ", ".join(str(c) for c in meta["choices"])
            raise ConfigError(f"{where}: expected one of {choices}, got {v!r}")
        if meta.get("min") is not None and v < meta["min"]:
            raise ConfigError(f"{where}: expected a value >= {meta['min']}, got {v!r}")
        if meta.get("max") is not None and v > meta["max"]:
            raise ConfigError(f"{where}: expected a value <= {meta['max']}, got {v!r}")


def _build_section(cls: type, values: Mapping[str, Any], source: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        where = f"{source}: {section}.{key}"
        if (section, key) in RETIRED_KEYS:
            kept = RETIRED_KEYS[(section, key)]
            if value != kept:
                raise ConfigError(f"{where}: this key was removed; only {json.dumps(kept)}, what "
                                  f"the code now always does, is accepted, got {value!r}")
            continue
        if key not in fields:
            known = ", ".join(fields)
            raise ConfigError(f"{where}: unknown key (known keys of '{section}': {known})")
        value = _coerce(value, hints[key], where)
        _check_range(value, fields[key].metadata, where)
        kwargs[key] = value
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(source)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=3"`` -> (["train", "epochs"], 3); the value is read as a YAML scalar."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {text!r}: expected section.key=value, e.g. train.epochs=3")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return parts, value


def check_override_sections(overrides: Iterable[str], sections: Sequence[str],
                            reader: str) -> None:
    """Refuse overrides of sections ``reader`` does not read: ``build_index --set
    train.epochs=3`` would otherwise be accepted and silently do nothing."""
    for text in overrides:
        (section, _), _ = parse_override(text)
        if section not in sections:
            used = " and ".join(repr(s) for s in sections)
            raise ConfigError(f"override {text!r}: {reader} reads only the {used} "
                              f"section{'s' if len(sections) > 1 else ''} of a config")


def config_from_dict(raw: Mapping[str, Any] | None, source: str = "<config>",
                     overrides: Iterable[str] = (), name: str = "config") -> Config:
    """Validate a nested mapping (as read from YAML) plus overrides into a :class:`Config`."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, "
                          f"got {type(raw).__name__}")
    merged: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: {section}: unknown section "
                              f"(known sections: {', '.join(SECTIONS)})")
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {section}: expected a mapping of keys, got {values!r}")
        merged[section] = dict(values)
    sources: dict[tuple[str, str], str] = {}
    for text in overrides:
        (section, key), value = parse_override(text)
        if section not in SECTIONS:
            raise ConfigError(f"override {text!r}: {section}: unknown section "
                              f"(known sections: {', '.join(SECTIONS)})")
        merged.setdefault(section, {})[key] = value
        sources[(section, key)] = f"override {text!r}"
    sections = {}
    for section, cls in SECTIONS.items():
        values = merged.get(section, {})
        # Report an override's mistakes against the override, not the file.
        for key in values:
            if (section, key) in sources:
                _build_section(cls, {key: values[key]}, sources[(section, key)], section)
        sections[section] = _build_section(cls, values, source, section)
    return Config(**sections, name=name)


def load_config(path: str | pathlib.Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config file and apply ``section.key=value`` overrides."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        raw = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    return config_from_dict(raw, str(path), overrides, name=path.stem)


#: Keys added after runs were saved without them, whose default changes what a run does -> the
#: value that did what the code did before. A run folder's config.yaml lacking the key is read
#: with it, so old runs resume, re-export and are scored as they were trained (``val_ids``: the
#: held-out identities change the training split and the classifier's size).
ADDED_KEYS: dict[tuple[str, str], Any] = {("data", "val_ids"): 0}


def load_saved_config(path: str | pathlib.Path, overrides: Iterable[str] = ()) -> Config:
    """A run folder's saved ``config.yaml``, read as the run was trained (:data:`ADDED_KEYS`),
    with ``overrides`` applied after."""
    path = pathlib.Path(path)
    try:
        raw = _yaml_load(path.read_text())
    except (OSError, yaml.YAMLError):
        raw = None  # load_config reports it
    sections = raw if isinstance(raw, Mapping) else {}
    legacy = [f"{section}.{key}={json.dumps(value)}" for (section, key), value in ADDED_KEYS.items()
              if key not in (sections.get(section) or {})]
    return load_config(path, [*legacy, *overrides])


def save_config(config: Config, path: str | pathlib.Path) -> None:
    """Write the resolved config as YAML, atomically, so a run folder always holds a full copy."""
    from reid.utils.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_reference() -> str:
    """Markdown table of every key, its type, default and meaning: the docs' config reference."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            meta = f.metadata
            extra = []
            if meta.get("choices"):
                extra.append("one of " + ", ".join(str(c) for c in meta["choices"]))
            if meta.get("min") is not None:
                extra.append(f">= {meta['min']}")
            if meta.get("max") is not None:
                extra.append(f"<= {meta['max']}")
            help_text = meta["help"] + (f" ({'; '.join(extra)})" if extra else "")
            # In a Markdown table, '<' would open an HTML tag (hiding "<split>") and '|' a cell.
            help_text = help_text.replace("|", "\\|").replace("<", "&lt;")
            shown = yaml.safe_dump(default, default_flow_style=True).strip()
            shown = shown.removesuffix("...").strip()
            lines.append(f"| `{section}.{f.name}` | {_type_name(hints[f.name])} | `{shown}` | "
                         f"{help_text} |")
    return "\n".join(lines)
