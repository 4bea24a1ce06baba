"""Index camera footage: find the people in videos, follow them, and make them searchable.

  tools/index_video.py --model runs/NAME --index FOOTAGE --video A.avi [--video B.avi ...]
                       [--camera A ...] [--start-time 2026-12-02T09:00:00 ...] [--every N]
                       [--detections A/det/det.txt ...] [--append] [--config FILE]
                       [--set video.KEY=VALUE ...]

Each video (or folder of frames) is read with OpenCV; people are detected (the SSDLite COCO
detector by default, or the boxes of a MOTChallenge det.txt), tracked, and a few good crops per
track are embedded with the track's mean, with camera, track, frame, time and box. Pictures of
the crops are kept in the index folder, so tools/query.py answers "when and where" without the
videos. Each video is committed to the index as it finishes; one that gives no entries is not
recorded (a warning says why), so a corrected run indexes it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import (add_lock_timeout_option, add_no_progress_option,
                      add_overrides_option, add_runtime_option, run_tool)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""

    parser = argparse.ArgumentParser(description="Index camera footage for person search.")
    parser.add_argument("--model", type=pathlib.Path,
                        help="run folder or exported model folder (default when appending: the "
                             "index's own model)")
    parser.add_argument("--index", type=pathlib.Path, required=True, help="gallery index folder")
    parser.add_argument("--video", action="extend", nargs="+", required=True,
                        type=pathlib.Path, metavar="FILE_OR_FOLDER",
                        help="video file or folder of frame images; repeatable")
    parser.add_argument("--camera", action="extend", nargs="+", default=[], metavar="NAME",
                        help="camera of each video, in order, or one for all (default: the "
                             "video's file name without extension); a name, not a path: it "
                             "names the --save-tracks file")
    parser.add_argument("--start-time", action="extend", nargs="+", default=[],
                        metavar="ISO8601",
                        help="wall-clock time of each video's first frame, in order, e.g. "
                             "2026-12-02T09:00:00")
    parser.add_argument("--detections", action="extend", nargs="+", default=[],
                        type=pathlib.Path, metavar="DET.TXT",
                        help="precomputed boxes of each video (MOTChallenge det.txt or gt.txt), "
                             "in order, instead of running the detector")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="process every N-th frame (default 1: every frame)")
    parser.add_argument("--fps", type=float,
                        help="frame rate of a folder of frames (default: its seqinfo.ini, else "
                             "10), or of a video whose decoder gives no timestamps (a video's "
                             "times come from its timestamps)")
    parser.add_argument("--append", action="store_true",
                        help="add to an existing index (a video already in it, or a copy of "
                             "one, is skipped)")
    parser.add_argument("--config", type=pathlib.Path,
                        help="YAML config whose 'video' section sets detection, tracking and "
                             "crop choice")
    add_overrides_option(parser, "override footage settings, e.g. video.tiles=[3,2]",
                         metavar="video.KEY=VALUE")
    parser.add_argument("--save-tracks", type=pathlib.Path, metavar="DIR",
                        help="also write each video's tracks in MOTChallenge format to "
                             "DIR/<camera>.txt")
    add_runtime_option(parser)
    add_lock_timeout_option(parser)
    add_no_progress_option(parser, "no progress line")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(index_video, build_parser().parse_args(argv), tensorflow=True)


def index_video(args: argparse.Namespace) -> None:
    from reid.config import check_override_sections, config_from_dict, load_config
    from reid.video.ingest import index_footage, video_inputs

    check_override_sections(args.set, ["video"], "index_video")
    if args.config is not None:
        config = load_config(args.config, args.set).video
    else:
        config = config_from_dict({}, "<defaults>", args.set).video
    inputs = video_inputs(args.video, args.camera, args.start_time, args.detections)
    report = index_footage(inputs, args.index, args.model, config=config, append=args.append,
                           every=args.every, fps=args.fps, runtime=args.runtime,
                           progress=not args.no_progress, save_tracks=args.save_tracks,
                           lock_timeout=args.lock_timeout)
    print(report.format())


if __name__ == "__main__":
    sys.exit(main())
