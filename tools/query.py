"""Find where else a person appears: search a gallery index with query images.

  tools/query.py --index GALLERY --image Q.jpg [--image ...] [--top-k 10]
                 [--threshold auto/none/SCORE] [--exclude-same-camera] [--json]
                 [--save-grid OUT.png] [--model M]

The model is the one recorded in the index's manifest; --model may point at a copy of it (its
fingerprint must match). Scores are cosine similarities (1 = identical embedding); a result
at or above the match threshold is taken for the query's person, and a query none of whose
results reach it is answered "no match in the gallery". Served by a
LiteRT or ONNX export (--runtime auto, when one is present), a query never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from reid.utils.cli import add_runtime_option, run_tool



def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(description="Search a gallery index with query images.")
    parser.add_argument("--index", type=pathlib.Path, required=True, help="gallery index folder")
    parser.add_argument("--image", action="extend", nargs="+", required=True, metavar="Q.jpg",
                        help="query image; repeatable")
    parser.add_argument("--top-k", type=int, default=10, help="results per query (default 10)")
    parser.add_argument("--exclude-same-camera", action="store_true",
                        help="leave out results from the query's camera (read from its "
                             "Market-style file name)")
    parser.add_argument("--threshold", metavar="auto/none/SCORE",
                        help="match threshold on the cosine score: auto is the model's "
                             "calibrated false-match-rate 1e-2 threshold, none ranks only "
                             "(default: auto when the model is calibrated, else none)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: a list per query of {query, pid, camid, threshold, "
                             "threshold_origin, in_gallery, hits: [{rank, score, match, path, "
                             "pid, camid}]}")
    parser.add_argument("--save-grid", type=pathlib.Path, metavar="OUT.png",
                        help="draw each query and its results into this picture")
    parser.add_argument("--grid-height", type=int, default=128,
                        help="height of each crop in the picture (default 128)")
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
    from reid.calibration import resolve_threshold
    from reid.modeling.embedder import FLOAT32
    from reid.evaluation import collapse_warning, embedding_spread
    from reid.index.faiss_index import set_threads
    from reid.index.grid import check_grid_output
    from reid.index.query import (format_results, missing_files, open_gallery, query_gallery,
                                  results_json, save_results_grid)

    if args.top_k < 1:
        raise ValueError(f"--top-k: expected a positive number, got {args.top_k}")
    if args.threshold is not None and args.threshold.strip().lower() not in ("auto", "none"):
        resolve_threshold(args.threshold, {}, "--threshold")  # a bad number fails before any work
    if args.save_grid is not None:
        check_grid_output(args.save_grid, args.grid_height)
    set_threads(args.threads)
    gallery, embedder, model_dir = open_gallery(args.index, args.model, runtime=args.runtime)
    threshold = resolve_threshold(args.threshold, embedder.spec, str(model_dir))
    if threshold is not None and threshold.calibrated and embedder.precision != FLOAT32:
        print(f"warning: the match threshold was calibrated on float32 embeddings; "
              f"{embedder.runtime} ({embedder.precision}) scores differ slightly, so its "
              f"false-match rate is approximate (tools/calibrate.py calibrates float32 only)",
              file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
