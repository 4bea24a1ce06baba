"""Find where else a person appears: search a gallery index with query images.

  tools/query.py --index GALLERY --image Q.jpg [--image ...] [--top-k 10]
                 [--threshold auto/none/SCORE] [--exclude-same-camera] [--json]
                 [--save-grid OUT.png] [--model M]
  tools/query.py --index FOOTAGE --image Q.jpg | --track CAMERA:ID [--save-sheet OUT.png]
                 [--save-timeline OUT.png] [--json]

On an index of camera footage (tools/index_video.py) the answer is when and where: the
person's appearances, grouped by camera and track, with their times; --track searches with a
tracked person, in the other cameras.

The model is the one recorded in the index's manifest; --model may point at a copy of it (its
fingerprint must match). Scores are cosine similarities (1 = identical embedding); a result
at or above the match threshold is taken for the query's person, and a query none of whose
results reach it is answered "not in the gallery" ("not seen in these cameras" on footage).
The default threshold is read for the gallery's size, so that at most 1 in 10 people who are
not in it are reported present (--fpir); a stranger meets every entry, so a per-pair threshold
would pass absent people far more often. Served by a
LiteRT or ONNX export (--runtime auto, when one is present), a query never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import TYPE_CHECKING, Any

from reid.cli import add_runtime_option, run_tool
from reid.errors import UsageError

if TYPE_CHECKING:
    from reid.calibration import MatchThreshold
    from reid.index.gallery import GalleryIndex



def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.calibration import CALIBRATED_FPIRS, DEFAULT_FPIR

    parser = argparse.ArgumentParser(description="Search a gallery index with query images.")
    parser.add_argument("--index", type=pathlib.Path, required=True, help="gallery index folder")
    parser.add_argument("--image", action="extend", nargs="+", default=[], metavar="Q.jpg",
                        help="query image; repeatable")
    parser.add_argument("--track", action="append", default=[], metavar="CAMERA:ID",
                        help="footage index: search with the person of this track, e.g. A:14, "
                             "in the other cameras; repeatable")
    parser.add_argument("--top-k", type=int, default=10, help="results per query (default 10)")
    parser.add_argument("--exclude-same-camera", action="store_true",
                        help="leave out results from the query's camera (read from its "
                             "Market-style file name)")
    parser.add_argument("--threshold", metavar="auto/pair/none/SCORE",
                        help="match decision: auto answers 'is this person in the gallery?' "
                             "at the false-positive identification rate --fpir for the "
                             "gallery's size; pair is the per-pair threshold (false-match rate "
                             "0.01 per query-gallery pair); none ranks only; a number is a "
                             "cosine score (default: auto when the model's calibration has "
                             "gallery rules, else pair, else none)")
    parser.add_argument("--fpir", type=float, metavar="RATE",
                        help=f"with --threshold auto: the share of people absent from the "
                             f"gallery who may be reported present, {min(CALIBRATED_FPIRS):g} "
                             f"to {max(CALIBRATED_FPIRS):g} (default {DEFAULT_FPIR:g})")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: a list per query of {query, pid, camid, threshold, "
                             "threshold_origin, fpir, gallery_size, in_gallery, answer, hits: "
                             "[{id, rank, score, match, path, pid, camid}]}; on a footage index "
                             "{query, image, camera, track, thumb, threshold, threshold_origin, "
                             "fpir, gallery_size, in_gallery, answer, appearances: [{id, rank, "
                             "score, match, camera, track, start, end, started_at, ended_at, "
                             "video, frame, box, hits, path, thumb, frame_image}]}")
    parser.add_argument("--save-grid", type=pathlib.Path, metavar="OUT.png",
                        help="draw each query and its results into this picture")
    parser.add_argument("--save-sheet", type=pathlib.Path, metavar="OUT.png",
                        help="footage index: draw each query, then per appearance its best crop "
                             "and its whole frame with the box")
    parser.add_argument("--save-timeline", type=pathlib.Path, metavar="OUT.png",
                        help="footage index: draw a per-camera timeline of the appearances")
    parser.add_argument("--grid-height", type=int, default=128,
                        help="height of each crop in the picture or contact sheet (default 128)")
    parser.add_argument("--model", type=pathlib.Path,
                        help="model folder to use instead of the one in the manifest")
    add_runtime_option(parser)
    parser.add_argument("--threads", type=int, default=1,
                        help="FAISS threads (default 1: each image is searched alone, and a "
                             "lone query only waits for a second thread)")
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow is started (quietly) only if the Keras model ends up serving the query.
    return run_tool(query, build_parser().parse_args(argv))


def query(args: argparse.Namespace) -> None:
    from reid.calibration import THRESHOLD_WORDS, check_fpir, resolve_threshold
    from reid.index.appearances import parse_track
    from reid.index.decision import match_threshold
    from reid.modeling.spec import FLOAT32
    from reid.evaluation import collapse_warning, embedding_spread
    from reid.index.faiss_index import set_threads
    from reid.index.grid import check_grid_output
    from reid.index.open import open_gallery
    from reid.index.query import (format_results, missing_files, query_gallery,
                                  results_json, save_results_grid)

    if args.top_k < 1:
        raise UsageError(f"--top-k: expected a positive number, got {args.top_k}")
    if args.threshold is not None and args.threshold.strip().lower() not in THRESHOLD_WORDS:
        resolve_threshold(args.threshold, {}, "--threshold")  # a bad number fails before any work
    if args.fpir is not None:
        check_fpir(args.fpir)
    if not args.image and not args.track:
        raise UsageError("give a query: --image Q.jpg or, on a footage index, --track CAMERA:ID")
    tracks = [parse_track(t) for t in args.track]
    for picture in (args.save_grid, args.save_sheet, args.save_timeline):
        if picture is not None:
            check_grid_output(picture, args.grid_height)
    set_threads(args.threads)
    gallery, embedder, model_dir = open_gallery(args.index, args.model, runtime=args.runtime)
    footage = gallery.footage_count > 0
    if not footage:
        given = [name for name, value in (("--track", args.track),
                                          ("--save-sheet", args.save_sheet),
                                          ("--save-timeline", args.save_timeline)) if value]
        if given:
            raise UsageError(f"{args.index}: holds no camera footage, so {given[0]} does not "
                             f"apply (index footage with tools/index_video.py)")
    elif args.save_grid is not None or args.exclude_same_camera:
        given = "--save-grid" if args.save_grid is not None else "--exclude-same-camera"
        raise UsageError(f"{args.index}: an index of camera footage answers with appearances; "
                         f"{given} is for crop galleries (use --save-sheet, and --track to "
                         f"search the other cameras)")
    threshold = match_threshold(gallery, embedder.spec, str(model_dir), args.threshold,
                                args.fpir)
    if threshold is not None and threshold.calibrated and embedder.precision != FLOAT32:
        print(f"warning: the match threshold was calibrated on float32 embeddings; "
              f"{embedder.runtime} ({embedder.precision}) scores differ slightly, so its "
              f"false-match rate is approximate (tools/calibrate.py calibrates float32 only)",
              file=sys.stderr)
    if footage:
        query_footage_index(args, gallery, embedder, tracks, threshold)
        return
    results = query_gallery(gallery, embedder, args.image, args.top_k,
                            args.exclude_same_camera, threshold)
    if args.json:
        print(json.dumps(results_json(results), indent=2))
    else:
        print(format_results(results, gallery.count))
    if args.save_grid is not None:
        save_results_grid(results, args.save_grid, args.grid_height)
        print(f"picture: {args.save_grid}", file=sys.stderr if args.json else sys.stdout)
    collapsed = collapse_warning(embedding_spread(gallery.vectors), f"the gallery {args.index}")
    if collapsed:
        print(collapsed, file=sys.stderr)
    gone = missing_files(results)
    if gone:
        print(f"warning: {len(gone)} of the results no longer exist on disk (moved or deleted "
              f"since indexing; drawn grey in a picture), e.g. {gone[0]}; after a move, "
              f"tools/build_index.py --index {args.index} --relocate OLD NEW repairs the paths",
              file=sys.stderr)


def query_footage_index(args: argparse.Namespace, gallery: GalleryIndex, embedder: Any,
                        tracks: list[tuple[str, int]], threshold: MatchThreshold | None) -> None:
    """The footage answer: appearances as text or JSON, and the pictures asked for."""
    from reid.index.appearances import appearances_json, format_appearances
    from reid.index.footage_pictures import render_sheet, render_timeline, save_picture
    from reid.index.query import query_footage

    results = query_footage(gallery, embedder, args.image, tracks, args.top_k, threshold)
    if args.json:
        print(json.dumps(appearances_json(results, args.index), indent=2))
    else:
        print(format_appearances(results, gallery))
    videos = gallery.footage_videos()
    where = sys.stderr if args.json else sys.stdout
    if args.save_sheet is not None:
        save_picture(render_sheet(results, args.index, {v.video: v for v in videos},
                                  args.grid_height), args.save_sheet)
        print(f"contact sheet: {args.save_sheet}", file=where)
    if args.save_timeline is not None:
        save_picture(render_timeline(results, videos), args.save_timeline)
        print(f"timeline: {args.save_timeline}", file=where)


if __name__ == "__main__":
    sys.exit(main())
