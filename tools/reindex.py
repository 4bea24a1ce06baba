"""Re-embed a gallery index with another model, e.g. one adapted to the site (tools/adapt.py).

  tools/reindex.py --index INDEX --model NEW_RUN --output NEW_INDEX

An index answers only queries of the model that built it; this writes a new index, NEW_INDEX,
holding every entry of INDEX embedded by NEW_RUN's model: image entries from their files,
footage from the crops the index stored (no video is read again), each track's mean entry
computed again from its crops. Every other thing INDEX knows is kept (ids, paths, labels,
digests, cameras, videos, tracks, times, boxes, pictures), and so are its type, parameters and
precision (``--runtime auto`` embeds a quantized index with the new model's conversion of that
precision). INDEX is not changed. A site calibration of INDEX is not carried over (it was made
with the old model's scores): calibrate NEW_INDEX again with tools/calibrate.py --footage.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import add_lock_timeout_option, add_no_progress_option, add_runtime_option, run_tool
from reid.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(
        description="Re-embed a gallery index with another model, into a new index.")
    parser.add_argument("--index", type=pathlib.Path, required=True,
                        help="the gallery index to re-embed (only read)")
    parser.add_argument("--model", type=pathlib.Path, required=True,
                        help="run folder (uses its model/ export, else model_best/) or exported "
                             "model folder of the new model")
    parser.add_argument("--output", type=pathlib.Path, required=True,
                        help="folder of the new index (must not exist, or be empty)")
    parser.add_argument("--batch-size", type=int, help="images per embedding batch")
    add_runtime_option(parser)
    add_lock_timeout_option(parser)
    add_no_progress_option(parser, "no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_tool(reindex, args, tensorflow=True)


def reindex(args: argparse.Namespace) -> None:
    from reid.index.reindex import reindex_gallery

    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive number, got {args.batch_size}")
    print(reindex_gallery(args.index, args.model, args.output, runtime=args.runtime,
                          batch_size=args.batch_size, progress=not args.no_progress,
                          lock_timeout=args.lock_timeout).format())


if __name__ == "__main__":
    sys.exit(main())
