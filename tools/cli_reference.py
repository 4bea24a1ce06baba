"""Print (or write with --write) docs/CLI.md, the reference of every tool's command line."""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import print_or_write, reference_parser, run_tool

TOOLS_DIR = pathlib.Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    return reference_parser(__doc__, pathlib.Path("docs/CLI.md"))


def main(argv: list[str] | None = None) -> int:
    return run_tool(write_reference, build_parser().parse_args(argv))


def write_reference(args: argparse.Namespace) -> None:
    from reid.cli.reference import cli_reference_document

    print_or_write(cli_reference_document(TOOLS_DIR), args.write)


if __name__ == "__main__":
    sys.exit(main())
