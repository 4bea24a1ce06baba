"""Which side of the BNNeck to retrieve with: score one trained run's weights both ways.

    .venv/bin/python bench/neck_feature.py --run runs/bench-cuhk03-parts4
        [--data-root ../shared/data/cuhk03] [--no-progress]

Builds the run's network twice, with ``model.neck_feat: after`` and ``before``, loads the run's
latest checkpoint into each, and scores each embedding (cosine, flip-averaged as the run's
``eval.flip`` says, no re-ranking) on two splits:

* the query/gallery split, as every accuracy figure is;
* the training identities across cameras: for each identity and camera the first image (by
  path) is a query and the rest are gallery, with the Market-1501 rule that a query's own
  camera does not count. No test label is used, so this is where the choice can be made
  without looking at the test split; the network has seen these people, so only the ordering
  of the two embeddings means anything there, not the level.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Sequence

from reid.utils.cli import run_tool


MODES = ("after", "before")


def training_identity_split(records: Sequence) -> tuple[list, list]:
    """(queries, gallery) of training records: the first image by path of each (pid, camid)."""
    seen: set[tuple[int, int]] = set()
    queries, gallery = [], []
    for record in sorted(records, key=lambda r: r.path):
        key = (record.pid, record.camid)
        (gallery if key in seen else queries).append(record)
        seen.add(key)
    return queries, gallery


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=pathlib.Path, required=True,
                        help="training run folder (config.yaml and checkpoints/)")
    parser.add_argument("--data-root", default=None,
                        help="dataset folder, if not the run's data.root")
    parser.add_argument("--no-progress", action="store_true")
    return run_tool(score_both_sides, parser.parse_args(argv), tensorflow=True)


def score_both_sides(args: argparse.Namespace) -> None:
    from reid.data import load_dataset
    from reid.engine.checkpoint import assign_group, latest_checkpoint, load_checkpoint
    from reid.engine.evaluator import (extract_features, features_of_records, format_metrics,
                                       score_features)
    from reid.engine.trainer import load_run_config
    from reid.modeling import Embedder, build_reid_model
    from reid.run_layout import RunLayout

    progress = not args.no_progress
    overrides = [f"data.root={args.data_root}"] if args.data_root else []
    cfg = load_run_config(args.run, overrides)
    checkpoints = RunLayout(args.run).checkpoints
    checkpoint = latest_checkpoint(checkpoints)
    if checkpoint is None:
        raise ValueError(f"{checkpoints}: no checkpoint to score")
    groups, state = load_checkpoint(checkpoint)
    if "model" not in groups:
        raise ValueError(f"{checkpoint}: no model.npz")
    dataset = load_dataset(cfg.data)
    eval_cfg = dataclasses.replace(cfg.eval, rerank=False, query_expansion=0)
    train_q, train_g = training_identity_split(dataset.train)

    rows = {}
    for mode in MODES:
        # weights=None: the checkpoint replaces every weight, so the file is not read.
        model_cfg = dataclasses.replace(cfg.model, neck_feat=mode, weights=None)
        models = build_reid_model(model_cfg, (cfg.data.height, cfg.data.width, 3),
                                  dataset.num_train_pids)
        assign_group(models.training_model.weights, groups["model"],
                     f"{checkpoint}/model.npz")
        embedder = Embedder(models.export_model())
        rows[f"{mode}, test"] = score_features(
            extract_features(embedder, dataset, eval_cfg, progress), eval_cfg)
        rows[f"{mode}, training ids"] = score_features(
            features_of_records(embedder, train_q, train_g, eval_cfg, progress), eval_cfg)
    print(f"{args.run} after epoch {state['epoch']}; flip {eval_cfg.flip}; "
          f"{len(train_q)} training queries, {len(train_g)} training gallery images")
    print(format_metrics(rows))


if __name__ == "__main__":
    sys.exit(main())
