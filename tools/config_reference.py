"""Print (or write with --write) docs/CONFIG.md, the reference of every config key."""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import print_or_write, reference_parser, run_tool


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    return reference_parser(__doc__, pathlib.Path("docs/CONFIG.md"))


def main(argv: list[str] | None = None) -> int:
    return run_tool(write_reference, build_parser().parse_args(argv))


def write_reference(args: argparse.Namespace) -> None:
    from reid.cli.reference import config_reference_document

    print_or_write(config_reference_document(), args.write)


if __name__ == "__main__":
    sys.exit(main())
