"""Train a re-id model: tools/train.py --config configs/X.yaml [--output runs/NAME] [--set k=v ...]"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.utils.cli import add_no_progress_option, add_overrides_option, run_tool



def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("--config", type=pathlib.Path,
                        help="YAML config (not needed with --resume: the run folder has it)")
    parser.add_argument("--output", type=pathlib.Path,
                        help="run folder (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output where it stopped")
    add_overrides_option(parser, "override config values, e.g. train.epochs=3 model.alpha=0.5")
    add_no_progress_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(train, build_parser().parse_args(argv), tensorflow=True)


def train(args: argparse.Namespace) -> None:
    from reid.engine.commands import run_training

    result = run_training(args.config, args.output, args.set, args.resume,
                          progress=not args.no_progress)
    print(f"run folder: {result.run_dir}")
    if result.model_dir:
        print(f"exported embedding model: {result.model_dir}")


if __name__ == "__main__":
    sys.exit(main())
