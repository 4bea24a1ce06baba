"""The end-to-end demo (what `make demo` runs): synthetic data, train, evaluate, index, query."""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.utils.cli import add_no_progress_option, add_overrides_option, run_tool



def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.demo import DEMO_CONFIG, DemoPaths

    defaults = DemoPaths()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=pathlib.Path, default=DEMO_CONFIG,
                        help="training config of the demo")
    parser.add_argument("--data", type=pathlib.Path, default=defaults.data,
                        help="where the synthetic dataset is written (reused when complete)")
    parser.add_argument("--output", type=pathlib.Path, default=defaults.run,
                        help="training run folder (resumed when it exists)")
    add_overrides_option(parser, "config overrides, e.g. train.epochs=2")
    add_no_progress_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(demo, build_parser().parse_args(argv), tensorflow=True)


def demo(args: argparse.Namespace) -> None:
    from reid.demo import DemoPaths, run_demo

    paths = DemoPaths(data=args.data, run=args.output, index=args.output / "gallery_index",
                      pictures=args.output / "queries")
    run_demo(args.config, paths, tuple(args.set), progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main())
