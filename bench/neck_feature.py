"""Which feature to retrieve with, chosen on validation: one run's weights scored four ways.

    .venv/bin/python bench/neck_feature.py --run runs/bench-cuhk03-val
        [--data-root ../shared/data/cuhk03] [--no-progress]

Loads the run's latest checkpoint and embeds each split once, reading off the network the
feature before the BNNeck and the neck's output (``model.neck_feat: after``). From those:

* ``after``: the neck's output (joined with the stripe necks when there are stripes);
* ``before``: the feature before the neck;
* ``centered``: that feature minus the neck's moving mean, the training mean (what
  ``neck_feat: centered`` exports);
* ``whitened``: that feature centred on the mean of (up to 4,000) training images and
  PCA-whitened to at most 256 dimensions there (measured here only, not offered as an export).

Each is L2-normalised and scored for ranking (mAP, rank-1; flip-averaged as the run's
``eval.flip`` says, no re-ranking) and for verification on unflipped features, as queries are
embedded: EER, TAR at FAR 1e-2 and 1e-3, the threshold at FAR 1e-2, and d' (the distance
between the genuine and impostor score means in pooled standard deviations: how far apart the
two populations a threshold must split are).

Splits: the run's validation identities when it held some out (``data.val_ids``), where the
choice is made, else the training identities across cameras (the first image of each identity
and camera is a query, with the Market-1501 camera rule); and the test split, reported only.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from reid.cli import run_tool
from reid.errors import UsageError


MODES = ("after", "before", "centered", "whitened")
WHITENING_IMAGES, WHITENING_DIMS = 4000, 256


def training_identity_split(records: Sequence) -> tuple[list, list]:
    """(queries, gallery) of training records: the first image by path of each (pid, camid)."""
    seen: set[tuple[int, int]] = set()
    queries, gallery = [], []
    for record in sorted(records, key=lambda r: r.path):
        key = (record.pid, record.camid)
        (gallery if key in seen else queries).append(record)
        seen.add(key)
    return queries, gallery


def pca_whitening(features: np.ndarray, dims: int = WHITENING_DIMS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(mean, projection): ``(x - mean) @ projection`` has identity covariance on ``features``
    in its first ``dims`` principal directions (fewer when there are fewer images)."""
    mean = features.mean(axis=0)
    centred = features - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    dims = min(dims, len(features) - 1, features.shape[1])
    variance = singular[:dims] ** 2 / (len(features) - 1)
    return mean, vt[:dims].T / np.sqrt(variance + 1e-12 * variance[0])


def d_prime(genuine: np.ndarray, impostor: np.ndarray) -> float:
    return float((genuine.mean() - impostor.mean())
                 / np.sqrt((genuine.var() + impostor.var()) / 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=pathlib.Path, required=True,
                        help="training run folder (config.yaml and checkpoints/)")
    parser.add_argument("--data-root", default=None,
                        help="dataset folder, if not the run's data.root")
    parser.add_argument("--no-progress", action="store_true")
    return run_tool(score_four_ways, parser.parse_args(argv), tensorflow=True)


def score_four_ways(args: argparse.Namespace) -> None:
    import keras

    from reid.data import load_dataset
    from reid.data.pipeline import eval_dataset
    from reid.data.preprocessing import normalize_pixels
    from reid.engine.checkpoint import assign_group, latest_checkpoint, load_checkpoint
    from reid.engine.evaluator import Features, format_metrics, score_features
    from reid.engine.trainer import training_dataset
    from reid.run_layout import load_run_config
    from reid.evaluation import flip_average
    from reid.evaluation.distance import l2_normalize
    from reid.evaluation.verification import (equal_error_rate, pair_scores, tar_at_far,
                                              threshold_at_far)
    from reid.modeling import build_reid_model
    from reid.modeling.reid_model import EMBEDDING, FEATURES, NECK_LAYER
    from reid.run_layout import RunLayout

    progress = not args.no_progress
    overrides = [f"data.root={args.data_root}"] if args.data_root else []
    cfg = load_run_config(args.run, overrides)
    checkpoints = RunLayout(args.run).checkpoints
    checkpoint = latest_checkpoint(checkpoints)
    if checkpoint is None:
        raise UsageError(f"{checkpoints}: no checkpoint to score")
    groups, state = load_checkpoint(checkpoint)
    if "model" not in groups:
        raise UsageError(f"{checkpoint}: no model.npz")
    dataset = load_dataset(cfg.data)
    validation = training_dataset(dataset, cfg)
    if cfg.data.val_ids:
        choice = ("validation", validation.query, validation.gallery)
    else:
        choice = ("training ids", *training_identity_split(dataset.train))
    # weights=None: the checkpoint replaces every weight, so the file is not read.
    model_cfg = dataclasses.replace(cfg.model, neck_feat="after", weights=None)
    models = build_reid_model(model_cfg, (cfg.data.height, cfg.data.width, 3),
                              validation.num_train_pids)
    assign_group(models.training_model.weights, groups["model"], f"{checkpoint}/model.npz")
    network = models.training_model
    neck_mean = np.asarray(network.get_layer(NECK_LAYER).moving_mean, np.float64)
    size = (cfg.data.height, cfg.data.width)

    def raw_and_after(records, mirrored=False) -> tuple[np.ndarray, np.ndarray]:
        paths = [r.path for r in records]
        batches = -(-len(paths) // cfg.eval.batch_size)
        bar = keras.utils.Progbar(batches, unit_name="batch") if progress else None
        raw, after = [], []
        for i, batch in enumerate(eval_dataset(paths, *size, cfg.eval.batch_size,
                                               flip=mirrored), start=1):
            out = network(normalize_pixels(batch), training=False)
            raw.append(np.asarray(out[FEATURES], np.float64))
            after.append(np.asarray(out[EMBEDDING], np.float64))
            if bar is not None:
                bar.update(i)
        return np.concatenate(raw), np.concatenate(after)

    rng = np.random.default_rng(0)
    train = list(validation.train)
    sample = [train[i] for i in sorted(rng.choice(len(train), min(WHITENING_IMAGES, len(train)),
                                                  replace=False))]
    white_mean, white_proj = pca_whitening(raw_and_after(sample)[0])

    def embeddings(records, mirrored=False) -> dict[str, np.ndarray]:
        raw, after = raw_and_after(records, mirrored)
        return {"after": after, "before": l2_normalize(raw),
                "centered": l2_normalize(raw - neck_mean),
                "whitened": l2_normalize((raw - white_mean) @ white_proj)}

    eval_cfg = dataclasses.replace(cfg.eval, rerank=False, query_expansion=0)
    ranking, separation = {}, {}
    for split, query, gallery in (choice, ("test", dataset.query, dataset.gallery)):
        labels = (np.array([r.pid for r in query]), np.array([r.pid for r in gallery]),
                  np.array([r.camid for r in query]), np.array([r.camid for r in gallery]))
        plain = [embeddings(query), embeddings(gallery)]
        scored = plain
        if eval_cfg.flip:
            mirrored = [embeddings(query, True), embeddings(gallery, True)]
            scored = [{m: flip_average(p[m], f[m]) for m in MODES}
                      for p, f in zip(plain, mirrored)]
        for mode in MODES:
            name = f"{mode}, {split}"
            ranking[name] = score_features(Features(scored[0][mode], scored[1][mode], *labels),
                                           eval_cfg)
            genuine, impostor = pair_scores(plain[0][mode], plain[1][mode], *labels)
            separation[name] = {
                "EER": equal_error_rate(genuine, impostor)[0],
                "TAR@1e-2": tar_at_far(genuine, impostor, 1e-2)[0],
                "TAR@1e-3": tar_at_far(genuine, impostor, 1e-3)[0],
                "t@1e-2": threshold_at_far(impostor, 1e-2),
                "d'": d_prime(genuine, impostor),
                "genuine": float(np.mean(genuine)), "impostor": float(np.mean(impostor))}
    print(f"{args.run} after epoch {state['epoch']}; flip {eval_cfg.flip} for ranking, none for "
          f"verification; choice on {choice[0]} ({len(choice[1])} queries, {len(choice[2])} "
          f"gallery images); whitening fit on {len(sample)} training images")
    print(format_metrics(ranking))
    print(format_separation(separation))
    chosen = max((m for m in MODES if m != "whitened"),
                 key=lambda m: ranking[f"{m}, {choice[0]}"]["mAP"])
    print(f"highest {choice[0]} mAP among the exportable features: {chosen}")


def format_separation(rows: dict[str, dict[str, float]]) -> str:
    keys = ("EER", "TAR@1e-2", "TAR@1e-3", "t@1e-2", "d'", "genuine", "impostor")
    lines = [f"{'':<24} " + " ".join(f"{k:>8}" for k in keys)]
    for name, figures in rows.items():
        lines.append(f"{name:<24} " + " ".join(f"{figures[k]:>8.4f}" for k in keys))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
