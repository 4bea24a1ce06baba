"""Adapt a trained run to a new site from its unlabelled crops or footage.

  tools/adapt.py --model runs/NAME --output runs/NAME-site (--images DIR ... | --footage INDEX ...)
                 [--calibrate-on INDEX ...] [--resume] [--rounds N] [--minutes M]
                 [--set adapt.eps=0.5 ...]

A model trained on other cameras ranks a new site's people far worse than its own. This
writes a new run folder, adapted without labels: batch-norm statistics re-estimated on the
site's crops (AdaBN), then rounds of self-training on pseudo-identities found by clustering
them (footage adds that a track is one person and two tracks seen at once are two). The
result is exported and converted for LiteRT; every tool takes it as it takes a trained run. The
source run is only read. Re-embed the site's indexes with it (tools/reindex.py): an index
answers only queries of the model it was built with.

Its match thresholds come from footage of the site it was not adapted on (--calibrate-on, e.g.
another day's indexes): the tracks seen at once in the footage adapted on were trained apart,
so thresholds read off them would let absent people through. Without --calibrate-on the model
has no thresholds; calibrate a re-embedded index of unseen footage (tools/calibrate.py
--footage) instead.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import add_no_progress_option, add_overrides_option, run_tool

#: The library's names of this tool's values whose flags are not their own names.
FLAGS = {"source": "--model", "index_dirs": "--footage", "overrides": "--set",
         "calibrate_on": "--calibrate-on"}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(
        description="Adapt a trained run to a new site from its unlabelled crops or footage "
                    "(AdaBN, then self-training on pseudo-identities), into a new run folder.")
    parser.add_argument("--model", type=pathlib.Path, required=True,
                        help="the trained run folder to adapt (only read)")
    parser.add_argument("--output", type=pathlib.Path, required=True,
                        help="the adapted run folder to write: a new folder, or the one to "
                             "--resume")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--images", nargs="+", metavar="DIR",
                        help="the site's crops: folders, globs or image files")
    target.add_argument("--footage", nargs="+", type=pathlib.Path, metavar="INDEX",
                        help="footage indexes of the site (tools/index_video.py): their stored "
                             "crops, with tracks")
    parser.add_argument("--calibrate-on", nargs="+", type=pathlib.Path, metavar="INDEX",
                        help="footage indexes of the site NOT given to --footage (e.g. another "
                             "day's): the adapted model's thresholds are calibrated on their "
                             "tracks seen at once; without it the model has none")
    parser.add_argument("--resume", action="store_true",
                        help="continue the adaptation in --output after its last finished "
                             "round (with the same model and target; --calibrate-on may be "
                             "new, and calibrates a finished run again)")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="self-training rounds (adapt.rounds; 0: AdaBN only)")
    parser.add_argument("--minutes", type=float, metavar="M",
                        help="time budget of this call in minutes (adapt.minutes; 0: none); "
                             "what is finished is kept, --resume continues")
    add_overrides_option(parser, "override config values, e.g. adapt.eps=0.5 eval.flip=true "
                                 "(not model.*: the network is the source run's)")
    add_no_progress_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(adapt, build_parser().parse_args(argv), tensorflow=True, flags=FLAGS)


def adapt(args: argparse.Namespace) -> None:
    from reid.engine.adapt import adapt_run, check_output
    from reid.errors import ReidError
    from reid.index.target import footage_target, image_target

    check_output(args.model, args.output, args.resume)  # before reading the target
    target = footage_target(args.footage) if args.footage else image_target(args.images)
    calibrate_on = None
    if args.calibrate_on:
        try:
            calibrate_on = footage_target(args.calibrate_on)
        except ReidError as exc:  # its footage indexes are --calibrate-on's, not --footage's
            exc.fields = tuple("calibrate_on" if f == "index_dirs" else f for f in exc.fields)
            raise
    overrides = [*args.set]
    if args.rounds is not None:
        overrides.append(f"adapt.rounds={args.rounds}")
    if args.minutes is not None:
        overrides.append(f"adapt.minutes={args.minutes}")
    result = adapt_run(args.model, target, args.output, overrides=overrides,
                       calibrate_on=calibrate_on, resume=args.resume,
                       progress=not args.no_progress)
    print(f"adapted run: {result.run_dir} ({result.rounds} round(s) of self-training)")
    print(f"exported embedding model: {result.model_dir}")
    print(f"re-embed the site's indexes with it: tools/reindex.py --index INDEX --model "
          f"{result.run_dir} --output NEW_INDEX")


if __name__ == "__main__":
    sys.exit(main())
