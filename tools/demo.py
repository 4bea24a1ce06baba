"""The end-to-end demo (what `make demo` runs): synthetic data, train, evaluate, index, query."""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import add_no_progress_option, add_overrides_option, run_tool


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.demo import DEMO_CONFIG, DEMO_IDS, DEMO_TEST_IDS, DemoPaths

    defaults = DemoPaths()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=pathlib.Path, default=DEMO_CONFIG,
                        help="training config of the demo")
    parser.add_argument("--data", type=pathlib.Path, default=defaults.data,
                        help="where the synthetic dataset is written (reused when complete)")
    parser.add_argument("--output", type=pathlib.Path, default=defaults.run,
                        help="training run folder (resumed when it exists)")
    parser.add_argument("--ids", type=int, default=DEMO_IDS,
                        help="synthetic identities in all (default %(default)s)")
    parser.add_argument("--test-ids", type=int, default=DEMO_TEST_IDS,
                        help="how many of them form the query/gallery split "
                             "(default %(default)s)")
    add_overrides_option(parser, "config overrides, e.g. train.epochs=2")
    add_no_progress_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(demo, build_parser().parse_args(argv), tensorflow=True)


def demo(args: argparse.Namespace) -> None:
    from reid.demo import DemoPaths, run_demo

    run_demo(args.config, DemoPaths(data=args.data, run=args.output), tuple(args.set),
             synthetic_ids=args.ids, synthetic_test_ids=args.test_ids,
             progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main())
