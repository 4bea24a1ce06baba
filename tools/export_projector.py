"""Write TensorBoard Embedding Projector files for a gallery index.

  tools/export_projector.py --index GALLERY --out DIR [--max-points 10000]
  tensorboard --logdir DIR      # then open the "Projector" tab (PCA, t-SNE, UMAP)
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import run_tool



def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(description="Export a gallery to the Embedding Projector.")
    parser.add_argument("--index", type=pathlib.Path, required=True, help="gallery index folder")
    parser.add_argument("--out", type=pathlib.Path, required=True,
                        help="output folder (a TensorBoard log directory)")
    parser.add_argument("--max-points", type=int, default=10000,
                        help="export a seeded uniform sample of at most this many embeddings")
    parser.add_argument("--thumb-height", type=int, default=64,
                        help="height of each crop in the sprite image (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder that holds other files (they are kept)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(export_gallery, build_parser().parse_args(argv),
                    flags={"projector_overwrite": "--overwrite"})


def export_gallery(args: argparse.Namespace) -> None:
    from reid.index import GalleryIndex
    from reid.index.projector import export_projector

    export = export_projector(GalleryIndex.load(args.index), args.out, args.max_points,
                              args.thumb_height, args.seed, overwrite=args.overwrite)
    print(f"wrote {export.num_points} of {export.gallery_size} embeddings, sprite "
          f"{export.sprite_shape[1]}x{export.sprite_shape[0]} px, to {export.out_dir}")
    print(f"view with: tensorboard --logdir {export.out_dir}")


if __name__ == "__main__":
    sys.exit(main())
