"""Write synthetic multi-camera footage of the synthetic pedestrians, with ground truth.

    python tools/make_synthetic_video.py --out data/synthetic_video [--cameras 3 --people 8
        --absent 0 --seconds 12 --fps 10 --size 480x360 --seed 0]

One Motion-JPEG video per camera (A.avi, B.avi, ...), MOTChallenge ground truth and oracle
detections per camera (A/gt/gt.txt, A/det/det.txt, A/seqinfo.ini), a query photo per person
(queries/) and footage.json, which says when each camera started and who it saw. The people are
not the training dataset's; most of them pass two or more cameras, and --absent of them none
(a query photo only, marked absent in footage.json). Running it again with the same arguments
finds the finished footage and does nothing; --force draws it again.
"""

from __future__ import annotations

import argparse
import re
import sys

from reid.cli import add_no_progress_option, run_tool
from reid.video.errors import FootageError
from reid.synthetic.footage import FootageParams, make_synthetic_footage


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    defaults = FootageParams()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="footage folder to create")
    p.add_argument("--cameras", type=int, default=defaults.cameras,
                   help="cameras, 2-8, named A, B, ... (default %(default)s)")
    p.add_argument("--people", type=int, default=defaults.people,
                   help="people in all, the --absent ones included; a quarter of those who "
                        "appear pass one camera only (default %(default)s)")
    p.add_argument("--absent", type=int, default=defaults.absent,
                   help="of --people, how many never walk past any camera: a query photo "
                        "each, nothing in the footage (--people 20 --absent 5: 15 appear) "
                        "(default %(default)s)")
    p.add_argument("--seconds", type=float, default=defaults.seconds,
                   help="length of each camera's video (default %(default)g)")
    p.add_argument("--fps", type=int, default=defaults.fps,
                   help="frames per second (default %(default)s)")
    p.add_argument("--size", default=f"{defaults.width}x{defaults.height}", metavar="WxH",
                   help="frame width x height in pixels (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="the same seed gives the same footage (default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="draw again even if complete footage with these arguments exists")
    add_no_progress_option(p, "no progress lines")
    return p


def parse_size(text: str) -> tuple[int, int]:
    """(width, height) from ``WIDTHxHEIGHT``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise FootageError(f"--size: expected WIDTHxHEIGHT such as 480x360, got {text!r}")
    return int(match[1]), int(match[2])


def main(argv: list[str] | None = None) -> int:
    return run_tool(generate, build_parser().parse_args(argv))


def generate(args: argparse.Namespace) -> None:
    width, height = parse_size(args.size)
    summary = make_synthetic_footage(args.out, cameras=args.cameras, people=args.people,
                                     seconds=args.seconds, fps=args.fps, width=width,
                                     height=height, seed=args.seed, absent=args.absent,
                                     force=args.force,
                                     progress=not args.no_progress)
    print(summary.text(redraw="use --force to redraw"))


if __name__ == "__main__":
    sys.exit(main())
