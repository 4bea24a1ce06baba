"""Footage answers against ground truth: "is this person anywhere in my cameras?", per query photo.

    .venv/bin/python bench/footage_answers.py --model RUN [--seeds 11 12 13] [--fpir RATE]
                                              [--json OUT] [--keep DIR]

The settings are pinned (issue 31): synthetic footage of 4 cameras x 60 s with 20 people, 5 of
whom never walk past any camera (tools/make_synthetic_video.py --absent), one draw per seed.
Per draw:

1. the footage is indexed with ``tools/index_video.py``'s library call on its det.txt boxes
   (what a good detector would find), the tracks saved;
2. each of the 20 query photos is answered by :func:`reid.index.query.query_footage` at the
   default decision (:func:`reid.index.decision.match_threshold`: the model's gallery-level
   threshold for the index's number of tracks; ``--fpir`` asks for another rate), with every
   track rankable (top_k = the number of tracks);
3. each track's person is the ground-truth identity most of its boxes overlap
   (:func:`reid.video.measure.track_identities`, as :mod:`reid.video.scoring` reads it), and the
   answers are scored by :func:`reid.video.scoring.score_answers`.

Figures, per draw and pooled over the draws (counts summed, then divided): precision, the
share of reported appearances (score at or above the threshold) that are the queried person's,
over every query, absent people's included (a user does not know who is absent); recall, the
share of the present people's true tracks that are reported; absent reported present, the
share of absent people with any appearance reported (the FPIR observed); rank-1, the share of
present people (with a track in the index) whose best-scored appearance is theirs. Each figure
is printed with the counts behind it. Nothing is tuned on these draws.

``RUN`` is a run folder (or its model/) of a model trained on the synthetic pedestrians, with a
calibration that has gallery rules (the demo's recipe: configs/synthetic.yaml).
"""

import argparse
import json
import math
import os
import pathlib
import platform
import sys
import tempfile
import time
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.cli import run_tool  # noqa: E402
from reid.errors import ReidError  # noqa: E402
from reid.video.scoring import AnswerCounts, pooled, score_answers  # noqa: E402

#: The issue's settings: what the recorded figures mean.
CAMERAS, SECONDS, PEOPLE, ABSENT = 4, 60.0, 20, 5
DEFAULT_SEEDS = (11, 12, 13)

def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def table(rows: Sequence[tuple[str, str, int, AnswerCounts]]) -> str:
    """The figures as a Markdown table, each beside the counts it rests on."""
    lines = [("| draw | threshold | tracks | precision (right/reported) | recall (right/true; "
              "people) | absent reported present | rank-1 (people) |"),
             "|---|---|---|---|---|---|---|"]
    for name, threshold, tracks, c in rows:
        lines.append(
            f"| {name} | {threshold} | {tracks} | {_share(c.precision)} ({c.right}/{c.reported}"
            f"; {c.answering_queries} of {c.present_queries + c.absent_queries} queries answer) "
            f"| {_share(c.recall)} ({c.right}/{c.true_tracks}; {c.recall_queries}) "
            f"| {_share(c.absent_present)} ({c.absent_reported}/{c.absent_queries}) "
            f"| {_share(c.rank1)} ({c.rank1_hits}/{c.recall_queries}) |")
    return "\n".join(lines)


def measure_draw(seed: int, model: pathlib.Path, work: pathlib.Path, fpir: float | None,
                 log=print, self_calibrate: bool = False) -> dict:
    """Draw, index and answer one seed's footage in ``work``; its counts and details."""
    from reid.index.decision import match_threshold
    from reid.index.open import open_gallery
    from reid.index.query import query_footage
    from reid.synthetic.footage import (absent_people, make_synthetic_footage,
                                        read_footage_manifest)
    from reid.video.ingest import index_footage, video_inputs
    from reid.video.scoring import track_people

    started = time.perf_counter()
    footage = work / "footage"
    summary = make_synthetic_footage(footage, cameras=CAMERAS, people=PEOPLE, seconds=SECONDS,
                                     seed=seed, absent=ABSENT)
    log(summary.text())
    manifest = read_footage_manifest(footage)
    if manifest is None:
        raise ReidError(f"{footage}: no footage manifest after drawing")
    cameras = [c["name"] for c in manifest["cameras"]]
    index, tracks_dir = work / "index", work / "tracks"
    inputs = video_inputs([footage / f"{c}.avi" for c in cameras], cameras,
                          [c["start"] for c in manifest["cameras"]],
                          [footage / c / "det" / "det.txt" for c in cameras])
    index_footage(inputs, index, model, progress=False, save_tracks=tracks_dir,
                  log=lambda _: None)
    site = "model's"
    if self_calibrate:
        from reid.calibration import CalibrationError
        from reid.index.site_calibration import calibrate_index

        try:  # the index's own footage, no labels (tools/calibrate.py --footage)
            calibrate_index(index)
            site = "self-calibrated"
        except CalibrationError as exc:
            log(f"seed {seed}: not self-calibrated ({exc}); the model's thresholds answer")
    indexed = time.perf_counter()

    gallery, embedder, model_dir = open_gallery(index)
    person_of = track_people(tracks_dir, {c: footage / c / "gt" / "gt.txt" for c in cameras})
    tracks = sorted(gallery.footage_tracks())
    missing = [t for t in tracks if t not in person_of]
    if missing:
        raise ReidError(f"{tracks_dir}: {len(missing)} indexed tracks have no boxes in the "
                        f"saved tracks (e.g. camera {missing[0][0]} track {missing[0][1]})")
    threshold = match_threshold(gallery, embedder.spec, str(model_dir),
                                requested=None if fpir is None else "auto", fpir=fpir)
    if threshold is None or threshold.fpir is None:
        raise ReidError(f"{model_dir}: the default decision is not gallery-level "
                        f"({'none' if threshold is None else threshold.origin}); the model "
                        f"needs a calibration with gallery rules (resume or recalibrate it)")
    people = manifest["identities"]
    results = query_footage(gallery, embedder, [footage / p["query"] for p in people],
                            top_k=len(tracks), threshold=threshold)
    answers = {int(p["id"]): [((a.camera, a.track), bool(a.match)) for a in r.appearances]
               for p, r in zip(people, results)}
    absent = set(absent_people(manifest))
    counts = score_answers(answers, {t: person_of[t] for t in tracks}, absent)
    return {"seed": seed, "counts": counts, "threshold": threshold.value, "thresholds": site,
            "threshold_origin": threshold.origin, "fpir": threshold.fpir,
            "tracks": len(tracks), "tracks_of_nobody": sum(p is None for p in person_of.values()),
            "absent_people": sorted(absent),
            "seconds": {"draw_and_index": round(indexed - started, 1),
                        "answer": round(time.perf_counter() - indexed, 1)}}


def measure(args: argparse.Namespace) -> None:
    import tensorflow as tf

    from reid.calibration import DEFAULT_FPIR, check_fpir
    from reid.utils.io import atomic_write_text
    from reid.utils.provenance import source_commit

    if args.fpir is not None:
        check_fpir(args.fpir)  # before the first draw, not after it
    commit = source_commit(ROOT)
    print(f"code {commit}; model {args.model}; {CAMERAS} cameras x {SECONDS:g} s, {PEOPLE} "
          f"people of whom {ABSENT} never appear; det.txt boxes; seeds "
          f"{' '.join(map(str, args.seeds))}; FPIR "
          f"{args.fpir if args.fpir is not None else f'{DEFAULT_FPIR:g} (default)'}")
    draws = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            work = (args.keep / f"seed{seed}") if args.keep else pathlib.Path(tmp) / f"s{seed}"
            if args.keep and work.exists():
                raise ReidError(f"{work}: exists; --keep needs a new folder", field="keep")
            work.mkdir(parents=True)
            draw = measure_draw(seed, args.model, work, args.fpir,
                                self_calibrate=args.self_calibrate)
            print(f"seed {seed}: {draw['tracks']} tracks ({draw['tracks_of_nobody']} of nobody), "
                  f"threshold {draw['threshold']:.4f} ({draw['threshold_origin']}); "
                  f"{draw['seconds']['draw_and_index']:.0f} s to draw and index, "
                  f"{draw['seconds']['answer']:.0f} s to answer", flush=True)
            draws.append(draw)
    rows = [(f"seed {d['seed']}", f"{d['threshold']:.4f}", d["tracks"], d["counts"])
            for d in draws]
    total = pooled(d["counts"] for d in draws)
    rows.append((f"pooled ({len(draws)} draws)", "-", sum(d["tracks"] for d in draws), total))
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}; "
          f"commit {commit}")
    print(table(rows))
    if args.json:
        report = {"commit": commit, "model": str(args.model), "cameras": CAMERAS,
                  "seconds": SECONDS, "people": PEOPLE, "absent": ABSENT,
                  "fpir_requested": args.fpir,
                  "draws": [{**d, "counts": d["counts"].to_json()} for d in draws],
                  "pooled": total.to_json()}
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
        print(f"written {args.json}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=pathlib.Path, required=True, metavar="RUN",
                        help="run folder (or its model/) trained on the synthetic pedestrians, "
                             "calibrated with gallery rules")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="one footage draw per seed (default %(default)s)")
    parser.add_argument("--fpir", type=float, default=None, metavar="RATE",
                        help="the decision's false-positive identification rate (default: the "
                             "library's default decision)")
    parser.add_argument("--self-calibrate", action="store_true",
                        help="calibrate each index on its own footage first (tools/calibrate.py "
                             "--footage; the model's thresholds where its pairs are too few)")
    parser.add_argument("--json", type=pathlib.Path, default=None, metavar="OUT",
                        help="also write the figures and counts here")
    parser.add_argument("--keep", type=pathlib.Path, default=None, metavar="DIR",
                        help="keep each draw's footage, index and tracks in DIR/seedN")
    return run_tool(measure, parser.parse_args(argv), tensorflow=True)


if __name__ == "__main__":
    sys.exit(main())
