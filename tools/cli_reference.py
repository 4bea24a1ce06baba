"""Print (or write with --write) docs/CLI.md, the reference of every tool's command line."""

from __future__ import annotations

import argparse
import pathlib
import sys

TOOLS_DIR = pathlib.Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=pathlib.Path, nargs="?", const=pathlib.Path("docs/CLI.md"),
                        help="write the reference to this file (default docs/CLI.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from reid.utils.cli_reference import cli_reference_document
    from reid.utils.io import atomic_write_text

    try:
        text = cli_reference_document(TOOLS_DIR)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.write:
        atomic_write_text(args.write, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
