"""Recalibrate a model's match thresholds on your own labelled images, without retraining.

  tools/calibrate.py --model runs/NAME --data-root DIR [--dataset LAYOUT] [--runtime auto]

A new site, new cameras or new lighting move the scores of both true and false matches; the
thresholds training calibrated on its validation identities may no longer give the false-match
rates they promise. DIR holds labelled query and gallery images (any dataset layout); every
query-gallery pair the Market-1501 protocol scores is a genuine or an impostor pair, and the
thresholds at false-match rates 1e-2 and 1e-3 and at the equal-error rate are written into the
model's spec.json (the calibration they replace is kept in its calibration_history). Queries
(tools/query.py --threshold auto) use them at once.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import add_no_progress_option, add_runtime_option, run_tool


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.choices import DATASET_LAYOUTS

    parser = argparse.ArgumentParser(
        description="Calibrate a model's match thresholds on labelled images.")
    parser.add_argument("--model", type=pathlib.Path, required=True,
                        help="run folder (its model/ export) or exported model folder")
    parser.add_argument("--data-root", type=pathlib.Path, required=True,
                        help="labelled data: a dataset folder with query and gallery splits")
    parser.add_argument("--dataset", choices=DATASET_LAYOUTS,
                        help="dataset layout (default: the run's config, else market1501)")
    add_runtime_option(parser)
    add_no_progress_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(calibrate, build_parser().parse_args(argv), tensorflow=True)


def calibrate(args: argparse.Namespace) -> None:
    from reid.calibration import format_calibration
    from reid.engine.commands import run_calibration
    from reid.modeling.spec import SPEC_FILE

    model_dir, calibration = run_calibration(args.model, args.data_root, args.dataset,
                                             args.runtime, progress=not args.no_progress)
    print(format_calibration(calibration))
    print(f"written to {model_dir / SPEC_FILE}")


if __name__ == "__main__":
    sys.exit(main())
