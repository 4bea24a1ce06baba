"""Write the built-in synthetic pedestrian dataset in the Market-1501 layout.

    python tools/make_synthetic.py --out data/synthetic [--ids 200 --cameras 4 --images-per-id 20]

Running it again with the same arguments finds the finished dataset and does nothing; --force
draws it again.
"""

from __future__ import annotations

import argparse
import sys

from reid.cli import run_tool
from reid.synthetic.crops import SyntheticParams, generate_dataset


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    defaults = SyntheticParams()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--ids", type=int, default=defaults.ids,
                   help="identities in all (default %(default)s)")
    p.add_argument("--test-ids", type=int, default=None,
                   help="how many of them form the query/gallery split (default: half)")
    p.add_argument("--cameras", type=int, default=defaults.cameras,
                   help="cameras, 2-9 (default %(default)s)")
    p.add_argument("--images-per-id", type=int, default=defaults.images_per_id,
                   help="images of each identity, at least 4 (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="the same seed gives byte-identical files (default %(default)s)")
    p.add_argument("--height", type=int, default=defaults.height,
                   help="crop height in pixels (default %(default)s)")
    p.add_argument("--width", type=int, default=defaults.width,
                   help="crop width in pixels (default %(default)s)")
    p.add_argument("--workers", type=int, default=None,
                   help="drawing processes (default: usable cores); does not change the output")
    p.add_argument("--force", action="store_true",
                   help="draw again even if a complete dataset with these arguments exists")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_tool(generate, build_parser().parse_args(argv))


def generate(args: argparse.Namespace) -> None:
    summary = generate_dataset(args.out, ids=args.ids, cameras=args.cameras,
                               images_per_id=args.images_per_id, seed=args.seed,
                               height=args.height, width=args.width, workers=args.workers,
                               force=args.force, test_ids=args.test_ids)
    print(summary.text(redraw="use --force to redraw"))


if __name__ == "__main__":
    sys.exit(main())
