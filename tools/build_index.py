"""Embed a gallery of person crops once and keep it on disk as a searchable index.

  tools/build_index.py --model runs/NAME --images DIR_OR_GLOB [--images ...] --index GALLERY
                       [--append | --overwrite] [--type flat|hnsw|ivfpq] [--config FILE]
  tools/build_index.py --index GALLERY --relocate OLD_FOLDER NEW_FOLDER

Person ids and cameras are read from Market-1501-style file names when present. Unreadable
files are listed and skipped; the index is written (atomically) only when it changed. A file
is known by its content too: a copy of an indexed image is skipped, an indexed image found
under a new path (its old one gone) has its path updated. ``--relocate`` rewrites the paths
of a moved image folder without reading the images.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import (add_lock_timeout_option, add_no_progress_option,
                      add_overrides_option, add_runtime_option, run_tool)
from reid.errors import UsageError



def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.choices import INDEX_TYPES

    parser = argparse.ArgumentParser(description="Build or extend a gallery index.")
    parser.add_argument("--model", type=pathlib.Path,
                        help="run folder (uses its model/ export, else model_best/) or exported "
                             "model folder; default when appending: the index's own model")
    parser.add_argument("--images", action="extend", nargs="+", metavar="DIR_OR_GLOB",
                        help="folder (its files), glob ('**' recurses) or file; repeatable")
    parser.add_argument("--index", type=pathlib.Path, required=True, help="gallery index folder")
    parser.add_argument("--relocate", nargs=2, type=pathlib.Path, metavar=("OLD", "NEW"),
                        help="instead of adding images: the indexed image folder OLD moved to "
                             "NEW; rewrite the index's paths (no images are embedded)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to an existing index")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace an existing index (the old one stays until the new one is "
                           "written)")
    parser.add_argument("--type", choices=INDEX_TYPES,
                        help="index type of a new index (default: the config's, else flat)")
    parser.add_argument("--config", type=pathlib.Path,
                        help="YAML config whose 'index' section sets the index parameters")
    add_overrides_option(parser, "override index settings, e.g. index.hnsw_m=16",
                         metavar="index.KEY=VALUE")
    parser.add_argument("--batch-size", type=int, help="images per embedding batch")
    add_runtime_option(parser)
    parser.add_argument("--source", help="record this source (camera site, video) for the images")
    parser.add_argument("--projector", type=pathlib.Path,
                        help="also write TensorBoard Embedding Projector files to this folder")
    parser.add_argument("--threads", type=int, help="FAISS threads (default: all cores)")
    add_lock_timeout_option(parser)
    add_no_progress_option(parser, "no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_tool(build, args, tensorflow=args.relocate is None)  # relocating embeds nothing


def build(args: argparse.Namespace) -> None:
    from reid.config import check_override_sections, config_from_dict, load_config
    from reid.index import GalleryIndex
    from reid.index.build import build_gallery, relocate_gallery
    from reid.index.faiss_index import set_threads
    from reid.index.projector import check_out_folder, export_projector

    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size: expected a positive number, got {args.batch_size}")
    if args.relocate is not None:
        building = ("images", "model", "append", "overwrite", "type", "config", "set",
                    "batch_size", "source", "projector", "threads")
        given = ["--" + name.replace("_", "-") for name in building if getattr(args, name)]
        if given:
            raise UsageError(f"--relocate only rewrites paths; it takes no {', '.join(given)}")
        print(relocate_gallery(args.index, *args.relocate, lock_timeout=args.lock_timeout)
              .format())
        return
    if not args.images:
        raise UsageError("--images is required (or --relocate OLD NEW to repair moved paths)")
    check_override_sections(args.set, ["index"], "build_index")
    if args.projector is not None:  # refuse before the embedding work, not after it
        check_out_folder(args.projector)
    set_threads(args.threads)
    config = None
    if args.config is not None:
        config = load_config(args.config, args.set).index
    elif args.set:
        config = config_from_dict({}, "<defaults>", args.set).index
    report = build_gallery(args.images, args.index, args.model, append=args.append,
                           overwrite=args.overwrite, config=config, index_type=args.type,
                           batch_size=args.batch_size, source=args.source,
                           progress=not args.no_progress, lock_timeout=args.lock_timeout,
                           runtime=args.runtime)
    print(report.format())
    if report.created and not report.saved:
        raise UsageError(f"{args.index}: no readable new images; index not written")
    if args.projector is not None:
        export = export_projector(GalleryIndex.load(args.index), args.projector)
        print(f"projector: {export.num_points} of {export.gallery_size} embeddings in "
              f"{export.out_dir} (view with: tensorboard --logdir {export.out_dir})")


if __name__ == "__main__":
    sys.exit(main())
