"""Print (or write with --write) docs/CONFIG.md, the reference of every config key."""

from __future__ import annotations

import argparse
import pathlib
import sys


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=pathlib.Path, nargs="?", const=pathlib.Path("docs/CONFIG.md"),
                        help="write the reference to this file (default docs/CONFIG.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from reid.config import config_reference_document
    from reid.utils.io import atomic_write_text

    text = config_reference_document()
    if args.write:
        atomic_write_text(args.write, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
