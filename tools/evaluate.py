"""Evaluate a trained model (or saved features) under the Market-1501 protocol.

  tools/evaluate.py --model runs/NAME --data-root DIR [--rerank] [--json metrics.json]
  tools/evaluate.py --features feats.npz [--rerank]

Beside ranking (mAP, CMC) and verification (TAR at FAR, EER), a calibrated model's decisions are
checked with a seeded third of the test identities left out of the gallery: its per-pair
thresholds, and its gallery-level rule at requested FPIR 0.1 and 0.01 (the threshold it gives
for the gallery's N, the FPIR observed and the DIR), over --draws seeded draws.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from reid.cli import (add_no_progress_option, add_overrides_option, add_runtime_option,
                      run_tool)



def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.choices import DATASET_LAYOUTS

    parser = argparse.ArgumentParser(
        description="Evaluate mAP, CMC rank-1/5/10 and mINP, verification and a calibrated "
                    "model's match decisions.")
    parser.add_argument("--model", type=pathlib.Path, help="run folder or exported model folder")
    parser.add_argument("--data-root", type=pathlib.Path,
                        help="dataset folder holding the query and gallery splits")
    parser.add_argument("--dataset", choices=DATASET_LAYOUTS,
                        help="dataset layout (default: the run's config, else market1501)")
    parser.add_argument("--features", type=pathlib.Path,
                        help="score saved features instead: .npz with query, gallery, q_pids, "
                             "g_pids, q_camids, g_camids")
    parser.add_argument("--save-features", type=pathlib.Path,
                        help="also write the features to this .npz")
    parser.add_argument("--rerank", action="store_true", help="add a k-reciprocal re-ranking row")
    parser.add_argument("--json", type=pathlib.Path, help="write the metrics to this JSON file")
    parser.add_argument("--save-roc", type=pathlib.Path, metavar="ROC.png",
                        help="draw the verification ROC (log false-accept rate) into this picture")
    parser.add_argument("--draws", type=int, default=1, metavar="K",
                        help="check a calibrated model's decisions over K seeded draws of the "
                             "third of the identities left out of the gallery (means; the JSON "
                             "keeps each draw's)")
    add_overrides_option(parser, "override eval settings, e.g. eval.flip=true "
                                 "eval.distance=euclidean")
    add_runtime_option(parser)
    add_no_progress_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(evaluate, build_parser().parse_args(argv), tensorflow=True)


def evaluate(args: argparse.Namespace) -> None:
    from reid.engine.commands import run_evaluation
    from reid.calibration import format_observed_rates
    from reid.engine.evaluator import format_metrics, format_verification
    from reid.evaluation import collapse_warning
    from reid.utils.io import atomic_write_text

    metrics = run_evaluation(args.model, args.data_root, args.dataset, args.features,
                             args.rerank, args.set, args.save_features,
                             progress=not args.no_progress, runtime=args.runtime,
                             save_roc=args.save_roc, draws=args.draws)
    rows = {"original": metrics}
    if "rerank" in metrics:
        rows["re-ranked"] = metrics["rerank"]
    print(f"queries {metrics['num_query']}, gallery {metrics['num_gallery']}, "
          f"valid queries {metrics['num_valid_queries']}")
    print(format_metrics(rows))
    print(format_verification(metrics["verification"]))
    if "calibrated" in metrics:
        print(format_observed_rates(metrics["calibrated"]))
    elif args.model is not None:
        print("gallery-level decision: none calibrated (the model holds no calibration; "
              "tools/calibrate.py makes one)")
    collapsed = collapse_warning(metrics["embedding_spread"], "the query and gallery images")
    if collapsed:
        print(collapsed, file=sys.stderr)
    if args.json:
        keys = ("mAP", "rank1", "rank5", "rank10", "mINP", "num_query", "num_gallery")
        out = {k: metrics[k] for k in keys}
        if "rerank" in metrics:
            out["rerank"] = {k: metrics["rerank"][k]
                             for k in ("mAP", "rank1", "rank5", "rank10", "mINP")}
        out["verification"] = metrics["verification"]
        if "calibrated" in metrics:
            out["calibrated"] = metrics["calibrated"]
        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
