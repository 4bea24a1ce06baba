"""Recalibrate match thresholds without retraining: on labelled images, or on your own footage.

  tools/calibrate.py --model runs/NAME --data-root DIR [--dataset LAYOUT] [--runtime auto]
  tools/calibrate.py --model runs/NAME --validation
  tools/calibrate.py --footage INDEX

A new site, new cameras or new lighting move the scores of both true and false matches; the
thresholds training calibrated on its validation identities may no longer give the false-match
rates they promise.

``--data-root DIR``: labelled query and gallery images (any dataset layout); every
query-gallery pair the Market-1501 protocol scores is a genuine or an impostor pair, and the
thresholds at false-match rates 1e-2 and 1e-3, at the equal-error rate and per gallery size are
written into the model's spec.json (the calibration they replace is kept in its
calibration_history). Queries (tools/query.py --threshold auto) use them at once.

``--validation``: the training run's own validation identities (``data.val_ids``), as its
last validation calibrated them: for a run calibrated by an older reid, without retraining.

``--footage INDEX``: no labels. Two tracks seen at once in one camera are two people (impostor
pairs), crops of one track seconds apart are one person (genuine pairs); the thresholds per pair
and per gallery size read off them, from the index's stored embeddings (no model runs), are
stored in that index, whose queries use them in place of the model's (docs/GUIDE.md,
"Calibrating on your own footage", says which biases these pairs carry).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import add_lock_timeout_option, add_no_progress_option, add_runtime_option, run_tool


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.choices import DATASET_LAYOUTS

    parser = argparse.ArgumentParser(
        description="Calibrate match thresholds on labelled images (a model's) or on the "
                    "footage of an index (that index's).")
    parser.add_argument("--model", type=pathlib.Path,
                        help="run folder (its model/ export) or exported model folder; for "
                             "--data-root and --validation")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-root", type=pathlib.Path,
                        help="labelled data: a dataset folder with query and gallery splits")
    source.add_argument("--validation", action="store_true",
                        help="calibrate a training run (--model) again on the identities its "
                             "training held out for validation")
    source.add_argument("--footage", type=pathlib.Path, metavar="INDEX",
                        help="a footage index (tools/index_video.py): calibrate on its own "
                             "tracks, without labels, and store the thresholds in it")
    parser.add_argument("--dataset", choices=DATASET_LAYOUTS,
                        help="dataset layout (default: the run's config, else market1501)")
    add_runtime_option(parser)
    add_lock_timeout_option(parser)
    add_no_progress_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Footage is calibrated on stored embeddings (no model runs), and without a model there is
    # nothing to start TensorFlow for: calibrate() says what is missing.
    return run_tool(calibrate, args, tensorflow=args.model is not None and args.footage is None)


def calibrate(args: argparse.Namespace) -> None:
    from reid.errors import UsageError

    if args.footage is not None:
        given = [flag for flag, value in (("--model", args.model), ("--dataset", args.dataset))
                 if value is not None]
        if given:
            raise UsageError(f"--footage calibrates on the index's stored embeddings; it takes "
                             f"no {', '.join(given)}")
        from reid.index.site_calibration import calibrate_index

        print(calibrate_index(args.footage, lock_timeout=args.lock_timeout).format())
        return
    source = "--validation" if args.validation else "--data-root"
    if args.model is None:
        raise UsageError(f"{source} calibrates a model's thresholds: give the model (--model)")
    from reid.calibration import format_calibration
    from reid.engine.commands import run_calibration, run_validation_calibration
    from reid.modeling.spec import SPEC_FILE

    if args.validation:
        if args.dataset is not None:
            raise UsageError("--validation calibrates on the run's own data; it takes no "
                             "--dataset")
        model_dir, calibration = run_validation_calibration(
            args.model, runtime=args.runtime, progress=not args.no_progress)
    else:
        model_dir, calibration = run_calibration(args.model, args.data_root, args.dataset,
                                                 args.runtime, progress=not args.no_progress)
    print(format_calibration(calibration))
    print(f"written to {model_dir / SPEC_FILE}")


if __name__ == "__main__":
    sys.exit(main())
